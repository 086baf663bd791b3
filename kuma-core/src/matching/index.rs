//! [`PolicyIndex`]: all policies of a mesh, pre-indexed by service so that
//! matching one Dataplane only looks at the policies that can apply to it.

use super::matched::MatchedPolicies;
use super::outbound::{OutboundPolicyMap, outbound_services};
use super::policy::Best;
use super::{MatchPolicy, PolicyKind, Rank, selector_matches};
use crate::resource::{
    DataplaneSpec, PolicyTargets, ResourceType, SERVICE_TAG, Selector, Tags, WILDCARD,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Service names interned to dense ids, shared by all types' indexes, so a
/// Dataplane's services are hashed once per match, not once per type.
struct ServiceIds<'p> {
    ids: HashMap<&'p str, usize>,
}

impl<'p> ServiceIds<'p> {
    fn intern(&mut self, service: &'p str) -> usize {
        let next = self.ids.len();
        *self.ids.entry(service).or_insert(next)
    }

    fn get(&self, service: &str) -> Option<usize> {
        self.ids.get(service).copied()
    }
}

/// A tag set of the Dataplane and the id of its `kuma.io/service` value.
struct Target<'t> {
    tags: &'t Tags,
    service: Option<usize>,
}

impl<'t> Target<'t> {
    fn new(tags: &'t Tags, ids: &ServiceIds<'_>) -> Self {
        Self {
            tags,
            service: tags.get(SERVICE_TAG).and_then(|s| ids.get(s)),
        }
    }
}

/// Pushes `item` onto the bucket of service `id`, growing the buckets.
fn push_bucket<T>(buckets: &mut Vec<Vec<T>>, id: usize, item: T) {
    if buckets.len() <= id {
        buckets.resize_with(id + 1, Vec::new);
    }
    if let Some(b) = buckets.get_mut(id) {
        b.push(item);
    }
}

/// One distinct selector and the policies using it (`policies` index the
/// type's policy list).
struct Group<'p> {
    selector: &'p Tags,
    rank: Rank,
    policies: Vec<u32>,
}

/// Distinct selectors, bucketed by the id of their exact `kuma.io/service`
/// value; selectors without one (no service key, or `*`) are `generic`.
/// Policies sharing a selector (commonly `kuma.io/service: '*'`) share one
/// group, so the selector is tested once per tag set, not once per policy.
struct SelectorIndex<'p> {
    groups: Vec<Group<'p>>,
    group_of: HashMap<&'p Tags, usize>,
    by_service: Vec<Vec<usize>>,
    generic: Vec<usize>,
}

impl<'p> SelectorIndex<'p> {
    fn new() -> Self {
        Self {
            groups: Vec::new(),
            group_of: HashMap::new(),
            by_service: Vec::new(),
            generic: Vec::new(),
        }
    }

    fn insert(&mut self, ids: &mut ServiceIds<'p>, policy: u32, selectors: &'p [Selector]) {
        for s in selectors {
            let tags = &s.match_tags;
            let next = self.groups.len();
            let g = *self.group_of.entry(tags).or_insert(next);
            if g != next {
                if let Some(group) = self.groups.get_mut(g) {
                    group.policies.push(policy);
                }
                continue;
            }
            self.groups.push(Group {
                selector: tags,
                rank: Rank::of_selector(tags),
                policies: vec![policy],
            });
            match tags.get(SERVICE_TAG) {
                Some(svc) if svc != WILDCARD => {
                    push_bucket(&mut self.by_service, ids.intern(svc), g)
                }
                _ => self.generic.push(g),
            }
        }
    }

    /// Calls `f(policies, rank)` for every selector matching one of
    /// `targets` (possibly several times per policy).
    fn for_each_match(&self, targets: &[Target<'_>], mut f: impl FnMut(&[u32], Rank)) {
        for t in targets {
            let bucket = t.service.and_then(|id| self.by_service.get(id));
            for &g in bucket.into_iter().flatten().chain(&self.generic) {
                if let Some(group) = self.groups.get(g)
                    && selector_matches(group.selector, t.tags)
                {
                    f(&group.policies, group.rank);
                }
            }
        }
    }
}

fn index_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

struct DataplaneTypeIndex<'p, P> {
    policies: Vec<&'p P>,
    selectors: SelectorIndex<'p>,
}

