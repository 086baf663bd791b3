//! Turns store events into per-proxy snapshots, incrementally.
//!
//! One task owns the state of every mesh (Dataplanes, policies, endpoints
//! per service, the encoded endpoints of every cluster) and the set of
//! connected proxies. A store event recomputes only what it can affect:
//!
//! - a Dataplane change updates the endpoints of the services it carries
//!   (old and new), re-encodes those services' load assignments once, and
//!   swaps them into the snapshots of the proxies that use them; proxies
//!   whose listeners or clusters depend on the change (the Dataplane itself,
//!   or a service whose protocol changed) are regenerated;
//! - a policy or Mesh change regenerates the connected proxies of that mesh;
//! - anything else (insights, secrets...) is ignored.
//!
//! Snapshots are only built for connected proxies. Bursts of events are
//! drained and coalesced before any work is done.

use crate::cache::{NodeId, SnapshotCache};
use crate::generate::{
    self, BatchCache, ClusterRef, DataplanePolicies, Endpoint, InboundPolicies, Named,
    OutboundPolicies, Protocol, ProxyInput, ProxyResources, outbound_service,
};
use crate::resource::{Snapshot, XdsResource, XdsType};
use kuma_core::matching::PolicyIndex;
use kuma_core::resource::{
    ConfigSpec, DataplaneSpec, MeshSpec, Resource, ResourceKey, ResourceType, SERVICE_TAG, Spec,
};
use kuma_core::store::{ListRequest, ResourceStore, StoreError, StoreEvent};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Weak};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Below this many proxies per thread a batch is generated on one thread.
const PARALLEL_BATCH: usize = 64;

/// How many regenerated proxies are published at a time (see
/// `MeshState::regenerate`).
const PUBLISH_CHUNK: usize = 1024;

/// A proxy's stream opened or closed.
#[derive(Clone, PartialEq, Eq)]
pub enum ProxyEvent {
    /// A stream for this node started.
    Connected {
        /// The proxy.
        node: NodeId,
        /// The dataplane token the proxy presented on this stream, once the
        /// ADS server validated it; `None` when token checking is off. The
        /// reconciler keeps the latest one per proxy and puts it in that
        /// proxy's own SDS config sources (`ProxyInput::sds_token`), so it
        /// only ever goes back to the proxy that sent it. A secret: never
        /// logged (this type's `Debug` redacts it).
        token: Option<Arc<str>>,
    },
    /// A stream for this node ended.
    Disconnected(NodeId),
    /// The node acknowledged its listeners: its inbounds accept traffic,
    /// so its instances may be advertised to other proxies.
    Ready(NodeId),
}

impl std::fmt::Debug for ProxyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyEvent::Connected { node, token } => f
                .debug_struct("Connected")
                .field("node", node)
                .field("token", &token.as_ref().map(|_| "<redacted>"))
                .finish(),
            ProxyEvent::Disconnected(n) => f.debug_tuple("Disconnected").field(n).finish(),
            ProxyEvent::Ready(n) => f.debug_tuple("Ready").field(n).finish(),
        }
    }
}

#[derive(Default)]
struct ProxyState {
    streams: usize,
    /// The dataplane token of the latest stream (see
    /// [`ProxyEvent::Connected`]).
    token: Option<Arc<str>>,
    own: Vec<Arc<XdsResource>>,
    /// The proxy's EDS clusters, sorted.
    eds: Vec<Arc<ClusterRef>>,
}

impl std::fmt::Debug for ProxyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyState")
            .field("streams", &self.streams)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("own", &self.own.len())
            .field("eds", &self.eds)
            .finish()
    }
}

#[derive(Debug, Default)]
struct MeshState {
    dataplanes: BTreeMap<String, Arc<Resource>>,
    policies: BTreeMap<(ResourceType, String), Arc<Resource>>,
    /// service -> Dataplane name -> that Dataplane's instances of it.
    endpoints: BTreeMap<String, BTreeMap<String, Vec<Endpoint>>>,
    protocols: BTreeMap<String, Protocol>,
    load_assignments: HashMap<ClusterRef, Arc<XdsResource>>,
    /// What each Dataplane currently contributes to `endpoints`.
    published: HashMap<String, BTreeMap<String, Vec<Endpoint>>>,
    /// Dataplanes whose proxy connected but has not acknowledged its
    /// listeners yet: their instances are held back, so nobody is sent to
    /// an inbound port Envoy does not listen on yet.
    warming: BTreeSet<String>,
    /// The Mesh resource itself.
    mesh: Option<Arc<Resource>>,
    /// DNS VIP per service (from Config `kuma-<mesh>-dns-vips`).
    vips: BTreeMap<String, String>,
    proxies: BTreeMap<String, ProxyState>,
    /// service -> the connected proxies with an EDS cluster of it (the
    /// `eds` of `proxies`, inverted): who needs a service's new endpoints.
    consumers: HashMap<String, BTreeSet<String>>,
    /// The listeners and clusters of `proxies`, each stored once.
    interned: Interner,
    /// The EDS clusters of `proxies`, each stored once.
    cluster_refs: ClusterRefs,
}

