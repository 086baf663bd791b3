//! The `ExternalService` resource type: a service outside the mesh that
//! Dataplanes reach through the mesh, by its `kuma.io/service` tag.

use super::common::{SERVICE_TAG, Tags, validate_service_tags};
use super::dataplane::check_host_port;
use super::secret::DataSource;
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of an `ExternalService` resource.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalServiceSpec {
    /// Where the service is and how to connect to it.
    #[serde(default)]
    pub networking: ExternalServiceNetworking,
    /// Tags of the service, with `kuma.io/service`.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
}

/// `networking` of an ExternalService.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalServiceNetworking {
    /// The service's address, `host:port` (required).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// TLS origination by the calling proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ExternalServiceTls>,
}

/// `networking.tls` of an ExternalService.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalServiceTls {
    /// Whether the calling proxy opens a TLS connection.
    #[serde(default)]
    pub enabled: bool,
    /// CA certificate to verify the service's certificate with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<DataSource>,
    /// Client certificate presented to the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<DataSource>,
    /// Key of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<DataSource>,
    /// Whether TLS renegotiation is allowed (insecure; default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_renegotiation: Option<bool>,
    /// SNI to send (default: the host of `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl ExternalServiceSpec {
    /// The service name (`kuma.io/service` tag).
    pub fn service(&self) -> Option<&str> {
        self.tags.get(SERVICE_TAG).map(String::as_str)
    }

    /// Host and port of `networking.address`, if it is well-formed.
    pub fn host_port(&self) -> Option<(&str, u16)> {
        let (host, port) = self.networking.address.rsplit_once(':')?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Some((host, port.parse().ok().filter(|p| *p != 0)?))
    }

    /// Whether the calling proxy originates TLS.
    pub fn tls_enabled(&self) -> bool {
        self.networking.tls.as_ref().is_some_and(|t| t.enabled)
    }

    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        let np = path.field("networking");
        if self.networking.address.is_empty() {
            v.violation(
                &np.field("address"),
                "must be set: the service's address as HOST:PORT, e.g. httpbin.org:443",
            );
        } else {
            check_host_port(&np.field("address"), &self.networking.address, v);
        }
        if let Some(tls) = &self.networking.tls {
            let tp = np.field("tls");
            for (ds, name) in [
                (&tls.ca_cert, "caCert"),
                (&tls.client_cert, "clientCert"),
                (&tls.client_key, "clientKey"),
            ] {
                if let Some(ds) = ds {
                    ds.check(&tp.field(name), v);
                }
            }
            match (&tls.client_cert, &tls.client_key) {
                (Some(_), None) => v.violation(
                    &tp.field("clientKey"),
                    "must be set together with clientCert",
                ),
                (None, Some(_)) => v.violation(
                    &tp.field("clientCert"),
                    "must be set together with clientKey",
                ),
                _ => {}
            }
            if let Some(sni) = &tls.server_name
                && !super::dataplane::is_hostname(sni)
            {
                v.violation(
                    &tp.field("serverName"),
                    format!("{sni:?} is not a DNS host name"),
                );
            }
        }
        validate_service_tags(&path.field("tags"), &self.tags, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Resource;

    fn fields(yaml: &str) -> Vec<String> {
        match Resource::from_yaml(yaml).unwrap().validate() {
            Ok(()) => vec![],
            Err(e) => e.violations.into_iter().map(|v| v.field).collect(),
        }
    }

    fn es(body: &str) -> String {
        format!("type: ExternalService\nmesh: default\nname: es-1\n{body}")
    }

    const DOC: &str = r#"type: ExternalService
mesh: default
name: httpbin
networking:
  address: httpbin.org:443
  tls:
    enabled: true
    caCert:
      inline: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
    clientCert:
      secret: httpbin-client-cert
    clientKey:
      file: /etc/kuma/client.key
    allowRenegotiation: false
    serverName: httpbin.org
tags:
  kuma.io/service: httpbin
  kuma.io/protocol: http
"#;

    #[test]
    fn documented_external_service() {
        let res = Resource::from_yaml(DOC).unwrap();
        res.validate().unwrap();
        let out = res.to_yaml();
        assert_eq!(Resource::from_yaml(&out).unwrap(), res);
        let a: serde_json::Value = serde_yaml_ng::from_str(DOC).unwrap();
        let b: serde_json::Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(a, b);
        let spec = res.spec_as::<ExternalServiceSpec>().unwrap();
        assert_eq!(spec.service(), Some("httpbin"));
        assert_eq!(spec.host_port(), Some(("httpbin.org", 443)));
        assert!(spec.tls_enabled());
        let plain = es("networking:\n  address: '[::1]:8080'\ntags:\n  kuma.io/service: local\n");
        let res = Resource::from_yaml(&plain).unwrap();
        res.validate().unwrap();
        assert_eq!(
            res.spec_as::<ExternalServiceSpec>().unwrap().host_port(),
            Some(("::1", 8080))
        );
    }

    #[test]
    fn address_rules() {
        assert_eq!(
            fields(&es("tags: {kuma.io/service: a}\n")),
            ["networking.address"]
        );
        for bad in [
            "httpbin.org",
            "httpbin.org:0",
            "httpbin.org:http",
            "bad host:80",
        ] {
            assert_eq!(
                fields(&es(&format!(
                    "networking: {{address: '{bad}'}}\ntags: {{kuma.io/service: a}}\n"
                ))),
                ["networking.address"],
                "{bad}"
            );
        }
    }

    #[test]
    fn tag_rules() {
        let n = "networking: {address: 'a.b:80'}\n";
        assert_eq!(fields(&es(n)), [r#"tags["kuma.io/service"]"#]);
        assert_eq!(
            fields(&es(&format!(
                "{n}tags: {{kuma.io/service: a, kuma.io/protocol: kafka}}\n"
            ))),
            [r#"tags["kuma.io/protocol"]"#]
        );
        assert_eq!(
            fields(&es(&format!("{n}tags: {{kuma.io/service: '*'}}\n"))),
            [r#"tags["kuma.io/service"]"#]
        );
    }

    #[test]
    fn tls_rules() {
        let t = "networking:\n  address: 'a.b:443'\n  tls:\n";
        let tags = "tags: {kuma.io/service: a}\n";
        assert_eq!(
            fields(&es(&format!(
                "{t}    caCert: {{inline: '***'}}\n    clientCert: {{secret: ''}}\n{tags}"
            ))),
            [
                "networking.tls.caCert.inline",
                "networking.tls.clientCert.secret",
                "networking.tls.clientKey"
            ]
        );
        assert_eq!(
            fields(&es(&format!(
                "{t}    clientKey: {{file: /k}}\n    serverName: 'not a host'\n{tags}"
            ))),
            ["networking.tls.clientCert", "networking.tls.serverName"]
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        for (body, path) in [
            ("bogus: 1\n", "bogus"),
            ("networking: {bogus: 1}\n", "networking.bogus"),
            ("networking: {tls: {bogus: 1}}\n", "networking.tls.bogus"),
        ] {
            let e = Resource::from_yaml(&es(body)).unwrap_err();
            assert_eq!(e.violations()[0].field, path, "{body}");
        }
    }

    #[test]
    fn every_problem_is_reported() {
        assert_eq!(
            fields(&es(
                "networking:\n  address: nope\n  tls:\n    caCert: {file: ''}\ntags: {version: '1 0'}\n"
            )),
            [
                "networking.address",
                "networking.tls.caCert.file",
                r#"tags["version"]"#,
                r#"tags["kuma.io/service"]"#
            ]
        );
    }
}
