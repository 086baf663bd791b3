//! Zone types. (Fields are filled in by the model work.)

use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `Zone` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneSpec {}

impl ZoneSpec {
    pub(crate) fn check(&self, _path: &FieldPath, _v: &mut Validator) {}
}

/// Spec of a `ZoneInsight` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneInsightSpec {}

impl ZoneInsightSpec {
    pub(crate) fn check(&self, _path: &FieldPath, _v: &mut Validator) {}
}
