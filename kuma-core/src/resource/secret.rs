//! The `Secret` resource type, and [`DataSource`]: the way other resources
//! point at secret material (a Secret, a file, or inline bytes).

use crate::validation::{FieldPath, Validator};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

/// Spec of a `Secret` resource: opaque bytes, written as base64. `Debug`
/// shows only their length, so secrets never reach logs.
///
/// ```
/// use kuma_core::resource::{Resource, SecretSpec};
///
/// let res = Resource::from_yaml("type: Secret\nmesh: default\nname: s\ndata: aGVsbG8=\n").unwrap();
/// res.validate().unwrap();
/// assert_eq!(res.spec_as::<SecretSpec>().unwrap().bytes(), b"hello");
/// ```
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// The secret bytes, base64-encoded (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
}

impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSpec")
            .field("data", &Redacted(self.data.len()))
            .finish()
    }
}

/// What `Debug` shows instead of secret material: its length.
struct Redacted(usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} characters redacted>", self.0)
    }
}

/// Decodes base64 the way protobuf's JSON mapping accepts it: standard or
/// URL-safe alphabet, with or without padding.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

impl SecretSpec {
    /// A secret holding `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            data: STANDARD.encode(bytes),
        }
    }

    /// The decoded secret bytes (empty if `data` is not valid base64, which
    /// validation rejects).
    pub fn bytes(&self) -> Vec<u8> {
        decode_base64(&self.data).unwrap_or_default()
    }

    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        let p = path.field("data");
        if self.data.is_empty() {
            v.violation(&p, "must be set: the secret bytes, base64-encoded");
        } else if decode_base64(&self.data).is_none() {
            v.violation(
                &p,
                "is not valid base64: encode the secret bytes with the standard base64 alphabet (e.g. `base64 -w0 file`)",
            );
        }
    }
}

/// Where secret material comes from (Kuma's `DataSource`): exactly one of a
/// Secret in the same mesh, a file on the control plane, inline base64 bytes
/// or an inline string. `Debug` does not show inline data.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DataSource {
    /// The name of a Secret in the same mesh.
    Secret(String),
    /// A path to a file readable by the control plane.
    File(String),
    /// The data itself, base64-encoded.
    Inline(String),
    /// The data itself, as plain text.
    InlineString(String),
}

impl std::fmt::Debug for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::Secret(name) => f.debug_tuple("Secret").field(name).finish(),
            DataSource::File(path) => f.debug_tuple("File").field(path).finish(),
            DataSource::Inline(b64) => f.debug_tuple("Inline").field(&Redacted(b64.len())).finish(),
            DataSource::InlineString(s) => f
                .debug_tuple("InlineString")
                .field(&Redacted(s.len()))
                .finish(),
        }
    }
}

impl DataSource {
    /// The inline bytes, if the data is given inline (`inline` decoded from
    /// base64, or `inlineString` as UTF-8).
    pub fn inline_bytes(&self) -> Option<Vec<u8>> {
        match self {
            DataSource::Inline(b64) => decode_base64(b64),
            DataSource::InlineString(s) => Some(s.as_bytes().to_vec()),
            DataSource::Secret(_) | DataSource::File(_) => None,
        }
    }

