//! Secret material in the public API's resources (docs/security.md,
//! "Public API"): inline private keys are never served, and a resource
//! read back and applied again keeps them.
//!
//! - Reads replace the `inline`/`inlineString` value of every private-key
//!   data source (a Mesh's CA backends' `conf.key`, an ExternalService's
//!   `networking.tls.clientKey`) with [`REDACTED`].
//! - A write whose key data source holds [`REDACTED`] keeps the stored
//!   value of that source (found by backend name for a Mesh); with no
//!   stored value of the same kind to keep it is refused (400 naming the
//!   field).
//! - Writes through the public API may not use `file` data sources at all
//!   (they would let an API client make the control plane read any file
//!   of its host): `secret` (a Secret, written through the admin server)
//!   or inline data instead.

use super::ApiError;
use crate::resource::ResourceType;
use crate::validation::Violation;
use axum::http::StatusCode;
use serde_json::{Map, Value};

/// What public reads show instead of a private key.
pub const REDACTED: &str = "<redacted>";

/// The data sources of a resource's JSON that may hold data.
enum Locator {
    /// `conf.<field>` of the Mesh CA backend named `name`.
    MeshBackend { name: String, field: &'static str },
    /// A fixed path of object keys.
    Fixed(&'static [&'static str]),
}

struct Source {
    /// The field path for error messages.
    field: String,
    locator: Locator,
    /// Whether it holds a private key (redacted on read).
    secret: bool,
}

fn sources(ty: ResourceType, v: &Value) -> Vec<Source> {
    match ty {
        ResourceType::Mesh => {
            let backends = v
                .pointer("/mtls/backends")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut out = Vec::new();
            for (i, b) in backends.iter().enumerate() {
                let Some(name) = b.get("name").and_then(Value::as_str) else {
                    continue;
                };
                for (field, secret) in [("cert", false), ("key", true)] {
                    out.push(Source {
                        field: format!("mtls.backends[{i}].conf.{field}"),
                        locator: Locator::MeshBackend {
                            name: name.to_string(),
                            field,
                        },
                        secret,
                    });
                }
            }
            out
        }
        ResourceType::ExternalService => [
            (
                "caCert",
                &["networking", "tls", "caCert"] as &'static [&'static str],
                false,
            ),
            ("clientCert", &["networking", "tls", "clientCert"], false),
            ("clientKey", &["networking", "tls", "clientKey"], true),
        ]
        .into_iter()
        .map(|(name, path, secret)| Source {
            field: format!("networking.tls.{name}"),
            locator: Locator::Fixed(path),
            secret,
        })
        .collect(),
        _ => Vec::new(),
    }
}

fn locate<'a>(v: &'a mut Value, locator: &Locator) -> Option<&'a mut Map<String, Value>> {
    match locator {
        Locator::MeshBackend { name, field } => v
            .pointer_mut("/mtls/backends")?
            .as_array_mut()?
            .iter_mut()
            .find(|b| b.get("name").and_then(Value::as_str) == Some(name))?
            .get_mut("conf")?
            .get_mut(*field)?
            .as_object_mut(),
        Locator::Fixed(path) => {
            let mut at = v;
            for key in *path {
                at = at.get_mut(*key)?;
            }
            at.as_object_mut()
        }
    }
}

const INLINE_KINDS: [&str; 2] = ["inline", "inlineString"];

/// Replaces the private keys of `v` (a resource of type `ty`, as JSON)
/// with [`REDACTED`].
pub fn redact(ty: ResourceType, v: &mut Value) {
    for source in sources(ty, v) {
        if !source.secret {
            continue;
        }
        if let Some(map) = locate(v, &source.locator) {
            for kind in INLINE_KINDS {
                if let Some(data @ Value::String(_)) = map.get_mut(kind) {
                    *data = Value::String(REDACTED.into());
                }
            }
        }
    }
}

/// Whether a write of type `ty` needs [`prepare_write`].
pub(crate) fn has_sources(ty: ResourceType) -> bool {
    matches!(ty, ResourceType::Mesh | ResourceType::ExternalService)
}

