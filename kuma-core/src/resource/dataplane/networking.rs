//! `networking` of a Dataplane: inbounds, outbounds, gateway, ingress,
//! transparent proxying and probes, with their rules.

use super::{DEFAULT_LOCAL_ADDRESS, check_ip, check_ip_or_hostname, is_tag_value};
use crate::duration::KumaDuration;
use crate::resource::common::{
    SERVICE_TAG, Tags, validate_port, validate_protocol_tag, validate_service_tags, validate_tags,
};
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

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

    pub(super) fn check(&self, p: &FieldPath, v: &mut Validator) {
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
    pub(super) fn check(&self, p: &FieldPath, v: &mut Validator) {
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
                crate::resource::common::validate_name(&sp.field("mesh"), m, v);
            }
        }
    }
}

impl TransparentProxying {
    pub(super) fn check(&self, p: &FieldPath, v: &mut Validator) {
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
    pub(super) fn check(&self, p: &FieldPath, v: &mut Validator) {
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
