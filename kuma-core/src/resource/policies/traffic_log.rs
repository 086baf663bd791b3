//! The `TrafficLog` resource type: access logs of the selected connections,
//! sent to a logging backend declared on the Mesh.

use super::util::check_connection;
use crate::resource::{Policy, PolicyTargets, Selector, SelectorKeys};
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `TrafficLog` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficLogSpec {
    /// The clients whose outbound traffic is logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Selector>,
    /// The services whose traffic is logged (`kuma.io/service` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<Selector>,
    /// Where to log; without it the Mesh's default logging backend is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<TrafficLogConf>,
}

/// The `conf` of a `TrafficLog`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficLogConf {
    /// Name of a logging backend of the Mesh; none means the Mesh's default.
    /// (Whether the backend exists is checked against the Mesh, not here.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

impl TrafficLogSpec {
    /// The backend name this policy logs to, if it names one.
    pub fn backend(&self) -> Option<&str> {
        self.conf.as_ref().and_then(|c| c.backend.as_deref())
    }

    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        check_connection(
            path,
            &self.sources,
            SelectorKeys::Any,
            &self.destinations,
            SelectorKeys::ServiceOnly,
            v,
        );
        if self.backend() == Some("") {
            v.violation(
                &path.field("conf").field("backend"),
                "must not be empty: name a logging backend of the Mesh, or leave it out to use the default",
            );
        }
    }
}

impl Policy for TrafficLogSpec {
    fn targets(&self) -> PolicyTargets<'_> {
        PolicyTargets::Connection {
            sources: &self.sources,
            destinations: &self.destinations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::util::testing::*;
    use super::*;

    const DOC: &str = r#"
type: TrafficLog
name: all-traffic
mesh: default
sources:
  - match:
      kuma.io/service: '*'
destinations:
  - match:
      kuma.io/service: '*'
conf:
  backend: file
"#;

    #[test]
    fn documented_example_round_trips() {
        let res = round_trip(DOC);
        assert_eq!(
            res.spec_as::<TrafficLogSpec>().unwrap().backend(),
            Some("file")
        );
        let res = round_trip(DOC.split("conf:").next().unwrap());
        assert_eq!(res.spec_as::<TrafficLogSpec>().unwrap().backend(), None);
        round_trip(&format!(
            "{}conf: {{}}\n",
            DOC.split("conf:").next().unwrap()
        ));
    }

    #[test]
    fn backend_must_not_be_empty() {
        assert_violations(
            &DOC.replace("backend: file", "backend: ''"),
            &["conf.backend"],
        );
    }

    #[test]
    fn destinations_are_service_only_and_selectors_required() {
        assert_violations(
            &DOC.replace(
                "destinations:\n  - match:\n      kuma.io/service: '*'",
                "destinations:\n  - match:\n      kuma.io/service: '*'\n      env: prod",
            ),
            &[r#"destinations[0].match["env"]"#],
        );
        assert_violations(
            &DOC.replace(
                "sources:\n  - match:\n      kuma.io/service: '*'\n",
                "sources: []\n",
            )
            .replace("backend: file", "backend: ''"),
            &["sources", "conf.backend"],
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        assert_eq!(
            decode_error_path(&DOC.replace("backend:", "backends:")),
            "conf.backends"
        );
    }
}
