//! End to end with a real Envoy: `kuma-cp run` (memory store, ephemeral
//! ports), one `kuma-dp run` per proxy with `--dataplane-file`, tiny HTTP
//! apps behind backend Dataplanes, and requests through the frontend's
//! outbound listener. Assertions are on what came back over the wire.
//!
//! Envoy comes from `ENVOY_BIN`, `<workspace>/.venv/bin/envoy` or `PATH`
//! (scripts/test installs it); without one the tests are skipped, unless
//! `CI=true`. The harness (kuma-testing) builds kuma-cp and kumactl if
//! needed.
//!
//! Run: `cargo test -p kuma-dp --test envoy_e2e -- --nocapture`.

use kuma_testing::{App, ControlPlane, Dataplane, Tally, free_port, request, send, wait_for};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(30);

/// A backend instance: its app and its proxy.
struct Backend {
    app: App,
    dp: Dataplane,
}

/// Starts the app and kuma-dp of backend instance `name` (the app answers
/// with `name`); does not wait for Envoy.
fn spawn_backend(
    cp: &ControlPlane,
    envoy: &Path,
    dir: &Path,
    name: &str,
    version: Option<&str>,
) -> Backend {
    let app = App::start(name);
    let yaml = kuma_testing::backend_yaml(name, free_port(), app.port, version);
    let dp = Dataplane::start(cp, envoy, dir, name, &yaml);
    Backend { app, dp }
}

/// Starts backend instances and waits until every Envoy is ready (so every
/// Dataplane is registered).
fn start_backends(
    cp: &ControlPlane,
    envoy: &Path,
    dir: &Path,
    instances: &[(&str, Option<&str>)],
) -> Vec<Backend> {
    let mut backends: Vec<Backend> = instances
        .iter()
        .map(|(name, version)| spawn_backend(cp, envoy, dir, name, *version))
        .collect();
    for b in &mut backends {
        b.dp.wait_ready(READY);
    }
    backends
}

/// The frontend proxy and its outbound port for `backend`.
struct Frontend {
    dp: Dataplane,
    outbound: u16,
}

/// Starts the frontend proxy and waits until a request through its
/// outbound listener reaches one of `backends`.
fn start_frontend(cp: &ControlPlane, envoy: &Path, dir: &Path, backends: &[Backend]) -> Frontend {
    let outbound = free_port();
    let yaml = kuma_testing::frontend_yaml("frontend", free_port(), free_port(), outbound);
    let mut dp = Dataplane::start(cp, envoy, dir, "frontend", &yaml);
    dp.wait_ready(READY);
    let names: BTreeSet<&str> = backends.iter().map(|b| b.app.name.as_str()).collect();
    wait_for(
        "a request through the frontend to reach a backend",
        Duration::from_secs(20),
        || match request(outbound) {
            Ok((200, body)) if names.contains(body.as_str()) => Some(()),
            _ => None,
        },
    );
    Frontend { dp, outbound }
}

/// A cleanup age short enough for "a proxy that left leaves the mesh".
const SHORT_CLEANUP_AGE: &[(&str, &str)] =
    &[("KUMA_RUNTIME_UNIVERSAL_DATAPLANE_CLEANUP_AGE", "1s")];

fn setup(test: &str) -> Option<(std::path::PathBuf, tempfile::TempDir, ControlPlane)> {
    // The churn case expects a proxy that left to leave the mesh promptly.
    kuma_testing::start_e2e(test, SHORT_CLEANUP_AGE)
}

fn assert_only_from(tally: &Tally, allowed: &[&str], context: &str) {
    assert!(
        tally.errors.is_empty(),
        "{context}: {} failed requests, first: {:?} (ok: {:?})",
        tally.errors.len(),
        tally.errors.first(),
        tally.ok
    );
    for body in tally.ok.keys() {
        assert!(
            allowed.contains(&body.as_str()),
            "{context}: response {body:?} is not from one of {allowed:?}"
        );
    }
}

