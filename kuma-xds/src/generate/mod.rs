//! Envoy resources for one Dataplane (see docs/architecture.md, "Reconciler
//! and generator").
//!
//! Generation is a pure function of a [`ProxyInput`]: the Dataplane, the
//! policies the matcher selected for it, and what the mesh knows about each
//! service (its protocol). Endpoints are not part of a proxy's own output:
//! [`load_assignment`] builds a cluster's endpoints once per mesh, and every
//! proxy using that cluster shares the encoded result.
//!
//! When the proxy's mesh has mTLS on (docs/security.md, "Generated config
//! with mTLS on"), inbound listeners terminate mTLS and the clusters of mesh
//! services originate it, with certificates from the SDS secrets
//! [`names::IDENTITY_CERT_SECRET`] and [`names::MESH_CA_SECRET`]; the
//! selected TrafficPermission of each inbound becomes an RBAC filter.
//!
//! The step from matcher to generator is [`generate_proxy`]: the policies
//! a [`kuma_core::matching::PolicyIndex`] selects for a Dataplane, with
//! what the reconciler knows of the mesh ([`MeshView`]), become its
//! [`ProxyInput`].

mod clusters;
mod endpoints;
mod listeners;
pub mod names;
mod network_filter;
mod policies;
mod protocol;
mod proxy;
mod shared;
mod tls;

pub use endpoints::{Endpoint, load_assignment, load_assignment_of};
pub use protocol::Protocol;
pub use proxy::{MeshView, generate_proxy};
pub use shared::BatchCache;

use crate::resource::{XdsResource, XdsType};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use kuma_core::resource::{
    CircuitBreakerSpec, DataplaneSpec, FaultInjectionSpec, HealthCheckSpec, MeshSpec, Outbound,
    ProxyTemplateSpec, RetrySpec, SERVICE_TAG, Tags, TimeoutSpec, TrafficLogSpec,
    TrafficPermissionSpec, TrafficRouteConf, TrafficRouteSpec, TrafficTraceSpec, WILDCARD,
};
use network_filter::{NetworkFilter, NetworkFilters};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A cluster traffic can go to: a service, optionally narrowed to the
/// instances whose tags match `subset` (besides `kuma.io/service`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterRef {
    /// The cluster name ([`names::service_cluster`]).
    pub name: String,
    /// The service.
    pub service: String,
    /// Extra tags the instances must carry (`*`: the key must exist).
    pub subset: Tags,
}

impl ClusterRef {
    /// The cluster of a service narrowed by `destination` tags.
    pub fn new(service: &str, destination: &Tags) -> Self {
        let subset: Tags = destination
            .iter()
            .filter(|(k, _)| k.as_str() != SERVICE_TAG)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Self {
            name: names::service_cluster(service, &subset),
            service: service.to_string(),
            subset,
        }
    }

    /// The cluster of a whole service.
    pub fn service(service: &str) -> Self {
        Self::new(service, &Tags::new())
    }
}

/// One weighted destination of an outbound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedTarget {
    /// Relative weight (> 0).
    pub weight: u32,
    /// Where that share goes.
    pub cluster: ClusterRef,
}

/// The policies selected for one outbound service of a proxy.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboundPolicies<'a> {
    /// The TrafficRoute, if any matched.
    pub route: Option<&'a TrafficRouteSpec>,
    /// The HealthCheck, if any matched.
    pub health_check: Option<&'a HealthCheckSpec>,
    /// The CircuitBreaker, if any matched.
    pub circuit_breaker: Option<&'a CircuitBreakerSpec>,
    /// The Retry, if any matched.
    pub retry: Option<&'a RetrySpec>,
    /// The Timeout, if any matched.
    pub timeout: Option<&'a TimeoutSpec>,
    /// The TrafficLog, if any matched.
    pub traffic_log: Option<&'a TrafficLogSpec>,
}

/// A selected policy and the name of its resource (for what is named
/// after the policy, such as an RBAC policy).
#[derive(Debug)]
pub struct Named<'a, T> {
    /// The resource's name.
    pub name: &'a str,
    /// The resource's spec.
    pub spec: &'a T,
}

