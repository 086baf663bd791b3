//! Admin router tests through `tower::ServiceExt::oneshot`, no sockets.

use super::*;
use crate::resource::Resource;
use crate::store::MemoryStore;
use axum::body::Body;
use axum::http::Request as HttpRequest;
use tower::ServiceExt;

async fn setup() -> (Router, Router, DataplaneTokens) {
    let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
    for mesh in ["default", "other"] {
        manager
            .create(Resource::from_yaml(&format!("type: Mesh\nname: {mesh}")).unwrap())
            .await
            .unwrap();
    }
    let tokens = DataplaneTokens::new(manager.clone());
    let admin = admin_router(manager.clone(), tokens.clone());
    let public = super::super::router(manager, ApiConfig::default());
    (admin, public, tokens)
}

/// (status, content type, body text).
async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, String, String) {
    let req = HttpRequest::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost:5679")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, ct, String::from_utf8(bytes.to_vec()).unwrap())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn cause_fields(text: &str) -> Vec<String> {
    json(text)["causes"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|c| c["field"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn tokens_are_issued_as_text() {
    let (admin, _, tokens) = setup().await;
    for path in ["/tokens", "/tokens/dataplane"] {
        let (status, ct, token) =
            call(&admin, "POST", path, r#"{"name":"web-1","mesh":"default"}"#).await;
        assert_eq!(status, StatusCode::OK, "{token}");
        assert_eq!(ct, "text/plain");
        let claims = tokens.verify(&token, "default", "web-1").await.unwrap();
        let validity = claims.expires_at.duration_since(claims.issued_at).unwrap();
        assert_eq!(validity, crate::tokens::DEFAULT_VALIDITY);
    }
    let (status, _, token) = call(
        &admin,
        "POST",
        "/tokens",
        r#"{"name":"web-1","mesh":"other","validFor":"24h"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let claims = tokens.verify(&token, "other", "web-1").await.unwrap();
    let validity = claims.expires_at.duration_since(claims.issued_at).unwrap();
    assert_eq!(validity.as_secs(), 86_400);
}

#[tokio::test]
async fn tokens_carry_tags_and_type_and_need_no_name() {
    let (admin, _, tokens) = setup().await;
    let (status, _, token) = call(
        &admin,
        "POST",
        "/tokens",
        r#"{"mesh":"default","tags":{"kuma.io/service":["backend","web"]},"validFor":"1h"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    // No name: it verifies for any Dataplane name.
    for name in ["backend-1", "backend-2"] {
        let claims = tokens.verify(&token, "default", name).await.unwrap();
        assert_eq!(claims.name, None);
        assert_eq!(
            claims.tags["kuma.io/service"],
            ["backend".to_string(), "web".to_string()]
        );
        assert_eq!(claims.token_type, crate::tokens::TokenType::Dataplane);
    }
    let (status, _, token) = call(
        &admin,
        "POST",
        "/tokens",
        r#"{"name":"ingress-1","mesh":"default","type":"ingress"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let claims = tokens.verify(&token, "default", "ingress-1").await.unwrap();
    assert_eq!(claims.name.as_deref(), Some("ingress-1"));
    assert_eq!(claims.token_type, crate::tokens::TokenType::Ingress);
    assert!(claims.tags.is_empty());
}

#[tokio::test]
async fn bad_token_requests_name_the_field() {
    let (admin, _, _) = setup().await;
    let cases: &[(&str, &[&str])] = &[
        (r#"{"name":"a"}"#, &["mesh"]),
        (r#"{}"#, &["mesh"]),
        (r#"{"name":7,"mesh":7}"#, &["mesh", "name"]),
        (r#"{"mesh":"default","tags":["backend"]}"#, &["tags"]),
        (
            r#"{"mesh":"default","tags":{"kuma.io/service":"backend"}}"#,
            &["tags"],
        ),
        (
            r#"{"mesh":"default","tags":{"kuma.io/service":[]}}"#,
            &["tags"],
        ),
        (r#"{"mesh":"default","type":"gateway"}"#, &["type"]),
        (r#"{"mesh":"default","type":1}"#, &["type"]),
        (
            r#"{"name":"a","mesh":"default","validFor":"soon"}"#,
            &["validFor"],
        ),
        (
            r#"{"name":"a","mesh":"default","validFor":3600}"#,
            &["validFor"],
        ),
        (
            r#"{"name":"a","mesh":"default","validFor":"0s"}"#,
            &["validFor"],
        ),
    ];
    for (body, fields) in cases {
        let (status, ct, text) = call(&admin, "POST", "/tokens", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(ct.starts_with("application/json"), "{ct}");
        assert_eq!(cause_fields(&text), *fields, "{body}: {text}");
        assert_eq!(json(&text)["title"], TOKEN_TITLE);
    }
    for body in ["not json", "[1]", ""] {
        let (status, _, text) = call(&admin, "POST", "/tokens", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(json(&text)["details"].as_str().unwrap().contains("JSON"));
    }
}

#[tokio::test]
async fn tokens_for_unknown_meshes_are_404() {
    let (admin, _, _) = setup().await;
    let (status, _, text) = call(&admin, "POST", "/tokens", r#"{"name":"a","mesh":"nope"}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert_eq!(cause_fields(&text), ["mesh"]);
    assert!(
        json(&text)["details"]
            .as_str()
            .unwrap()
            .contains("\"nope\""),
        "{text}"
    );
}

#[tokio::test]
async fn tokens_take_post_only() {
    let (admin, _, _) = setup().await;
    let (status, _, text) = call(&admin, "GET", "/tokens", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{text}");
    assert!(json(&text)["details"].as_str().unwrap().contains("POST"));
}

#[tokio::test]
async fn secrets_crud_on_the_admin_server() {
    let (admin, _, _) = setup().await;
    let secret = r#"{"type":"Secret","mesh":"default","name":"s1","data":"c2VjcmV0"}"#;
    let (status, _, text) = call(&admin, "PUT", "/meshes/default/secrets/s1", secret).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let (status, _, text) = call(&admin, "GET", "/meshes/default/secrets/s1", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&text)["data"], "c2VjcmV0");

    let (_, _, text) = call(&admin, "GET", "/meshes/default/secrets", "").await;
    assert_eq!(json(&text)["total"], 1);
    let (_, _, text) = call(&admin, "GET", "/secrets", "").await;
    assert_eq!(json(&text)["items"][0]["name"], "s1");
    let (_, _, text) = call(&admin, "GET", "/meshes/other/secrets", "").await;
    assert_eq!(json(&text)["total"], 0);

    // Validation and identity checks are the public API's.
    let (status, _, text) = call(
        &admin,
        "PUT",
        "/meshes/default/secrets/s2",
        r#"{"type":"Secret","mesh":"default","name":"s2","data":"!!"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(cause_fields(&text), ["data"]);

    let (status, _, _) = call(&admin, "DELETE", "/meshes/default/secrets/s1", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&admin, "GET", "/meshes/default/secrets/s1", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&admin, "POST", "/secrets", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_admin_server_serves_nothing_else() {
    let (admin, _, _) = setup().await;
    for path in [
        "/",
        "/meshes",
        "/meshes/default/dataplanes",
        "/secrets/x",
        "/config",
    ] {
        let (status, _, text) = call(&admin, "GET", path, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {text}");
        assert!(text.contains("admin server"), "{text}");
    }
}

#[tokio::test]
async fn the_public_api_refuses_every_secrets_path() {
    let (admin, public, _) = setup().await;
    let secret = r#"{"type":"Secret","mesh":"default","name":"s1","data":"c3VwZXJzZWNyZXQ="}"#;
    let (status, _, _) = call(&admin, "PUT", "/meshes/default/secrets/s1", secret).await;
    assert_eq!(status, StatusCode::CREATED);
    // The token signing key is a Secret too.
    call(
        &admin,
        "POST",
        "/tokens",
        r#"{"name":"a","mesh":"default"}"#,
    )
    .await;

    let expected = serde_json::json!({
        "title": "Access Denied",
        "details": "secrets are served only by the admin server (adminServer.local.port, loopback)"
    });
    for method in ["GET", "PUT", "DELETE", "POST"] {
        for path in [
            "/secrets",
            "/secrets/s1",
            "/meshes/default/secrets",
            "/meshes/default/secrets/s1",
            "/meshes/default/secrets/dataplane-token-signing-key",
            "/meshes/nope/secrets",
            "/secrets?size=1",
        ] {
            let (status, _, text) = call(&public, method, path, secret).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {text}");
            assert_eq!(json(&text), expected, "{method} {path}");
        }
    }
    // Nothing else the public API lists shows secret data.
    for path in [
        "/meshes",
        "/meshes/default",
        "/meshes/default/dataplanes",
        "/dataplanes+insights",
        "/meshes/default/dataplanes+insights",
        "/config",
        "/catalog",
    ] {
        let (_, _, text) = call(&public, "GET", path, "").await;
        assert!(!text.contains("c3VwZXJzZWNyZXQ"), "{path}: {text}");
        assert!(!text.contains("signing-key"), "{path}: {text}");
    }
    // And the Secret is still there.
    let (status, _, _) = call(&admin, "GET", "/meshes/default/secrets/s1", "").await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn loopback_hosts_are_recognised() {
    for ok in [
        "localhost",
        "LOCALHOST:5679",
        "127.0.0.1",
        "127.0.0.1:5679",
        "[::1]",
        "[::1]:5679",
    ] {
        assert!(is_loopback_host(ok), "{ok}");
    }
    for bad in [
        "evil.example",
        "evil.example:5679",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "127.0.0.2",
        "::1",
        "[::2]:5679",
        "[::1]x",
        "localhost:",
        "localhost:port",
        "",
    ] {
        assert!(!is_loopback_host(bad), "{bad}");
    }
}

/// A request as a browser on another origin could send it.
async fn raw(app: &Router, req: HttpRequest<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_foreign_host_header_is_refused_naming_the_header() {
    let (admin, _, _) = setup().await;
    let body = r#"{"name":"web-1","mesh":"default"}"#;
    for host in ["evil.example", "evil.example:5679", "10.0.0.1:5679"] {
        let req = HttpRequest::builder()
            .method("POST")
            .uri("/tokens")
            .header("host", host)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(Body::from(body))
            .unwrap();
        let (status, text) = raw(&admin, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host}: {text}");
        assert!(text.contains("Host header"), "{text}");
        assert!(text.contains(host), "{text}");
        assert!(!text.contains("eyJ"), "no token: {text}");
        let req = HttpRequest::builder()
            .uri("/secrets")
            .header("host", host)
            .body(Body::empty())
            .unwrap();
        assert_eq!(raw(&admin, req).await.0, StatusCode::FORBIDDEN);
    }
    // No Host at all.
    let req = HttpRequest::builder()
        .uri("/secrets")
        .body(Body::empty())
        .unwrap();
    let (status, text) = raw(&admin, req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(text.contains("Host header"), "{text}");
    // Loopback names pass.
    for host in ["localhost:5679", "127.0.0.1:5679", "[::1]:5679"] {
        let req = HttpRequest::builder()
            .uri("/secrets")
            .header("host", host)
            .body(Body::empty())
            .unwrap();
        assert_eq!(raw(&admin, req).await.0, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn bodies_must_be_json() {
    let (admin, _, _) = setup().await;
    let body = r#"{"name":"web-1","mesh":"default"}"#;
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut req = HttpRequest::builder()
            .method("POST")
            .uri("/tokens")
            .header("host", "localhost:5679")
            .header("content-length", body.len());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let (status, text) = raw(&admin, req.body(Body::from(body)).unwrap()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}: {text}");
        assert!(text.contains("Content-Type"), "{text}");
    }
    let req = HttpRequest::builder()
        .method("POST")
        .uri("/tokens")
        .header("host", "localhost:5679")
        .header("content-type", "application/json; charset=utf-8")
        .header("content-length", body.len())
        .body(Body::from(body))
        .unwrap();
    let (status, text) = raw(&admin, req).await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

#[tokio::test]
async fn the_ca_certificate_is_served_when_given() {
    let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
    let tokens = DataplaneTokens::new(manager.clone());
    let pem = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
    let with = admin_router_with_ca(manager.clone(), tokens.clone(), Some(pem.into()));
    let get = || {
        HttpRequest::builder()
            .uri("/control-plane/ca-cert")
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(raw(&with, get()).await, (StatusCode::OK, pem.to_string()));
    let without = admin_router(manager, tokens);
    assert_eq!(raw(&without, get()).await.0, StatusCode::NOT_FOUND);
}
