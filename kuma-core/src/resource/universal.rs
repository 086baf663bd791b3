//! Kuma's universal form: meta and spec flattened into one YAML/JSON object.
//!
//! Decoding takes the meta keys (`type`, `mesh`, `name`, `creationTime`,
//! `modificationTime`) out of the object and deserializes what is left into
//! the spec type of `type`, rejecting unknown fields with their path.
//! Encoding writes meta first, then the spec fields in declaration order.

use super::{Meta, Resource, ResourceSpec, ResourceType, Scope};
use crate::validation::{ValidationError, Violation};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why a document is not a resource.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The text is not well-formed YAML or JSON.
    #[error("malformed {format}: {message}")]
    Syntax {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// The parser's message, with line and column where known.
        message: String,
    },
    /// The document is well-formed but does not have the shape of a resource
    /// (missing or unknown `type`, unknown field, wrong value type).
    #[error("{0}")]
    Shape(ValidationError),
}

impl DecodeError {
    fn shape(field: impl Into<String>, message: impl Into<String>) -> Self {
        DecodeError::Shape(ValidationError::single(field, message))
    }

    /// The field-level causes of this error (empty for a syntax error).
    pub fn violations(&self) -> &[Violation] {
        match self {
            DecodeError::Syntax { .. } => &[],
            DecodeError::Shape(e) => &e.violations,
        }
    }
}

const META_KEYS: [&str; 5] = ["type", "mesh", "name", "creationTime", "modificationTime"];

fn take_string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, DecodeError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(DecodeError::shape(
            key,
            format!("must be a string, got {}", json_kind(&other)),
        )),
    }
}

fn take_time(
    map: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<OffsetDateTime>, DecodeError> {
    match take_string(map, key)? {
        None => Ok(None),
        Some(s) => OffsetDateTime::parse(&s, &Rfc3339)
            .map(Some)
            .map_err(|e| DecodeError::shape(key, format!("must be an RFC 3339 time: {e}"))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Resource {
    /// Decodes one resource from a JSON value in universal form.
    pub fn from_json_value(value: Value) -> Result<Self, DecodeError> {
        let Value::Object(mut map) = value else {
            return Err(DecodeError::shape(
                "",
                format!("a resource must be an object, got {}", json_kind(&value)),
            ));
        };
        let ty_name = take_string(&mut map, "type")?
            .ok_or_else(|| DecodeError::shape("type", "must be set"))?;
        let ty = ResourceType::from_name(&ty_name).ok_or_else(|| {
            let known: Vec<_> = ResourceType::ALL.iter().map(|t| t.name()).collect();
            DecodeError::shape(
                "type",
                format!(
                    "unknown type {ty_name:?}; known types: {}",
                    known.join(", ")
                ),
            )
        })?;
        let mesh = take_string(&mut map, "mesh")?;
        let name = take_string(&mut map, "name")?.unwrap_or_default();
        let creation_time = take_time(&mut map, "creationTime")?;
        let modification_time = take_time(&mut map, "modificationTime")?;
        let spec = ResourceSpec::from_json(ty, Value::Object(map)).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            DecodeError::shape(path, e.into_inner().to_string())
        })?;
        let mesh = match ty.scope() {
            Scope::Mesh => mesh,
            Scope::Global => mesh.filter(|m| !m.is_empty()),
        };
        Ok(Resource {
            meta: Meta {
                name,
                mesh,
                version: None,
                creation_time,
                modification_time,
            },
            spec,
        })
    }

    /// Decodes one resource from JSON text.
    pub fn from_json(text: &str) -> Result<Self, DecodeError> {
        let value: Value = serde_json::from_str(text).map_err(|e| DecodeError::Syntax {
            format: "JSON",
            message: e.to_string(),
        })?;
        Self::from_json_value(value)
    }

    /// Decodes one resource from YAML text (one document).
    pub fn from_yaml(text: &str) -> Result<Self, DecodeError> {
        let value: Value = serde_yaml_ng::from_str(text).map_err(|e| DecodeError::Syntax {
            format: "YAML",
            message: e.to_string(),
        })?;
        Self::from_json_value(value)
    }

    /// Encodes the resource in universal form, meta first.
    pub fn to_json_value(&self) -> Value {
        let mut out = Map::new();
        out.insert(
            "type".into(),
            Value::String(self.resource_type().name().into()),
        );
        if let Some(mesh) = &self.meta.mesh {
            out.insert("mesh".into(), Value::String(mesh.clone()));
        }
        out.insert("name".into(), Value::String(self.meta.name.clone()));
        for (key, t) in [
            ("creationTime", self.meta.creation_time),
            ("modificationTime", self.meta.modification_time),
        ] {
            if let Some(t) = t {
                // Formatting a valid OffsetDateTime as RFC 3339 only fails for
                // years outside 0..=9999, which the store never produces.
                if let Ok(s) = t.format(&Rfc3339) {
                    out.insert(key.into(), Value::String(s));
                }
            }
        }
        // Specs are plain data with string map keys; serializing them to a
        // JSON value cannot fail or produce a non-object.
        if let Ok(Value::Object(spec)) = self.spec.to_json() {
            for (k, v) in spec {
                if !META_KEYS.contains(&k.as_str()) {
                    out.insert(k, v);
                }
            }
        }
        Value::Object(out)
    }

    /// Encodes the resource as compact JSON text.
    pub fn to_json(&self) -> String {
        self.to_json_value().to_string()
    }

    /// Encodes the resource as YAML text.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(&self.to_json_value()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_unknown_type_are_named() {
        let e = Resource::from_yaml("name: x\n").unwrap_err();
        assert_eq!(e.violations()[0].field, "type");
        let e = Resource::from_yaml("type: Nope\nname: x\n").unwrap_err();
        assert!(
            e.violations()[0].message.contains("unknown type \"Nope\""),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(matches!(
            Resource::from_yaml("type: [").unwrap_err(),
            DecodeError::Syntax { format: "YAML", .. }
        ));
        assert!(matches!(
            Resource::from_json("{").unwrap_err(),
            DecodeError::Syntax { format: "JSON", .. }
        ));
        assert!(Resource::from_json("[]").is_err());
    }

    #[test]
    fn bad_meta_types_and_times_are_named() {
        let e = Resource::from_yaml("type: Mesh\nname: 5\n").unwrap_err();
        assert_eq!(e.violations()[0].field, "name");
        let e = Resource::from_yaml("type: Mesh\nname: m\ncreationTime: yesterday\n").unwrap_err();
        assert_eq!(e.violations()[0].field, "creationTime");
    }
}