// Not derived: a derive would require `T: Copy`, but only references are
// copied.
impl<T> Clone for Named<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Named<'_, T> {}

/// The policies selected for one inbound of a proxy.
#[derive(Debug, Clone, Copy, Default)]
pub struct InboundPolicies<'a> {
    /// The TrafficPermission, if any matched (its name names the RBAC
    /// policy).
    pub traffic_permission: Option<Named<'a, TrafficPermissionSpec>>,
    /// The FaultInjection, if any matched.
    pub fault_injection: Option<&'a FaultInjectionSpec>,
}

/// The Dataplane-wide policies selected for a proxy.
#[derive(Debug, Clone, Copy, Default)]
pub struct DataplanePolicies<'a> {
    /// The TrafficTrace, if any matched.
    pub traffic_trace: Option<&'a TrafficTraceSpec>,
    /// The ProxyTemplate, if any matched.
    pub proxy_template: Option<&'a ProxyTemplateSpec>,
}

/// Everything needed to generate one proxy's resources.
#[derive(Clone, Copy)]
pub struct ProxyInput<'a> {
    /// The Dataplane's mesh.
    pub mesh: &'a str,
    /// The Dataplane's name.
    pub name: &'a str,
    /// The Dataplane.
    pub dataplane: &'a DataplaneSpec,
    /// The Dataplane's Mesh (logging and tracing backends, mTLS), if known.
    pub mesh_spec: Option<&'a MeshSpec>,
    /// Selected policies per outbound service.
    pub outbound_policies: &'a BTreeMap<String, OutboundPolicies<'a>>,
    /// Selected policies per inbound (element `i` is for
    /// `networking.inbound[i]`; may be shorter).
    pub inbound_policies: &'a [InboundPolicies<'a>],
    /// Selected Dataplane-wide policies.
    pub dataplane_policies: DataplanePolicies<'a>,
    /// The protocol of every service of the mesh (absent: TCP).
    pub protocols: &'a BTreeMap<String, Protocol>,
    /// The DNS VIP of every service of the mesh (service -> IPv4). Proxies
    /// with transparent proxying get a virtual `outbound:<vip>:80` listener
    /// per service.
    pub vips: &'a BTreeMap<String, String>,
    /// The proxy's dataplane token, sent back to the SDS server in the
    /// `authorization` metadata of every SDS config source when the mesh
    /// has mTLS on; `None` when token checking is off. Secret: never
    /// logged (this type's `Debug` redacts it).
    pub sds_token: Option<&'a str>,
}

impl std::fmt::Debug for ProxyInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyInput")
            .field("mesh", &self.mesh)
            .field("name", &self.name)
            .field("dataplane", &self.dataplane)
            .field("mesh_spec", &self.mesh_spec)
            .field("outbound_policies", &self.outbound_policies)
            .field("inbound_policies", &self.inbound_policies)
            .field("dataplane_policies", &self.dataplane_policies)
            .field("protocols", &self.protocols)
            .field("vips", &self.vips)
            .field("sds_token", &self.sds_token.map(|_| "<redacted>"))
            .finish()
    }
}

impl ProxyInput<'_> {
    fn protocol(&self, service: &str) -> Protocol {
        self.protocols.get(service).copied().unwrap_or_default()
    }
}

/// One proxy's own resources (listeners, clusters) and the EDS clusters
/// whose shared endpoints it needs.
#[derive(Debug, Clone, Default)]
pub struct ProxyResources {
    /// Encoded listeners and clusters.
    pub resources: Vec<Arc<XdsResource>>,
    /// The EDS clusters the proxy uses.
    pub eds_clusters: BTreeSet<ClusterRef>,
}

/// The service an outbound calls (`kuma.io/service` tag or the legacy
/// `service` field).
pub fn outbound_service(outbound: &Outbound) -> Option<&str> {
    outbound
        .tags
        .get(SERVICE_TAG)
        .map(String::as_str)
        .or(outbound.service.as_deref())
}

