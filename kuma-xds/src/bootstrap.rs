//! Envoy bootstrap generation and the bootstrap server (`POST /bootstrap`,
//! port 5682).
//!
//! kuma-dp posts a [`BootstrapRequest`] (`{"mesh", "name", "adminPort",
//! "dataplaneToken", "dataplaneTokenPath", "dataplaneResource", "deltaXds",
//! "version": {"kumaDp": {"version"}}}`) and gets an Envoy v3 bootstrap
//! (YAML) whose node id is `<mesh>.<name>`, whose static clusters are the
//! ADS server (`ads_cluster`, over TLS trusting the control plane's CA when
//! [`BootstrapConfig::xds_ca_pem`] is set) and, when configured, the SDS
//! server (`kuma:sds`, TLS trusting the control plane's CA, see
//! [`SdsBootstrap`]), and whose admin listens on `127.0.0.1:<adminPort>`.
//!
//! With token checks on, `dataplaneToken` must be a valid dataplane token for
//! that mesh and name (401 naming the failed check otherwise) that allows
//! the Dataplane (the one in the request, else the stored one: its type and
//! the tags of its inbounds or gateway, 403 naming the tag or type that is
//! not allowed otherwise, see
//! [`kuma_core::tokens::TokenClaims::authorize`]); the bootstrap
//! then sends it to the ADS server as the `authorization` initial metadata
//! of the ADS gRPC service. A Dataplane given in the request is validated
//! here and travels in the node metadata, so the ADS server registers it on
//! every (re)connect. Refusals answer Kuma's error body (see [`Error`]).

use crate::Error;
use crate::ads::{DATAPLANE_RESOURCE_KEY, KUMA_DP_VERSION_KEY};
use crate::generate::names::SDS_CLUSTER;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kuma_core::manager::{ManagerError, ResourceManager};
use kuma_core::resource::{DataplaneSpec, Resource, ResourceKey, ResourceType, SERVICE_TAG};
use kuma_core::store::StoreError;
use kuma_core::tokens::DataplaneAuth;
use kuma_core::validation::{ValidationError, Violation};
use kuma_core::wire::BootstrapRequest;
use serde_json::{Value, json};
use std::sync::Arc;

/// First wait before Envoy re-opens a broken xDS stream (ADS, and SDS via
/// the generated config sources): 250 ms.
///
/// Envoy's own default for xDS streams is a 500 ms base doubling up to
/// 30 s, each wait drawn at random below the current cap: after a 2 s
/// control-plane outage a proxy that had failed a few times could wait
/// another 12 s or more. Retrying instead at most every
/// [`XDS_RETRY_MAX`] brings every proxy back within about a second of the
/// control plane listening again. A refused connect is cheap for the
/// control plane's host, and while it is down nothing else is served.
pub const XDS_RETRY_BASE: std::time::Duration = std::time::Duration::from_millis(250);

/// Longest wait between two attempts to re-open an xDS stream: 1 s (see
/// [`XDS_RETRY_BASE`]).
pub const XDS_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// The `retry_policy` of an `envoy_grpc` xDS service (the field Envoy uses
/// to re-establish xDS streams): [`XDS_RETRY_BASE`] to [`XDS_RETRY_MAX`].
fn xds_retry_policy() -> Value {
    json!({"retry_back_off": {
        "base_interval": format!("{}s", XDS_RETRY_BASE.as_secs_f64()),
        "max_interval": format!("{}s", XDS_RETRY_MAX.as_secs_f64()),
    }})
}

/// Settings of the bootstrap server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapConfig {
    /// Host Envoy dials for ADS; `None`: the host the request was sent to.
    pub xds_host: Option<String>,
    /// Port Envoy dials for ADS.
    pub xds_port: u16,
    /// The CA certificate (PEM) the ADS server's TLS certificate is issued
    /// by: Envoy reaches ADS over TLS trusting only it. `None`: ADS is
    /// plaintext (tests of the library only; kuma-cp always sets it).
    pub xds_ca_pem: Option<String>,
    /// The SDS server Envoy gets mTLS certificates from (the `kuma:sds`
    /// cluster); `None`: no such cluster.
    pub sds: Option<SdsBootstrap>,
}

/// Where and how Envoy reaches the control plane's SDS server: on the ADS
/// host, over TLS trusting the control plane's own SDS CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdsBootstrap {
    /// Port of the SDS server (`sdsServer.grpcPort`).
    pub port: u16,
    /// The CA certificate (PEM) the SDS server's certificate is issued by.
    pub ca_pem: String,
}

/// What `Debug` shows for a token.
fn redacted(token: &str) -> &'static str {
    if token.is_empty() { "" } else { "<redacted>" }
}

