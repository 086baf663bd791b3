//! What the proxies of one regeneration batch share: service clusters and
//! the network filters of outbound listeners, generated once and reused by
//! every proxy that needs the same one.
//!
//! A service's EDS cluster is the same for every proxy that calls it under
//! the same policies: it depends only on the cluster (service and subset),
//! the service's protocol, whether the mesh has mTLS on, and the
//! HealthCheck, CircuitBreaker and Timeout selected for the service (the
//! policies that edit clusters, see [`super::policies`]). An outbound
//! listener's tcp_proxy or connection manager depends on the service, its
//! protocol, where the TrafficRoute sends it, the policies selected for the
//! service, the proxy's TrafficTrace, and its access logs: all but the
//! access logs (their format names the proxy's address) are shared, encoded
//! (see [`super::network_filter`]). When a mesh-wide change regenerates
//! 10,000 proxies, each of these is built, edited and encoded once per
//! batch instead of once per proxy.
//!
//! Selected policies are told apart by identity (their address), which is
//! sound only while they are alive and unchanged: a [`BatchCache`]
//! borrows the policies it was made for (its lifetime), so it cannot
//! outlive a batch. A proxy with a ProxyTemplate shares nothing (the
//! template may edit anything), nor do its clusters under mTLS with a
//! dataplane token (every upstream TLS context carries the proxy's token).

use super::{ClusterRef, OutboundPolicies, ProxyInput, WeightedTarget};
use crate::generate::Protocol;
use crate::resource::XdsResource;
use bytes::Bytes;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

/// What the proxies of one batch of one mesh share, by what it depends
/// on.
///
/// Made with [`BatchCache::for_index`] for the policies of one
/// [`kuma_core::matching::PolicyIndex`] (whose lifetime it takes), passed
/// to every [`crate::generate::generate_proxy`] of the batch.
#[derive(Debug)]
pub struct BatchCache<'p> {
    /// The mesh of the proxies seen so far; a proxy of another mesh
    /// clears the cache.
    mesh: String,
    clusters: HashMap<ClusterKey, Arc<XdsResource>>,
    filters: HashMap<FilterKey, Bytes>,
    hits: u64,
    policies: PhantomData<&'p ()>,
}

impl<'p> BatchCache<'p> {
    /// An empty cache for the batch whose policies `index` holds.
    pub fn for_index<R>(index: &kuma_core::matching::PolicyIndex<'p, R>) -> Self {
        let _ = index;
        Self {
            mesh: String::new(),
            clusters: HashMap::new(),
            filters: HashMap::new(),
            hits: 0,
            policies: PhantomData,
        }
    }

    /// How many clusters and network filters were taken from the cache
    /// instead of generated.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// How many distinct clusters and network filters the cache holds.
    pub fn len(&self) -> usize {
        self.clusters.len() + self.filters.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Prepares the cache for a proxy of `mesh`.
    pub(super) fn enter_mesh(&mut self, mesh: &str) {
        if self.mesh != mesh {
            self.clusters.clear();
            self.filters.clear();
            self.mesh = mesh.to_string();
        }
    }

    /// The cluster generated for `key` earlier in the batch.
    pub(super) fn cluster(&mut self, key: &ClusterKey) -> Option<Arc<XdsResource>> {
        let found = self.clusters.get(key).cloned();
        self.hits += u64::from(found.is_some());
        found
    }

    /// Remembers the cluster generated for `key`.
    pub(super) fn insert_cluster(&mut self, key: ClusterKey, cluster: Arc<XdsResource>) {
        self.clusters.insert(key, cluster);
    }

    /// The network filter (encoded without access logs) generated for
    /// `key` earlier in the batch.
    pub(super) fn filter(&mut self, key: &FilterKey) -> Option<Bytes> {
        let found = self.filters.get(key).cloned();
        self.hits += u64::from(found.is_some());
        found
    }

    /// Remembers the network filter generated for `key`.
    pub(super) fn insert_filter(&mut self, key: FilterKey, encoded: Bytes) {
        self.filters.insert(key, encoded);
    }
}

/// The identity of a selected policy (`0`: none).
fn id<T>(policy: Option<&T>) -> usize {
    policy.map_or(0, |p| std::ptr::from_ref(p) as usize)
}

/// Whether nothing of the proxy of `input` can be shared.
fn shares_nothing(input: &ProxyInput<'_>) -> bool {
    input.dataplane_policies.proxy_template.is_some()
}

/// Everything a service's EDS cluster depends on, in one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ClusterKey {
    /// The cluster's name (its service and subset).
    name: String,
    protocol: Protocol,
    /// Whether the cluster originates mTLS.
    tls: bool,
    /// The HealthCheck, CircuitBreaker and Timeout, and the protocol, of
    /// every service whose policies apply to the cluster (see
    /// [`super::policies::edit`]: the service named by the cluster name up
    /// to each `;`, or by the whole name).
    policies: Vec<([usize; 3], Protocol)>,
}

impl ClusterKey {
    /// The key of `cluster` in the proxy of `input`, or `None` when the
    /// proxy's clusters cannot be shared (see the module docs).
    pub(super) fn of(input: &ProxyInput<'_>, cluster: &ClusterRef, tls: bool) -> Option<Self> {
        if shares_nothing(input) || (tls && input.sds_token.is_some()) {
            return None;
        }
        let name = &cluster.name;
        // Every prefix of the name that ends before a `;`, and the whole
        // name: the services whose policies edit this cluster.
        let policies = name
            .match_indices(';')
            .map(|(i, _)| &name[..i])
            .chain([name.as_str()])
            .filter_map(|service| {
                let p: &OutboundPolicies<'_> = input.outbound_policies.get(service)?;
                let ids = [id(p.health_check), id(p.circuit_breaker), id(p.timeout)];
                Some((ids, input.protocol(service)))
            })
            .collect();
        Some(Self {
            name: name.clone(),
            protocol: input.protocol(&cluster.service),
            tls,
            policies,
        })
    }
}

/// Everything an outbound listener's network filter depends on, in one
/// proxy, but its access logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct FilterKey {
    /// The service called (the filter's stat prefix).
    service: String,
    protocol: Protocol,
    /// Where the traffic goes: (weight, cluster name).
    targets: Vec<(u32, String)>,
    /// Every policy selected for the service but its TrafficLog (only
    /// Retry and Timeout edit the filter today; all are named so a policy
    /// that starts to cannot be forgotten here), and the proxy's
    /// TrafficTrace.
    policies: [usize; 6],
}

impl FilterKey {
    /// The key of the network filter of an outbound listener calling
    /// `service` (through `targets`) in the proxy of `input`, or `None`
    /// when the proxy shares nothing.
    pub(super) fn of(
        input: &ProxyInput<'_>,
        service: &str,
        targets: &[WeightedTarget],
    ) -> Option<Self> {
        if shares_nothing(input) {
            return None;
        }
        let none = OutboundPolicies::default();
        let p = input.outbound_policies.get(service).unwrap_or(&none);
        Some(Self {
            service: service.to_string(),
            protocol: input.protocol(service),
            targets: targets
                .iter()
                .map(|t| (t.weight, t.cluster.name.clone()))
                .collect(),
            policies: [
                id(p.route),
                id(p.health_check),
                id(p.circuit_breaker),
                id(p.retry),
                id(p.timeout),
                id(input.dataplane_policies.traffic_trace),
            ],
        })
    }
}

#[cfg(test)]
mod tests;