/// Where traffic to `service` goes under `route`: weighted subsets of the
/// split, or the whole service when no route (or no usable split) applies.
/// `kuma.io/service: '*'` in a destination means "the service called".
pub fn route_targets(service: &str, route: Option<&TrafficRouteSpec>) -> Vec<WeightedTarget> {
    let splits: Vec<(u32, &Tags)> = match route.and_then(|r| r.conf.as_ref()) {
        Some(TrafficRouteConf::Split(list)) => list
            .iter()
            .map(|s| (s.weight.unwrap_or(0), &s.destination))
            .collect(),
        Some(TrafficRouteConf::Route(conf)) if !conf.split.is_empty() => conf
            .split
            .iter()
            .map(|s| (s.weight.unwrap_or(0), &s.destination))
            .collect(),
        Some(TrafficRouteConf::Route(conf)) => conf.destination.iter().map(|d| (1, d)).collect(),
        _ => Vec::new(),
    };
    let mut targets: Vec<WeightedTarget> = Vec::new();
    for (weight, dest) in splits {
        if weight == 0 {
            continue;
        }
        let dest_service = match dest.get(SERVICE_TAG).map(String::as_str) {
            None | Some(WILDCARD) => service,
            Some(s) => s,
        };
        let cluster = ClusterRef::new(dest_service, dest);
        match targets.iter_mut().find(|t| t.cluster == cluster) {
            Some(t) => t.weight += weight,
            None => targets.push(WeightedTarget { weight, cluster }),
        }
    }
    if targets.is_empty() {
        targets.push(WeightedTarget {
            weight: 1,
            cluster: ClusterRef::service(service),
        });
    }
    targets
}

/// A proxy's listeners and clusters before encoding: what policies modify.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// Clusters, in generation order.
    pub clusters: Vec<Cluster>,
    /// Listeners, in generation order.
    pub listeners: Vec<Listener>,
    /// The network filter (tcp_proxy or HTTP connection manager) of each
    /// generated listener, typed while the policies edit it; until
    /// [`Self::pack`] the listeners hold placeholders for them.
    pub(crate) network_filters: NetworkFilters,
    /// Clusters taken already encoded from the batch's
    /// [`BatchCache`]; policies do not see them (they are what
    /// policies made of the same cluster for another proxy).
    pub(crate) shared_clusters: Vec<Arc<XdsResource>>,
    /// The `clusters` (by index) to add to the batch's [`BatchCache`]
    /// once encoded, with their keys.
    share_as: Vec<(usize, shared::ClusterKey)>,
    /// The listeners whose network filter is shared with other proxies
    /// of the batch, in listener order.
    shared_filters: Vec<SharedFilter>,
}

/// A listener whose network filter is shared with other proxies of the
/// batch: taken from its [`BatchCache`], or built here and added to it.
#[derive(Debug, Clone)]
struct SharedFilter {
    /// The listener's index.
    listener: usize,
    /// The key to add the filter to the cache under, if built here.
    key: Option<shared::FilterKey>,
    /// The filter encoded without access logs, once [`ProxyConfig::pack`]
    /// ran: the bytes the listener's body shares (see
    /// [`crate::resource::Body`]).
    base: Option<bytes::Bytes>,
}

impl ProxyConfig {
    /// Adds a listener whose network filter `filter` stays typed until
    /// [`Self::pack`] (the listener holds its placeholder).
    fn push_listener(&mut self, listener: Listener, filter: NetworkFilter) {
        self.network_filters.insert(self.listeners.len(), filter);
        self.listeners.push(listener);
    }

    /// Packs the listeners' typed network filters into their `Any`s, once;
    /// afterwards `listeners` are complete. Idempotent.
    pub fn pack(&mut self) {
        let mut shared = self.shared_filters.iter_mut().peekable();
        self.network_filters
            .pack(&mut self.listeners, |i, encoded| {
                if let Some(s) = shared.next_if(|s| s.listener == i) {
                    s.base = Some(encoded);
                }
            });
    }
}

