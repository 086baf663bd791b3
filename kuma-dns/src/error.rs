//! The one error type of this crate.

use kuma_core::resource::DnsVipsError;
use kuma_core::store::StoreError;

/// Why a DNS or VIP operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The configuration cannot be used (bad domain, CIDR without room).
    #[error("invalid DNS configuration: {field}: {message}")]
    InvalidConfig {
        /// The configuration key, e.g. `dnsServer.domain`.
        field: &'static str,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// Every address of the CIDR is taken (or waiting out its reuse delay).
    #[error("the VIP range {cidr} is exhausted: {unallocated} service(s) have no VIP")]
    Exhausted {
        /// The configured range.
        cidr: ipnet::Ipv4Net,
        /// How many services are left without a VIP.
        unallocated: usize,
    },
    /// A persisted VIP map could not be read.
    #[error("persisted VIPs of mesh {mesh:?} are not valid")]
    BadPersistedVips {
        /// The mesh whose map is broken.
        mesh: String,
        /// What is wrong with it.
        #[source]
        source: DnsVipsError,
    },
    /// The resource store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A socket failed.
    #[error("DNS socket error: {0}")]
    Io(#[from] std::io::Error),
}
