//! End to end with a real Envoy for ProxyTemplate and NACK handling:
//! `kuma-cp run`, a `backend` and a `frontend` proxy (`kuma-dp run`),
//! ProxyTemplates applied through the HTTP API.
//!
//! - A ProxyTemplate whose config Envoy rejects (a listener on the address
//!   and port of the frontend's outbound listener): traffic keeps flowing on
//!   the last good config, the NACK with Envoy's error shows in
//!   `dataplanes+insights` (`lastNack`) and in `kumactl inspect
//!   dataplanes`; correcting the template is pushed, ACKed (the NACK is
//!   marked resolved) and its modification shows on the wire.
//! - A ProxyTemplate modification (a virtual-host response header) shows in
//!   the HTTP response, and removing the template removes it.
//!
//! Envoy comes from `ENVOY_BIN`, `<workspace>/.venv/bin/envoy` or `PATH`;
//! without one the tests are skipped, unless `CI=true`. The harness
//! (kuma-testing) builds kuma-cp and kumactl if needed.
//!
//! Run: `cargo test -p kuma-dp --test nack_e2e -- --nocapture`.

use kuma_testing::http::get;
use kuma_testing::{App, ControlPlane, Dataplane, free_port, try_http_get, wait_for};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const READY: Duration = Duration::from_secs(30);
/// How long a policy change may take to reach Envoy on a loaded machine.
const APPLIED: Duration = Duration::from_secs(45);

/// One test at a time: each runs a control plane and two Envoys.
static SERIAL: Mutex<()> = Mutex::new(());

/// A running mesh: control plane, backend (app + proxy), frontend proxy.
struct Mesh {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    cp: ControlPlane,
    _backend_app: App,
    _backend: Dataplane,
    frontend: Dataplane,
    outbound: u16,
}

fn start(test: &str) -> Option<Mesh> {
    let envoy = kuma_testing::envoy_or_skip(test)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("kuma-e2e-{test}-"))
        .tempdir()
        .expect("creating a temp dir");
    let path = dir.path().to_path_buf();
    let cp = ControlPlane::start_in(&path, "kuma-cp", None);
    let app = App::start("backend-1");
    let yaml = kuma_testing::backend_yaml("backend-1", free_port(), app.port, None);
    let mut backend = Dataplane::start(&cp, &envoy, &path, "backend-1", &yaml);
    backend.wait_ready(READY);
    let outbound = free_port();
    let yaml = kuma_testing::frontend_yaml("frontend", free_port(), free_port(), outbound);
    let mut frontend = Dataplane::start(&cp, &envoy, &path, "frontend", &yaml);
    frontend.wait_ready(READY);
    let mesh = Mesh {
        _dir: dir,
        dir: path,
        cp,
        _backend_app: app,
        _backend: backend,
        frontend,
        outbound,
    };
    wait_for(
        "a request through the frontend to reach the backend",
        Duration::from_secs(20),
        || mesh.reaches_backend().then_some(()),
    );
    Some(mesh)
}

/// A ProxyTemplate for the frontend with these modifications.
fn template(name: &str, modifications: Value) -> Value {
    json!({
        "type": "ProxyTemplate",
        "mesh": "default",
        "name": name,
        "selectors": [{"match": {"kuma.io/service": "frontend"}}],
        "conf": {"imports": ["default-proxy"], "modifications": modifications},
    })
}

/// Adds a response header to every response of the frontend's
/// `outbound:backend` routes.
fn header_patch(value: &str) -> Value {
    json!([{"virtualHost": {
        "operation": "patch",
        "match": {"routeConfigurationName": "outbound:backend"},
        "value": format!("responseHeadersToAdd:\n- header:\n    key: x-proxy-template\n    value: {value}\n"),
    }}])
}

impl Mesh {
    fn reaches_backend(&self) -> bool {
        matches!(get(self.outbound), Ok(r) if r.status == 200 && r.body == "backend-1")
    }

    fn put(&self, name: &str, json: &Value) {
        self.cp.put("proxytemplates", name, &json.to_string());
    }