/// Builds a proxy's listeners and clusters (before policies beyond
/// TrafficRoute are applied) and the EDS clusters it uses. The listeners'
/// network filters stay typed until [`ProxyConfig::pack`] (which
/// [`encode`] does).
pub fn build(input: &ProxyInput<'_>) -> (ProxyConfig, BTreeSet<ClusterRef>) {
    build_shared(input, None)
}

/// [`build`], taking the service clusters [`BatchCache`] already has.
fn build_shared(
    input: &ProxyInput<'_>,
    mut shared: Option<&mut BatchCache<'_>>,
) -> (ProxyConfig, BTreeSet<ClusterRef>) {
    let dp = input.dataplane;
    let none = OutboundPolicies::default();
    let targets_of = |service: &str| {
        let policies = input.outbound_policies.get(service).unwrap_or(&none);
        route_targets(service, policies.route)
    };
    // Where each outbound goes, first: it tells how many clusters there
    // will be.
    let outbounds: Vec<(&Outbound, &str, Vec<WeightedTarget>)> = dp
        .networking
        .outbound
        .iter()
        .filter_map(|o| {
            let service = outbound_service(o)?;
            Some((o, service, targets_of(service)))
        })
        .collect();
    let vips: Vec<(&str, &str, Vec<WeightedTarget>)> =
        if dp.networking.transparent_proxying.is_some() {
            input
                .vips
                .iter()
                .map(|(service, vip)| (vip.as_str(), service.as_str(), targets_of(service)))
                .collect()
        } else {
            Vec::new()
        };
    // Sized up front: listeners and clusters are large (kilobytes), and
    // growing a vector moves every element built so far. Clusters: one
    // per inbound, at most one per target, and room for the collectors
    // TrafficLog and TrafficTrace add.
    let listeners = dp.networking.inbound.len() + outbounds.len() + vips.len();
    let targets: usize = outbounds
        .iter()
        .map(|(_, _, t)| t.len())
        .chain(vips.iter().map(|(_, _, t)| t.len()))
        .sum();
    let mut config = ProxyConfig {
        clusters: Vec::with_capacity(dp.networking.inbound.len() + targets + 2),
        listeners: Vec::with_capacity(listeners),
        network_filters: NetworkFilters::with_capacity(listeners),
        ..ProxyConfig::default()
    };
    if let Some(shared) = shared.as_deref_mut() {
        shared.enter_mesh(input.mesh);
    }
    let mut eds_clusters = BTreeSet::new();
    // With mTLS on, inbound listeners terminate mTLS and clusters of mesh
    // services originate it (the local app's clusters stay plain).
    let tls = tls::MeshTls::of(input);

    for inbound in &dp.networking.inbound {
        let protocol = Protocol::of_tags(&inbound.tags);
        config.clusters.push(clusters::local(inbound, protocol));
        let (mut listener, filter) = listeners::inbound(dp, inbound, protocol);
        if let Some(tls) = &tls {
            tls.secure_inbound(&mut listener);
        }
        config.push_listener(listener, filter);
    }

    // An outbound listener's network filter: taken from the batch's
    // cache, or built (and remembered for the cache once encoded).
    // `index`: the listener's, once pushed.
    let mut filter_of =
        |config: &mut ProxyConfig, index: usize, service: &str, targets: &[WeightedTarget]| {
            let protocol = input.protocol(service);
            let key = shared
                .as_deref_mut()
                .and_then(|s| Some((s, shared::FilterKey::of(input, service, targets)?)));
            if let Some((cache, key)) = key {
                let cached = cache.filter(&key);
                config.shared_filters.push(SharedFilter {
                    listener: index,
                    key: cached.is_none().then_some(key),
                    base: None,
                });
                if let Some(base) = cached {
                    return NetworkFilter::Encoded(Box::new(network_filter::EncodedFilter {
                        http: protocol.is_http(),
                        stat_prefix: service.to_string(),
                        base,
                        access_log: Vec::new(),
                    }));
                }
            }
            listeners::filter_for(protocol, "outbound", service, targets)
        };
    let mut outbound_filters = Vec::with_capacity(outbounds.len() + vips.len());
    let calls = outbounds.iter().map(|(_, s, t)| (*s, t));
    for (service, targets) in calls.chain(vips.iter().map(|(_, s, t)| (*s, t))) {
        let index = config.listeners.len() + outbound_filters.len();
        let filter = filter_of(&mut config, index, service, targets);
        outbound_filters.push(filter);
    }
    let mut clusters_done = BTreeSet::new();
    let mut add_clusters = |config: &mut ProxyConfig, targets: Vec<WeightedTarget>| {
        for t in targets {
            if clusters_done.insert(t.cluster.name.clone()) {
                let key = shared.as_deref_mut().and_then(|s| {
                    Some((s, shared::ClusterKey::of(input, &t.cluster, tls.is_some())?))
                });
                if let Some((cache, key)) = key {
                    if let Some(done) = cache.cluster(&key) {
                        config.shared_clusters.push(done);
                        eds_clusters.insert(t.cluster);
                        continue;
                    }
                    config.share_as.push((config.clusters.len(), key));
                }
                let p = input.protocol(&t.cluster.service);
                let mut cluster = clusters::eds(&t.cluster, p);
                if let Some(tls) = &tls {
                    cluster.transport_socket = Some(tls.upstream_socket(&t.cluster.service));
                }
                config.clusters.push(cluster);
            }
            eds_clusters.insert(t.cluster);
        }
    };
    let mut filters = outbound_filters.into_iter();
    for ((outbound, _, targets), filter) in outbounds.into_iter().zip(&mut filters) {
        let (listener, filter) = listeners::outbound(outbound, filter);
        config.push_listener(listener, filter);
        add_clusters(&mut config, targets);
    }
    for ((vip, _, targets), filter) in vips.into_iter().zip(&mut filters) {
        let (listener, filter) = listeners::virtual_outbound(vip, filter);
        config.push_listener(listener, filter);
        add_clusters(&mut config, targets);
    }
    (config, eds_clusters)
}

