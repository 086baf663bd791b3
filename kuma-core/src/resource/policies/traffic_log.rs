//! The `TrafficLog` resource type. (Fields are filled in by the model work.)

use crate::resource::{Policy, PolicyTargets};
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `TrafficLog` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficLogSpec {}

impl TrafficLogSpec {
    pub(crate) fn check(&self, _path: &FieldPath, _v: &mut Validator) {}
}

impl Policy for TrafficLogSpec {
    fn targets(&self) -> PolicyTargets<'_> {
        PolicyTargets::Selectors(&[])
    }
}