/// Shares byte-identical resources between proxies.
///
/// Generation encodes every proxy's listeners and clusters afresh, but many
/// are identical across proxies: a service's cluster, the outbound
/// listeners of a service's instances (unless they carry the proxy's own
/// address, as access-log formats do). Interned, such a resource is stored
/// once and proxies hold an `Arc`. Entries are weak, so a resource lives
/// only as long as a snapshot uses it; one slot per content hash keeps an
/// entry at 16 bytes for the many resources that are never shared.
#[derive(Debug, Default)]
struct Interner {
    /// (type, content hash) -> the resource with that hash. On a hash
    /// collision (told apart by name and bytes) the second resource simply
    /// stays unshared.
    by_hash: HashMap<(XdsType, u64), Weak<XdsResource>, BuildHasherDefault<Prehashed>>,
    /// Entries after the last sweep.
    swept: usize,
}

impl Interner {
    /// The shared copy of `r`: an existing identical resource, or `r`
    /// itself, remembered for the next ones.
    fn intern(&mut self, r: Arc<XdsResource>) -> Arc<XdsResource> {
        let slot = self.by_hash.entry((r.xds_type, r.hash)).or_default();
        match slot.upgrade() {
            // Shared already (a cluster from the batch's cache).
            Some(s) if Arc::ptr_eq(&s, &r) => return s,
            Some(s) if s.name == r.name && s.body == r.body => return s,
            Some(_) => return r,
            None => *slot = Arc::downgrade(&r),
        }
        // Dead entries are dropped once they may make up half the map, so
        // sweeping costs O(1) amortised per insertion.
        if self.by_hash.len() > 2 * self.swept.max(1024) {
            self.by_hash.retain(|_, w| w.strong_count() > 0);
            self.swept = self.by_hash.len();
        }
        r
    }
}

/// A hasher for keys that are hashes already: it keeps the last `u64`
/// written (the content hash), mixed with the rest by xor.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// Shares the [`ClusterRef`]s of proxies (every proxy calling a service
/// names the same cluster), dropping those no proxy uses any more.
#[derive(Debug, Default)]
struct ClusterRefs {
    set: HashSet<Arc<ClusterRef>>,
    /// Entries after the last sweep.
    swept: usize,
}

impl ClusterRefs {
    fn share(&mut self, c: ClusterRef) -> Arc<ClusterRef> {
        if let Some(shared) = self.set.get(&c) {
            return shared.clone();
        }
        if self.set.len() > 2 * self.swept.max(64) {
            self.set.retain(|c| Arc::strong_count(c) > 1);
            self.swept = self.set.len();
        }
        let c = Arc::new(c);
        self.set.insert(c.clone());
        c
    }
}

/// The mesh whose DNS VIPs a Config resource holds, if it is such a Config.
fn vip_config_mesh(name: &str) -> Option<&str> {
    name.strip_prefix("kuma-")?
        .strip_suffix("-dns-vips")
        .filter(|m| !m.is_empty())
}

/// Reads the `service -> IP` JSON map of a VIP Config.
fn parse_vips(config: &Resource) -> BTreeMap<String, String> {
    config
        .spec_as::<ConfigSpec>()
        .and_then(|c| serde_json::from_str::<BTreeMap<String, String>>(&c.config).ok())
        .unwrap_or_default()
}

fn is_policy(ty: ResourceType) -> bool {
    kuma_core::matching::PolicyKind::of(ty).is_some()
}

/// The instances a Dataplane contributes, per service.
fn instances(dp: &Resource) -> BTreeMap<String, Vec<Endpoint>> {
    let mut out: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    let Some(spec) = dp.spec_as::<DataplaneSpec>() else {
        return out;
    };
    // Inbounds reported unhealthy (`health.ready: false`) take no traffic.
    for inbound in spec.networking.inbound.iter().filter(|i| i.is_ready()) {
        let Some(service) = inbound.tags.get(SERVICE_TAG) else {
            continue;
        };
        let address = inbound
            .address
            .clone()
            .unwrap_or_else(|| spec.networking.address.clone());
        out.entry(service.clone()).or_default().push(Endpoint {
            address,
            port: inbound.port,
            tags: inbound.tags.clone(),
        });
    }
    out
}

impl MeshState {
    /// Replaces one Dataplane (or removes it with `None`); returns the
    /// services whose instances changed.
    fn set_dataplane(&mut self, name: &str, dp: Option<Arc<Resource>>) -> BTreeSet<String> {
        match dp {
            Some(d) => self.dataplanes.insert(name.to_string(), d),
            None => self.dataplanes.remove(name),
        };
        self.refresh_endpoints(name)
    }

