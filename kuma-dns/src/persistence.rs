//! Where VIPs survive restarts.
//!
//! [`VipPersistence`] is the seam; [`StorePersistence`] keeps one `Config`
//! resource per mesh, named `kuma-<mesh>-dns-vips`, whose `config` is a JSON
//! map service -> IP (as Kuma does); [`MemoryPersistence`] is for tests and
//! embedders that do not need persistence. Saves are conditional on the
//! version last seen ([`Saved::Conflict`] otherwise), so two leaders
//! overlapping during a failover never overwrite each other's VIPs. The format of that Config is
//! defined once, in kuma-core ([`MeshVips`], [`ConfigSpec::dns_vips`]),
//! because kuma-xds reads it too.

use crate::error::DnsError;
pub use kuma_core::resource::MeshVips;
use kuma_core::resource::{ConfigSpec, Resource, ResourceKey, ResourceType, Version};
use kuma_core::store::{ListRequest, ResourceStore, StoreError};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// The VIP map of one mesh as stored, with the version it was read or
/// written at: the version a conditional [`VipPersistence::save`] expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedVips {
    /// Service -> VIP. Empty when what is stored cannot be parsed: the
    /// leader then replaces it (with `version` as the expected version).
    pub vips: MeshVips,
    /// The version of what is stored.
    pub version: Version,
}

/// What a conditional [`VipPersistence::save`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The map is written; the version it is stored at now (`None`: the
    /// map was removed, or there was nothing to remove).
    Written(Option<Version>),
    /// What is stored is not at the expected version (another process,
    /// such as a leader that has not yet noticed it lost leadership,
    /// wrote it): nothing was written. Load again and decide again.
    Conflict,
}

/// Loads and saves the VIP map of every mesh.
///
/// Saves are conditional: the caller passes the version it last saw, so
/// two writers (a new leader and an old one that has not stopped yet)
/// never silently overwrite each other.
pub trait VipPersistence: Send + Sync + 'static {
    /// Every mesh's persisted VIPs.
    fn load(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<String, PersistedVips>, DnsError>> + Send;

    /// Replaces the VIPs of `mesh` (an empty map removes them) if what is
    /// stored is still at `expected` (`None`: nothing is stored).
    fn save(
        &self,
        mesh: &str,
        vips: &MeshVips,
        expected: Option<Version>,
    ) -> impl Future<Output = Result<Saved, DnsError>> + Send;
}

/// Keeps VIPs in memory; clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryPersistence {
    state: Arc<Mutex<MemoryState>>,
}

#[derive(Debug, Default)]
struct MemoryState {
    meshes: BTreeMap<String, PersistedVips>,
    last_version: u64,
}

impl MemoryPersistence {
    /// Empty persistence.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is persisted now.
    pub fn snapshot(&self) -> BTreeMap<String, MeshVips> {
        self.lock()
            .meshes
            .iter()
            .map(|(mesh, p)| (mesh.clone(), p.vips.clone()))
            .collect()
    }
}

impl VipPersistence for MemoryPersistence {
    async fn load(&self) -> Result<BTreeMap<String, PersistedVips>, DnsError> {
        Ok(self.lock().meshes.clone())
    }

    async fn save(
        &self,
        mesh: &str,
        vips: &MeshVips,
        expected: Option<Version>,
    ) -> Result<Saved, DnsError> {
        let mut state = self.lock();
        if state.meshes.get(mesh).map(|p| p.version) != expected {
            return Ok(Saved::Conflict);
        }
        if vips.is_empty() {
            state.meshes.remove(mesh);
            return Ok(Saved::Written(None));
        }
        state.last_version += 1;
        let version = Version(state.last_version);
        let persisted = PersistedVips {
            vips: vips.clone(),
            version,
        };
        state.meshes.insert(mesh.to_string(), persisted);
        Ok(Saved::Written(Some(version)))
    }
}

/// Parses the `config` text of a VIP Config of `mesh`.
pub fn decode_vips(mesh: &str, text: &str) -> Result<MeshVips, DnsError> {
    ConfigSpec::new(text)
        .dns_vips()
        .map_err(|source| DnsError::BadPersistedVips {
            mesh: mesh.to_string(),
            source,
        })
}

