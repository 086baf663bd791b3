//! End to end: kuma-cp on its default store, the local one. State survives
//! `kill -9` (resources, creation times, the token signing key); a second
//! kuma-cp on the same directory and a directory holding something else are
//! refused with one line naming the setting.

use kuma_testing::{
    ControlPlane, StoreDir, http_get, http_put, json, kuma_cp_command, run_to_exit,
};

const YAML: &str = "application/yaml";

const ROUTE: &str = "type: TrafficRoute\nmesh: demo\nname: route-1\n\
    sources: [{match: {kuma.io/service: '*'}}]\n\
    destinations: [{match: {kuma.io/service: '*'}}]\n\
    conf: {destination: {kuma.io/service: '*'}}\n";

const DATAPLANE: &str = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  \
    address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n";

fn get(url: &str) -> serde_json::Value {
    let (status, body) = http_get(url);
    assert_eq!(status, 200, "GET {url}: {body}");
    json(&body)
}

/// What must come back identical after a restart.
fn state(cp: &ControlPlane) -> Vec<serde_json::Value> {
    vec![
        get(&cp.url("/meshes/demo")),
        get(&cp.url("/meshes/demo/traffic-routes/route-1")),
        get(&cp.url("/meshes/default")),
        get(&format!(
            "{}/meshes/default/secrets/dataplane-token-signing-key",
            cp.admin
        )),
    ]
}

/// `POST /bootstrap` for `web-1` presenting `token` -> status.
fn bootstrap_with(cp: &ControlPlane, token: &str) -> (u16, String) {
    let body = serde_json::json!({
        "mesh": "default",
        "name": "web-1",
        "adminPort": 9901,
        "dataplaneToken": token,
        "dataplaneResource": DATAPLANE,
    });
    cp.bootstrap(&body.to_string()).expect("bootstrap request")
}

#[test]
fn state_survives_kill_9_and_a_second_kuma_cp_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreDir::new();
    let mut cp = ControlPlane::start_on_store(dir.path(), "kuma-cp", &store, None, &[]);
    let (status, body) = http_put(&cp.url("/meshes/demo"), YAML, b"type: Mesh\nname: demo\n");
    assert_eq!(status, 201, "{body}");
    let (status, body) = http_put(
        &cp.url("/meshes/demo/traffic-routes/route-1"),
        YAML,
        ROUTE.as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
    let token = cp.issue_token("default", "web-1");
    let (status, body) = bootstrap_with(&cp, &token);
    assert_eq!(status, 200, "{body}");
    let before = state(&cp);
    assert!(
        before.iter().take(3).all(|r| r["creationTime"].is_string()),
        "{before:#?}"
    );

    // The acknowledged writes are on disk: nothing is lost to SIGKILL.
    cp.kill9();
    let ports = cp.ports;
    drop(cp);
    let cp = ControlPlane::start_on_store(dir.path(), "kuma-cp-2", &store, Some(ports), &[]);
    assert_eq!(state(&cp), before, "resources come back identical");
    // The same signing key: a token issued before validates after, and the
    // check is on (a token with a forged signature is refused).
    let (status, body) = bootstrap_with(&cp, &token);
    assert_eq!(status, 200, "the old token after the restart: {body}");
    let (head, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", "A".repeat(86));
    let (status, _) = bootstrap_with(&cp, &forged);
    assert_eq!(status, 401, "a forged token must be refused");

    // A second kuma-cp on the same directory exits 1 naming it.
    let path = store.path().to_str().unwrap();
    let (status, _, err) = run_to_exit(kuma_cp_command(&[
        ("KUMA_STORE_TYPE", "local"),
        ("KUMA_STORE_LOCAL_PATH", path),
    ]));
    assert_eq!(status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines,
        [format!(
            "kuma-cp: store.local.path (KUMA_STORE_LOCAL_PATH): {path} is in use by another kuma-cp process"
        )],
        "{err}"
    );
    // The first is unharmed.
    assert_eq!(state(&cp), before);
}

#[test]
fn a_directory_holding_another_file_is_refused_and_left_untouched() {
    let store = StoreDir::new();
    let file = store.path().join("store.redb");
    let garbage = b"this is not a database, and must stay exactly as it is\n".repeat(100);
    std::fs::write(&file, &garbage).unwrap();
    let (status, _, err) = run_to_exit(kuma_cp_command(&[
        ("KUMA_STORE_TYPE", "local"),
        ("KUMA_STORE_LOCAL_PATH", store.path().to_str().unwrap()),
    ]));
    assert_eq!(status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("kuma-cp: store.local.path (KUMA_STORE_LOCAL_PATH): ")
            && lines[0].contains(&file.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        garbage,
        "the file is untouched"
    );

    // A regular file where the directory should be.
    let (status, _, err) = run_to_exit(kuma_cp_command(&[
        ("KUMA_STORE_TYPE", "local"),
        ("KUMA_STORE_LOCAL_PATH", file.to_str().unwrap()),
    ]));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("store.local.path (KUMA_STORE_LOCAL_PATH)") && err.contains("not a directory"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), garbage);
}
