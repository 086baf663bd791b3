//! The state of one mesh: its Dataplanes, policies, endpoints per service
//! and connected proxies, and the regeneration of those proxies.
//!
//! [`MeshState::regenerate`] is CPU work: the reconciler runs it off the
//! async runtime (see docs/architecture.md, "Reconciler and generator").

use super::intern::{ClusterRefs, Interner};
use crate::generate::{
    self, BatchCache, ClusterRef, Endpoint, MeshView, Protocol, ProxyResources, generate_proxy,
};
use crate::resource::{Snapshot, XdsResource};
use kuma_core::matching::PolicyIndex;
use kuma_core::resource::{DataplaneSpec, MeshSpec, MeshVips, Resource, ResourceType, SERVICE_TAG};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Below this many proxies per thread a batch is generated on one thread.
const PARALLEL_BATCH: usize = 64;

/// How many regenerated proxies are published at a time (see
/// `MeshState::regenerate`).
const PUBLISH_CHUNK: usize = 1024;

/// A connected proxy.
#[derive(Default)]
pub(super) struct ProxyState {
    pub(super) streams: usize,
    /// The dataplane token of the latest stream (see
    /// [`super::ProxyEvent::Connected`]).
    pub(super) token: Option<Arc<str>>,
    own: Vec<Arc<XdsResource>>,
    /// The proxy's EDS clusters, sorted.
    eds: Vec<Arc<ClusterRef>>,
    /// Whether a snapshot was published for it (see [`MeshState::snapshot`]).
    published: bool,
}

impl ProxyState {
    /// A proxy with `streams` open streams, the latest with `token`, and
    /// nothing generated yet.
    pub(super) fn new(streams: usize, token: Option<Arc<str>>) -> Self {
        Self {
            streams,
            token,
            ..Self::default()
        }
    }
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

/// What the reconciler knows of one mesh, and the proxies connected to it.
#[derive(Debug, Default)]
pub(super) struct MeshState {
    pub(super) dataplanes: BTreeMap<String, Arc<Resource>>,
    pub(super) policies: BTreeMap<(ResourceType, String), Arc<Resource>>,
    /// service -> Dataplane name -> that Dataplane's instances of it.
    endpoints: BTreeMap<String, BTreeMap<String, Vec<Endpoint>>>,
    pub(super) protocols: BTreeMap<String, Protocol>,
    load_assignments: HashMap<ClusterRef, Arc<XdsResource>>,
    /// What each Dataplane currently contributes to `endpoints`.
    published: HashMap<String, BTreeMap<String, Vec<Endpoint>>>,
    /// Dataplanes whose proxy connected but has not acknowledged its
    /// listeners yet: their instances are held back, so nobody is sent to
    /// an inbound port Envoy does not listen on yet.
    pub(super) warming: BTreeSet<String>,
    /// The Mesh resource itself.
    pub(super) mesh: Option<Arc<Resource>>,
    /// DNS VIP per service (from Config `kuma-<mesh>-dns-vips`).
    pub(super) vips: MeshVips,
    pub(super) proxies: BTreeMap<String, ProxyState>,
    /// service -> the connected proxies with an EDS cluster of it (the
    /// `eds` of `proxies`, inverted): who needs a service's new endpoints.
    pub(super) consumers: HashMap<String, BTreeSet<String>>,
    /// The listeners and clusters of `proxies`, each stored once.
    interned: Interner,
    /// The EDS clusters of `proxies`, each stored once.
    cluster_refs: ClusterRefs,
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
    pub(super) fn set_dataplane(
        &mut self,
        name: &str,
        dp: Option<Arc<Resource>>,
    ) -> BTreeSet<String> {
        match dp {
            Some(d) => self.dataplanes.insert(name.to_string(), d),
            None => self.dataplanes.remove(name),
        };
        self.refresh_endpoints(name)
    }

    /// Re-derives what a Dataplane contributes to `endpoints` (nothing while
    /// it is warming); returns the services whose instances changed.
    pub(super) fn refresh_endpoints(&mut self, name: &str) -> BTreeSet<String> {
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
    pub(super) fn set_eds(&mut self, name: &str, eds: BTreeSet<ClusterRef>) {
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
    pub(super) fn remove_proxy(&mut self, name: &str) {
        self.set_eds(name, BTreeSet::new());
        self.proxies.remove(name);
    }

    /// Regenerates the listeners and clusters of the named proxies and
    /// hands each one's new snapshot to `publish`, a chunk of
    /// [`PUBLISH_CHUNK`] proxies at a time: under a mesh-wide change the
    /// first proxies get their config while the rest is still being
    /// generated, and the snapshots they replace are freed as it goes
    /// instead of all living twice at the end.
    pub(super) fn regenerate(
        &mut self,
        mesh: &str,
        names: &[String],
        mut publish: impl FnMut(&str, Snapshot),
    ) {
        let policies: Vec<Arc<Resource>> = self.policies.values().cloned().collect();
        let index = PolicyIndex::new(policies.iter());
        // Copies, so the chunks' results can be stored while generation
        // reads them (the VIPs rendered in the generator's dotted form).
        let (mesh_resource, protocols) = (self.mesh.clone(), self.protocols.clone());
        let vips: BTreeMap<String, String> = self
            .vips
            .iter()
            .map(|(service, vip)| (service.clone(), vip.to_string()))
            .collect();
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

    /// The snapshot to publish for proxy `name`, if any. A proxy whose
    /// Dataplane is not known yet gets none until it is: it connects before
    /// the Dataplane it carries is written (see the ADS session), and an
    /// empty snapshot would take away the configuration a reconnecting
    /// Envoy still serves with. Once published, a proxy whose Dataplane is
    /// deleted does get the empty one.
    pub(super) fn snapshot(&mut self, name: &str) -> Option<Snapshot> {
        let known = self.dataplanes.contains_key(name);
        let (own, eds) = {
            let p = self.proxies.get_mut(name)?;
            if !known && !p.published {
                return None;
            }
            p.published = true;
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