    /// Re-derives what a Dataplane contributes to `endpoints` (nothing while
    /// it is warming); returns the services whose instances changed.
    fn refresh_endpoints(&mut self, name: &str) -> BTreeSet<String> {
        let new_inst = match self.dataplanes.get(name) {
            Some(d) if !self.warming.contains(name) => instances(d),
            _ => BTreeMap::new(),
        };
        let old_inst = self.published.remove(name).unwrap_or_default();
        let mut changed = BTreeSet::new();
        for service in old_inst.keys().chain(new_inst.keys()) {
            if old_inst.get(service) == new_inst.get(service) {
                continue;
            }
            changed.insert(service.clone());
        }
        for service in &changed {
            let per_dp = self.endpoints.entry(service.clone()).or_default();
            match new_inst.get(service) {
                Some(list) => {
                    per_dp.insert(name.to_string(), list.clone());
                }
                None => {
                    per_dp.remove(name);
                }
            }
            let protocol = Protocol::common(per_dp.values().flatten().map(|e| &e.tags));
            if per_dp.is_empty() {
                self.endpoints.remove(service);
                self.protocols.remove(service);
            } else {
                self.protocols.insert(service.clone(), protocol);
            }
            self.load_assignments.retain(|c, _| &c.service != service);
        }
        if !new_inst.is_empty() {
            self.published.insert(name.to_string(), new_inst);
        }
        changed
    }

    fn load_assignment(&mut self, cluster: &ClusterRef) -> Arc<XdsResource> {
        if let Some(cla) = self.load_assignments.get(cluster) {
            return cla.clone();
        }
        let cla = generate::load_assignment_of(
            cluster,
            self.endpoints
                .get(&cluster.service)
                .into_iter()
                .flat_map(|per_dp| per_dp.values().flatten()),
        );
        self.load_assignments.insert(cluster.clone(), cla.clone());
        cla
    }

    /// Sets the EDS clusters of a connected proxy, keeping `consumers` in
    /// step.
    fn set_eds(&mut self, name: &str, eds: BTreeSet<ClusterRef>) {
        let Some(p) = self.proxies.get(name) else {
            return;
        };
        // The usual case of a policy change: the proxy calls the same
        // clusters as before, and nothing is to be done.
        if p.eds.len() == eds.len() && p.eds.iter().zip(&eds).all(|(old, new)| **old == *new) {
            return;
        }
        let eds: Vec<Arc<ClusterRef>> = eds
            .into_iter()
            .map(|c| self.cluster_refs.share(c))
            .collect();
        let Some(p) = self.proxies.get_mut(name) else {
            return;
        };
        let old = std::mem::replace(&mut p.eds, eds);
        for service in old.iter().map(|c| &c.service) {
            if let Some(set) = self.consumers.get_mut(service) {
                set.remove(name);
                if set.is_empty() {
                    self.consumers.remove(service);
                }
            }
        }
        for service in p.eds.iter().map(|c| &c.service) {
            if let Some(set) = self.consumers.get_mut(service) {
                if !set.contains(name) {
                    set.insert(name.to_string());
                }
            } else {
                self.consumers
                    .insert(service.clone(), BTreeSet::from([name.to_string()]));
            }
        }
    }

    /// Forgets a proxy whose streams are all gone.
    fn remove_proxy(&mut self, name: &str) {
        self.set_eds(name, BTreeSet::new());
        self.proxies.remove(name);
    }

    /// Regenerates the listeners and clusters of the named proxies and
    /// hands each one's new snapshot to `publish`, a chunk of
    /// [`PUBLISH_CHUNK`] proxies at a time: under a mesh-wide change the
    /// first proxies get their config while the rest is still being
    /// generated, and the snapshots they replace are freed as it goes
    /// instead of all living twice at the end.
    fn regenerate(
        &mut self,
        mesh: &str,
        names: &[String],
        mut publish: impl FnMut(&str, Snapshot),
    ) {
        let policies: Vec<Arc<Resource>> = self.policies.values().cloned().collect();
        let index = PolicyIndex::new(policies.iter());
        // Copies, so the chunks' results can be stored while generation
        // reads them.
        let (mesh_resource, protocols, vips) =
            (self.mesh.clone(), self.protocols.clone(), self.vips.clone());
        let view = MeshView {
            name: mesh,
            spec: mesh_resource
                .as_deref()
                .and_then(|m| m.spec_as::<MeshSpec>()),
            protocols: &protocols,
            vips: &vips,
        };
        // Generation is pure and CPU-bound: a large batch (a mesh-wide
        // policy change) is spread over the machine's cores. Each worker
        // keeps its `BatchCache` over the chunks.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut caches: Vec<BatchCache<'_>> = (0..cores.min(names.len() / PARALLEL_BATCH).max(1))
            .map(|_| BatchCache::for_index(&index))
            .collect();
        for names in names.chunks(PUBLISH_CHUNK) {
            let jobs: Vec<Job<'_>> = names
                .iter()
                .map(|n| {
                    let token = self.proxies.get(n).and_then(|p| p.token.clone());
                    (n, self.dataplanes.get(n).cloned(), token)
                })
                .collect();
            let threads = caches.len().min(jobs.len() / PARALLEL_BATCH).max(1);
            let outputs: Vec<Option<ProxyResources>> = if threads == 1 {
                generate_part(&index, &view, &mut caches[0], &jobs)
            } else {
                let part = jobs.len().div_ceil(threads);
                std::thread::scope(|scope| {
                    let handles: Vec<_> = caches
                        .iter_mut()
                        .zip(jobs.chunks(part))
                        .map(|(cache, part)| {
                            let (index, view) = (&index, &view);
                            scope.spawn(move || generate_part(index, view, cache, part))
                        })
                        .collect();
                    handles
                        .into_iter()
                        .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                        .collect()
                })
            };
            for ((name, dp, _), out) in jobs.iter().zip(outputs) {
                match (dp, out) {
                    (None, _) => {
                        if let Some(p) = self.proxies.get_mut(*name) {
                            p.own.clear();
                        }
                        self.set_eds(name, BTreeSet::new());
                    }
                    (Some(_), Some(out)) => {
                        let own: Vec<Arc<XdsResource>> = out
                            .resources
                            .into_iter()
                            .map(|r| self.interned.intern(r))
                            .collect();
                        if let Some(p) = self.proxies.get_mut(*name) {
                            p.own = own;
                        }
                        self.set_eds(name, out.eds_clusters);
                    }
                    (Some(_), None) => {}
                }
            }
            for name in names {
                if let Some(snapshot) = self.snapshot(name) {
                    publish(name, snapshot);
                }
            }
        }
    }

