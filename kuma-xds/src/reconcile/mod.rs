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
//!
//! The path of a change through this module (see docs/architecture.md,
//! "Reconciler and generator"): the store's [`Subscription`] (the
//! [`relevant_types`], filtered at the store) and the [`ProxyEvent`]s
//! become a batch of work; [`Reconciler`] reads what changed from the store
//! into each mesh's state (`mesh_state.rs`); the proxies to regenerate
//! go through [`crate::generate::generate_proxy`] (matcher to generator)
//! on a blocking thread, never on an async worker, and their snapshots are
//! published to the [`SnapshotCache`].

mod intern;
mod mesh_state;
#[cfg(test)]
mod tests;

use crate::cache::{NodeId, SnapshotCache};
use kuma_core::resource::{
    ConfigSpec, DataplaneSpec, MeshVips, Resource, ResourceKey, ResourceType,
};
use kuma_core::store::{Event, ListRequest, ResourceStore, StoreError, StoreEvent, Subscription};
use mesh_state::{MeshState, ProxyState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{debug, warn};

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
        /// The proxy reconnected holding configuration from an earlier
        /// stream ([`crate::stream::Client::resumed`]): its listeners are up,
        /// so its instances are advertised at once. A proxy that just
        /// started is warming instead until it acknowledges its listeners
        /// ([`ProxyEvent::Ready`]).
        resumed: bool,
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
            ProxyEvent::Connected {
                node,
                token,
                resumed,
            } => f
                .debug_struct("Connected")
                .field("node", node)
                .field("token", &token.as_ref().map(|_| "<redacted>"))
                .field("resumed", resumed)
                .finish(),
            ProxyEvent::Disconnected(n) => f.debug_tuple("Disconnected").field(n).finish(),
            ProxyEvent::Ready(n) => f.debug_tuple("Ready").field(n).finish(),
        }
    }
}

/// Whether changes of this type can change a snapshot: Dataplanes, the
/// Mesh, Configs (the DNS VIPs) and policies. The reconciler subscribes to
/// these only.
pub fn is_relevant(ty: ResourceType) -> bool {
    matches!(
        ty,
        ResourceType::Dataplane | ResourceType::Mesh | ResourceType::Config
    ) || ty.is_policy()
}

/// The types whose changes the reconciler follows ([`is_relevant`]).
pub fn relevant_types() -> Vec<ResourceType> {
    ResourceType::ALL
        .iter()
        .copied()
        .filter(|t| is_relevant(*t))
        .collect()
}

/// The DNS VIPs a Config holds (see [`ConfigSpec::dns_vips`]); none, with
/// a warning, when its map is broken.
fn vips_of(config: &Resource) -> MeshVips {
    let Some(spec) = config.spec_as::<ConfigSpec>() else {
        return MeshVips::new();
    };
    spec.dns_vips().unwrap_or_else(|e| {
        warn!(config = %config.meta.name, error = %e, "ignoring a broken DNS VIP map");
        MeshVips::new()
    })
}

