//! The admin server of the real `kuma-cp` (`adminServer.local.port`,
//! loopback): dataplane tokens and Secrets, which the public API refuses;
//! `kumactl` finds it through `/catalog`; `dpServer.auth.type` shows in the
//! effective configuration.

use kuma_testing::{ControlPlane, http_delete, http_get, http_post, http_put, json, write_file};

const SECRET: &str = "type: Secret\nmesh: default\nname: db-password\ndata: c3VwZXJzZWNyZXQ=\n";
const SECRET_DATA: &str = "c3VwZXJzZWNyZXQ=";

fn forbidden() -> serde_json::Value {
    serde_json::json!({
        "title": "Access Denied",
        "details": "secrets are served only by the admin server (adminServer.local.port, loopback)"
    })
}

#[test]
fn the_admin_server_listens_on_loopback_and_is_in_the_catalog() {
    let cp = ControlPlane::start(&[]);
    let line = cp
        .startup_log
        .iter()
        .find(|l| l.contains("listening server=\"admin\""))
        .expect("the admin server's address is logged");
    assert!(line.contains("address=127.0.0.1:"), "{line}");
    let port = cp.admin.rsplit(':').next().unwrap();

    let catalog = json(&http_get(&cp.url("/catalog")).1);
    let local = format!("http://localhost:{port}");
    assert_eq!(
        catalog["apis"]["dataplaneToken"]["localUrl"],
        local.as_str()
    );
    assert_eq!(catalog["apis"]["admin"]["localUrl"], local.as_str());

    // The admin server serves tokens and Secrets only.
    let (status, body) = http_get(&format!("{}/meshes", cp.admin));
    assert_eq!(status, 404, "{body}");
}

#[test]
fn secrets_only_on_the_admin_server() {
    let cp = ControlPlane::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "secret.yaml", SECRET);

    // kumactl sends Secrets to the admin server.
    cp.kumactl_ok(&["apply", "-f", file.to_str().unwrap()]);
    let table = cp.kumactl_ok(&["get", "secrets"]);
    assert!(table.contains("db-password"), "{table}");
    let yaml = cp.kumactl_ok(&["get", "secret", "db-password", "-o", "yaml"]);
    assert!(yaml.contains(SECRET_DATA), "{yaml}");

    let (status, body) = http_get(&format!("{}/meshes/default/secrets/db-password", cp.admin));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["data"], SECRET_DATA);
    let (status, body) = http_get(&format!("{}/secrets", cp.admin));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["total"], 1);

    // The public API refuses every secrets path, list or item, any method.
    for path in [
        "/secrets",
        "/secrets/db-password",
        "/meshes/default/secrets",
        "/meshes/default/secrets/db-password",
    ] {
        let (status, body) = http_get(&cp.url(path));
        assert_eq!(status, 403, "GET {path}: {body}");
        assert_eq!(json(&body), forbidden(), "GET {path}");
        let (status, _) = http_delete(&cp.url(path));
        assert_eq!(status, 403, "DELETE {path}");
        let (status, _) = http_put(&cp.url(path), "application/x-yaml", SECRET.as_bytes());
        assert_eq!(status, 403, "PUT {path}");
    }
    // ... and shows secret data nowhere else.
    for path in [
        "/meshes",
        "/meshes/default",
        "/meshes/default/dataplanes",
        "/dataplanes+insights",
        "/config",
    ] {
        let (_, body) = http_get(&cp.url(path));
        assert!(!body.contains(SECRET_DATA), "{path}: {body}");
    }
    let stats = cp.kumactl_ok(&["inspect", "meshes", "-o", "json"]);
    assert!(!stats.contains(SECRET_DATA), "{stats}");

    // Delete through kumactl, again on the admin server.
    cp.kumactl_ok(&["delete", "secret", "db-password"]);
    let (status, _) = http_get(&format!("{}/meshes/default/secrets/db-password", cp.admin));
    assert_eq!(status, 404);
}

#[test]
fn tokens_from_the_admin_server_and_kumactl() {
    let cp = ControlPlane::start(&[]);
    let url = format!("{}/tokens", cp.admin);
    let (status, token) = http_post(
        &url,
        "application/json",
        br#"{"name":"web-1","mesh":"default","validFor":"1h"}"#,
    );
    assert_eq!(status, 200, "{token}");
    assert_eq!(token.split('.').count(), 3, "{token}");

    let (status, body) = http_post(&url, "application/json", br#"{"name":"a"}"#);
    assert_eq!(status, 400, "{body}");
    assert_eq!(json(&body)["causes"][0]["field"], "mesh");
    // No name: a token for any Dataplane whose tags fit.
    let (status, body) = http_post(
        &url,
        "application/json",
        br#"{"mesh":"default","tags":{"kuma.io/service":["web"]}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_post(&url, "application/json", br#"{"name":"a","mesh":"nope"}"#);
    assert_eq!(status, 404, "{body}");

    let out = cp.kumactl_ok(&["generate", "dataplane-token", "--name", "web-2"]);
    assert_eq!(out.trim().split('.').count(), 3, "{out}");
    let out = cp.kumactl(&[
        "generate",
        "dataplane-token",
        "--name",
        "x",
        "--valid-for",
        "soon",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--valid-for"), "{err}");

    // The signing key is a Secret of the mesh, on the admin server only.
    let (status, _) = http_get(&format!(
        "{}/meshes/default/secrets/dataplane-token-signing-key",
        cp.admin
    ));
    assert_eq!(status, 200);
    let (status, _) = http_get(&cp.url("/meshes/default/secrets/dataplane-token-signing-key"));
    assert_eq!(status, 403);
}

#[test]
fn dp_server_auth_type_is_in_the_effective_config() {
    let cp = ControlPlane::start(&[]);
    let config = json(&http_get(&cp.url("/config")).1);
    assert_eq!(config["dpServer"]["auth"]["type"], "dpToken");
    drop(cp);
    let cp = ControlPlane::start(&[("KUMA_DP_SERVER_AUTH_TYPE", "none")]);
    let config = json(&http_get(&cp.url("/config")).1);
    assert_eq!(config["dpServer"]["auth"]["type"], "none");
    assert!(
        cp.startup_log
            .iter()
            .any(|l| l.contains("dpServer.auth.type is none")),
        "{:?}",
        cp.startup_log
    );
}
