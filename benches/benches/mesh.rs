//! The whole mesh through the reconciler, and one proxy against the pure
//! prost encoding of its output, with policies of every kind.
//!
//! The mesh ([`kuma_benches::fixture`]): 1,000 services x 10 instances
//! (10,000 Dataplanes), each with one HTTP inbound and 20 outbounds, a Mesh
//! with logging and tracing backends, and a few policies of every kind
//! (TrafficRoute incl. a split, TrafficPermission, HealthCheck,
//! CircuitBreaker, Retry, Timeout, TrafficLog, FaultInjection, TrafficTrace;
//! the mesh-wide ones apply to every proxy).
//!
//! - `proxy/full`: one proxy's snapshot from scratch: policy matching
//!   (`PolicyIndex` built once, as the reconciler does per batch),
//!   generation, the load assignments of its clusters, `Snapshot::new`.
//! - `proxy/cached_endpoints`: the same with the load assignments shared
//!   (already encoded), as the reconciler has them.
//! - `proxy/in_batch`: the same, as the proxy is generated in a batch
//!   (a mesh-wide change) after another instance of its service: its
//!   service clusters and outbound connection managers come from the
//!   batch's `BatchCache`.
//! - `encode/outer`, `encode/all`: `encode_to_vec` of the same resources
//!   decoded once in setup; `all` also encodes every message packed in an
//!   `Any` (connection managers, filters, access logs...), which
//!   generation encodes too.
//! - `mesh/regenerate_all`: the `Reconciler` with all 10,000 proxies
//!   connected handles a change of the mesh-wide Timeout: reloads the
//!   policies, regenerates and publishes every proxy's snapshot.
//! - `mesh/endpoint_change`: the same reconciler handles one Dataplane
//!   whose inbound port changed: its service's load assignments are
//!   re-encoded and swapped into every proxy using them, the Dataplane's
//!   own proxy is regenerated.
//!
//! Run with `cargo bench -p kuma-benches --bench mesh`.

mod common;

use common::{decode, encode_all, encode_outer, parse};
use criterion::{Criterion, criterion_group, criterion_main};
use kuma_benches::core::matching::PolicyIndex;
use kuma_benches::core::resource::{DataplaneSpec, MeshSpec, Resource, ResourceKey, ResourceType};
use kuma_benches::core::store::{EventKind, MemoryStore, ResourceStore, StoreEvent};
use kuma_benches::fixture::{MESH, Shape, mesh_yaml, policies_yaml, timeout_all_yaml};
use kuma_xds::cache::{NodeId, SnapshotCache};
use kuma_xds::generate::{self, BatchCache, ClusterRef, Endpoint, Protocol};
use kuma_xds::generate::{MeshView, generate_proxy};
use kuma_xds::reconcile::{ProxyEvent, Reconciler};
use kuma_xds::resource::{Snapshot, XdsResource, XdsType};
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHAPE: Shape = Shape::LARGE;

/// The mesh's resources and what the reconciler derives from them.
struct Fixture {
    mesh: Arc<Resource>,
    dataplanes: Vec<Arc<Resource>>,
    policies: Vec<Arc<Resource>>,
    endpoints: BTreeMap<String, Vec<Endpoint>>,
    protocols: BTreeMap<String, Protocol>,
    vips: BTreeMap<String, String>,
}

fn fixture() -> Fixture {
    let dataplanes: Vec<Arc<Resource>> = (0..SHAPE.dataplanes())
        .map(|n| Arc::new(parse(&SHAPE.dataplane_yaml(n, 8080))))
        .collect();
    let policies = policies_yaml().iter().map(|y| Arc::new(parse(y))).collect();
    let (endpoints, protocols) = kuma_benches::derived::endpoints_and_protocols(&dataplanes);
    Fixture {
        mesh: Arc::new(parse(&mesh_yaml())),
        dataplanes,
        policies,
        endpoints,
        protocols,
        vips: BTreeMap::new(),
    }
}

