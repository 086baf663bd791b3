//! The admin server's router (`adminServer.local.port`, 5679, loopback):
//! dataplane tokens and Secrets, which the public API does not serve.
//!
//! - `POST /tokens` (and `/tokens/dataplane`) with `{"mesh"[, "name"][,
//!   "tags": {"kuma.io/service": ["backend"]}][, "type": "dataplane" |
//!   "ingress"][, "validFor": "24h"]}` answers the token as `text/plain`
//!   (no `name`: the token serves any Dataplane whose tags fit);
//! - `GET /secrets`, `GET /meshes/{mesh}/secrets` and
//!   `GET|PUT|DELETE /meshes/{mesh}/secrets/{name}`, with the same shapes,
//!   paging and errors as the public API's resource endpoints;
//! - `GET /control-plane/ca-cert` (when the control plane gives one, see
//!   [`admin_router_with_ca`]): the CA certificate (PEM) proxies trust for
//!   the control plane's TLS ports, for kuma-dp's `--ca-cert-file`.
//!
//! Every request must name a loopback host in its `Host` header
//! (`localhost`, `127.0.0.1` or `[::1]`, any port; 403 otherwise), so a web
//! page on another origin cannot reach the server through DNS rebinding,
//! and a request with a body must say `Content-Type: application/json`
//! (415 otherwise), which a browser cannot send across origins without a
//! preflight.

use super::{ApiConfig, ApiError, ApiState, method_not_allowed, parse_call, resources};
use crate::duration::KumaDuration;
use crate::manager::ResourceManager;
use crate::tokens::{DataplaneTokens, TokenError, TokenRequest, TokenTags, TokenType};
use crate::validation::Violation;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use std::sync::Arc;

struct AdminState {
    api: ApiState,
    tokens: DataplaneTokens,
}

type Shared = Arc<AdminState>;

/// The admin server's router: dataplane tokens and Secrets CRUD. Bind it to
/// loopback only: it hands out credentials and secret material.
///
/// ```
/// use kuma_core::api::admin_router;
/// use kuma_core::manager::ResourceManager;
/// use kuma_core::store::MemoryStore;
/// use kuma_core::tokens::DataplaneTokens;
/// use std::sync::Arc;
///
/// let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
/// let app: axum::Router = admin_router(manager.clone(), DataplaneTokens::new(manager));
/// # let _ = app;
/// ```
pub fn admin_router(manager: ResourceManager, tokens: DataplaneTokens) -> Router {
    admin_router_with_ca(manager, tokens, None)
}

/// As [`admin_router`], also serving `ca_pem` (the CA certificate proxies
/// trust for the control plane's TLS ports) as `GET /control-plane/ca-cert`.
pub fn admin_router_with_ca(
    manager: ResourceManager,
    tokens: DataplaneTokens,
    ca_pem: Option<String>,
) -> Router {
    let state = Arc::new(AdminState {
        api: ApiState {
            manager,
            config: ApiConfig::default(),
            auth: None,
        },
        tokens,
    });
    let issue = || post(issue_token).fallback(|| async { method_not_allowed("POST") });
    let mut router = Router::new()
        .route("/tokens", issue())
        .route("/tokens/dataplane", issue());
    if let Some(pem) = ca_pem {
        router = router.route(
            "/control-plane/ca-cert",
            get(move || async move { ([(header::CONTENT_TYPE, "application/x-pem-file")], pem) }),
        );
    }
    router
        .fallback(dispatch)
        .with_state(state)
        .layer(middleware::from_fn(local_json_only))
}

/// Whether `host` (a `Host` header's value) names the loopback interface:
/// `localhost`, `127.0.0.1` or `[::1]`, with any port or none.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, "")) => return inside == "::1",
            Some((inside, port)) if port.strip_prefix(':').is_some_and(is_port) => {
                return inside == "::1";
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1"
}

/// `1234`: a port number.
fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a request with `headers` carries a body.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Whether the `Content-Type` is JSON (`application/json`, parameters
/// allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The admin server's guard: a loopback `Host` (403) and JSON bodies
/// (415), see the module documentation.
async fn local_json_only(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if is_loopback_host(&h) => {}
        Some(h) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "the Host header {h:?} does not name this machine: the admin server answers only requests for localhost, 127.0.0.1 or [::1]"
                ),
            )
            .into_response();
        }
        None => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "the request has no Host header: the admin server answers only requests for localhost, 127.0.0.1 or [::1]",
            )
            .into_response();
        }
    }
    if has_body(headers) && !is_json(headers) {
        let given = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            format!(
                "the Content-Type header is {given:?}: the admin server takes request bodies as application/json only"
            ),
        )
        .into_response();
    }
    next.run(req).await
}

const TOKEN_TITLE: &str = "Could not issue a dataplane token";

fn bad_token_request(causes: Vec<Violation>) -> ApiError {
    ApiError {
        causes,
        ..ApiError::new(StatusCode::BAD_REQUEST, TOKEN_TITLE, "Request is not valid")
    }
}

