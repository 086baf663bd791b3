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

use super::common::{
    PROTOCOL_TAG, SERVICE_TAG, Tags, validate_port, validate_protocol_tag, validate_service_tags,
    validate_tags,
};
use super::mesh::MetricsBackend;
use crate::duration::KumaDuration;
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

/// `networking` of a Dataplane.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Networking {
    /// The IP (or host name) other proxies reach this one on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// A publicly routable address other proxies should use instead of
    /// `address` (Envoy still binds to `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_address: Option<String>,
    /// Inbounds: services behind this proxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<Inbound>,
    /// Outbounds: services this proxy's app calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<Outbound>,
    /// Set when the Dataplane is a gateway (no inbounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Gateway>,
    /// Set when the Dataplane is a zone ingress (exactly one inbound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Ingress>,
    /// Set when the app's traffic is redirected to the proxy by iptables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparent_proxying: Option<TransparentProxying>,
}

/// One inbound of a Dataplane.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inbound {
    /// Port Envoy listens on, on the Dataplane's address.
    #[serde(default)]
    pub port: u32,
    /// Port the app listens on (default: `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_port: Option<u32>,
    /// Address the app listens on (default `127.0.0.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_address: Option<String>,
    /// Address Envoy listens on for this inbound (default:
    /// `networking.address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Tags of the service, with `kuma.io/service`.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// Readiness, set by the control plane on Kubernetes; `None` means ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Active probing of the app's port by the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_probe: Option<ServiceProbe>,
}

/// `health` of an inbound.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    /// Whether the app behind the inbound is ready for traffic.
    #[serde(default)]
    pub ready: bool,
}

/// `serviceProbe` of an inbound: TCP probing of the app.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceProbe {
    /// Time between two probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<KumaDuration>,
    /// How long to wait for a probe's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<KumaDuration>,
    /// Failed probes in a row before the app counts as unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Passed probes in a row before the app counts as healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Probe by opening a TCP connection (the only checker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
}

/// `serviceProbe.tcp`: no settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {}

/// One outbound of a Dataplane.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outbound {
    /// Local address the app calls (default `127.0.0.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Local port the app calls.
    #[serde(default)]
    pub port: u32,
    /// Deprecated: the service name; use `tags["kuma.io/service"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Tags of the service called, with `kuma.io/service`.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
}

/// `networking.gateway` of a gateway Dataplane.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// Tags of the gateway, with `kuma.io/service`.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
}

/// `networking.ingress` of a zone-ingress Dataplane.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ingress {
    /// The services reachable through this ingress (filled in by the
    /// control plane).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub available_services: Vec<AvailableService>,
    /// Address other zones reach the ingress on (set with `publicPort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<String>,
    /// Port other zones reach the ingress on (set with `publicAddress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_port: Option<u32>,
}

/// One entry of `networking.ingress.availableServices`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AvailableService {
    /// Tags of the service instances, with `kuma.io/service`.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// How many instances have these tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// The mesh of the instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
}

/// `networking.transparentProxying`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransparentProxying {
    /// Port all inbound (IPv4) traffic is redirected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_port_inbound: Option<u32>,
    /// Port all outbound traffic is redirected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_port_outbound: Option<u32>,
    /// Services reached directly by IP:port rather than through their
    /// virtual IP (`*` for all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub direct_access_services: Vec<String>,
    /// Port all inbound IPv6 traffic is redirected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_port_inbound_v6: Option<u32>,
}

/// `probes` of a Dataplane.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probes {
    /// The plain-HTTP port the virtual probes listen on.
    #[serde(default)]
    pub port: u32,
    /// The probe endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<ProbeEndpoint>,
}

/// One entry of `probes.endpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeEndpoint {
    /// The inbound port the probe is forwarded to.
    #[serde(default)]
    pub inbound_port: u32,
    /// The path on the inbound the probe is forwarded to.
    #[serde(default)]
    pub inbound_path: String,
    /// The path the virtual probe answers on.
    #[serde(default)]
    pub path: String,
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

impl Inbound {
    /// The service name (`kuma.io/service` tag).
    pub fn service(&self) -> Option<&str> {
        self.tags.get(SERVICE_TAG).map(String::as_str)
    }

