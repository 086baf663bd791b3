//! The Postgres store against a throwaway PostgreSQL server of its own
//! (`kuma_testing::Postgres`, durable: the server's defaults, `fsync` and
//! `synchronous_commit` on). Each write returns after its commit and after
//! its own LISTEN/NOTIFY event reached the store's subscribers.
//!
//! - `store_postgres/create`: one Dataplane created (a new name each time).
//! - `store_postgres/update`: one Dataplane updated, carrying its version.
//! - `store_postgres/create_64_writers`: 64 tasks each create one
//!   Dataplane at once; the time for all 64.
//! - `store_postgres/list_10000`: listing the 10,000 Dataplanes of a mesh.
//! - `store_postgres/connect_10000`: `PostgresStore::connect` to a database
//!   holding 10,000 Dataplanes (credentials, schema check, LISTEN).
//! - `store_postgres/connect_and_list_10000`: the same, then listing them
//!   all: what a starting control plane does before it serves.
//!
//! Run with `cargo bench -p kuma-benches --bench store_postgres`; without
//! PostgreSQL (`/usr/lib/postgresql/*/bin`) it prints why and does nothing.

use criterion::Criterion;
use kuma_benches::core::resource::{DataplaneSpec, Resource, ResourceType};
use kuma_benches::core::store::postgres::{PostgresConfig, PostgresStore, migrate_up};
use kuma_benches::core::store::{ListRequest, ResourceStore};
use kuma_testing::Postgres;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const STORED: usize = 10_000;
const WRITERS: usize = 64;

fn dataplane(name: &str) -> Resource {
    let mut spec = DataplaneSpec::default();
    spec.networking.address = "10.0.0.1".into();
    Resource::new(Some("default"), name, spec)
}

fn config(pg: &Postgres, db: &str) -> PostgresConfig {
    PostgresConfig {
        host: pg.host().to_string(),
        port: pg.port(),
        user: pg.user().to_string(),
        password: pg.password().to_string(),
        db_name: db.to_string(),
        max_open_connections: WRITERS,
        ..PostgresConfig::default()
    }
}

/// A migrated store on a new database `db`.
fn store(rt: &Runtime, pg: &Postgres, db: &str) -> Arc<PostgresStore> {
    pg.create_database(db);
    let cfg = config(pg, db);
    rt.block_on(async {
        migrate_up(&cfg).await.expect("migrate up");
        Arc::new(
            PostgresStore::connect(&cfg, 1 << 14)
                .await
                .expect("connect"),
        )
    })
}

fn writes(c: &mut Criterion, rt: &Runtime, pg: &Postgres) {
    let store = store(rt, pg, "writes");
    let n = AtomicUsize::new(0);
    let mut group = c.benchmark_group("store_postgres");
    group.bench_function("create", |b| {
        b.iter(|| {
            let name = format!("c-{}", n.fetch_add(1, Ordering::Relaxed));
            rt.block_on(store.create(dataplane(&name))).expect("create")
        })
    });
    let mut current = rt
        .block_on(store.create(dataplane("updated")))
        .expect("create");
    group.bench_function("update", |b| {
        b.iter(|| {
            current = rt
                .block_on(store.update((*current).clone()))
                .expect("update");
        })
    });
    group.bench_function("create_64_writers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let base = n.fetch_add(WRITERS, Ordering::Relaxed);
                let start = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = (0..WRITERS)
                        .map(|i| {
                            let store = store.clone();
                            tokio::spawn(async move {
                                store
                                    .create(dataplane(&format!("w-{}", base + i)))
                                    .await
                                    .expect("create")
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("writer");
                    }
                });
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

fn reads(c: &mut Criterion, rt: &Runtime, pg: &Postgres) {
    let store = store(rt, pg, "reads");
    rt.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (store, next) = (store.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= STORED {
                            return;
                        }
                        store
                            .create(dataplane(&format!("dp-{i:05}")))
                            .await
                            .expect("seed");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("seeder");
        }
    });
    let all = ListRequest::in_mesh(ResourceType::Dataplane, "default");
    let mut group = c.benchmark_group("store_postgres");
    group.sample_size(20);
    group.bench_function("list_10000", |b| {
        b.iter(|| {
            let page = rt.block_on(store.list(&all)).expect("list");
            assert_eq!(page.items.len(), STORED);
            black_box(page)
        })
    });
    let cfg = config(pg, "reads");
    group.bench_function("connect_10000", |b| {
        b.iter(|| {
            rt.block_on(PostgresStore::connect(&cfg, 1 << 14))
                .expect("connect")
        })
    });
    group.bench_function("connect_and_list_10000", |b| {
        b.iter(|| {
            rt.block_on(async {
                let store = PostgresStore::connect(&cfg, 1 << 14)
                    .await
                    .expect("connect");
                let page = store.list(&all).await.expect("list");
                assert_eq!(page.items.len(), STORED);
                black_box(page)
            })
        })
    });
    group.finish();
}

fn main() {
    let Some(pg) = Postgres::start_or_skip("store_postgres bench") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut c = Criterion::default().configure_from_args();
    writes(&mut c, &rt, &pg);
    reads(&mut c, &rt, &pg);
    c.final_summary();
}
