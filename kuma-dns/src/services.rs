//! Which services exist: every `kuma.io/service` of Dataplane inbounds,
//! of services available through a zone ingress, and of ExternalServices.
//!
//! [`ServiceIndex`] keeps the services of every such resource, so a store
//! event only re-reads the one resource it names.

use kuma_core::resource::{
    DataplaneSpec, ExternalServiceSpec, Resource, ResourceKey, ResourceType, SERVICE_TAG,
};
use kuma_core::store::{ListRequest, ResourceStore, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The resource types that carry services: what the VIP controller
/// subscribes to.
pub const SERVICE_TYPES: &[ResourceType] =
    &[ResourceType::Dataplane, ResourceType::ExternalService];

/// Whether resources of this type carry services.
pub fn carries_services(ty: ResourceType) -> bool {
    SERVICE_TYPES.contains(&ty)
}

/// The services a resource declares (empty for other types).
pub fn services_of(resource: &Resource) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(dp) = resource.spec_as::<DataplaneSpec>() {
        let net = &dp.networking;
        let inbound = net.inbound.iter().map(|i| &i.tags);
        let ingress = net
            .ingress
            .iter()
            .flat_map(|i| i.available_services.iter().map(|s| &s.tags));
        for tags in inbound.chain(ingress) {
            if let Some(s) = tags.get(SERVICE_TAG) {
                out.insert(s.clone());
            }
        }
    } else if let Some(s) = resource
        .spec_as::<ExternalServiceSpec>()
        .and_then(ExternalServiceSpec::service)
    {
        out.insert(s.to_string());
    }
    out.retain(|s| !s.is_empty() && s != "*");
    out
}

/// The services of every resource that declares some, by resource key.
#[derive(Debug, Clone, Default)]
pub struct ServiceIndex {
    by_resource: HashMap<ResourceKey, BTreeSet<String>>,
}

impl ServiceIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the current state of `key`: `Some` when it exists, `None`
    /// when it was deleted. Returns whether the services changed.
    pub fn apply(&mut self, key: &ResourceKey, resource: Option<&Resource>) -> bool {
        let services = resource.map(services_of).unwrap_or_default();
        if services.is_empty() {
            return self.by_resource.remove(key).is_some();
        }
        match self.by_resource.get(key) {
            Some(old) if *old == services => false,
            _ => {
                self.by_resource.insert(key.clone(), services);
                true
            }
        }
    }

    /// Reads every Dataplane and ExternalService of every mesh.
    pub async fn load(store: &dyn ResourceStore) -> Result<Self, StoreError> {
        let mut index = Self::new();
        for ty in [ResourceType::Dataplane, ResourceType::ExternalService] {
            for r in store.list(&ListRequest::all(ty)).await?.items {
                index.apply(&r.key(), Some(&r));
            }
        }
        Ok(index)
    }

    /// Every service of every mesh, once.
    pub fn services(&self) -> BTreeSet<&str> {
        self.by_resource
            .values()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// The services of each mesh.
    pub fn by_mesh(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (key, services) in &self.by_resource {
            let mesh = key.mesh.as_deref().unwrap_or_default();
            out.entry(mesh)
                .or_default()
                .extend(services.iter().map(String::as_str));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(yaml: &str) -> Resource {
        Resource::from_yaml(yaml).unwrap()
    }

    #[test]
    fn inbound_ingress_and_external_services() {
        let dp = res(
            "type: Dataplane\nmesh: default\nname: dp-1\nnetworking:\n  address: 10.0.0.1\n  \
             inbound:\n  - port: 80\n    tags: {kuma.io/service: web}\n  - port: 81\n    tags: {kuma.io/service: admin}\n  \
             outbound:\n  - port: 1000\n    tags: {kuma.io/service: not-counted}\n",
        );
        assert_eq!(
            services_of(&dp),
            BTreeSet::from(["web".to_string(), "admin".to_string()])
        );
        let ingress = res(
            "type: Dataplane\nmesh: default\nname: ingress\nnetworking:\n  address: 10.0.0.2\n  \
             inbound:\n  - port: 10001\n    tags: {kuma.io/service: ingress}\n  \
             ingress:\n    availableServices:\n    - tags: {kuma.io/service: remote-web}\n",
        );
        assert_eq!(
            services_of(&ingress),
            BTreeSet::from(["ingress".to_string(), "remote-web".to_string()])
        );
        let gw = res(
            "type: Dataplane\nmesh: default\nname: gw\nnetworking:\n  address: 10.0.0.3\n  \
             gateway:\n    tags: {kuma.io/service: edge}\n",
        );
        assert!(services_of(&gw).is_empty());
        let es = res(
            "type: ExternalService\nmesh: m2\nname: httpbin\nnetworking:\n  address: httpbin.org:80\n\
             tags: {kuma.io/service: httpbin}\n",
        );
        assert_eq!(services_of(&es), BTreeSet::from(["httpbin".to_string()]));

        let mut index = ServiceIndex::new();
        assert!(index.apply(&dp.key(), Some(&dp)));
        assert!(!index.apply(&dp.key(), Some(&dp)));
        assert!(index.apply(&es.key(), Some(&es)));
        assert!(!index.apply(&gw.key(), Some(&gw)));
        assert_eq!(
            index.services(),
            BTreeSet::from(["admin", "httpbin", "web"])
        );
        assert_eq!(index.by_mesh()["m2"], BTreeSet::from(["httpbin"]));
        assert!(index.apply(&dp.key(), None));
        assert_eq!(index.services(), BTreeSet::from(["httpbin"]));
    }
}
