//! Kuma's HTTP API (port 5681) as an [`axum::Router`] the binary mounts.
//!
//! Endpoints (see `docs/architecture.md`, "HTTP API"): `/`, `/catalog`, `/config`; mesh-scoped CRUD under
//! `/meshes/{mesh}/{type-path}[/{name}]`; global CRUD under
//! `/{type-path}[/{name}]`; cross-mesh listing `/{type-path}`;
//! `dataplanes+insights`, `zones+insights` and `/status/zones`. Lists are
//! paged with `size` (default 100, max 1000) and `offset`, and link the next
//! page in `next`. Errors use Kuma's `{title, details, causes}` shape.
//!
//! The router only needs a [`ResourceManager`]: every write goes through
//! validation before it reaches the store.
//!
//! Secrets are not served here: every `secrets` path answers 403 and points
//! at the admin server, whose router is `admin_router` (dataplane tokens
//! and Secrets CRUD, bound to loopback by the binary; it needs the `tokens`
//! feature).
//!
//! ```
//! use kuma_core::api::{router, ApiConfig};
//! use kuma_core::manager::ResourceManager;
//! use kuma_core::store::MemoryStore;
//! use std::sync::Arc;
//!
//! let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
//! let app: axum::Router = router(manager, ApiConfig::default());
//! # let _ = app;
//! ```

#[cfg(feature = "tokens")]
mod admin;
#[cfg(feature = "tokens")]
pub mod auth;
mod error;
mod overview;
pub mod redact;
mod resources;

#[cfg(feature = "tokens")]
pub use admin::{admin_router, admin_router_with_ca, is_loopback_host};
pub use error::ApiError;

use crate::manager::ResourceManager;
use crate::resource::ResourceType;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;

/// Which control-plane mode the API serves, for its write restrictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiMode {
    /// Everything may be written.
    #[default]
    Standalone,
    /// Dataplanes are read-only (they live in zones).
    Global,
    /// Only Dataplanes may be written (the rest comes from global).
    Remote,
}

/// Addresses advertised on `/catalog`, so clients find the other servers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    /// Bootstrap server URL, e.g. `http://localhost:5682`.
    pub bootstrap_url: String,
    /// Admin server URL for local clients (dataplane tokens, provided CA).
    pub admin_local_url: String,
    /// Admin server URL for remote clients (empty when not exposed).
    pub admin_public_url: String,
    /// Monitoring Assignment server URL.
    pub monitoring_assignment_url: String,
}

/// Settings of the API router.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// Mode, for write restrictions.
    pub mode: ApiMode,
    /// Refuse every write (`apiServer.readOnly`).
    pub read_only: bool,
    /// Hostname reported on `/`.
    pub hostname: String,
    /// Version reported on `/`.
    pub version: String,
    /// What `/catalog` advertises.
    pub catalog: Catalog,
    /// What `/config` returns: the effective control-plane configuration.
    pub effective_config: serde_json::Value,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            mode: ApiMode::Standalone,
            read_only: false,
            hostname: "localhost".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            catalog: Catalog::default(),
            effective_config: json!({}),
            max_body_bytes: 1024 * 1024,
        }
    }
}

pub(crate) struct ApiState {
    pub(crate) manager: ResourceManager,
    pub(crate) config: ApiConfig,
    /// `None`: every caller may write (the router of [`router`]).
    #[cfg(feature = "tokens")]
    pub(crate) auth: Option<auth::ApiAuth>,
}

type Shared = Arc<ApiState>;

/// The API router over `manager`, with no authentication: every caller
/// may write. For embedders that authenticate in front of it and for
/// tests; the control plane serves [`router_with_auth`].
pub fn router(manager: ResourceManager, config: ApiConfig) -> Router {
    routes(ApiState {
        manager,
        config,
        #[cfg(feature = "tokens")]
        auth: None,
    })
}

/// The API router over `manager` where writes and secret-revealing reads
/// need an admin caller as `auth` says (see [`auth`]), with the user token
/// endpoints of [`auth`]. The server must put the peer address in each
/// request's extensions as an [`auth::PeerAddr`].
#[cfg(feature = "tokens")]
pub fn router_with_auth(
    manager: ResourceManager,
    config: ApiConfig,
    auth: auth::ApiAuth,
) -> Router {
    routes(ApiState {
        manager,
        config,
        auth: Some(auth),
    })
}

fn routes(state: ApiState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/", get(index))
        .route("/catalog", get(catalog))
        .route("/config", get(effective_config))
        .fallback(dispatch)
        .with_state(state)
}

async fn index(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(json!({
        "hostname": s.config.hostname,
        "tagline": "Kuma",
        "version": s.config.version,
    }))
}

