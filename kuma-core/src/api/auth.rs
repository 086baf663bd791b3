//! Who may change state through the public API (Kuma's model, see
//! docs/security.md, "Public API").
//!
//! Reads (`GET`, `HEAD`) are open. Writes, and the endpoints that reveal
//! credentials (`/global-secrets/...`, `POST /tokens/user`), need an admin
//! caller: a request from a loopback address when
//! [`ApiAuth::allow_from_localhost`] is set (`apiServer.auth.allowFromLocalhost`),
//! or one carrying a user token (`Authorization: Bearer <token>`) of the
//! [`ADMIN_GROUP`]. The peer address comes from the connection: the
//! server puts a [`PeerAddr`] in each request's extensions; a request
//! without one is never local.
//!
//! Endpoints of this module (only on a router built with
//! [`super::router_with_auth`]):
//! - `GET /global-secrets/admin-user-token`: `{"type": "GlobalSecret",
//!   "name": "admin-user-token", "data": <base64 of the token>}`;
//! - `DELETE /global-secrets/user-token-signing-key`: rotates the signing
//!   key (every user token stops being valid) and creates a new admin token;
//! - `POST /tokens/user` with `{"name", "groups": [..], "validFor"}`: a
//!   user token, as `text/plain`.

use super::{ApiError, Call};
use crate::duration::KumaDuration;
use crate::user_tokens::{
    ADMIN_GROUP, ADMIN_TOKEN_CONFIG, SIGNING_KEY_CONFIG, UserTokenError, UserTokenRequest,
    UserTokens,
};
use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};

/// The public API's authentication settings and token verifier.
#[derive(Debug, Clone)]
pub struct ApiAuth {
    /// Verifies (and issues) user tokens.
    pub users: UserTokens,
    /// Whether callers from a loopback address are admins without a token
    /// (`apiServer.auth.allowFromLocalhost`, default true).
    pub allow_from_localhost: bool,
}

/// The address of the client a request came from, which the server puts
/// in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Whether `peer` is this machine's loopback (`127.0.0.0/8`, `::1`, or an
/// IPv4-mapped `::ffff:127.x.y.z`). A request from another address of this
/// machine is not local: only loopback traffic cannot come from elsewhere.
pub fn is_loopback(peer: IpAddr) -> bool {
    match peer {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether the request needs an admin caller: every method but `GET` and
/// `HEAD`, and every read under `/global-secrets`.
pub(crate) fn needs_admin(method: &Method, segs: &[&str]) -> bool {
    let read = method == Method::GET || method == Method::HEAD;
    !read || segs.first() == Some(&"global-secrets")
}

/// The peer address the server recorded for this request, if any.
pub(crate) fn peer_of<B>(req: &axum::http::Request<B>) -> Option<SocketAddr> {
    req.extensions().get::<PeerAddr>().map(|c| c.0)
}

const MISSING: &str = "this request changes state or reveals secrets: send a user token of the mesh-system:admin group (Authorization: Bearer <token>; kumactl config control-planes add --auth-type tokens --auth-conf token=...)";

/// `Ok` when the caller is an admin; otherwise a 401 (no or a bad token) or
/// a 403 (a valid token outside the admin group) naming what is missing.
pub(crate) async fn check_admin(
    auth: &ApiAuth,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<(), ApiError> {
    if auth.allow_from_localhost && peer.is_some_and(|p| is_loopback(p.ip())) {
        return Ok(());
    }
    let local_hint = if auth.allow_from_localhost {
        ", or call from localhost"
    } else {
        " (apiServer.auth.allowFromLocalhost is false, so localhost needs one too)"
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let Some(token) = token else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            format!("{MISSING}{local_hint}"),
        ));
    };
    match auth.users.verify(token).await {
        Ok(user) if user.is_admin() => Ok(()),
        Ok(user) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Access Denied",
            format!(
                "user {:?} (groups {:?}) is not in the {ADMIN_GROUP} group, which this request needs",
                user.name, user.groups
            ),
        )),
        Err(e) if e.is_unauthenticated() => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            format!("{e}{local_hint}"),
        )),
        Err(e) => Err(user_token_error(e)),
    }
}

fn user_token_error(e: UserTokenError) -> ApiError {
    match e {
        UserTokenError::InvalidRequest { field, reason } => ApiError::bad_field(field, reason),
        e => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "User tokens",
            e.to_string(),
        ),
    }
}