/// Persists VIPs as `Config` resources in a [`ResourceStore`], using the
/// store's version check for conditional saves.
#[derive(Clone)]
pub struct StorePersistence {
    store: Arc<dyn ResourceStore>,
}

impl std::fmt::Debug for StorePersistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorePersistence").finish_non_exhaustive()
    }
}

impl StorePersistence {
    /// Persistence in `store`.
    pub fn new(store: Arc<dyn ResourceStore>) -> Self {
        Self { store }
    }
}

impl VipPersistence for StorePersistence {
    async fn load(&self) -> Result<BTreeMap<String, PersistedVips>, DnsError> {
        let mut out = BTreeMap::new();
        let page = self
            .store
            .list(&ListRequest::all(ResourceType::Config))
            .await?;
        for r in page.items {
            let Some(mesh) = ConfigSpec::dns_vips_mesh(&r.meta.name) else {
                continue;
            };
            let Some(version) = r.meta.version else {
                continue;
            };
            let vips = match r.spec_as::<ConfigSpec>() {
                Some(spec) => decode_vips(mesh, &spec.config),
                None => Ok(MeshVips::new()),
            };
            let vips = vips.unwrap_or_else(|e| {
                // A broken map only costs new VIPs; do not refuse to start.
                tracing::warn!(error = %e, "ignoring persisted VIPs");
                MeshVips::new()
            });
            out.insert(mesh.to_string(), PersistedVips { vips, version });
        }
        Ok(out)
    }

