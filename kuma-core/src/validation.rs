//! Field paths and validation errors.
//!
//! Every rule reports the path of the offending field in Kuma's notation
//! (`networking.inbound[0].tags["kuma.io/service"]`) and a message a user can
//! act on. A [`Validator`] collects all violations of a resource so that a
//! user sees every problem at once, not just the first.

use std::fmt;

/// The path of a field inside a resource, e.g. `networking.inbound[0].port`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// The empty path (the resource itself).
    pub fn root() -> Self {
        Self(String::new())
    }

    /// Appends a named field: `a` + `b` -> `a.b`.
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// Appends a list index: `a` + 3 -> `a[3]`.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// Appends a map key: `tags` + `kuma.io/service` -> `tags["kuma.io/service"]`.
    pub fn key(&self, k: &str) -> Self {
        Self(format!("{}[{k:?}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for FieldPath {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// One broken rule: which field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Violation {
    /// Path of the field, e.g. `networking.inbound[0].port`.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// All violations found in one resource.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub struct ValidationError {
    /// The violations, in the order the rules found them.
    pub violations: Vec<Violation>,
}

impl ValidationError {
    /// A validation error with a single violation.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            violations: vec![Violation {
                field: field.into(),
                message: message.into(),
            }],
        }
    }

    /// Whether any field of this path (or below it) was reported.
    pub fn has_field(&self, field: &str) -> bool {
        self.violations.iter().any(|v| v.field == field)
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// Collects violations while a resource is checked.
#[derive(Debug, Default)]
pub struct Validator {
    violations: Vec<Violation>,
}

impl Validator {
    /// A validator with no violations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation of `path`.
    pub fn violation(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.violations.push(Violation {
            field: path.to_string(),
            message: message.into(),
        });
    }

    /// Whether no violation has been recorded.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// `Ok(())` if nothing was recorded, otherwise every violation.
    pub fn finish(self) -> Result<(), ValidationError> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                violations: self.violations,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_kuma() {
        let p = FieldPath::root()
            .field("networking")
            .field("inbound")
            .index(0)
            .field("tags")
            .key("kuma.io/service");
        assert_eq!(
            p.as_str(),
            r#"networking.inbound[0].tags["kuma.io/service"]"#
        );
    }

    #[test]
    fn all_violations_are_kept() {
        let mut v = Validator::new();
        v.violation(&"a".into(), "one");
        v.violation(&"b".into(), "two");
        let err = v.finish().unwrap_err();
        assert_eq!(err.violations.len(), 2);
        assert_eq!(err.to_string(), "a: one; b: two");
    }
}