impl<'p, P: MatchPolicy> DataplaneTypeIndex<'p, P> {
    fn new() -> Self {
        Self {
            policies: Vec::new(),
            selectors: SelectorIndex::new(),
        }
    }

    fn insert(&mut self, ids: &mut ServiceIds<'p>, p: &'p P) {
        if let Some(PolicyTargets::Selectors(selectors)) = p.policy_targets() {
            self.selectors
                .insert(ids, index_of(self.policies.len()), selectors);
            self.policies.push(p);
        }
    }

    fn select(&self, targets: &[Target<'_>]) -> Option<&'p P> {
        let mut best = Best::new();
        self.selectors.for_each_match(targets, |policies, rank| {
            for &i in policies {
                if let Some(&p) = self.policies.get(i as usize) {
                    best.offer(rank, p);
                }
            }
        });
        best.get()
    }
}

struct InboundTypeIndex<'p, P> {
    policies: Vec<&'p P>,
    destinations: SelectorIndex<'p>,
}

impl<'p, P: MatchPolicy> InboundTypeIndex<'p, P> {
    fn new() -> Self {
        Self {
            policies: Vec::new(),
            destinations: SelectorIndex::new(),
        }
    }

    fn insert(&mut self, ids: &mut ServiceIds<'p>, p: &'p P) {
        if let Some(PolicyTargets::Connection { destinations, .. }) = p.policy_targets() {
            self.destinations
                .insert(ids, index_of(self.policies.len()), destinations);
            self.policies.push(p);
        }
    }

    fn select(&self, inbounds: &[Target<'_>]) -> Vec<Option<&'p P>> {
        inbounds
            .iter()
            .map(|inbound| {
                let mut best = Best::new();
                self.destinations.for_each_match(
                    std::slice::from_ref(inbound),
                    |policies, rank| {
                        for &i in policies {
                            if let Some(&p) = self.policies.get(i as usize) {
                                best.offer(rank, p);
                            }
                        }
                    },
                );
                best.get()
            })
            .collect()
    }
}

struct OutboundTypeIndex<'p, P> {
    policies: Vec<&'p P>,
    sources: SelectorIndex<'p>,
    /// Destinations `{kuma.io/service: <svc>}`, by the id of `<svc>`:
    /// (policy, rank).
    dest_by_service: Vec<Vec<(u32, Rank)>>,
    /// Destinations matching every service (`*`, or the empty selector).
    dest_any: Vec<(u32, Rank)>,
}

impl<'p, P: MatchPolicy> OutboundTypeIndex<'p, P> {
    fn new() -> Self {
        Self {
            policies: Vec::new(),
            sources: SelectorIndex::new(),
            dest_by_service: Vec::new(),
            dest_any: Vec::new(),
        }
    }

    fn insert(&mut self, ids: &mut ServiceIds<'p>, p: &'p P) {
        let Some(PolicyTargets::Connection {
            sources,
            destinations,
        }) = p.policy_targets()
        else {
            return;
        };
        let i = index_of(self.policies.len());
        self.sources.insert(ids, i, sources);
        for d in destinations {
            let rank = Rank::of_selector(&d.match_tags);
            let mut keys = d.match_tags.iter();
            match (keys.next(), keys.next()) {
                (None, _) => self.dest_any.push((i, rank)),
                (Some((k, v)), None) if k == SERVICE_TAG => {
                    if v == WILDCARD {
                        self.dest_any.push((i, rank));
                    } else {
                        push_bucket(&mut self.dest_by_service, ids.intern(v), (i, rank));
                    }
                }
                // Other keys never match `{kuma.io/service: <svc>}`.
                _ => {}
            }
        }
        self.policies.push(p);
    }

