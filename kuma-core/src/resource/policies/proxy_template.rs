//! The `ProxyTemplate` resource type: extra raw Envoy resources for the
//! selected Dataplanes and modifications of the generated ones.

use crate::resource::{Policy, PolicyTargets, Selector, SelectorKeys, Tags, validate_selectors};
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `ProxyTemplate` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyTemplateSpec {
    /// The Dataplanes the template applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selectors: Vec<Selector>,
    /// What the template generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<ProxyTemplateConf>,
}

/// The `conf` of a `ProxyTemplate`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyTemplateConf {
    /// Built-in profiles to generate first (see [`PROXY_PROFILES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,
    /// Raw Envoy resources to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<RawResource>,
    /// Changes to the generated resources, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modifications: Vec<Modification>,
}

/// The profiles a `ProxyTemplate` may import.
pub const PROXY_PROFILES: &[&str] = &["default-proxy"];

/// A raw Envoy resource.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawResource {
    /// Resource name; required.
    #[serde(default)]
    pub name: String,
    /// Resource version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The Envoy resource as YAML or JSON, with an `@type`; required.
    #[serde(default)]
    pub resource: String,
}

/// One modification: exactly one kind of generated resource it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Modification {
    /// Adds, patches or removes clusters.
    Cluster(ResourceModification<ClusterMatch>),
    /// Adds, patches or removes listeners.
    Listener(ResourceModification<ListenerMatch>),
    /// Adds, patches or removes network filters of listeners.
    NetworkFilter(ResourceModification<FilterMatch>),
    /// Adds, patches or removes HTTP filters of HTTP connection managers.
    HttpFilter(ResourceModification<FilterMatch>),
    /// Adds, patches or removes virtual hosts of route configurations.
    VirtualHost(ResourceModification<VirtualHostMatch>),
}

/// The `operation` of a modification.
///
/// Serialized as the string Kuma uses. A value Kuma does not define is kept
/// as [`Operation::Unknown`] (empty when the field is unset), so that
/// validation can name it instead of failing to parse. Which operations a
/// modification accepts depends on what it modifies (see [`Modification`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Operation {
    /// `add`: a new cluster, listener or virtual host.
    Add,
    /// `addFirst`: a filter at the start of the list.
    AddFirst,
    /// `addLast`: a filter at the end of the list.
    AddLast,
    /// `addBefore`: a filter before the named one.
    AddBefore,
    /// `addAfter`: a filter after the named one.
    AddAfter,
    /// `patch`: merge the value into the matched resources.
    Patch,
    /// `remove`: delete the matched resources.
    Remove,
    /// Any other value (validation rejects it); empty when unset.
    Unknown(String),
}

impl Operation {
    /// The value as written in the resource, e.g. `addFirst`.
    pub fn as_str(&self) -> &str {
        match self {
            Operation::Add => "add",
            Operation::AddFirst => "addFirst",
            Operation::AddLast => "addLast",
            Operation::AddBefore => "addBefore",
            Operation::AddAfter => "addAfter",
            Operation::Patch => "patch",
            Operation::Remove => "remove",
            Operation::Unknown(s) => s,
        }
    }
}

impl Default for Operation {
    /// Unset: an empty [`Operation::Unknown`].
    fn default() -> Self {
        Operation::Unknown(String::new())
    }
}

impl From<String> for Operation {
    fn from(s: String) -> Self {
        match s.as_str() {
            "add" => Operation::Add,
            "addFirst" => Operation::AddFirst,
            "addLast" => Operation::AddLast,
            "addBefore" => Operation::AddBefore,
            "addAfter" => Operation::AddAfter,
            "patch" => Operation::Patch,
            "remove" => Operation::Remove,
            _ => Operation::Unknown(s),
        }
    }
}

