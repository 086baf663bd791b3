//! Names of generated resources (DESIGN §9), in one place.

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
        let subset: Tags = [("version".to_string(), "v1".to_string())].into();
        assert_eq!(service_cluster("backend", &subset), "backend;version=v1");
        assert_eq!(service_cluster("backend", &Tags::new()), "backend");
    }
}