    fn snapshot(&mut self, name: &str) -> Option<Snapshot> {
        let (own, eds) = {
            let p = self.proxies.get(name)?;
            (p.own.clone(), p.eds.clone())
        };
        let mut resources = own;
        for c in &eds {
            resources.push(self.load_assignment(c));
        }
        Some(Snapshot::new(resources))
    }
}

/// A proxy to regenerate: its name, Dataplane (if it still exists) and
/// dataplane token.
type Job<'a> = (&'a String, Option<Arc<Resource>>, Option<Arc<str>>);

/// Generates the proxies of `jobs` in order, sharing through `shared`.
fn generate_part<'p>(
    index: &PolicyIndex<'p, Arc<Resource>>,
    view: &MeshView<'_>,
    shared: &mut BatchCache<'p>,
    jobs: &[Job<'_>],
) -> Vec<Option<ProxyResources>> {
    jobs.iter()
        .map(|(name, dp, token)| {
            let spec = dp.as_deref()?.spec_as::<DataplaneSpec>()?;
            Some(generate_proxy(
                index,
                view,
                name,
                spec,
                token.as_deref(),
                Some(shared),
            ))
        })
        .collect()
}

/// What generating a proxy needs to know of its mesh besides the policies.
#[derive(Debug, Clone, Copy)]
pub struct MeshView<'a> {
    /// The mesh's name.
    pub name: &'a str,
    /// The Mesh resource's spec (mTLS, logging and tracing backends), if
    /// known.
    pub spec: Option<&'a MeshSpec>,
    /// The protocol of every service of the mesh.
    pub protocols: &'a BTreeMap<String, Protocol>,
    /// The DNS VIP of every service of the mesh.
    pub vips: &'a BTreeMap<String, String>,
}

/// Matches the policies of `index` against one Dataplane and generates its
/// listeners and clusters: what the reconciler does for every proxy it
/// regenerates (`index` is built once per batch). `sds_token` is the
/// proxy's dataplane token ([`ProxyInput::sds_token`]). Service clusters
/// already generated for another proxy of the batch are taken from
/// `shared` (made for the same `index`), and those generated here are
/// added to it.
pub fn generate_proxy<'p>(
    index: &PolicyIndex<'p, Arc<Resource>>,
    mesh: &MeshView<'_>,
    name: &str,
    spec: &DataplaneSpec,
    sds_token: Option<&str>,
    shared: Option<&mut BatchCache<'p>>,
) -> ProxyResources {
    let vips = mesh.vips;
    let mut services: BTreeSet<&str> = spec
        .networking
        .outbound
        .iter()
        .filter_map(outbound_service)
        .collect();
    if spec.networking.transparent_proxying.is_some() {
        services.extend(vips.keys().map(String::as_str));
    }
    let matched = index.match_dataplane_with_services(spec, services.iter().copied());
    let mut outbound_policies = BTreeMap::new();
    for service in services {
        fn pick<'a, S: Spec>(
            map: &kuma_core::matching::OutboundPolicyMap<'a, Arc<Resource>>,
            service: &str,
        ) -> Option<&'a S> {
            map.get(service).and_then(|r| r.spec_as::<S>())
        }
        outbound_policies.insert(
            service.to_string(),
            OutboundPolicies {
                route: pick(&matched.traffic_routes, service),
                health_check: pick(&matched.health_checks, service),
                circuit_breaker: pick(&matched.circuit_breakers, service),
                retry: pick(&matched.retries, service),
                timeout: pick(&matched.timeouts, service),
                traffic_log: pick(&matched.traffic_logs, service),
            },
        );
    }
    let inbound_policies: Vec<InboundPolicies> = (0..spec.networking.inbound.len())
        .map(|i| InboundPolicies {
            traffic_permission: matched
                .traffic_permissions
                .get(i)
                .copied()
                .flatten()
                .and_then(|r| {
                    Some(Named {
                        name: &r.meta.name,
                        spec: r.spec_as()?,
                    })
                }),
            fault_injection: matched
                .fault_injections
                .get(i)
                .copied()
                .flatten()
                .and_then(|r| r.spec_as()),
        })
        .collect();
    let dataplane_policies = DataplanePolicies {
        traffic_trace: matched.traffic_trace.and_then(|r| r.spec_as()),
        proxy_template: matched.proxy_template.and_then(|r| r.spec_as()),
    };
    let input = ProxyInput {
        mesh: mesh.name,
        name,
        dataplane: spec,
        mesh_spec: mesh.spec,
        outbound_policies: &outbound_policies,
        inbound_policies: &inbound_policies,
        dataplane_policies,
        protocols: mesh.protocols,
        vips,
        sds_token,
    };
    generate::generate_shared(&input, shared)
}

