//! The snapshot cache: the latest snapshot of every connected proxy, with a
//! watch per proxy so its ADS stream wakes up on change. It sits between
//! the reconciler, which publishes snapshots ([`SnapshotCache::set`]), and
//! the stream core ([`crate::stream`]), for which it is the
//! [`ResourceSource`] of ADS.

use crate::resource::Snapshot;
use crate::stream::{ResourceSource, Watch};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// The key of a proxy: `<mesh>.<name>` as Envoy's node id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// The Dataplane's mesh.
    pub mesh: String,
    /// The Dataplane's name.
    pub name: String,
}

impl NodeId {
    /// Parses `<mesh>.<name>`, splitting at the first dot (mesh names
    /// therefore cannot contain dots when used with kuma-dp).
    pub fn parse(id: &str) -> Option<Self> {
        let (mesh, name) = id.split_once('.')?;
        if mesh.is_empty() || name.is_empty() {
            return None;
        }
        Some(Self {
            mesh: mesh.to_string(),
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.mesh, self.name)
    }
}

/// A proxy's current snapshot; `None` until the first one is built.
pub type SnapshotWatch = watch::Receiver<Option<Arc<Snapshot>>>;

impl Watch for SnapshotWatch {
    async fn wait(&mut self) -> bool {
        self.changed().await.is_ok()
    }
}

/// The cache is where ADS streams get their resources: a stream watches
/// its proxy's snapshot.
impl ResourceSource for SnapshotCache {
    type Watch = SnapshotWatch;

    fn watch(&self, node: &NodeId) -> SnapshotWatch {
        SnapshotCache::watch(self, node)
    }
}

/// Latest snapshot per proxy.
#[derive(Debug, Default)]
pub struct SnapshotCache {
    nodes: Mutex<HashMap<NodeId, watch::Sender<Option<Arc<Snapshot>>>>>,
}

impl SnapshotCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<NodeId, watch::Sender<Option<Arc<Snapshot>>>>> {
        // Every critical section is a single map operation; a poisoned lock
        // holds consistent data.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a proxy's snapshot; watchers see it only if it differs.
    pub fn set(&self, node: &NodeId, snapshot: Snapshot) {
        let mut nodes = self.lock();
        let tx = nodes
            .entry(node.clone())
            .or_insert_with(|| watch::channel(None).0);
        tx.send_if_modified(|cur| match cur {
            Some(old) if **old == snapshot => false,
            _ => {
                *cur = Some(Arc::new(snapshot));
                true
            }
        });
    }

    /// The current snapshot of a proxy.
    pub fn get(&self, node: &NodeId) -> Option<Arc<Snapshot>> {
        self.lock().get(node).and_then(|tx| tx.borrow().clone())
    }

    /// A watch on a proxy's snapshot (created empty if unknown).
    pub fn watch(&self, node: &NodeId) -> SnapshotWatch {
        let mut nodes = self.lock();
        nodes
            .entry(node.clone())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Forgets a proxy whose streams are all gone. An entry somebody still
    /// watches (a stream that reconnected meanwhile) is kept.
    pub fn remove(&self, node: &NodeId) {
        let mut nodes = self.lock();
        if nodes.get(node).is_some_and(|tx| tx.receiver_count() == 0) {
            nodes.remove(node);
        }
    }

    /// How many proxies have an entry.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no proxy has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids() {
        let n = NodeId::parse("default.web-1.v2").unwrap();
        assert_eq!((n.mesh.as_str(), n.name.as_str()), ("default", "web-1.v2"));
        assert!(NodeId::parse("nodot").is_none());
        assert!(NodeId::parse(".x").is_none());
        assert_eq!(n.to_string(), "default.web-1.v2");
    }

    #[tokio::test]
    async fn watchers_wake_only_on_change() {
        let cache = SnapshotCache::new();
        let node = NodeId::parse("m.a").unwrap();
        let mut w = cache.watch(&node);
        cache.set(&node, Snapshot::default());
        assert!(w.has_changed().unwrap());
        w.borrow_and_update();
        cache.set(&node, Snapshot::default());
        assert!(!w.has_changed().unwrap());
    }
}
