//! Keeps VIPs in step with the store, driven by its events.
//!
//! [`VipController::run`] subscribes to the store's changes of the types
//! that carry services and of `Config` (where the VIP maps are persisted),
//! loads the persisted VIPs, lists the services once (the subscription's
//! first `Resync`), and from then on re-reads only the resource an event
//! names (everything again on a later `Resync`, when its queue overflowed).
//!
//! Only the leader allocates (see [`VipController::with_leadership`]):
//!
//! - Leader: each batch of events ends in one allocation round: the
//!   [`VipTable`] is republished and the changed meshes are persisted with
//!   a conditional save. A conflict means another process wrote the map
//!   since it was read (two leaders overlapping during a failover): the
//!   controller re-lists the services, loads what is persisted, adopts it
//!   (the persisted VIP of a service wins over its own) and tries again.
//!   A persisted map changed by someone else is adopted the same way.
//! - Follower: never allocates or writes. Whenever a persisted VIP map
//!   changes it loads them all and publishes exactly those VIPs, so every
//!   replica answers the same. It keeps following the services too, so it
//!   can take over at once.
//!
//! On becoming leader the controller first loads and adopts the persisted
//! maps (VIPs never change on a failover), then allocates what is missing.
//! The only timers are the moment a cooling VIP becomes free while services
//! wait for one, and a retry after a failed store read or write.

use crate::allocator::VipAllocator;
use crate::config::DnsConfig;
use crate::error::DnsError;
use crate::metrics::DnsMetrics;
use crate::persistence::{MeshVips, PersistedVips, Saved, VipPersistence};
use crate::services::{ServiceIndex, carries_services};
use crate::table::VipTable;
use kuma_core::resource::{ConfigSpec, ResourceKey, ResourceType};
use kuma_core::store::{Event, ResourceStore, StoreError, StoreEvent};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

const RETRY: Duration = Duration::from_secs(1);

/// How many conflicting saves one allocation round absorbs before it
/// waits [`RETRY`] and starts over.
const CONFLICT_ROUNDS: usize = 5;

/// What the controller subscribes to: the types that carry services, and
/// `Config`, where the VIP maps are persisted.
const WATCHED_TYPES: &[ResourceType] = &[
    ResourceType::Dataplane,
    ResourceType::ExternalService,
    ResourceType::Config,
];

/// Whether `key` names a persisted VIP map.
fn is_vip_map(key: &ResourceKey) -> bool {
    key.resource_type == ResourceType::Config && ConfigSpec::dns_vips_mesh(&key.name).is_some()
}

/// What a batch of subscription items changed.
#[derive(Debug, Default, Clone, Copy)]
struct Changes {
    services: bool,
    vip_maps: bool,
}

/// How persisting one allocation ended.
enum Persist {
    Done,
    Conflict,
    Failed,
}

/// Allocates VIPs for the services in a store (when it leads) or follows
/// the persisted VIPs (when it does not), and publishes them.
pub struct VipController<P> {
    store: Arc<dyn ResourceStore>,
    persistence: P,
    allocator: VipAllocator,
    table: VipTable,
    metrics: DnsMetrics,
    index: ServiceIndex,
    leadership: Option<watch::Receiver<bool>>,
    leading: bool,
    /// What is persisted, as last loaded or written.
    saved: BTreeMap<String, PersistedVips>,
    /// The table does not show the allocator's VIPs yet.
    table_stale: bool,
    unallocated: usize,
    /// When to retry a failed read or write.
    retry_at: Option<Instant>,
    /// The persisted maps must be loaded again (a load failed).
    reload_due: bool,
}

impl<P> std::fmt::Debug for VipController<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VipController")
            .field("cidr", &self.allocator.cidr())
            .field("vips", &self.allocator.vips().len())
            .field("leading", &self.leading)
            .finish_non_exhaustive()
    }
}

impl<P: VipPersistence> VipController<P> {
    /// A controller over `store` publishing into `table`. It always leads
    /// unless [`with_leadership`](Self::with_leadership) says otherwise.
    pub fn new(
        store: Arc<dyn ResourceStore>,
        persistence: P,
        config: &DnsConfig,
        table: VipTable,
        metrics: DnsMetrics,
    ) -> Self {
        Self {
            store,
            persistence,
            allocator: VipAllocator::new(config.cidr, config.reuse_delay),
            table,
            metrics,
            index: ServiceIndex::new(),
            leadership: None,
            leading: true,
            saved: BTreeMap::new(),
            table_stale: true,
            unallocated: 0,
            retry_at: None,
            reload_due: false,
        }
    }

    /// Allocates only while `leadership` holds `true` (this process is the
    /// leader of several replicas sharing one store) and follows the
    /// persisted VIPs otherwise. Leadership may change either way at any
    /// time. When the sender is dropped the last value stays in force, so
    /// `watch::channel(true).1` leads for good; a leadership source that
    /// stops must send `false` first.
    pub fn with_leadership(mut self, leadership: watch::Receiver<bool>) -> Self {
        self.leadership = Some(leadership);
        self
    }

