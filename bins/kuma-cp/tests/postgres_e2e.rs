//! End to end: `kuma-cp` on the Postgres store of a real, throwaway
//! PostgreSQL server: `migrate up`, the exits on a database that is not
//! migrated, a wrong password and an unreachable server, and two replicas
//! serving the API from one database.

use kuma_testing::{
    ControlPlane, Postgres, free_port, http_get, http_put, json, kuma_cp_bin, kuma_cp_command,
    run_to_exit,
};
use std::process::Command;

fn set(env: &mut [(&'static str, String)], key: &str, value: &str) {
    env.iter_mut()
        .find(|(k, _)| *k == key)
        .expect("a store variable")
        .1 = value.to_string();
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `kuma-cp run` that must exit 1 by itself; its last stderr line.
fn run_fails(env: &[(&'static str, String)]) -> String {
    let (status, _, stderr) = run_to_exit(kuma_cp_command(&as_refs(env)));
    assert_eq!(status.code(), Some(1), "kuma-cp run must exit 1:\n{stderr}");
    stderr.lines().last().unwrap_or_default().to_string()
}

fn migrate_up(env: &[(&'static str, String)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(kuma_cp_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KUMA_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["migrate", "up"]).envs(as_refs(env));
    let (status, stdout, stderr) = run_to_exit(cmd);
    (status.code(), stdout, stderr)
}

#[test]
fn kuma_cp_refuses_bad_databases_then_runs_migrated_with_two_replicas() {
    let Some(pg) = Postgres::start_or_skip("kuma_cp_postgres_e2e") else {
        return;
    };
    pg.create_database("cp");
    let mut env = pg.kuma_cp_env("cp");

    // Not migrated: one line that says what to run.
    let line = run_fails(&env);
    assert!(line.contains("kuma-cp migrate up"), "{line}");
    assert!(line.contains("not migrated"), "{line}");

    // A wrong password: named, never shown.
    set(&mut env, "KUMA_STORE_POSTGRES_PASSWORD", "wrong-secret");
    let line = run_fails(&env);
    assert!(line.contains("store.postgres.password"), "{line}");
    assert!(!line.contains("wrong-secret"), "{line}");
    let (code, _, stderr) = migrate_up(&env);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("store.postgres.password"), "{stderr}");
    set(&mut env, "KUMA_STORE_POSTGRES_PASSWORD", pg.password());

    // Nobody listening.
    let port = free_port().to_string();
    set(&mut env, "KUMA_STORE_POSTGRES_PORT", &port);
    let line = run_fails(&env);
    assert!(line.contains("store.postgres.host"), "{line}");
    assert!(line.contains(&port), "{line}");
    set(&mut env, "KUMA_STORE_POSTGRES_PORT", &pg.port().to_string());

    // migrate up, then again: nothing to do.
    let (code, stdout, stderr) = migrate_up(&env);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("applied 1 (resources)"), "{stdout}");
    let (code, stdout, stderr) = migrate_up(&env);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("up to date"), "{stdout}");

    // Two replicas on the database: a write through one is read through
    // the other, version included.
    let a = ControlPlane::start(&as_refs(&env));
    let b = ControlPlane::start(&as_refs(&env));
    let body = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  \
                inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n";
    let (status, text) = http_put(
        &a.url("/meshes/default/dataplanes/web-1"),
        "application/yaml",
        body.as_bytes(),
    );
    assert!(status == 200 || status == 201, "{status} {text}");
    let (status, text) = http_get(&b.url("/meshes/default/dataplanes/web-1"));
    assert_eq!(status, 200, "{text}");
    let read = json(&text);
    assert_eq!(read["networking"]["address"], "10.0.0.1", "{read}");
    let (status, text) = http_get(&a.url("/meshes/default/dataplanes/web-1"));
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text), read, "both replicas read the same resource");
    // The rows are in PostgreSQL.
    assert_eq!(
        pg.psql(
            "cp",
            "SELECT count(*) FROM kuma_resources WHERE type = 'Dataplane' AND name = 'web-1'"
        ),
        "1"
    );
}
