//! Policy matching for one Dataplane against all policies of a mesh:
//! 1,000 policies (`Arc<Resource>`s decoded from YAML, as a store lists
//! them) of every policy type, a Dataplane with 3 inbounds and 20 outbounds.
//!
//! Run with `cargo bench -p kuma-benches --bench matching`.

use criterion::{Criterion, criterion_group, criterion_main};
use kuma_benches::core::matching::{
    PolicyIndex, PolicyKind, match_dataplane, select_dataplane_policy, select_inbound_policies,
    select_outbound_policies,
};
use kuma_benches::core::resource::{
    DataplaneSpec, Inbound, Outbound, Resource, ResourceType, SERVICE_TAG, Tags,
};
use std::hint::black_box;
use std::sync::Arc;

const SERVICES: usize = 100;

/// A tiny deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn svc(i: usize) -> String {
    format!("svc-{i}")
}

/// A realistic selector (YAML flow map): mostly one service, sometimes with
/// a version, sometimes `*`.
fn selector(rng: &mut Rng, wildcard_percent: usize) -> String {
    let s = svc(rng.below(SERVICES));
    let roll = rng.below(100);
    if roll < wildcard_percent {
        if rng.below(2) == 0 {
            "{kuma.io/service: '*'}".to_string()
        } else {
            "{kuma.io/service: '*', region: eu}".to_string()
        }
    } else if roll < wildcard_percent + 15 {
        format!("{{kuma.io/service: {s}, version: v1}}")
    } else if roll < wildcard_percent + 25 {
        format!("{{kuma.io/service: {s}, version: '*'}}")
    } else {
        format!("{{kuma.io/service: {s}}}")
    }
}

/// A destination of an outbound policy: by service only.
fn service_selector(rng: &mut Rng) -> String {
    if rng.below(100) < 10 {
        "{kuma.io/service: '*'}".to_string()
    } else {
        format!("{{kuma.io/service: {}}}", svc(rng.below(SERVICES)))
    }
}

/// One or two selectors.
fn list(rng: &mut Rng, mut one: impl FnMut(&mut Rng) -> String) -> String {
    let n = 1 + rng.below(2);
    let items: Vec<String> = (0..n).map(|_| format!("{{match: {}}}", one(rng))).collect();
    format!("[{}]", items.join(", "))
}

fn conf(ty: ResourceType) -> &'static str {
    match ty {
        ResourceType::TrafficTrace => "{backend: jaeger}",
        ResourceType::ProxyTemplate => "{imports: [default-proxy]}",
        ResourceType::TrafficRoute => "{destination: {kuma.io/service: '*'}}",
        ResourceType::HealthCheck => {
            "{interval: 10s, timeout: 2s, unhealthyThreshold: 3, healthyThreshold: 1}"
        }
        ResourceType::CircuitBreaker => {
            "{interval: 5s, baseEjectionTime: 30s, detectors: {totalErrors: {consecutive: 20}}}"
        }
        ResourceType::TrafficLog => "{backend: file}",
        ResourceType::Retry => "{http: {numRetries: 5}}",
        ResourceType::Timeout => "{connectTimeout: 5s}",
        ResourceType::FaultInjection => "{abort: {httpStatus: 500, percentage: 50}}",
        _ => "{}",
    }
}

