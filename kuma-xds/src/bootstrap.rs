//! Envoy bootstrap generation and the bootstrap server (`POST /bootstrap`,
//! port 5682).
//!
//! kuma-dp posts `{"mesh", "name", "adminPort", "dataplaneToken",
//! "dataplaneTokenPath", "dataplaneResource", "deltaXds",
//! "version": {"kumaDp": {"version"}}}` and gets an Envoy v3 bootstrap
//! (YAML) whose node id is `<mesh>.<name>`, whose static clusters are the
//! ADS server (`ads_cluster`) and, when configured, the SDS server
//! (`kuma:sds`, TLS trusting the control plane's SDS CA, see
//! [`SdsBootstrap`]), and whose admin listens on `127.0.0.1:<adminPort>`.
//!
//! With token checks on, `dataplaneToken` must be a valid dataplane token for
//! that mesh and name (401 naming the failed check otherwise); the bootstrap
//! then sends it to the ADS server as the `authorization` initial metadata
//! of the ADS gRPC service. A Dataplane given in the request is validated
//! here and travels in the node metadata, so the ADS server registers it on
//! every (re)connect.

use crate::ads::{DATAPLANE_RESOURCE_KEY, KUMA_DP_VERSION_KEY};
use crate::generate::names::SDS_CLUSTER;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kuma_core::manager::{ManagerError, ResourceManager};
use kuma_core::resource::{DataplaneSpec, Resource, ResourceKey, ResourceType, SERVICE_TAG};
use kuma_core::store::StoreError;
use kuma_core::tokens::DataplaneAuth;
use kuma_core::validation::Violation;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Settings of the bootstrap server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapConfig {
    /// Host Envoy dials for ADS; `None`: the host the request was sent to.
    pub xds_host: Option<String>,
    /// Port Envoy dials for ADS.
    pub xds_port: u16,
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

/// What kuma-dp asks for. `Debug` leaves the token out.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapRequest {
    /// The Dataplane's mesh.
    #[serde(default)]
    pub mesh: String,
    /// The Dataplane's name.
    #[serde(default)]
    pub name: String,
    /// Port of Envoy's admin interface.
    #[serde(default)]
    pub admin_port: u16,
    /// The dataplane token (the content of kuma-dp's token file), or empty.
    #[serde(default)]
    pub dataplane_token: String,
    /// Path of the dataplane token file on the proxy's host (informational:
    /// the token itself travels in `dataplaneToken`).
    #[serde(default)]
    pub dataplane_token_path: String,
    /// The Dataplane to register (JSON or YAML text), or empty.
    #[serde(default)]
    pub dataplane_resource: String,
    /// Ask for incremental (delta) ADS.
    #[serde(default)]
    pub delta_xds: bool,
    /// Versions of the requesting components.
    #[serde(default)]
    pub version: Value,
}

impl std::fmt::Debug for BootstrapRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapRequest")
            .field("mesh", &self.mesh)
            .field("name", &self.name)
            .field("admin_port", &self.admin_port)
            .field("dataplane_token", &redacted(&self.dataplane_token))
            .field("dataplane_token_path", &self.dataplane_token_path)
            .field("dataplane_resource", &self.dataplane_resource)
            .field("delta_xds", &self.delta_xds)
            .field("version", &self.version)
            .finish()
    }
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
    let mut ads_service = json!({"envoy_grpc": {"cluster_name": "ads_cluster"}});
    if let Some(token) = &p.dataplane_token {
        ads_service["initial_metadata"] = json!([{"key": "authorization", "value": token}]);
    }
    let mut clusters = vec![control_plane_cluster(
        "ads_cluster",
        &p.xds_host,
        p.xds_port,
    )];
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

/// The `kuma:sds` cluster: the SDS server on the ADS host, over TLS that
/// trusts only the control plane's own SDS CA (generated at start and
/// signing nothing but the SDS server's certificate, so the chain alone
/// authenticates the server, whatever name the proxy reaches it by). SNI is
/// the host when it is a name; TLS has no SNI for IP addresses.
fn sds_cluster(host: &str, sds: &SdsBootstrap) -> Value {
    let mut cluster = control_plane_cluster(SDS_CLUSTER, host, sds.port);
    let mut tls = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "validation_context": {"trusted_ca": {"inline_string": sds.ca_pem}},
        },
    });
    if host.parse::<std::net::IpAddr>().is_err() {
        tls["sni"] = json!(host);
    }
    cluster["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": tls,
    });
    cluster
}