/// Whether the path is one of this module's endpoints.
pub(crate) fn owns(segs: &[&str]) -> bool {
    matches!(segs, ["global-secrets", ..] | ["tokens", "user"])
}

/// Answers this module's own endpoints (the paths [`owns`] accepts).
pub(crate) async fn endpoints(
    auth: &ApiAuth,
    call: &Call,
    body: Body,
    segs: &[&str],
) -> Result<Response, ApiError> {
    match (&call.method, segs) {
        (&Method::GET | &Method::HEAD, ["global-secrets", ADMIN_TOKEN_CONFIG]) => {
            admin_token(&auth.users).await
        }
        (&Method::DELETE, ["global-secrets", SIGNING_KEY_CONFIG]) => auth
            .users
            .rotate()
            .await
            .map(|_| StatusCode::OK.into_response())
            .map_err(user_token_error),
        (&Method::POST, ["tokens", "user"]) => issue(&auth.users, body).await,
        (_, ["tokens", "user"]) => Ok(super::method_not_allowed("POST")),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!(
                "{} {}: the global secrets are GET /global-secrets/{ADMIN_TOKEN_CONFIG} and DELETE /global-secrets/{SIGNING_KEY_CONFIG} (rotation)",
                call.method, call.path
            ),
        )),
    }
}

async fn admin_token(users: &UserTokens) -> Result<Response, ApiError> {
    let token = users
        .stored_admin_token()
        .await
        .map_err(user_token_error)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "Not found",
                "the admin user token has not been created yet",
            )
        })?;
    let data = base64::engine::general_purpose::STANDARD.encode(token.as_bytes());
    Ok(
        Json(json!({"type": "GlobalSecret", "name": ADMIN_TOKEN_CONFIG, "data": data}))
            .into_response(),
    )
}

const MAX_TOKEN_REQUEST: usize = 64 * 1024;

