//! Resource stores.
//!
//! [`ResourceStore`] is the one seam between the control plane and where its
//! resources live. [`MemoryStore`] is the reference implementation, keeping
//! everything in memory; `LocalStore` (feature `local`) keeps the same state
//! durable in a local directory (the control plane's default);
//! `postgres` (feature `postgres`) keeps resources in PostgreSQL for several
//! control planes; `conformance` (feature `conformance`) is a test suite any
//! implementation runs to prove it behaves the same.
//!
//! A store keeps resources as given (the [`crate::manager::ResourceManager`]
//! validates and stamps times before writing); it owns versions: every
//! `update` must carry the version it read, and every write gives the
//! resource a new version. The versions of one key strictly increase over its
//! whole history, across delete and re-create (the stores take them from one
//! store-wide counter), so a cache keyed by version never serves a deleted
//! resource's data for its re-created successor.
//! Every change is published as a [`StoreEvent`] to the [`Subscription`]s
//! following its type, so consumers react instead of polling; a store serves
//! subscriptions through an [`EventHub`] (see docs/architecture.md, "Stores
//! and subscriptions").

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "local")]
pub mod local;
mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
mod subscription;

#[cfg(feature = "local")]
pub use local::{LocalStore, LocalStoreError};
pub use memory::MemoryStore;
pub use subscription::{DEFAULT_EVENT_CAPACITY, Event, EventHub, Subscription};

use crate::resource::{Resource, ResourceKey, ResourceType, Version};
use std::sync::Arc;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No resource has this key.
    #[error("{0} not found")]
    NotFound(ResourceKey),
    /// `create` of a key that exists.
    #[error("{0} already exists")]
    AlreadyExists(ResourceKey),
    /// `update` with a version other than the stored one.
    #[error(
        "{key} was changed concurrently: expected version {expected}, stored version is {actual}"
    )]
    Conflict {
        /// The resource.
        key: ResourceKey,
        /// The version the writer read.
        expected: Version,
        /// The version in the store.
        actual: Version,
    },
    /// `update` of a resource that carries no version.
    #[error("{0} has no version: read it before updating it")]
    MissingVersion(ResourceKey),
    /// A list offset this store did not hand out.
    #[error("invalid page offset {0:?}")]
    InvalidOffset(String),
    /// The backend failed (connection lost, I/O error).
    #[error("store backend error: {0}")]
    Backend(String),
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A resource was created.
    Added,
    /// A resource was updated.
    Updated,
    /// A resource was deleted.
    Deleted,
}

/// One change in a store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreEvent {
    /// What happened.
    pub kind: EventKind,
    /// To which resource.
    pub key: ResourceKey,
}

/// A `list` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// The type to list.
    pub resource_type: ResourceType,
    /// Only this mesh (`None`: every mesh, or a global type).
    pub mesh: Option<String>,
    /// At most this many items (`None`: all).
    pub page_size: Option<usize>,
    /// Where to continue: the `next_offset` of the previous page.
    pub offset: Option<String>,
}

impl ListRequest {
    /// Every resource of a type, in every mesh, unpaged.
    pub fn all(resource_type: ResourceType) -> Self {
        Self {
            resource_type,
            mesh: None,
            page_size: None,
            offset: None,
        }
    }

    /// Every resource of a type in one mesh, unpaged.
    pub fn in_mesh(resource_type: ResourceType, mesh: &str) -> Self {
        Self {
            mesh: Some(mesh.to_string()),
            ..Self::all(resource_type)
        }
    }

    /// The same request, paged.
    pub fn paged(mut self, size: usize, offset: Option<String>) -> Self {
        self.page_size = Some(size);
        self.offset = offset;
        self
    }
}

/// One page of a `list`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    /// The resources, ordered by (mesh, name).
    pub items: Vec<Arc<Resource>>,
    /// How many resources match the request in total, over all pages.
    pub total: usize,
    /// Opaque offset of the next page; `None` on the last page.
    pub next_offset: Option<String>,
}

/// Where resources live. Object safe: held as `Arc<dyn ResourceStore>`.
#[async_trait::async_trait]
pub trait ResourceStore: Send + Sync + 'static {
    /// The resource with this key.
    async fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>, StoreError>;

    /// Resources of a type, ordered by (mesh, name), optionally paged.
    async fn list(&self, request: &ListRequest) -> Result<ListPage, StoreError>;

    /// Stores a new resource; fails if the key exists. Its version is above
    /// every version the key had before it was last deleted.
    async fn create(&self, resource: Resource) -> Result<Arc<Resource>, StoreError>;

    /// Replaces a resource if its `meta.version` equals the stored version,
    /// and gives it a higher version.
    async fn update(&self, resource: Resource) -> Result<Arc<Resource>, StoreError>;

    /// Deletes a resource. Deleting a Mesh deletes every resource in it.
    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError>;

    /// A subscription to the changes of `types` from now on. Its first
    /// item is [`Event::Resync`] (list what you follow now); then each
    /// change of those types, in order, and nothing of other types. A
    /// subscriber whose bounded queue is full gets [`Event::Resync`] in
    /// place of the changes it could not hold: never an error, never a
    /// silent loss. It ends (`None`) when the store is gone. The full
    /// contract is on [`Subscription`]; implementations serve it with an
    /// [`EventHub`].
    fn subscribe(&self, types: &[ResourceType]) -> Subscription;
}