/// What a batch of events asks for, per mesh.
#[derive(Debug, Default)]
struct Work {
    dataplanes: BTreeSet<(String, String)>,
    full_meshes: BTreeSet<String>,
    vip_meshes: BTreeSet<String>,
    connects: Vec<(NodeId, Option<Arc<str>>)>,
    disconnects: Vec<NodeId>,
    ready: Vec<NodeId>,
    resync: bool,
}

impl Work {
    fn add_store_event(&mut self, e: &StoreEvent) {
        let ty = e.key.resource_type;
        let Some(mesh) = e.key.mesh.clone() else {
            if ty == ResourceType::Mesh {
                self.full_meshes.insert(e.key.name.clone());
            } else if ty == ResourceType::Config
                && let Some(mesh) = vip_config_mesh(&e.key.name)
            {
                self.vip_meshes.insert(mesh.to_string());
            }
            return;
        };
        if ty == ResourceType::Dataplane {
            self.dataplanes.insert((mesh, e.key.name.clone()));
        } else if is_policy(ty) {
            self.full_meshes.insert(mesh);
        }
    }

    fn add_proxy_event(&mut self, e: ProxyEvent) {
        match e {
            ProxyEvent::Connected { node, token } => self.connects.push((node, token)),
            ProxyEvent::Disconnected(n) => self.disconnects.push(n),
            ProxyEvent::Ready(n) => self.ready.push(n),
        }
    }

    fn is_empty(&self) -> bool {
        self.dataplanes.is_empty()
            && self.full_meshes.is_empty()
            && self.vip_meshes.is_empty()
            && self.connects.is_empty()
            && self.disconnects.is_empty()
            && self.ready.is_empty()
            && !self.resync
    }
}

/// Builds snapshots for connected proxies from store events.
pub struct Reconciler {
    store: Arc<dyn ResourceStore>,
    cache: Arc<SnapshotCache>,
    meshes: HashMap<String, MeshState>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("meshes", &self.meshes.len())
            .finish_non_exhaustive()
    }
}

impl Reconciler {
    /// A reconciler publishing into `cache`.
    pub fn new(store: Arc<dyn ResourceStore>, cache: Arc<SnapshotCache>) -> Self {
        Self {
            store,
            cache,
            meshes: HashMap::new(),
        }
    }

    /// Runs until the store's event stream or the proxy channel closes.
    pub async fn run(mut self, mut proxies: mpsc::Receiver<ProxyEvent>) {
        // A forwarder drains the store's broadcast channel all the time and
        // passes on only what can change a snapshot. Busy regenerating a
        // mesh, the reconciler therefore never lags behind the stream of
        // events it does not care about (DataplaneInsight writes of every
        // connected proxy, secrets...), which would force a full resync.
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let forwarder = tokio::spawn(forward_relevant(self.store.subscribe(), events_tx));
        let mut work = Work {
            resync: true,
            ..Work::default()
        };
        loop {
            if !work.is_empty() {
                self.process(std::mem::take(&mut work)).await;
            }
            tokio::select! {
                e = events.recv() => match e {
                    Some(Some(e)) => work.add_store_event(&e),
                    Some(None) => work.resync = true,
                    None => break,
                },
                p = proxies.recv() => match p {
                    Some(p) => work.add_proxy_event(p),
                    None => break,
                },
            }
            // Coalesce whatever else is already queued.
            while let Ok(e) = events.try_recv() {
                match e {
                    Some(e) => work.add_store_event(&e),
                    None => work.resync = true,
                }
            }
            while let Ok(p) = proxies.try_recv() {
                work.add_proxy_event(p);
            }
        }
        forwarder.abort();
    }

    /// Reloads everything from the store and publishes the snapshots of the
    /// connected proxies: what [`Reconciler::run`] does first (and after
    /// its event stream lagged). For benchmarks and tests that drive the
    /// reconciler without [`Reconciler::run`].
    pub async fn reload(&mut self) {
        self.process(Work {
            resync: true,
            ..Work::default()
        })
        .await;
    }

    /// Handles one batch of store and proxy events, as [`Reconciler::run`]
    /// handles the events it found queued together, and returns once the
    /// resulting snapshots are published to the cache. For benchmarks and
    /// tests that drive the reconciler without [`Reconciler::run`].
    pub async fn apply(
        &mut self,
        store_events: impl IntoIterator<Item = &StoreEvent>,
        proxy_events: impl IntoIterator<Item = ProxyEvent>,
    ) {
        let mut work = Work::default();
        for e in store_events {
            work.add_store_event(e);
        }
        for p in proxy_events {
            work.add_proxy_event(p);
        }
        if !work.is_empty() {
            self.process(work).await;
        }
    }