/// `n` policies of every policy type in turn, decoded from YAML.
fn policies(n: usize) -> Vec<Arc<Resource>> {
    let types: Vec<ResourceType> = PolicyKind::DATAPLANE_TYPES
        .into_iter()
        .chain(PolicyKind::OUTBOUND_TYPES)
        .chain(PolicyKind::INBOUND_TYPES)
        .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| {
            let ty = types[i % types.len()];
            let t = rng.below(86_400);
            let mut y = format!(
                "type: {ty}\nmesh: default\nname: {}-{i}\n\
                 creationTime: '2024-01-01T{:02}:{:02}:{:02}Z'\n",
                ty.path(),
                t / 3600,
                t / 60 % 60,
                t % 60
            );
            match PolicyKind::of(ty) {
                Some(PolicyKind::Dataplane) => {
                    y += &format!("selectors: {}\n", list(&mut rng, |r| selector(r, 10)));
                }
                Some(PolicyKind::Outbound) => {
                    y += &format!("sources: {}\n", list(&mut rng, |r| selector(r, 15)));
                    y += &format!("destinations: {}\n", list(&mut rng, service_selector));
                }
                _ if ty == ResourceType::TrafficPermission => {
                    // Permission sources are RBAC principals: service only.
                    y += &format!("sources: {}\n", list(&mut rng, service_selector));
                    y += &format!("destinations: {}\n", list(&mut rng, |r| selector(r, 10)));
                }
                _ => {
                    y += &format!("sources: {}\n", list(&mut rng, |r| selector(r, 15)));
                    y += &format!("destinations: {}\n", list(&mut rng, |r| selector(r, 10)));
                }
            }
            if ty != ResourceType::TrafficPermission {
                y += &format!("conf: {}\n", conf(ty));
            }
            match Resource::from_yaml(&y).map(|r| (r.validate(), r)) {
                Ok((Ok(()), r)) => Arc::new(r),
                Ok((Err(e), _)) => panic!("{y}: {e}"),
                Err(e) => panic!("{y}: {e}"),
            }
        })
        .collect()
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn dataplane() -> DataplaneSpec {
    let mut dp = DataplaneSpec::default();
    dp.networking.address = "10.0.0.1".into();
    dp.networking.inbound = (0..3)
        .map(|i| Inbound {
            port: 8080 + i,
            tags: tags(&[
                (SERVICE_TAG, &svc(i as usize)),
                ("version", "v1"),
                ("region", "eu"),
                ("kuma.io/protocol", "http"),
            ]),
            ..Inbound::default()
        })
        .collect();
    dp.networking.outbound = (0..20)
        .map(|i| Outbound {
            port: 10000 + i,
            tags: tags(&[(SERVICE_TAG, &svc(10 + 3 * i as usize))]),
            ..Outbound::default()
        })
        .collect();
    dp
}

fn bench(c: &mut Criterion) {
    let policies = policies(1000);
    let dp = dataplane();
    let index = PolicyIndex::new(&policies);

    // Sanity: the workload selects something for most slots.
    let m = index.match_dataplane(&dp);
    assert!(m.traffic_routes.len() > 10 && m.traffic_permissions.iter().all(Option::is_some));

    let mut g = c.benchmark_group("matching_1000_policies");
    g.bench_function("indexed_match_dataplane", |b| {
        b.iter(|| black_box(index.match_dataplane(black_box(&dp))))
    });
    g.bench_function("build_index_and_match", |b| {
        b.iter(|| black_box(match_dataplane(black_box(&dp), black_box(&policies))))
    });
    g.bench_function("build_index", |b| {
        b.iter(|| black_box(PolicyIndex::new(black_box(&policies)).len()))
    });

    // The linear per-type functions, for comparison (policies pre-split by
    // type, as a caller listing the store per type would have them).
    let by_type: Vec<(ResourceType, Vec<&Arc<Resource>>)> = ResourceType::ALL
        .iter()
        .filter(|t| PolicyKind::of(**t).is_some())
        .map(|t| {
            let of_type = policies.iter().filter(|p| p.resource_type() == *t);
            (*t, of_type.collect())
        })
        .collect();
    g.bench_function("linear_all_types", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (ty, ps) in &by_type {
                match PolicyKind::of(*ty) {
                    Some(PolicyKind::Dataplane) => {
                        n += usize::from(select_dataplane_policy(&dp, ps).is_some())
                    }
                    Some(PolicyKind::Outbound) => n += select_outbound_policies(&dp, ps).len(),
                    Some(PolicyKind::Inbound) => n += select_inbound_policies(&dp, ps).len(),
                    None => {}
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