    async fn save(
        &self,
        mesh: &str,
        vips: &MeshVips,
        expected: Option<Version>,
    ) -> Result<Saved, DnsError> {
        let name = ConfigSpec::dns_vips_name(mesh);
        let key = ResourceKey::new(ResourceType::Config, None, &name);
        let stored = match self.store.get(&key).await {
            Ok(stored) => Some(stored),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if stored.as_ref().and_then(|s| s.meta.version) != expected {
            return Ok(Saved::Conflict);
        }
        let result = match (stored, vips.is_empty()) {
            (None, true) => return Ok(Saved::Written(None)),
            // The store's delete takes no version: the check above is as
            // close as it gets. A write racing in between is lost, and its
            // writer sees the deletion through its subscription.
            (Some(_), true) => {
                return match self.store.delete(&key).await {
                    Ok(()) | Err(StoreError::NotFound(_)) => Ok(Saved::Written(None)),
                    Err(e) => Err(e.into()),
                };
            }
            (None, false) => {
                let resource = Resource::new(None, &name, ConfigSpec::from_dns_vips(vips));
                self.store.create(resource).await
            }
            (Some(stored), false) => {
                let mut resource = Resource::new(None, &name, ConfigSpec::from_dns_vips(vips));
                resource.meta.version = stored.meta.version;
                resource.meta.creation_time = stored.meta.creation_time;
                self.store.update(resource).await
            }
        };
        match result {
            Ok(written) => Ok(Saved::Written(written.meta.version)),
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => Ok(Saved::Conflict),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuma_core::store::MemoryStore;
    use std::net::Ipv4Addr;

    #[test]
    fn names_round_trip() {
        let mesh_of_config = ConfigSpec::dns_vips_mesh;
        assert_eq!(
            ConfigSpec::dns_vips_name("default"),
            "kuma-default-dns-vips"
        );
        assert_eq!(mesh_of_config("kuma-default-dns-vips"), Some("default"));
        assert_eq!(mesh_of_config("kuma-a-b-dns-vips"), Some("a-b"));
        assert_eq!(mesh_of_config("kuma--dns-vips"), None);
        assert_eq!(mesh_of_config("other"), None);
    }

    #[test]
    fn bad_maps_are_rejected() {
        assert!(decode_vips("m", "[]").is_err());
        assert!(decode_vips("m", r#"{"a":"1.2.3"}"#).is_err());
        assert_eq!(
            decode_vips("m", r#"{"a":"240.0.0.1"}"#).unwrap(),
            MeshVips::from([("a".to_string(), Ipv4Addr::new(240, 0, 0, 1))])
        );
    }

    #[tokio::test]
    async fn store_persistence_round_trips() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        let p = StorePersistence::new(store.clone());
        let vips = MeshVips::from([
            ("web".to_string(), Ipv4Addr::new(240, 0, 0, 1)),
            ("api".to_string(), Ipv4Addr::new(240, 0, 0, 2)),
        ]);
        let Saved::Written(Some(v1)) = p.save("default", &vips, None).await.unwrap() else {
            panic!("not written");
        };
        let Saved::Written(Some(v2)) = p.save("default", &vips, Some(v1)).await.unwrap() else {
            panic!("not written");
        };
        assert!(v2 > v1);
        assert_eq!(
            p.save("other", &MeshVips::new(), None).await.unwrap(),
            Saved::Written(None)
        );
        let key = ResourceKey::new(ResourceType::Config, None, "kuma-default-dns-vips");
        let stored = store.get(&key).await.unwrap();
        assert_eq!(
            stored.spec_as::<ConfigSpec>().unwrap().config,
            r#"{"api":"240.0.0.2","web":"240.0.0.1"}"#
        );
        assert_eq!(stored.meta.version, Some(v2));
        stored.validate().unwrap();
        let persisted = PersistedVips {
            vips: vips.clone(),
            version: v2,
        };
        assert_eq!(
            p.load().await.unwrap(),
            BTreeMap::from([("default".to_string(), persisted)])
        );
        assert_eq!(
            p.save("default", &MeshVips::new(), Some(v2)).await.unwrap(),
            Saved::Written(None)
        );
        assert!(p.load().await.unwrap().is_empty());
    }

    /// Both implementations refuse a save whose expected version is not
    /// what is stored, and leave what is stored alone.
    async fn conflicts_write_nothing(p: impl VipPersistence) {
        let mine = MeshVips::from([("web".to_string(), Ipv4Addr::new(240, 0, 0, 1))]);
        let theirs = MeshVips::from([("web".to_string(), Ipv4Addr::new(240, 0, 0, 7))]);
        let Saved::Written(Some(v1)) = p.save("m", &theirs, None).await.unwrap() else {
            panic!("not written");
        };
        // Someone else created it first.
        assert_eq!(p.save("m", &mine, None).await.unwrap(), Saved::Conflict);
        // Someone else updated it since v1.
        let Saved::Written(Some(v2)) = p.save("m", &theirs, Some(v1)).await.unwrap() else {
            panic!("not written");
        };
        assert_eq!(p.save("m", &mine, Some(v1)).await.unwrap(), Saved::Conflict);
        assert_eq!(
            p.save("m", &MeshVips::new(), Some(v1)).await.unwrap(),
            Saved::Conflict
        );
        // Someone else removed it.
        assert_eq!(
            p.save("gone", &mine, Some(v1)).await.unwrap(),
            Saved::Conflict
        );
        let loaded = p.load().await.unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded["m"].vips, theirs);
        assert_eq!(loaded["m"].version, v2);
    }

    #[tokio::test]
    async fn saves_are_conditional() {
        conflicts_write_nothing(MemoryPersistence::new()).await;
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        conflicts_write_nothing(StorePersistence::new(store)).await;
    }

    #[tokio::test]
    async fn a_broken_map_loads_empty_with_its_version() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        let name = ConfigSpec::dns_vips_name("m");
        let broken = store
            .create(Resource::new(None, &name, ConfigSpec::new("[1, 2]")))
            .await
            .unwrap();
        let p = StorePersistence::new(store);
        let loaded = p.load().await.unwrap();
        assert!(loaded["m"].vips.is_empty());
        assert_eq!(Some(loaded["m"].version), broken.meta.version);
        // The leader can replace it.
        let vips = MeshVips::from([("web".to_string(), Ipv4Addr::new(240, 0, 0, 1))]);
        assert!(matches!(
            p.save("m", &vips, broken.meta.version).await.unwrap(),
            Saved::Written(Some(_))
        ));
    }
}