    async fn list(&self, ty: ResourceType) -> Vec<Arc<Resource>> {
        match self.store.list(&ListRequest::all(ty)).await {
            Ok(page) => page.items,
            Err(e) => {
                warn!(%ty, error = %e, "listing failed");
                Vec::new()
            }
        }
    }

    /// Reloads every Dataplane and policy, keeping connected proxies.
    async fn resync(&mut self) {
        let connected: Vec<(String, String, usize, Option<Arc<str>>)> = self
            .meshes
            .iter()
            .flat_map(|(m, s)| {
                s.proxies
                    .iter()
                    .map(move |(n, p)| (m.clone(), n.clone(), p.streams, p.token.clone()))
            })
            .collect();
        self.meshes.clear();
        for (mesh, name, streams, token) in connected {
            self.meshes.entry(mesh).or_default().proxies.insert(
                name,
                ProxyState {
                    streams,
                    token,
                    ..Default::default()
                },
            );
        }
        for dp in self.list(ResourceType::Dataplane).await {
            let mesh = dp.meta.mesh.clone().unwrap_or_default();
            let name = dp.meta.name.clone();
            self.meshes
                .entry(mesh)
                .or_default()
                .set_dataplane(&name, Some(dp));
        }
        for mesh in self.list(ResourceType::Mesh).await {
            let name = mesh.meta.name.clone();
            self.meshes.entry(name).or_default().mesh = Some(mesh);
        }
        for config in self.list(ResourceType::Config).await {
            if let Some(mesh) = vip_config_mesh(&config.meta.name) {
                self.meshes.entry(mesh.to_string()).or_default().vips = parse_vips(&config);
            }
        }
        for ty in ResourceType::ALL.iter().copied().filter(|t| is_policy(*t)) {
            for p in self.list(ty).await {
                let mesh = p.meta.mesh.clone().unwrap_or_default();
                self.meshes
                    .entry(mesh)
                    .or_default()
                    .policies
                    .insert((ty, p.meta.name.clone()), p);
            }
        }
    }

    async fn get(&self, key: &ResourceKey) -> Option<Arc<Resource>> {
        match self.store.get(key).await {
            Ok(r) => Some(r),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => {
                warn!(%key, error = %e, "reading failed");
                None
            }
        }
    }

    async fn reload_policies(&mut self, mesh: &str) {
        let mut policies = BTreeMap::new();
        for ty in ResourceType::ALL.iter().copied().filter(|t| is_policy(*t)) {
            let items = match self.store.list(&ListRequest::in_mesh(ty, mesh)).await {
                Ok(p) => p.items,
                Err(e) => {
                    warn!(%ty, mesh, error = %e, "listing failed");
                    continue;
                }
            };
            for p in items {
                policies.insert((ty, p.meta.name.clone()), p);
            }
        }
        let mesh_resource = self
            .get(&ResourceKey::new(ResourceType::Mesh, None, mesh))
            .await;
        let state = self.meshes.entry(mesh.to_string()).or_default();
        state.policies = policies;
        state.mesh = mesh_resource;
    }