/// Encodes a proxy's listeners and clusters, once each (packing what is
/// still typed first).
pub fn encode(config: &mut ProxyConfig) -> Vec<Arc<XdsResource>> {
    encode_shared(config, None)
}

/// [`encode`], adding the clusters to share to `shared`.
fn encode_shared(
    config: &mut ProxyConfig,
    shared: Option<&mut BatchCache<'_>>,
) -> Vec<Arc<XdsResource>> {
    config.pack();
    let mut out = Vec::with_capacity(
        config.clusters.len() + config.shared_clusters.len() + config.listeners.len(),
    );
    out.extend(
        config
            .clusters
            .iter()
            .map(|c| XdsResource::encode(XdsType::Cluster, c.name.clone(), c)),
    );
    if let Some(shared) = shared {
        for (i, key) in config.share_as.drain(..) {
            shared.insert_cluster(key, out[i].clone());
        }
        for s in &mut config.shared_filters {
            if let (Some(key), Some(base)) = (s.key.take(), &s.base) {
                shared.insert_filter(key, base.clone());
            }
        }
    }
    out.append(&mut config.shared_clusters);
    let mut bases = config.shared_filters.drain(..).peekable();
    for (i, l) in config.listeners.iter().enumerate() {
        let base = bases.next_if(|s| s.listener == i).and_then(|s| s.base);
        out.push(XdsResource::encode_sharing(
            XdsType::Listener,
            l.name.clone(),
            l,
            base.as_ref(),
        ));
    }
    out
}

/// Generates a proxy's listeners and clusters: [`build`], then the
/// policies, then [`encode`].
pub fn generate(input: &ProxyInput<'_>) -> ProxyResources {
    generate_shared(input, None)
}

