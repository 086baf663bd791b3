//! Dataplane tokens end to end with the real `kuma-cp`, `kuma-dp`,
//! `kumactl` and Envoy: a token from `kumactl generate dataplane-token`
//! lets a proxy in; a missing token or another Dataplane's token is refused
//! by the bootstrap server (kuma-dp exits 1 with the reason) and by the ADS
//! server (an Envoy whose bootstrap carries the wrong token gets no config);
//! `KUMA_DP_SERVER_AUTH_TYPE=none` lets a proxy in without one. A token for
//! `kuma.io/service=backend` serves backend proxies and refuses one that
//! claims `payments` (no `payments` certificate is ever issued); tampered,
//! expired and rotated-out (signing key deleted) tokens are refused.
//!
//! Run: `cargo test -p kuma-dp --test tokens_e2e -- --nocapture` (Envoy from
//! `ENVOY_BIN`, `<workspace>/.venv/bin/envoy` or `PATH`; the harness builds
//! kuma-cp and kumactl if needed).

use kuma_testing::{
    App, ControlPlane, Dataplane, DpToken, Proc, free_port, send, try_http_post_json, wait_for,
};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(30);

fn setup(test: &str, env: &[(&str, &str)]) -> Option<(PathBuf, tempfile::TempDir, ControlPlane)> {
    kuma_testing::start_e2e(test, env)
}

/// Waits for a kuma-dp that must fail, returning its status.
fn wait_exit(dp: &mut Dataplane, timeout: Duration) -> ExitStatus {
    let name = dp.name.clone();
    wait_for(&format!("kuma-dp {name} to exit"), timeout, || {
        dp.proc.try_wait()
    })
}

fn kumactl(cp: &ControlPlane, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(kuma_testing::kumactl_bin())
        .arg("--config-file")
        .arg(dir.join("kumactl-config"))
        .arg("--api-url")
        .arg(cp.api_url())
        .args(args)
        .output()
        .expect("running kumactl")
}