    async fn process(&mut self, work: Work) {
        // Per mesh: proxies to regenerate, and proxies needing fresh endpoints.
        let mut regen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut eds_only: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

        if work.resync {
            self.resync().await;
            for (mesh, state) in &self.meshes {
                regen
                    .entry(mesh.clone())
                    .or_default()
                    .extend(state.proxies.keys().cloned());
            }
        }
        for (node, token) in &work.connects {
            let dp = self
                .get(&ResourceKey::new(
                    ResourceType::Dataplane,
                    Some(&node.mesh),
                    &node.name,
                ))
                .await;
            let state = self.meshes.entry(node.mesh.clone()).or_default();
            let proxy = state.proxies.entry(node.name.clone()).or_default();
            if proxy.streams == 0 {
                state.warming.insert(node.name.clone());
            }
            proxy.streams += 1;
            // The latest stream's token: the one the proxy uses now.
            proxy.token = token.clone();
            let changed = state.set_dataplane(&node.name, dp);
            if !changed.is_empty() {
                mark_consumers(state, &node.mesh, &changed, &mut eds_only);
            }
            regen
                .entry(node.mesh.clone())
                .or_default()
                .insert(node.name.clone());
        }
        for node in &work.disconnects {
            if let Some(state) = self.meshes.get_mut(&node.mesh)
                && let Some(p) = state.proxies.get_mut(&node.name)
            {
                p.streams = p.streams.saturating_sub(1);
                if p.streams == 0 {
                    state.remove_proxy(&node.name);
                    self.cache.remove(node);
                    debug!(node = %node, "proxy gone");
                    if state.warming.remove(&node.name) {
                        let changed = state.refresh_endpoints(&node.name);
                        mark_consumers(state, &node.mesh, &changed, &mut eds_only);
                    }
                }
            }
        }
        for node in &work.ready {
            if let Some(state) = self.meshes.get_mut(&node.mesh)
                && state.warming.remove(&node.name)
            {
                let old_protocols = state.protocols.clone();
                let changed = state.refresh_endpoints(&node.name);
                mark_consumers(state, &node.mesh, &changed, &mut eds_only);
                let protocol_changed: BTreeSet<String> = changed
                    .iter()
                    .filter(|s| old_protocols.get(*s) != state.protocols.get(*s))
                    .cloned()
                    .collect();
                mark_consumers(state, &node.mesh, &protocol_changed, &mut regen);
                debug!(node = %node, "proxy ready: its instances are advertised");
            }
        }
        for mesh in &work.full_meshes {
            self.reload_policies(mesh).await;
            let state = self.meshes.entry(mesh.clone()).or_default();
            regen
                .entry(mesh.clone())
                .or_default()
                .extend(state.proxies.keys().cloned());
        }
        for mesh in &work.vip_meshes {
            let key =
                ResourceKey::new(ResourceType::Config, None, &format!("kuma-{mesh}-dns-vips"));
            let vips = self
                .get(&key)
                .await
                .map(|c| parse_vips(&c))
                .unwrap_or_default();
            let state = self.meshes.entry(mesh.clone()).or_default();
            if state.vips != vips {
                state.vips = vips;
                let transparent: Vec<String> = state
                    .proxies
                    .keys()
                    .filter(|n| {
                        state
                            .dataplanes
                            .get(*n)
                            .and_then(|d| d.spec_as::<DataplaneSpec>())
                            .is_some_and(|d| d.networking.transparent_proxying.is_some())
                    })
                    .cloned()
                    .collect();
                regen.entry(mesh.clone()).or_default().extend(transparent);
            }
        }
        for (mesh, name) in &work.dataplanes {
            let dp = self
                .get(&ResourceKey::new(ResourceType::Dataplane, Some(mesh), name))
                .await;
            let state = self.meshes.entry(mesh.clone()).or_default();
            let old_protocols = state.protocols.clone();
            let changed = state.set_dataplane(name, dp);
            if state.proxies.contains_key(name) {
                regen.entry(mesh.clone()).or_default().insert(name.clone());
            }
            if changed.is_empty() {
                continue;
            }
            let protocol_changed: BTreeSet<String> = changed
                .iter()
                .filter(|s| old_protocols.get(*s) != state.protocols.get(*s))
                .cloned()
                .collect();
            mark_consumers(state, mesh, &changed, &mut eds_only);
            if !protocol_changed.is_empty() {
                mark_consumers(state, mesh, &protocol_changed, &mut regen);
            }
        }

        for (mesh, names) in &regen {
            if let Some(state) = self.meshes.get_mut(mesh) {
                let names: Vec<String> = names.iter().cloned().collect();
                let cache = &self.cache;
                state.regenerate(mesh, &names, |name, snapshot| {
                    let node = NodeId {
                        mesh: mesh.clone(),
                        name: name.to_string(),
                    };
                    cache.set(&node, snapshot);
                });
            }
        }
        // The regenerated proxies are published; the others need their
        // new endpoints.
        for (mesh, names) in eds_only {
            let Some(state) = self.meshes.get_mut(&mesh) else {
                continue;
            };
            let done = regen.get(&mesh);
            for name in names {
                if done.is_some_and(|d| d.contains(&name)) {
                    continue;
                }
                if let Some(snapshot) = state.snapshot(&name) {
                    let node = NodeId {
                        mesh: mesh.clone(),
                        name,
                    };
                    self.cache.set(&node, snapshot);
                }
            }
        }
    }
}

/// Adds the connected proxies using any of `services` to `into`.
fn mark_consumers(
    state: &MeshState,
    mesh: &str,
    services: &BTreeSet<String>,
    into: &mut BTreeMap<String, BTreeSet<String>>,
) {
    for service in services {
        if let Some(names) = state.consumers.get(service) {
            into.entry(mesh.to_string())
                .or_default()
                .extend(names.iter().cloned());
        }
    }
}

/// Whether a store event can change a snapshot.
fn is_relevant(e: &StoreEvent) -> bool {
    let ty = e.key.resource_type;
    matches!(
        ty,
        ResourceType::Dataplane | ResourceType::Mesh | ResourceType::Config
    ) || is_policy(ty)
}

