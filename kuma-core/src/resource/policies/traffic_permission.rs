//! The `TrafficPermission` resource type: which services may connect to
//! which (enforced as Envoy RBAC when mTLS is on).

use super::util::check_connection;
use crate::resource::{Policy, PolicyTargets, Selector, SelectorKeys};
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `TrafficPermission` resource.
///
/// `sources` may only select by `kuma.io/service` (they become RBAC
/// principals); `destinations` may use any tag.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPermissionSpec {
    /// The clients allowed to connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Selector>,
    /// The inbounds the permission applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<Selector>,
}

impl TrafficPermissionSpec {
    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        check_connection(
            path,
            &self.sources,
            SelectorKeys::ServiceOnly,
            &self.destinations,
            SelectorKeys::Any,
            v,
        );
    }
}

impl Policy for TrafficPermissionSpec {
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
type: TrafficPermission
name: allow-all-traffic
mesh: default
sources:
  - match:
      kuma.io/service: '*'
destinations:
  - match:
      kuma.io/service: '*'
"#;

    #[test]
    fn documented_example_round_trips() {
        let res = round_trip(DOC);
        let spec = res.spec_as::<TrafficPermissionSpec>().unwrap();
        assert!(
            matches!(spec.targets(), PolicyTargets::Connection { sources, destinations }
            if sources.len() == 1 && destinations.len() == 1)
        );
        round_trip(
            r#"
type: TrafficPermission
mesh: default
name: web-to-backend
sources:
  - match:
      kuma.io/service: web
destinations:
  - match:
      kuma.io/service: backend
      version: v1
      env: prod
"#,
        );
    }

    #[test]
    fn sources_are_service_only() {
        assert_violations(
            &DOC.replace("kuma.io/service: '*'\ndest", "version: v1\ndest"),
            &[
                r#"sources[0].match["version"]"#,
                r#"sources[0].match["kuma.io/service"]"#,
            ],
        );
    }

    #[test]
    fn selectors_must_be_present_and_valid() {
        assert_violations(
            "type: TrafficPermission\nmesh: default\nname: p\n",
            &["sources", "destinations"],
        );
        assert_violations(
            "type: TrafficPermission\nmesh: default\nname: p\nsources:\n- match: {}\n\
             destinations:\n- match: {version: 'a b'}\n",
            &["sources[0].match", r#"destinations[0].match["version"]"#],
        );
    }

    #[test]
    fn unknown_field_is_rejected() {
        assert_eq!(decode_error_path(&format!("{DOC}conf: {{}}\n")), "conf");
        assert_eq!(
            decode_error_path(&DOC.replace(
                "- match:\n      kuma.io/service: '*'\ndest",
                "- matches: {}\ndest"
            )),
            "sources[0].matches"
        );
    }
}
