//! Certificate authorities and SPIFFE identities for mesh mTLS.
//!
//! - [`generate_ca`] makes a mesh's self-signed root (the `builtin` CA
//!   backend); [`builtin_ca_cert_secret`] and [`builtin_ca_key_secret`] name
//!   the two Secrets it is stored in.
//! - [`Issuer`] is a CA loaded from PEM and checked (a CA, the key matches,
//!   currently valid); [`Issuer::issue_identity`] signs a proxy certificate
//!   with one `spiffe://<mesh>/<service>` URI SAN per service.
//! - [`load_mesh_issuer`] finds the issuer of a mesh's enabled CA backend
//!   (builtin Secrets, or the data sources of a `provided` backend).
//! - [`generate_server_tls`] makes the control plane's own CA and server
//!   certificate for the SDS server; [`load_or_create_server_ca`] keeps
//!   that CA in the store, shared by replicas and restarts, and
//!   [`Issuer::issue_server`] issues each replica's server certificate.
//!
//! Every key is ECDSA P-256 (rcgen on ring); see `docs/security.md`. Private
//! keys never appear in `Debug` output or in error messages.
//!
//! ```
//! use kuma_core::pki::{generate_ca, Issuer};
//! use std::time::Duration;
//!
//! let ca = generate_ca("default", Duration::from_secs(3600)).unwrap();
//! let issuer = Issuer::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
//! let cert = issuer
//!     .issue_identity("default", &["backend".to_string()], Duration::from_secs(600))
//!     .unwrap();
//! assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! assert!(!format!("{cert:?}").contains("PRIVATE KEY"));
//! ```

