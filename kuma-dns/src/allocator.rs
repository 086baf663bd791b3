//! VIP allocation over a CIDR: a pure state machine, no I/O.
//!
//! [`VipAllocator::sync`] takes the set of services that exist now and the
//! current time, keeps every existing service's VIP, frees the VIPs of
//! services that are gone (they cool down for the reuse delay before they
//! may be handed out again) and gives new services the next free address,
//! scanning forward from where the previous allocation stopped (next fit),
//! so freed addresses are reused as late as possible.
//!
//! Usable addresses are the hosts of the CIDR: network and broadcast
//! addresses are skipped for prefixes up to /30 (a /30 has two VIPs),
//! a /31 has two and a /32 one.

use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::time::Instant;

/// What one [`VipAllocator::sync`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Services that got a VIP.
    pub assigned: Vec<(String, Ipv4Addr)>,
    /// Services that are gone, with the VIP they freed.
    pub released: Vec<(String, Ipv4Addr)>,
    /// Services left without a VIP because the CIDR is exhausted.
    pub unallocated: Vec<String>,
}

impl Allocation {
    /// Whether the VIP map changed.
    pub fn changed(&self) -> bool {
        !self.assigned.is_empty() || !self.released.is_empty()
    }
}

/// Why [`VipAllocator::restore`] refused a persisted VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreRefused {
    /// The address is not a usable address of the CIDR.
    OutsideCidr,
    /// Another service holds the address.
    Taken,
    /// The service already has another VIP.
    ServiceHasVip,
}

/// Hands out one VIP per service from a CIDR, never twice at once.
#[derive(Debug, Clone)]
pub struct VipAllocator {
    cidr: Ipv4Net,
    first: u32,
    size: u64,
    reuse_delay: Duration,
    by_service: BTreeMap<String, Ipv4Addr>,
    by_vip: HashMap<Ipv4Addr, String>,
    /// Freed addresses still cooling down, oldest first.
    cooling: VecDeque<(Instant, Ipv4Addr)>,
    cooling_set: HashMap<Ipv4Addr, Instant>,
    /// Offset of the next candidate address.
    cursor: u64,
}

impl VipAllocator {
    /// An empty allocator over `cidr`.
    pub fn new(cidr: Ipv4Net, reuse_delay: Duration) -> Self {
        let cidr = cidr.trunc();
        let network = u32::from(cidr.network());
        let (first, size) = match cidr.prefix_len() {
            32 => (network, 1),
            31 => (network, 2),
            p => (network + 1, (1u64 << (32 - p)) - 2),
        };
        Self {
            cidr,
            first,
            size,
            reuse_delay,
            by_service: BTreeMap::new(),
            by_vip: HashMap::new(),
            cooling: VecDeque::new(),
            cooling_set: HashMap::new(),
            cursor: 0,
        }
    }

    /// The range VIPs come from.
    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// How many VIPs the range holds.
    pub fn capacity(&self) -> u64 {
        self.size
    }

    /// The VIP of a service.
    pub fn get(&self, service: &str) -> Option<Ipv4Addr> {
        self.by_service.get(service).copied()
    }

    /// Every service with its VIP.
    pub fn vips(&self) -> &BTreeMap<String, Ipv4Addr> {
        &self.by_service
    }

    /// How many freed VIPs are still cooling down.
    pub fn cooling(&self) -> usize {
        self.cooling_set.len()
    }

    /// When the oldest cooling VIP becomes free again.
    pub fn next_reuse_at(&self) -> Option<Instant> {
        self.cooling.front().map(|(t, _)| *t + self.reuse_delay)
    }

    fn offset(&self, vip: Ipv4Addr) -> Option<u64> {
        let off = u64::from(u32::from(vip)).checked_sub(u64::from(self.first))?;
        (off < self.size).then_some(off)
    }

    fn addr(&self, offset: u64) -> Ipv4Addr {
        // `offset < size <= 2^32 - first`, so this never wraps.
        Ipv4Addr::from(self.first.wrapping_add(offset as u32))
    }

    /// Gives `service` a VIP it held before (loaded from persistence).
    /// Call before the first [`sync`](Self::sync).
    pub fn restore(&mut self, service: &str, vip: Ipv4Addr) -> Result<(), RestoreRefused> {
        let offset = self.offset(vip).ok_or(RestoreRefused::OutsideCidr)?;
        match self.by_service.get(service) {
            Some(v) if *v == vip => return Ok(()),
            Some(_) => return Err(RestoreRefused::ServiceHasVip),
            None => {}
        }
        if self.by_vip.contains_key(&vip) || self.cooling_set.contains_key(&vip) {
            return Err(RestoreRefused::Taken);
        }
        self.by_service.insert(service.to_string(), vip);
        self.by_vip.insert(vip, service.to_string());
        // Continue after the highest restored VIP: freed addresses of the
        // previous run are then reused as late as possible.
        if offset >= self.cursor {
            self.cursor = (offset + 1) % self.size;
        }
        Ok(())
    }

