//! One proxy's xDS snapshot in a large mesh, against the pure protobuf
//! encoding of the same output.
//!
//! The mesh: 1,000 services x 10 instances (10,000 Dataplanes), each
//! Dataplane with one HTTP inbound (its service) and 20 outbounds (to the
//! next 20 services), plus Kuma's default `route-all` TrafficRoute and
//! `allow-all` TrafficPermission.
//!
//! - `snapshot/full`: what the reconciler does for one proxy when nothing
//!   is cached: match policies (`PolicyIndex`, built once per batch as the
//!   reconciler does), `generate()`, build and encode the load assignments
//!   of its 20 clusters, `Snapshot::new`.
//! - `snapshot/cached_endpoints`: the same with the load assignments
//!   already encoded (the reconciler shares them across proxies of a mesh).
//! - `snapshot/load_assignments`: only the 20 load assignments.
//! - `encode/outer`: `encode_to_vec` of the same listeners, clusters and
//!   load assignments, decoded once in setup (their `Any` payloads stay
//!   pre-encoded bytes).
//! - `encode/with_any_payloads`: as `encode/outer`, plus encoding the
//!   messages packed in `Any`s (HTTP connection managers, routers,
//!   protocol options), which generation encodes too.
//!
//! Run with `cargo bench -p kuma-benches --bench snapshot`.

use criterion::{Criterion, criterion_group, criterion_main};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::google::protobuf::Any;
use kuma_benches::core::matching::PolicyIndex;
use kuma_benches::core::resource::{
    DataplaneSpec, Resource, TrafficRouteSpec,
};
use kuma_xds::generate::{
    self, ClusterRef, Endpoint, OutboundPolicies, Protocol, ProxyInput, outbound_service,
};
use kuma_xds::resource::{Snapshot, XdsResource, XdsType};
use prost::{Message, Name};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVICES: usize = 1_000;
const INSTANCES: usize = 10;
const OUTBOUNDS: usize = 20;
const MESH: &str = "default";

fn svc(i: usize) -> String {
    format!("svc-{}", i % SERVICES)
}

fn dataplane_yaml(service: usize, instance: usize) -> String {
    let n = service * INSTANCES + instance;
    let mut y = format!(
        "type: Dataplane\nmesh: {MESH}\nname: {}-{instance}\nnetworking:\n  \
         address: 10.{}.{}.{}\n  inbound:\n  - port: 8080\n    servicePort: 9000\n    \
         tags:\n      kuma.io/service: {}\n      kuma.io/protocol: http\n      \
         version: v{}\n  outbound:\n",
        svc(service),
        n >> 16,
        (n >> 8) & 0xff,
        n & 0xff,
        svc(service),
        instance % 2 + 1,
    );
    for o in 0..OUTBOUNDS {
        y.push_str(&format!(
            "  - port: {}\n    tags:\n      kuma.io/service: {}\n",
            10_001 + o,
            svc(service + 1 + o)
        ));
    }
    y
}

/// The mesh as the reconciler holds it.
struct Mesh {
    dataplanes: Vec<Arc<Resource>>,
    policies: Vec<Arc<Resource>>,
    endpoints: BTreeMap<String, Vec<Endpoint>>,
    protocols: BTreeMap<String, Protocol>,
    vips: BTreeMap<String, String>,
}

