//! The `HealthCheck` resource type. (Fields are filled in by the model work.)

use crate::resource::{Policy, PolicyTargets};
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `HealthCheck` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckSpec {}

impl HealthCheckSpec {
    pub(crate) fn check(&self, _path: &FieldPath, _v: &mut Validator) {}
}

impl Policy for HealthCheckSpec {
    fn targets(&self) -> PolicyTargets<'_> {
        PolicyTargets::Selectors(&[])
    }
}
