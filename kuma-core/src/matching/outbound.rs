//! Outbound connection policies (TrafficRoute, HealthCheck, CircuitBreaker,
//! TrafficLog, Retry, Timeout): one policy per outbound service.

use super::policy::Best;
use super::{MatchPolicy, Rank, best_rank};
use crate::resource::{DataplaneSpec, PolicyTargets, SERVICE_TAG, Tags, WILDCARD};
use std::collections::BTreeMap;

/// The selected policy per outbound service name.
pub type OutboundPolicyMap<'a, P> = BTreeMap<&'a str, &'a P>;

/// The rank of a destination selector against the tag set
/// `{kuma.io/service: <service>}`, without building that tag set: the
/// selector matches only if its only key (if any) is `kuma.io/service`, with
/// the value `service` or `*`.
pub fn destination_rank(selector: &Tags, service: &str) -> Option<Rank> {
    let mut rank = Rank::default();
    for (k, v) in selector {
        if k != SERVICE_TAG {
            return None;
        }
        if v == WILDCARD {
            rank.wildcard += 1;
        } else if v == service {
            rank.exact += 1;
        } else {
            return None;
        }
    }
    Some(rank)
}

/// The services the Dataplane's declared outbounds call (their
/// `kuma.io/service` tags), in declaration order; an outbound without the tag
/// is skipped. A service may appear more than once.
pub fn outbound_services(dataplane: &DataplaneSpec) -> impl Iterator<Item = &str> {
    dataplane
        .networking
        .outbound
        .iter()
        .filter_map(|o| o.tags.get(SERVICE_TAG).map(String::as_str))
}

/// The best source rank of each policy against `tag_sets` (`None`: no source
/// matches, or not a connection policy).
fn source_ranks<P: MatchPolicy>(tag_sets: &[&Tags], policies: &[P]) -> Vec<Option<Rank>> {
    policies
        .iter()
        .map(|p| match p.policy_targets() {
            Some(PolicyTargets::Connection { sources, .. }) => best_rank(sources, tag_sets),
            _ => None,
        })
        .collect()
}

fn select_with_sources<'p, P: MatchPolicy>(
    sources: &[Option<Rank>],
    service: &str,
    policies: &'p [P],
) -> Option<&'p P> {
    let mut best = Best::new();
    for (p, src) in policies.iter().zip(sources) {
        let Some(src) = src else { continue };
        let Some(PolicyTargets::Connection { destinations, .. }) = p.policy_targets() else {
            continue;
        };
        if let Some(dst) = destinations
            .iter()
            .filter_map(|d| destination_rank(&d.match_tags, service))
            .max()
        {
            best.offer(*src + dst, p);
        }
    }
    best.get()
}

/// The outbound connection policy that applies to traffic from a Dataplane
/// with `tag_sets` to `service`, among `policies` of one type.
///
/// A policy applies if one of its `sources` matches one of the tag sets and
/// one of its `destinations` matches `{kuma.io/service: <service>}`; its
/// score is the best source rank plus the best destination rank. The highest
/// score wins; on equal score the newer creation time, then the
/// lexicographically first name.
pub fn select_outbound_policy<'p, P: MatchPolicy>(
    tag_sets: &[&Tags],
    service: &str,
    policies: &'p [P],
) -> Option<&'p P> {
    select_with_sources(&source_ranks(tag_sets, policies), service, policies)
}

/// [`select_outbound_policy`] for every outbound service declared by
/// `dataplane`. Services no policy applies to are absent from the map.
pub fn select_outbound_policies<'a, P: MatchPolicy>(
    dataplane: &'a DataplaneSpec,
    policies: &'a [P],
) -> OutboundPolicyMap<'a, P> {
    select_outbound_policies_for_services(
        &dataplane.tag_sets(),
        outbound_services(dataplane),
        policies,
    )
}

/// [`select_outbound_policy`] for each of an explicit list of `services`
/// (for example the declared outbounds plus the services reachable through
/// DNS VIPs), from a Dataplane with `tag_sets`. Services no policy applies
/// to are absent from the map.
pub fn select_outbound_policies_for_services<'a, P: MatchPolicy>(
    tag_sets: &[&Tags],
    services: impl IntoIterator<Item = &'a str>,
    policies: &'a [P],
) -> OutboundPolicyMap<'a, P> {
    let sources = source_ranks(tag_sets, policies);
    let mut out = BTreeMap::new();
    for service in services {
        if out.contains_key(service) {
            continue;
        }
        if let Some(p) = select_with_sources(&sources, service, policies) {
            out.insert(service, p);
        }
    }
    out
}
