//! Incremental (delta) ADS with a real Envoy: kuma-dp `--xds-delta` makes
//! Envoy use DELTA_GRPC; the basic frontend -> backend scenario works, and
//! endpoint changes (an instance joining, one leaving) reach the frontend.

use kuma_testing::{App, ControlPlane, Dataplane, free_port, send, wait_for};
use std::time::Duration;

const READY: Duration = Duration::from_secs(30);

struct Backend {
    app: App,
    dp: Dataplane,
}

fn backend(
    cp: &ControlPlane,
    envoy: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
) -> Backend {
    let app = App::start(name);
    let yaml = kuma_testing::backend_yaml(name, free_port(), app.port, None);
    let mut dp = Dataplane::start_with(cp, envoy, dir, name, &yaml, &["--xds-delta"]);
    dp.wait_ready(READY);
    Backend { app, dp }
}

/// A cleanup age short enough for "one leaves" (the default keeps a
/// departed proxy's Dataplane 30 s).
const SHORT_CLEANUP_AGE: &[(&str, &str)] =
    &[("KUMA_RUNTIME_UNIVERSAL_DATAPLANE_CLEANUP_AGE", "1s")];

#[test]
fn delta_ads_serves_traffic_and_endpoint_changes() {
    let Some(envoy) = kuma_testing::envoy_or_skip("delta_ads") else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("kuma-e2e-delta-")
        .tempdir()
        .expect("temp dir");
    // "One leaves" expects the proxy's endpoint gone promptly: a short
    // cleanup age.
    let mut cp = ControlPlane::start_in_with_env(dir.path(), "kuma-cp", None, SHORT_CLEANUP_AGE);
    let a = backend(&cp, &envoy, dir.path(), "backend-a");
    let mut b = backend(&cp, &envoy, dir.path(), "backend-b");

    let outbound = free_port();
    let yaml = kuma_testing::frontend_yaml("frontend", free_port(), free_port(), outbound);
    let mut fe =
        Dataplane::start_with(&cp, &envoy, dir.path(), "frontend", &yaml, &["--xds-delta"]);
    fe.wait_ready(READY);
    // Envoy really speaks delta: its ADS config says so.
    let (_, bootstrap) = fe.admin("/config_dump").expect("config_dump");
    assert!(
        bootstrap.contains("DELTA_GRPC"),
        "Envoy's ADS is not delta: {bootstrap}"
    );

    // Both instances answer through the frontend.
    wait_for(
        "both backends through the frontend",
        Duration::from_secs(20),
        || {
            let t = send(outbound, 20);
            (t.count("backend-a") > 0 && t.count("backend-b") > 0).then_some(())
        },
    );
    let t = send(outbound, 60);
    assert!(t.errors.is_empty(), "errors: {:?}", t.errors);
    assert_eq!(t.count("backend-a") + t.count("backend-b"), 60);

    // A third instance joins: the frontend learns its endpoint incrementally.
    let c = backend(&cp, &envoy, dir.path(), "backend-c");
    wait_for(
        "backend-c to receive traffic",
        Duration::from_secs(10),
        || (send(outbound, 10).count("backend-c") > 0).then_some(()),
    );

    // One leaves: it is removed from the frontend's endpoints.
    b.dp.proc.terminate(Duration::from_secs(10));
    wait_for(
        "backend-b to stop receiving traffic",
        Duration::from_secs(10),
        || {
            let t = send(outbound, 30);
            (t.count("backend-b") == 0 && t.errors.is_empty()).then_some(())
        },
    );
    let t = send(outbound, 60);
    assert!(t.errors.is_empty(), "errors: {:?}", t.errors);
    assert_eq!(t.count("backend-b"), 0);
    assert!(
        t.count("backend-a") > 0 && t.count("backend-c") > 0,
        "{:?}",
        t.ok
    );

    // Resync on reconnect: kuma-cp restarts with an empty store; the delta
    // streams reconnect (telling what they hold), the proxies re-register,
    // and a later endpoint change still reaches the frontend.
    let ports = cp.ports;
    cp.proc.terminate(Duration::from_secs(10));
    let cp =
        ControlPlane::start_in_with_env(dir.path(), "kuma-cp-2", Some(ports), SHORT_CLEANUP_AGE);
    wait_for(
        "the proxies to re-register",
        Duration::from_secs(30),
        || {
            cp.dataplanes().filter(|d| {
                ["frontend", "backend-a", "backend-c"]
                    .iter()
                    .all(|n| d.contains(*n))
            })
        },
    );
    let _d = backend(&cp, &envoy, dir.path(), "backend-d");
    wait_for(
        "backend-d to receive traffic after the restart",
        Duration::from_secs(15),
        || (send(outbound, 10).count("backend-d") > 0).then_some(()),
    );
    let t = send(outbound, 60);
    assert!(
        t.errors.is_empty(),
        "errors after the restart: {:?}",
        t.errors
    );
    let _ = (&a.app, &c.app, &b.app);
}
