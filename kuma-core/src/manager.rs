//! The resource manager: the only way resources should be written.
//!
//! It validates before anything reaches the store, refuses writes into a mesh
//! that does not exist, stamps creation and modification times, and applies
//! Kuma's side effects: creating a Mesh also creates its default
//! `allow-all-<mesh>` TrafficPermission and `route-all-<mesh>` TrafficRoute
//! (and removes the Mesh again if that fails, so nothing is half-written).
//!
//! With the `pki` feature and mTLS (see `docs/security.md`), writing a Mesh
//! also generates a CA for every `builtin` backend whose two Secrets
//! (`pki::builtin_ca_cert_secret`, `pki::builtin_ca_key_secret`) do not exist
//! yet, and refuses a Mesh whose enabled `provided` backend cannot be loaded,
//! with the field path of the problem. Without the feature the manager does
//! neither: a Mesh's CA secrets are then the embedder's business (the
//! control plane binary always enables it).
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

#[cfg(feature = "pki")]
use crate::pki::{self, PkiError};
#[cfg(feature = "pki")]
use crate::resource::{CaBackendType, SecretSpec};
use crate::resource::{MeshSpec, Resource, ResourceKey, ResourceType, Scope};
use crate::store::{ListPage, ListRequest, ResourceStore, StoreError, Subscription};
use crate::validation::ValidationError;
use std::sync::Arc;
use time::OffsetDateTime;

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
    /// A builtin CA could not be generated; nothing was written.
    #[cfg(feature = "pki")]
    #[error("generating the CA of {field}: {error}")]
    Ca {
        /// The backend, e.g. `mtls.backends[0]`.
        field: String,
        /// What failed.
        error: PkiError,
    },
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

    /// A subscription to the store's changes of `types` (see
    /// [`ResourceStore::subscribe`]).
    pub fn subscribe(&self, types: &[ResourceType]) -> Subscription {
        self.store.subscribe(types)
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
    /// default TrafficPermission and TrafficRoute and (with the `pki`
    /// feature) its builtin CAs, and checks that its enabled provided CA
    /// loads.
    pub async fn create(&self, mut resource: Resource) -> Result<Arc<Resource>, ManagerError> {
        resource.validate()?;
        self.check_mesh(&resource).await?;
        let mesh_spec = resource.spec_as::<MeshSpec>().cloned();
        let mesh_name = resource.meta.name.clone();
        if let Some(spec) = &mesh_spec {
            self.check_provided_ca(&mesh_name, spec).await?;
        }
        let now = self.clock.now();
        resource.meta.version = None;
        resource.meta.creation_time = Some(now);
        resource.meta.modification_time = Some(now);
        let created = self.store.create(resource).await?;
        if let Some(spec) = &mesh_spec
            && let Err(e) = self.create_mesh_side_effects(&mesh_name, spec, now).await
        {
            // Roll back: a Mesh without its defaults or CAs must not stay
            // behind (deleting the Mesh deletes what was created in it).
            let _ = self
                .store
                .delete(&ResourceKey::new(ResourceType::Mesh, None, &mesh_name))
                .await;
            return Err(e);
        }
        Ok(created)
    }

    async fn create_mesh_side_effects(
        &self,
        mesh: &str,
        spec: &MeshSpec,
        now: OffsetDateTime,
    ) -> Result<(), ManagerError> {
        self.create_mesh_defaults(mesh, now).await?;
        self.ensure_builtin_cas(mesh, spec, now).await
    }

    /// Refuses a Mesh whose enabled CA backend is `provided` and cannot be
    /// loaded (missing secret or file, not PEM, not a CA, key mismatch,
    /// expired), naming the field.
    #[cfg(feature = "pki")]
    async fn check_provided_ca(&self, mesh: &str, spec: &MeshSpec) -> Result<(), ManagerError> {
        if spec
            .enabled_ca()
            .is_none_or(|b| b.r#type != CaBackendType::Provided)
        {
            return Ok(());
        }
        match pki::load_mesh_issuer(self.store.as_ref(), mesh, spec).await {
            Ok(_) => Ok(()),
            Err(PkiError::Store(e)) => Err(e.into()),
            Err(PkiError::Field { field, error }) => match *error {
                PkiError::Store(e) => Err(e.into()),
                error => Err(ValidationError::single(field, error.to_string()).into()),
            },
            Err(e) => Err(ValidationError::single("mtls", e.to_string()).into()),
        }
    }

    /// Generates and stores a CA for every builtin backend of the mesh
    /// whose two Secrets do not exist yet. An existing pair is kept. The key
    /// Secret is created first, so a concurrent writer that finds it
    /// existing keeps that writer's pair. Secrets created here are deleted
    /// again if a later step fails.
    #[cfg(feature = "pki")]
    async fn ensure_builtin_cas(
        &self,
        mesh: &str,
        spec: &MeshSpec,
        now: OffsetDateTime,
    ) -> Result<(), ManagerError> {
        let mut created = Vec::new();
        let result = self
            .ensure_builtin_cas_inner(mesh, spec, now, &mut created)
            .await;
        if result.is_err() {
            for key in created.iter().rev() {
                let _ = self.store.delete(key).await;
            }
        }
        result
    }

    #[cfg(feature = "pki")]
    async fn ensure_builtin_cas_inner(
        &self,
        mesh: &str,
        spec: &MeshSpec,
        now: OffsetDateTime,
        created: &mut Vec<ResourceKey>,
    ) -> Result<(), ManagerError> {
        let Some(mtls) = &spec.mtls else {
            return Ok(());
        };
        for (i, backend) in mtls.backends.iter().enumerate() {
            if backend.r#type != CaBackendType::Builtin {
                continue;
            }
            let field = format!("mtls.backends[{i}]");
            let cert_name = pki::builtin_ca_cert_secret(mesh, &backend.name);
            let key_name = pki::builtin_ca_key_secret(mesh, &backend.name);
            let cert_key = ResourceKey::new(ResourceType::Secret, Some(mesh), &cert_name);
            let key_key = ResourceKey::new(ResourceType::Secret, Some(mesh), &key_name);
            match (self.exists(&cert_key).await?, self.exists(&key_key).await?) {
                (true, true) => continue,
                (false, false) => {}
                (cert, _) => {
                    let (present, absent) = if cert {
                        (&cert_name, &key_name)
                    } else {
                        (&key_name, &cert_name)
                    };
                    return Err(ValidationError::single(
                        field,
                        format!(
                            "builtin CA secret {present:?} exists but {absent:?} does not: \
                             delete {present:?} to have a new CA generated, or create {absent:?}"
                        ),
                    )
                    .into());
                }
            }
            let ca =
                pki::generate_ca(mesh, pki::builtin_ca_validity(backend)).map_err(|error| {
                    ManagerError::Ca {
                        field: field.clone(),
                        error,
                    }
                })?;
            match self.create_secret(mesh, &key_name, &ca.key_pem, now).await {
                Ok(()) => created.push(key_key),
                // A concurrent writer is creating this backend's CA: keep theirs.
                Err(ManagerError::Store(StoreError::AlreadyExists(_))) => continue,
                Err(e) => return Err(e),
            }
            self.create_secret(mesh, &cert_name, &ca.cert_pem, now)
                .await?;
            created.push(cert_key);
        }
        Ok(())
    }

    /// Without the `pki` feature the manager does not check provided CAs.
    #[cfg(not(feature = "pki"))]
    async fn check_provided_ca(&self, _mesh: &str, _spec: &MeshSpec) -> Result<(), ManagerError> {
        Ok(())
    }

    /// Without the `pki` feature the manager does not generate builtin CAs.
    #[cfg(not(feature = "pki"))]
    async fn ensure_builtin_cas(
        &self,
        _mesh: &str,
        _spec: &MeshSpec,
        _now: OffsetDateTime,
    ) -> Result<(), ManagerError> {
        Ok(())
    }

    #[cfg(feature = "pki")]
    async fn exists(&self, key: &ResourceKey) -> Result<bool, ManagerError> {
        match self.store.get(key).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    #[cfg(feature = "pki")]
    async fn create_secret(
        &self,
        mesh: &str,
        name: &str,
        data: &str,
        now: OffsetDateTime,
    ) -> Result<(), ManagerError> {
        let mut r = Resource::new(Some(mesh), name, SecretSpec::from_bytes(data.as_bytes()));
        r.validate()?;
        r.meta.creation_time = Some(now);
        r.meta.modification_time = Some(now);
        self.store.create(r).await?;
        Ok(())
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
    ///
    /// With the `pki` feature, updating a Mesh checks its enabled provided CA
    /// and generates the CAs
    /// of new builtin backends before the Mesh is written. If the Mesh write
    /// then fails, those CAs stay: an unused CA pair is harmless and is
    /// reused when the backend is declared again.
    pub async fn update(&self, mut resource: Resource) -> Result<Arc<Resource>, ManagerError> {
        resource.validate()?;
        self.check_mesh(&resource).await?;
        let stored = self.store.get(&resource.key()).await?;
        let now = self.clock.now();
        if let Some(spec) = resource.spec_as::<MeshSpec>() {
            let name = resource.meta.name.clone();
            self.check_provided_ca(&name, spec).await?;
            self.ensure_builtin_cas(&name, spec, now).await?;
        }
        resource.meta.creation_time = stored.meta.creation_time;
        resource.meta.modification_time = Some(now);
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
