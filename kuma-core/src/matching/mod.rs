//! Policy matching: which policies apply to which Dataplane, with Kuma's
//! ranking rules.
//!
//! A selector is a tag map; `*` as a value matches any value of an existing
//! key. A Dataplane matches a selector if any of its tag sets (its inbounds'
//! tags, or its gateway's tags) contains every key of the selector with an
//! equal value or `*`. A match's [`Rank`] is (exact matches, wildcard
//! matches), compared by the total number of matched keys first, then by
//! exact matches. Ties between policies go to the newer creation time, then
//! to the lexicographically first name.
//!
//! - Dataplane policies (TrafficTrace, ProxyTemplate): the policy whose
//!   `selectors` rank best against the Dataplane —
//!   [`select_dataplane_policy`].
//! - Outbound connection policies (TrafficRoute, HealthCheck,
//!   CircuitBreaker, TrafficLog, Retry, Timeout): per outbound service, the
//!   policy with the best source rank + destination rank, the destination
//!   tested against `{kuma.io/service: <service>}`; a policy without a
//!   matching source or destination does not apply —
//!   [`select_outbound_policies`], [`select_outbound_policies_for_services`].
//! - Inbound connection policies (TrafficPermission, FaultInjection): per
//!   inbound, the policy whose `destinations` rank best against the inbound's
//!   tags; `sources` take no part — [`select_inbound_policies`].
//!
//! [`PolicyIndex`] indexes all policies of a mesh once (by service) and then
//! computes every type's selection for one Dataplane at once into
//! [`MatchedPolicies`]; [`match_dataplane`] does both in one call.
//!
//! All functions are pure and deterministic; results do not depend on the
//! order of the policies given. They work on anything implementing
//! [`MatchPolicy`]: [`Resource`](crate::resource::Resource), `&Resource`,
//! `Arc<Resource>`, ... and return references into the caller's slice.
//!
//! ```
//! use kuma_core::matching::{PolicyIndex, match_dataplane};
//! use kuma_core::resource::{DataplaneSpec, Resource};
//!
//! let dp = Resource::from_yaml(r#"
//! type: Dataplane
//! mesh: default
//! name: web-1
//! networking:
//!   address: 10.0.0.1
//!   inbound:
//!   - port: 8080
//!     tags: {kuma.io/service: web, version: v1}
//!   outbound:
//!   - port: 10001
//!     tags: {kuma.io/service: backend}
//!   - port: 10002
//!     tags: {kuma.io/service: redis}
//! "#).unwrap();
//! let dp = dp.spec_as::<DataplaneSpec>().unwrap();
//!
//! let policies: Vec<Resource> = [
//!     "type: TrafficPermission\nmesh: default\nname: allow-all\n\
//!      sources: [{match: {kuma.io/service: '*'}}]\n\
//!      destinations: [{match: {kuma.io/service: '*'}}]\n",
//!     "type: TrafficPermission\nmesh: default\nname: web-v1\n\
//!      sources: [{match: {kuma.io/service: frontend}}]\n\
//!      destinations: [{match: {kuma.io/service: web, version: v1}}]\n",
//!     "type: TrafficRoute\nmesh: default\nname: route-all\n\
//!      sources: [{match: {kuma.io/service: '*'}}]\n\
//!      destinations: [{match: {kuma.io/service: '*'}}]\n\
//!      conf: {destination: {kuma.io/service: '*'}}\n",
//!     "type: TrafficRoute\nmesh: default\nname: web-to-backend\n\
//!      sources: [{match: {kuma.io/service: web}}]\n\
//!      destinations: [{match: {kuma.io/service: backend}}]\n\
//!      conf: {destination: {kuma.io/service: backend, version: v2}}\n",
//! ]
//! .into_iter()
//! .map(|y| {
//!     let r = Resource::from_yaml(y).unwrap();
//!     r.validate().unwrap();
//!     r
//! })
//! .collect();
//!
//! let matched = match_dataplane(dp, &policies);
//! // The more specific permission replaces allow-all for the inbound.
//! assert_eq!(matched.traffic_permissions[0].unwrap().meta.name, "web-v1");
//! assert_eq!(matched.traffic_routes["backend"].meta.name, "web-to-backend");
//! assert_eq!(matched.traffic_routes["redis"].meta.name, "route-all");
//! assert!(matched.timeouts.is_empty());
//!
//! // Index once per mesh snapshot, match per proxy.
//! let index = PolicyIndex::new(&policies);
//! assert_eq!(index.match_dataplane(dp), matched);
//! ```

mod dataplane;
mod inbound;
mod index;
mod matched;
mod outbound;
mod policy;
mod rank;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use crate::resource::PolicyKind;
pub use dataplane::{select_dataplane_policy, select_dataplane_policy_for_tags};
pub use inbound::{select_inbound_policies, select_inbound_policy};
pub use index::{PolicyIndex, match_dataplane};
pub use matched::MatchedPolicies;
pub use outbound::{
    OutboundPolicyMap, destination_rank, outbound_services, select_outbound_policies,
    select_outbound_policies_for_services, select_outbound_policy,
};
pub use policy::{MatchPolicy, compare_candidates};
pub use rank::{Rank, best_rank, match_rank, selector_matches};
/// The creation-time type of [`MatchPolicy::policy_creation_time`],
/// re-exported so implementors need no direct `time` dependency.
pub use time::OffsetDateTime;
