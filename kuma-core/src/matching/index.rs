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

/// One selector of one policy (`policy` indexes the type's policy list).
#[derive(Clone, Copy)]
struct Entry<'p> {
    policy: u32,
    selector: &'p Tags,
    rank: Rank,
}

/// Selectors bucketed by their exact `kuma.io/service` value; selectors
/// without one (no service key, or `*`) are in `generic`.
struct SelectorIndex<'p> {
    by_service: HashMap<&'p str, Vec<Entry<'p>>>,
    generic: Vec<Entry<'p>>,
}

impl<'p> SelectorIndex<'p> {
    fn new() -> Self {
        Self {
            by_service: HashMap::new(),
            generic: Vec::new(),
        }
    }

    fn insert(&mut self, policy: u32, selectors: &'p [Selector]) {
        for s in selectors {
            let entry = Entry {
                policy,
                selector: &s.match_tags,
                rank: Rank::of_selector(&s.match_tags),
            };
            match s.match_tags.get(SERVICE_TAG) {
                Some(svc) if svc != WILDCARD => {
                    self.by_service.entry(svc.as_str()).or_default().push(entry)
                }
                _ => self.generic.push(entry),
            }
        }
    }

    /// Calls `f(policy, rank)` for every selector matching one of `tag_sets`
    /// (possibly several times per policy).
    fn for_each_match(&self, tag_sets: &[&Tags], mut f: impl FnMut(u32, Rank)) {
        for tags in tag_sets {
            let bucket = tags
                .get(SERVICE_TAG)
                .and_then(|svc| self.by_service.get(svc.as_str()));
            for e in bucket.into_iter().flatten().chain(&self.generic) {
                if selector_matches(e.selector, tags) {
                    f(e.policy, e.rank);
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

    fn insert(&mut self, p: &'p P) {
        if let Some(PolicyTargets::Selectors(selectors)) = p.policy_targets() {
            self.selectors
                .insert(index_of(self.policies.len()), selectors);
            self.policies.push(p);
        }
    }

    fn select(&self, tag_sets: &[&Tags]) -> Option<&'p P> {
        let mut best = Best::new();
        self.selectors.for_each_match(tag_sets, |i, rank| {
            if let Some(&p) = self.policies.get(i as usize) {
                best.offer(rank, p);
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

    fn insert(&mut self, p: &'p P) {
        if let Some(PolicyTargets::Connection { destinations, .. }) = p.policy_targets() {
            self.destinations
                .insert(index_of(self.policies.len()), destinations);
            self.policies.push(p);
        }
    }

    fn select(&self, dataplane: &DataplaneSpec) -> Vec<Option<&'p P>> {
        dataplane
            .networking
            .inbound
            .iter()
            .map(|inbound| {
                let mut best = Best::new();
                self.destinations
                    .for_each_match(&[&inbound.tags], |i, rank| {
                        if let Some(&p) = self.policies.get(i as usize) {
                            best.offer(rank, p);
                        }
                    });
                best.get()
            })
            .collect()
    }
}

struct OutboundTypeIndex<'p, P> {
    policies: Vec<&'p P>,
    sources: SelectorIndex<'p>,
    /// Destinations `{kuma.io/service: <svc>}`, by `<svc>`: (policy, rank).
    dest_by_service: HashMap<&'p str, Vec<(u32, Rank)>>,
    /// Destinations matching every service (`*`, or the empty selector).
    dest_any: Vec<(u32, Rank)>,
}

impl<'p, P: MatchPolicy> OutboundTypeIndex<'p, P> {
    fn new() -> Self {
        Self {
            policies: Vec::new(),
            sources: SelectorIndex::new(),
            dest_by_service: HashMap::new(),
            dest_any: Vec::new(),
        }
    }

    fn insert(&mut self, p: &'p P) {
        let Some(PolicyTargets::Connection {
            sources,
            destinations,
        }) = p.policy_targets()
        else {
            return;
        };
        let i = index_of(self.policies.len());
        self.sources.insert(i, sources);
        for d in destinations {
            let rank = Rank::of_selector(&d.match_tags);
            let mut keys = d.match_tags.iter();
            match (keys.next(), keys.next()) {
                (None, _) => self.dest_any.push((i, rank)),
                (Some((k, v)), None) if k == SERVICE_TAG => {
                    if v == WILDCARD {
                        self.dest_any.push((i, rank));
                    } else {
                        self.dest_by_service
                            .entry(v.as_str())
                            .or_default()
                            .push((i, rank));
                    }
                }
                // Other keys never match `{kuma.io/service: <svc>}`.
                _ => {}
            }
        }
        self.policies.push(p);
    }

    fn select<'a>(&self, tag_sets: &[&Tags], services: &[&'a str]) -> OutboundPolicyMap<'a, P>
    where
        'p: 'a,
    {
        let mut out = BTreeMap::new();
        if self.policies.is_empty() || services.is_empty() {
            return out;
        }
        let mut source_ranks: Vec<Option<Rank>> = vec![None; self.policies.len()];
        self.sources.for_each_match(tag_sets, |i, rank| {
            if let Some(slot) = source_ranks.get_mut(i as usize) {
                *slot = (*slot).max(Some(rank));
            }
        });
        for &service in services {
            let mut best = Best::new();
            let bucket = self.dest_by_service.get(service);
            for &(i, dst) in bucket.into_iter().flatten().chain(&self.dest_any) {
                if let (Some(Some(src)), Some(p)) =
                    (source_ranks.get(i as usize), self.policies.get(i as usize))
                {
                    best.offer(*src + dst, *p);
                }
            }
            if let Some(p) = best.get() {
                out.insert(service, p);
            }
        }
        out
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
    dataplane: [DataplaneTypeIndex<'p, P>; 2],
    outbound: [OutboundTypeIndex<'p, P>; 6],
    inbound: [InboundTypeIndex<'p, P>; 2],
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
            dataplane: std::array::from_fn(|_| DataplaneTypeIndex::new()),
            outbound: std::array::from_fn(|_| OutboundTypeIndex::new()),
            inbound: std::array::from_fn(|_| InboundTypeIndex::new()),
        };
        for p in policies {
            let ty = p.policy_type();
            let slot = match PolicyKind::of(ty) {
                Some(PolicyKind::Dataplane) => position(&PolicyKind::DATAPLANE_TYPES, ty)
                    .and_then(|i| idx.dataplane.get_mut(i))
                    .map(|t| t.insert(p)),
                Some(PolicyKind::Outbound) => position(&PolicyKind::OUTBOUND_TYPES, ty)
                    .and_then(|i| idx.outbound.get_mut(i))
                    .map(|t| t.insert(p)),
                Some(PolicyKind::Inbound) => position(&PolicyKind::INBOUND_TYPES, ty)
                    .and_then(|i| idx.inbound.get_mut(i))
                    .map(|t| t.insert(p)),
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
        let tag_sets = dataplane.tag_sets();
        let mut services: Vec<&'a str> = services.into_iter().collect();
        services.sort_unstable();
        services.dedup();
        let [traffic_trace, proxy_template] =
            self.dataplane.each_ref().map(|i| i.select(&tag_sets));
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
            .map(|i| i.select(&tag_sets, &services));
        let [traffic_permissions, fault_injections] =
            self.inbound.each_ref().map(|i| i.select(dataplane));
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
