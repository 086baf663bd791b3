//! The `Dataplane` resource type.
//!
//! The original layout (`DataplaneSpec`, `Networking`, `Inbound`,
//! `Outbound`, `Gateway` and [`DataplaneSpec::tag_sets`]) is relied upon by
//! the matcher and xDS; later fields were added beside it.
//!
//! A Dataplane is in exactly one of three modes:
//! - a regular sidecar: one or more `networking.inbound`, no gateway;
//! - a gateway: `networking.gateway`, no inbounds;
//! - a zone ingress: `networking.ingress` with exactly one inbound, no
//!   gateway and no outbounds.

mod networking;
#[cfg(test)]
mod tests;

pub use networking::*;

use super::common::{PROTOCOL_TAG, Tags, validate_port, validate_service_tags};
use super::mesh::MetricsBackend;
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The address an app listens on when `serviceAddress` is not set, and the
/// address an outbound listens on when `address` is not set.
pub const DEFAULT_LOCAL_ADDRESS: &str = "127.0.0.1";

/// Spec of a `Dataplane` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneSpec {
    /// Addresses, inbounds, outbounds, gateway or ingress.
    #[serde(default)]
    pub networking: Networking,
    /// Metrics settings of this proxy, overriding the Mesh's enabled
    /// metrics backend (only `type: prometheus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsBackend>,
    /// Virtual probes: plain-HTTP endpoints that forward to an inbound's
    /// health-check path (for Kubernetes probes under mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,
}

impl DataplaneSpec {
    /// The tag sets policies are matched against: every inbound's tags, or
    /// the gateway's tags.
    pub fn tag_sets(&self) -> Vec<&Tags> {
        let mut sets: Vec<&Tags> = self.networking.inbound.iter().map(|i| &i.tags).collect();
        if let Some(g) = &self.networking.gateway {
            sets.push(&g.tags);
        }
        sets
    }

    /// Whether this Dataplane is a gateway.
    pub fn is_gateway(&self) -> bool {
        self.networking.gateway.is_some()
    }

    /// Whether this Dataplane is a zone ingress.
    pub fn is_ingress(&self) -> bool {
        self.networking.ingress.is_some()
    }

    /// The address other proxies should connect to: `advertisedAddress` if
    /// set, else `address`.
    pub fn reachable_address(&self) -> &str {
        match &self.networking.advertised_address {
            Some(a) if !a.is_empty() => a,
            _ => &self.networking.address,
        }
    }

    /// The address Envoy listens on for `inbound` (its own `address`, else
    /// `networking.address`).
    pub fn inbound_address<'a>(&'a self, inbound: &'a Inbound) -> &'a str {
        match &inbound.address {
            Some(a) if !a.is_empty() => a,
            _ => &self.networking.address,
        }
    }

    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        let net = &self.networking;
        let np = path.field("networking");
        if net.address.is_empty() {
            v.violation(
                &np.field("address"),
                "must be set: the IP address or host name other proxies reach this Dataplane on",
            );
        } else {
            check_ip_or_hostname(&np.field("address"), &net.address, v);
        }
        if let Some(a) = &net.advertised_address {
            check_ip_or_hostname(&np.field("advertisedAddress"), a, v);
        }

        match &net.ingress {
            Some(ingress) => {
                if net.gateway.is_some() {
                    v.violation(&np, "an ingress Dataplane cannot have a gateway: remove `gateway` or `ingress`");
                }
                if !net.outbound.is_empty() {
                    v.violation(&np, "an ingress Dataplane cannot have outbounds: remove `outbound`");
                }
                if net.inbound.len() != 1 {
                    v.violation(
                        &np,
                        format!(
                            "an ingress Dataplane must have exactly one inbound, found {}",
                            net.inbound.len()
                        ),
                    );
                }
                ingress.check(&np.field("ingress"), v);
            }
            None => match (net.inbound.is_empty(), net.gateway.is_some()) {
                (true, false) => v.violation(
                    &np,
                    "must have at least one inbound or a gateway: add `inbound` (a sidecar) or `gateway` (a gateway)",
                ),
                (false, true) => v.violation(
                    &np,
                    "cannot have both inbounds and a gateway: a gateway Dataplane has no inbounds",
                ),
                _ => {}
            },
        }

