//! Proxies come back quickly after a control-plane crash: real Envoys
//! (through kuma-dp) connected to kuma-cp, kuma-cp killed with SIGKILL, a
//! new kuma-cp started on the same ports 2 s later. Envoy's xDS reconnect
//! backoff set by the bootstrap (at most 1 s between attempts) brings every
//! proxy's stream back within about a second of the new kuma-cp being
//! ready; Envoy's default (doubling up to 30 s) left some away for 12 s.
//!
//! The new kuma-cp has an empty in-memory store, so a Dataplane listed by
//! its API was registered again by its proxy's new ADS stream: that is the
//! observation. Tokens are off (`dpServer.auth.type: none`): the memory
//! store forgets the signing keys.

use kuma_testing::{App, ControlPlane, Dataplane, DpToken, free_port, wait_for};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(30);

/// How long after the new kuma-cp is ready every proxy must be back.
const BACK_WITHIN: Duration = Duration::from_millis(2500);

const ENV: &[(&str, &str)] = &[("KUMA_DP_SERVER_AUTH_TYPE", "none")];

#[test]
fn proxies_reconnect_within_seconds_of_a_crashed_control_plane_returning() {
    let Some(envoy) = kuma_testing::envoy_or_skip("reconnect") else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("kuma-e2e-reconnect-")
        .tempdir()
        .expect("temp dir");
    let mut cp = ControlPlane::start_in_with_env(dir.path(), "kuma-cp", None, ENV);
    // Several proxies: each one's retry schedule is random, so more of
    // them make a slow one more likely to show.
    let names = ["backend-1", "backend-2", "backend-3"];
    let mut proxies = Vec::new();
    for name in names {
        let app = App::start(name);
        let yaml = kuma_testing::backend_yaml(name, free_port(), app.port, None);
        let mut dp = Dataplane::start_with_token(
            &cp,
            &envoy,
            dir.path(),
            name,
            &yaml,
            &[],
            DpToken::Without,
        );
        dp.wait_ready(READY);
        proxies.push((app, dp));
    }
    let all: BTreeSet<String> = names.map(String::from).into();
    assert_eq!(cp.dataplanes(), Some(all.clone()));

    for round in 1..=2 {
        let ports = cp.ports;
        cp.signal("KILL");
        cp.proc
            .wait_exit(Duration::from_secs(5))
            .expect("kuma-cp did not die of SIGKILL");
        std::thread::sleep(Duration::from_secs(2));
        cp = ControlPlane::start_in_with_env(
            dir.path(),
            &format!("kuma-cp-{}", round + 1),
            Some(ports),
            ENV,
        );
        let ready = Instant::now();
        let back = wait_for(
            "every proxy to re-register with the new kuma-cp",
            Duration::from_secs(40),
            || {
                cp.dataplanes()
                    .is_some_and(|d| d == all)
                    .then(|| ready.elapsed())
            },
        );
        println!(
            "reconnect round {round}: kuma-cp ready {:?} after spawn; all {} proxies back {back:?} after ready",
            cp.ready_after,
            names.len()
        );
        assert!(
            back <= BACK_WITHIN,
            "round {round}: proxies took {back:?} (> {BACK_WITHIN:?}) to come back after kuma-cp was ready"
        );
        for (_, dp) in &mut proxies {
            assert!(dp.proc.try_wait().is_none(), "kuma-dp {} exited", dp.name);
        }
    }
}