/// Everything the bootstrap depends on. `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapParams {
    /// `<mesh>.<name>`.
    pub node_id: String,
    /// Envoy's `node.cluster`: the proxy's (first) service.
    pub service: String,
    /// Admin port.
    pub admin_port: u16,
    /// ADS host and port.
    pub xds_host: String,
    /// ADS port.
    pub xds_port: u16,
    /// The CA (PEM) Envoy trusts for ADS over TLS; `None`: plaintext ADS.
    pub xds_ca_pem: Option<String>,
    /// Dataplane JSON to register on connect, if any.
    pub dataplane_resource: Option<String>,
    /// kuma-dp version, if told.
    pub kuma_dp_version: Option<String>,
    /// Delta instead of state-of-the-world ADS.
    pub delta_xds: bool,
    /// The dataplane token Envoy presents on its ADS stream (the
    /// `authorization` initial metadata), if any.
    pub dataplane_token: Option<String>,
    /// The SDS server, for the `kuma:sds` cluster.
    pub sds: Option<SdsBootstrap>,
}

impl std::fmt::Debug for BootstrapParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapParams")
            .field("node_id", &self.node_id)
            .field("service", &self.service)
            .field("admin_port", &self.admin_port)
            .field("xds_host", &self.xds_host)
            .field("xds_port", &self.xds_port)
            .field("xds_tls", &self.xds_ca_pem.is_some())
            .field("dataplane_resource", &self.dataplane_resource)
            .field("kuma_dp_version", &self.kuma_dp_version)
            .field("delta_xds", &self.delta_xds)
            .field(
                "dataplane_token",
                &self.dataplane_token.as_deref().map(redacted),
            )
            .field("sds", &self.sds)
            .finish()
    }
}

/// The Envoy v3 bootstrap for `p`, as a JSON value (YAML is a rendering).
pub fn bootstrap(p: &BootstrapParams) -> Value {
    let mut metadata = serde_json::Map::new();
    if let Some(dp) = &p.dataplane_resource {
        metadata.insert(DATAPLANE_RESOURCE_KEY.into(), Value::String(dp.clone()));
    }
    if let Some(v) = &p.kuma_dp_version {
        metadata.insert(KUMA_DP_VERSION_KEY.into(), Value::String(v.clone()));
    }
    metadata.insert(
        "dataplane.admin.port".into(),
        Value::String(p.admin_port.to_string()),
    );
    let mut ads_service = json!({"envoy_grpc": {
        "cluster_name": "ads_cluster",
        "retry_policy": xds_retry_policy(),
    }});
    if let Some(token) = &p.dataplane_token {
        ads_service["initial_metadata"] = json!([{"key": "authorization", "value": token}]);
    }
    let mut ads_cluster = control_plane_cluster("ads_cluster", &p.xds_host, p.xds_port);
    if let Some(ca_pem) = &p.xds_ca_pem {
        ads_cluster["transport_socket"] = control_plane_tls(&p.xds_host, ca_pem);
    }
    let mut clusters = vec![ads_cluster];
    if let Some(sds) = &p.sds {
        clusters.push(sds_cluster(&p.xds_host, sds));
    }
    json!({
        "node": {
            "id": p.node_id,
            "cluster": p.service,
            "metadata": metadata,
        },
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": p.admin_port}},
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": if p.delta_xds { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                "grpc_services": [ads_service],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": clusters},
    })
}

/// A static HTTP/2 cluster to a control-plane gRPC server.
fn control_plane_cluster(name: &str, host: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STRICT_DNS",
        // kuma-cp listens on IPv4; `localhost` must not resolve to ::1 only.
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        },
        "upstream_connection_options": {"tcp_keepalive": {}},
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": host,
                "port_value": port,
            }}}}]}],
        },
    })
}

/// The `transport_socket` of a control-plane cluster: TLS that trusts only
/// the control plane's own CA (`ca_pem`; the one kept in the store signs
/// nothing but the control plane's server certificates, so the chain alone
/// authenticates the server, whatever name the proxy reaches it by). SNI is
/// the host when it is a name; TLS has no SNI for IP addresses.
fn control_plane_tls(host: &str, ca_pem: &str) -> Value {
    let mut tls = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "validation_context": {"trusted_ca": {"inline_string": ca_pem}},
        },
    });
    if host.parse::<std::net::IpAddr>().is_err() {
        tls["sni"] = json!(host);
    }
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": tls,
    })
}

