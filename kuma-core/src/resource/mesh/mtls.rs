//! The `mtls` section of a Mesh: certificate authority backends and the
//! certificates issued to proxies.

use super::{check_conf, check_type, typed_conf};
use crate::duration::KumaDuration;
use crate::resource::secret::DataSource;
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// mTLS backend type: a CA generated and kept by the control plane.
pub const CA_BUILTIN: &str = "builtin";
/// mTLS backend type: a CA certificate and key supplied by the user.
pub const CA_PROVIDED: &str = "provided";

/// `mtls` of a Mesh.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mtls {
    /// The backend in use; mTLS is off when unset or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_backend: Option<String>,
    /// The declared certificate authorities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<CertificateAuthorityBackend>,
}

/// The `type` of a CA backend.
///
/// Serialized as the string Kuma uses. A value Kuma does not define is kept
/// as [`CaBackendType::Unknown`] (empty when the field is unset), so that
/// validation can name it instead of failing to parse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum CaBackendType {
    /// `builtin`: a CA generated and kept by the control plane.
    Builtin,
    /// `provided`: a CA certificate and key supplied by the user.
    Provided,
    /// Any other value (validation rejects it); empty when unset.
    Unknown(String),
}

impl CaBackendType {
    /// The value as written in the resource, e.g. `builtin`.
    pub fn as_str(&self) -> &str {
        match self {
            CaBackendType::Builtin => CA_BUILTIN,
            CaBackendType::Provided => CA_PROVIDED,
            CaBackendType::Unknown(s) => s,
        }
    }
}

impl Default for CaBackendType {
    /// Unset: an empty [`CaBackendType::Unknown`].
    fn default() -> Self {
        CaBackendType::Unknown(String::new())
    }
}

impl From<String> for CaBackendType {
    fn from(s: String) -> Self {
        match s.as_str() {
            CA_BUILTIN => CaBackendType::Builtin,
            CA_PROVIDED => CaBackendType::Provided,
            _ => CaBackendType::Unknown(s),
        }
    }
}

impl From<CaBackendType> for String {
    fn from(t: CaBackendType) -> Self {
        match t {
            CaBackendType::Unknown(s) => s,
            known => known.as_str().to_string(),
        }
    }
}

impl std::fmt::Display for CaBackendType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One certificate authority of `mtls.backends`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateAuthorityBackend {
    /// Name, unique among the mesh's CA backends.
    #[serde(default)]
    pub name: String,
    /// `builtin` or `provided`.
    #[serde(default, rename = "type")]
    pub r#type: CaBackendType,
    /// Settings of the certificates issued to proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp_cert: Option<DpCert>,
    /// Type-specific settings ([`BuiltinCaConfig`] or [`ProvidedCaConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<Value>,
    /// Whether plain-text traffic is still accepted (`PERMISSIVE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MtlsMode>,
}

/// `mode` of a CA backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Only mTLS traffic is accepted (the default).
    Strict,
    /// Both mTLS and plain-text traffic are accepted.
    Permissive,
}

/// `dpCert` of a CA backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DpCert {
    /// Rotation of proxy certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
}

/// `dpCert.rotation` of a CA backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rotation {
    /// How long a proxy certificate is valid (e.g. `1d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<KumaDuration>,
}

/// `conf` of a `builtin` CA backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuiltinCaConfig {
    /// The generated root certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<BuiltinCaCert>,
}

/// `conf.caCert` of a `builtin` CA backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinCaCert {
    /// RSA key size in bits.
    #[serde(rename = "RSAbits", default, skip_serializing_if = "Option::is_none")]
    pub rsa_bits: Option<u32>,
    /// How long the root certificate is valid (e.g. `10y`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<KumaDuration>,
}

/// `conf` of a `provided` CA backend: both fields are required.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvidedCaConfig {
    /// The CA certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<DataSource>,
    /// The CA private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<DataSource>,
}

impl CertificateAuthorityBackend {
    /// The `builtin` configuration, if this is a builtin CA with a valid
    /// `conf`.
    pub fn builtin_config(&self) -> Option<BuiltinCaConfig> {
        (self.r#type == CaBackendType::Builtin)
            .then(|| typed_conf(&self.conf))
            .flatten()
    }

    /// The `provided` configuration, if this is a provided CA with a valid
    /// `conf`.
    pub fn provided_config(&self) -> Option<ProvidedCaConfig> {
        (self.r#type == CaBackendType::Provided)
            .then(|| typed_conf(&self.conf))
            .flatten()
    }

    /// `dpCert.rotation.expiration`, if set.
    pub fn dp_cert_expiration(&self) -> Option<&KumaDuration> {
        self.dp_cert
            .as_ref()?
            .rotation
            .as_ref()?
            .expiration
            .as_ref()
    }

    pub(super) fn check(&self, p: &FieldPath, v: &mut Validator) {
        check_type(
            &p.field("type"),
            self.r#type.as_str(),
            &[CA_BUILTIN, CA_PROVIDED],
            v,
        );
        if let Some(d) = self.dp_cert_expiration()
            && d.as_duration().is_zero()
        {
            v.violation(
                &p.field("dpCert").field("rotation").field("expiration"),
                format!("duration {d} must be greater than 0, e.g. 1d"),
            );
        }
        let cp = p.field("conf");
        match &self.r#type {
            CaBackendType::Builtin => {
                if let Some(c) = check_conf::<BuiltinCaConfig>(&self.conf, &cp, v)
                    && let Some(ca) = &c.ca_cert
                {
                    let ccp = cp.field("caCert");
                    if let Some(bits) = ca.rsa_bits
                        && !(2048..=8192).contains(&bits)
                    {
                        v.violation(
                            &ccp.field("RSAbits"),
                            format!("{bits} bits is not supported: must be 2048..=8192"),
                        );
                    }
                    if let Some(d) = &ca.expiration
                        && d.as_duration().is_zero()
                    {
                        v.violation(
                            &ccp.field("expiration"),
                            format!("duration {d} must be greater than 0, e.g. 10y"),
                        );
                    }
                }
            }
            CaBackendType::Provided => {
                if let Some(c) = check_conf::<ProvidedCaConfig>(&self.conf, &cp, v) {
                    for (ds, name, what) in [
                        (&c.cert, "cert", "the CA certificate"),
                        (&c.key, "key", "the CA private key"),
                    ] {
                        match ds {
                            Some(ds) => ds.check(&cp.field(name), v),
                            None => v.violation(
                                &cp.field(name),
                                format!("must be set: {what}, as {{secret: <name>}}, {{file: <path>}} or {{inline: <base64>}}"),
                            ),
                        }
                    }
                }
            }
            CaBackendType::Unknown(_) => {}
        }
    }
}
