//! Pieces shared by many resource types: tags, selectors, and the rules that
//! check them.

use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Tag map (`kuma.io/service: backend`, `version: v1`), sorted by key.
///
/// A sorted vector rather than a `BTreeMap`: tag maps are small (one to a
/// few entries) and there are many (every outbound of every Dataplane,
/// every selector, every endpoint), and a `BTreeMap` allocates a whole
/// node of eleven entries (over 500 bytes) for the first one. With 10,000
/// Dataplanes of 20 outbounds this halves the memory the registered
/// Dataplanes take.
pub type Tags = litemap::LiteMap<String, String>;

/// The tag naming a service.
pub const SERVICE_TAG: &str = "kuma.io/service";
/// The tag naming a service's protocol.
pub const PROTOCOL_TAG: &str = "kuma.io/protocol";
/// The tag naming the zone of an inbound (multi-zone).
pub const ZONE_TAG: &str = "kuma.io/zone";
/// The value matching any value of an existing key, in selectors.
pub const WILDCARD: &str = "*";
/// The protocols `kuma.io/protocol` may name.
pub const KNOWN_PROTOCOLS: &[&str] = &["tcp", "http", "http2", "grpc"];

/// One selector: a tag map that a Dataplane's tags must match.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// The tags to match; `*` matches any value of an existing key.
    #[serde(rename = "match", default)]
    pub match_tags: Tags,
}

impl Selector {
    /// A selector from `(key, value)` pairs.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            match_tags: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The selector `kuma.io/service: <service>`.
    pub fn service(service: &str) -> Self {
        Self::new([(SERVICE_TAG, service)])
    }
}

/// What a policy selects, as used by the matcher.
#[derive(Debug, Clone, Copy)]
pub enum PolicyTargets<'a> {
    /// A Dataplane policy (TrafficTrace, ProxyTemplate): `selectors`.
    Selectors(&'a [Selector]),
    /// A connection policy: `sources` and `destinations`.
    Connection {
        /// The `sources` selectors.
        sources: &'a [Selector],
        /// The `destinations` selectors.
        destinations: &'a [Selector],
    },
}

/// A policy type: something the matcher selects for Dataplanes.
pub trait Policy: super::Spec {
    /// The selectors of the policy.
    fn targets(&self) -> PolicyTargets<'_>;
}

/// Checks a resource (or mesh) name: non-empty, `[0-9a-z-_.]` only.
pub fn validate_name(path: &FieldPath, name: &str, v: &mut Validator) {
    if name.is_empty() {
        v.violation(path, "must not be empty");
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        v.violation(
            path,
            format!(
                "invalid character {c:?} in {name:?}: only lowercase letters, digits, '-', '_' and '.' are allowed"
            ),
        );
    }
}