/// Forwards relevant store events (`Some`), and `None` when the broadcast
/// receiver lagged and the reconciler must resync.
async fn forward_relevant(
    mut events: tokio::sync::broadcast::Receiver<StoreEvent>,
    tx: mpsc::UnboundedSender<Option<StoreEvent>>,
) {
    loop {
        let sent = match events.recv().await {
            Ok(e) if is_relevant(&e) => tx.send(Some(e)),
            Ok(_) => Ok(()),
            Err(RecvError::Lagged(n)) => {
                warn!(missed = n, "store events lagged; resyncing");
                tx.send(None)
            }
            Err(RecvError::Closed) => return,
        };
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
    use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac;
    use kuma_core::manager::ResourceManager;
    use kuma_core::store::{EventKind, MemoryStore};
    use prost::Message;

    const MTLS_MESH: &str = "type: Mesh\nname: m\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n";
    const DP: &str = "type: Dataplane\nmesh: m\nname: backend-1\nnetworking:\n  address: 10.0.0.2\n  inbound:\n  - port: 8080\n    servicePort: 8081\n    tags:\n      kuma.io/service: backend\n";
    const LISTENER: &str = "inbound:10.0.0.2:8080";

    fn resource(yaml: &str) -> Resource {
        Resource::from_yaml(yaml).unwrap()
    }

    fn updated(r: &Resource) -> StoreEvent {
        StoreEvent {
            kind: EventKind::Updated,
            key: r.key(),
        }
    }

    fn node() -> NodeId {
        NodeId {
            mesh: "m".into(),
            name: "backend-1".into(),
        }
    }

    fn inbound(cache: &SnapshotCache) -> Listener {
        let snapshot = cache.get(&node()).expect("a snapshot");
        let r = &snapshot.resources(crate::resource::XdsType::Listener)[LISTENER];
        Listener::decode(r.body.to_bytes()).unwrap()
    }

    /// The RBAC policy names of the inbound's first filter, or `None`
    /// without an RBAC filter.
    fn rbac_policies(l: &Listener) -> Option<Vec<String>> {
        let f = &l.filter_chains[0].filters[0];
        if f.name != generate::names::NETWORK_RBAC {
            return None;
        }
        let Some(FilterConfig::TypedConfig(any)) = &f.config_type else {
            panic!("untyped RBAC filter");
        };
        let rbac = Rbac::decode(any.value.as_slice()).unwrap();
        let mut names: Vec<String> = rbac.rules.unwrap().policies.into_keys().collect();
        names.sort();
        Some(names)
    }

    #[tokio::test]
    async fn mesh_and_permission_changes_regenerate_with_the_proxy_token() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        let manager = ResourceManager::new(store.clone());
        let plain_mesh = resource("type: Mesh\nname: m\n");
        manager.upsert(plain_mesh.clone()).await.unwrap();
        manager.upsert(resource(DP)).await.unwrap();
        let cache = Arc::new(SnapshotCache::new());
        let mut r = Reconciler::new(store.clone(), cache.clone());
        r.reload().await;
        let token: Arc<str> = Arc::from("the-token");
        r.apply(
            [],
            [ProxyEvent::Connected {
                node: node(),
                token: Some(token.clone()),
            }],
        )
        .await;
        // mTLS off: no TLS, no RBAC, and the token appears nowhere.
        let l = inbound(&cache);
        assert!(l.filter_chains[0].transport_socket.is_none());
        assert_eq!(rbac_policies(&l), None);

        // The Mesh turns mTLS on: TLS and the default allow-all RBAC, SDS
        // sources carrying the token.
        let mtls_mesh = resource(MTLS_MESH);
        manager.upsert(mtls_mesh.clone()).await.unwrap();
        r.apply([&updated(&mtls_mesh)], []).await;
        let l = inbound(&cache);
        assert!(l.filter_chains[0].transport_socket.is_some());
        assert_eq!(rbac_policies(&l), Some(vec!["allow-all-m".to_string()]));
        let bytes = l.encode_to_vec();
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"authorization") && has(b"the-token"));

        // A more specific permission replaces allow-all for the inbound.
        let tp = resource(
            "type: TrafficPermission\nmesh: m\nname: web-only\nsources:\n- match:\n    kuma.io/service: web\ndestinations:\n- match:\n    kuma.io/service: backend\n",
        );
        manager.upsert(tp.clone()).await.unwrap();
        r.apply([&updated(&tp)], []).await;
        assert_eq!(
            rbac_policies(&inbound(&cache)),
            Some(vec!["web-only".to_string()])
        );

        // No permission left: deny all.
        let mut events = Vec::new();
        for name in ["web-only", "allow-all-m"] {
            let key = ResourceKey::new(ResourceType::TrafficPermission, Some("m"), name);
            manager.delete(&key).await.unwrap();
            events.push(StoreEvent {
                kind: EventKind::Deleted,
                key,
            });
        }
        r.apply(&events, []).await;
        assert_eq!(rbac_policies(&inbound(&cache)), Some(vec![]));

        // A resync keeps the proxy's token.
        r.reload().await;
        let bytes = inbound(&cache).encode_to_vec();
        assert!(bytes.windows(9).any(|w| w == b"the-token"));

        // mTLS off again: back to plain.
        manager.upsert(plain_mesh.clone()).await.unwrap();
        r.apply([&updated(&plain_mesh)], []).await;
        let l = inbound(&cache);
        assert!(l.filter_chains[0].transport_socket.is_none());
        assert_eq!(rbac_policies(&l), None);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let e = ProxyEvent::Connected {
            node: node(),
            token: Some(Arc::from("secret-token")),
        };
        let text = format!("{e:?}");
        assert!(
            !text.contains("secret-token") && text.contains("<redacted>"),
            "{text}"
        );
        let p = ProxyState {
            token: Some(Arc::from("secret-token")),
            ..Default::default()
        };
        assert!(!format!("{p:?}").contains("secret-token"));
    }
}