/// A 4xx/5xx in Kuma's error shape.
fn error(status: StatusCode, details: impl Into<String>, causes: Vec<Violation>) -> Response {
    let body = json!({"title": "Could not generate a bootstrap", "details": details.into(), "causes": causes});
    (status, Json(body)).into_response()
}

fn cause(field: &str, message: impl Into<String>) -> Violation {
    Violation {
        field: field.into(),
        message: message.into(),
    }
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
    let req: BootstrapRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("malformed bootstrap request: {e}"),
                vec![],
            );
        }
    };
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
        return error(StatusCode::BAD_REQUEST, "bad bootstrap request", causes);
    }
    let mesh_key = ResourceKey::new(ResourceType::Mesh, None, &req.mesh);
    match s.manager.get(&mesh_key).await {
        Ok(_) => {}
        Err(ManagerError::Store(StoreError::NotFound(_))) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("mesh {:?} does not exist", req.mesh),
                vec![cause("mesh", "no such mesh")],
            );
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), vec![]),
    }
    // Before the Dataplane is looked at: an unauthenticated caller learns
    // nothing about it.
    let token = kuma_core::tokens::strip_bearer(&req.dataplane_token);
    let token = (!token.is_empty()).then_some(token);
    if let Err(e) = s.auth.check(token, &req.mesh, &req.name).await {
        let (status, field) = if e.is_unauthenticated() {
            (StatusCode::UNAUTHORIZED, "dataplaneToken")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "")
        };
        tracing::warn!(mesh = %req.mesh, name = %req.name, error = %e, "refused a bootstrap request");
        let causes = if field.is_empty() {
            vec![]
        } else {
            vec![cause(field, e.to_string())]
        };
        return error(status, e.to_string(), causes);
    }
    let (service, resource_json) = if req.dataplane_resource.trim().is_empty() {
        let key = ResourceKey::new(ResourceType::Dataplane, Some(&req.mesh), &req.name);
        match s.manager.get(&key).await {
            Ok(dp) => (
                dp.spec_as::<DataplaneSpec>()
                    .map(service_of)
                    .unwrap_or_default(),
                None,
            ),
            Err(ManagerError::Store(StoreError::NotFound(_))) => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "Dataplane {:?} in mesh {:?} does not exist: apply it first, or pass it to kuma-dp with --dataplane-file",
                        req.name, req.mesh
                    ),
                    vec![cause("name", "no such Dataplane")],
                );
            }
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), vec![]),
        }
    } else {
        let text = &req.dataplane_resource;
        let mut dp = match Resource::from_json(text).or_else(|_| Resource::from_yaml(text)) {
            Ok(r) => r,
            Err(e) => {
                let causes = e
                    .violations()
                    .iter()
                    .map(|v| cause(&format!("dataplaneResource.{}", v.field), v.message.clone()))
                    .collect();
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("dataplaneResource: {e}"),
                    causes,
                );
            }
        };
        if dp.resource_type() != ResourceType::Dataplane {
            return error(
                StatusCode::BAD_REQUEST,
                "dataplaneResource must be a Dataplane",
                vec![cause("dataplaneResource.type", "must be Dataplane")],
            );
        }
        if dp.meta.mesh.is_none() {
            dp.meta.mesh = Some(req.mesh.clone());
        }
        if dp.meta.name.is_empty() {
            dp.meta.name = req.name.clone();
        }
        if dp.meta.name != req.name || dp.meta.mesh.as_deref() != Some(req.mesh.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                "dataplaneResource names another Dataplane than the request",
                vec![cause(
                    "dataplaneResource.name",
                    format!("must be {:?} in mesh {:?}", req.name, req.mesh),
                )],
            );
        }
        if let Err(v) = dp.validate() {
            let causes = v
                .violations
                .iter()
                .map(|v| cause(&format!("dataplaneResource.{}", v.field), v.message.clone()))
                .collect();
            return error(
                StatusCode::BAD_REQUEST,
                "dataplaneResource is not valid",
                causes,
            );
        }
        let service = dp
            .spec_as::<DataplaneSpec>()
            .map(service_of)
            .unwrap_or_default();
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
        dataplane_resource: resource_json,
        kuma_dp_version: req.version["kumaDp"]["version"]
            .as_str()
            .map(str::to_string),
        delta_xds: req.delta_xds,
        // Also with checks off: a proxy that has a token keeps presenting it.
        dataplane_token: token.map(str::to_string),
        sds: s.config.sds.clone(),
    };
    match serde_yaml_ng::to_string(&bootstrap(&params)) {
        Ok(yaml) => ([(header::CONTENT_TYPE, "application/x-yaml")], yaml).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), vec![]),
    }
}
