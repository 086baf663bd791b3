//! The `DataplaneInsight` resource type. (Fields are filled in by the model work.)

use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `DataplaneInsight` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneInsightSpec {}

impl DataplaneInsightSpec {
    pub(crate) fn check(&self, _path: &FieldPath, _v: &mut Validator) {}
}
