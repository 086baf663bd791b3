//! End to end with real Envoys: kuma-cp killed with SIGKILL under a running
//! mTLS mesh, started again on the same store, and nothing the proxies were
//! given stops working.
//!
//! - `local_store_kill9`: one kuma-cp on a local store (the default). While
//!   a frontend proxy sends requests to a backend over mTLS, kuma-cp is
//!   killed with SIGKILL and started again on the same store and ports.
//!   Not one request fails through the whole window; the proxies reconnect
//!   to the new process with the tokens they already had; the Mesh, the
//!   policies and the Dataplanes come back identical (spec, creation time);
//!   the DNS VIP of the backend is the same; a change made after the restart
//!   reaches Envoy.
//! - `postgres_replicas_kill9`: two kuma-cp replicas on one PostgreSQL
//!   database; the proxies are connected to replica A. A write through
//!   replica B's API reaches A's proxies; A is killed with SIGKILL and
//!   started again; not one request fails; VIPs are the same on both
//!   replicas; a change through B after the restart reaches Envoy. Then
//!   PostgreSQL is stopped under both replicas: `/ready` says 503, no
//!   replica exits, and once it is back both are ready and a write through
//!   one is read through the other.
//!
//! Envoy comes from `ENVOY_BIN`, `<workspace>/.venv/bin/envoy` or `PATH`,
//! `dig` from dnsutils and PostgreSQL from the Debian package; without them
//! the test is skipped, unless `CI=true`. The harness (kuma-testing) builds
//! kuma-cp if needed.
//!
//! Run: `cargo test -p kuma-dp --test restart_e2e -- --nocapture`.

use kuma_testing::{
    App, ControlPlane, Dataplane, Postgres, StoreDir, Tally, free_port, kuma_cp_bin,
    try_http_delete, try_http_get, try_http_put_json, wait_for,
};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(30);
/// How long a change may take to show on the wire on a loaded 2-core
/// machine.
const APPLIED: Duration = Duration::from_secs(30);
/// How long the control plane stays dead: longer than Envoy's reconnect
/// backoff, so the proxies see a refused connection at least once.
const OUTAGE: Duration = Duration::from_secs(2);

const MTLS_MESH: &str = r#"{"type":"Mesh","name":"default","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"builtin"}]}}"#;

fn allowed(outbound: u16) -> bool {
    matches!(kuma_testing::request(outbound), Ok((200, ref b)) if b == "backend-1")
}

/// Requests through `outbound` every 20 ms until told to stop.
struct Load {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Tally>,
}

impl Load {
    fn start(outbound: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut t = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    t.add(kuma_testing::request(outbound));
                    std::thread::sleep(Duration::from_millis(20));
                }
                t
            }
        });
        Load { stop, thread }
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("load thread")
    }
}

/// `GET` on the API; the body as JSON.
fn get_json(cp: &ControlPlane, path: &str) -> serde_json::Value {
    let url = cp.url(path);
    let (status, body) = try_http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

/// What a user sees of the mesh: the Mesh, its policies and Dataplanes
/// (with creation times). Modification times of Dataplanes may move (a
/// reconnecting proxy registers again), so they are left out.
fn state(cp: &ControlPlane) -> serde_json::Value {
    let mut dataplanes = get_json(cp, "/meshes/default/dataplanes");
    for item in dataplanes["items"].as_array_mut().expect("items") {
        item.as_object_mut()
            .expect("a dataplane")
            .remove("modificationTime");
    }
    serde_json::json!({
        "mesh": get_json(cp, "/meshes/default"),
        "traffic-permissions": get_json(cp, "/meshes/default/traffic-permissions"),
        "traffic-routes": get_json(cp, "/meshes/default/traffic-routes"),
        "dataplanes": dataplanes,
    })
}

/// The `controlPlaneInstanceId` of the connected (not disconnected) xDS
/// subscription of a Dataplane, if any.
fn connected_to(cp: &ControlPlane, name: &str) -> Option<String> {
    let url = cp.url(&format!("/meshes/default/dataplanes+insights/{name}"));
    let (status, body) = try_http_get(&url).ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let subs = v["dataplaneInsight"]["subscriptions"].as_array()?;
    let last = subs.last()?;
    if last.get("disconnectTime").is_some() {
        return None;
    }
    last["controlPlaneInstanceId"].as_str().map(str::to_string)
}

/// Whether `dig` is here; on CI its absence fails the test.
fn dig_available(test: &str) -> bool {
    let found = Command::new("dig").arg("-v").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dig is missing on CI (apt-get install dnsutils)"
        );
        eprintln!("SKIPPED {test}: dig is not installed (apt-get install dnsutils)");
    }
    found
}

