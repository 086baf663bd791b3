//! The Postgres store against a real, throwaway PostgreSQL server
//! (`kuma_testing::Postgres`): the conformance suite, the contention
//! hammer, replicas seeing each other's writes, typed connection errors,
//! an outage of the server, and leader election.
//!
//! Run with `cargo test -p kuma-core --features postgres --test postgres_store`.
#![cfg(feature = "postgres")]

use kuma_core::resource::{DataplaneSpec, Resource, ResourceType};
use kuma_core::store::postgres::{
    PostgresConfig, PostgresError, PostgresStore, PostgresTls, SCHEMA_VERSION, TlsMode, migrate_up,
};
use kuma_core::store::{Event, EventKind, ResourceStore, StoreError, conformance};
use kuma_testing::Postgres;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

fn config(pg: &Postgres, db: &str) -> PostgresConfig {
    PostgresConfig {
        host: pg.host().to_string(),
        port: pg.port(),
        user: pg.user().to_string(),
        password: pg.password().to_string(),
        db_name: db.to_string(),
        connection_timeout: Duration::from_secs(5),
        ..PostgresConfig::default()
    }
}

/// A migrated store on a fresh database of `pg`.
async fn fresh_store(pg: &Postgres, db: &str, capacity: usize) -> PostgresStore {
    pg.create_database(db);
    let cfg = config(pg, db);
    migrate_up(&cfg).await.expect("migrate up");
    PostgresStore::connect(&cfg, capacity)
        .await
        .expect("connect")
}

fn dataplane(mesh: &str, name: &str) -> Resource {
    let mut spec = DataplaneSpec::default();
    spec.networking.address = "10.0.0.1".into();
    Resource::new(Some(mesh), name, spec)
}