fn mesh() -> Mesh {
    let mut dataplanes = Vec::with_capacity(SERVICES * INSTANCES);
    for s in 0..SERVICES {
        for i in 0..INSTANCES {
            let r = Resource::from_yaml(&dataplane_yaml(s, i)).expect("dataplane");
            dataplanes.push(Arc::new(r));
        }
    }
    let policies = [
        format!(
            "type: TrafficRoute\nmesh: {MESH}\nname: route-all-{MESH}\n\
             sources:\n- match:\n    kuma.io/service: '*'\n\
             destinations:\n- match:\n    kuma.io/service: '*'\n\
             conf:\n  loadBalancer:\n    roundRobin: {{}}\n  destination:\n    kuma.io/service: '*'\n"
        ),
        format!(
            "type: TrafficPermission\nmesh: {MESH}\nname: allow-all-{MESH}\n\
             sources:\n- match:\n    kuma.io/service: '*'\n\
             destinations:\n- match:\n    kuma.io/service: '*'\n"
        ),
    ]
    .iter()
    .map(|y| Arc::new(Resource::from_yaml(y).expect("policy")))
    .collect();
    // Endpoints and protocols per service, as the reconciler derives them.
    let (endpoints, protocols) = kuma_benches::derived::endpoints_and_protocols(&dataplanes);
    Mesh {
        dataplanes,
        policies,
        endpoints,
        protocols,
        vips: BTreeMap::new(),
    }
}

/// Policy matching and generation of one proxy's listeners and clusters,
/// as `Reconciler` does it.
fn own_resources(
    mesh: &Mesh,
    index: &PolicyIndex<'_, Arc<Resource>>,
    dp: &Resource,
) -> generate::ProxyResources {
    let spec = dp.spec_as::<DataplaneSpec>().expect("dataplane spec");
    let services: BTreeSet<&str> = spec
        .networking
        .outbound
        .iter()
        .filter_map(outbound_service)
        .collect();
    let matched = index.match_dataplane_with_services(spec, services.iter().copied());
    let mut outbound_policies = BTreeMap::new();
    for service in services {
        let route = matched
            .traffic_routes
            .get(service)
            .and_then(|r| r.spec_as::<TrafficRouteSpec>());
        outbound_policies.insert(
            service.to_string(),
            OutboundPolicies {
                route,
                ..Default::default()
            },
        );
    }
    generate::generate(&ProxyInput {
        mesh: MESH,
        name: &dp.meta.name,
        dataplane: spec,
        mesh_spec: None,
        outbound_policies: &outbound_policies,
        inbound_policies: &[],
        dataplane_policies: Default::default(),
        protocols: &mesh.protocols,
        vips: &mesh.vips,
        sds_token: None,
    })
}

fn load_assignments(mesh: &Mesh, clusters: &BTreeSet<ClusterRef>) -> Vec<Arc<XdsResource>> {
    clusters
        .iter()
        .map(|c| {
            let eps = mesh
                .endpoints
                .get(&c.service)
                .map_or(&[][..], Vec::as_slice);
            generate::load_assignment(c, eps)
        })
        .collect()
}

fn full_snapshot(mesh: &Mesh, index: &PolicyIndex<'_, Arc<Resource>>, dp: &Resource) -> Snapshot {
    let out = own_resources(mesh, index, dp);
    let mut resources = out.resources;
    resources.extend(load_assignments(mesh, &out.eds_clusters));
    Snapshot::new(resources)
}

/// The decoded messages of a snapshot, and the messages packed in `Any`s.
struct Decoded {
    listeners: Vec<Listener>,
    clusters: Vec<Cluster>,
    endpoints: Vec<ClusterLoadAssignment>,
    tcp_proxies: Vec<TcpProxy>,
    hcms: Vec<HttpConnectionManager>,
    routers: Vec<Router>,
    protocol_options: Vec<HttpProtocolOptions>,
}

fn unpack<M: Message + Name + Default>(any: &Any, into: &mut Vec<M>) -> bool {
    if any.type_url == M::type_url() {
        into.push(M::decode(any.value.as_slice()).expect("Any payload"));
        true
    } else {
        false
    }
}