    fn delete(&self, name: &str) {
        let url = format!("{}/meshes/default/proxytemplates/{name}", self.cp.api_url());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let resp = agent
            .delete(&url)
            .call()
            .unwrap_or_else(|e| panic!("DELETE {url}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "DELETE {url}");
    }

    /// The frontend's latest subscription in `dataplanes+insights`.
    fn frontend_subscription(&self) -> Option<Value> {
        let url = format!("{}/meshes/default/dataplanes+insights", self.cp.api_url());
        let (status, body) = try_http_get(&url).ok()?;
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        v["items"]
            .as_array()?
            .iter()
            .find(|i| i["name"] == "frontend")?
            .pointer("/dataplaneInsight/subscriptions")?
            .as_array()?
            .last()
            .cloned()
    }

    fn kumactl_inspect(&self) -> String {
        let out = Command::new(kuma_testing::kumactl_bin())
            .arg("--config-file")
            .arg(self.dir.join("kumactl.config"))
            .arg("--api-url")
            .arg(self.cp.api_url())
            .args(["inspect", "dataplanes"])
            .output()
            .expect("running kumactl");
        assert!(
            out.status.success(),
            "kumactl inspect dataplanes failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn counter(v: &Value, pointer: &str) -> u64 {
    match v.pointer(pointer) {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn rejected_config_keeps_last_good_one_is_visible_and_recovers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mesh) = start("nack") else { return };
    let before = mesh.frontend_subscription().expect("frontend insight");
    let acked_before = counter(&before, "/status/lds/responsesAcknowledged");

    // A second listener on the outbound listener's address and port: a
    // valid proto that Envoy refuses when it applies it.
    let bad = template(
        "bad",
        json!([{"listener": {
            "operation": "add",
            "value": format!(
                "name: duplicate\naddress:\n  socketAddress:\n    address: 127.0.0.1\n    portValue: {}\nfilterChains:\n- filters:\n  - name: envoy.filters.network.tcp_proxy\n    typedConfig:\n      '@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n      statPrefix: duplicate\n      cluster: backend\n",
                mesh.outbound
            ),
        }}]),
    );
    mesh.put("bad", &bad);
    let nack = wait_for("the frontend's NACK in its insight", APPLIED, || {
        let sub = mesh.frontend_subscription()?;
        let nack = sub.pointer("/status/lastNack")?.clone();
        (counter(&sub, "/status/lds/responsesRejected") >= 1).then_some(nack)
    });
    println!("lastNack: {nack:#}");
    assert_eq!(
        nack["typeUrl"],
        "type.googleapis.com/envoy.config.listener.v3.Listener"
    );
    let error = nack["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("duplicate"),
        "Envoy's error text is kept: {error:?}"
    );
    assert!(!nack["version"].as_str().unwrap_or_default().is_empty());
    assert!(
        nack.get("resolvedTime").is_none(),
        "not resolved yet: {nack}"
    );

    // The last good config keeps serving.
    for _ in 0..20 {
        assert!(
            mesh.reaches_backend(),
            "traffic broke after the NACK: {:?}",
            get(mesh.outbound).map(|r| (r.status, r.body))
        );
    }
    let (_, listeners) = mesh
        .frontend
        .admin("/listeners")
        .expect("Envoy admin /listeners");
    assert!(
        !listeners.contains("duplicate"),
        "the rejected listener is not active: {listeners}"
    );

    // kumactl shows the NACK with Envoy's error.
    let table = mesh.kumactl_inspect();
    println!("{table}");
    let error_start: String = error
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(40)
        .collect();
    let row = table
        .lines()
        .find(|l| l.contains("frontend") && l.contains("LDS"))
        .unwrap_or_else(|| panic!("no NACK row for frontend:\n{table}"));
    assert!(row.contains("unresolved"), "{row}");
    assert!(row.contains(&error_start), "{row} lacks {error_start:?}");

    // The rejected version is not sent again: no more LDS rejections while
    // nothing changes.
    let sub = mesh.frontend_subscription().expect("insight");
    let rejected = counter(&sub, "/status/lds/responsesRejected");
    std::thread::sleep(Duration::from_secs(3));
    let sub = mesh.frontend_subscription().expect("insight");
    assert_eq!(
        counter(&sub, "/status/lds/responsesRejected"),
        rejected,
        "no resend"
    );

    // Correct the template: pushed, ACKed, NACK resolved, on the wire.
    mesh.put("bad", &template("bad", header_patch("fixed")));
    let sub = wait_for("the corrected config to be ACKed", APPLIED, || {
        let sub = mesh.frontend_subscription()?;
        sub.pointer("/status/lastNack/resolvedTime")?;
        Some(sub)
    });
    println!("after the fix: {:#}", sub["status"]);
    assert!(counter(&sub, "/status/lds/responsesAcknowledged") > acked_before);
    assert_eq!(sub["status"]["lastNack"]["error"], error.as_str());
    wait_for("the corrected template's header", APPLIED, || {
        let r = get(mesh.outbound).ok()?;
        (r.status == 200 && r.body == "backend-1" && r.header("x-proxy-template") == Some("fixed"))
            .then_some(())
    });
    let table = mesh.kumactl_inspect();
    println!("{table}");
    let row = table
        .lines()
        .find(|l| l.contains("frontend") && l.contains("LDS"))
        .unwrap_or_else(|| panic!("no NACK row for frontend:\n{table}"));
    assert!(!row.contains("unresolved"), "{row}");
}

#[test]
fn proxy_template_modification_shows_on_the_wire() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mesh) = start("proxy-template") else {
        return;
    };
    let r = get(mesh.outbound).expect("request");
    assert_eq!(r.header("x-proxy-template"), None);

    mesh.put("headers", &template("headers", header_patch("added")));
    wait_for("the template's response header", APPLIED, || {
        let r = get(mesh.outbound).ok()?;
        (r.status == 200 && r.header("x-proxy-template") == Some("added")).then_some(())
    });
    let sub = mesh.frontend_subscription().expect("insight");
    assert!(sub.pointer("/status/lastNack").is_none(), "{sub:#}");
    assert_eq!(counter(&sub, "/status/total/responsesRejected"), 0);

    mesh.delete("headers");
    wait_for("the header to go with the template", APPLIED, || {
        let r = get(mesh.outbound).ok()?;
        (r.status == 200 && r.header("x-proxy-template").is_none()).then_some(())
    });
}