/// The A record of `name` from the DNS server on `port`, via `dig`.
fn vip(port: u16, name: &str) -> Option<String> {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+time=1",
            "+tries=1",
        ])
        .arg(name)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty() && text.parse::<std::net::Ipv4Addr>().is_ok()).then_some(text)
}

/// A backend and a frontend proxy on `cp`'s mesh, traffic flowing over mTLS.
struct Mesh {
    _app: App,
    backend: Dataplane,
    frontend: Dataplane,
    outbound: u16,
}

fn start_mesh(cp: &ControlPlane, envoy: &Path, dir: &Path) -> Mesh {
    let url = cp.url("/meshes/default");
    let (status, body) = try_http_put_json(&url, MTLS_MESH).expect("PUT mesh");
    assert!(status == 200 || status == 201, "PUT {url}: {status} {body}");
    let app = App::start("backend-1");
    let yaml = kuma_testing::backend_yaml("backend-1", free_port(), app.port, None);
    let mut backend = Dataplane::start(cp, envoy, dir, "backend-1", &yaml);
    backend.wait_ready(READY);
    let outbound = free_port();
    let yaml =
        kuma_testing::caller_yaml("frontend", "frontend", free_port(), free_port(), outbound);
    let mut frontend = Dataplane::start(cp, envoy, dir, "frontend", &yaml);
    frontend.wait_ready(READY);
    wait_for("frontend -> backend over mTLS", APPLIED, || {
        allowed(outbound).then_some(())
    });
    Mesh {
        _app: app,
        backend,
        frontend,
        outbound,
    }
}

/// Removes the allow-all permission through `cp` and waits until Envoy
/// denies the frontend: a change made now reached the proxies.
fn deny_all_reaches_envoy(cp: &ControlPlane, outbound: u16) {
    let url = cp.url("/meshes/default/traffic-permissions/allow-all-default");
    let (status, body) = try_http_delete(&url).expect("DELETE allow-all");
    assert_eq!(status, 200, "DELETE {url}: {body}");
    wait_for("the deny to reach the frontend's Envoy", APPLIED, || {
        (!allowed(outbound)).then_some(())
    });
}

fn assert_no_failures(what: &str, t: &Tally, least: usize) {
    eprintln!(
        "{what}: {} requests, {} failed",
        t.total_ok() + t.errors.len(),
        t.errors.len()
    );
    assert!(t.total_ok() >= least, "{what}: too few requests: {t:?}");
    assert!(
        t.errors.is_empty(),
        "{what}: requests failed: {:?}",
        t.errors
    );
}