#[test]
fn kumactl_generated_token_lets_the_proxy_in() {
    let Some((envoy, dir, cp)) = setup("token-kumactl", &[]) else {
        return;
    };
    let out = kumactl(
        &cp,
        dir.path(),
        &[
            "generate",
            "dataplane-token",
            "--name",
            "backend-1",
            "--mesh",
            "default",
            "--valid-for",
            "24h",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kumactl failed: {stderr}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token:?}");

    let app = App::start("backend-1");
    let yaml = kuma_testing::backend_yaml("backend-1", free_port(), app.port, None);
    let mut dp = Dataplane::start_with_token(
        &cp,
        &envoy,
        dir.path(),
        "backend-1",
        &yaml,
        &[],
        DpToken::Given(token.clone()),
    );
    dp.wait_ready(READY);
    wait_for("backend-1 to register", READY, || {
        cp.dataplanes()
            .filter(|d| d.contains("backend-1"))
            .map(|_| ())
    });

    // The token goes nowhere it should not: not into any log.
    for log in [cp.proc.log(), dp.proc.log()] {
        assert!(!log.contains(&token), "a log shows the token");
    }

    // An unknown mesh is a clear error.
    let out = kumactl(
        &cp,
        dir.path(),
        &[
            "generate",
            "dataplane-token",
            "--name",
            "x",
            "--mesh",
            "nope",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"nope\" does not exist"), "{stderr}");
}

#[test]
fn bootstrap_refuses_missing_and_foreign_tokens() {
    let Some((envoy, dir, cp)) = setup("token-bootstrap", &[]) else {
        return;
    };
    let app = App::start("backend-1");
    let yaml = kuma_testing::backend_yaml("backend-1", free_port(), app.port, None);
    let foreign = cp.issue_token("default", "backend-2");
    let cases = [
        (
            DpToken::Without,
            "dataplane token is missing: pass it with kuma-dp --dataplane-token-file",
        ),
        (
            DpToken::Given(foreign.clone()),
            "dataplane token is for dataplane \"backend-2\", but the proxy is \"backend-1\"",
        ),
        (
            DpToken::Given("not-a-token".into()),
            "dataplane token is malformed",
        ),
    ];
    for (i, (token, expected)) in cases.into_iter().enumerate() {
        let name = format!("backend-1-try{i}");
        let mut dp = Dataplane::start_with_token(&cp, &envoy, dir.path(), &name, &yaml, &[], token);
        let status = wait_exit(&mut dp, READY);
        assert_eq!(status.code(), Some(1), "{}", dp.proc.log());
        let log = dp.proc.log();
        assert!(log.contains("(HTTP 401)"), "{log}");
        assert!(log.contains(expected), "expected {expected:?} in:\n{log}");
        assert!(
            !log.contains(&foreign),
            "the answer quotes the token:\n{log}"
        );
        assert!(!dp.is_ready(), "an Envoy runs although kuma-dp was refused");
    }
    assert_eq!(
        cp.dataplanes().unwrap_or_default(),
        Default::default(),
        "a refused proxy registered its Dataplane"
    );
}

/// Fetches a bootstrap for `name` presenting `token` straight from the
/// bootstrap server, with the Dataplane in it (registered on ADS connect).
fn fetch_bootstrap(cp: &ControlPlane, name: &str, yaml: &str, token: &str, admin: u16) -> String {
    let body = serde_json::json!({
        "mesh": "default",
        "name": name,
        "adminPort": admin,
        "dataplaneToken": token,
        "dataplaneResource": yaml,
    });
    let (status, text) = cp.bootstrap(&body.to_string()).expect("bootstrap request");
    assert_eq!(status, 200, "{text}");
    text
}

/// Runs Envoy on a bootstrap whose ADS metadata carries `presented` instead
/// of the token it was issued with, and checks it is refused: the reason in
/// Envoy's log, no config, the Dataplane never registered.
fn envoy_is_refused(cp: &ControlPlane, envoy: &Path, dir: &Path, presented: &str, expected: &str) {
    let app = App::start("backend-9");
    let yaml = kuma_testing::backend_yaml("backend-9", free_port(), app.port, None);
    let own = cp.issue_token("default", "backend-9");
    let admin = free_port();
    let bootstrap = fetch_bootstrap(cp, "backend-9", &yaml, &own, admin);
    assert!(bootstrap.contains(&own), "the bootstrap carries the token");
    let edited = bootstrap.replace(&own, presented);
    let tag = format!("envoy-{}", expected.len());
    let path = dir.join(format!("{tag}.yaml"));
    std::fs::write(&path, edited).expect("writing the bootstrap");
    let mut cmd = Command::new(envoy);
    cmd.arg("--config-path")
        .arg(&path)
        .arg("--disable-hot-restart")
        .arg("--concurrency")
        .arg("1")
        .arg("--log-level")
        .arg("info");
    let mut proc = Proc::spawn(&tag, cmd, &dir.join(format!("{tag}.log")));
    let started = Instant::now();
    wait_for(
        &format!("Envoy to log the refusal {expected:?}"),
        READY,
        || {
            if let Some(status) = proc.try_wait() {
                panic!("Envoy exited ({status}):\n{}", proc.log());
            }
            // gRPC percent-encodes grpc-message; Envoy logs it as received.
            percent_decode(&proc.log()).contains(expected).then_some(())
        },
    );
    println!("refused within {:?}: {expected}", started.elapsed());
    assert!(
        cp.proc.log().contains("refused a proxy's ADS stream"),
        "{}",
        cp.proc.log()
    );
    // No config reached Envoy, and the proxy never registered.
    let admin_url = format!("http://127.0.0.1:{admin}");
    let (_, ready) =
        kuma_testing::try_http_get(&format!("{admin_url}/ready")).expect("Envoy admin");
    assert_ne!(ready.trim(), "LIVE", "Envoy got its config");
    let (_, dump) =
        kuma_testing::try_http_get(&format!("{admin_url}/config_dump")).expect("Envoy config dump");
    assert!(!dump.contains("dynamic_active_clusters"), "{dump}");
    assert!(!dump.contains("dynamic_listeners"), "{dump}");
    assert!(
        !cp.dataplanes().unwrap_or_default().contains("backend-9"),
        "a refused proxy registered its Dataplane"
    );
    assert!(!cp.proc.log().contains(&own), "kuma-cp logged a token");
}

/// Decodes `%XX` escapes (gRPC's encoding of status messages).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn ads_refuses_streams_with_a_foreign_or_no_token() {
    let Some((envoy, dir, cp)) = setup("token-ads", &[]) else {
        return;
    };
    let foreign = cp.issue_token("default", "backend-2");
    envoy_is_refused(
        &cp,
        &envoy,
        dir.path(),
        &foreign,
        "dataplane token is for dataplane \"backend-2\", but the proxy is \"backend-9\"",
    );
    envoy_is_refused(&cp, &envoy, dir.path(), "", "dataplane token is missing");
}