fn cause(field: &str, message: impl Into<String>) -> Violation {
    Violation {
        field: field.into(),
        message: message.into(),
    }
}

/// Reads `{"mesh"[, "name", "tags", "type", "validFor"]}`, naming every
/// bad field.
fn token_request(body: &[u8]) -> Result<TokenRequest, ApiError> {
    const SHAPE: &str = "{\"mesh\"[, \"name\"][, \"tags\": {\"kuma.io/service\": [\"backend\"]}][, \"type\": \"dataplane\"|\"ingress\"][, \"validFor\": \"24h\"]}";
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            TOKEN_TITLE,
            format!("request body is not JSON ({e}): send {SHAPE}"),
        )
    })?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            TOKEN_TITLE,
            format!("request body must be a JSON object: {SHAPE}"),
        ));
    };
    let mut causes = Vec::new();
    let mesh = match object.get("mesh") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        None | Some(Value::Null) => {
            causes.push(cause(
                "mesh",
                "must be set: the mesh of the Dataplane the token is for",
            ));
            String::new()
        }
        Some(_) => {
            causes.push(cause(
                "mesh",
                "must be a non-empty string: the mesh of the Dataplane the token is for",
            ));
            String::new()
        }
    };
    let name = match object.get("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => {
            causes.push(cause(
                "name",
                "must be a string: the name of the Dataplane the token is for (leave it out for any Dataplane whose tags fit)",
            ));
            String::new()
        }
    };
    let tags = match object.get("tags") {
        None | Some(Value::Null) => TokenTags::new(),
        Some(v) => match serde_json::from_value::<TokenTags>(v.clone()) {
            Ok(tags) => tags,
            Err(_) => {
                causes.push(cause(
                    "tags",
                    "must map each tag to a list of values, e.g. {\"kuma.io/service\": [\"backend\"]}",
                ));
                TokenTags::new()
            }
        },
    };
    let token_type = match object.get("type") {
        None | Some(Value::Null) => TokenType::default(),
        Some(Value::String(s)) => match s.trim().parse::<TokenType>() {
            Ok(t) => t,
            Err(_) => {
                causes.push(cause(
                    "type",
                    format!(
                        "{s:?} is not a token type: use \"dataplane\" (default) or \"ingress\""
                    ),
                ));
                TokenType::default()
            }
        },
        Some(_) => {
            causes.push(cause(
                "type",
                "must be \"dataplane\" (default) or \"ingress\"",
            ));
            TokenType::default()
        }
    };
    let valid_for = match object.get("validFor") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => match s.trim().parse::<KumaDuration>() {
            Ok(d) => Some(d.as_duration()),
            Err(e) => {
                causes.push(cause("validFor", e.to_string()));
                None
            }
        },
        Some(_) => {
            causes.push(cause(
                "validFor",
                "must be a duration string like \"24h\" (default 8760h)",
            ));
            None
        }
    };
    if causes.is_empty() {
        Ok(TokenRequest {
            name,
            mesh,
            tags,
            token_type,
            valid_for,
        })
    } else {
        Err(bad_token_request(causes))
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::InvalidRequest { field, reason } => {
                bad_token_request(vec![cause(field, reason)])
            }
            TokenError::UnknownMesh(m) => ApiError {
                causes: vec![cause("mesh", format!("mesh {m:?} does not exist"))],
                ..ApiError::new(
                    StatusCode::NOT_FOUND,
                    TOKEN_TITLE,
                    format!("Mesh {m:?} does not exist: create it first"),
                )
            },
            other if other.is_unauthenticated() => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthenticated",
                other.to_string(),
            ),
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                TOKEN_TITLE,
                other.to_string(),
            ),
        }
    }
}

async fn issue_token(State(s): State<Shared>, body: Bytes) -> Response {
    let result = async {
        let request = token_request(&body)?;
        Ok::<_, ApiError>(s.tokens.issue(&request).await?)
    }
    .await;
    match result {
        Ok(token) => ([(header::CONTENT_TYPE, "text/plain")], token).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Secrets CRUD, with the public API's handlers; every other path is 404.
async fn dispatch(State(s): State<Shared>, req: Request) -> Response {
    let (call, body, segs) = parse_call(req);
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let read_only = call.method == Method::GET || call.method == Method::HEAD;
    let result = match segs.as_slice() {
        ["secrets"] | ["meshes", _, "secrets"] if !read_only => return method_not_allowed("GET"),
        ["secrets"] => resources::list(&s.api, &call, "secrets", None).await,
        ["meshes", mesh, "secrets"] => resources::list(&s.api, &call, "secrets", Some(mesh)).await,
        ["meshes", mesh, "secrets", name] => {
            resources::one(&s.api, &call, body, "secrets", Some(mesh), name).await
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!(
                "no such endpoint on the admin server: {} (it serves POST /tokens, /secrets and /meshes/{{mesh}}/secrets[/{{name}}])",
                call.path
            ),
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests;
