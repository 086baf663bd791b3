//! The `Config` resource type: internal configuration data of the control
//! plane (for example the DNS VIP map), stored as text.
//!
//! The DNS VIP map is defined here, once: kuma-dns writes it and kuma-xds
//! reads it (the virtual outbound listeners of transparent proxies), and
//! kuma-xds does not depend on kuma-dns (which brings a DNS server and
//! `hickory-proto`), so the typed view lives next to the resource both
//! crates already share. See [`MeshVips`].

use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The DNS VIPs of one mesh: service -> VIP. Persisted as the Config
/// [`ConfigSpec::dns_vips_name`] whose text is a JSON map of service to
/// dotted IPv4 address (as Kuma does); read with [`ConfigSpec::dns_vips`]
/// and written with [`ConfigSpec::from_dns_vips`].
pub type MeshVips = BTreeMap<String, Ipv4Addr>;

/// Why the text of a DNS VIP Config is not a VIP map.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsVipsError {
    /// The text is not a JSON map of strings.
    #[error("not a JSON map of strings")]
    NotAMap(#[source] serde_json::Error),
    /// A service's value is not an IPv4 address.
    #[error("{value:?} of service {service:?} is not an IPv4 address")]
    NotIpv4 {
        /// The service.
        service: String,
        /// What its value is.
        value: String,
        /// Why it does not parse.
        #[source]
        source: std::net::AddrParseError,
    },
}

/// Spec of a `Config` resource.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigSpec {
    /// The configuration text (usually JSON).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
}

impl ConfigSpec {
    /// A Config holding `config`.
    pub fn new(config: impl Into<String>) -> Self {
        Self {
            config: config.into(),
        }
    }

    pub(crate) fn check(&self, _path: &FieldPath, _v: &mut Validator) {}

    /// The name of the Config holding `mesh`'s DNS VIPs:
    /// `kuma-<mesh>-dns-vips`.
    pub fn dns_vips_name(mesh: &str) -> String {
        format!("kuma-{mesh}-dns-vips")
    }

    /// The mesh whose DNS VIPs the Config named `name` holds, if it is
    /// such a Config.
    pub fn dns_vips_mesh(name: &str) -> Option<&str> {
        name.strip_prefix("kuma-")?
            .strip_suffix("-dns-vips")
            .filter(|m| !m.is_empty())
    }

    /// The DNS VIP map this Config holds, validated: every value an IPv4
    /// address, or an error for the whole map.
    pub fn dns_vips(&self) -> Result<MeshVips, DnsVipsError> {
        let raw: BTreeMap<String, String> =
            serde_json::from_str(&self.config).map_err(DnsVipsError::NotAMap)?;
        raw.into_iter()
            .map(|(service, value)| match value.parse::<Ipv4Addr>() {
                Ok(ip) => Ok((service, ip)),
                Err(source) => Err(DnsVipsError::NotIpv4 {
                    service,
                    value,
                    source,
                }),
            })
            .collect()
    }

    /// A Config holding `vips` (see [`MeshVips`]).
    pub fn from_dns_vips(vips: &MeshVips) -> Self {
        let raw: BTreeMap<&str, String> = vips
            .iter()
            .map(|(s, ip)| (s.as_str(), ip.to_string()))
            .collect();
        // A map of strings always serializes.
        Self::new(serde_json::to_string(&raw).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Resource;

    #[test]
    fn round_trips_and_rejects_unknown_fields() {
        let yaml =
            "type: Config\nname: kuma-internal-config\nconfig: '{\"0:backend\":\"240.0.0.0\"}'\n";
        let res = Resource::from_yaml(yaml).unwrap();
        res.validate().unwrap();
        assert_eq!(
            res.spec_as::<ConfigSpec>().unwrap(),
            &ConfigSpec::new(r#"{"0:backend":"240.0.0.0"}"#)
        );
        assert_eq!(Resource::from_yaml(&res.to_yaml()).unwrap(), res);
        let e = Resource::from_yaml("type: Config\nname: c\ndata: x\n").unwrap_err();
        assert_eq!(e.violations()[0].field, "data");
    }

    #[test]
    fn dns_vips_round_trip_and_are_validated() {
        assert_eq!(
            ConfigSpec::dns_vips_name("default"),
            "kuma-default-dns-vips"
        );
        assert_eq!(ConfigSpec::dns_vips_mesh("kuma-a-b-dns-vips"), Some("a-b"));
        assert_eq!(ConfigSpec::dns_vips_mesh("kuma--dns-vips"), None);
        assert_eq!(ConfigSpec::dns_vips_mesh("kuma-internal-config"), None);
        let vips = MeshVips::from([
            ("web".to_string(), Ipv4Addr::new(240, 0, 0, 1)),
            ("api".to_string(), Ipv4Addr::new(240, 0, 0, 2)),
        ]);
        let spec = ConfigSpec::from_dns_vips(&vips);
        assert_eq!(spec.config, r#"{"api":"240.0.0.2","web":"240.0.0.1"}"#);
        assert_eq!(spec.dns_vips().unwrap(), vips);
        assert!(matches!(
            ConfigSpec::new("[]").dns_vips(),
            Err(DnsVipsError::NotAMap(_))
        ));
        assert!(matches!(
            ConfigSpec::new(r#"{"a":"1.2.3"}"#).dns_vips(),
            Err(DnsVipsError::NotIpv4 { service, .. }) if service == "a"
        ));
    }
}