    /// The current allocation.
    pub fn allocator(&self) -> &VipAllocator {
        &self.allocator
    }

    /// Runs until `shutdown` completes or the store closes its events.
    /// Fails only if the store cannot be read at start-up.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<(), DnsError> {
        let mut events = self.store.subscribe(WATCHED_TYPES);
        let mut leadership = self.leadership.take();
        if let Some(rx) = &mut leadership {
            self.leading = *rx.borrow_and_update();
        }
        self.saved = self.persistence.load().await?;
        self.adopt_saved(!self.leading);
        info!(
            vips = self.allocator.vips().len(),
            leading = self.leading,
            "restored persisted VIPs"
        );
        // The first item is always `Resync`: the initial listing below
        // covers it (and would cover any change), and only its failure
        // fails start-up.
        if events.next().await.is_none() {
            return Ok(());
        }
        self.index = ServiceIndex::load(&*self.store).await?;
        if self.leading {
            self.reconcile().await;
        } else {
            self.publish();
        }
        tokio::pin!(shutdown);
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                lead = next_leadership(&mut leadership) => match lead {
                    Some(lead) if lead != self.leading => self.set_leading(lead).await,
                    Some(_) => {}
                    None => info!(leading = self.leading, "leadership source closed; keeping its last value"),
                },
                event = events.next() => {
                    let Some(event) = event else {
                        return Ok(());
                    };
                    let mut changes = Changes::default();
                    self.on_item(event, events.dropped(), &mut changes).await;
                    // Coalesce a burst of events into one round.
                    while let Some(event) = events.try_next() {
                        self.on_item(event, events.dropped(), &mut changes).await;
                    }
                    if changes.vip_maps {
                        self.on_vip_maps_changed(changes.services).await;
                    } else if changes.services && self.leading {
                        self.reconcile().await;
                    }
                }
                () = sleep_until(wake) => {
                    self.retry_at = None;
                    if self.reload_due {
                        self.on_vip_maps_changed(false).await;
                    } else if self.leading {
                        self.reconcile().await;
                    }
                }
            }
        }
    }

    async fn set_leading(&mut self, leading: bool) {
        self.leading = leading;
        self.retry_at = None;
        info!(leading, "DNS VIP leadership changed");
        // Either way start from what is persisted now: a new leader keeps
        // every VIP the previous one persisted; a follower shows exactly
        // those.
        self.on_vip_maps_changed(true).await;
    }

    /// Loads the persisted maps again and acts on them: a follower
    /// publishes them, a leader adopts what someone else wrote and
    /// allocates (always when `reconcile`, else only if something changed).
    async fn on_vip_maps_changed(&mut self, reconcile: bool) {
        let persisted = match self.persistence.load().await {
            Ok(persisted) => persisted,
            Err(e) => {
                warn!(error = %e, "cannot load persisted VIPs; retrying");
                self.reload_due = true;
                self.retry_at = Some(Instant::now() + RETRY);
                return;
            }
        };
        self.reload_due = false;
        let foreign = persisted != self.saved;
        self.saved = persisted;
        if !self.leading {
            self.adopt_saved(true);
            self.publish();
            return;
        }
        if foreign {
            debug!("persisted VIPs changed by another writer; adopting them");
            self.adopt_saved(false);
        }
        if foreign || reconcile {
            self.reconcile().await;
        }
    }

    /// Takes the VIPs of `self.saved` into the allocator; with `exact`,
    /// also drops every service they do not name (a follower's view).
    ///
    /// A service persisted in several meshes with different VIPs keeps the
    /// one of the first mesh; a VIP persisted for two services goes to the
    /// first one seen (only two overlapping leaders produce either).
    fn adopt_saved(&mut self, exact: bool) {
        let now = Instant::now();
        let mut taken: HashMap<&str, Ipv4Addr> = HashMap::new();
        let mut used: HashSet<Ipv4Addr> = HashSet::new();
        for (mesh, persisted) in &self.saved {
            for (service, vip) in &persisted.vips {
                if let Some(first) = taken.get(service.as_str()) {
                    if first != vip {
                        debug!(%mesh, %service, %vip, %first, "service has another VIP in an earlier mesh");
                    }
                    continue;
                }
                if !used.insert(*vip) {
                    warn!(%mesh, %service, %vip, "VIP persisted for two services; ignoring this one");
                    continue;
                }
                match self.allocator.adopt(service, *vip, now) {
                    Ok(changed) => {
                        self.table_stale |= changed;
                        taken.insert(service, *vip);
                    }
                    Err(reason) => {
                        warn!(%mesh, %service, %vip, ?reason, "dropping persisted VIP");
                    }
                }
            }
        }
        if exact {
            let released = self
                .allocator
                .release_unless(|s| taken.contains_key(s), now);
            self.table_stale |= !released.is_empty();
        }
    }

    fn publish(&mut self) {
        if std::mem::take(&mut self.table_stale) {
            self.table.publish(self.allocator.vips());
        }
        if !self.leading {
            self.unallocated = 0;
        }
        self.metrics
            .allocation(self.allocator.vips().len(), self.unallocated);
    }

    async fn relist(&mut self) -> bool {
        match ServiceIndex::load(&*self.store).await {
            Ok(index) => {
                self.index = index;
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot list services; keeping the previous ones");
                false
            }
        }
    }

    /// Applies one subscription item to the service index and notes what
    /// it changed.
    async fn on_item(&mut self, event: Event, dropped: u64, changes: &mut Changes) {
        match event {
            Event::Changed(e) => self.on_event(&e, changes).await,
            Event::Resync => {
                debug!(dropped, "store events overflowed, re-listing");
                changes.services |= self.relist().await;
                changes.vip_maps = true;
            }
        }
    }

    async fn on_event(&mut self, event: &StoreEvent, changes: &mut Changes) {
        if is_vip_map(&event.key) {
            changes.vip_maps = true;
            return;
        }
        if !carries_services(event.key.resource_type) {
            return;
        }
        changes.services |= match self.store.get(&event.key).await {
            Ok(r) => self.index.apply(&event.key, Some(&r)),
            Err(StoreError::NotFound(_)) => self.index.apply(&event.key, None),
            Err(e) => {
                warn!(key = %event.key, error = %e, "cannot read resource; re-listing");
                self.relist().await
            }
        };
    }

    fn next_wake(&self) -> Option<Instant> {
        let reuse = if self.leading && self.unallocated > 0 {
            self.allocator.next_reuse_at()
        } else {
            None
        };
        match (reuse, self.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One allocation round of the leader: allocate, publish, persist; on
    /// a conflicting save adopt what the other writer persisted and go
    /// again.
    async fn reconcile(&mut self) {
        for _ in 0..CONFLICT_ROUNDS {
            self.allocate();
            match self.persist().await {
                Persist::Done => {
                    if !self.reload_due {
                        self.retry_at = None;
                    }
                    return;
                }
                Persist::Failed => break,
                Persist::Conflict => {
                    // Another writer persisted since the last load. Its map
                    // was built from the store as it is now, so re-list
                    // the services first; then its VIPs win over ours.
                    debug!("persisted VIPs changed concurrently; re-reading");
                    let persisted = match self.persistence.load().await {
                        Ok(persisted) => persisted,
                        Err(e) => {
                            warn!(error = %e, "cannot load persisted VIPs; retrying");
                            break;
                        }
                    };
                    if !self.relist().await {
                        break;
                    }
                    self.saved = persisted;
                    self.adopt_saved(false);
                }
            }
        }
        self.retry_at = Some(Instant::now() + RETRY);
    }

    fn allocate(&mut self) {
        let services = self.index.services();
        let out = self
            .allocator
            .sync(services.iter().copied(), Instant::now());
        for (service, vip) in &out.assigned {
            debug!(%service, %vip, "VIP assigned");
        }
        for (service, vip) in &out.released {
            debug!(%service, %vip, "VIP released");
        }
        self.table_stale |= out.changed();
        self.unallocated = out.unallocated.len();
        self.publish();
        if !out.unallocated.is_empty() {
            let e = DnsError::Exhausted {
                cidr: self.allocator.cidr(),
                unallocated: out.unallocated.len(),
            };
            error!(error = %e, services = ?out.unallocated, "cannot allocate VIPs");
        }
    }

    async fn persist(&mut self) -> Persist {
        let mut wanted: BTreeMap<String, MeshVips> = BTreeMap::new();
        for (mesh, services) in self.index.by_mesh() {
            let vips: MeshVips = services
                .into_iter()
                .filter_map(|s| Some((s.to_string(), self.allocator.get(s)?)))
                .collect();
            wanted.insert(mesh.to_string(), vips);
        }
        let meshes: BTreeSet<String> = wanted.keys().chain(self.saved.keys()).cloned().collect();
        for mesh in meshes {
            let vips = wanted.remove(&mesh).unwrap_or_default();
            let saved = self.saved.get(&mesh);
            let stale = match saved {
                Some(saved) => saved.vips != vips,
                None => !vips.is_empty(),
            };
            if !stale {
                continue;
            }
            let expected = saved.map(|s| s.version);
            match self.persistence.save(&mesh, &vips, expected).await {
                Ok(Saved::Written(Some(version))) => {
                    self.saved.insert(mesh, PersistedVips { vips, version });
                }
                Ok(Saved::Written(None)) => {
                    self.saved.remove(&mesh);
                }
                Ok(Saved::Conflict) => return Persist::Conflict,
                Err(e) => {
                    warn!(%mesh, error = %e, "cannot persist VIPs; retrying");
                    return Persist::Failed;
                }
            }
        }
        Persist::Done
    }
}

/// The next leadership value; `None` once, when the sender is gone (the
/// receiver is then dropped and this stays pending: the last value holds).
async fn next_leadership(rx: &mut Option<watch::Receiver<bool>>) -> Option<bool> {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    if r.changed().await.is_ok() {
        return Some(*r.borrow_and_update());
    }
    *rx = None;
    None
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