    /// The address the app listens on (`serviceAddress`, default
    /// `127.0.0.1`).
    pub fn service_address_or_default(&self) -> &str {
        match &self.service_address {
            Some(a) if !a.is_empty() => a,
            _ => DEFAULT_LOCAL_ADDRESS,
        }
    }

    /// The port the app listens on (`servicePort`, default `port`).
    pub fn service_port_or_default(&self) -> u32 {
        match self.service_port {
            Some(p) if p != 0 => p,
            _ => self.port,
        }
    }

    /// Whether the inbound is ready (no `health`, or `health.ready`).
    pub fn is_ready(&self) -> bool {
        self.health.as_ref().is_none_or(|h| h.ready)
    }
}

impl Outbound {
    /// The service called: the `kuma.io/service` tag, else the deprecated
    /// `service` field.
    pub fn service(&self) -> Option<&str> {
        self.tags
            .get(SERVICE_TAG)
            .map(String::as_str)
            .or(self.service.as_deref())
            .filter(|s| !s.is_empty())
    }

    /// The local address the app calls (`address`, default `127.0.0.1`).
    pub fn address_or_default(&self) -> &str {
        match &self.address {
            Some(a) if !a.is_empty() => a,
            _ => DEFAULT_LOCAL_ADDRESS,
        }
    }

    fn check(&self, p: &FieldPath, v: &mut Validator) {
        validate_port(&p.field("port"), self.port, v);
        if let Some(a) = &self.address {
            check_ip(&p.field("address"), a, v);
        }
        validate_tags(&p.field("tags"), &self.tags, false, v);
        validate_protocol_tag(&p.field("tags"), &self.tags, v);
        if let Some(s) = &self.service
            && !is_tag_value(s)
        {
            v.violation(
                &p.field("service"),
                format!("service {s:?} is invalid: must be non-empty and use only letters, digits, '.', '-', '_' and ':'"),
            );
        }
        if !self.tags.contains_key(SERVICE_TAG) && self.service.is_none() {
            v.violation(
                &p.field("tags").key(SERVICE_TAG),
                "tag has to exist: name the service this outbound calls",
            );
        }
    }
}

impl Ingress {
    fn check(&self, p: &FieldPath, v: &mut Validator) {
        match (&self.public_address, self.public_port) {
            (Some(_), None) => v.violation(
                &p.field("publicPort"),
                "must be set together with publicAddress",
            ),
            (None, Some(_)) => v.violation(
                &p.field("publicAddress"),
                "must be set together with publicPort",
            ),
            _ => {}
        }
        if let Some(a) = &self.public_address {
            check_ip_or_hostname(&p.field("publicAddress"), a, v);
        }
        if let Some(port) = self.public_port {
            validate_port(&p.field("publicPort"), port, v);
        }
        for (i, s) in self.available_services.iter().enumerate() {
            let sp = p.field("availableServices").index(i);
            validate_service_tags(&sp.field("tags"), &s.tags, v);
            if let Some(m) = &s.mesh {
                super::common::validate_name(&sp.field("mesh"), m, v);
            }
        }
    }
}

impl TransparentProxying {
    fn check(&self, p: &FieldPath, v: &mut Validator) {
        for (port, name) in [
            (self.redirect_port_inbound, "redirectPortInbound"),
            (self.redirect_port_outbound, "redirectPortOutbound"),
        ] {
            match port {
                Some(port) => validate_port(&p.field(name), port, v),
                None => v.violation(
                    &p.field(name),
                    "must be set: the port iptables redirects this traffic to",
                ),
            }
        }
        if let Some(port) = self.redirect_port_inbound_v6 {
            validate_port(&p.field("redirectPortInboundV6"), port, v);
        }
        if let (Some(i), Some(o)) = (self.redirect_port_inbound, self.redirect_port_outbound)
            && i == o
        {
            v.violation(
                &p.field("redirectPortOutbound"),
                format!("port {o} is also redirectPortInbound: inbound and outbound traffic need different ports"),
            );
        }
        for (i, s) in self.direct_access_services.iter().enumerate() {
            if s != "*" && !is_tag_value(s) {
                v.violation(
                    &p.field("directAccessServices").index(i),
                    format!("{s:?} is not a service name: use a kuma.io/service value or \"*\" for all services"),
                );
            }
        }
    }
}

