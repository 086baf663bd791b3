//! Kuma DNS: a virtual IP for every service of every mesh, and the DNS
//! server that answers `<service>.mesh` with it.
//!
//! - [`VipAllocator`]: pure VIP allocation over a CIDR (stable, no
//!   duplicates, freed VIPs wait out the TTL before reuse).
//! - [`VipPersistence`]: where VIPs survive restarts; [`StorePersistence`]
//!   writes Config `kuma-<mesh>-dns-vips` resources.
//! - [`VipController`]: follows store events (Dataplane inbounds, zone
//!   ingress services, ExternalServices), allocates, persists, and
//!   publishes into a [`VipTable`]. With several replicas on one store only
//!   the leader allocates ([`VipController::with_leadership`]); the others
//!   publish the VIPs it persisted.
//! - [`DnsHandler`] answers one request (bytes in, bytes out) from the
//!   table; [`DnsServer`] serves it over bound UDP and TCP sockets.
//! - [`DnsMetrics`]: query counters by result and VIP exhaustion, for a
//!   `prometheus_client` registry.
//!
//! [`KumaDns`] wires these together. The library reads no environment and
//! binds no ports itself: it takes a typed [`DnsConfig`] and bound sockets.
//!
//! ```
//! use kuma_core::manager::ResourceManager;
//! use kuma_core::resource::Resource;
//! use kuma_core::store::{MemoryStore, ResourceStore};
//! use kuma_dns::{DnsConfig, KumaDns, StorePersistence, Transport};
//! use hickory_proto::op::{Message, Query};
//! use hickory_proto::rr::{Name, RecordType};
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
//! let manager = ResourceManager::new(store.clone());
//! manager.create(Resource::from_yaml("type: Mesh\nname: default").unwrap()).await.unwrap();
//!
//! let dns = KumaDns::new(DnsConfig::default()).unwrap();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let controller = dns.controller(store.clone(), StorePersistence::new(store.clone()));
//! let task = tokio::spawn(controller.run(async { let _ = stopped.await; }));
//!
//! manager.create(Resource::from_yaml(
//!     "type: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  address: 10.0.0.1\n  \
//!      inbound:\n  - port: 8080\n    tags: {kuma.io/service: backend}\n",
//! ).unwrap()).await.unwrap();
//! while dns.table().lookup("backend").is_none() {
//!     tokio::task::yield_now().await;
//! }
//! assert_eq!(dns.table().lookup("backend"), Some("240.0.0.1".parse().unwrap()));
//!
//! // What the server answers to `dig backend.mesh`:
//! let mut query = Message::query();
//! query.add_query(Query::query(Name::from_ascii("backend.mesh.").unwrap(), RecordType::A));
//! let answer = dns.handler().unwrap().answer(&query.to_vec().unwrap(), Transport::Udp).unwrap();
//! assert_eq!(Message::from_vec(&answer).unwrap().answers.len(), 1);
//!
//! let _ = stop.send(());
//! task.await.unwrap().unwrap();
//! # });
//! ```

mod allocator;
mod config;
mod controller;
mod error;
mod handler;
mod metrics;
pub mod persistence;
mod server;
pub mod services;
mod table;

pub use allocator::{Allocation, RestoreRefused, VipAllocator};
pub use config::{DEFAULT_TTL, DnsConfig};
pub use controller::VipController;
pub use error::DnsError;
pub use handler::{DnsHandler, Transport, domain_name};
pub use metrics::{DnsMetrics, QueryResult};
pub use persistence::{
    MemoryPersistence, MeshVips, PersistedVips, Saved, StorePersistence, VipPersistence,
};
pub use server::DnsServer;
pub use table::{VipSnapshot, VipTable};

use kuma_core::store::ResourceStore;
use std::sync::Arc;

/// The parts of Kuma DNS that share one table and one set of metrics.
#[derive(Debug, Clone)]
pub struct KumaDns {
    config: DnsConfig,
    table: VipTable,
    metrics: DnsMetrics,
}

impl KumaDns {
    /// Checks `config` and creates an empty table and fresh metrics.
    pub fn new(config: DnsConfig) -> Result<Self, DnsError> {
        config.validate()?;
        Ok(Self {
            config,
            table: VipTable::new(),
            metrics: DnsMetrics::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// The VIP table the server answers from.
    pub fn table(&self) -> &VipTable {
        &self.table
    }

    /// The metrics; register them with [`DnsMetrics::register`].
    pub fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }

    /// A controller keeping the table in step with `store`.
    pub fn controller<P: VipPersistence>(
        &self,
        store: Arc<dyn ResourceStore>,
        persistence: P,
    ) -> VipController<P> {
        VipController::new(
            store,
            persistence,
            &self.config,
            self.table.clone(),
            self.metrics.clone(),
        )
    }

    /// A request handler over the table.
    pub fn handler(&self) -> Result<DnsHandler, DnsError> {
        DnsHandler::new(&self.config, self.table.clone(), self.metrics.clone())
    }

    /// A server over the table.
    pub fn server(&self) -> Result<DnsServer, DnsError> {
        Ok(DnsServer::new(self.handler()?, &self.config))
    }
}