    /// Makes the allocation match `services`: keeps existing VIPs, frees
    /// those of services not in the set and allocates for new ones (in
    /// sorted order, so the result is deterministic).
    pub fn sync<'a, I>(&mut self, services: I, now: Instant) -> Allocation
    where
        I: IntoIterator<Item = &'a str>,
    {
        let wanted: BTreeSet<&str> = services.into_iter().collect();
        let mut out = Allocation {
            released: self.release_unless(|s| wanted.contains(s), now),
            ..Allocation::default()
        };
        for service in wanted {
            if self.by_service.contains_key(service) {
                continue;
            }
            match self.next_free() {
                Some(vip) => {
                    self.by_service.insert(service.to_string(), vip);
                    self.by_vip.insert(vip, service.to_string());
                    out.assigned.push((service.to_string(), vip));
                }
                None => out.unallocated.push(service.to_string()),
            }
        }
        out
    }

    /// Takes over `service -> vip` as another process allocated it (a
    /// persisted map written by the leader): the entry wins over what this
    /// allocator holds. The service's previous VIP, if any, cools down like
    /// a released one (answers may still carry it); a service that held
    /// `vip` here loses it and gets a new one from the next
    /// [`sync`](Self::sync); a cooling `vip` is in use again at once.
    /// Returns whether anything changed; refuses only addresses that are
    /// not usable addresses of the CIDR.
    pub fn adopt(
        &mut self,
        service: &str,
        vip: Ipv4Addr,
        now: Instant,
    ) -> Result<bool, RestoreRefused> {
        let offset = self.offset(vip).ok_or(RestoreRefused::OutsideCidr)?;
        if self.by_service.get(service) == Some(&vip) {
            return Ok(false);
        }
        if let Some(old) = self.by_service.remove(service) {
            self.by_vip.remove(&old);
            self.cool(old, now);
        }
        if let Some(holder) = self.by_vip.remove(&vip) {
            self.by_service.remove(&holder);
        }
        if self.cooling_set.remove(&vip).is_some() {
            self.cooling.retain(|(_, v)| *v != vip);
        }
        self.by_service.insert(service.to_string(), vip);
        self.by_vip.insert(vip, service.to_string());
        if offset >= self.cursor {
            self.cursor = (offset + 1) % self.size;
        }
        Ok(true)
    }

    /// Frees the VIP of every service `keep` rejects (the VIPs cool down
    /// for the reuse delay) and returns those services with their VIPs.
    /// Allocates nothing.
    pub fn release_unless(
        &mut self,
        keep: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Vec<(String, Ipv4Addr)> {
        let gone: Vec<String> = self
            .by_service
            .keys()
            .filter(|s| !keep(s.as_str()))
            .cloned()
            .collect();
        let mut released = Vec::with_capacity(gone.len());
        for service in gone {
            if let Some(vip) = self.by_service.remove(&service) {
                self.by_vip.remove(&vip);
                self.cool(vip, now);
                released.push((service, vip));
            }
        }
        self.expire(now);
        released
    }

    fn cool(&mut self, vip: Ipv4Addr, now: Instant) {
        if self.cooling_set.insert(vip, now).is_some() {
            self.cooling.retain(|(_, v)| *v != vip);
        }
        self.cooling.push_back((now, vip));
    }

    fn expire(&mut self, now: Instant) {
        while let Some((freed, vip)) = self.cooling.front().copied() {
            if now.saturating_duration_since(freed) < self.reuse_delay {
                break;
            }
            self.cooling.pop_front();
            self.cooling_set.remove(&vip);
        }
    }

    fn next_free(&mut self) -> Option<Ipv4Addr> {
        let busy = (self.by_vip.len() + self.cooling_set.len()) as u64;
        if busy >= self.size {
            return None;
        }
        // At most `busy` candidates are taken, so this finds a free one
        // within `busy + 1` steps.
        loop {
            let vip = self.addr(self.cursor);
            self.cursor = (self.cursor + 1) % self.size;
            if !self.by_vip.contains_key(&vip) && !self.cooling_set.contains_key(&vip) {
                return Some(vip);
            }
        }
    }
}

#[cfg(test)]
mod tests;