/// Checks a resource written through the public API (as JSON): refuses
/// `file` data sources, and puts the stored private keys back where the
/// write holds [`REDACTED`]. `stored` is the resource as stored now, if it
/// exists.
pub(crate) fn prepare_write(
    ty: ResourceType,
    incoming: &mut Value,
    stored: Option<&Value>,
) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let mut stored = stored.cloned();
    for source in sources(ty, incoming) {
        let Some(map) = locate(incoming, &source.locator) else {
            continue;
        };
        if map.contains_key("file") {
            causes.push(Violation {
                field: format!("{}.file", source.field),
                message: "file data sources cannot be set through the API (they would make the control plane read files of its host): store the data in a Secret (kumactl apply, admin server) and use `secret`, or use `inline`".into(),
            });
            continue;
        }
        for kind in INLINE_KINDS {
            if map.get(kind).and_then(Value::as_str) != Some(REDACTED) {
                continue;
            }
            let kept = stored
                .as_mut()
                .and_then(|s| locate(s, &source.locator))
                .and_then(|m| m.get(kind))
                .and_then(Value::as_str)
                .filter(|s| *s != REDACTED)
                .map(str::to_string);
            match kept {
                Some(value) if source.secret => {
                    map.insert(kind.to_string(), Value::String(value));
                }
                _ => causes.push(Violation {
                    field: format!("{}.{kind}", source.field),
                    message: format!(
                        "holds {REDACTED:?}, the marker reads show instead of a private key, but there is no stored {kind} key here to keep: send the key itself"
                    ),
                }),
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError {
            causes,
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "Could not process resource",
                "Resource is not valid",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mesh(key: Value) -> Value {
        json!({"type": "Mesh", "name": "m", "mtls": {"enabledBackend": "ca", "backends": [
            {"name": "other", "type": "builtin"},
            {"name": "ca", "type": "provided", "conf": {"cert": {"inlineString": "CERT"}, "key": key}}
        ]}})
    }

    #[test]
    fn keys_are_redacted_and_certificates_are_not() {
        let mut v = mesh(json!({"inlineString": "KEY"}));
        redact(ResourceType::Mesh, &mut v);
        assert_eq!(
            v.pointer("/mtls/backends/1/conf/key/inlineString").unwrap(),
            REDACTED
        );
        assert_eq!(
            v.pointer("/mtls/backends/1/conf/cert/inlineString")
                .unwrap(),
            "CERT"
        );
        let mut es = json!({"type": "ExternalService", "networking": {"address": "a:1", "tls": {
            "enabled": true, "clientCert": {"inline": "Q0VSVA=="}, "clientKey": {"inline": "S0VZ"}}}});
        redact(ResourceType::ExternalService, &mut es);
        assert_eq!(
            es.pointer("/networking/tls/clientKey/inline").unwrap(),
            REDACTED
        );
        assert_eq!(
            es.pointer("/networking/tls/clientCert/inline").unwrap(),
            "Q0VSVA=="
        );
        // Secret references are not secret material.
        let mut v = mesh(json!({"secret": "ca-key"}));
        redact(ResourceType::Mesh, &mut v);
        assert_eq!(
            v.pointer("/mtls/backends/1/conf/key/secret").unwrap(),
            "ca-key"
        );
    }

    #[test]
    fn a_redacted_key_is_restored_from_the_stored_resource_by_backend_name() {
        let stored = mesh(json!({"inlineString": "KEY"}));
        let mut incoming = stored.clone();
        redact(ResourceType::Mesh, &mut incoming);
        // Backends reordered: matched by name, not position.
        incoming["mtls"]["backends"]
            .as_array_mut()
            .unwrap()
            .reverse();
        prepare_write(ResourceType::Mesh, &mut incoming, Some(&stored)).unwrap();
        assert_eq!(
            incoming
                .pointer("/mtls/backends/0/conf/key/inlineString")
                .unwrap(),
            "KEY"
        );

        // Nothing stored to keep: refused, naming the field.
        let mut incoming = mesh(json!({"inline": REDACTED}));
        let e = prepare_write(ResourceType::Mesh, &mut incoming, Some(&stored)).unwrap_err();
        assert_eq!(e.causes[0].field, "mtls.backends[1].conf.key.inline");
        let e = prepare_write(ResourceType::Mesh, &mut incoming, None).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn file_data_sources_are_refused() {
        let mut incoming = mesh(json!({"file": "/etc/shadow"}));
        let e = prepare_write(ResourceType::Mesh, &mut incoming, None).unwrap_err();
        assert_eq!(e.causes[0].field, "mtls.backends[1].conf.key.file");
        let mut es = json!({"networking": {"tls": {"caCert": {"file": "/etc/ssl/ca.pem"}}}});
        let e = prepare_write(ResourceType::ExternalService, &mut es, None).unwrap_err();
        assert_eq!(e.causes[0].field, "networking.tls.caCert.file");
    }
}