    /// `services` are sorted and distinct, with their ids.
    fn select<'a>(
        &self,
        targets: &[Target<'_>],
        services: &[(&'a str, Option<usize>)],
    ) -> OutboundPolicyMap<'a, P>
    where
        'p: 'a,
    {
        if self.policies.is_empty() || services.is_empty() {
            return BTreeMap::new();
        }
        let mut source_ranks: Vec<Option<Rank>> = vec![None; self.policies.len()];
        self.sources.for_each_match(targets, |policies, rank| {
            for &i in policies {
                if let Some(slot) = source_ranks.get_mut(i as usize) {
                    *slot = (*slot).max(Some(rank));
                }
            }
        });
        let candidates = |best: &mut Best<'p, P>, entries: &[(u32, Rank)]| {
            for &(i, dst) in entries {
                if let (Some(Some(src)), Some(&p)) =
                    (source_ranks.get(i as usize), self.policies.get(i as usize))
                {
                    best.offer(*src + dst, p);
                }
            }
        };
        // Destinations matching every service score the same for each
        // service: select among them once.
        let mut any = Best::new();
        candidates(&mut any, &self.dest_any);
        let mut out: Vec<(&'a str, &'a P)> = Vec::with_capacity(services.len());
        for &(service, id) in services {
            let mut best = any;
            if let Some(bucket) = id.and_then(|id| self.dest_by_service.get(id)) {
                candidates(&mut best, bucket);
            }
            if let Some(p) = best.get() {
                out.push((service, p));
            }
        }
        // Sorted input: the map is bulk-built.
        out.into_iter().collect()
    }
}

/// All policies of a mesh, indexed for matching Dataplanes against them.
///
/// Build it once per mesh snapshot (it borrows the policies) and call
/// [`PolicyIndex::match_dataplane`] per proxy: selectors are bucketed by
/// their exact `kuma.io/service` value, so a Dataplane only looks at the
/// policies selecting its services or using `*`/other tags, and an outbound
/// service only at the policies whose destination is that service or `*`.
///
/// Policies are grouped by [`MatchPolicy::policy_type`]; non-policy
/// resources, and policies whose targets do not fit their type, are ignored.
/// The results equal those of [`select_dataplane_policy`],
/// [`select_outbound_policies`] and [`select_inbound_policies`] applied to
/// the policies of each type, and do not depend on the input order.
///
/// [`select_dataplane_policy`]: super::select_dataplane_policy
/// [`select_outbound_policies`]: super::select_outbound_policies
/// [`select_inbound_policies`]: super::select_inbound_policies
pub struct PolicyIndex<'p, P> {
    services: ServiceIds<'p>,
    dataplane: [DataplaneTypeIndex<'p, P>; PolicyKind::DATAPLANE_TYPES.len()],
    outbound: [OutboundTypeIndex<'p, P>; PolicyKind::OUTBOUND_TYPES.len()],
    inbound: [InboundTypeIndex<'p, P>; PolicyKind::INBOUND_TYPES.len()],
}

impl<P> fmt::Debug for PolicyIndex<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyIndex")
            .field(
                "dataplane",
                &self.dataplane.each_ref().map(|i| i.policies.len()),
            )
            .field(
                "outbound",
                &self.outbound.each_ref().map(|i| i.policies.len()),
            )
            .field(
                "inbound",
                &self.inbound.each_ref().map(|i| i.policies.len()),
            )
            .finish()
    }
}

fn position(types: &[ResourceType], ty: ResourceType) -> Option<usize> {
    types.iter().position(|t| *t == ty)
}

impl<'p, P: MatchPolicy> PolicyIndex<'p, P> {
    /// Indexes `policies` (of any types; non-policies are ignored).
    pub fn new(policies: impl IntoIterator<Item = &'p P>) -> Self {
        let mut idx = Self {
            services: ServiceIds {
                ids: HashMap::new(),
            },
            dataplane: std::array::from_fn(|_| DataplaneTypeIndex::new()),
            outbound: std::array::from_fn(|_| OutboundTypeIndex::new()),
            inbound: std::array::from_fn(|_| InboundTypeIndex::new()),
        };
        for p in policies {
            let ty = p.policy_type();
            let slot = match ty.policy_kind() {
                Some(PolicyKind::Dataplane) => position(PolicyKind::Dataplane.types(), ty)
                    .and_then(|i| idx.dataplane.get_mut(i))
                    .map(|t| t.insert(&mut idx.services, p)),
                Some(PolicyKind::Outbound) => position(PolicyKind::Outbound.types(), ty)
                    .and_then(|i| idx.outbound.get_mut(i))
                    .map(|t| t.insert(&mut idx.services, p)),
                Some(PolicyKind::Inbound) => position(PolicyKind::Inbound.types(), ty)
                    .and_then(|i| idx.inbound.get_mut(i))
                    .map(|t| t.insert(&mut idx.services, p)),
                None => None,
            };
            let _ = slot;
        }
        idx
    }