        let ingress_mode = net.ingress.is_some();
        for (i, inbound) in net.inbound.iter().enumerate() {
            self.check_inbound(inbound, &np.field("inbound").index(i), ingress_mode, v);
        }
        for (i, outbound) in net.outbound.iter().enumerate() {
            outbound.check(&np.field("outbound").index(i), v);
        }
        if let Some(g) = &net.gateway {
            validate_service_tags(&np.field("gateway").field("tags"), &g.tags, v);
        }
        if let Some(tp) = &net.transparent_proxying {
            tp.check(&np.field("transparentProxying"), v);
        }
        if let Some(m) = &self.metrics {
            m.check_dataplane_override(&path.field("metrics"), v);
        }
        if let Some(p) = &self.probes {
            p.check(&path.field("probes"), v);
        }
    }

    fn check_inbound(
        &self,
        inbound: &Inbound,
        p: &FieldPath,
        ingress_mode: bool,
        v: &mut Validator,
    ) {
        validate_port(&p.field("port"), inbound.port, v);
        if let Some(sp) = inbound.service_port {
            validate_port(&p.field("servicePort"), sp, v);
        }
        if let Some(sa) = &inbound.service_address {
            check_ip(&p.field("serviceAddress"), sa, v);
        }
        if let Some(a) = &inbound.address {
            check_ip(&p.field("address"), a, v);
        }
        validate_service_tags(&p.field("tags"), &inbound.tags, v);
        if ingress_mode {
            for (set, name) in [
                (inbound.service_port.is_some(), "servicePort"),
                (inbound.service_address.is_some(), "serviceAddress"),
                (inbound.address.is_some(), "address"),
            ] {
                if set {
                    v.violation(
                        &p.field(name),
                        "cannot be set on the inbound of an ingress Dataplane",
                    );
                }
            }
            if let Some(proto) = inbound.tags.get(PROTOCOL_TAG)
                && proto != "tcp"
            {
                v.violation(
                    &p.field("tags").key(PROTOCOL_TAG),
                    format!(
                        "protocol {proto:?} is not allowed on an ingress inbound: only \"tcp\""
                    ),
                );
            }
        } else {
            let addr = self.inbound_address(inbound);
            let svc_addr = inbound.service_address_or_default();
            let svc_port = inbound.service_port_or_default();
            if same_address(addr, svc_addr) && inbound.port == svc_port {
                v.violation(
                    &p.field("serviceAddress"),
                    format!(
                        "serviceAddress:servicePort ({svc_addr}:{svc_port}, defaults applied) must differ from address:port ({addr}:{}), or the proxy would forward to itself: set a different servicePort or serviceAddress",
                        inbound.port
                    ),
                );
            }
        }
        if let Some(sp) = &inbound.service_probe {
            let pp = p.field("serviceProbe");
            for (d, name) in [(&sp.interval, "interval"), (&sp.timeout, "timeout")] {
                if let Some(d) = d
                    && d.as_duration().is_zero()
                {
                    v.violation(
                        &pp.field(name),
                        format!("duration {d} must be greater than 0"),
                    );
                }
            }
            for (t, name) in [
                (sp.unhealthy_threshold, "unhealthyThreshold"),
                (sp.healthy_threshold, "healthyThreshold"),
            ] {
                if t == Some(0) {
                    v.violation(&pp.field(name), "must be greater than 0");
                }
            }
        }
    }
}

/// Whether `s` is a valid tag value (and so a valid service name).
fn is_tag_value(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

fn same_address(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Whether `s` is a DNS host name: dot-separated labels of letters, digits,
/// `-` and `_`, each 1..=63 long and not starting or ending with `-`.
pub(crate) fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Checks that `value` is an IP address or a DNS host name.
pub(crate) fn check_ip_or_hostname(path: &FieldPath, value: &str, v: &mut Validator) {
    if value.parse::<IpAddr>().is_err() && !is_hostname(value) {
        v.violation(
            path,
            format!("{value:?} is not a valid address: must be an IP address or a DNS host name"),
        );
    }
}

fn check_ip(path: &FieldPath, value: &str, v: &mut Validator) {
    if value.parse::<IpAddr>().is_err() {
        v.violation(
            path,
            format!("{value:?} is not an IP address: must be e.g. 127.0.0.1 or ::1"),
        );
    }
}

/// Checks a `host:port` address (`[v6]:port` for IPv6).
pub(crate) fn check_host_port(path: &FieldPath, value: &str, v: &mut Validator) {
    let hint = "must be HOST:PORT, e.g. example.com:443, 10.0.0.1:5000 or [::1]:5000";
    let Some((host, port)) = value.rsplit_once(':') else {
        v.violation(path, format!("{value:?} has no port: {hint}"));
        return;
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.parse::<std::net::Ipv4Addr>().is_ok() || is_hostname(host),
    };
    if !host_ok {
        v.violation(
            path,
            format!("{value:?} has an invalid host {host:?}: {hint}"),
        );
    }
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => {}
        _ => v.violation(
            path,
            format!("{value:?} has an invalid port {port:?}: must be 1..=65535; {hint}"),
        ),
    }
}
