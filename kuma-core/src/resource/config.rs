//! The `Config` resource type: internal configuration data of the control
//! plane (for example the DNS VIP map), stored as text.

use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `Config` resource.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigSpec {
    /// The configuration text (usually JSON).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
}

impl ConfigSpec {
    /// A Config holding `config`.
    pub fn new(config: impl Into<String>) -> Self {
        Self {
            config: config.into(),
        }
    }

    pub(crate) fn check(&self, _path: &FieldPath, _v: &mut Validator) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Resource;

    #[test]
    fn round_trips_and_rejects_unknown_fields() {
        let yaml =
            "type: Config\nname: kuma-internal-config\nconfig: '{\"0:backend\":\"240.0.0.0\"}'\n";
        let res = Resource::from_yaml(yaml).unwrap();
        res.validate().unwrap();
        assert_eq!(
            res.spec_as::<ConfigSpec>().unwrap(),
            &ConfigSpec::new(r#"{"0:backend":"240.0.0.0"}"#)
        );
        assert_eq!(Resource::from_yaml(&res.to_yaml()).unwrap(), res);
        let e = Resource::from_yaml("type: Config\nname: c\ndata: x\n").unwrap_err();
        assert_eq!(e.violations()[0].field, "data");
    }
}