fn decode(snapshot: &Snapshot) -> Decoded {
    let all = |t| snapshot.resources(t).values().map(|r| r.body.to_bytes());
    let mut d = Decoded {
        listeners: all(XdsType::Listener)
            .map(|b| Listener::decode(b).expect("listener"))
            .collect(),
        clusters: all(XdsType::Cluster)
            .map(|b| Cluster::decode(b).expect("cluster"))
            .collect(),
        endpoints: all(XdsType::Endpoint)
            .map(|b| ClusterLoadAssignment::decode(b).expect("endpoints"))
            .collect(),
        tcp_proxies: Vec::new(),
        hcms: Vec::new(),
        routers: Vec::new(),
        protocol_options: Vec::new(),
    };
    for l in &d.listeners {
        for f in l.filter_chains.iter().flat_map(|c| &c.filters) {
            let Some(FilterConfig::TypedConfig(any)) = &f.config_type else {
                continue;
            };
            let known = unpack(any, &mut d.tcp_proxies) || unpack(any, &mut d.hcms);
            assert!(known, "unexpected filter {}", any.type_url);
        }
    }
    let mut routers = Vec::new();
    for h in &d.hcms {
        for f in &h.http_filters {
            if let Some(HttpFilterConfig::TypedConfig(any)) = &f.config_type {
                assert!(unpack(any, &mut routers), "unexpected {}", any.type_url);
            }
        }
    }
    d.routers = routers;
    for c in &d.clusters {
        for any in c.typed_extension_protocol_options.values() {
            assert!(unpack(any, &mut d.protocol_options));
        }
    }
    d
}

fn encode_outer(d: &Decoded) -> usize {
    let mut n = 0;
    for l in &d.listeners {
        n += black_box(l.encode_to_vec()).len();
    }
    for c in &d.clusters {
        n += black_box(c.encode_to_vec()).len();
    }
    for e in &d.endpoints {
        n += black_box(e.encode_to_vec()).len();
    }
    n
}

fn encode_payloads(d: &Decoded) -> usize {
    let mut n = 0;
    for m in &d.tcp_proxies {
        n += black_box(m.encode_to_vec()).len();
    }
    for m in &d.hcms {
        n += black_box(m.encode_to_vec()).len();
    }
    for m in &d.routers {
        n += black_box(m.encode_to_vec()).len();
    }
    for m in &d.protocol_options {
        n += black_box(m.encode_to_vec()).len();
    }
    n
}

fn bench(c: &mut Criterion) {
    let started = Instant::now();
    let mesh = mesh();
    let index = PolicyIndex::new(mesh.policies.iter());
    // A proxy in the middle of the mesh.
    let dp = mesh.dataplanes[mesh.dataplanes.len() / 2].clone();
    let snapshot = full_snapshot(&mesh, &index, &dp);
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
    let cached: HashMap<ClusterRef, Arc<XdsResource>> = {
        let own = own_resources(&mesh, &index, &dp);
        own.eds_clusters
            .iter()
            .cloned()
            .zip(load_assignments(&mesh, &own.eds_clusters))
            .collect()
    };
    eprintln!(
        "setup: {} dataplanes, {} services, snapshot of {}: {} ({bytes} bytes encoded), {:.1?}",
        mesh.dataplanes.len(),
        mesh.endpoints.len(),
        dp.meta.name,
        counts.join(", "),
        started.elapsed()
    );

    let mut g = c.benchmark_group("snapshot");
    g.bench_function("full", |b| {
        b.iter(|| full_snapshot(&mesh, &index, black_box(&dp)))
    });
    g.bench_function("cached_endpoints", |b| {
        b.iter(|| {
            let out = own_resources(&mesh, &index, black_box(&dp));
            let mut resources = out.resources;
            resources.extend(out.eds_clusters.iter().map(|c| cached[c].clone()));
            Snapshot::new(resources)
        })
    });
    let clusters: BTreeSet<ClusterRef> = cached.keys().cloned().collect();
    g.bench_function("load_assignments", |b| {
        b.iter(|| load_assignments(&mesh, black_box(&clusters)))
    });
    g.finish();

    let mut g = c.benchmark_group("encode");
    g.bench_function("outer", |b| b.iter(|| encode_outer(black_box(&decoded))));
    g.bench_function("with_any_payloads", |b| {
        b.iter(|| encode_outer(black_box(&decoded)) + encode_payloads(black_box(&decoded)))
    });
    g.finish();
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
