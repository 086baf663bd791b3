//! Names of generated resources (docs/architecture.md, "Generated names"), in one place.

use kuma_core::resource::Tags;

/// `inbound:<address>:<port>`.
pub fn inbound_listener(address: &str, port: u32) -> String {
    format!("inbound:{address}:{port}")
}

/// `outbound:<address>:<port>`.
pub fn outbound_listener(address: &str, port: u32) -> String {
    format!("outbound:{address}:{port}")
}

/// `localhost:<port>`: the cluster of an inbound's local app.
pub fn local_cluster(port: u32) -> String {
    format!("localhost:{port}")
}

/// `inbound:<service>` / `outbound:<service>`: route configuration names.
pub fn route_config(direction: &str, service: &str) -> String {
    format!("{direction}:{service}")
}

/// The cluster of a service, narrowed to the instances carrying `tags`
/// besides `kuma.io/service`: plain `<service>` for the whole service,
/// `<service>;k=v;k2=v2` (sorted keys) for a subset.
pub fn service_cluster(service: &str, subset: &Tags) -> String {
    let mut name = service.to_string();
    for (k, v) in subset {
        name.push(';');
        name.push_str(k);
        name.push('=');
        name.push_str(v);
    }
    name
}

/// The bootstrap's static cluster of the control plane's SDS server
/// (docs/security.md, "SDS").
pub const SDS_CLUSTER: &str = "kuma:sds";

/// The SDS secret holding a proxy's certificate chain and private key.
pub const IDENTITY_CERT_SECRET: &str = "identity_cert";

/// The SDS secret holding the validation context (the mesh CA) of a mesh.
pub const MESH_CA_SECRET: &str = "mesh_ca";

/// The gRPC metadata key carrying a proxy's dataplane token to the SDS
/// server.
pub const SDS_TOKEN_METADATA: &str = "authorization";

/// Envoy's TLS transport socket.
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";

/// Envoy's TLS inspector listener filter (tells TLS from plain text).
pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";

/// Envoy's network RBAC filter.
pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";

/// `spiffe://<mesh>/<service>`: the identity of a service's proxies.
pub fn spiffe_id(mesh: &str, service: &str) -> String {
    format!("spiffe://{mesh}/{service}")
}

/// `spiffe://<mesh>/`: what every identity of a mesh starts with.
pub fn spiffe_prefix(mesh: &str) -> String {
    format!("spiffe://{mesh}/")
}

/// `inbound_<address>_<port>.`: the stat prefix of an inbound's RBAC
/// filter (dots and colons of the address become `_`, so the address is
/// one element of the stat name).
pub fn rbac_stat_prefix(address: &str, port: u32) -> String {
    let address = address.replace(['.', ':'], "_");
    format!("inbound_{address}_{port}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(inbound_listener("10.0.0.1", 80), "inbound:10.0.0.1:80");
        assert_eq!(
            outbound_listener("127.0.0.1", 10000),
            "outbound:127.0.0.1:10000"
        );
        assert_eq!(local_cluster(8080), "localhost:8080");
        let subset: Tags = [("version".to_string(), "v1".to_string())]
            .into_iter()
            .collect();
        assert_eq!(service_cluster("backend", &subset), "backend;version=v1");
        assert_eq!(service_cluster("backend", &Tags::new()), "backend");
        assert_eq!(spiffe_id("m", "web"), "spiffe://m/web");
        assert_eq!(spiffe_prefix("m"), "spiffe://m/");
        assert_eq!(rbac_stat_prefix("10.0.0.1", 80), "inbound_10_0_0_1_80.");
        assert_eq!(rbac_stat_prefix("fd00::1", 80), "inbound_fd00__1_80.");
    }
}