#[test]
fn auth_type_none_lets_a_proxy_in_without_a_token() {
    let Some((envoy, dir, cp)) = setup("token-none", &[("KUMA_DP_SERVER_AUTH_TYPE", "none")])
    else {
        return;
    };
    let app = App::start("backend-1");
    let yaml = kuma_testing::backend_yaml("backend-1", free_port(), app.port, None);
    let mut backend = Dataplane::start_with_token(
        &cp,
        &envoy,
        dir.path(),
        "backend-1",
        &yaml,
        &[],
        DpToken::Without,
    );
    let outbound = free_port();
    let fe_app = App::start("frontend");
    let yaml = kuma_testing::frontend_yaml("frontend", free_port(), fe_app.port, outbound);
    let mut frontend = Dataplane::start_with_token(
        &cp,
        &envoy,
        dir.path(),
        "frontend",
        &yaml,
        &[],
        DpToken::Without,
    );
    backend.wait_ready(READY);
    frontend.wait_ready(READY);
    wait_for("traffic through the tokenless proxies", READY, || {
        (send(outbound, 5).count("backend-1") > 0).then_some(())
    });
    assert!(
        cp.proc.log().contains("dpServer.auth.type is none"),
        "kuma-cp does not warn that proxies are not authenticated"
    );
}

/// Starts a kuma-dp for `yaml` presenting `token` that must be refused by
/// the bootstrap server with `http` (e.g. 401) and a message containing
/// `expected`.
#[allow(clippy::too_many_arguments)]
fn dp_is_refused(
    cp: &ControlPlane,
    envoy: &Path,
    dir: &Path,
    name: &str,
    yaml: &str,
    token: &str,
    http: u16,
    expected: &str,
) {
    let mut dp = Dataplane::start_with_token(
        cp,
        envoy,
        dir,
        name,
        yaml,
        &[],
        DpToken::Given(token.to_string()),
    );
    let status = wait_exit(&mut dp, READY);
    let log = dp.proc.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(&format!("(HTTP {http})")), "{log}");
    assert!(log.contains(expected), "expected {expected:?} in:\n{log}");
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!log.contains(part), "the answer quotes the token:\n{log}");
    }
    assert!(!dp.is_ready(), "an Envoy runs although kuma-dp was refused");
}

/// The service of `backend_yaml` changed to `service`.
fn yaml_of_service(name: &str, service: &str, app_port: u16) -> String {
    kuma_testing::backend_yaml(name, free_port(), app_port, None).replace(
        "kuma.io/service: backend",
        &format!("kuma.io/service: {service}"),
    )
}