impl Probes {
    fn check(&self, p: &FieldPath, v: &mut Validator) {
        validate_port(&p.field("port"), self.port, v);
        for (i, e) in self.endpoints.iter().enumerate() {
            let ep = p.field("endpoints").index(i);
            validate_port(&ep.field("inboundPort"), e.inbound_port, v);
            for (path, name) in [(&e.inbound_path, "inboundPath"), (&e.path, "path")] {
                if !path.starts_with('/') || path.contains(char::is_whitespace) {
                    v.violation(
                        &ep.field(name),
                        format!(
                            "{path:?} is not a URL path: must start with '/' and contain no spaces"
                        ),
                    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Resource;

    fn parse(yaml: &str) -> Resource {
        Resource::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    /// Parses, validates and checks the document reads back unchanged.
    fn round_trip(yaml: &str) -> Resource {
        let res = parse(yaml);
        res.validate().unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let out = res.to_yaml();
        assert_eq!(Resource::from_yaml(&out).unwrap(), res, "{out}");
        let a: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        let b: serde_json::Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(a, b, "input:\n{yaml}\noutput:\n{out}");
        res
    }

    fn fields(yaml: &str) -> Vec<String> {
        match parse(yaml).validate() {
            Ok(()) => vec![],
            Err(e) => e.violations.into_iter().map(|v| v.field).collect(),
        }
    }

    fn decode_error_field(yaml: &str) -> String {
        Resource::from_yaml(yaml).unwrap_err().violations()[0]
            .field
            .clone()
    }

    const HEAD: &str = "type: Dataplane\nmesh: default\nname: dp-1\n";

    /// A valid Dataplane with `body` (indented under the top level) appended.
    fn dp(body: &str) -> String {
        format!("{HEAD}{body}")
    }

    const PLAIN: &str = r#"type: Dataplane
mesh: default
name: web-01
networking:
  address: 192.168.0.1
  inbound:
  - port: 11011
    servicePort: 11012
    tags:
      kuma.io/service: backend
      kuma.io/protocol: http
      version: "2.0"
      env: production
  outbound:
  - port: 33033
    tags:
      kuma.io/service: database
  - port: 44044
    tags:
      kuma.io/service: user
"#;

    #[test]
    fn plain_dataplane() {
        let res = round_trip(PLAIN);
        let spec = res.spec_as::<DataplaneSpec>().unwrap();
        assert_eq!(spec.tag_sets().len(), 1);
        let inbound = &spec.networking.inbound[0];
        assert_eq!(inbound.service(), Some("backend"));
        assert_eq!(inbound.service_address_or_default(), "127.0.0.1");
        assert_eq!(inbound.service_port_or_default(), 11012);
        assert_eq!(spec.inbound_address(inbound), "192.168.0.1");
        assert!(inbound.is_ready());
        assert_eq!(spec.networking.outbound[1].service(), Some("user"));
        assert_eq!(
            spec.networking.outbound[1].address_or_default(),
            "127.0.0.1"
        );
        assert!(!spec.is_gateway() && !spec.is_ingress());
    }

    #[test]
    fn gateway_dataplane() {
        let res = round_trip(
            r#"type: Dataplane
mesh: default
name: kong-01
networking:
  address: 10.0.0.1
  gateway:
    tags:
      kuma.io/service: kong
  outbound:
  - port: 33033
    tags:
      kuma.io/service: backend
"#,
        );
        let spec = res.spec_as::<DataplaneSpec>().unwrap();
        assert!(spec.is_gateway());
        assert_eq!(spec.tag_sets()[0][&"kuma.io/service".to_string()], "kong");
    }

    #[test]
    fn ingress_dataplane() {
        let res = round_trip(
            r#"type: Dataplane
mesh: default
name: dp-ingress
networking:
  address: 192.168.0.1
  ingress:
    publicAddress: 10.0.0.1
    publicPort: 10001
    availableServices:
    - tags:
        kuma.io/service: backend
        version: v1
      instances: 2
      mesh: default
  inbound:
  - port: 10001
    tags:
      kuma.io/service: ingress
"#,
        );
        assert!(res.spec_as::<DataplaneSpec>().unwrap().is_ingress());
    }

    #[test]
    fn transparent_proxying_dataplane() {
        round_trip(
            r#"type: Dataplane
mesh: default
name: demo-client-1
networking:
  address: 10.0.0.5
  advertisedAddress: 34.1.2.3
  inbound:
  - port: 20000
    servicePort: 10000
    serviceAddress: 127.0.0.1
    address: 10.0.0.5
    tags:
      kuma.io/service: demo-client
    health:
      ready: true
    serviceProbe:
      interval: 10s
      timeout: 2s
      unhealthyThreshold: 3
      healthyThreshold: 1
      tcp: {}
  outbound:
  - address: 127.0.0.2
    port: 6379
    service: redis
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
    directAccessServices:
    - backend
    - "*"
    redirectPortInboundV6: 15010
metrics:
  type: prometheus
  conf:
    port: 1234
    path: /non-standard-path
    skipMTLS: true
probes:
  port: 9000
  endpoints:
  - inboundPort: 10000
    inboundPath: /healthz
    path: /10000/healthz
"#,
        );
    }

    #[test]
    fn address_rules() {
        assert_eq!(
            fields(&dp(
                "networking:\n  inbound:\n  - port: 80\n    servicePort: 8080\n    tags: {kuma.io/service: a}\n"
            )),
            ["networking.address"]
        );
        assert_eq!(
            fields(&dp(
                "networking:\n  address: 'not an address'\n  gateway: {tags: {kuma.io/service: a}}\n"
            )),
            ["networking.address"]
        );
        assert_eq!(
            fields(&dp(
                "networking:\n  address: gw.local\n  advertisedAddress: 'a b'\n  gateway: {tags: {kuma.io/service: a}}\n"
            )),
            ["networking.advertisedAddress"]
        );
    }

    #[test]
    fn inbound_port_rules() {
        let f = fields(&dp(
            "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 0\n    servicePort: 70000\n    tags: {kuma.io/service: a}\n",
        ));
        assert_eq!(
            f,
            [
                "networking.inbound[0].port",
                "networking.inbound[0].servicePort"
            ]
        );
    }

    #[test]
    fn inbound_address_rules() {
        let f = fields(&dp(
            "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    serviceAddress: localhost\n    address: host.local\n    tags: {kuma.io/service: a}\n",
        ));
        assert_eq!(
            f,
            [
                "networking.inbound[0].serviceAddress",
                "networking.inbound[0].address"
            ]
        );
    }

    #[test]
    fn inbound_tag_rules() {
        let f = fields(&dp(
            "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    servicePort: 81\n    tags: {version: '*'}\n  - port: 82\n    servicePort: 83\n    tags: {kuma.io/service: b, kuma.io/protocol: smtp}\n",
        ));
        assert_eq!(
            f,
            [
                r#"networking.inbound[0].tags["version"]"#,
                r#"networking.inbound[0].tags["kuma.io/service"]"#,
                r#"networking.inbound[1].tags["kuma.io/protocol"]"#,
            ]
        );
    }

    #[test]
    fn inbound_must_not_forward_to_itself() {
        // Defaults: serviceAddress 127.0.0.1, servicePort = port.
        let f = fields(&dp(
            "networking:\n  address: 127.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n",
        ));
        assert_eq!(f, ["networking.inbound[0].serviceAddress"]);
        let f = fields(&dp(
            "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    serviceAddress: 10.0.0.1\n    servicePort: 80\n    tags: {kuma.io/service: a}\n",
        ));
        assert_eq!(f, ["networking.inbound[0].serviceAddress"]);
        let f = fields(&dp(
            "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    address: 127.0.0.1\n    tags: {kuma.io/service: a}\n",
        ));
        assert_eq!(f, ["networking.inbound[0].serviceAddress"]);
        // Different address, or different port, is fine.
        assert!(fields(&dp("networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n")).is_empty());
        assert!(fields(&dp("networking:\n  address: 127.0.0.1\n  inbound:\n  - port: 80\n    servicePort: 8080\n    tags: {kuma.io/service: a}\n")).is_empty());
    }

    #[test]
    fn service_probe_rules() {
        let f = fields(&dp(
            "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n    serviceProbe: {interval: 0s, timeout: 0s, unhealthyThreshold: 0, healthyThreshold: 0}\n",
        ));
        let p = "networking.inbound[0].serviceProbe";
        assert_eq!(
            f,
            [
                format!("{p}.interval"),
                format!("{p}.timeout"),
                format!("{p}.unhealthyThreshold"),
                format!("{p}.healthyThreshold")
            ]
        );
        assert_eq!(
            decode_error_field(&dp(
                "networking:\n  inbound:\n  - port: 80\n    serviceProbe: {interval: soon}\n"
            )),
            "networking.inbound[0].serviceProbe.interval"
        );
    }

    #[test]
    fn outbound_rules() {
        let f = fields(&dp(
            "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n  outbound:\n  - port: 1000\n    tags: {kuma.io/service: ok}\n  - port: 1001\n    service: legacy\n  - port: 0\n    address: localhost\n    tags: {version: v1}\n  - port: 1003\n    service: 'bad name'\n  - port: 1004\n    tags: {kuma.io/service: x, kuma.io/protocol: ftp}\n",
        ));
        assert_eq!(
            f,
            [
                "networking.outbound[2].port",
                "networking.outbound[2].address",
                r#"networking.outbound[2].tags["kuma.io/service"]"#,
                "networking.outbound[3].service",
                r#"networking.outbound[4].tags["kuma.io/protocol"]"#,
            ]
        );
    }

    #[test]
    fn gateway_rules() {
        let f = fields(&dp(
            "networking:\n  address: 10.0.0.1\n  gateway:\n    tags: {version: v1}\n",
        ));
        assert_eq!(f, [r#"networking.gateway.tags["kuma.io/service"]"#]);
        let f = fields(&dp(
            "networking:\n  address: 10.0.0.1\n  gateway:\n    tags: {kuma.io/service: 'a*'}\n",
        ));
        assert_eq!(f, [r#"networking.gateway.tags["kuma.io/service"]"#]);
    }

    #[test]
    fn inbounds_xor_gateway() {
        assert_eq!(
            fields(&dp("networking:\n  address: 10.0.0.1\n")),
            ["networking"]
        );
        assert_eq!(
            fields(&dp(
                "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n  gateway:\n    tags: {kuma.io/service: gw}\n"
            )),
            ["networking"]
        );
    }

    #[test]
    fn ingress_rules() {
        let f = fields(&dp(
            "networking:\n  address: 10.0.0.1\n  ingress: {publicAddress: 1.1.1.1}\n  gateway: {tags: {kuma.io/service: gw}}\n  outbound:\n  - port: 1000\n    tags: {kuma.io/service: x}\n",
        ));
        assert_eq!(
            f,
            [
                "networking",
                "networking",
                "networking",
                "networking.ingress.publicPort"
            ]
        );
        let f = fields(&dp(
            "networking:\n  address: 10.0.0.1\n  ingress:\n    publicPort: 0\n    availableServices:\n    - tags: {version: v1}\n      mesh: Bad\n  inbound:\n  - port: 10001\n    servicePort: 1\n    serviceAddress: 1.1.1.1\n    address: 10.0.0.1\n    tags: {kuma.io/service: ingress, kuma.io/protocol: http}\n",
        ));
        assert_eq!(
            f,
            [
                "networking.ingress.publicAddress",
                "networking.ingress.publicPort",
                r#"networking.ingress.availableServices[0].tags["kuma.io/service"]"#,
                "networking.ingress.availableServices[0].mesh",
                "networking.inbound[0].servicePort",
                "networking.inbound[0].serviceAddress",
                "networking.inbound[0].address",
                r#"networking.inbound[0].tags["kuma.io/protocol"]"#,
            ]
        );
        let f = fields(&dp(
            "networking:\n  address: 10.0.0.1\n  ingress: {publicAddress: 'x y', publicPort: 99999}\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: i}\n  - port: 2\n    tags: {kuma.io/service: i}\n",
        ));
        assert_eq!(
            f,
            [
                "networking",
                "networking.ingress.publicAddress",
                "networking.ingress.publicPort"
            ]
        );
    }

    #[test]
    fn transparent_proxying_rules() {
        let base = "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n  transparentProxying:\n";
        let tp = "networking.transparentProxying";
        assert_eq!(
            fields(&dp(&format!(
                "{base}    redirectPortInbound: 0\n    redirectPortOutbound: 70000\n    redirectPortInboundV6: 0\n"
            ))),
            [
                format!("{tp}.redirectPortInbound"),
                format!("{tp}.redirectPortOutbound"),
                format!("{tp}.redirectPortInboundV6")
            ]
        );
        assert_eq!(
            fields(&dp(&format!(
                "{base}    directAccessServices: ['', 'a b']\n"
            ))),
            [
                format!("{tp}.redirectPortInbound"),
                format!("{tp}.redirectPortOutbound"),
                format!("{tp}.directAccessServices[0]"),
                format!("{tp}.directAccessServices[1]")
            ]
        );
        assert_eq!(
            fields(&dp(&format!(
                "{base}    redirectPortInbound: 15001\n    redirectPortOutbound: 15001\n"
            ))),
            [format!("{tp}.redirectPortOutbound")]
        );
    }

    #[test]
    fn metrics_and_probes_rules() {
        let base = "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n";
        assert_eq!(
            fields(&dp(&format!("{base}metrics:\n  type: statsd\n"))),
            ["metrics.type"]
        );
        assert_eq!(
            fields(&dp(&format!(
                "{base}metrics:\n  type: prometheus\n  conf: {{port: 0, bogus: 1}}\n"
            ))),
            ["metrics.conf.bogus"]
        );
        assert_eq!(
            fields(&dp(&format!(
                "{base}metrics:\n  type: prometheus\n  conf: {{port: 0}}\n"
            ))),
            ["metrics.conf.port"]
        );
        assert_eq!(
            fields(&dp(&format!(
                "{base}probes:\n  port: 0\n  endpoints:\n  - inboundPort: 70000\n    inboundPath: healthz\n    path: ''\n"
            ))),
            [
                "probes.port",
                "probes.endpoints[0].inboundPort",
                "probes.endpoints[0].inboundPath",
                "probes.endpoints[0].path"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        for (body, path) in [
            (
                "networking:\n  inbound:\n  - port: 80\n    bogus: 1\n",
                "networking.inbound[0].bogus",
            ),
            (
                "networking:\n  outbound:\n  - port: 80\n    bogus: 1\n",
                "networking.outbound[0].bogus",
            ),
            ("networking:\n  bogus: 1\n", "networking.bogus"),
            (
                "networking:\n  gateway: {bogus: 1}\n",
                "networking.gateway.bogus",
            ),
            (
                "networking:\n  ingress: {bogus: 1}\n",
                "networking.ingress.bogus",
            ),
            (
                "networking:\n  transparentProxying: {bogus: 1}\n",
                "networking.transparentProxying.bogus",
            ),
            (
                "networking:\n  inbound:\n  - health: {bogus: 1}\n",
                "networking.inbound[0].health.bogus",
            ),
            ("probes: {bogus: 1}\n", "probes.bogus"),
            ("bogus: 1\n", "bogus"),
        ] {
            assert_eq!(decode_error_field(&dp(body)), path, "{body}");
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let yaml = dp(r#"networking:
  inbound:
  - port: 0
    tags:
      version: v1
  - port: 8080
    servicePort: 8080
    serviceAddress: 127.0.0.1
    address: 127.0.0.1
    tags:
      kuma.io/service: web
      kuma.io/protocol: smtp
  outbound:
  - port: 70000
    tags:
      kuma.io/service: db
  - port: 1234
  gateway:
    tags:
      kuma.io/service: gw
"#);
        let f = fields(&yaml);
        assert_eq!(
            f,
            [
                "networking.address",
                "networking",
                "networking.inbound[0].port",
                r#"networking.inbound[0].tags["kuma.io/service"]"#,
                r#"networking.inbound[1].tags["kuma.io/protocol"]"#,
                "networking.inbound[1].serviceAddress",
                "networking.outbound[0].port",
                r#"networking.outbound[1].tags["kuma.io/service"]"#,
            ]
        );
    }

    #[test]
    fn host_port() {
        let check = |s: &str| {
            let mut v = Validator::new();
            check_host_port(&FieldPath::from("a"), s, &mut v);
            v.is_ok()
        };
        assert!(check("example.com:443"));
        assert!(check("10.0.0.1:5000"));
        assert!(check("[::1]:5000"));
        for bad in [
            "example.com",
            "example.com:0",
            ":80",
            "a b:80",
            "::1:80",
            "host:x",
            "host:70000",
        ] {
            assert!(!check(bad), "{bad}");
        }
        assert!(is_hostname("kuma-cp.kuma-system.svc"));
        assert!(!is_hostname("-a.b"));
    }
}
