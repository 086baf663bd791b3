//! Where VIPs survive restarts.
//!
//! [`VipPersistence`] is the seam; [`StorePersistence`] keeps one `Config`
//! resource per mesh, named `kuma-<mesh>-dns-vips`, whose `config` is a JSON
//! map service -> IP (as Kuma does); [`MemoryPersistence`] is for tests and
//! embedders that do not need persistence. The format of that Config is
//! defined once, in kuma-core ([`MeshVips`], [`ConfigSpec::dns_vips`]),
//! because kuma-xds reads it too.

use crate::error::DnsError;
pub use kuma_core::resource::MeshVips;
use kuma_core::resource::{ConfigSpec, Resource, ResourceKey, ResourceType};
use kuma_core::store::{ListRequest, ResourceStore, StoreError};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Loads and saves the VIP map of every mesh.
pub trait VipPersistence: Send + Sync + 'static {
    /// Every mesh's persisted VIPs.
    fn load(&self) -> impl Future<Output = Result<BTreeMap<String, MeshVips>, DnsError>> + Send;

    /// Replaces the VIPs of `mesh`; an empty map removes them.
    fn save(
        &self,
        mesh: &str,
        vips: &MeshVips,
    ) -> impl Future<Output = Result<(), DnsError>> + Send;
}

/// Keeps VIPs in memory; clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryPersistence {
    meshes: Arc<Mutex<BTreeMap<String, MeshVips>>>,
}

impl MemoryPersistence {
    /// Empty persistence.
    pub fn new() -> Self {
        Self::default()
    }

    /// What is persisted now.
    pub fn snapshot(&self) -> BTreeMap<String, MeshVips> {
        self.meshes.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl VipPersistence for MemoryPersistence {
    async fn load(&self) -> Result<BTreeMap<String, MeshVips>, DnsError> {
        Ok(self.snapshot())
    }

    async fn save(&self, mesh: &str, vips: &MeshVips) -> Result<(), DnsError> {
        if let Ok(mut m) = self.meshes.lock() {
            if vips.is_empty() {
                m.remove(mesh);
            } else {
                m.insert(mesh.to_string(), vips.clone());
            }
        }
        Ok(())
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

/// Persists VIPs as `Config` resources in a [`ResourceStore`].
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
    async fn load(&self) -> Result<BTreeMap<String, MeshVips>, DnsError> {
        let mut out = BTreeMap::new();
        let page = self
            .store
            .list(&ListRequest::all(ResourceType::Config))
            .await?;
        for r in page.items {
            let Some(mesh) = ConfigSpec::dns_vips_mesh(&r.meta.name) else {
                continue;
            };
            let Some(spec) = r.spec_as::<ConfigSpec>() else {
                continue;
            };
            match decode_vips(mesh, &spec.config) {
                Ok(vips) => {
                    out.insert(mesh.to_string(), vips);
                }
                // A broken map only costs new VIPs; do not refuse to start.
                Err(e) => tracing::warn!(error = %e, "ignoring persisted VIPs"),
            }
        }
        Ok(out)
    }

    async fn save(&self, mesh: &str, vips: &MeshVips) -> Result<(), DnsError> {
        let name = ConfigSpec::dns_vips_name(mesh);
        let key = ResourceKey::new(ResourceType::Config, None, &name);
        if vips.is_empty() {
            return match self.store.delete(&key).await {
                Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
                Err(e) => Err(e.into()),
            };
        }
        let mut resource = Resource::new(None, &name, ConfigSpec::from_dns_vips(vips));
        // This control plane is the only writer of these Configs; a
        // conflict means a stale read, so read again and overwrite.
        for _ in 0..3 {
            let result = match self.store.get(&key).await {
                Ok(stored) => {
                    resource.meta.version = stored.meta.version;
                    resource.meta.creation_time = stored.meta.creation_time;
                    self.store.update(resource.clone()).await
                }
                Err(StoreError::NotFound(_)) => self.store.create(resource.clone()).await,
                Err(e) => return Err(e.into()),
            };
            match result {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DnsError::Store(StoreError::Backend(format!(
            "{name} kept changing concurrently"
        ))))
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
        p.save("default", &vips).await.unwrap();
        p.save("default", &vips).await.unwrap();
        p.save("other", &MeshVips::new()).await.unwrap();
        let stored = store
            .get(&ResourceKey::new(
                ResourceType::Config,
                None,
                "kuma-default-dns-vips",
            ))
            .await
            .unwrap();
        assert_eq!(
            stored.spec_as::<ConfigSpec>().unwrap().config,
            r#"{"api":"240.0.0.2","web":"240.0.0.1"}"#
        );
        stored.validate().unwrap();
        assert_eq!(
            p.load().await.unwrap(),
            BTreeMap::from([("default".to_string(), vips)])
        );
        p.save("default", &MeshVips::new()).await.unwrap();
        assert!(p.load().await.unwrap().is_empty());
    }
}
