//! Dataplane policies (TrafficTrace, ProxyTemplate): one policy per Dataplane.

use super::policy::Best;
use super::{MatchPolicy, best_rank};
use crate::resource::{DataplaneSpec, PolicyTargets, Tags};

/// The Dataplane policy (TrafficTrace or ProxyTemplate) that applies to
/// `dataplane`, among `policies` of one type.
///
/// A policy matches if any of its `selectors` matches any of the Dataplane's
/// tag sets (its inbounds' tags, or its gateway's tags); its rank is the best
/// such match. The best rank wins; on equal rank the newer creation time,
/// then the lexicographically first name. Policies whose targets are not
/// `selectors` are ignored.
pub fn select_dataplane_policy<'p, P: MatchPolicy>(
    dataplane: &DataplaneSpec,
    policies: &'p [P],
) -> Option<&'p P> {
    select_dataplane_policy_for_tags(&dataplane.tag_sets(), policies)
}

/// [`select_dataplane_policy`] for a Dataplane given by its tag sets.
pub fn select_dataplane_policy_for_tags<'p, P: MatchPolicy>(
    tag_sets: &[&Tags],
    policies: &'p [P],
) -> Option<&'p P> {
    let mut best = Best::new();
    for p in policies {
        let Some(PolicyTargets::Selectors(selectors)) = p.policy_targets() else {
            continue;
        };
        if let Some(rank) = best_rank(selectors, tag_sets) {
            best.offer(rank, p);
        }
    }
    best.get()
}