fn traffic_route_json(name: &str, split: &[(u32, &str)]) -> String {
    let split: Vec<serde_json::Value> = split
        .iter()
        .map(|(w, v)| {
            serde_json::json!({
                "weight": w,
                "destination": {"kuma.io/service": "backend", "version": v},
            })
        })
        .collect();
    serde_json::json!({
        "type": "TrafficRoute",
        "mesh": "default",
        "name": name,
        "sources": [{"match": {"kuma.io/service": "frontend"}}],
        "destinations": [{"match": {"kuma.io/service": "backend"}}],
        "conf": {"split": split},
    })
    .to_string()
}

/// Waits until the frontend's active listeners use every cluster in
/// `clusters` (the route reached Envoy and is no longer warming).
fn wait_route_applied(fe: &Frontend, clusters: &[&str], timeout: Duration) {
    wait_for(
        &format!("the frontend's listener to route to {clusters:?}"),
        timeout,
        || {
            let (status, dump) = fe
                .dp
                .admin("/config_dump?resource=dynamic_listeners")
                .ok()?;
            (status == 200
                && !dump.contains("warming_state")
                && clusters.iter().all(|c| dump.contains(&format!("\"{c}\""))))
            .then_some(())
        },
    );
}

/// a. frontend -> backend: two instances behind the frontend's outbound
/// listener share the traffic, and every answer comes from one of them.
#[test]
fn frontend_reaches_both_backend_instances() {
    let Some((envoy, dir, cp)) = setup("outbound") else {
        return;
    };
    let started = Instant::now();
    let backends = start_backends(
        &cp,
        &envoy,
        dir.path(),
        &[("backend-v1-a", None), ("backend-v1-b", None)],
    );
    let fe = start_frontend(&cp, &envoy, dir.path(), &backends);
    let before: Vec<u64> = backends.iter().map(|b| b.app.hits()).collect();

    let tally = send(fe.outbound, 100);
    println!("outbound: 100 requests -> {:?}", tally.ok);
    assert_only_from(&tally, &["backend-v1-a", "backend-v1-b"], "outbound");
    assert_eq!(tally.total_ok(), 100);
    for (b, before) in backends.iter().zip(before) {
        let served = b.app.hits() - before;
        assert!(
            served > 0,
            "{} received no traffic: {:?}",
            b.app.name,
            tally.ok
        );
        assert_eq!(
            served as usize,
            tally.count(&b.app.name),
            "{}: requests served by the app and answers received differ",
            b.app.name
        );
    }
    println!("outbound: done in {:?}", started.elapsed());
}

/// b. A TrafficRoute applied through the API splits 90/10 between the
/// `version: v1` and `version: v2` instances.
#[test]
fn traffic_route_splits_90_10() {
    let Some((envoy, dir, cp)) = setup("split") else {
        return;
    };
    let started = Instant::now();
    let backends = start_backends(
        &cp,
        &envoy,
        dir.path(),
        &[("backend-v1-a", Some("v1")), ("backend-v2-a", Some("v2"))],
    );
    let fe = start_frontend(&cp, &envoy, dir.path(), &backends);

    cp.put(
        "traffic-routes",
        "split",
        &traffic_route_json("split", &[(90, "v1"), (10, "v2")]),
    );
    wait_route_applied(
        &fe,
        &["backend;version=v1", "backend;version=v2"],
        Duration::from_secs(15),
    );
    // Both subsets serve before counting.
    wait_for(
        "v2 traffic through the split",
        Duration::from_secs(10),
        || (send(fe.outbound, 20).count("backend-v2-a") > 0).then_some(()),
    );

    let n = 500;
    let tally = send(fe.outbound, n);
    let (v1, v2) = (tally.count("backend-v1-a"), tally.count("backend-v2-a"));
    let share = v1 as f64 / n as f64;
    println!("split: {n} requests -> v1 {v1}, v2 {v2} (v1 share {share:.3})");
    assert_only_from(&tally, &["backend-v1-a", "backend-v2-a"], "split");
    assert_eq!(v1 + v2, n);
    assert!(
        (0.84..=0.96).contains(&share),
        "v1 share {share:.3} is outside 0.84..=0.96 for a 90/10 split (v1 {v1}, v2 {v2})"
    );
    assert!(v2 > 0, "v2 got no traffic");
    println!("split: done in {:?}", started.elapsed());
}

