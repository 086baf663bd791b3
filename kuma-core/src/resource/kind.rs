//! What each resource type is: the kind column of the `resource_types!`
//! table in the parent module, and the lists derived from it.
//!
//! Code that treats types by what they are (is it a policy, how does it
//! select Dataplanes, may users write it) asks [`ResourceType::kind`] or one
//! of the lists here instead of naming types by hand, so a new type is
//! classified once, where it is declared.

use super::ResourceType;

/// What a resource type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceKind {
    /// A mesh.
    Mesh,
    /// A data-plane proxy.
    Dataplane,
    /// A service outside the mesh.
    ExternalService,
    /// Runtime status the control plane writes (DataplaneInsight,
    /// ZoneInsight); users cannot change it through the API.
    Insight,
    /// A policy, selected for Dataplanes as its [`PolicyKind`] says.
    Policy(PolicyKind),
    /// Secret data, served only by the admin server.
    Secret,
    /// A zone of a multi-zone deployment.
    Zone,
    /// Internal control-plane data (for example the DNS VIP map), never
    /// shown to users.
    Config,
}

/// How a policy type is matched to a Dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Selected once per Dataplane by `selectors` (TrafficTrace,
    /// ProxyTemplate).
    Dataplane,
    /// Selected per outbound service by `sources` and `destinations`
    /// (TrafficRoute, HealthCheck, CircuitBreaker, TrafficLog, Retry,
    /// Timeout).
    Outbound,
    /// Selected per inbound by `destinations` (TrafficPermission,
    /// FaultInjection).
    Inbound,
}

/// Whether `ty` is a policy of kind `kind` (`None`: of any kind).
const fn is_policy_of(ty: ResourceType, kind: Option<PolicyKind>) -> bool {
    match (ty.kind(), kind) {
        (ResourceKind::Policy(_), None) => true,
        (ResourceKind::Policy(k), Some(want)) => k as u8 == want as u8,
        _ => false,
    }
}

/// How many types are policies of kind `kind` (`None`: of any kind).
const fn count_policies(kind: Option<PolicyKind>) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < ResourceType::ALL.len() {
        if is_policy_of(ResourceType::ALL[i], kind) {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The policy types of kind `kind` (`None`: of any kind), in declaration
/// order. `N` must be `count_policies(kind)`.
const fn policies<const N: usize>(kind: Option<PolicyKind>) -> [ResourceType; N] {
    let mut out = [ResourceType::Mesh; N];
    let mut n = 0;
    let mut i = 0;
    while i < ResourceType::ALL.len() {
        if is_policy_of(ResourceType::ALL[i], kind) {
            out[n] = ResourceType::ALL[i];
            n += 1;
        }
        i += 1;
    }
    assert!(n == N, "array length is not the number of policy types");
    out
}

impl ResourceType {
    /// Every policy type, in declaration order.
    pub const POLICIES: [ResourceType; count_policies(None)] = policies(None);

    /// How the type is matched to Dataplanes; `None` if it is not a policy.
    pub const fn policy_kind(self) -> Option<PolicyKind> {
        match self.kind() {
            ResourceKind::Policy(k) => Some(k),
            _ => None,
        }
    }

    /// Whether the type is a policy.
    pub const fn is_policy(self) -> bool {
        self.policy_kind().is_some()
    }
}

impl PolicyKind {
    /// The Dataplane policy types, in declaration order.
    pub const DATAPLANE_TYPES: [ResourceType; count_policies(Some(PolicyKind::Dataplane))] =
        policies(Some(PolicyKind::Dataplane));
    /// The outbound connection policy types, in declaration order.
    pub const OUTBOUND_TYPES: [ResourceType; count_policies(Some(PolicyKind::Outbound))] =
        policies(Some(PolicyKind::Outbound));
    /// The inbound connection policy types, in declaration order.
    pub const INBOUND_TYPES: [ResourceType; count_policies(Some(PolicyKind::Inbound))] =
        policies(Some(PolicyKind::Inbound));

    /// How `ty` is matched; `None` if it is not a policy type (the same as
    /// [`ResourceType::policy_kind`]).
    pub const fn of(ty: ResourceType) -> Option<PolicyKind> {
        ty.policy_kind()
    }

    /// The policy types of this kind, in declaration order.
    pub const fn types(self) -> &'static [ResourceType] {
        match self {
            PolicyKind::Dataplane => &Self::DATAPLANE_TYPES,
            PolicyKind::Outbound => &Self::OUTBOUND_TYPES,
            PolicyKind::Inbound => &Self::INBOUND_TYPES,
        }
    }

    /// Whether policies of this kind select by `selectors` (Dataplane
    /// policies) rather than `sources` and `destinations`.
    pub const fn selects_by_selectors(self) -> bool {
        matches!(self, PolicyKind::Dataplane)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{PolicyTargets, ResourceSpec};

    #[test]
    fn the_lists_partition_the_policy_types() {
        assert_eq!(
            PolicyKind::DATAPLANE_TYPES,
            [ResourceType::TrafficTrace, ResourceType::ProxyTemplate]
        );
        assert_eq!(
            PolicyKind::OUTBOUND_TYPES,
            [
                ResourceType::TrafficRoute,
                ResourceType::HealthCheck,
                ResourceType::CircuitBreaker,
                ResourceType::TrafficLog,
                ResourceType::Retry,
                ResourceType::Timeout,
            ]
        );
        assert_eq!(
            PolicyKind::INBOUND_TYPES,
            [
                ResourceType::TrafficPermission,
                ResourceType::FaultInjection
            ]
        );
        assert_eq!(ResourceType::POLICIES.len(), 10);
        for ty in ResourceType::ALL {
            let listed = [
                PolicyKind::Dataplane,
                PolicyKind::Outbound,
                PolicyKind::Inbound,
            ]
            .into_iter()
            .filter(|k| k.types().contains(ty))
            .collect::<Vec<_>>();
            assert_eq!(listed, ty.policy_kind().into_iter().collect::<Vec<_>>());
            assert_eq!(ty.is_policy(), ResourceType::POLICIES.contains(ty));
        }
    }

    #[test]
    fn a_policy_targets_as_its_kind_says() {
        for ty in ResourceType::ALL {
            let spec = ResourceSpec::from_json(*ty, serde_json::json!({}));
            let Ok(spec) = spec else {
                // Types whose spec has required fields are not policies.
                assert!(!ty.is_policy(), "{ty}");
                continue;
            };
            match (ty.policy_kind(), spec.policy_targets()) {
                (None, None) => {}
                (Some(k), Some(PolicyTargets::Selectors(_))) => {
                    assert!(k.selects_by_selectors(), "{ty}")
                }
                (Some(k), Some(PolicyTargets::Connection { .. })) => {
                    assert!(!k.selects_by_selectors(), "{ty}")
                }
                (k, t) => panic!("{ty}: kind {k:?}, targets {t:?}"),
            }
        }
    }
}