async fn issue(users: &UserTokens, body: Body) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_TOKEN_REQUEST)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Could not issue a user token",
                format!("request body is larger than {MAX_TOKEN_REQUEST} bytes"),
            )
        })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Could not issue a user token",
            format!(
                "request body is not JSON ({e}): send {{\"name\": \"john\", \"groups\": [\"team-a\"], \"validFor\": \"24h\"}}"
            ),
        )
    })?;
    let name = match value.get("name") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(ApiError::bad_field("name", "must be a non-empty string")),
    };
    let groups = match value.get("groups") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|g| g.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::bad_field("groups", "must be a list of strings"))?,
        Some(_) => return Err(ApiError::bad_field("groups", "must be a list of strings")),
    };
    let valid_for = match value.get("validFor") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            s.trim()
                .parse::<KumaDuration>()
                .map_err(|e| ApiError::bad_field("validFor", e.to_string()))?
                .as_duration(),
        ),
        Some(_) => {
            return Err(ApiError::bad_field(
                "validFor",
                "must be a duration string like \"24h\" (default 8760h)",
            ));
        }
    };
    let token = users
        .issue(&UserTokenRequest {
            name,
            groups,
            valid_for,
        })
        .await
        .map_err(user_token_error)?;
    Ok(([(header::CONTENT_TYPE, "text/plain")], token).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApiConfig, router_with_auth};
    use crate::manager::ResourceManager;
    use crate::store::MemoryStore;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;
    use tower::ServiceExt;

    async fn app(allow_from_localhost: bool) -> (axum::Router, UserTokens) {
        let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
        let users = UserTokens::new(manager.clone());
        let auth = ApiAuth {
            users: users.clone(),
            allow_from_localhost,
        };
        (router_with_auth(manager, ApiConfig::default(), auth), users)
    }

    async fn call(
        app: &axum::Router,
        method: &str,
        uri: &str,
        peer: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, String) {
        let mut req = axum::http::Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let mut req = req.body(Body::from(body.to_string())).unwrap();
        if !peer.is_empty() {
            let peer: SocketAddr = peer.parse().unwrap();
            req.extensions_mut().insert(PeerAddr(peer));
        }
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    const MESH: &str = r#"{"type":"Mesh","name":"demo"}"#;

    #[tokio::test]
    async fn writes_need_localhost_or_an_admin_token() {
        let (app, users) = app(true).await;
        let admin = users.ensure_admin_token().await.unwrap();
        let remote = "10.1.2.3:40000";
        // Reads are open to anyone.
        let (s, _) = call(&app, "GET", "/meshes", remote, None, "").await;
        assert_eq!(s, StatusCode::OK);
        // A write from elsewhere without a token: 401 naming what is missing.
        let (s, body) = call(&app, "PUT", "/meshes/demo", remote, None, MESH).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("mesh-system:admin"), "{body}");
        assert!(body.contains("Authorization: Bearer"), "{body}");
        // No peer address recorded: not local either.
        let (s, _) = call(&app, "PUT", "/meshes/demo", "", None, MESH).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        // A bad token: 401, the token is not echoed.
        let (s, body) = call(&app, "DELETE", "/meshes/x", remote, Some("garbage-tok"), "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
        assert!(!body.contains("garbage-tok"), "{body}");
        // A valid token outside the admin group: 403.
        let john = users
            .issue(&UserTokenRequest {
                name: "john".into(),
                groups: vec!["team-a".into()],
                valid_for: None,
            })
            .await
            .unwrap();
        let (s, body) = call(&app, "PUT", "/meshes/demo", remote, Some(&john), MESH).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body.contains("john") && body.contains(ADMIN_GROUP),
            "{body}"
        );
        // The admin token from elsewhere, and no token from localhost: allowed.
        let (s, body) = call(&app, "PUT", "/meshes/demo", remote, Some(&admin), MESH).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let (s, body) = call(&app, "DELETE", "/meshes/demo", "127.0.0.1:5", None, "").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (s, body) = call(&app, "PUT", "/meshes/demo", "[::1]:5", None, MESH).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }

    #[tokio::test]
    async fn without_allow_from_localhost_loopback_needs_a_token_too() {
        let (app, users) = app(false).await;
        let admin = users.ensure_admin_token().await.unwrap();
        let (s, body) = call(&app, "PUT", "/meshes/demo", "127.0.0.1:5", None, MESH).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("allowFromLocalhost"), "{body}");
        let (s, _) = call(
            &app,
            "PUT",
            "/meshes/demo",
            "127.0.0.1:5",
            Some(&admin),
            MESH,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
    }

    #[tokio::test]
    async fn the_admin_token_is_readable_by_admins_and_rotation_revokes_it() {
        let (app, users) = app(true).await;
        let admin = users.ensure_admin_token().await.unwrap();
        let remote = "192.168.7.7:1234";
        let path = "/global-secrets/admin-user-token";
        let (s, _) = call(&app, "GET", path, remote, None, "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, body) = call(&app, "GET", path, "127.0.0.1:9", None, "").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "GlobalSecret");
        let data = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(data).unwrap(), admin);

        // An admin issues a user token for someone else.
        let (s, token) = call(
            &app,
            "POST",
            "/tokens/user",
            remote,
            Some(&admin),
            r#"{"name":"ci","groups":["mesh-system:admin"],"validFor":"1h"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{token}");
        let (s, _) = call(&app, "PUT", "/meshes/demo", remote, Some(&token), MESH).await;
        assert_eq!(s, StatusCode::CREATED);

        // Rotation: both tokens stop working; a new admin token is stored.
        let (s, body) = call(
            &app,
            "DELETE",
            "/global-secrets/user-token-signing-key",
            remote,
            Some(&admin),
            "",
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        for t in [&admin, &token] {
            let (s, body) = call(&app, "DELETE", "/meshes/demo", remote, Some(t), "").await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
            assert!(body.contains("rotated"), "{body}");
        }
        let new_admin = users.stored_admin_token().await.unwrap().unwrap();
        assert_ne!(new_admin, admin);
        let (s, _) = call(&app, "DELETE", "/meshes/demo", remote, Some(&new_admin), "").await;
        assert_eq!(s, StatusCode::OK);
    }

    #[test]
    fn only_loopback_peers_are_local() {
        assert!(is_loopback(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(is_loopback("127.9.9.9".parse().unwrap()));
        assert!(is_loopback(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("10.1.2.3".parse().unwrap()));
        assert!(!is_loopback("192.168.0.5".parse().unwrap()));
        assert!(!is_loopback("0.0.0.0".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("fe80::1".parse().unwrap()));
    }

    #[test]
    fn writes_and_global_secrets_need_an_admin() {
        assert!(!needs_admin(&Method::GET, &["meshes", "default"]));
        assert!(!needs_admin(&Method::HEAD, &["meshes"]));
        assert!(needs_admin(&Method::PUT, &["meshes", "default"]));
        assert!(needs_admin(&Method::DELETE, &["meshes", "default"]));
        assert!(needs_admin(&Method::POST, &["tokens", "user"]));
        assert!(needs_admin(
            &Method::GET,
            &["global-secrets", "admin-user-token"]
        ));
    }
}