use crate::resource::{
    CaBackendType, CertificateAuthorityBackend, ConfigSpec, DataSource, MeshSpec, ResourceKey,
    ResourceType, SecretSpec,
};
use crate::store::{ResourceStore, StoreError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// How long a builtin CA is valid when `conf.caCert.expiration` is not set
/// (10 years).
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How long a proxy certificate is valid when `dpCert.rotation.expiration`
/// is not set (24 hours).
pub const DEFAULT_DP_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// How far back a proxy certificate's `not_before` is set, so that peers
/// whose clocks run a little behind accept it at once.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60);

/// Why a certificate could not be generated, loaded or issued.
///
/// Messages name the problem and never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The certificate text has no PEM `CERTIFICATE` block.
    #[error("certificate is not PEM: expected a -----BEGIN CERTIFICATE----- block")]
    CertNotPem,
    /// The PEM block does not hold a valid X.509 certificate.
    #[error("certificate does not parse as X.509: {0}")]
    CertInvalid(String),
    /// The key text has no PEM private key block.
    #[error("private key is not PEM: expected a -----BEGIN PRIVATE KEY----- block")]
    KeyNotPem,
    /// The private key is PEM but in a form that is not supported.
    #[error("private key {0}")]
    KeyUnsupported(String),
    /// The certificate is not a CA (no basic constraints with `CA:TRUE`).
    #[error("certificate is not a CA: it has no basic constraints extension with CA:TRUE")]
    NotCa,
    /// The private key does not belong to the certificate.
    #[error("private key does not match the certificate's public key")]
    KeyMismatch,
    /// The certificate's validity has ended.
    #[error("certificate expired at {0}")]
    Expired(String),
    /// The certificate's validity has not started yet.
    #[error("certificate is not valid before {0}")]
    NotYetValid(String),
    /// An identity certificate was asked for with no service.
    #[error(
        "no service to put in the certificate: a proxy identity needs at least one kuma.io/service"
    )]
    NoServices,
    /// A subject alternative name cannot be encoded.
    #[error("subject alternative name {name:?} is not valid: {reason}")]
    InvalidSan {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// A validity period does not fit in a certificate.
    #[error("validity of {0:?} is out of range")]
    ValidityOutOfRange(Duration),
    /// Key generation or signing failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// A Secret a data source or a builtin CA refers to does not exist.
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    /// A file a data source refers to cannot be read.
    #[error("cannot read file {path:?}: {reason}")]
    File {
        /// The path.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// Inline data is not valid base64, or the data is not UTF-8 text.
    #[error("{0}")]
    BadData(String),
    /// The CA backend's type or `conf` cannot be used.
    #[error("{0}")]
    Backend(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A problem with one field of a Mesh, e.g.
    /// `mtls.backends[0].conf.cert: secret "x" not found`.
    #[error("{field}: {error}")]
    Field {
        /// The field path, e.g. `mtls.backends[0].conf.cert`.
        field: String,
        /// What is wrong with it.
        error: Box<PkiError>,
    },
}

impl PkiError {
    fn at(self, field: impl Into<String>) -> Self {
        PkiError::Field {
            field: field.into(),
            error: Box::new(self),
        }
    }

    /// Whether this is a problem of the private key rather than of the
    /// certificate (used to name the right field).
    fn is_key_problem(&self) -> bool {
        matches!(
            self,
            PkiError::KeyNotPem | PkiError::KeyUnsupported(_) | PkiError::KeyMismatch
        )
    }
}

fn gen_err(e: rcgen::Error) -> PkiError {
    PkiError::Generate(e.to_string())
}

/// The SPIFFE id of a service in a mesh: `spiffe://<mesh>/<service>`.
///
/// ```
/// assert_eq!(kuma_core::pki::spiffe_id("default", "web"), "spiffe://default/web");
/// ```
pub fn spiffe_id(mesh: &str, service: &str) -> String {
    format!("spiffe://{mesh}/{service}")
}

/// The Secret holding the certificate of builtin CA backend `backend` of
/// `mesh`: `<mesh>.ca-builtin-cert-<backend>`.
pub fn builtin_ca_cert_secret(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-cert-{backend}")
}

/// The Secret holding the private key of builtin CA backend `backend` of
/// `mesh`: `<mesh>.ca-builtin-key-<backend>`.
pub fn builtin_ca_key_secret(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-key-{backend}")
}

/// A certificate and its private key, both PEM. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct CaPem {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl fmt::Debug for CaPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A proxy certificate issued by an [`Issuer`]. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityCert {
    /// The leaf certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The serial number, lower-case hex.
    pub serial_hex: String,
    /// Start of validity (as written in the certificate, whole seconds).
    pub not_before: SystemTime,
    /// End of validity (as written in the certificate, whole seconds).
    pub not_after: SystemTime,
}

impl fmt::Debug for IdentityCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityCert")
            .field("serial_hex", &self.serial_hex)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The current time truncated to whole seconds (what a certificate holds).
fn now_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

fn add(t: OffsetDateTime, d: Duration) -> Result<OffsetDateTime, PkiError> {
    let dd = time::Duration::try_from(d).map_err(|_| PkiError::ValidityOutOfRange(d))?;
    t.checked_add(dd)
        .filter(|t| t.year() <= 9999)
        .ok_or(PkiError::ValidityOutOfRange(d))
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Generate("the system random generator failed".into()))?;
    // Positive (top bit clear) and exactly 16 bytes long in DER (first byte
    // non-zero), so the hex below is what the certificate carries.
    bytes[0] = (bytes[0] & 0x7f).max(1);
    Ok(SerialNumber::from_slice(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn uri_san(uri: String) -> Result<SanType, PkiError> {
    uri.as_str()
        .try_into()
        .map(SanType::URI)
        .map_err(|e: rcgen::Error| PkiError::InvalidSan {
            name: uri,
            reason: e.to_string(),
        })
}

fn ca_params(
    org_unit: &str,
    common_name: &str,
    validity: Duration,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "kuma");
    dn.push(DnType::OrganizationalUnitName, org_unit);
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = now_seconds();
    params.not_before = now - time::Duration::seconds(CLOCK_SKEW_ALLOWANCE.as_secs() as i64);
    params.not_after = add(now, validity)?;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

fn new_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)
}

/// Generates a mesh's self-signed root CA: ECDSA P-256, `CA:TRUE`, key usage
/// certificate and CRL signing, URI SAN `spiffe://<mesh>`, subject
/// `O=kuma, OU=<mesh>, CN=<mesh>`, valid from now (minus
/// [`CLOCK_SKEW_ALLOWANCE`]) for `validity`.
pub fn generate_ca(mesh: &str, validity: Duration) -> Result<CaPem, PkiError> {
    let mut params = ca_params(mesh, mesh, validity)?;
    params.subject_alt_names = vec![uri_san(format!("spiffe://{mesh}"))?];
    let key = new_key()?;
    let cert = params.self_signed(&key).map_err(gen_err)?;
    Ok(CaPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Generates the control plane's own TLS material for its SDS server: a
/// self-signed CA ([`generate_server_ca`]) and a server certificate signed
/// by it for `sans` ([`Issuer::issue_server`]), both valid for `validity`.
/// Returns `(ca, server)`; the CA's key is not needed afterwards but is
/// returned so the caller may keep or drop it.
pub fn generate_server_tls(
    sans: &[String],
    validity: Duration,
) -> Result<(CaPem, CaPem), PkiError> {
    let ca = generate_server_ca(validity)?;
    let server = Issuer::from_pem(&ca.cert_pem, &ca.key_pem)?.issue_server(sans)?;
    Ok((ca, server))
}

/// Generates the CA of the control plane's SDS server: ECDSA P-256,
/// `CA:TRUE` with path length 0 (it signs server certificates only),
/// subject `O=kuma, OU=control-plane, CN=kuma-cp SDS CA`, valid from now
/// (minus [`CLOCK_SKEW_ALLOWANCE`]) for `validity`. Every replica issues
/// its own server certificate from it ([`Issuer::issue_server`]); proxies
/// trust it. [`load_or_create_server_ca`] keeps one in the store.
pub fn generate_server_ca(validity: Duration) -> Result<CaPem, PkiError> {
    let mut params = ca_params("control-plane", "kuma-cp SDS CA", validity)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let key = new_key()?;
    let cert = params.self_signed(&key).map_err(gen_err)?;
    Ok(CaPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The name of the global `Config` resource that holds the SDS server's CA
/// ([`load_or_create_server_ca`]). Configs are internal: the API does not
/// serve them.
pub const SERVER_CA_CONFIG: &str = "kuma-cp-sds-ca";

/// The SDS server's CA kept in the store (the `Config`
/// [`SERVER_CA_CONFIG`], `{"cert": PEM, "key": PEM}`): the stored one, or
/// a new one valid for `validity` stored now. Replicas starting together
/// race on the create; the loser reads the winner's, so all of them hand
/// proxies the same CA, before and after any restart.
///
/// A stored CA that cannot be used (not JSON, not a CA, key mismatch,
/// expired) is an error naming the Config; it is never replaced silently,
/// since every proxy trusts it.
pub async fn load_or_create_server_ca(
    store: &dyn ResourceStore,
    validity: Duration,
) -> Result<CaPem, PkiError> {
    let key = ResourceKey::new(ResourceType::Config, None, SERVER_CA_CONFIG);
    match store.get(&key).await {
        Ok(stored) => return decode_server_ca(&stored),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let ca = generate_server_ca(validity)?;
    let text = serde_json::json!({"cert": ca.cert_pem, "key": ca.key_pem}).to_string();
    let resource = crate::resource::Resource::new(None, SERVER_CA_CONFIG, ConfigSpec::new(text));
    match store.create(resource).await {
        Ok(_) => Ok(ca),
        Err(StoreError::AlreadyExists(_)) => decode_server_ca(&*store.get(&key).await?),
        Err(e) => Err(e.into()),
    }
}

/// The CA in a stored [`SERVER_CA_CONFIG`], checked as [`Issuer::from_pem`]
/// checks.
fn decode_server_ca(stored: &crate::resource::Resource) -> Result<CaPem, PkiError> {
    let bad = |why: String| {
        PkiError::Backend(format!(
            "the SDS server CA stored in Config {SERVER_CA_CONFIG:?} cannot be used: {why}"
        ))
    };
    let text = stored
        .spec_as::<ConfigSpec>()
        .map(|c| c.config.clone())
        .ok_or_else(|| bad("not a Config".into()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
    let field = |name: &str| {
        v[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| bad(format!("no {name:?} string")))
    };
    let ca = CaPem {
        cert_pem: field("cert")?,
        key_pem: field("key")?,
    };
    Issuer::from_pem(&ca.cert_pem, &ca.key_pem).map_err(|e| bad(e.to_string()))?;
    Ok(ca)
}

/// The label of the first PEM block in `text` (`PRIVATE KEY`, ...).
fn pem_label(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
}

fn parse_key(key_pem: &str) -> Result<KeyPair, PkiError> {
    match pem_label(key_pem) {
        None => Err(PkiError::KeyNotPem),
        Some("PRIVATE KEY") => KeyPair::from_pem(key_pem).map_err(|_| {
            PkiError::KeyUnsupported(
                "is not a supported PKCS#8 key: use an ECDSA P-256/P-384, RSA or Ed25519 key"
                    .into(),
            )
        }),
        Some(label @ ("RSA PRIVATE KEY" | "EC PRIVATE KEY")) => {
            Err(PkiError::KeyUnsupported(format!(
                "is in the {label} format: convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt`"
            )))
        }
        Some("ENCRYPTED PRIVATE KEY") => Err(PkiError::KeyUnsupported(
            "is encrypted: provide it unencrypted (PKCS#8)".into(),
        )),
        Some(_) => Err(PkiError::KeyNotPem),
    }
}

fn asn1_to_system(t: x509_parser::time::ASN1Time) -> SystemTime {
    SystemTime::from(t.to_datetime())
}

fn rfc3339(t: x509_parser::time::ASN1Time) -> String {
    t.to_datetime()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.timestamp().to_string())
}

/// A certificate authority that signs proxy certificates: a CA certificate
/// and its private key, checked on load. `Debug` leaves the key out.
pub struct Issuer {
    ca_cert_pem: String,
    not_after: SystemTime,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Loads a CA from PEM text. Checks, in this order: the certificate is
    /// PEM and X.509, it is a CA (basic constraints `CA:TRUE`), it is valid
    /// now, the key is PEM (PKCS#8), and the key matches the certificate's
    /// public key. With several certificates in `cert_pem`, the first is the
    /// CA and all of them are served as the trusted CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Issuer, PkiError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|_| PkiError::CertNotPem)?;
        if pem.label != "CERTIFICATE" {
            return Err(PkiError::CertNotPem);
        }
        let (_, x509) = X509Certificate::from_der(&pem.contents)
            .map_err(|e| PkiError::CertInvalid(e.to_string()))?;
        let is_ca = x509
            .basic_constraints()
            .map_err(|e| PkiError::CertInvalid(e.to_string()))?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(PkiError::NotCa);
        }
        let validity = x509.validity();
        let now = x509_parser::time::ASN1Time::now();
        if now < validity.not_before {
            return Err(PkiError::NotYetValid(rfc3339(validity.not_before)));
        }
        if now > validity.not_after {
            return Err(PkiError::Expired(rfc3339(validity.not_after)));
        }
        let key = parse_key(key_pem)?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::KeyMismatch);
        }
        let not_after = asn1_to_system(validity.not_after);
        let issuer = rcgen::Issuer::from_ca_cert_der(&pem.contents.clone().into(), key)
            .map_err(|e| PkiError::CertInvalid(e.to_string()))?;
        Ok(Issuer {
            ca_cert_pem: cert_pem.trim().to_string() + "\n",
            not_after,
            issuer,
        })
    }

    /// The CA certificate (PEM): what peers trust.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues a proxy certificate: ECDSA P-256, one URI SAN
    /// `spiffe://<mesh>/<service>` per service (sorted, duplicates removed),
    /// EKU server and client auth, key usage digital signature and key
    /// agreement, a random positive 128-bit serial, valid from now minus
    /// [`CLOCK_SKEW_ALLOWANCE`] until now plus `validity`.
    pub fn issue_identity(
        &self,
        mesh: &str,
        services: &[String],
        validity: Duration,
    ) -> Result<IdentityCert, PkiError> {
        let mut services: Vec<&String> = services.iter().collect();
        services.sort();
        services.dedup();
        let Some(first) = services.first() else {
            return Err(PkiError::NoServices);
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "kuma");
        dn.push(DnType::OrganizationalUnitName, mesh);
        dn.push(DnType::CommonName, first.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = services
            .iter()
            .map(|s| uri_san(spiffe_id(mesh, s)))
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = now_seconds();
        params.not_before = now - time::Duration::seconds(CLOCK_SKEW_ALLOWANCE.as_secs() as i64);
        params.not_after = add(now, validity)?;
        let serial = random_serial()?;
        let serial_hex = hex(&serial.to_bytes());
        params.serial_number = Some(serial);
        let key = new_key()?;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok(IdentityCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial_hex,
            not_before: SystemTime::from(params.not_before),
            not_after: SystemTime::from(params.not_after),
        })
    }
}

impl Issuer {
    /// Issues a TLS server certificate for `sans` (each a DNS name or an IP
    /// address; sorted, duplicates removed): ECDSA P-256, EKU server auth,
    /// subject `O=kuma, CN=<first SAN>`, valid from now minus
    /// [`CLOCK_SKEW_ALLOWANCE`] until the CA expires. Returns the
    /// certificate and its key.
    pub fn issue_server(&self, sans: &[String]) -> Result<CaPem, PkiError> {
        let mut names: Vec<&String> = sans.iter().collect();
        names.sort();
        names.dedup();
        let mut subject_alt_names = Vec::with_capacity(names.len());
        for name in &names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => {
                    SanType::DnsName(name.as_str().try_into().map_err(|e: rcgen::Error| {
                        PkiError::InvalidSan {
                            name: name.to_string(),
                            reason: e.to_string(),
                        }
                    })?)
                }
            };
            subject_alt_names.push(san);
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "kuma");
        dn.push(
            DnType::CommonName,
            names.first().map_or("kuma-cp", |n| n.as_str()),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = subject_alt_names;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before =
            now_seconds() - time::Duration::seconds(CLOCK_SKEW_ALLOWANCE.as_secs() as i64);
        params.not_after = OffsetDateTime::from(self.not_after);
        params.serial_number = Some(random_serial()?);
        let key = new_key()?;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok(CaPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Reads the bytes of a data source. `mesh` is where `secret` sources are
/// looked up.
async fn read_data_source(
    store: &dyn ResourceStore,
    mesh: &str,
    source: &DataSource,
) -> Result<Vec<u8>, PkiError> {
    match source {
        DataSource::Secret(name) => read_secret(store, mesh, name).await,
        DataSource::File(path) => {
            let p = path.clone();
            let read = tokio::task::spawn_blocking(move || read_ca_file(&p))
                .await
                .map_err(|e| PkiError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            read.map_err(|e| PkiError::File {
                path: path.clone(),
                reason: e.to_string(),
            })
        }
        DataSource::Inline(_) => source
            .inline_bytes()
            .ok_or_else(|| PkiError::BadData("inline data is not valid base64".into())),
        DataSource::InlineString(s) => Ok(s.as_bytes().to_vec()),
    }
}

/// The largest file a `file` data source may name (a CA certificate chain
/// or key is a few KiB).
pub const MAX_DATA_SOURCE_FILE: u64 = 64 * 1024;

/// Reads a `file` data source: a regular file (not a device, FIFO or
/// directory, which could block or never end) of at most
/// [`MAX_DATA_SOURCE_FILE`] bytes.
fn read_ca_file(path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let not_regular = || std::io::Error::other("it is not a regular file");
    // Checked before opening (opening a FIFO blocks) and again on the
    // opened file (the path may have been replaced in between).
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    let mut bytes = Vec::new();
    file.take(MAX_DATA_SOURCE_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_DATA_SOURCE_FILE {
        return Err(std::io::Error::other(format!(
            "it is larger than {MAX_DATA_SOURCE_FILE} bytes"
        )));
    }
    Ok(bytes)
}

async fn read_secret(
    store: &dyn ResourceStore,
    mesh: &str,
    name: &str,
) -> Result<Vec<u8>, PkiError> {
    let key = ResourceKey::new(ResourceType::Secret, Some(mesh), name);
    match store.get(&key).await {
        Ok(res) => res
            .spec_as::<SecretSpec>()
            .map(SecretSpec::bytes)
            .ok_or_else(|| PkiError::BadData(format!("resource {name:?} is not a Secret"))),
        Err(StoreError::NotFound(_)) => Err(PkiError::SecretNotFound(name.to_string())),
        Err(e) => Err(e.into()),
    }
}

fn utf8(bytes: Vec<u8>) -> Result<String, PkiError> {
    String::from_utf8(bytes)
        .map_err(|_| PkiError::BadData("data is not PEM text (not UTF-8)".into()))
}

/// Loads the issuer of backend `backend` (at index `index` of
/// `mtls.backends`) of mesh `mesh_name`. Errors carry the field path.
pub async fn load_backend_issuer(
    store: &dyn ResourceStore,
    mesh_name: &str,
    index: usize,
    backend: &CertificateAuthorityBackend,
) -> Result<Issuer, PkiError> {
    let path = format!("mtls.backends[{index}]");
    match &backend.r#type {
        CaBackendType::Builtin => {
            let cert_name = builtin_ca_cert_secret(mesh_name, &backend.name);
            let key_name = builtin_ca_key_secret(mesh_name, &backend.name);
            let cert = read_secret(store, mesh_name, &cert_name)
                .await
                .and_then(utf8)
                .map_err(|e| e.at(&path))?;
            let key = read_secret(store, mesh_name, &key_name)
                .await
                .and_then(utf8)
                .map_err(|e| e.at(&path))?;
            Issuer::from_pem(&cert, &key).map_err(|e| {
                let secret = if e.is_key_problem() {
                    key_name
                } else {
                    cert_name
                };
                PkiError::Backend(format!("secret {secret:?}: {e}")).at(&path)
            })
        }
        CaBackendType::Provided => {
            let conf = backend.provided_config().ok_or_else(|| {
                PkiError::Backend("is not a valid provided CA configuration".into())
                    .at(format!("{path}.conf"))
            })?;
            let (Some(cert_src), Some(key_src)) = (&conf.cert, &conf.key) else {
                let missing = if conf.cert.is_none() { "cert" } else { "key" };
                return Err(
                    PkiError::Backend("must be set".into()).at(format!("{path}.conf.{missing}"))
                );
            };
            let cert = read_data_source(store, mesh_name, cert_src)
                .await
                .and_then(utf8)
                .map_err(|e| e.at(format!("{path}.conf.cert")))?;
            let key = read_data_source(store, mesh_name, key_src)
                .await
                .and_then(utf8)
                .map_err(|e| e.at(format!("{path}.conf.key")))?;
            Issuer::from_pem(&cert, &key).map_err(|e| {
                let field = if e.is_key_problem() { "key" } else { "cert" };
                e.at(format!("{path}.conf.{field}"))
            })
        }
        CaBackendType::Unknown(other) => Err(PkiError::Backend(format!(
            "CA backend type {other:?} is not supported: builtin or provided"
        ))
        .at(format!("{path}.type"))),
    }
}

/// The issuer of the mesh's enabled CA backend, or `None` when mTLS is off.
///
/// `builtin`: the CA in the Secrets [`builtin_ca_cert_secret`] and
/// [`builtin_ca_key_secret`] of `mesh_name`. `provided`: `conf.cert` and
/// `conf.key` (data sources: a Secret of `mesh_name`, a file, inline
/// base64 or an inline string). Errors name the field, e.g.
/// `mtls.backends[0].conf.cert: secret "x" not found`.
pub async fn load_mesh_issuer(
    store: &dyn ResourceStore,
    mesh_name: &str,
    mesh: &MeshSpec,
) -> Result<Option<Issuer>, PkiError> {
    let Some(mtls) = &mesh.mtls else {
        return Ok(None);
    };
    let Some(enabled) = mesh.enabled_ca() else {
        return Ok(None);
    };
    let index = mtls
        .backends
        .iter()
        .position(|b| b.name == enabled.name)
        .unwrap_or_default();
    load_backend_issuer(store, mesh_name, index, enabled)
        .await
        .map(Some)
}

/// The validity of proxy certificates of a CA backend:
/// `dpCert.rotation.expiration`, [`DEFAULT_DP_CERT_VALIDITY`] when unset.
pub fn dp_cert_validity(backend: &CertificateAuthorityBackend) -> Duration {
    backend
        .dp_cert_expiration()
        .map_or(DEFAULT_DP_CERT_VALIDITY, |d| d.as_duration())
}

/// The validity of a builtin CA: `conf.caCert.expiration`,
/// [`DEFAULT_CA_VALIDITY`] when unset.
pub fn builtin_ca_validity(backend: &CertificateAuthorityBackend) -> Duration {
    backend
        .builtin_config()
        .and_then(|c| c.ca_cert)
        .and_then(|c| c.expiration)
        .map_or(DEFAULT_CA_VALIDITY, |d| d.as_duration())
}

#[cfg(test)]
mod tests;
