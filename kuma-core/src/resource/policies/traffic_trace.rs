//! The `TrafficTrace` resource type: tracing of the selected Dataplanes,
//! sent to a tracing backend declared on the Mesh.

use crate::resource::{Policy, PolicyTargets, Selector, SelectorKeys, validate_selectors};
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `TrafficTrace` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficTraceSpec {
    /// The Dataplanes traced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selectors: Vec<Selector>,
    /// Where to trace; without it the Mesh's default tracing backend is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<TrafficTraceConf>,
}

/// The `conf` of a `TrafficTrace`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficTraceConf {
    /// Name of a tracing backend of the Mesh; none means the Mesh's default.
    /// (Whether the backend exists is checked against the Mesh, not here.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

impl TrafficTraceSpec {
    /// The backend name this policy traces to, if it names one.
    pub fn backend(&self) -> Option<&str> {
        self.conf.as_ref().and_then(|c| c.backend.as_deref())
    }

    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        validate_selectors(
            &path.field("selectors"),
            &self.selectors,
            SelectorKeys::Any,
            v,
        );
        if self.backend() == Some("") {
            v.violation(
                &path.field("conf").field("backend"),
                "must not be empty: name a tracing backend of the Mesh, or leave it out to use the default",
            );
        }
    }
}

impl Policy for TrafficTraceSpec {
    fn targets(&self) -> PolicyTargets<'_> {
        PolicyTargets::Selectors(&self.selectors)
    }
}

#[cfg(test)]
mod tests {
    use super::super::util::testing::*;
    use super::*;

    const DOC: &str = r#"
type: TrafficTrace
name: trace-all-traffic
mesh: default
selectors:
- match:
    kuma.io/service: '*'
conf:
  backend: jaeger-collector
"#;

    #[test]
    fn documented_example_round_trips() {
        let res = round_trip(DOC);
        let spec = res.spec_as::<TrafficTraceSpec>().unwrap();
        assert_eq!(spec.backend(), Some("jaeger-collector"));
        assert!(
            matches!(spec.targets(), PolicyTargets::Selectors(s) if s == [Selector::service("*")])
        );
        round_trip(DOC.split("conf:").next().unwrap());
    }

    #[test]
    fn selectors_are_required_and_checked() {
        assert_violations(
            &DOC.replace(
                "selectors:\n- match:\n    kuma.io/service: '*'\n",
                "selectors: []\n",
            ),
            &["selectors"],
        );
        assert_violations(
            &DOC.replace(
                "kuma.io/service: '*'",
                "kuma.io/service: 'a b'\n    version: ''",
            ),
            &[
                r#"selectors[0].match["kuma.io/service"]"#,
                r#"selectors[0].match["version"]"#,
            ],
        );
    }

    #[test]
    fn backend_must_not_be_empty() {
        assert_violations(
            &DOC.replace("backend: jaeger-collector", "backend: ''"),
            &["conf.backend"],
        );
        assert_violations(
            &DOC.replace("backend: jaeger-collector", "backend: ''")
                .replace("- match:\n    kuma.io/service: '*'", "- match: {}"),
            &["selectors[0].match", "conf.backend"],
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        assert_eq!(decode_error_path(&format!("{DOC}sources: []\n")), "sources");
        assert_eq!(
            decode_error_path(&format!("{DOC}  sampling: 10\n")),
            "conf.sampling"
        );
    }
}