fn own<'p>(
    f: &Fixture,
    index: &PolicyIndex<'p, Arc<Resource>>,
    dp: &Resource,
    shared: Option<&mut BatchCache<'p>>,
) -> generate::ProxyResources {
    let mesh = MeshView {
        name: MESH,
        spec: f.mesh.spec_as::<MeshSpec>(),
        protocols: &f.protocols,
        vips: &f.vips,
    };
    generate_proxy(
        index,
        &mesh,
        &dp.meta.name,
        dp.spec_as::<DataplaneSpec>().expect("dataplane spec"),
        None,
        shared,
    )
}

fn load_assignment(f: &Fixture, c: &ClusterRef) -> Arc<XdsResource> {
    let eps = f.endpoints.get(&c.service).map_or(&[][..], Vec::as_slice);
    generate::load_assignment(c, eps)
}

fn full_snapshot(f: &Fixture, index: &PolicyIndex<'_, Arc<Resource>>, dp: &Resource) -> Snapshot {
    let out = own(f, index, dp, None);
    let mut resources = out.resources;
    resources.extend(out.eds_clusters.iter().map(|c| load_assignment(f, c)));
    Snapshot::new(resources)
}

fn bench_proxy(c: &mut Criterion, f: &Fixture) {
    let index = PolicyIndex::new(f.policies.iter());
    // A proxy calling svc-2..svc-9, the services with extra policies... and
    // the mesh-wide ones.
    let dp = f.dataplanes[SHAPE.instances].clone();
    let snapshot = full_snapshot(f, &index, &dp);
    let counts: Vec<String> = XdsType::PUSH_ORDER
        .iter()
        .map(|t| format!("{} {}", snapshot.resources(*t).len(), t.short()))
        .collect();
    let bytes: usize = XdsType::PUSH_ORDER
        .iter()
        .flat_map(|t| snapshot.resources(*t).values())
        .map(|r| r.body.len())
        .sum();
    let decoded = decode(&snapshot);
    eprintln!(
        "proxy {}: {} ({bytes} bytes encoded; {} resources + {} Any payloads to re-encode)",
        dp.meta.name,
        counts.join(", "),
        decoded.outer.len(),
        decoded.payloads.len()
    );
    let cached: HashMap<ClusterRef, Arc<XdsResource>> = own(f, &index, &dp, None)
        .eds_clusters
        .into_iter()
        .map(|c| {
            let la = load_assignment(f, &c);
            (c, la)
        })
        .collect();

    let mut g = c.benchmark_group("proxy");
    g.bench_function("full", |b| {
        b.iter(|| full_snapshot(f, &index, black_box(&dp)))
    });
    g.bench_function("cached_endpoints", |b| {
        b.iter(|| {
            let out = own(f, &index, black_box(&dp), None);
            let mut resources = out.resources;
            resources.extend(out.eds_clusters.iter().map(|c| cached[c].clone()));
            Snapshot::new(resources)
        })
    });
    // Another instance of the same service generated first in the batch:
    // the service clusters and outbound connection managers come from the
    // batch's BatchCache.
    let mut shared = BatchCache::for_index(&index);
    own(
        f,
        &index,
        &f.dataplanes[SHAPE.instances + 1],
        Some(&mut shared),
    );
    g.bench_function("in_batch", |b| {
        b.iter(|| {
            let out = own(f, &index, black_box(&dp), Some(&mut shared));
            let mut resources = out.resources;
            resources.extend(out.eds_clusters.iter().map(|c| cached[c].clone()));
            Snapshot::new(resources)
        })
    });
    eprintln!(
        "in_batch: {} shared clusters and connection managers, {} taken",
        shared.len(),
        shared.hits()
    );
    g.finish();
    let mut g = c.benchmark_group("encode");
    g.bench_function("outer", |b| b.iter(|| encode_outer(black_box(&decoded))));
    g.bench_function("all", |b| b.iter(|| encode_all(black_box(&decoded))));
    g.finish();
}

