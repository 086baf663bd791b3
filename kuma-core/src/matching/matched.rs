//! [`MatchedPolicies`]: every policy type's selection for one Dataplane.

use super::outbound::OutboundPolicyMap;
use crate::resource::ResourceType;

/// The policies selected for one Dataplane, per type.
///
/// Built by [`PolicyIndex::match_dataplane`] or [`match_dataplane`]. Holds
/// references into the caller's policy slice (no policy is cloned) and
/// outbound service names borrowed from the Dataplane (or the service list
/// given).
///
/// [`PolicyIndex::match_dataplane`]: super::PolicyIndex::match_dataplane
/// [`match_dataplane`]: super::match_dataplane
#[derive(Debug, PartialEq)]
pub struct MatchedPolicies<'a, P> {
    /// The TrafficTrace of the Dataplane.
    pub traffic_trace: Option<&'a P>,
    /// The ProxyTemplate of the Dataplane.
    pub proxy_template: Option<&'a P>,
    /// The TrafficRoute per outbound service.
    pub traffic_routes: OutboundPolicyMap<'a, P>,
    /// The HealthCheck per outbound service.
    pub health_checks: OutboundPolicyMap<'a, P>,
    /// The CircuitBreaker per outbound service.
    pub circuit_breakers: OutboundPolicyMap<'a, P>,
    /// The TrafficLog per outbound service.
    pub traffic_logs: OutboundPolicyMap<'a, P>,
    /// The Retry per outbound service.
    pub retries: OutboundPolicyMap<'a, P>,
    /// The Timeout per outbound service.
    pub timeouts: OutboundPolicyMap<'a, P>,
    /// The TrafficPermission per inbound: element `i` is for
    /// `networking.inbound[i]` (empty for a gateway).
    pub traffic_permissions: Vec<Option<&'a P>>,
    /// The FaultInjection per inbound: element `i` is for
    /// `networking.inbound[i]` (empty for a gateway).
    pub fault_injections: Vec<Option<&'a P>>,
}

impl<P> Default for MatchedPolicies<'_, P> {
    fn default() -> Self {
        Self {
            traffic_trace: None,
            proxy_template: None,
            traffic_routes: OutboundPolicyMap::new(),
            health_checks: OutboundPolicyMap::new(),
            circuit_breakers: OutboundPolicyMap::new(),
            traffic_logs: OutboundPolicyMap::new(),
            retries: OutboundPolicyMap::new(),
            timeouts: OutboundPolicyMap::new(),
            traffic_permissions: Vec::new(),
            fault_injections: Vec::new(),
        }
    }
}

impl<P> Clone for MatchedPolicies<'_, P> {
    fn clone(&self) -> Self {
        Self {
            traffic_trace: self.traffic_trace,
            proxy_template: self.proxy_template,
            traffic_routes: self.traffic_routes.clone(),
            health_checks: self.health_checks.clone(),
            circuit_breakers: self.circuit_breakers.clone(),
            traffic_logs: self.traffic_logs.clone(),
            retries: self.retries.clone(),
            timeouts: self.timeouts.clone(),
            traffic_permissions: self.traffic_permissions.clone(),
            fault_injections: self.fault_injections.clone(),
        }
    }
}

impl<'a, P> MatchedPolicies<'a, P> {
    /// The selected Dataplane policy of type `ty` (TrafficTrace or
    /// ProxyTemplate); `None` for other types or if none matched.
    pub fn dataplane_policy(&self, ty: ResourceType) -> Option<&'a P> {
        match ty {
            ResourceType::TrafficTrace => self.traffic_trace,
            ResourceType::ProxyTemplate => self.proxy_template,
            _ => None,
        }
    }

    /// The per-service selection of outbound policy type `ty`; `None` if
    /// `ty` is not an outbound connection policy type.
    pub fn outbound_policies(&self, ty: ResourceType) -> Option<&OutboundPolicyMap<'a, P>> {
        match ty {
            ResourceType::TrafficRoute => Some(&self.traffic_routes),
            ResourceType::HealthCheck => Some(&self.health_checks),
            ResourceType::CircuitBreaker => Some(&self.circuit_breakers),
            ResourceType::TrafficLog => Some(&self.traffic_logs),
            ResourceType::Retry => Some(&self.retries),
            ResourceType::Timeout => Some(&self.timeouts),
            _ => None,
        }
    }

    /// The per-inbound selection of inbound policy type `ty`; `None` if `ty`
    /// is not an inbound connection policy type.
    pub fn inbound_policies(&self, ty: ResourceType) -> Option<&[Option<&'a P>]> {
        match ty {
            ResourceType::TrafficPermission => Some(&self.traffic_permissions),
            ResourceType::FaultInjection => Some(&self.fault_injections),
            _ => None,
        }
    }
}