/// Checks a port: 1..=65535.
pub fn validate_port(path: &FieldPath, port: u32, v: &mut Validator) {
    if !(1..=65535).contains(&port) {
        v.violation(
            path,
            format!("port {port} is out of range: must be 1..=65535"),
        );
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'))
}

fn valid_value(val: &str) -> bool {
    !val.is_empty()
        && val
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

/// Checks the keys and values of a tag map. `allow_wildcard` permits `*` as a
/// value (selectors only).
pub fn validate_tags(path: &FieldPath, tags: &Tags, allow_wildcard: bool, v: &mut Validator) {
    for (k, val) in tags {
        let p = path.key(k);
        if !valid_key(k) {
            v.violation(
                &p,
                format!("tag key {k:?} is invalid: must be non-empty and use only letters, digits, '.', '-', '_', ':' and '/'"),
            );
        }
        if allow_wildcard && val == WILDCARD {
            continue;
        }
        if !valid_value(val) {
            let extra = if allow_wildcard {
                " or be exactly '*'"
            } else {
                ""
            };
            v.violation(
                &p,
                format!("tag value {val:?} is invalid: must be non-empty and use only letters, digits, '.', '-', '_' and ':'{extra}"),
            );
        }
    }
}

/// Checks the tags of an inbound or gateway: valid, with `kuma.io/service`
/// and, if present, a known `kuma.io/protocol`.
pub fn validate_service_tags(path: &FieldPath, tags: &Tags, v: &mut Validator) {
    validate_tags(path, tags, false, v);
    if !tags.contains_key(SERVICE_TAG) {
        v.violation(&path.key(SERVICE_TAG), "tag has to exist");
    }
    validate_protocol_tag(path, tags, v);
}

/// Checks that `kuma.io/protocol`, if present, names a known protocol.
pub fn validate_protocol_tag(path: &FieldPath, tags: &Tags, v: &mut Validator) {
    if let Some(p) = tags.get(PROTOCOL_TAG)
        && !KNOWN_PROTOCOLS.contains(&p.as_str())
    {
        v.violation(
            &path.key(PROTOCOL_TAG),
            format!(
                "tag {p:?} is not a known protocol: must be one of {}",
                KNOWN_PROTOCOLS.join(", ")
            ),
        );
    }
}

/// Which keys a selector list may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorKeys {
    /// Any tag key.
    Any,
    /// Only `kuma.io/service`.
    ServiceOnly,
}

/// Checks a list of selectors: non-empty, each with a non-empty valid `match`,
/// and with only `kuma.io/service` when `keys` says so.
pub fn validate_selectors(
    path: &FieldPath,
    selectors: &[Selector],
    keys: SelectorKeys,
    v: &mut Validator,
) {
    if selectors.is_empty() {
        v.violation(path, "must have at least one element");
    }
    for (i, s) in selectors.iter().enumerate() {
        let mp = path.index(i).field("match");
        if s.match_tags.is_empty() {
            v.violation(&mp, "must have at least one tag");
        }
        validate_tags(&mp, &s.match_tags, true, v);
        if keys == SelectorKeys::ServiceOnly {
            for k in s.match_tags.keys().filter(|k| k.as_str() != SERVICE_TAG) {
                v.violation(
                    &mp.key(k),
                    format!("tag {k:?} is not allowed: only {SERVICE_TAG:?} may be used here"),
                );
            }
            if !s.match_tags.is_empty() && !s.match_tags.contains_key(SERVICE_TAG) {
                v.violation(&mp.key(SERVICE_TAG), "tag has to exist");
            }
        }
    }
}

/// Serializes an `f64` that holds a whole number as an integer, so `50`
/// reads back as `50`, not `50.0`.
pub(crate) mod number {
    use serde::Serializer;

    /// Serializes a float, as an integer when it is one.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            s.serialize_i64(*v as i64)
        } else {
            s.serialize_f64(*v)
        }
    }

    /// The same for an optional float.
    pub mod option {
        use serde::Serializer;

        /// Serializes `Some(float)` as [`super::serialize`] does.
        pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(f) => super::serialize(f, s),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut Validator)) -> Vec<String> {
        let mut v = Validator::new();
        f(&mut v);
        v.finish()
            .err()
            .map(|e| e.violations.into_iter().map(|x| x.field).collect())
            .unwrap_or_default()
    }

    #[test]
    fn names() {
        let p = FieldPath::root().field("name");
        assert!(check(|v| validate_name(&p, "backend-1.v_2", v)).is_empty());
        assert_eq!(check(|v| validate_name(&p, "", v)), ["name"]);
        assert_eq!(check(|v| validate_name(&p, "Backend", v)), ["name"]);
        assert_eq!(check(|v| validate_name(&p, "a/b", v)), ["name"]);
    }

    #[test]
    fn ports() {
        let p = FieldPath::from("port");
        assert!(check(|v| validate_port(&p, 1, v)).is_empty());
        assert!(check(|v| validate_port(&p, 65535, v)).is_empty());
        assert_eq!(check(|v| validate_port(&p, 0, v)), ["port"]);
        assert_eq!(check(|v| validate_port(&p, 65536, v)), ["port"]);
    }

    #[test]
    fn tags() {
        let p = FieldPath::from("tags");
        let t: Tags = [("kuma.io/service".into(), "a b".into())]
            .into_iter()
            .collect();
        assert_eq!(
            check(|v| validate_tags(&p, &t, false, v)),
            [r#"tags["kuma.io/service"]"#]
        );
        let t: Tags = [("bad key!".into(), "v".into())].into_iter().collect();
        assert_eq!(
            check(|v| validate_tags(&p, &t, false, v)),
            [r#"tags["bad key!"]"#]
        );
        let t: Tags = [("version".into(), "*".into())].into_iter().collect();
        assert_eq!(
            check(|v| validate_tags(&p, &t, false, v)),
            [r#"tags["version"]"#]
        );
        assert!(check(|v| validate_tags(&p, &t, true, v)).is_empty());
        let t: Tags = [("version".into(), "".into())].into_iter().collect();
        assert_eq!(
            check(|v| validate_tags(&p, &t, true, v)),
            [r#"tags["version"]"#]
        );
    }

    #[test]
    fn service_tags() {
        let p = FieldPath::from("tags");
        let t: Tags = [("version".into(), "v1".into())].into_iter().collect();
        assert_eq!(
            check(|v| validate_service_tags(&p, &t, v)),
            [r#"tags["kuma.io/service"]"#]
        );
        let t: Tags = [
            ("kuma.io/service".into(), "web".into()),
            ("kuma.io/protocol".into(), "smtp".into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            check(|v| validate_service_tags(&p, &t, v)),
            [r#"tags["kuma.io/protocol"]"#]
        );
    }

    #[test]
    fn selectors() {
        let p = FieldPath::from("sources");
        assert_eq!(
            check(|v| validate_selectors(&p, &[], SelectorKeys::Any, v)),
            ["sources"]
        );
        assert_eq!(
            check(|v| validate_selectors(&p, &[Selector::default()], SelectorKeys::Any, v)),
            ["sources[0].match"]
        );
        let s = Selector::new([("kuma.io/service", "*"), ("version", "v1")]);
        assert!(
            check(|v| validate_selectors(&p, std::slice::from_ref(&s), SelectorKeys::Any, v))
                .is_empty()
        );
        assert_eq!(
            check(|v| validate_selectors(&p, &[s], SelectorKeys::ServiceOnly, v)),
            [r#"sources[0].match["version"]"#]
        );
    }
}