/// One request sent by the background load.
struct Sample {
    at: Instant,
    result: Result<(u16, String), String>,
}

/// Requests sent one after another from a thread until dropped.
struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let result = request(port);
                s.lock().unwrap().push(Sample {
                    at: Instant::now(),
                    result,
                });
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Load {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// When `instance` first answered after `since`.
    fn first_hit(&self, instance: &str, since: Instant) -> Option<Instant> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.at >= since && matches!(&s.result, Ok((200, b)) if b == instance))
            .map(|s| s.at)
    }

    /// Samples taken in `[from, to)`.
    fn tally(&self, from: Instant, to: Instant) -> Tally {
        let mut t = Tally::default();
        for s in self.samples.lock().unwrap().iter() {
            if s.at >= from && s.at < to {
                t.add(s.result.clone());
            }
        }
        t
    }

    /// Whether the last `n` samples after `since` are all 200s not from `instance`.
    fn settled_without(&self, instance: &str, since: Instant, n: usize) -> bool {
        let samples = self.samples.lock().unwrap();
        let recent: Vec<&Sample> = samples.iter().filter(|s| s.at >= since).collect();
        recent.len() >= n
            && recent[recent.len() - n..]
                .iter()
                .all(|s| matches!(&s.result, Ok((200, b)) if b != instance))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// c. A new instance gets traffic within a second of registering; a removed
/// one (SIGTERM to its kuma-dp) stops getting it and nothing fails after.
#[test]
fn instances_join_and_leave_under_load() {
    let Some((envoy, dir, cp)) = setup("churn") else {
        return;
    };
    let started = Instant::now();
    let backends = start_backends(
        &cp,
        &envoy,
        dir.path(),
        &[("backend-v1-a", None), ("backend-v1-b", None)],
    );
    let fe = start_frontend(&cp, &envoy, dir.path(), &backends);
    let load = Load::start(fe.outbound);
    std::thread::sleep(Duration::from_millis(200));

    // Join.
    let t_start = Instant::now();
    let steady = load.tally(started, t_start);
    assert_only_from(
        &steady,
        &["backend-v1-a", "backend-v1-b"],
        "before the join",
    );
    let mut new = spawn_backend(&cp, &envoy, dir.path(), "backend-v1-c", None);
    let (mut t_registered, mut t_ready, mut t_first) = (None, None, None);
    wait_for(
        "backend-v1-c to register, be ready and serve",
        Duration::from_secs(30),
        || {
            if t_registered.is_none() && cp.dataplanes().is_some_and(|d| d.contains("backend-v1-c"))
            {
                t_registered = Some(Instant::now());
            }
            if t_ready.is_none() && new.dp.is_ready() {
                t_ready = Some(Instant::now());
            }
            if t_first.is_none() {
                t_first = load.first_hit("backend-v1-c", t_start);
            }
            if let Some(status) = new.dp.proc.try_wait() {
                panic!("kuma-dp backend-v1-c exited: {status}");
            }
            (t_registered.is_some() && t_ready.is_some() && t_first.is_some()).then_some(())
        },
    );
    let (t_registered, t_ready, t_first) =
        (t_registered.unwrap(), t_ready.unwrap(), t_first.unwrap());
    let since = |t: Instant| t.saturating_duration_since(t_start);
    let propagation = t_first.saturating_duration_since(t_registered);
    let joining = load.tally(t_start, t_first);
    println!(
        "churn: backend-v1-c: kuma-dp started +0, Dataplane seen in API +{:?}, Envoy ready +{:?}, \
         first answer through the frontend +{:?}; propagation {:?}; {} requests failed while joining {:?}",
        since(t_registered),
        since(t_ready),
        since(t_first),
        propagation,
        joining.errors.len(),
        joining.errors.first()
    );
    assert!(
        propagation < Duration::from_secs(1),
        "backend-v1-c served its first request {propagation:?} after registering (limit 1s)"
    );
    // The control plane advertises an instance only once its proxy has
    // acknowledged its listeners, so no request is sent to a port nobody
    // listens on yet.
    assert!(
        joining.errors.is_empty(),
        "{} requests failed while backend-v1-c joined: {:?}",
        joining.errors.len(),
        joining.errors.first()
    );
    // With the new instance in place, everything answers, all three serve.
    let settled = Instant::now() + Duration::from_millis(300);
    wait_for(
        "300 ms of load with three instances",
        Duration::from_secs(5),
        || (Instant::now() >= settled).then_some(()),
    );
    let after_join = load.tally(t_first, Instant::now());
    assert_only_from(
        &after_join,
        &["backend-v1-a", "backend-v1-b", "backend-v1-c"],
        "after the join",
    );
    let tally = send(fe.outbound, 90);
    assert_only_from(
        &tally,
        &["backend-v1-a", "backend-v1-b", "backend-v1-c"],
        "three instances",
    );
    for name in ["backend-v1-a", "backend-v1-b", "backend-v1-c"] {
        assert!(
            tally.count(name) > 0,
            "{name} got no traffic: {:?}",
            tally.ok
        );
    }

    // Leave.
    let t_kill = Instant::now();
    let status = new
        .dp
        .proc
        .terminate(Duration::from_secs(10))
        .expect("kuma-dp backend-v1-c did not exit within 10s of SIGTERM");
    let t_exit = Instant::now();
    wait_for(
        "backend-v1-c's Dataplane to be removed",
        Duration::from_secs(10),
        || {
            cp.dataplanes()
                .is_some_and(|d| !d.contains("backend-v1-c"))
                .then_some(())
        },
    );
    let t_removed = Instant::now();
    wait_for(
        "30 consecutive answers from the remaining instances",
        Duration::from_secs(10),
        || {
            load.settled_without("backend-v1-c", t_kill, 30)
                .then_some(())
        },
    );
    let t_settled = Instant::now();
    let leaving = load.tally(t_kill, t_settled);
    drop(load);
    println!(
        "churn: backend-v1-c SIGTERM +0: kuma-dp exited {status} +{:?}, Dataplane removed +{:?}, \
         settled +{:?}; {} requests failed while leaving {:?}",
        t_exit - t_kill,
        t_removed - t_kill,
        t_settled - t_kill,
        leaving.errors.len(),
        leaving.errors.first()
    );
    let hits_c = new.app.hits();
    let tally = send(fe.outbound, 100);
    assert_only_from(&tally, &["backend-v1-a", "backend-v1-b"], "after the leave");
    assert_eq!(
        new.app.hits(),
        hits_c,
        "backend-v1-c's app still got requests"
    );
    for name in ["backend-v1-a", "backend-v1-b"] {
        assert!(
            tally.count(name) > 0,
            "{name} got no traffic: {:?}",
            tally.ok
        );
    }
    println!("churn: done in {:?}", started.elapsed());
}

/// d. With kuma-cp stopped traffic keeps flowing; a kuma-cp restarted on
/// the same ports with an empty store gets every proxy back (Dataplanes
/// re-registered from the node metadata) and its changes reach them.
#[test]
fn proxies_survive_control_plane_restart() {
    let Some((envoy, dir, mut cp)) = setup("restart") else {
        return;
    };
    let started = Instant::now();
    let backends = start_backends(
        &cp,
        &envoy,
        dir.path(),
        &[("backend-v1-a", Some("v1")), ("backend-v2-a", Some("v2"))],
    );
    let fe = start_frontend(&cp, &envoy, dir.path(), &backends);
    let all = ["backend-v1-a", "backend-v2-a"];
    assert_only_from(&send(fe.outbound, 20), &all, "before the restart");

    // Stop the control plane: the proxies keep their last config.
    let ports = cp.ports;
    let t_stop = Instant::now();
    let status = cp.proc.terminate(Duration::from_secs(10));
    let stop_time = t_stop.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!("kuma-cp did not exit within 10s of SIGTERM while proxies were connected")
    });
    println!("restart: kuma-cp exited ({status}) {stop_time:?} after SIGTERM");
    let tally = send(fe.outbound, 100);
    println!("restart: with kuma-cp down, 100 requests -> {:?}", tally.ok);
    assert_only_from(&tally, &all, "kuma-cp down");
    for name in all {
        assert!(
            tally.count(name) > 0,
            "{name} got no traffic with kuma-cp down"
        );
    }

    // Same ports, empty store.
    let t_restart = Instant::now();
    cp = ControlPlane::start_in_with_env(dir.path(), "kuma-cp-2", Some(ports), SHORT_CLEANUP_AGE);
    let expected: BTreeSet<String> = ["backend-v1-a", "backend-v2-a", "frontend"]
        .map(String::from)
        .into();
    wait_for(
        "the proxies to re-register with the restarted kuma-cp",
        Duration::from_secs(45),
        || cp.dataplanes().is_some_and(|d| d == expected).then_some(()),
    );
    println!(
        "restart: all Dataplanes back {:?} after the restart",
        t_restart.elapsed()
    );
    assert_only_from(&send(fe.outbound, 20), &all, "after the restart");

    // A change made on the new kuma-cp reaches the proxies.
    let t_change = Instant::now();
    cp.put(
        "traffic-routes",
        "all-to-v2",
        &traffic_route_json("all-to-v2", &[(100, "v2")]),
    );
    let mut streak = 0;
    wait_for(
        "20 answers in a row from v2 after the TrafficRoute",
        Duration::from_secs(30),
        || {
            match request(fe.outbound) {
                Ok((200, b)) if b == "backend-v2-a" => streak += 1,
                _ => streak = 0,
            }
            (streak >= 20).then_some(())
        },
    );
    println!(
        "restart: route to v2 applied within {:?}",
        t_change.elapsed()
    );
    let tally = send(fe.outbound, 100);
    assert_only_from(&tally, &["backend-v2-a"], "all to v2");
    println!("restart: done in {:?}", started.elapsed());
}

