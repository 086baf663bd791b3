//! End to end with a real Envoy: the outbound connection policies
//! (Timeout, Retry, HealthCheck, CircuitBreaker) applied through the API
//! change what comes back through the frontend's outbound listener.
//!
//! Each test runs `kuma-cp run` (memory store, ephemeral ports), kuma-dp
//! for the backend instances and the frontend, and tiny HTTP apps (a slow
//! one, a failing one). The tests run one at a time (a lock), so that a
//! loaded 2-core machine runs one mesh at a time.
//!
//! Envoy comes from `ENVOY_BIN`, `<workspace>/.venv/bin/envoy` or `PATH`;
//! without one the tests are skipped, unless `CI=true`. The harness
//! (kuma-testing) builds kuma-cp if needed.
//!
//! Run: `cargo test -p kuma-dp --test policies_outbound_e2e -- --nocapture`.

use kuma_testing::{
    App, AppBehavior, ControlPlane, Dataplane, Tally, free_port, request, send, wait_for,
};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(30);

/// One mesh at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Mesh {
    envoy: PathBuf,
    dir: tempfile::TempDir,
    cp: ControlPlane,
}

fn setup(test: &str) -> Option<Mesh> {
    let envoy = kuma_testing::envoy_or_skip(test)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("kuma-e2e-{test}-"))
        .tempdir()
        .expect("creating a temp dir");
    let cp = ControlPlane::start_in(dir.path(), "kuma-cp", None);
    Some(Mesh { envoy, dir, cp })
}

impl Mesh {
    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts a backend Dataplane named `name` in front of `app_port` and
    /// waits until its Envoy is ready.
    fn backend(&self, name: &str, app_port: u16) -> Dataplane {
        let yaml = kuma_testing::backend_yaml(name, free_port(), app_port, None);
        let mut dp = Dataplane::start(&self.cp, &self.envoy, self.dir(), name, &yaml);
        dp.wait_ready(READY);
        dp
    }

    /// Starts the frontend and waits until a request through its outbound
    /// listener gets `200` from `good`. Returns it and its outbound port.
    fn frontend(&self, good: &str) -> (Dataplane, u16) {
        let outbound = free_port();
        let yaml = kuma_testing::frontend_yaml("frontend", free_port(), free_port(), outbound);
        let mut dp = Dataplane::start(&self.cp, &self.envoy, self.dir(), "frontend", &yaml);
        dp.wait_ready(READY);
        wait_for(
            "a request through the frontend to reach the backend",
            Duration::from_secs(30),
            || match request(outbound) {
                Ok((200, body)) if body == good => Some(()),
                _ => None,
            },
        );
        (dp, outbound)
    }

    /// Applies a policy of mesh `default` from `frontend` to `backend`.
    fn policy(&self, kind: &str, collection: &str, name: &str, conf: serde_json::Value) {
        let json = serde_json::json!({
            "type": kind,
            "mesh": "default",
            "name": name,
            "sources": [{"match": {"kuma.io/service": "frontend"}}],
            "destinations": [{"match": {"kuma.io/service": "backend"}}],
            "conf": conf,
        });
        self.cp.put(collection, name, &json.to_string());
    }
}

/// Waits until the frontend's Envoy config (`/config_dump` of `resource`)
/// contains `needle`, with no listener still warming.
fn wait_config(fe: &Dataplane, resource: &str, needle: &str) {
    wait_for(
        &format!("the frontend's {resource} to contain {needle}"),
        Duration::from_secs(30),
        || {
            let (status, dump) = fe
                .admin(&format!("/config_dump?resource={resource}"))
                .ok()?;
            (status == 200 && dump.contains(needle) && !dump.contains("warming_state"))
                .then_some(())
        },
    );
}

fn describe(t: &Tally) -> String {
    format!(
        "ok {:?}, {} errors (first: {:?})",
        t.ok,
        t.errors.len(),
        t.errors.first()
    )
}

/// (1) Timeout: a backend answering after 2 s; with `requestTimeout: 300ms`
/// the frontend answers 504 well before that.
#[test]
fn timeout_cuts_a_slow_backend() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mesh) = setup("timeout") else {
        return;
    };
    let slow = App::start_with(
        "slow",
        AppBehavior {
            delay: Duration::from_secs(2),
            ..Default::default()
        },
    );
    let _backend = mesh.backend("slow", slow.port);
    let (fe, port) = mesh.frontend("slow");

    let started = Instant::now();
    let before = request(port);
    let slow_answer = started.elapsed();
    println!("timeout: without a Timeout: {before:?} after {slow_answer:?}");
    assert_eq!(before, Ok((200, "slow".to_string())));
    assert!(
        slow_answer >= Duration::from_millis(1900),
        "{slow_answer:?}"
    );

    mesh.policy(
        "Timeout",
        "timeouts",
        "slow-backend",
        serde_json::json!({"http": {"requestTimeout": "300ms"}}),
    );
    wait_config(&fe, "dynamic_listeners", "\"timeout\": \"0.300s\"");

    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let r = request(port);
        let took = started.elapsed();
        worst = worst.max(took);
        let status = r.as_ref().map(|(s, _)| *s);
        assert_eq!(status, Ok(504), "with requestTimeout 300ms: {r:?}");
        assert!(
            took < Duration::from_millis(1500),
            "504 took {took:?}, not well under the backend's 2 s"
        );
    }
    println!("timeout: with requestTimeout 300ms: 5 x 504, slowest {worst:?}");
}