    /// Every policy type's selection for `dataplane`, with outbound policies
    /// selected for the services of its declared outbounds.
    pub fn match_dataplane<'a>(&self, dataplane: &'a DataplaneSpec) -> MatchedPolicies<'a, P>
    where
        'p: 'a,
    {
        self.match_dataplane_with_services(dataplane, outbound_services(dataplane))
    }

    /// As [`PolicyIndex::match_dataplane`], with outbound policies selected
    /// for an explicit list of `services` instead of the declared outbounds
    /// (for example declared outbounds plus DNS VIP services; see
    /// [`outbound_services`]).
    pub fn match_dataplane_with_services<'a>(
        &self,
        dataplane: &DataplaneSpec,
        services: impl IntoIterator<Item = &'a str>,
    ) -> MatchedPolicies<'a, P>
    where
        'p: 'a,
    {
        let ids = &self.services;
        let targets: Vec<Target<'_>> = dataplane
            .tag_sets()
            .into_iter()
            .map(|t| Target::new(t, ids))
            .collect();
        let inbounds: Vec<Target<'_>> = dataplane
            .networking
            .inbound
            .iter()
            .map(|i| Target::new(&i.tags, ids))
            .collect();
        let mut services: Vec<&'a str> = services.into_iter().collect();
        services.sort_unstable();
        services.dedup();
        let services: Vec<(&'a str, Option<usize>)> =
            services.into_iter().map(|s| (s, ids.get(s))).collect();
        let [traffic_trace, proxy_template] = self.dataplane.each_ref().map(|i| i.select(&targets));
        let [
            traffic_routes,
            health_checks,
            circuit_breakers,
            traffic_logs,
            retries,
            timeouts,
        ] = self
            .outbound
            .each_ref()
            .map(|i| i.select(&targets, &services));
        let [traffic_permissions, fault_injections] =
            self.inbound.each_ref().map(|i| i.select(&inbounds));
        MatchedPolicies {
            traffic_trace,
            proxy_template,
            traffic_routes,
            health_checks,
            circuit_breakers,
            traffic_logs,
            retries,
            timeouts,
            traffic_permissions,
            fault_injections,
        }
    }

    /// The number of indexed policies.
    pub fn len(&self) -> usize {
        self.dataplane
            .iter()
            .map(|i| i.policies.len())
            .sum::<usize>()
            + self
                .outbound
                .iter()
                .map(|i| i.policies.len())
                .sum::<usize>()
            + self.inbound.iter().map(|i| i.policies.len()).sum::<usize>()
    }

    /// Whether no policy was indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Matches `dataplane` against all `policies` of its mesh (any types) at
/// once. Builds a [`PolicyIndex`] and throws it away; to match many
/// Dataplanes against the same policies, build the index once instead.
pub fn match_dataplane<'a, P: MatchPolicy>(
    dataplane: &'a DataplaneSpec,
    policies: &'a [P],
) -> MatchedPolicies<'a, P> {
    PolicyIndex::new(policies).match_dataplane(dataplane)
}