/// [`generate`], sharing service clusters with the other proxies of a
/// batch through `shared`.
pub(crate) fn generate_shared(
    input: &ProxyInput<'_>,
    mut shared: Option<&mut BatchCache<'_>>,
) -> ProxyResources {
    let (mut config, mut eds_clusters) = build_shared(input, shared.as_deref_mut());
    policies::apply(&mut config, input);
    if input.dataplane_policies.proxy_template.is_some() {
        // A ProxyTemplate may remove clusters (or all, without
        // `default-proxy`): only the endpoints of those left are needed.
        eds_clusters.retain(|c| config.clusters.iter().any(|k| k.name == c.name));
    }
    ProxyResources {
        resources: encode_shared(&mut config, shared),
        eds_clusters,
    }
}

/// The port of the virtual listener of every service VIP.
pub const VIP_PORT: u32 = 80;

#[cfg(test)]
mod tests {
    use super::*;
    use kuma_core::resource::Resource;

    fn dp(yaml: &str) -> DataplaneSpec {
        Resource::from_yaml(yaml)
            .unwrap()
            .spec_as::<DataplaneSpec>()
            .unwrap()
            .clone()
    }

    fn names(out: &ProxyResources) -> Vec<String> {
        out.resources.iter().map(|r| r.name.clone()).collect()
    }

    const BASE: &str = "type: Dataplane\nmesh: m\nname: web\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 9000\n    tags:\n      kuma.io/service: web\n";

    #[test]
    fn vip_listeners_only_with_transparent_proxying() {
        let vips: BTreeMap<String, String> = [
            ("backend".to_string(), "240.0.0.1".to_string()),
            ("redis".to_string(), "240.0.0.2".to_string()),
        ]
        .into();
        let protocols = [("backend".to_string(), Protocol::Http)].into();
        let policies = BTreeMap::new();
        let plain = dp(BASE);
        let input = ProxyInput {
            mesh: "m",
            name: "web",
            dataplane: &plain,
            mesh_spec: None,
            outbound_policies: &policies,
            inbound_policies: &[],
            dataplane_policies: DataplanePolicies::default(),
            protocols: &protocols,
            vips: &vips,
            sds_token: None,
        };
        assert!(
            !names(&generate(&input))
                .iter()
                .any(|n| n.contains("240.0.0"))
        );

        let tp = dp(&format!(
            "{BASE}  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n"
        ));
        let out = generate(&ProxyInput {
            dataplane: &tp,
            ..input
        });
        let n = names(&out);
        assert!(n.contains(&"outbound:240.0.0.1:80".to_string()), "{n:?}");
        assert!(n.contains(&"outbound:240.0.0.2:80".to_string()), "{n:?}");
        assert!(n.contains(&"backend".to_string()) && n.contains(&"redis".to_string()));
        let vip = out
            .resources
            .iter()
            .find(|r| r.name == "outbound:240.0.0.1:80")
            .unwrap();
        let l: envoy_types::pb::envoy::config::listener::v3::Listener =
            prost::Message::decode(vip.body.to_bytes()).unwrap();
        assert_eq!(l.bind_to_port.map(|b| b.value), Some(false));
        let filter = &l.filter_chains[0].filters[0];
        assert_eq!(filter.name, "envoy.filters.network.http_connection_manager");
    }

    #[test]
    fn split_targets_merge_and_default() {
        let t = route_targets("backend", None);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].cluster.name, "backend");
        let route = Resource::from_yaml(
            "type: TrafficRoute\nmesh: m\nname: r\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: backend\nconf:\n  split:\n  - weight: 90\n    destination:\n      kuma.io/service: backend\n      version: v1\n  - weight: 0\n    destination:\n      kuma.io/service: backend\n      version: v3\n  - weight: 10\n    destination:\n      kuma.io/service: backend\n      version: v2\n",
        )
        .unwrap();
        let spec = route.spec_as::<TrafficRouteSpec>().unwrap();
        let t = route_targets("backend", Some(spec));
        let got: Vec<(u32, &str)> = t
            .iter()
            .map(|t| (t.weight, t.cluster.name.as_str()))
            .collect();
        assert_eq!(
            got,
            [(90, "backend;version=v1"), (10, "backend;version=v2")]
        );
    }
}