/// (2) Retry: one instance always answers 503; without a Retry some
/// requests fail, with one (3 retries, 503 retriable) none does.
#[test]
fn retry_hides_a_failing_instance() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mesh) = setup("retry") else {
        return;
    };
    let good = App::start("good");
    let bad = App::start_with(
        "bad",
        AppBehavior {
            status: 503,
            ..Default::default()
        },
    );
    let _good_dp = mesh.backend("good", good.port);
    let _bad_dp = mesh.backend("bad", bad.port);
    let (fe, port) = mesh.frontend("good");

    let without = send(port, 40);
    println!("retry: without a Retry: {}", describe(&without));
    assert!(
        !without.errors.is_empty(),
        "the failing instance should show without a Retry: {}",
        describe(&without)
    );
    assert!(bad.hits() > 0);

    mesh.policy(
        "Retry",
        "retries",
        "retry-backend",
        serde_json::json!({"http": {"numRetries": 3, "retriableStatusCodes": [503]}}),
    );
    wait_config(&fe, "dynamic_listeners", "retriable-status-codes");

    let bad_before = bad.hits();
    let with = send(port, 100);
    println!(
        "retry: with a Retry: {} (the failing instance was tried {} times)",
        describe(&with),
        bad.hits() - bad_before
    );
    assert!(with.errors.is_empty(), "{}", describe(&with));
    assert_eq!(with.count("good"), 100);
    assert!(
        bad.hits() > bad_before,
        "the failing instance got no attempts, so no retry was needed"
    );
}

/// (3) HealthCheck: an instance whose app is down (its Envoy answers 503)
/// fails an active HTTP check and gets no more requests.
#[test]
fn health_check_takes_out_a_dead_instance() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mesh) = setup("health") else {
        return;
    };
    let good = App::start("good");
    // Nothing listens on the app port of `dead`.
    let _good_dp = mesh.backend("good", good.port);
    let _dead_dp = mesh.backend("dead", free_port());
    let (fe, port) = mesh.frontend("good");

    let without = send(port, 40);
    println!("health: without a HealthCheck: {}", describe(&without));
    assert!(
        !without.errors.is_empty(),
        "the dead instance should show without a HealthCheck: {}",
        describe(&without)
    );

    mesh.policy(
        "HealthCheck",
        "health-checks",
        "check-backend",
        serde_json::json!({
            "interval": "1s",
            "timeout": "500ms",
            "unhealthyThreshold": 1,
            "healthyThreshold": 1,
            "healthyPanicThreshold": 0,
            "http": {"path": "/health", "expectedStatuses": [200]},
        }),
    );
    wait_config(&fe, "dynamic_active_clusters", "\"path\": \"/health\"");
    let applied = Instant::now();
    // The first round of checks marks the dead instance.
    wait_for(
        "the frontend's Envoy to mark the dead instance unhealthy",
        Duration::from_secs(30),
        || {
            let (_, clusters) = fe.admin("/clusters").ok()?;
            clusters
                .lines()
                .any(|l| {
                    l.starts_with("backend::") && l.contains("health_flags::/failed_active_hc")
                })
                .then_some(())
        },
    );
    println!("health: dead instance marked after {:?}", applied.elapsed());

    let good_before = good.hits();
    let with = send(port, 100);
    println!("health: with a HealthCheck: {}", describe(&with));
    assert!(with.errors.is_empty(), "{}", describe(&with));
    assert_eq!(with.count("good"), 100);
    // The checks themselves reach the good app too, so at least 100.
    assert!(good.hits() - good_before >= 100);
}

/// (4) CircuitBreaker: outlier detection ejects the instance answering 5xx
/// after a few consecutive errors; then only the healthy one serves.
#[test]
fn circuit_breaker_ejects_a_failing_instance() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mesh) = setup("outlier") else {
        return;
    };
    let good = App::start("good");
    let bad = App::start_with(
        "bad",
        AppBehavior {
            status: 500,
            ..Default::default()
        },
    );
    let _good_dp = mesh.backend("good", good.port);
    let _bad_dp = mesh.backend("bad", bad.port);
    let (fe, port) = mesh.frontend("good");

    mesh.policy(
        "CircuitBreaker",
        "circuit-breakers",
        "break-backend",
        serde_json::json!({
            "interval": "1s",
            "baseEjectionTime": "60s",
            "maxEjectionPercent": 50,
            "detectors": {"totalErrors": {"consecutive": 3}},
        }),
    );
    wait_config(&fe, "dynamic_active_clusters", "\"consecutive_5xx\": 3");

    // Errors until the detector has seen 3 in a row from `bad`.
    let mut warmup = Tally::default();
    wait_for(
        "the failing instance to be ejected",
        Duration::from_secs(30),
        || {
            warmup.add(request(port));
            let (_, stats) = fe
                .admin("/stats?filter=outlier_detection.ejections_active")
                .ok()?;
            stats
                .lines()
                .any(|l| l.starts_with("cluster.backend.") && l.ends_with(": 1"))
                .then_some(())
        },
    );
    println!(
        "outlier: ejected after {} requests: {}",
        warmup.total_ok() + warmup.errors.len(),
        describe(&warmup)
    );
    assert!(warmup.errors.len() >= 3, "{}", describe(&warmup));

    let bad_before = bad.hits();
    let after = send(port, 100);
    println!("outlier: after ejection: {}", describe(&after));
    assert!(after.errors.is_empty(), "{}", describe(&after));
    assert_eq!(after.count("good"), 100);
    assert_eq!(
        bad.hits(),
        bad_before,
        "the ejected instance still got requests"
    );
}