/// Waits until `rx` holds `want`, at most `limit`; returns how long it took.
async fn wait_value(rx: &mut watch::Receiver<bool>, want: bool, limit: Duration) -> Duration {
    let start = Instant::now();
    tokio::time::timeout(limit, rx.wait_for(|v| *v == want))
        .await
        .unwrap_or_else(|_| panic!("not {want} within {limit:?}"))
        .expect("the store is gone");
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let Some(pg) = Postgres::start_or_skip("postgres_store_conforms") else {
        return;
    };
    let n = AtomicUsize::new(0);
    let handle = tokio::runtime::Handle::current();
    conformance::run(|capacity| {
        let db = format!("conformance_{}", n.fetch_add(1, Ordering::SeqCst));
        // `run` makes stores synchronously; connecting is async.
        tokio::task::block_in_place(|| handle.block_on(fresh_store(&pg, &db, capacity)))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_loses_no_write_under_contention() {
    let Some(pg) = Postgres::start_or_skip("postgres_store_loses_no_write_under_contention") else {
        return;
    };
    let store: Arc<dyn ResourceStore> = Arc::new(fresh_store(&pg, "hammer", 4096).await);
    let report = conformance::hammer(store, 16, 20).await;
    assert_eq!(report.updates, 320);
    assert!(report.conflicts > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_safe_to_run_at_once() {
    let Some(pg) = Postgres::start_or_skip("migrations_are_idempotent_and_safe_to_run_at_once")
    else {
        return;
    };
    pg.create_database("twice");
    let cfg = config(&pg, "twice");
    let (a, b) = tokio::join!(migrate_up(&cfg), migrate_up(&cfg));
    let (a, b) = (a.expect("first"), b.expect("second"));
    // Exactly one of the two applied the migrations; the other found them.
    let applied: Vec<_> = a
        .applied
        .iter()
        .chain(&b.applied)
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        applied,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>(),
        "{a:?} {b:?}"
    );
    assert_eq!((a.to, b.to), (SCHEMA_VERSION, SCHEMA_VERSION));
    let again = migrate_up(&cfg).await.expect("third");
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.from, SCHEMA_VERSION);
    assert_eq!(
        pg.psql("twice", "SELECT count(*) FROM schema_migrations"),
        SCHEMA_VERSION.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_see_each_others_writes() {
    let Some(pg) = Postgres::start_or_skip("replicas_see_each_others_writes") else {
        return;
    };
    let a = fresh_store(&pg, "replicas", 4096).await;
    let b = PostgresStore::connect(&config(&pg, "replicas"), 4096)
        .await
        .expect("second replica");
    let mut sub_a = a.subscribe(&[ResourceType::Dataplane]);
    let mut sub_b = b.subscribe(&[ResourceType::Dataplane]);
    assert_eq!(sub_a.next().await, Some(Event::Resync));
    assert_eq!(sub_b.next().await, Some(Event::Resync));

    let created = a
        .create(dataplane("m", "from-a"))
        .await
        .expect("create on a");
    let seen = tokio::time::timeout(Duration::from_secs(1), sub_b.next())
        .await
        .expect("b sees a's write within 1 s")
        .expect("open");
    match seen {
        Event::Changed(e) => {
            assert_eq!(e.kind, EventKind::Added);
            assert_eq!(e.key, created.key());
        }
        other => panic!("unexpected {other:?}"),
    }
    // b reads what a wrote, version included, and updates it; a sees that.
    let read = b.get(&created.key()).await.expect("get on b");
    assert_eq!(read, created);
    b.update((*read).clone()).await.expect("update on b");
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(1), sub_a.next()).await {
            Ok(Some(Event::Changed(e))) => kinds.push(e.kind),
            other => panic!("a's subscription: {other:?}"),
        }
    }
    assert_eq!(kinds, [EventKind::Added, EventKind::Updated]);
    // A stale write from a is a conflict, whoever wrote last.
    assert!(matches!(
        a.update((*created).clone()).await,
        Err(StoreError::Conflict { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_databases_and_credentials_give_typed_errors() {
    let Some(pg) = Postgres::start_or_skip("bad_databases_and_credentials_give_typed_errors")
    else {
        return;
    };
    pg.create_database("empty");
    let err = PostgresStore::connect(&config(&pg, "empty"), 16)
        .await
        .expect_err("not migrated");
    assert!(
        matches!(err, PostgresError::NotMigrated { found: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("kuma-cp migrate up"), "{err}");

    let mut wrong = config(&pg, "empty");
    wrong.password = "not-the-password".into();
    let err = PostgresStore::connect(&wrong, 16)
        .await
        .expect_err("wrong password");
    assert!(
        matches!(err, PostgresError::Authentication { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("store.postgres.password"), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
    let err = migrate_up(&wrong)
        .await
        .expect_err("migrate, wrong password");
    assert!(
        matches!(err, PostgresError::Authentication { .. }),
        "{err:?}"
    );

    let err = PostgresStore::connect(&config(&pg, "missing"), 16)
        .await
        .expect_err("no such database");
    assert!(matches!(err, PostgresError::NoDatabase { .. }), "{err:?}");
    assert!(err.to_string().contains("store.postgres.dbName"), "{err}");

    let mut nobody = config(&pg, "empty");
    nobody.port = kuma_testing::free_port();
    let err = PostgresStore::connect(&nobody, 16)
        .await
        .expect_err("unreachable");
    assert!(matches!(err, PostgresError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("store.postgres.host"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_reconnected_with_a_resync() {
    let Some(mut pg) = Postgres::start_or_skip("a_restarted_server_is_reconnected_with_a_resync")
    else {
        return;
    };
    let store = fresh_store(&pg, "outage", 4096).await;
    let mut healthy = store.healthy();
    assert!(*healthy.borrow());
    let mut sub = store.subscribe(&[ResourceType::Dataplane]);
    assert_eq!(sub.next().await, Some(Event::Resync));
    store
        .create(dataplane("m", "before"))
        .await
        .expect("create");
    assert!(matches!(sub.next().await, Some(Event::Changed(_))));

    tokio::task::block_in_place(|| pg.stop());
    wait_value(&mut healthy, false, Duration::from_secs(5)).await;
    match store.create(dataplane("m", "during")).await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("PostgreSQL at"), "{msg}"),
        other => panic!("a write during the outage must fail with Backend: {other:?}"),
    }

    tokio::task::block_in_place(|| pg.start_again());
    wait_value(&mut healthy, true, Duration::from_secs(15)).await;
    let item = tokio::time::timeout(Duration::from_secs(1), sub.next())
        .await
        .expect("an item after the reconnect");
    assert_eq!(item, Some(Event::Resync));
    store
        .create(dataplane("m", "after"))
        .await
        .expect("writes work again");
    assert!(matches!(sub.try_next(), Some(Event::Changed(_))));
    assert!(
        store.get(&dataplane("m", "before").key()).await.is_ok(),
        "nothing was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_a_new_one_when_it_goes() {
    let Some(pg) = Postgres::start_or_skip("one_leader_and_a_new_one_when_it_goes") else {
        return;
    };
    let a = fresh_store(&pg, "leaders", 16).await;
    let b = PostgresStore::connect(&config(&pg, "leaders"), 16)
        .await
        .expect("second replica");
    let (mut la, mut lb) = (a.leadership(), b.leadership());
    // One of them wins within a few seconds...
    tokio::time::timeout(Duration::from_secs(5), async {
        while !*la.borrow() && !*lb.borrow() {
            tokio::select! {
                _ = la.changed() => {}
                _ = lb.changed() => {}
            }
        }
    })
    .await
    .expect("a leader within 5 s");
    // ...and stays the only one.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (leader_is_a, leader_is_b) = (*la.borrow(), *lb.borrow());
    assert!(
        leader_is_a ^ leader_is_b,
        "exactly one leader: a={leader_is_a} b={leader_is_b}"
    );
    let (leader, mut other) = if leader_is_a { (a, lb) } else { (b, la) };
    drop(leader);
    let took = wait_value(&mut other, true, Duration::from_secs(5)).await;
    eprintln!("the other replica became leader {took:?} after the leader went");
}

/// A CA and a server certificate it signed for `names`, as PEM:
/// (ca cert, server cert, server key).
fn certificates(names: &[&str]) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server cert");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// How many connections to `db` use TLS now.
fn tls_connections(pg: &Postgres, db: &str) -> usize {
    pg.psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE s.ssl AND a.datname = '{db}'"
        ),
    )
    .parse()
    .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_check_what_they_say() {
    // The certificate names 127.0.0.1, where the store connects.
    let (ca, cert, key) = certificates(&["127.0.0.1"]);
    let Some(pg) = Postgres::start_tls_or_skip("tls_modes_check_what_they_say", &cert, &key) else {
        return;
    };
    let files = tempfile::tempdir().expect("temp dir");
    let ca_path = files.path().join("ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    let (other_ca, _, _) = certificates(&["127.0.0.1"]);
    let other_ca_path = files.path().join("other-ca.pem");
    std::fs::write(&other_ca_path, &other_ca).expect("write other ca");
    pg.create_database("tls");
    let with = |mode, ca: Option<&std::path::Path>| PostgresConfig {
        tls: PostgresTls {
            mode,
            ca_path: ca.map(Into::into),
            ..PostgresTls::default()
        },
        ..config(&pg, "tls")
    };
    migrate_up(&with(TlsMode::VerifyFull, Some(&ca_path)))
        .await
        .expect("migrate over verified TLS");
    for (mode, ca) in [
        (TlsMode::VerifyFull, Some(ca_path.as_path())),
        (TlsMode::VerifyCa, Some(ca_path.as_path())),
        (TlsMode::VerifyNone, Some(other_ca_path.as_path())),
        (TlsMode::VerifyNone, None),
    ] {
        let store = PostgresStore::connect(&with(mode, ca), 16)
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        store
            .create(dataplane("m", &format!("over-{mode}-{}", ca.is_some())))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(
            tls_connections(&pg, "tls") >= 2,
            "{mode}: the store's connections use TLS"
        );
    }
    // The same server through plain TCP: no TLS connection left over.
    let plain = PostgresStore::connect(&with(TlsMode::Disable, None), 16)
        .await
        .expect("plain");
    plain
        .create(dataplane("m", "plain"))
        .await
        .expect("plain write");
    drop(plain);
    // A CA that did not sign the server's certificate is refused.
    for mode in [TlsMode::VerifyCa, TlsMode::VerifyFull] {
        let err = PostgresStore::connect(&with(mode, Some(&other_ca_path)), 16)
            .await
            .expect_err("an unknown issuer");
        assert!(matches!(err, PostgresError::Tls { .. }), "{mode}: {err:?}");
        assert!(err.to_string().contains("store.postgres.tls"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let (ca, cert, key) = certificates(&["db.example"]);
    let Some(pg) = Postgres::start_tls_or_skip(
        "verify_full_checks_the_host_name_and_verify_ca_does_not",
        &cert,
        &key,
    ) else {
        return;
    };
    let files = tempfile::tempdir().expect("temp dir");
    let ca_path = files.path().join("ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    pg.create_database("names");
    let with = |mode| PostgresConfig {
        tls: PostgresTls {
            mode,
            ca_path: Some(ca_path.clone()),
            ..PostgresTls::default()
        },
        ..config(&pg, "names")
    };
    let err = migrate_up(&with(TlsMode::VerifyFull))
        .await
        .expect_err("the certificate names db.example, not 127.0.0.1");
    assert!(matches!(err, PostgresError::Tls { .. }), "{err:?}");
    migrate_up(&with(TlsMode::VerifyCa))
        .await
        .expect("verifyCa does not check the name");
}
