//! Keeps VIPs in step with the store, driven by its events.
//!
//! [`VipController::run`] subscribes to the store's changes of the types
//! that carry services, loads the persisted VIPs, lists the services once
//! (the subscription's first `Resync`), and from then on re-reads only the
//! resource an event names (everything again on a later `Resync`, when its
//! queue overflowed). Each
//! batch of events ends in one allocation round: the [`VipTable`] is
//! republished and the changed meshes are persisted. The only timers are
//! the moment a cooling VIP becomes free while services wait for one, and
//! a retry after a failed save.

use crate::allocator::{RestoreRefused, VipAllocator};
use crate::config::DnsConfig;
use crate::error::DnsError;
use crate::metrics::DnsMetrics;
use crate::persistence::{MeshVips, VipPersistence};
use crate::services::{SERVICE_TYPES, ServiceIndex, carries_services};
use crate::table::VipTable;
use kuma_core::store::{Event, ResourceStore, StoreError, StoreEvent};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

const SAVE_RETRY: Duration = Duration::from_secs(1);

/// Allocates VIPs for the services in a store and publishes them.
pub struct VipController<P> {
    store: Arc<dyn ResourceStore>,
    persistence: P,
    allocator: VipAllocator,
    table: VipTable,
    metrics: DnsMetrics,
    index: ServiceIndex,
    saved: BTreeMap<String, MeshVips>,
    unallocated: usize,
    retry_save_at: Option<Instant>,
}

impl<P> std::fmt::Debug for VipController<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VipController")
            .field("cidr", &self.allocator.cidr())
            .field("vips", &self.allocator.vips().len())
            .finish_non_exhaustive()
    }
}

impl<P: VipPersistence> VipController<P> {
    /// A controller over `store` publishing into `table`.
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
            saved: BTreeMap::new(),
            unallocated: 0,
            retry_save_at: None,
        }
    }

    /// The current allocation.
    pub fn allocator(&self) -> &VipAllocator {
        &self.allocator
    }

    /// Runs until `shutdown` completes or the store closes its events.
    /// Fails only if the store cannot be read at start-up.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<(), DnsError> {
        let mut events = self.store.subscribe(SERVICE_TYPES);
        self.restore().await?;
        // The first item is always `Resync`: the initial listing below
        // covers it (and would cover any change), and only its failure
        // fails start-up.
        if events.next().await.is_none() {
            return Ok(());
        }
        self.index = ServiceIndex::load(&*self.store).await?;
        self.reconcile().await;
        tokio::pin!(shutdown);
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                event = events.next() => {
                    let Some(event) = event else {
                        return Ok(());
                    };
                    let mut changed = self.on_item(event, events.dropped()).await;
                    // Coalesce a burst of events into one allocation round.
                    while let Some(event) = events.try_next() {
                        changed |= self.on_item(event, events.dropped()).await;
                    }
                    if changed {
                        self.reconcile().await;
                    }
                }
                () = sleep_until(wake) => self.reconcile().await,
            }
        }
    }

    async fn restore(&mut self) -> Result<(), DnsError> {
        let persisted = self.persistence.load().await?;
        for (mesh, vips) in &persisted {
            for (service, vip) in vips {
                match self.allocator.restore(service, *vip) {
                    Ok(()) => {}
                    // The same service in several meshes shares one VIP;
                    // the first mesh's entry wins and the others are
                    // rewritten by the next save.
                    Err(reason) => {
                        let level_warn = reason != RestoreRefused::ServiceHasVip;
                        if level_warn {
                            warn!(%mesh, %service, %vip, ?reason, "dropping persisted VIP");
                        }
                    }
                }
            }
        }
        info!(
            vips = self.allocator.vips().len(),
            "restored persisted VIPs"
        );
        self.saved = persisted;
        Ok(())
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

    /// Applies one subscription item; whether the services changed.
    async fn on_item(&mut self, event: Event, dropped: u64) -> bool {
        match event {
            Event::Changed(e) => self.on_event(&e).await,
            Event::Resync => {
                debug!(dropped, "store events overflowed, re-listing services");
                self.relist().await
            }
        }
    }

    async fn on_event(&mut self, event: &StoreEvent) -> bool {
        if !carries_services(event.key.resource_type) {
            return false;
        }
        match self.store.get(&event.key).await {
            Ok(r) => self.index.apply(&event.key, Some(&r)),
            Err(StoreError::NotFound(_)) => self.index.apply(&event.key, None),
            Err(e) => {
                warn!(key = %event.key, error = %e, "cannot read resource; re-listing");
                self.relist().await
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let reuse = if self.unallocated > 0 {
            self.allocator.next_reuse_at()
        } else {
            None
        };
        match (reuse, self.retry_save_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn reconcile(&mut self) {
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
        if out.changed() || self.table.load().is_empty() {
            self.table.publish(self.allocator.vips());
        }
        self.unallocated = out.unallocated.len();
        self.metrics
            .allocation(self.allocator.vips().len(), self.unallocated);
        if !out.unallocated.is_empty() {
            let e = DnsError::Exhausted {
                cidr: self.allocator.cidr(),
                unallocated: out.unallocated.len(),
            };
            error!(error = %e, services = ?out.unallocated, "cannot allocate VIPs");
        }
        self.persist().await;
    }

    async fn persist(&mut self) {
        let mut wanted: BTreeMap<String, MeshVips> = BTreeMap::new();
        for (mesh, services) in self.index.by_mesh() {
            let vips: MeshVips = services
                .into_iter()
                .filter_map(|s| Some((s.to_string(), self.allocator.get(s)?)))
                .collect();
            wanted.insert(mesh.to_string(), vips);
        }
        let meshes: BTreeSet<String> = wanted.keys().chain(self.saved.keys()).cloned().collect();
        self.retry_save_at = None;
        for mesh in meshes {
            let vips = wanted.remove(&mesh).unwrap_or_default();
            let stale = match self.saved.get(&mesh) {
                Some(saved) => *saved != vips,
                None => !vips.is_empty(),
            };
            if !stale {
                continue;
            }
            match self.persistence.save(&mesh, &vips).await {
                Ok(()) => {
                    if vips.is_empty() {
                        self.saved.remove(&mesh);
                    } else {
                        self.saved.insert(mesh, vips);
                    }
                }
                Err(e) => {
                    warn!(%mesh, error = %e, "cannot persist VIPs; retrying");
                    self.retry_save_at = Some(Instant::now() + SAVE_RETRY);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
