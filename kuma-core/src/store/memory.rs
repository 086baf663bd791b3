//! The in-memory store: the reference implementation and the embedded default.

use super::{
    DEFAULT_EVENT_CAPACITY, EventHub, EventKind, ListPage, ListRequest, ResourceStore, StoreError,
    StoreEvent, Subscription,
};
use crate::resource::{Resource, ResourceKey, ResourceType, Scope, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `(mesh, name)`: the order resources of one type are listed in.
pub(super) type Slot = (Option<String>, String);

/// Every resource, by type and then in list order: the in-memory state of
/// [`MemoryStore`] and of the local store.
pub(super) type Types = HashMap<ResourceType, BTreeMap<Slot, Arc<Resource>>>;

/// The reference [`ResourceStore`]: everything in memory, nothing to install.
///
/// Reads take a shared lock and clone `Arc`s; writes take the lock briefly and
/// publish their event while still holding it, so subscribers see events in
/// exactly the order the writes happened. Subscriptions are served by an
/// [`EventHub`].
#[derive(Debug)]
pub struct MemoryStore {
    types: RwLock<Types>,
    /// The last version handed out, by any write to any key. Versions come
    /// from this one store-wide counter, so the versions of one key strictly
    /// increase across delete and re-create without remembering deleted
    /// keys. Only written under the `types` write lock.
    last_version: AtomicU64,
    events: EventHub,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store whose subscribers each queue up to
    /// [`DEFAULT_EVENT_CAPACITY`] changes of the types they follow.
    pub fn new() -> Self {
        Self::with_event_capacity(DEFAULT_EVENT_CAPACITY)
    }

    /// An empty store whose subscribers each queue up to `capacity` changes
    /// of the types they follow before their next item is
    /// [`super::Event::Resync`] instead.
    pub fn with_event_capacity(capacity: usize) -> Self {
        Self {
            types: RwLock::new(HashMap::new()),
            last_version: AtomicU64::new(0),
            events: EventHub::new(capacity),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Types> {
        // A panic while holding the lock cannot leave a map half-updated
        // (every write is a single insert/remove), so poisoning is ignored.
        self.types.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Types> {
        self.types.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The next version; call with the write lock held.
    fn next_version(&self) -> Version {
        Version(self.last_version.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn publish(&self, kind: EventKind, key: ResourceKey) {
        self.events.publish(StoreEvent { kind, key });
    }
}

pub(super) fn slot(key: &ResourceKey) -> Slot {
    (key.mesh.clone(), key.name.clone())
}

/// Removes every mesh-scoped resource of `mesh` from `types` and returns
/// their keys, sorted: the cascade of deleting a Mesh, in the order its
/// `Deleted` events are published (before the Mesh's own).
pub(super) fn remove_mesh_members(types: &mut Types, mesh: &str) -> Vec<ResourceKey> {
    let mesh = Some(mesh.to_string());
    let mut cascade = Vec::new();
    for (ty, map) in types.iter_mut() {
        if ty.scope() != Scope::Mesh {
            continue;
        }
        let names: Vec<Slot> = map
            .range((mesh.clone(), String::new())..)
            .take_while(|(s, _)| s.0 == mesh)
            .map(|(s, _)| s.clone())
            .collect();
        for s in names {
            map.remove(&s);
            cascade.push(ResourceKey {
                resource_type: *ty,
                mesh: s.0,
                name: s.1,
            });
        }
    }
    cascade.sort();
    cascade
}

/// One page of `request` over `types`: the `list` of the in-memory stores.
pub(super) fn list_page(types: &Types, request: &ListRequest) -> Result<ListPage, StoreError> {
    let scope = request.resource_type.scope();
    let start = match &request.offset {
        Some(o) => Some(decode_offset(o, scope)?),
        None => None,
    };
    let Some(all) = types.get(&request.resource_type) else {
        return Ok(ListPage {
            items: Vec::new(),
            total: 0,
            next_offset: None,
        });
    };
    let in_scope = |s: &Slot| match (&request.mesh, scope) {
        (Some(m), Scope::Mesh) => s.0.as_deref() == Some(m.as_str()),
        _ => true,
    };
    let total = match (&request.mesh, scope) {
        (Some(_), Scope::Mesh) => all.keys().filter(|s| in_scope(s)).count(),
        _ => all.len(),
    };
    let size = request.page_size.unwrap_or(usize::MAX);
    let mut items = Vec::new();
    let mut next_offset = None;
    let iter: Box<dyn Iterator<Item = (&Slot, &Arc<Resource>)>> = match &start {
        Some(s) => Box::new(all.range(s.clone()..)),
        None => Box::new(all.iter()),
    };
    for (s, r) in iter.filter(|(s, _)| in_scope(s)) {
        if items.len() == size {
            next_offset = Some(encode_offset(s));
            break;
        }
        items.push(r.clone());
    }
    Ok(ListPage {
        items,
        total,
        next_offset,
    })
}

pub(super) fn encode_offset(s: &Slot) -> String {
    let text = format!("{}\n{}", s.0.as_deref().unwrap_or(""), s.1);
    URL_SAFE_NO_PAD.encode(text)
}

pub(super) fn decode_offset(offset: &str, scope: Scope) -> Result<Slot, StoreError> {
    let bad = || StoreError::InvalidOffset(offset.to_string());
    let bytes = URL_SAFE_NO_PAD.decode(offset).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (mesh, name) = text.split_once('\n').ok_or_else(bad)?;
    let mesh = match scope {
        Scope::Mesh => Some(mesh.to_string()),
        Scope::Global => None,
    };
    Ok((mesh, name.to_string()))
}

#[async_trait::async_trait]
impl ResourceStore for MemoryStore {
    async fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>, StoreError> {
        self.read()
            .get(&key.resource_type)
            .and_then(|m| m.get(&slot(key)))
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.clone()))
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage, StoreError> {
        list_page(&self.read(), request)
    }

    async fn create(&self, mut resource: Resource) -> Result<Arc<Resource>, StoreError> {
        let key = resource.key();
        let mut types = self.write();
        let map = types.entry(key.resource_type).or_default();
        let s = slot(&key);
        if map.contains_key(&s) {
            return Err(StoreError::AlreadyExists(key));
        }
        resource.meta.version = Some(self.next_version());
        let resource = Arc::new(resource);
        map.insert(s, resource.clone());
        self.publish(EventKind::Added, key);
        Ok(resource)
    }

    async fn update(&self, mut resource: Resource) -> Result<Arc<Resource>, StoreError> {
        let key = resource.key();
        let expected = resource
            .meta
            .version
            .ok_or_else(|| StoreError::MissingVersion(key.clone()))?;
        let mut types = self.write();
        let stored = types
            .get_mut(&key.resource_type)
            .and_then(|m| m.get_mut(&slot(&key)))
            .ok_or_else(|| StoreError::NotFound(key.clone()))?;
        let actual = stored.meta.version.unwrap_or(Version(0));
        if actual != expected {
            return Err(StoreError::Conflict {
                key,
                expected,
                actual,
            });
        }
        resource.meta.version = Some(self.next_version());
        let resource = Arc::new(resource);
        *stored = resource.clone();
        self.publish(EventKind::Updated, key);
        Ok(resource)
    }

    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
        let mut types = self.write();
        let removed = types
            .get_mut(&key.resource_type)
            .and_then(|m| m.remove(&slot(key)));
        if removed.is_none() {
            return Err(StoreError::NotFound(key.clone()));
        }
        if key.resource_type == ResourceType::Mesh {
            for k in remove_mesh_members(&mut types, &key.name) {
                self.publish(EventKind::Deleted, k);
            }
        }
        self.publish(EventKind::Deleted, key.clone());
        Ok(())
    }

    fn subscribe(&self, types: &[ResourceType]) -> Subscription {
        self.events.subscribe(types)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "conformance")]
    #[tokio::test]
    async fn conforms() {
        super::super::conformance::run(MemoryStore::with_event_capacity).await;
    }

    #[test]
    fn offsets_round_trip_and_reject_garbage() {
        let s = (Some("m".to_string()), "n".to_string());
        assert_eq!(decode_offset(&encode_offset(&s), Scope::Mesh).unwrap(), s);
        assert!(decode_offset("!!!", Scope::Mesh).is_err());
        assert!(decode_offset(&URL_SAFE_NO_PAD.encode("no-newline"), Scope::Mesh).is_err());
    }
}