/// The `kuma:sds` cluster: the SDS server on the ADS host, over TLS (see
/// [`control_plane_tls`]).
fn sds_cluster(host: &str, sds: &SdsBootstrap) -> Value {
    let mut cluster = control_plane_cluster(SDS_CLUSTER, host, sds.port);
    cluster["transport_socket"] = control_plane_tls(host, &sds.ca_pem);
    cluster
}

struct ServerState {
    manager: ResourceManager,
    config: BootstrapConfig,
    auth: DataplaneAuth,
}

/// The bootstrap server's router: `POST /bootstrap`, checking dataplane
/// tokens as `auth` says.
pub fn router(manager: ResourceManager, config: BootstrapConfig, auth: DataplaneAuth) -> Router {
    Router::new()
        .route("/bootstrap", post(handle))
        .with_state(Arc::new(ServerState {
            manager,
            config,
            auth,
        }))
}

fn service_of(spec: &DataplaneSpec) -> String {
    spec.tag_sets()
        .first()
        .and_then(|t| t.get(SERVICE_TAG))
        .cloned()
        .unwrap_or_default()
}

async fn handle(State(s): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    match bootstrap_for(&s, &headers, &body).await {
        Ok(yaml) => ([(header::CONTENT_TYPE, "application/x-yaml")], yaml).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The bootstrap (YAML) answering the request `body`.
async fn bootstrap_for(s: &ServerState, headers: &HeaderMap, body: &[u8]) -> Result<String, Error> {
    let req: BootstrapRequest =
        serde_json::from_slice(body).map_err(Error::MalformedBootstrapRequest)?;
    let mut causes = Vec::new();
    if req.mesh.is_empty() {
        causes.push(cause("mesh", "must be set"));
    }
    if req.name.is_empty() {
        causes.push(cause("name", "must be set"));
    }
    if req.admin_port == 0 {
        causes.push(cause("adminPort", "must be a port from 1 to 65535"));
    }
    if !causes.is_empty() {
        return Err(Error::InvalidBootstrapRequest(ValidationError {
            violations: causes,
        }));
    }
    let mesh_key = ResourceKey::new(ResourceType::Mesh, None, &req.mesh);
    match s.manager.get(&mesh_key).await {
        Ok(_) => {}
        Err(ManagerError::Store(StoreError::NotFound(_))) => {
            return Err(Error::MeshNotFound(req.mesh));
        }
        Err(e) => return Err(Error::Store(e)),
    }
    // Before the Dataplane is looked at: an unauthenticated caller learns
    // nothing about it.
    let token = kuma_core::tokens::strip_bearer(&req.dataplane_token);
    let token = (!token.is_empty()).then_some(token);
    let claims = match s.auth.authenticate(token, &req.mesh, &req.name).await {
        Ok(claims) => claims,
        Err(e) => {
            tracing::warn!(mesh = %req.mesh, name = %req.name, error = %e, "refused a bootstrap request");
            return Err(Error::Token(e));
        }
    };
    // The Dataplane the proxy will run as must be one its token allows.
    let authorize = |spec: &DataplaneSpec| {
        kuma_core::tokens::authorize(claims.as_ref(), &req.name, spec).map_err(|e| {
            tracing::warn!(mesh = %req.mesh, name = %req.name, error = %e, "refused a bootstrap request: the token does not allow the Dataplane");
            Error::Token(e)
        })
    };
    let (service, resource_json) = if req.dataplane_resource.trim().is_empty() {
        let key = ResourceKey::new(ResourceType::Dataplane, Some(&req.mesh), &req.name);
        match s.manager.get(&key).await {
            Ok(dp) => {
                let spec = dp.spec_as::<DataplaneSpec>().cloned().unwrap_or_default();
                authorize(&spec)?;
                (service_of(&spec), None)
            }
            Err(ManagerError::Store(StoreError::NotFound(_))) => {
                return Err(Error::DataplaneNotFound {
                    mesh: req.mesh,
                    name: req.name,
                });
            }
            Err(e) => return Err(Error::Store(e)),
        }
    } else {
        let text = &req.dataplane_resource;
        let mut dp = Resource::from_json(text)
            .or_else(|_| Resource::from_yaml(text))
            .map_err(Error::DataplaneResourceDecode)?;
        if dp.resource_type() != ResourceType::Dataplane {
            return Err(Error::NotADataplane);
        }
        if dp.meta.mesh.is_none() {
            dp.meta.mesh = Some(req.mesh.clone());
        }
        if dp.meta.name.is_empty() {
            dp.meta.name = req.name.clone();
        }
        if dp.meta.name != req.name || dp.meta.mesh.as_deref() != Some(req.mesh.as_str()) {
            return Err(Error::DataplaneMismatch {
                mesh: req.mesh,
                name: req.name,
            });
        }
        dp.validate().map_err(Error::InvalidDataplane)?;
        let spec = dp.spec_as::<DataplaneSpec>().cloned().unwrap_or_default();
        authorize(&spec)?;
        let service = service_of(&spec);
        (service, Some(dp.to_json()))
    };
    let xds_host = s.config.xds_host.clone().unwrap_or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| match h.rsplit_once(':') {
                Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_string(),
                _ => h.to_string(),
            })
            .unwrap_or_else(|| "localhost".into())
    });
    let params = BootstrapParams {
        node_id: format!("{}.{}", req.mesh, req.name),
        service,
        admin_port: req.admin_port,
        xds_host: xds_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        xds_port: s.config.xds_port,
        xds_ca_pem: s.config.xds_ca_pem.clone(),
        dataplane_resource: resource_json,
        kuma_dp_version: req.kuma_dp_version().map(str::to_string),
        delta_xds: req.delta_xds,
        // Also with checks off: a proxy that has a token keeps presenting it.
        dataplane_token: token.map(str::to_string),
        sds: s.config.sds.clone(),
    };
    serde_yaml_ng::to_string(&bootstrap(&params)).map_err(Error::RenderBootstrap)
}

