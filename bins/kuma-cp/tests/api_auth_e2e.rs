//! End to end: the public API's authentication (reads open; writes from
//! localhost or with an admin user token), the admin user token kept in
//! the store across restarts and revoked by rotating its signing key, and
//! private keys redacted from reads but kept through a kumactl get / edit /
//! apply round trip.

use base64::Engine as _;
use kuma_testing::{ControlPlane, StoreDir, http_get, kumactl};
use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

/// `method url` with an optional bearer token and a JSON body ->
/// (status, body).
fn call(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    let request = match token {
        Some(t) => request.header("authorization", format!("Bearer {t}")),
        None => request,
    };
    let mut resp = agent
        .run(request.body(body.unwrap_or("").to_string()).unwrap())
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().expect("body"))
}

/// The admin user token, read from localhost.
fn admin_token(cp: &ControlPlane) -> String {
    let (status, body) = http_get(&cp.url("/global-secrets/admin-user-token"));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "GlobalSecret");
    let data = base64::engine::general_purpose::STANDARD
        .decode(v["data"].as_str().unwrap())
        .unwrap();
    String::from_utf8(data).unwrap()
}

/// An address of this machine that is not loopback (the source address of
/// a route out), if it has one.
fn non_loopback_address() -> Option<IpAddr> {
    ["192.0.2.1:9", "10.255.255.254:9", "8.8.8.8:9"]
        .iter()
        .find_map(|target| {
            let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
            socket.connect(target).ok()?;
            let ip = socket.local_addr().ok()?.ip();
            (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
        })
}

const MESH: &str = r#"{"type":"Mesh","name":"remote-made"}"#;

#[test]
fn writes_from_another_address_need_an_admin_user_token() {
    let Some(ip) = non_loopback_address() else {
        // The decision itself is unit-tested (kuma_core::api::auth) and the
        // token path is covered by the allowFromLocalhost=false test below.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this machine has no non-loopback IPv4 address to call the API from (CI must run this test)"
        );
        eprintln!("skipping: this machine has no non-loopback IPv4 address to call from");
        return;
    };
    let cp = ControlPlane::start(&[]);
    let token = admin_token(&cp);
    let remote = format!("http://{ip}:{}", cp.ports.api);

    // Reads stay open; writes and the admin token do not.
    assert_eq!(call("GET", &format!("{remote}/meshes"), None, None).0, 200);
    let (status, body) = call(
        "PUT",
        &format!("{remote}/meshes/remote-made"),
        None,
        Some(MESH),
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("mesh-system:admin"), "{body}");
    let (status, _) = call(
        "GET",
        &format!("{remote}/global-secrets/admin-user-token"),
        None,
        None,
    );
    assert_eq!(status, 401);
    let (status, body) = call(
        "PUT",
        &format!("{remote}/meshes/remote-made"),
        Some("not.a.token"),
        Some(MESH),
    );
    assert_eq!(status, 401, "{body}");
    assert!(cp.kumactl(&["get", "meshes"]).status.success());

    // kumactl with the token, configured as Kuma's kumactl is.
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let config = config.to_str().unwrap();
    let auth_conf = format!("token={token}");
    let out = kumactl(
        &["--config-file", config],
        &[
            "config",
            "control-planes",
            "add",
            "--name",
            "remote",
            "--address",
            &remote,
            "--auth-type",
            "tokens",
            "--auth-conf",
            &auth_conf,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = home.path().join("mesh.yaml");
    std::fs::write(&file, "type: Mesh\nname: remote-made\n").unwrap();
    let out = kumactl(
        &["--config-file", config],
        &["apply", "-f", file.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(http_get(&cp.url("/meshes/remote-made")).0, 200);

    // The same kumactl without a token is refused, and says why.
    let out = kumactl(
        &["--config-file", config],
        &[
            "config",
            "control-planes",
            "add",
            "--name",
            "anon",
            "--address",
            &remote,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kumactl(
        &["--config-file", config],
        &["delete", "mesh", "remote-made"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Authorization: Bearer"), "{stderr}");
    assert_eq!(http_get(&cp.url("/meshes/remote-made")).0, 200);
}

#[test]
fn the_admin_token_survives_a_restart_and_rotation_revokes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreDir::new();
    let token = {
        let cp = ControlPlane::start_on_store(dir.path(), "first", &store, None, &[]);
        admin_token(&cp)
    };
    // Localhost is not trusted any more: every write needs the token.
    let cp = ControlPlane::start_on_store(
        dir.path(),
        "second",
        &store,
        None,
        &[("KUMA_API_SERVER_AUTH_ALLOW_FROM_LOCALHOST", "false")],
    );
    let url = cp.url("/meshes/remote-made");
    let (status, body) = call("PUT", &url, None, Some(MESH));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("allowFromLocalhost"), "{body}");
    let (status, _) = call(
        "GET",
        &cp.url("/global-secrets/admin-user-token"),
        None,
        None,
    );
    assert_eq!(status, 401);
    // The token of the first run still works: it was kept in the store.
    let (status, body) = call("PUT", &url, Some(&token), Some(MESH));
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        "GET",
        &cp.url("/global-secrets/admin-user-token"),
        Some(&token),
        None,
    );
    assert_eq!(status, 200, "{body}");

    // Rotation: the old token stops working at once.
    let (status, body) = call(
        "DELETE",
        &cp.url("/global-secrets/user-token-signing-key"),
        Some(&token),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = call("DELETE", &url, Some(&token), None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(http_get(&url).0, 200);
}

#[test]
fn private_keys_are_redacted_and_kept_through_get_edit_apply() {
    let cp = ControlPlane::start(&[]);
    let (ca, _) =
        kuma_core::pki::generate_server_tls(&["localhost".into()], Duration::from_secs(3600))
            .unwrap();
    let indent = |pem: &str| pem.trim().replace('\n', "\n          ");
    let yaml = format!(
        "type: Mesh\nname: provided\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: provided\n    dpCert:\n      rotation:\n        expiration: 1d\n    conf:\n      cert:\n        inlineString: |\n          {}\n      key:\n        inlineString: |\n          {}\n",
        indent(&ca.cert_pem),
        indent(&ca.key_pem)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mesh.yaml");
    std::fs::write(&file, &yaml).unwrap();
    cp.kumactl_ok(&["apply", "-f", file.to_str().unwrap()]);

    let key_line = ca.key_pem.lines().nth(1).unwrap();
    let shown = cp.kumactl_ok(&["get", "mesh", "provided", "-o", "yaml"]);
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(!shown.contains(key_line), "the key is served:\n{shown}");
    assert!(shown.contains("BEGIN CERTIFICATE"), "{shown}");
    let (_, json) = http_get(&cp.url("/meshes"));
    assert!(!json.contains(key_line), "the key is listed:\n{json}");

    // Edit what was read and apply it: the key is kept (the control plane
    // checks on every write that it matches the certificate, so a lost or
    // replaced key would be refused).
    assert!(shown.contains("expiration: 1d"), "{shown}");
    let edited = shown.replace("expiration: 1d", "expiration: 2d");
    std::fs::write(&file, &edited).unwrap();
    cp.kumactl_ok(&["apply", "-f", file.to_str().unwrap()]);
    let again = cp.kumactl_ok(&["get", "mesh", "provided", "-o", "yaml"]);
    assert!(again.contains("expiration: 2d"), "{again}");
    assert!(again.contains("<redacted>"), "{again}");
    // Once more, so a marker stored by mistake would fail the key check.
    std::fs::write(&file, again.replace("expiration: 2d", "expiration: 3d")).unwrap();
    cp.kumactl_ok(&["apply", "-f", file.to_str().unwrap()]);

    // A marker with no stored key to keep is refused, naming the field.
    let fresh = edited.replace("name: provided", "name: fresh");
    std::fs::write(&file, fresh).unwrap();
    let out = cp.kumactl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("conf.key.inlineString"), "{stderr}");

    // And `file` data sources cannot be set through the API.
    let with_file = yaml.replace("name: provided", "name: from-file").replace(
        &format!(
            "      key:\n        inlineString: |\n          {}\n",
            indent(&ca.key_pem)
        ),
        "      key:\n        file: /etc/hostname\n",
    );
    std::fs::write(&file, with_file).unwrap();
    let out = cp.kumactl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("conf.key.file"), "{stderr}");
}
