//! Inbound connection policies (TrafficPermission, FaultInjection): one
//! policy per inbound, selected by `destinations`.

use super::policy::Best;
use super::{MatchPolicy, match_rank};
use crate::resource::{DataplaneSpec, PolicyTargets, Tags};

/// The inbound connection policy (TrafficPermission or FaultInjection) that
/// applies to an inbound with `inbound_tags`, among `policies` of one type.
///
/// The policy whose `destinations` rank best against the inbound's tags
/// wins; on equal rank the newer creation time, then the lexicographically
/// first name. `sources` take no part in the selection (they are what the
/// selected policy then allows or affects). Policies whose targets are not
/// `sources`/`destinations` are ignored.
pub fn select_inbound_policy<'p, P: MatchPolicy>(
    inbound_tags: &Tags,
    policies: &'p [P],
) -> Option<&'p P> {
    let mut best = Best::new();
    for p in policies {
        let Some(PolicyTargets::Connection { destinations, .. }) = p.policy_targets() else {
            continue;
        };
        if let Some(rank) = destinations
            .iter()
            .filter_map(|d| match_rank(&d.match_tags, inbound_tags))
            .max()
        {
            best.offer(rank, p);
        }
    }
    best.get()
}

/// [`select_inbound_policy`] for every inbound of `dataplane`: element `i`
/// is the policy for `dataplane.networking.inbound[i]`. A gateway has no
/// inbounds, so the result is empty for it.
pub fn select_inbound_policies<'p, P: MatchPolicy>(
    dataplane: &DataplaneSpec,
    policies: &'p [P],
) -> Vec<Option<&'p P>> {
    dataplane
        .networking
        .inbound
        .iter()
        .map(|i| select_inbound_policy(&i.tags, policies))
        .collect()
}