fn bench_mesh(c: &mut Criterion, f: &Fixture) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = Arc::new(MemoryStore::with_event_capacity(1 << 16));
    let cache = Arc::new(SnapshotCache::new());
    let nodes: Vec<NodeId> = f
        .dataplanes
        .iter()
        .map(|d| NodeId {
            mesh: MESH.into(),
            name: d.meta.name.clone(),
        })
        .collect();
    // One watch per proxy, as its ADS stream holds.
    let watches: Vec<_> = nodes.iter().map(|n| cache.watch(n)).collect();
    let mut r = Reconciler::new(store.clone(), cache.clone());
    rt.block_on(async {
        store.create((*f.mesh).clone()).await.expect("mesh");
        for d in f.dataplanes.iter().chain(&f.policies) {
            store.create((**d).clone()).await.expect("create");
        }
        let t = Instant::now();
        r.reload().await;
        eprintln!("reload (no proxy connected): {:.1?}", t.elapsed());
        let t = Instant::now();
        r.apply(
            [],
            nodes.iter().cloned().map(|node| ProxyEvent::Connected {
                node,
                token: None,
                resumed: false,
            }),
        )
        .await;
        eprintln!(
            "{} proxies connected in one batch: {:.1?}",
            nodes.len(),
            t.elapsed()
        );
        let t = Instant::now();
        r.apply([], nodes.iter().cloned().map(ProxyEvent::Ready))
            .await;
        eprintln!(
            "{} proxies ready in one batch: {:.1?}",
            nodes.len(),
            t.elapsed()
        );
    });
    let published = watches
        .iter()
        .filter(|w| {
            w.borrow()
                .as_ref()
                .is_some_and(|s| !s.resources(XdsType::Endpoint).is_empty())
        })
        .count();
    assert_eq!(published, nodes.len(), "every proxy has its snapshot");

    let mut g = c.benchmark_group("mesh");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(20));

    let timeout_key = ResourceKey::new(ResourceType::Timeout, Some(MESH), "timeout-all");
    let mut flip = 0u64;
    g.bench_function("regenerate_all", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                flip += 1;
                let mut p = parse(&timeout_all_yaml(if flip.is_multiple_of(2) {
                    "2s"
                } else {
                    "3s"
                }));
                rt.block_on(async {
                    p.meta.version = store.get(&timeout_key).await.expect("timeout").meta.version;
                    store.update(p).await.expect("update");
                    let e = StoreEvent {
                        kind: EventKind::Updated,
                        key: timeout_key.clone(),
                    };
                    let t = Instant::now();
                    r.apply([&e], []).await;
                    total += t.elapsed();
                });
            }
            total
        })
    });

    // An instance of svc-500, called by the 200 proxies of svc-480..svc-499.
    let n = 500 * SHAPE.instances;
    let dp_key = ResourceKey::new(
        ResourceType::Dataplane,
        Some(MESH),
        &SHAPE.dataplane_name(n),
    );
    let consumer = &watches[480 * SHAPE.instances];
    let mut flip = 0u32;
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("endpoint_change", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                flip += 1;
                let mut d = parse(&SHAPE.dataplane_yaml(n, 8080 + flip % 2));
                let before = consumer.borrow().clone();
                rt.block_on(async {
                    d.meta.version = store.get(&dp_key).await.expect("dp").meta.version;
                    store.update(d).await.expect("update");
                    let e = StoreEvent {
                        kind: EventKind::Updated,
                        key: dp_key.clone(),
                    };
                    let t = Instant::now();
                    r.apply([&e], []).await;
                    total += t.elapsed();
                });
                let after = consumer.borrow().clone();
                assert!(
                    before
                        .as_ref()
                        .map(|s| s.version(XdsType::Endpoint).to_string())
                        != after
                            .as_ref()
                            .map(|s| s.version(XdsType::Endpoint).to_string()),
                    "a consumer saw the change"
                );
            }
            total
        })
    });
    g.finish();
    drop(watches);
}

fn bench(c: &mut Criterion) {
    let t = Instant::now();
    let f = fixture();
    eprintln!(
        "fixture: {} dataplanes, {} services, {} policies, {:.1?}",
        f.dataplanes.len(),
        f.endpoints.len(),
        f.policies.len(),
        t.elapsed()
    );
    bench_proxy(c, &f);
    bench_mesh(c, &f);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