async fn catalog(State(s): State<Shared>) -> Json<serde_json::Value> {
    let c = &s.config.catalog;
    Json(json!({
        "apis": {
            "bootstrap": {"url": c.bootstrap_url},
            "dataplaneToken": {"localUrl": c.admin_local_url, "publicUrl": c.admin_public_url},
            "admin": {"localUrl": c.admin_local_url, "publicUrl": c.admin_public_url},
            "monitoringAssignment": {"url": c.monitoring_assignment_url},
        }
    }))
}

async fn effective_config(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(s.config.effective_config.clone())
}

/// What the request asked for, once the path is understood.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
}

impl Call {
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) fn method_not_allowed(allowed: &str) -> Response {
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        format!("this endpoint accepts {allowed}"),
    )
    .into_response();
    if let Ok(v) = allowed.replace(' ', "").parse() {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

/// Splits a request into the call, its body and its path segments.
pub(crate) fn parse_call(req: Request) -> (Call, Body, Vec<String>) {
    let (parts, body) = req.into_parts();
    let query = form_pairs(parts.uri.query().unwrap_or(""));
    let call = Call {
        method: parts.method,
        headers: parts.headers,
        path: parts.uri.path().to_string(),
        query,
    };
    let segs: Vec<String> = call
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    (call, body, segs)
}

/// Whether a path names Secrets (`/secrets[/..]`,
/// `/meshes/{mesh}/secrets[/..]`), which only the admin server serves.
fn names_secrets(segs: &[&str]) -> bool {
    let type_path = match segs {
        ["meshes", _, path, ..] => path,
        [path, ..] => path,
        [] => return false,
    };
    ResourceType::from_path(type_path) == Some(ResourceType::Secret)
}

/// The answer to every secrets path of the public API.
fn secrets_forbidden() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "Access Denied",
        "secrets are served only by the admin server (adminServer.local.port, loopback)",
    )
    .into_response()
}

/// Routes every resource path by hand, so unknown type paths, wrong methods
/// and mode restrictions all get Kuma-shaped errors.
async fn dispatch(State(s): State<Shared>, req: Request) -> Response {
    #[cfg(feature = "tokens")]
    let peer = auth::peer_of(&req);
    let (call, body, segs) = parse_call(req);
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    #[cfg(feature = "tokens")]
    if let Some(a) = &s.auth {
        if auth::needs_admin(&call.method, &segs)
            && let Err(e) = auth::check_admin(a, &call.headers, peer).await
        {
            return e.into_response();
        }
        if auth::owns(&segs) {
            return auth::endpoints(a, &call, body, &segs)
                .await
                .unwrap_or_else(IntoResponse::into_response);
        }
    }
    if names_secrets(&segs) {
        return secrets_forbidden();
    }
    let read_only = call.method == Method::GET || call.method == Method::HEAD;
    let result = match segs.as_slice() {
        ["status", "zones"] if read_only => overview::zone_status(&s).await,
        ["zones+insights"] if read_only => overview::zones(&s, &call, None).await,
        ["zones+insights", name] if read_only => overview::zones(&s, &call, Some(name)).await,
        ["dataplanes+insights"] if read_only => overview::dataplanes(&s, &call, None, None).await,
        ["meshes", mesh, "dataplanes+insights"] if read_only => {
            overview::dataplanes(&s, &call, Some(mesh), None).await
        }
        ["meshes", mesh, "dataplanes+insights", name] if read_only => {
            overview::dataplanes(&s, &call, Some(mesh), Some(name)).await
        }
        ["status", "zones"]
        | ["zones+insights", ..]
        | ["dataplanes+insights"]
        | ["meshes", _, "dataplanes+insights", ..] => return method_not_allowed("GET"),
        ["meshes", mesh, path] => {
            if !read_only {
                return method_not_allowed("GET");
            }
            resources::list(&s, &call, path, Some(mesh)).await
        }
        ["meshes", mesh, path, name] => {
            resources::one(&s, &call, body, path, Some(mesh), name).await
        }
        [path] => {
            if !read_only {
                return method_not_allowed("GET");
            }
            resources::list(&s, &call, path, None).await
        }
        [path, name] => resources::one(&s, &call, body, path, None, name).await,
        _ => Err(ApiError::unknown_path(&call.path)),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Decodes `a=1&b=2` (with `+` and `%XX` escapes) into pairs.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode() {
        assert_eq!(
            form_pairs("tag=kuma.io%2Fservice%3Aweb&size=2&x"),
            vec![
                ("tag".to_string(), "kuma.io/service:web".to_string()),
                ("size".to_string(), "2".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}

#[cfg(test)]
mod router_tests;