impl From<Operation> for String {
    fn from(op: Operation) -> Self {
        match op {
            Operation::Unknown(s) => s,
            known => known.as_str().to_string(),
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operation, match and value of a modification.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceModification<M> {
    /// `add`, `patch`, `remove` (and for filters `addFirst`, `addLast`,
    /// `addBefore`, `addAfter`).
    #[serde(default)]
    pub operation: Operation,
    /// Which generated resources are changed.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub match_: Option<M>,
    /// The Envoy resource (or patch) as YAML or JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Selects clusters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterMatch {
    /// Cluster name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Origin (`inbound`, `outbound`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Selects listeners.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerMatch {
    /// Listener name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Origin (`inbound`, `outbound`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Tags of the listener's inbound/outbound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// Selects network or HTTP filters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterMatch {
    /// Filter name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Name of the listener holding the filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_name: Option<String>,
    /// Tags of the listener holding the filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_tags: Option<Tags>,
    /// Origin of the listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Selects virtual hosts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualHostMatch {
    /// Virtual host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Origin of the route configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Name of the route configuration holding the virtual host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_configuration_name: Option<String>,
}

const RESOURCE_OPS: &[Operation] = &[Operation::Add, Operation::Patch, Operation::Remove];
const FILTER_OPS: &[Operation] = &[
    Operation::AddFirst,
    Operation::AddLast,
    Operation::AddBefore,
    Operation::AddAfter,
    Operation::Patch,
    Operation::Remove,
];

/// Parses `text` as YAML (JSON is YAML too) and checks it is an object,
/// returning why not.
fn parse_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_yaml_ng::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err("must be a YAML or JSON object".to_string()),
        Err(e) => Err(format!("is not valid YAML: {e}")),
    }
}

fn check_value(path: &FieldPath, value: Option<&str>, v: &mut Validator) {
    match value {
        None | Some("") => v.violation(
            path,
            "must be set to the Envoy resource (YAML or JSON) for this operation",
        ),
        Some(text) => {
            if let Err(why) = parse_object(text) {
                v.violation(path, why);
            }
        }
    }
}

fn check_operation(
    path: &FieldPath,
    op: &Operation,
    known: &[Operation],
    v: &mut Validator,
) -> bool {
    if known.contains(op) {
        return true;
    }
    let quoted: Vec<String> = known.iter().map(|k| format!("{:?}", k.as_str())).collect();
    v.violation(
        &path.field("operation"),
        format!(
            "invalid operation {:?}: must be one of {}",
            op.as_str(),
            quoted.join(", ")
        ),
    );
    false
}

impl<M> ResourceModification<M> {
    /// Rules for cluster, listener and virtual-host modifications.
    fn check_resource(&self, path: &FieldPath, match_set_on_add: Option<&str>, v: &mut Validator) {
        if !check_operation(path, &self.operation, RESOURCE_OPS, v) {
            return;
        }
        match self.operation {
            Operation::Add => {
                if let Some(field) = match_set_on_add {
                    v.violation(&path.field(field), "must not be set when adding");
                }
                check_value(&path.field("value"), self.value.as_deref(), v);
            }
            Operation::Patch => check_value(&path.field("value"), self.value.as_deref(), v),
            _ => {}
        }
    }
}

impl ResourceModification<FilterMatch> {
    fn check_filter(&self, path: &FieldPath, v: &mut Validator) {
        if !check_operation(path, &self.operation, FILTER_OPS, v) {
            return;
        }
        let op = &self.operation;
        let has_name = self
            .match_
            .as_ref()
            .and_then(|m| m.name.as_deref())
            .is_some_and(|n| !n.is_empty());
        let name_needed = match op {
            Operation::AddBefore => Some("must name the filter to add this one before"),
            Operation::AddAfter => Some("must name the filter to add this one after"),
            Operation::Patch => Some("must name the filter to patch"),
            _ => None,
        };
        if let Some(why) = name_needed
            && !has_name
        {
            v.violation(&path.field("match").field("name"), why);
        }
        if *op != Operation::Remove {
            check_value(&path.field("value"), self.value.as_deref(), v);
        }
    }
}

impl ProxyTemplateSpec {
    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        validate_selectors(
            &path.field("selectors"),
            &self.selectors,
            SelectorKeys::Any,
            v,
        );
        let Some(conf) = &self.conf else { return };
        let cp = path.field("conf");
        for (i, imp) in conf.imports.iter().enumerate() {
            if !PROXY_PROFILES.contains(&imp.as_str()) {
                v.violation(
                    &cp.field("imports").index(i),
                    format!(
                        "unknown profile {imp:?}: available profiles: {}",
                        PROXY_PROFILES.join(", ")
                    ),
                );
            }
        }
        for (i, r) in conf.resources.iter().enumerate() {
            let rp = cp.field("resources").index(i);
            if r.name.is_empty() {
                v.violation(&rp.field("name"), "must not be empty");
            }
            if r.resource.is_empty() {
                v.violation(
                    &rp.field("resource"),
                    "must hold an Envoy resource as YAML or JSON",
                );
                continue;
            }
            match parse_object(&r.resource) {
                Err(why) => v.violation(&rp.field("resource"), why),
                Ok(obj) => {
                    if obj
                        .get("@type")
                        .is_none_or(|t| t.as_str().is_none_or(|s| s.is_empty()))
                    {
                        v.violation(
                            &rp.field("resource"),
                            "must have an '@type', e.g. type.googleapis.com/envoy.config.cluster.v3.Cluster",
                        );
                    }
                }
            }
        }
        for (i, m) in conf.modifications.iter().enumerate() {
            let mp = cp.field("modifications").index(i);
            match m {
                Modification::Cluster(c) => {
                    let set = c.match_.as_ref().map(|_| "match");
                    c.check_resource(&mp.field("cluster"), set, v);
                }
                Modification::Listener(l) => {
                    let set = l.match_.as_ref().map(|_| "match");
                    l.check_resource(&mp.field("listener"), set, v);
                }
                Modification::VirtualHost(h) => {
                    let set = h
                        .match_
                        .as_ref()
                        .and_then(|m| m.name.as_ref())
                        .map(|_| "match.name");
                    h.check_resource(&mp.field("virtualHost"), set, v);
                }
                Modification::NetworkFilter(f) => f.check_filter(&mp.field("networkFilter"), v),
                Modification::HttpFilter(f) => f.check_filter(&mp.field("httpFilter"), v),
            }
        }
    }
}

impl Policy for ProxyTemplateSpec {
    fn targets(&self) -> PolicyTargets<'_> {
        PolicyTargets::Selectors(&self.selectors)
    }
}

#[cfg(test)]
mod tests;
