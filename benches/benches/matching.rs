//! Policy matching for one Dataplane against all policies of a mesh:
//! 1,000 policies of every policy type, a Dataplane with 3 inbounds and 20
//! outbounds.
//!
//! Run with `cargo bench -p kuma-benches --bench matching`.

use criterion::{Criterion, criterion_group, criterion_main};
use kuma_benches::core::matching::{
    MatchPolicy, OffsetDateTime, PolicyIndex, PolicyKind, match_dataplane, select_dataplane_policy,
    select_inbound_policies, select_outbound_policies,
};
use kuma_benches::core::resource::{
    DataplaneSpec, Inbound, Outbound, PolicyTargets, ResourceType, SERVICE_TAG, Selector, Tags,
};
use std::hint::black_box;

/// A policy with the fields the matcher reads (independent of the policy
/// types' conf fields).
struct BenchPolicy {
    ty: ResourceType,
    name: String,
    created: Option<OffsetDateTime>,
    selectors: Vec<Selector>,
    sources: Vec<Selector>,
    destinations: Vec<Selector>,
}

impl MatchPolicy for BenchPolicy {
    fn policy_type(&self) -> ResourceType {
        self.ty
    }
    fn policy_name(&self) -> &str {
        &self.name
    }
    fn policy_creation_time(&self) -> Option<OffsetDateTime> {
        self.created
    }
    fn policy_targets(&self) -> Option<PolicyTargets<'_>> {
        Some(match PolicyKind::of(self.ty)? {
            PolicyKind::Dataplane => PolicyTargets::Selectors(&self.selectors),
            _ => PolicyTargets::Connection {
                sources: &self.sources,
                destinations: &self.destinations,
            },
        })
    }
}

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

fn sel(pairs: &[(&str, &str)]) -> Selector {
    Selector::new(pairs.iter().copied())
}

fn svc(i: usize) -> String {
    format!("svc-{i}")
}

/// A realistic selector: mostly one service, sometimes with a version or
/// region, sometimes `*`.
fn selector(rng: &mut Rng, wildcard_percent: usize) -> Selector {
    let s = svc(rng.below(SERVICES));
    let roll = rng.below(100);
    if roll < wildcard_percent {
        if rng.below(2) == 0 {
            sel(&[(SERVICE_TAG, "*")])
        } else {
            sel(&[(SERVICE_TAG, "*"), ("region", "eu")])
        }
    } else if roll < wildcard_percent + 15 {
        sel(&[(SERVICE_TAG, &s), ("version", "v1")])
    } else if roll < wildcard_percent + 25 {
        sel(&[(SERVICE_TAG, &s), ("version", "*")])
    } else {
        sel(&[(SERVICE_TAG, &s)])
    }
}

fn policies(n: usize) -> Vec<BenchPolicy> {
    let types: Vec<ResourceType> = PolicyKind::DATAPLANE_TYPES
        .into_iter()
        .chain(PolicyKind::OUTBOUND_TYPES)
        .chain(PolicyKind::INBOUND_TYPES)
        .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| {
            let ty = types[i % types.len()];
            let service_only_dst = PolicyKind::of(ty) == Some(PolicyKind::Outbound);
            let destinations = (0..1 + rng.below(2))
                .map(|_| {
                    if service_only_dst {
                        // Outbound destinations select by service only.
                        if rng.below(100) < 10 {
                            sel(&[(SERVICE_TAG, "*")])
                        } else {
                            sel(&[(SERVICE_TAG, &svc(rng.below(SERVICES)))])
                        }
                    } else {
                        selector(&mut rng, 10)
                    }
                })
                .collect();
            BenchPolicy {
                ty,
                name: format!("{}-{i}", ty.path()),
                created: OffsetDateTime::from_unix_timestamp(
                    1_600_000_000 + rng.below(1000) as i64,
                )
                .ok(),
                selectors: (0..1 + rng.below(2))
                    .map(|_| selector(&mut rng, 10))
                    .collect(),
                sources: (0..1 + rng.below(2))
                    .map(|_| selector(&mut rng, 15))
                    .collect(),
                destinations,
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
    let by_type: Vec<(ResourceType, Vec<&BenchPolicy>)> = ResourceType::ALL
        .iter()
        .filter(|t| PolicyKind::of(**t).is_some())
        .map(|t| (*t, policies.iter().filter(|p| p.ty == *t).collect()))
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
