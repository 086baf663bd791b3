//! Sharing of identical resources between the proxies of a mesh: encoded
//! listeners and clusters ([`Interner`]) and EDS cluster references
//! ([`ClusterRefs`]).

use crate::generate::ClusterRef;
use crate::resource::{XdsResource, XdsType};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Weak};

/// Shares byte-identical resources between proxies.
///
/// Generation encodes every proxy's listeners and clusters afresh, but many
/// are identical across proxies: a service's cluster, the outbound
/// listeners of a service's instances (unless they carry the proxy's own
/// address, as access-log formats do). Interned, such a resource is stored
/// once and proxies hold an `Arc`. Entries are weak, so a resource lives
/// only as long as a snapshot uses it; one slot per content hash keeps an
/// entry at 16 bytes for the many resources that are never shared.
#[derive(Debug, Default)]
pub(super) struct Interner {
    /// (type, content hash) -> the resource with that hash. On a hash
    /// collision (told apart by name and bytes) the second resource simply
    /// stays unshared.
    by_hash: HashMap<(XdsType, u64), Weak<XdsResource>, BuildHasherDefault<Prehashed>>,
    /// Entries after the last sweep.
    swept: usize,
}

impl Interner {
    /// The shared copy of `r`: an existing identical resource, or `r`
    /// itself, remembered for the next ones.
    pub(super) fn intern(&mut self, r: Arc<XdsResource>) -> Arc<XdsResource> {
        let slot = self.by_hash.entry((r.xds_type, r.hash)).or_default();
        match slot.upgrade() {
            // Shared already (a cluster from the batch's cache).
            Some(s) if Arc::ptr_eq(&s, &r) => return s,
            Some(s) if s.name == r.name && s.body == r.body => return s,
            Some(_) => return r,
            None => *slot = Arc::downgrade(&r),
        }
        // Dead entries are dropped once they may make up half the map, so
        // sweeping costs O(1) amortised per insertion.
        if self.by_hash.len() > 2 * self.swept.max(1024) {
            self.by_hash.retain(|_, w| w.strong_count() > 0);
            self.swept = self.by_hash.len();
        }
        r
    }
}

/// A hasher for keys that are hashes already: it keeps the last `u64`
/// written (the content hash), mixed with the rest by xor.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// Shares the [`ClusterRef`]s of proxies (every proxy calling a service
/// names the same cluster), dropping those no proxy uses any more.
#[derive(Debug, Default)]
pub(super) struct ClusterRefs {
    set: HashSet<Arc<ClusterRef>>,
    /// Entries after the last sweep.
    swept: usize,
}

impl ClusterRefs {
    pub(super) fn share(&mut self, c: ClusterRef) -> Arc<ClusterRef> {
        if let Some(shared) = self.set.get(&c) {
            return shared.clone();
        }
        if self.set.len() > 2 * self.swept.max(64) {
            self.set.retain(|c| Arc::strong_count(c) > 1);
            self.swept = self.set.len();
        }
        let c = Arc::new(c);
        self.set.insert(c.clone());
        c
    }
}
