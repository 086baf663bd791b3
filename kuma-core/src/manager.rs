//! The resource manager: the only way resources should be written.
//!
//! It validates before anything reaches the store, refuses writes into a mesh
//! that does not exist, stamps creation and modification times, and applies
//! Kuma's side effects: creating a Mesh also creates its default
//! `allow-all-<mesh>` TrafficPermission and `route-all-<mesh>` TrafficRoute
//! (and removes the Mesh again if that fails, so nothing is half-written).
//!
//! ```
//! use kuma_core::manager::ResourceManager;
//! use kuma_core::resource::{Resource, ResourceKey, ResourceType};
//! use kuma_core::store::MemoryStore;
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
//! manager.create(Resource::from_yaml("type: Mesh\nname: demo").unwrap()).await.unwrap();
//! let tp = ResourceKey::new(ResourceType::TrafficPermission, Some("demo"), "allow-all-demo");
//! assert!(manager.get(&tp).await.is_ok());
//! # });
//! ```

use crate::resource::{Resource, ResourceKey, ResourceType, Scope};
use crate::store::{ListPage, ListRequest, ResourceStore, StoreError, StoreEvent};
use crate::validation::ValidationError;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// Where the manager gets the time from (tests pin it).
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Why a manager operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The resource breaks validation rules; nothing was written.
    #[error("resource is not valid: {0}")]
    Validation(#[from] ValidationError),
    /// A mesh-scoped write names a mesh that does not exist.
    #[error("mesh {0:?} does not exist")]
    MeshNotFound(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Validation, defaults and side effects in front of a [`ResourceStore`].
#[derive(Clone)]
pub struct ResourceManager {
    store: Arc<dyn ResourceStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ResourceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceManager").finish_non_exhaustive()
    }
}

/// The universal YAML of a Mesh's default policies.
fn mesh_defaults(mesh: &str) -> [String; 2] {
    [
        format!(
            "type: TrafficPermission\nmesh: {mesh}\nname: allow-all-{mesh}\n\
             sources:\n- match:\n    kuma.io/service: '*'\n\
             destinations:\n- match:\n    kuma.io/service: '*'\n"
        ),
        format!(
            "type: TrafficRoute\nmesh: {mesh}\nname: route-all-{mesh}\n\
             sources:\n- match:\n    kuma.io/service: '*'\n\
             destinations:\n- match:\n    kuma.io/service: '*'\n\
             conf:\n  loadBalancer:\n    roundRobin: {{}}\n  destination:\n    kuma.io/service: '*'\n"
        ),
    ]
}

impl ResourceManager {
    /// A manager over `store`, using the system clock.
    pub fn new(store: Arc<dyn ResourceStore>) -> Self {
        Self::with_clock(store, Arc::new(SystemClock))
    }

    /// A manager over `store` reading time from `clock`.
    pub fn with_clock(store: Arc<dyn ResourceStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// The underlying store (for reads and subscriptions).
    pub fn store(&self) -> &Arc<dyn ResourceStore> {
        &self.store
    }

    /// A receiver of every store change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.store.subscribe()
    }

    /// The resource with this key.
    pub async fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>, ManagerError> {
        Ok(self.store.get(key).await?)
    }

    /// Resources of a type, optionally in one mesh and paged.
    pub async fn list(&self, request: &ListRequest) -> Result<ListPage, ManagerError> {
        Ok(self.store.list(request).await?)
    }

    async fn check_mesh(&self, resource: &Resource) -> Result<(), ManagerError> {
        if resource.resource_type().scope() != Scope::Mesh {
            return Ok(());
        }
        let mesh = resource.meta.mesh.clone().unwrap_or_default();
        match self
            .store
            .get(&ResourceKey::new(ResourceType::Mesh, None, &mesh))
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound(_)) => Err(ManagerError::MeshNotFound(mesh)),
            Err(e) => Err(e.into()),
        }
    }

    /// Validates and creates a resource. Creating a Mesh also creates its
    /// default TrafficPermission and TrafficRoute.
    pub async fn create(&self, mut resource: Resource) -> Result<Arc<Resource>, ManagerError> {
        resource.validate()?;
        self.check_mesh(&resource).await?;
        let now = self.clock.now();
        resource.meta.version = None;
        resource.meta.creation_time = Some(now);
        resource.meta.modification_time = Some(now);
        let is_mesh = resource.resource_type() == ResourceType::Mesh;
        let mesh_name = resource.meta.name.clone();
        let created = self.store.create(resource).await?;
        if is_mesh && let Err(e) = self.create_mesh_defaults(&mesh_name, now).await {
            // Roll back: a Mesh without its defaults must not stay behind.
            let _ = self
                .store
                .delete(&ResourceKey::new(ResourceType::Mesh, None, &mesh_name))
                .await;
            return Err(e);
        }
        Ok(created)
    }

    async fn create_mesh_defaults(
        &self,
        mesh: &str,
        now: OffsetDateTime,
    ) -> Result<(), ManagerError> {
        for yaml in mesh_defaults(mesh) {
            let mut r = Resource::from_yaml(&yaml).map_err(|e| {
                ManagerError::Validation(ValidationError::single(
                    "",
                    format!("default policy: {e}"),
                ))
            })?;
            r.validate()?;
            r.meta.creation_time = Some(now);
            r.meta.modification_time = Some(now);
            match self.store.create(r).await {
                Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Validates and replaces a resource. `resource.meta.version` must be the
    /// version that was read (a conflict error otherwise); the creation time
    /// is kept from the stored resource.
    pub async fn update(&self, mut resource: Resource) -> Result<Arc<Resource>, ManagerError> {
        resource.validate()?;
        self.check_mesh(&resource).await?;
        let stored = self.store.get(&resource.key()).await?;
        resource.meta.creation_time = stored.meta.creation_time;
        resource.meta.modification_time = Some(self.clock.now());
        Ok(self.store.update(resource).await?)
    }

    /// Creates the resource, or updates it over whatever version is stored
    /// (the HTTP API's PUT). Returns the stored resource and whether it was
    /// created. A concurrent writer between the read and the write still
    /// yields a conflict error rather than a lost write.
    pub async fn upsert(
        &self,
        mut resource: Resource,
    ) -> Result<(Arc<Resource>, bool), ManagerError> {
        match self.store.get(&resource.key()).await {
            Ok(stored) => {
                resource.meta.version = stored.meta.version;
                Ok((self.update(resource).await?, false))
            }
            Err(StoreError::NotFound(_)) => Ok((self.create(resource).await?, true)),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a resource; deleting a Mesh deletes everything in it.
    pub async fn delete(&self, key: &ResourceKey) -> Result<(), ManagerError> {
        Ok(self.store.delete(key).await?)
    }
}