fn cause(field: &str, message: &str) -> Violation {
    Violation {
        field: field.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(sds: bool) -> BootstrapParams {
        BootstrapParams {
            node_id: "default.web".into(),
            service: "web".into(),
            admin_port: 9901,
            xds_host: "cp.example".into(),
            xds_port: 5678,
            xds_ca_pem: Some("-----BEGIN CERTIFICATE-----\nCA\n".into()),
            dataplane_resource: None,
            kuma_dp_version: None,
            delta_xds: false,
            dataplane_token: Some("t0ken".into()),
            sds: sds.then(|| SdsBootstrap {
                port: 5677,
                ca_pem: "-----BEGIN CERTIFICATE-----\n".into(),
            }),
        }
    }

    #[test]
    fn ads_stream_reconnects_within_a_second() {
        let b = bootstrap(&params(true));
        let services = b["dynamic_resources"]["ads_config"]["grpc_services"]
            .as_array()
            .unwrap();
        assert_eq!(services.len(), 1);
        let grpc = &services[0]["envoy_grpc"];
        assert_eq!(grpc["cluster_name"], "ads_cluster");
        assert_eq!(
            grpc["retry_policy"],
            json!({"retry_back_off": {"base_interval": "0.25s", "max_interval": "1s"}})
        );
        // The token still travels with the stream.
        assert_eq!(
            services[0]["initial_metadata"],
            json!([{"key": "authorization", "value": "t0ken"}])
        );
    }

    /// ADS goes over TLS trusting the control plane's CA, as SDS does, with
    /// SNI the host name; an IP address gets no SNI; without a CA ADS is
    /// plaintext.
    #[test]
    fn ads_cluster_is_tls_trusting_the_control_plane_ca() {
        let b = bootstrap(&params(true));
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let ads = clusters
            .iter()
            .find(|c| c["name"] == "ads_cluster")
            .unwrap();
        let tls = &ads["transport_socket"]["typed_config"];
        assert_eq!(
            tls["@type"],
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
        );
        assert_eq!(
            tls["common_tls_context"]["validation_context"]["trusted_ca"]["inline_string"],
            "-----BEGIN CERTIFICATE-----\nCA\n"
        );
        assert_eq!(tls["sni"], "cp.example");
        let sds = clusters.iter().find(|c| c["name"] == SDS_CLUSTER).unwrap();
        assert_eq!(sds["transport_socket"]["typed_config"]["sni"], "cp.example");

        let mut p = params(false);
        p.xds_host = "127.0.0.1".into();
        let b = bootstrap(&p);
        let ads = &b["static_resources"]["clusters"][0];
        assert!(ads["transport_socket"]["typed_config"].get("sni").is_none());
        p.xds_ca_pem = None;
        let b = bootstrap(&p);
        assert!(
            b["static_resources"]["clusters"][0]
                .get("transport_socket")
                .is_none()
        );
    }

    #[test]
    fn retry_policy_renders_the_constants() {
        assert!(XDS_RETRY_BASE < XDS_RETRY_MAX);
        let p = xds_retry_policy();
        let secs = |v: &Value| -> f64 {
            v.as_str()
                .unwrap()
                .strip_suffix('s')
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(
            secs(&p["retry_back_off"]["base_interval"]),
            XDS_RETRY_BASE.as_secs_f64()
        );
        assert_eq!(
            secs(&p["retry_back_off"]["max_interval"]),
            XDS_RETRY_MAX.as_secs_f64()
        );
    }
}
