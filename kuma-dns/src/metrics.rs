//! Prometheus metrics of the DNS server and the VIP allocator.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::fmt::Write;

/// How a query was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueryResult {
    /// An answer with records.
    NoError,
    /// The name does not exist in the domain.
    NxDomain,
    /// The name exists, but not with the asked type.
    NoData,
    /// The name is outside the domain (or the class is not IN).
    Refused,
    /// The query was malformed.
    FormErr,
    /// The opcode is not QUERY.
    NotImp,
    /// The EDNS version is not 0.
    BadVers,
    /// Not answered at all (not even a DNS header, or a response).
    Dropped,
}

impl QueryResult {
    /// The label value, e.g. `nxdomain`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryResult::NoError => "noerror",
            QueryResult::NxDomain => "nxdomain",
            QueryResult::NoData => "nodata",
            QueryResult::Refused => "refused",
            QueryResult::FormErr => "formerr",
            QueryResult::NotImp => "notimp",
            QueryResult::BadVers => "badvers",
            QueryResult::Dropped => "dropped",
        }
    }

    const ALL: [QueryResult; 8] = [
        QueryResult::NoError,
        QueryResult::NxDomain,
        QueryResult::NoData,
        QueryResult::Refused,
        QueryResult::FormErr,
        QueryResult::NotImp,
        QueryResult::BadVers,
        QueryResult::Dropped,
    ];
}

impl EncodeLabelValue for QueryResult {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: QueryResult,
}

/// Counters and gauges of Kuma DNS; clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct DnsMetrics {
    queries: Family<ResultLabel, Counter>,
    /// One counter per result, taken out of the family once so the hot
    /// path only does an atomic add.
    by_result: [Counter; 8],
    vips: Gauge,
    unallocated: Gauge,
    exhausted: Counter,
}

impl DnsMetrics {
    /// Fresh metrics, not registered anywhere yet.
    pub fn new() -> Self {
        let queries = Family::<ResultLabel, Counter>::default();
        let by_result =
            QueryResult::ALL.map(|result| queries.get_or_create(&ResultLabel { result }).clone());
        Self {
            queries,
            by_result,
            ..Self::default()
        }
    }

    /// Registers every metric under `dns_` in `registry`, e.g.
    /// `dns_queries_total{result="nxdomain"}`.
    pub fn register(&self, registry: &mut Registry) {
        let dns = registry.sub_registry_with_prefix("dns");
        dns.register(
            "queries",
            "DNS queries answered, by result",
            self.queries.clone(),
        );
        dns.register("vips", "Services that have a VIP", self.vips.clone());
        dns.register(
            "vip_unallocated_services",
            "Services left without a VIP because the CIDR is exhausted",
            self.unallocated.clone(),
        );
        dns.register(
            "vip_exhausted",
            "Allocation rounds that found the VIP CIDR exhausted",
            self.exhausted.clone(),
        );
    }

    /// Counts one query.
    pub fn query(&self, result: QueryResult) {
        // `ALL` lists the variants in declaration order.
        self.by_result[result as usize].inc();
    }

    /// Queries counted with `result` so far.
    pub fn queries(&self, result: QueryResult) -> u64 {
        self.queries.get_or_create(&ResultLabel { result }).get()
    }

    /// Records the outcome of an allocation round.
    pub fn allocation(&self, vips: usize, unallocated: usize) {
        self.vips.set(vips as i64);
        self.unallocated.set(unallocated as i64);
        if unallocated > 0 {
            self.exhausted.inc();
        }
    }

    /// Allocation rounds that found the CIDR exhausted.
    pub fn exhaustions(&self) -> u64 {
        self.exhausted.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_are_encoded() {
        let m = DnsMetrics::new();
        m.query(QueryResult::NxDomain);
        m.query(QueryResult::NxDomain);
        m.allocation(3, 1);
        let mut r = Registry::with_prefix("kuma_cp");
        m.register(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains("kuma_cp_dns_queries_total{result=\"nxdomain\"} 2"),
            "{out}"
        );
        assert!(out.contains("kuma_cp_dns_queries_total{result=\"noerror\"} 0"));
        assert!(out.contains("kuma_cp_dns_vip_exhausted_total 1"));
        assert!(out.contains("kuma_cp_dns_vip_unallocated_services 1"));
        assert_eq!(m.queries(QueryResult::NxDomain), 2);
    }
}