    /// Checks the data source at `path` (e.g. `networking.tls.caCert`).
    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        match self {
            DataSource::Secret(name) => {
                super::common::validate_name(&path.field("secret"), name, v);
            }
            DataSource::File(file) => {
                if file.is_empty() {
                    v.violation(&path.field("file"), "must not be empty: a file path");
                }
            }
            DataSource::Inline(b64) => {
                let p = path.field("inline");
                if b64.is_empty() {
                    v.violation(&p, "must not be empty: the data, base64-encoded");
                } else if decode_base64(b64).is_none() {
                    v.violation(
                        &p,
                        "is not valid base64: encode the data with the standard base64 alphabet, or use `inlineString` for text",
                    );
                }
            }
            DataSource::InlineString(s) => {
                if s.is_empty() {
                    v.violation(&path.field("inlineString"), "must not be empty");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Resource;

    fn fields(yaml: &str) -> Vec<String> {
        let res = Resource::from_yaml(yaml).unwrap();
        match res.validate() {
            Ok(()) => vec![],
            Err(e) => e.violations.into_iter().map(|v| v.field).collect(),
        }
    }

    #[test]
    fn parses_validates_and_round_trips() {
        let yaml = "type: Secret\nmesh: default\nname: sec-1\ndata: c2VjcmV0IGRhdGE=\n";
        let res = Resource::from_yaml(yaml).unwrap();
        res.validate().unwrap();
        assert_eq!(res.spec_as::<SecretSpec>().unwrap().bytes(), b"secret data");
        assert_eq!(Resource::from_yaml(&res.to_yaml()).unwrap(), res);
        assert_eq!(res.to_yaml(), yaml);
    }

    #[test]
    fn from_bytes_encodes() {
        let s = SecretSpec::from_bytes(&[0, 1, 2, 255]);
        assert_eq!(s.bytes(), [0, 1, 2, 255]);
        assert_eq!(s.data, "AAEC/w==");
    }

    #[test]
    fn debug_shows_no_secret_material() {
        let res =
            Resource::from_yaml("type: Secret\nmesh: default\nname: s\ndata: c2VjcmV0\n").unwrap();
        let text = format!("{res:?}");
        assert!(!text.contains("c2VjcmV0"), "{text}");
        assert!(text.contains("<8 characters redacted>"), "{text}");
        for ds in [
            DataSource::Inline("c2VjcmV0".into()),
            DataSource::InlineString("secret".into()),
        ] {
            let text = format!("{ds:?}");
            assert!(
                !text.contains("c2VjcmV0") && !text.contains("secret"),
                "{text}"
            );
        }
        assert_eq!(
            format!("{:?}", DataSource::Secret("ca".into())),
            "Secret(\"ca\")"
        );
    }

    #[test]
    fn data_is_required_and_must_be_base64() {
        assert_eq!(fields("type: Secret\nmesh: default\nname: s\n"), ["data"]);
        assert_eq!(
            fields("type: Secret\nmesh: default\nname: s\ndata: '!!not base64'\n"),
            ["data"]
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = Resource::from_yaml("type: Secret\nmesh: default\nname: s\ndata: YQ==\nvalue: x\n")
            .unwrap_err();
        assert_eq!(e.violations()[0].field, "value");
    }

    #[test]
    fn data_sources() {
        let check = |ds: DataSource| {
            let mut v = Validator::new();
            ds.check(&FieldPath::from("ca"), &mut v);
            v.finish()
                .err()
                .map(|e| {
                    e.violations
                        .into_iter()
                        .map(|x| x.field)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        assert!(check(DataSource::Secret("ca-cert".into())).is_empty());
        assert!(check(DataSource::File("/etc/ca.pem".into())).is_empty());
        assert!(check(DataSource::Inline("aGk=".into())).is_empty());
        assert!(check(DataSource::InlineString("hi".into())).is_empty());
        assert_eq!(check(DataSource::Secret("".into())), ["ca.secret"]);
        assert_eq!(check(DataSource::Secret("Bad Name".into())), ["ca.secret"]);
        assert_eq!(check(DataSource::File("".into())), ["ca.file"]);
        assert_eq!(check(DataSource::Inline("%%%".into())), ["ca.inline"]);
        assert_eq!(check(DataSource::Inline("".into())), ["ca.inline"]);
        assert_eq!(
            check(DataSource::InlineString("".into())),
            ["ca.inlineString"]
        );
        assert_eq!(
            DataSource::Inline("aGk=".into()).inline_bytes(),
            Some(b"hi".to_vec())
        );
        let json = serde_json::to_string(&DataSource::InlineString("x".into())).unwrap();
        assert_eq!(json, r#"{"inlineString":"x"}"#);
    }
}