#[test]
fn local_store_kill9() {
    let Some(envoy) = kuma_testing::envoy_or_skip("local_store_kill9") else {
        return;
    };
    if !dig_available("local_store_kill9") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("kuma-e2e-restart-")
        .tempdir()
        .expect("a temp dir");
    let path = dir.path();
    let store = StoreDir::new();
    let mut cp = ControlPlane::start_on_store(path, "kuma-cp-1", &store, None, &[]);
    let mesh = start_mesh(&cp, &envoy, path);
    let vip_before = wait_for("a VIP for backend.mesh", APPLIED, || {
        vip(cp.ports.dns, "backend.mesh")
    });
    let before = state(&cp);
    let first_instance = connected_to(&cp, "frontend").expect("frontend connected");

    let load = Load::start(mesh.outbound);
    std::thread::sleep(Duration::from_secs(1));
    let ports = cp.ports;
    cp.kill9();
    let killed = Instant::now();
    std::thread::sleep(OUTAGE);
    let cp = ControlPlane::start_on_store(path, "kuma-cp-2", &store, Some(ports), &[]);
    eprintln!("kuma-cp ready again {:?} after SIGKILL", killed.elapsed());
    // Both proxies come back to the new process, with the tokens they had.
    for name in ["backend-1", "frontend"] {
        let instance = wait_for(&format!("{name} to reconnect"), APPLIED, || {
            connected_to(&cp, name).filter(|i| *i != first_instance)
        });
        eprintln!(
            "{name} reconnected to {instance} {:?} after SIGKILL",
            killed.elapsed()
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let t = load.finish();
    assert_no_failures("through the SIGKILL and restart", &t, 50);

    assert_eq!(state(&cp), before, "the mesh's resources after the restart");
    assert_eq!(
        vip(cp.ports.dns, "backend.mesh").as_deref(),
        Some(vip_before.as_str()),
        "the backend's VIP after the restart"
    );
    deny_all_reaches_envoy(&cp, mesh.outbound);
    drop(mesh.backend);
    drop(mesh.frontend);
}

/// Puts a Dataplane of service `service` (no proxy behind it) through `cp`.
fn put_dataplane(cp: &ControlPlane, name: &str, service: &str) {
    let body = format!(
        r#"{{"type":"Dataplane","mesh":"default","name":"{name}","networking":{{"address":"10.9.9.9","inbound":[{{"port":8080,"tags":{{"kuma.io/service":"{service}"}}}}]}}}}"#
    );
    let url = cp.url(&format!("/meshes/default/dataplanes/{name}"));
    let (status, text) = try_http_put_json(&url, &body).expect("PUT dataplane");
    assert!(status == 200 || status == 201, "PUT {url}: {status} {text}");
}

#[test]
fn postgres_replicas_kill9() {
    let Some(envoy) = kuma_testing::envoy_or_skip("postgres_replicas_kill9") else {
        return;
    };
    if !dig_available("postgres_replicas_kill9") {
        return;
    }
    let Some(pg) = Postgres::start_or_skip("postgres_replicas_kill9") else {
        return;
    };
    pg.create_database("mesh");
    let env = pg.kuma_cp_env("mesh");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut migrate = Command::new(kuma_cp_bin());
    kuma_testing::process::clean_kuma_env(&mut migrate);
    let out = migrate
        .args(["migrate", "up"])
        .envs(env.iter().copied())
        .output()
        .expect("kuma-cp migrate up");
    assert!(
        out.status.success(),
        "kuma-cp migrate up: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::Builder::new()
        .prefix("kuma-e2e-replicas-")
        .tempdir()
        .expect("a temp dir");
    let path = dir.path();
    // Not used by a Postgres replica; `start_on_store` restores nothing.
    let unused = StoreDir::new();
    let mut a = ControlPlane::start_on_store(path, "kuma-cp-a", &unused, None, &env);
    let b = ControlPlane::start_on_store(path, "kuma-cp-b", &unused, None, &env);

    // The proxies are connected to A; the mesh is switched to mTLS through B.
    let url = b.url("/meshes/default");
    let (status, body) = try_http_put_json(&url, MTLS_MESH).expect("PUT mesh");
    assert!(status == 200 || status == 201, "PUT {url}: {status} {body}");
    let mesh = start_mesh(&a, &envoy, path);
    let vip_a = wait_for("a VIP for backend.mesh on A", APPLIED, || {
        vip(a.ports.dns, "backend.mesh")
    });
    let vip_b = wait_for("the same VIP for backend.mesh on B", APPLIED, || {
        vip(b.ports.dns, "backend.mesh").filter(|v| *v == vip_a)
    });
    assert_eq!(vip_a, vip_b);
    let before = state(&b);
    let first_instance = connected_to(&b, "frontend").expect("frontend connected");

    let load = Load::start(mesh.outbound);
    std::thread::sleep(Duration::from_secs(1));
    let ports = a.ports;
    a.kill9();
    let killed = Instant::now();
    std::thread::sleep(OUTAGE);
    // Meanwhile B serves the API alone (and leads, if A led).
    put_dataplane(&b, "late-1", "late");
    let a = ControlPlane::start_on_store(path, "kuma-cp-a2", &unused, Some(ports), &env);
    eprintln!("replica A ready again {:?} after SIGKILL", killed.elapsed());
    for name in ["backend-1", "frontend"] {
        let instance = wait_for(&format!("{name} to reconnect to A"), APPLIED, || {
            connected_to(&b, name).filter(|i| *i != first_instance)
        });
        eprintln!(
            "{name} reconnected to {instance} {:?} after SIGKILL",
            killed.elapsed()
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let t = load.finish();
    assert_no_failures("through replica A's SIGKILL and restart", &t, 50);

    // Nothing was lost and both replicas agree.
    let mut after = state(&a);
    let late = after["dataplanes"]["items"]
        .as_array_mut()
        .expect("items")
        .iter()
        .position(|d| d["name"] == "late-1")
        .expect("the Dataplane written through B while A was down");
    after["dataplanes"]["items"]
        .as_array_mut()
        .expect("items")
        .remove(late);
    after["dataplanes"]["total"] = before["dataplanes"]["total"].clone();
    assert_eq!(after, before, "the mesh's resources after A's restart");
    for cp in [&a, &b] {
        assert_eq!(
            vip(cp.ports.dns, "backend.mesh").as_deref(),
            Some(vip_a.as_str()),
            "the backend's VIP after the restart"
        );
    }
    // The service created while A was down has one VIP, the same on both.
    let late_a = wait_for("a VIP for late.mesh on A", APPLIED, || {
        vip(a.ports.dns, "late.mesh")
    });
    wait_for("the same VIP for late.mesh on B", APPLIED, || {
        vip(b.ports.dns, "late.mesh").filter(|v| *v == late_a)
    });
    assert_ne!(late_a, vip_a, "two services share a VIP");
    // A change through B reaches the proxies connected to A.
    deny_all_reaches_envoy(&b, mesh.outbound);

    // PostgreSQL itself goes away under both replicas: they stay up, say
    // they are not ready, and come back by themselves with nothing lost.
    let mut pg = pg;
    pg.stop();
    for cp in [&a, &b] {
        wait_for("/ready to report the outage", APPLIED, || {
            let ready = try_http_get(&format!("{}/ready", cp.diagnostics));
            matches!(ready, Ok((503, _))).then_some(())
        });
    }
    pg.start_again();
    for cp in [&a, &b] {
        wait_for("/ready again after the outage", APPLIED, || {
            let ready = try_http_get(&format!("{}/ready", cp.diagnostics));
            matches!(ready, Ok((200, _))).then_some(())
        });
    }
    let mut a = a;
    let mut b = b;
    for (name, cp) in [("A", &mut a), ("B", &mut b)] {
        assert!(
            cp.proc.try_wait().is_none(),
            "replica {name} exited during the database outage:\n{}",
            cp.proc.log()
        );
    }
    put_dataplane(&a, "after-outage-1", "after-outage");
    wait_for(
        "a write through A after the outage to be read through B",
        APPLIED,
        || {
            let (status, _) =
                try_http_get(&b.url("/meshes/default/dataplanes/after-outage-1")).ok()?;
            (status == 200).then_some(())
        },
    );
    assert!(
        get_json(&b, "/meshes/default/dataplanes/late-1")["name"] == "late-1",
        "late-1 lost in the outage"
    );
    drop(mesh.backend);
    drop(mesh.frontend);
    drop(pg);
}
