//! The VIP table the DNS server reads on every query.
//!
//! The controller publishes a new immutable snapshot whenever the VIP map
//! changes; readers load the current one without locking ([`arc_swap`]),
//! so answers follow changes at once and queries never wait for writers.

use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// One published state of the VIP map, keyed by lowercase service name.
#[derive(Debug, Default)]
pub struct VipSnapshot {
    names: HashMap<Box<str>, Ipv4Addr>,
    serial: u32,
}

impl VipSnapshot {
    /// The VIP of a service, by its lowercase name.
    pub fn get(&self, lowercase_service: &str) -> Option<Ipv4Addr> {
        self.names.get(lowercase_service).copied()
    }

    /// How many names resolve.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no name resolves.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Grows with every publication; used as the SOA serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }
}

/// A cheaply cloned handle on the current [`VipSnapshot`].
#[derive(Debug, Clone, Default)]
pub struct VipTable {
    current: Arc<ArcSwap<VipSnapshot>>,
}

impl VipTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<VipSnapshot> {
        self.current.load_full()
    }

    /// The VIP of a service (any case).
    pub fn lookup(&self, service: &str) -> Option<Ipv4Addr> {
        self.current.load().get(&service.to_ascii_lowercase())
    }

    /// The VIP of a service by its lowercase name, without taking a
    /// reference on the snapshot (the per-query lookup).
    pub fn lookup_lowercase(&self, lowercase_service: &str) -> Option<Ipv4Addr> {
        self.current.load().get(lowercase_service)
    }

    /// Replaces the table with `vips` (service -> VIP). DNS names are case
    /// insensitive: when two services differ only in case, the one that
    /// sorts first answers.
    pub fn publish(&self, vips: &BTreeMap<String, Ipv4Addr>) {
        let mut names = HashMap::with_capacity(vips.len());
        for (service, vip) in vips {
            names
                .entry(service.to_ascii_lowercase().into_boxed_str())
                .or_insert(*vip);
        }
        let serial = self.current.load().serial.wrapping_add(1);
        self.current.store(Arc::new(VipSnapshot { names, serial }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_follow_publications() {
        let table = VipTable::new();
        assert_eq!(table.lookup("backend"), None);
        let mut vips = BTreeMap::new();
        vips.insert("Backend".to_string(), Ipv4Addr::new(240, 0, 0, 1));
        vips.insert("backend".to_string(), Ipv4Addr::new(240, 0, 0, 2));
        table.publish(&vips);
        assert_eq!(table.lookup("BACKEND"), Some(Ipv4Addr::new(240, 0, 0, 1)));
        assert_eq!(table.load().len(), 1);
        let s1 = table.load().serial();
        table.publish(&BTreeMap::new());
        assert_eq!(table.lookup("backend"), None);
        assert_eq!(table.load().serial(), s1 + 1);
    }
}