/// Issue "Kuma DNS": a transparent-proxy Dataplane gets a virtual
/// `outbound:<vip>:80` listener per service VIP, not bound to a port, and
/// Envoy accepts it (it is active in `/config_dump`, not in an error state).
/// The VIP in the listener is the one Kuma DNS answers for `backend.mesh`.
#[test]
fn vip_listeners_are_accepted_by_envoy() {
    let Some((envoy, dir, cp)) = setup("vip_listeners") else {
        return;
    };
    let _backends = start_backends(&cp, &envoy, dir.path(), &[("backend-v1-a", None)]);
    let yaml = format!(
        "{}  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n",
        kuma_testing::frontend_yaml("frontend", free_port(), free_port(), free_port())
    );
    let mut fe = Dataplane::start(&cp, &envoy, dir.path(), "frontend", &yaml);
    fe.wait_ready(READY);

    // The VIP Kuma DNS gives backend.mesh, as a DNS client sees it.
    let vip = wait_for("backend.mesh to resolve", Duration::from_secs(20), || {
        let out = std::process::Command::new("dig")
            .args(["+short", "+tries=1", "+time=1", "-p"])
            .arg(cp.ports.dns.to_string())
            .args(["@127.0.0.1", "backend.mesh", "A"])
            .output()
            .ok()?;
        let ip = String::from_utf8_lossy(&out.stdout).trim().to_string();
        ip.starts_with("240.").then_some(ip)
    });
    let name = format!("outbound:{vip}:80");
    let dump = wait_for(
        "the VIP listener in the frontend's config_dump",
        Duration::from_secs(20),
        || {
            let (status, body) = fe.admin("/config_dump?resource=dynamic_listeners").ok()?;
            (status == 200 && body.contains(&name)).then_some(body)
        },
    );
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("config_dump is JSON");
    let listener = dump["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| c["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} not in config_dump: {dump}"));
    assert!(
        listener.get("error_state").is_none(),
        "Envoy rejected {name}: {}",
        listener["error_state"]
    );
    let active = &listener["active_state"]["listener"];
    assert_eq!(active["bind_to_port"], false, "{active}");
    assert_eq!(active["address"]["socket_address"]["address"], vip.as_str());
    assert_eq!(active["address"]["socket_address"]["port_value"], 80);
    assert!(
        active.to_string().contains("\"cluster\":\"backend\""),
        "the VIP listener routes to the backend cluster: {active}"
    );
}
