//! The resource stores: the in-memory one and the durable local one.
//!
//! Dataplanes are the fixture's ([`kuma_benches::fixture`]: one HTTP
//! inbound, 20 outbounds, about 1.3 KB of JSON each).
//!
//! - `store/create/{memory,local}`: one writer creates Dataplanes one after
//!   another (latency of one create; local: one fsync'd commit each).
//! - `store/update/{memory,local}`: one writer updates one Dataplane
//!   again and again (read, then update with the version read).
//! - `store/create_64_writers/{memory,local}`: 64 tasks on a 2-thread
//!   runtime each create one Dataplane at once; one iteration is all 64
//!   acknowledged (throughput: elements = writes). The local store commits
//!   the writes that queue up during a commit together.
//! - `store/list_10000/{memory,local}`: `list` of all 10,000 Dataplanes of
//!   the mesh, unpaged.
//! - `store/open_10000/local`: `LocalStore::open` of a directory holding
//!   10,000 Dataplanes and their Mesh (everything loaded and decoded).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kuma_benches::core::resource::{Resource, ResourceKey, ResourceType};
use kuma_benches::core::store::{ListRequest, LocalStore, MemoryStore, ResourceStore};
use kuma_benches::fixture::{MESH, Shape};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const STORED: usize = 10_000;

fn dataplane(n: usize) -> Resource {
    Resource::from_yaml(&Shape::LARGE.dataplane_yaml(n % Shape::LARGE.dataplanes(), 8080))
        .expect("fixture Dataplane")
        .renamed(n)
}

/// The fixture Dataplane `n`, named uniquely for any `n`.
trait Renamed {
    fn renamed(self, n: usize) -> Self;
}

impl Renamed for Resource {
    fn renamed(mut self, n: usize) -> Self {
        self.meta.name = format!("dp-{n}");
        self
    }
}

fn mesh() -> Resource {
    Resource::from_yaml(&format!("type: Mesh\nname: {MESH}\n")).expect("Mesh")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The stores under test: (name, a fresh empty store, its directory).
fn stores() -> Vec<(
    &'static str,
    Arc<dyn ResourceStore>,
    Option<tempfile::TempDir>,
)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let local = LocalStore::open(dir.path(), 1024).expect("open the local store");
    vec![
        ("memory", Arc::new(MemoryStore::new()), None),
        ("local", Arc::new(local), Some(dir)),
    ]
}

fn bench(c: &mut Criterion) {
    let rt = runtime();

    let mut g = c.benchmark_group("store/create");
    for (name, store, _dir) in stores() {
        rt.block_on(store.create(mesh())).expect("mesh");
        let next = AtomicUsize::new(0);
        g.bench_function(name, |b| {
            b.iter_batched(
                || dataplane(next.fetch_add(1, Ordering::Relaxed)),
                |dp| rt.block_on(store.create(dp)).expect("create"),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("store/update");
    for (name, store, _dir) in stores() {
        rt.block_on(store.create(mesh())).expect("mesh");
        rt.block_on(store.create(dataplane(0))).expect("create");
        let key = ResourceKey::new(ResourceType::Dataplane, Some(MESH), "dp-0");
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let cur = store.get(&key).await.expect("get");
                    store.update((*cur).clone()).await.expect("update")
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("store/create_64_writers");
    g.throughput(Throughput::Elements(64));
    for (name, store, _dir) in stores() {
        rt.block_on(store.create(mesh())).expect("mesh");
        let next = Arc::new(AtomicUsize::new(0));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch: Vec<Resource> = (0..64)
                        .map(|_| dataplane(next.fetch_add(1, Ordering::Relaxed)))
                        .collect();
                    let started = Instant::now();
                    rt.block_on(async {
                        let tasks: Vec<_> = batch
                            .into_iter()
                            .map(|dp| {
                                let store = store.clone();
                                tokio::spawn(async move { store.create(dp).await })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("task").expect("create");
                        }
                    });
                    total += started.elapsed();
                }
                total
            })
        });
    }
    g.finish();

    // 10,000 stored Dataplanes, written in 64-write groups (fast to set up).
    let fill = |store: &Arc<dyn ResourceStore>| {
        rt.block_on(async {
            store.create(mesh()).await.expect("mesh");
            for chunk in (0..STORED).collect::<Vec<_>>().chunks(64) {
                let tasks: Vec<_> = chunk
                    .iter()
                    .map(|&n| {
                        let store = store.clone();
                        tokio::spawn(async move { store.create(dataplane(n)).await })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task").expect("create");
                }
            }
        })
    };

    let mut g = c.benchmark_group("store/list_10000");
    let mut local_dir = None;
    for (name, store, dir) in stores() {
        fill(&store);
        let request = ListRequest::in_mesh(ResourceType::Dataplane, MESH);
        g.bench_function(name, |b| {
            b.iter(|| {
                let page = rt.block_on(store.list(&request)).expect("list");
                assert_eq!(page.items.len(), STORED);
                black_box(page)
            })
        });
        if dir.is_some() {
            drop(store);
            local_dir = dir;
        }
    }
    g.finish();

    let dir = local_dir.expect("the local store's directory");
    let mut g = c.benchmark_group("store/open_10000");
    g.sample_size(20);
    g.bench_function("local", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let store = LocalStore::open(dir.path(), 1024).expect("reopen");
                total += started.elapsed();
                let page = rt
                    .block_on(store.list(&ListRequest::all(ResourceType::Dataplane)))
                    .expect("list");
                assert_eq!(page.total, STORED);
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
