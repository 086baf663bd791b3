//! Test helpers: a minimal policy type and builders.

use super::MatchPolicy;
use crate::resource::{
    DataplaneSpec, Gateway, Inbound, Outbound, PolicyTargets, ResourceType, SERVICE_TAG, Selector,
    Tags,
};
use time::OffsetDateTime;

pub type Pairs<'a> = &'a [(&'a str, &'a str)];

/// A policy independent of the resource types' field layout.
#[derive(Debug, Clone, PartialEq)]
pub struct TestPolicy {
    pub ty: ResourceType,
    pub name: String,
    pub created: Option<OffsetDateTime>,
    pub selectors: Vec<Selector>,
    pub sources: Vec<Selector>,
    pub destinations: Vec<Selector>,
}

impl MatchPolicy for TestPolicy {
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
        Some(if self.ty.policy_kind()?.selects_by_selectors() {
            PolicyTargets::Selectors(&self.selectors)
        } else {
            PolicyTargets::Connection {
                sources: &self.sources,
                destinations: &self.destinations,
            }
        })
    }
}

impl TestPolicy {
    /// Sets the creation time to `secs` after the epoch.
    pub fn at(mut self, secs: i64) -> Self {
        self.created = OffsetDateTime::from_unix_timestamp(secs).ok();
        self
    }
}

pub fn tags(pairs: Pairs<'_>) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn sels(list: &[Pairs<'_>]) -> Vec<Selector> {
    list.iter()
        .map(|p| Selector {
            match_tags: tags(p),
        })
        .collect()
}

/// A Dataplane policy (TrafficTrace / ProxyTemplate).
pub fn dp_policy(ty: ResourceType, name: &str, selectors: &[Pairs<'_>]) -> TestPolicy {
    TestPolicy {
        ty,
        name: name.to_string(),
        created: None,
        selectors: sels(selectors),
        sources: Vec::new(),
        destinations: Vec::new(),
    }
}

/// A connection policy.
pub fn conn(
    ty: ResourceType,
    name: &str,
    sources: &[Pairs<'_>],
    destinations: &[Pairs<'_>],
) -> TestPolicy {
    TestPolicy {
        ty,
        name: name.to_string(),
        created: None,
        selectors: Vec::new(),
        sources: sels(sources),
        destinations: sels(destinations),
    }
}

/// A Dataplane with inbounds of the given tags (ports 8080, 8081, ...) and
/// outbounds to the given services.
pub fn dataplane(inbounds: &[Pairs<'_>], outbounds: &[&str]) -> DataplaneSpec {
    let mut dp = DataplaneSpec::default();
    dp.networking.address = "10.0.0.1".into();
    dp.networking.inbound = inbounds
        .iter()
        .zip(8080..)
        .map(|(t, port)| Inbound {
            port,
            tags: tags(t),
            ..Inbound::default()
        })
        .collect();
    dp.networking.outbound = outbounds
        .iter()
        .zip(10000..)
        .map(|(s, port)| Outbound {
            port,
            tags: tags(&[(SERVICE_TAG, s)]),
            ..Outbound::default()
        })
        .collect();
    dp
}

/// A gateway Dataplane with outbounds.
pub fn gateway(gateway_tags: Pairs<'_>, outbounds: &[&str]) -> DataplaneSpec {
    let mut dp = dataplane(&[], outbounds);
    dp.networking.gateway = Some(Gateway {
        tags: tags(gateway_tags),
    });
    dp
}

/// The names of an optional selection.
pub fn name<P: MatchPolicy>(p: Option<&P>) -> Option<&str> {
    p.map(|p| p.policy_name())
}