#[test]
fn a_tagged_token_serves_its_service_and_refuses_another() {
    let Some((envoy, dir, cp)) = setup("token-tags", &[]) else {
        return;
    };
    // No --name: any number of backend instances.
    let out = kumactl(
        &cp,
        dir.path(),
        &[
            "generate",
            "dataplane-token",
            "--mesh",
            "default",
            "--tag",
            "kuma.io/service=backend",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kumactl failed: {stderr}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();

    // A Dataplane claiming payments with it: kuma-dp is refused.
    let payments_app = App::start("payments-1");
    let payments = yaml_of_service("payments-1", "payments", payments_app.port);
    dp_is_refused(
        &cp,
        &envoy,
        dir.path(),
        "payments-1",
        &payments,
        &token,
        403,
        "dataplane token does not allow kuma.io/service=\"payments\"",
    );

    // The same token with backend Dataplanes: two instances serve traffic.
    let mut backends = Vec::new();
    for name in ["backend-1", "backend-2"] {
        let app = App::start(name);
        let yaml = kuma_testing::backend_yaml(name, free_port(), app.port, None);
        let dp = Dataplane::start_with_token(
            &cp,
            &envoy,
            dir.path(),
            name,
            &yaml,
            &[],
            DpToken::Given(token.clone()),
        );
        backends.push((app, dp));
    }
    let outbound = free_port();
    let fe_app = App::start("frontend");
    let yaml = kuma_testing::frontend_yaml("frontend", free_port(), fe_app.port, outbound);
    let mut frontend = Dataplane::start_with_token(
        &cp,
        &envoy,
        dir.path(),
        "frontend",
        &yaml,
        &[],
        DpToken::Issue,
    );
    for (_, dp) in &mut backends {
        dp.wait_ready(READY);
    }
    frontend.wait_ready(READY);
    wait_for("traffic to both tagged-token backends", READY, || {
        let replies = send(outbound, 20);
        (replies.count("backend-1") > 0 && replies.count("backend-2") > 0).then_some(())
    });

    // Envoy holding the backend token, bootstrapped as backend, but
    // registering a payments Dataplane on ADS: refused there too.
    envoy_registering_is_refused(&cp, &envoy, dir.path(), &token);

    // Nothing ever registered or got an identity as payments.
    let dps = cp.dataplanes().unwrap_or_default();
    assert!(!dps.iter().any(|d| d.contains("payments")), "{dps:?}");
    let cp_log = cp.proc.log();
    assert!(
        !cp_log
            .lines()
            .any(|l| l.contains("issued identity certificate") && l.contains("payments")),
        "a payments identity was issued:\n{cp_log}"
    );
    assert!(!cp_log.contains(&token), "kuma-cp logged a token");
}

/// Runs Envoy on a bootstrap fetched for a backend Dataplane with `token`,
/// whose node metadata is edited to register `payments` instead, and checks
/// that ADS refuses it: the reason in Envoy's log, no config.
fn envoy_registering_is_refused(cp: &ControlPlane, envoy: &Path, dir: &Path, token: &str) {
    let app = App::start("backend-8");
    let yaml = kuma_testing::backend_yaml("backend-8", free_port(), app.port, None);
    let admin = free_port();
    let bootstrap = fetch_bootstrap(cp, "backend-8", &yaml, token, admin);
    // The Dataplane travels as JSON text in a YAML string, quoted either
    // way.
    let edited = bootstrap
        .replace(
            r#""kuma.io/service":"backend""#,
            r#""kuma.io/service":"payments""#,
        )
        .replace(
            r#"\"kuma.io/service\":\"backend\""#,
            r#"\"kuma.io/service\":\"payments\""#,
        );
    assert_ne!(
        edited, bootstrap,
        "the bootstrap's Dataplane was not found:\n{bootstrap}"
    );
    let path = dir.join("envoy-payments.yaml");
    std::fs::write(&path, edited).expect("writing the bootstrap");
    let mut cmd = Command::new(envoy);
    cmd.arg("--config-path")
        .arg(&path)
        .arg("--disable-hot-restart")
        .arg("--concurrency")
        .arg("1")
        .arg("--log-level")
        .arg("info");
    let mut proc = Proc::spawn("envoy-payments", cmd, &dir.join("envoy-payments.log"));
    let expected = "dataplane token does not allow kuma.io/service=\"payments\"";
    wait_for(
        &format!("Envoy to log the refusal {expected:?}"),
        READY,
        || {
            if let Some(status) = proc.try_wait() {
                panic!("Envoy exited ({status}):\n{}", proc.log());
            }
            percent_decode(&proc.log()).contains(expected).then_some(())
        },
    );
    let (_, ready) = kuma_testing::try_http_get(&format!("http://127.0.0.1:{admin}/ready"))
        .expect("Envoy admin");
    assert_ne!(ready.trim(), "LIVE", "Envoy got its config");
}

#[test]
fn tampered_expired_and_rotated_out_tokens_are_refused() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Some((envoy, dir, cp)) = setup("token-rotation", &[]) else {
        return;
    };
    let app = App::start("backend-1");
    let yaml = kuma_testing::backend_yaml("backend-1", free_port(), app.port, None);

    // Tampered: another Dataplane's claims under backend-2's signature.
    let theirs = cp.issue_token("default", "backend-2");
    let parts: Vec<&str> = theirs.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["Name"] = "backend-1".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    dp_is_refused(
        &cp,
        &envoy,
        dir.path(),
        "backend-1",
        &yaml,
        &tampered,
        401,
        "dataplane token signature is not valid for mesh \"default\"",
    );

    // Expired: valid for one second, used after it.
    let url = format!("{}/tokens", cp.admin_url());
    let (status, short) = try_http_post_json(
        &url,
        r#"{"name":"backend-1","mesh":"default","validFor":"1s"}"#,
    )
    .expect("POST /tokens");
    assert_eq!(status, 200, "{short}");
    std::thread::sleep(Duration::from_millis(2100));
    dp_is_refused(
        &cp,
        &envoy,
        dir.path(),
        "backend-1",
        &yaml,
        &short,
        401,
        "dataplane token expired at",
    );

    // Rotated out: the mesh's signing key is deleted through the admin API
    // and re-created at once by the next issue.
    let old = cp.issue_token("default", "backend-1");
    let key_url = format!(
        "{}/meshes/default/secrets/dataplane-token-signing-key",
        cp.admin_url()
    );
    let (status, body) = kuma_testing::try_http_delete(&key_url).expect("DELETE signing key");
    assert_eq!(status, 200, "{body}");
    let new = cp.issue_token("default", "backend-1");
    assert_ne!(old, new);
    dp_is_refused(
        &cp,
        &envoy,
        dir.path(),
        "backend-1",
        &yaml,
        &old,
        401,
        "dataplane token signature is not valid for mesh \"default\"",
    );
    // On ADS too: an Envoy presenting the old token gets no config.
    envoy_is_refused(
        &cp,
        &envoy,
        dir.path(),
        &old,
        "dataplane token signature is not valid for mesh \"default\"",
    );
    // The new token lets the proxy in.
    let mut dp = Dataplane::start_with_token(
        &cp,
        &envoy,
        dir.path(),
        "backend-1",
        &yaml,
        &[],
        DpToken::Given(new),
    );
    dp.wait_ready(READY);
}