/// What a batch of events asks for, per mesh.
#[derive(Debug, Default)]
struct Work {
    dataplanes: BTreeSet<(String, String)>,
    full_meshes: BTreeSet<String>,
    vip_meshes: BTreeSet<String>,
    /// Streams that started: the node, its token, whether it resumed.
    connects: Vec<(NodeId, Option<Arc<str>>, bool)>,
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
                && let Some(mesh) = ConfigSpec::dns_vips_mesh(&e.key.name)
            {
                self.vip_meshes.insert(mesh.to_string());
            }
            return;
        };
        if ty == ResourceType::Dataplane {
            self.dataplanes.insert((mesh, e.key.name.clone()));
        } else if ty.is_policy() {
            self.full_meshes.insert(mesh);
        }
    }

    /// Adds one subscription item: a change, or a resync.
    fn add_item(&mut self, item: Event, dropped: u64) {
        match item {
            Event::Changed(e) => self.add_store_event(&e),
            Event::Resync => {
                if dropped > 0 {
                    warn!(dropped, "store events overflowed; resyncing");
                }
                self.resync = true;
            }
        }
    }

    fn add_proxy_event(&mut self, e: ProxyEvent) {
        match e {
            ProxyEvent::Connected {
                node,
                token,
                resumed,
            } => self.connects.push((node, token, resumed)),
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
    ///
    /// Subscribes to the [`relevant_types`] only, so the stream of changes
    /// it does not care about (the DataplaneInsight writes of every
    /// connected proxy, secrets...) never fills its queue while it is busy
    /// regenerating; the subscription's first item, and any later overflow
    /// of its queue, is a resync.
    pub async fn run(mut self, mut proxies: mpsc::Receiver<ProxyEvent>) {
        let mut events: Subscription = self.store.subscribe(&relevant_types());
        let mut work = Work::default();
        loop {
            if !work.is_empty() {
                self.process(std::mem::take(&mut work)).await;
            }
            tokio::select! {
                e = events.next() => match e {
                    Some(e) => work.add_item(e, events.dropped()),
                    None => break,
                },
                p = proxies.recv() => match p {
                    Some(p) => work.add_proxy_event(p),
                    None => break,
                },
            }
            // Coalesce whatever else is already queued.
            while let Some(e) = events.try_next() {
                work.add_item(e, events.dropped());
            }
            while let Ok(p) = proxies.try_recv() {
                work.add_proxy_event(p);
            }
        }
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
            self.meshes
                .entry(mesh)
                .or_default()
                .proxies
                .insert(name, ProxyState::new(streams, token));
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
            if let Some(mesh) = ConfigSpec::dns_vips_mesh(&config.meta.name) {
                self.meshes.entry(mesh.to_string()).or_default().vips = vips_of(&config);
            }
        }
        for ty in ResourceType::POLICIES {
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
        for ty in ResourceType::POLICIES {
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
        for (node, token, resumed) in &work.connects {
            let dp = self
                .get(&ResourceKey::new(
                    ResourceType::Dataplane,
                    Some(&node.mesh),
                    &node.name,
                ))
                .await;
            let state = self.meshes.entry(node.mesh.clone()).or_default();
            let proxy = state.proxies.entry(node.name.clone()).or_default();
            if proxy.streams == 0 && !resumed {
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
                ResourceKey::new(ResourceType::Config, None, &ConfigSpec::dns_vips_name(mesh));
            let vips = self
                .get(&key)
                .await
                .map(|c| vips_of(&c))
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

        if regen.is_empty() && eds_only.is_empty() {
            return;
        }
        // Generation is CPU work (spread over every core for a large
        // batch): it runs on a blocking thread, never on an async worker,
        // with the mesh states moved there and back.
        let mut meshes = std::mem::take(&mut self.meshes);
        let cache = self.cache.clone();
        let done = tokio::task::spawn_blocking(move || {
            publish(&mut meshes, &cache, &regen, eds_only);
            meshes
        })
        .await;
        match done {
            Ok(meshes) => self.meshes = meshes,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Only when the runtime shuts down, and the reconciler
                // with it: the state is gone, and a new run resyncs.
                Err(e) => warn!(error = %e, "regeneration cancelled"),
            },
        }
    }
}

/// Regenerates the proxies of `regen` and publishes their snapshots, then
/// publishes those of `eds_only` (whose endpoints changed) that were not
/// regenerated. Blocking: CPU work, run off the async runtime.
fn publish(
    meshes: &mut HashMap<String, MeshState>,
    cache: &SnapshotCache,
    regen: &BTreeMap<String, BTreeSet<String>>,
    eds_only: BTreeMap<String, BTreeSet<String>>,
) {
    for (mesh, names) in regen {
        if let Some(state) = meshes.get_mut(mesh) {
            let names: Vec<String> = names.iter().cloned().collect();
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
        let Some(state) = meshes.get_mut(&mesh) else {
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
                cache.set(&node, snapshot);
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
