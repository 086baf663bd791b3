//! Typed configuration of the DNS server and the VIP allocator.

use crate::error::DnsError;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The TTL of answers and the delay before a freed VIP is handed out again.
pub const DEFAULT_TTL: u32 = 60;

/// Configuration of Kuma DNS (`dnsServer.*` of the control plane).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The domain served, e.g. `mesh` (`dnsServer.domain`).
    pub domain: String,
    /// Where VIPs come from (`dnsServer.CIDR`).
    pub cidr: Ipv4Net,
    /// TTL of A and SOA records, and the SOA negative-caching TTL.
    pub ttl: u32,
    /// How long a freed VIP waits before it may be handed out again. It
    /// equals the TTL so that no client still caches the old answer.
    pub reuse_delay: Duration,
    /// The largest UDP answer this server sends to EDNS(0) clients.
    pub max_udp_payload: u16,
    /// How long an idle TCP connection stays open.
    pub tcp_idle_timeout: Duration,
    /// At most this many TCP connections are served at once.
    pub max_tcp_connections: usize,
    /// At most this many TCP connections from one client address are
    /// served at once; further ones are closed at once.
    pub max_tcp_connections_per_client: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            domain: "mesh".to_string(),
            cidr: Ipv4Net::new(Ipv4Addr::new(240, 0, 0, 0), 4).unwrap_or_default(),
            ttl: DEFAULT_TTL,
            reuse_delay: Duration::from_secs(u64::from(DEFAULT_TTL)),
            // The EDNS buffer size recommended by DNS flag day 2020.
            max_udp_payload: 1232,
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_connections: 1024,
            max_tcp_connections_per_client: 16,
        }
    }
}

impl DnsConfig {
    /// The defaults with another domain and CIDR.
    pub fn new(domain: impl Into<String>, cidr: Ipv4Net) -> Self {
        Self {
            domain: domain.into(),
            cidr,
            ..Self::default()
        }
    }

    /// Checks that the domain is a DNS name and the CIDR has room.
    pub fn validate(&self) -> Result<(), DnsError> {
        crate::handler::domain_name(&self.domain)?;
        if self.max_udp_payload < 512 {
            return Err(DnsError::InvalidConfig {
                field: "maxUdpPayload",
                message: format!("{} is below the DNS minimum of 512", self.max_udp_payload),
            });
        }
        Ok(())
    }
}
