//! The Dataplane this proxy stands for: its name and mesh, and the optional
//! resource given with `--dataplane`/`--dataplane-file`.
//!
//! The resource text is a template: `{{ key }}` placeholders are replaced by
//! `--dataplane-var key=value` values. It is then decoded and validated here,
//! so mistakes are reported (with field paths) before the control plane is
//! contacted.

use anyhow::{Context, bail};
use kuma_core::resource::{DecodeError, Resource, ResourceType};
use kuma_core::validation::Violation;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Mesh used when neither `--mesh` nor the resource names one.
pub const DEFAULT_MESH: &str = "default";

/// Who this proxy is.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Dataplane name.
    pub name: String,
    /// Mesh name.
    pub mesh: String,
    /// The Dataplane resource, when one was given (name and mesh filled in).
    pub resource: Option<Resource>,
}

/// Parses one `--dataplane-var` value, `key=value` (the value may contain `=`).
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not of the form key=value"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("{s:?} has an empty key; expected key=value"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Replaces every `{{ key }}` in `text` by its value. A placeholder without
/// a value, an empty `{{ }}` or an unclosed `{{` is an error naming it.
pub fn render_template(text: &str, vars: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unclosed placeholder: \"{{{{\" without \"}}}}\" in the Dataplane template");
        };
        let key = after[..end].trim();
        if key.is_empty() {
            bail!("empty placeholder \"{{{{}}}}\" in the Dataplane template");
        }
        match vars.get(key) {
            Some(value) => out.push_str(value),
            None => bail!(
                "the Dataplane template uses placeholder {{{{ {key} }}}} but no value was given; \
                 pass --dataplane-var {key}=VALUE"
            ),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn render_violations(out: &mut String, violations: &[Violation]) {
    for v in violations {
        if v.field.is_empty() {
            let _ = write!(out, "\n  * {}", v.message);
        } else {
            let _ = write!(out, "\n  * {}: {}", v.field, v.message);
        }
    }
}

/// Decodes the rendered Dataplane YAML, reporting errors with field paths.
fn decode(text: &str) -> anyhow::Result<Resource> {
    let resource = Resource::from_yaml(text).map_err(|e| match e {
        DecodeError::Shape(err) => {
            let mut msg = String::from("the Dataplane is not valid:");
            render_violations(&mut msg, &err.violations);
            anyhow::anyhow!(msg)
        }
        other => anyhow::anyhow!("the Dataplane cannot be read: {other}"),
    })?;
    if resource.resource_type() != ResourceType::Dataplane {
        bail!(
            "the Dataplane is not valid:\n  * type: must be Dataplane, got {}",
            resource.resource_type()
        );
    }
    Ok(resource)
}

/// Resolves name and mesh from flags and the resource, filling in what the
/// resource leaves out, then validates the resource.
pub fn resolve(
    flag_name: Option<&str>,
    flag_mesh: Option<&str>,
    resource: Option<Resource>,
) -> anyhow::Result<Identity> {
    let flag_name = flag_name.filter(|s| !s.is_empty());
    let flag_mesh = flag_mesh.filter(|s| !s.is_empty());
    let Some(mut resource) = resource else {
        let Some(name) = flag_name else {
            bail!(
                "the Dataplane name is not set: pass --name (or KUMA_DATAPLANE_NAME), \
                 or give the Dataplane with --dataplane or --dataplane-file"
            );
        };
        return Ok(Identity {
            name: name.to_string(),
            mesh: flag_mesh.unwrap_or(DEFAULT_MESH).to_string(),
            resource: None,
        });
    };

    let res_name = Some(resource.meta.name.as_str()).filter(|s| !s.is_empty());
    let name = match (flag_name, res_name) {
        (Some(f), Some(r)) if f != r => bail!(
            "--name {f:?} differs from the name {r:?} in the Dataplane resource; \
             drop one or make them equal"
        ),
        (Some(n), _) | (None, Some(n)) => n.to_string(),
        (None, None) => bail!(
            "the Dataplane name is not set: add `name:` to the Dataplane resource or pass --name"
        ),
    };
    let res_mesh = resource.meta.mesh.as_deref().filter(|s| !s.is_empty());
    let mesh = match (flag_mesh, res_mesh) {
        (Some(f), Some(r)) if f != r => bail!(
            "--mesh {f:?} differs from the mesh {r:?} in the Dataplane resource; \
             drop one or make them equal"
        ),
        (Some(m), _) | (None, Some(m)) => m.to_string(),
        (None, None) => DEFAULT_MESH.to_string(),
    };
    resource.meta.name = name.clone();
    resource.meta.mesh = Some(mesh.clone());
    if let Err(err) = resource.validate() {
        let mut msg = String::from("the Dataplane is not valid:");
        render_violations(&mut msg, &err.violations);
        bail!(msg);
    }
    Ok(Identity {
        name,
        mesh,
        resource: Some(resource),
    })
}

/// Builds the identity from the `run` flags: reads and renders the template
/// when one is given, decodes, resolves and validates it.
pub fn load(args: &crate::cli::RunArgs) -> anyhow::Result<Identity> {
    let template = match (&args.dataplane, &args.dataplane_file) {
        (Some(inline), _) => Some(inline.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --dataplane-file {}", path.display()))?,
        ),
        (None, None) => None,
    };
    let resource = match template {
        Some(t) => {
            let vars: BTreeMap<String, String> = args.dataplane_var.iter().cloned().collect();
            Some(decode(&render_template(&t, &vars)?)?)
        }
        None => None,
    };
    resolve(args.name.as_deref(), args.mesh.as_deref(), resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "type: Dataplane
mesh: {{ mesh }}
name: {{name}}
networking:
  address: {{ address }}
  inbound:
  - port: 8080
    tags: {kuma.io/service: web}
";

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_var_splits_on_first_equals() {
        assert_eq!(parse_var("a=b"), Ok(("a".into(), "b".into())));
        assert_eq!(parse_var("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_var("a="), Ok(("a".into(), String::new())));
        assert!(parse_var("ab").is_err());
        assert!(parse_var("=b").is_err());
    }

    #[test]
    fn template_replaces_placeholders_with_and_without_spaces() {
        let out = render_template(
            TEMPLATE,
            &vars(&[("mesh", "demo"), ("name", "web-1"), ("address", "10.0.0.1")]),
        )
        .unwrap();
        assert!(out.contains("mesh: demo\nname: web-1\n"), "{out}");
        assert!(out.contains("address: 10.0.0.1\n"), "{out}");
        assert!(!out.contains("{{"));
    }

    #[test]
    fn template_without_placeholders_is_unchanged() {
        assert_eq!(
            render_template("a: {b: c}", &vars(&[])).unwrap(),
            "a: {b: c}"
        );
    }

    #[test]
    fn missing_value_names_the_placeholder() {
        let err = render_template(TEMPLATE, &vars(&[("mesh", "m"), ("name", "n")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("{{ address }}"), "{msg}");
        assert!(msg.contains("--dataplane-var address=VALUE"), "{msg}");
    }

    #[test]
    fn malformed_placeholders_are_errors() {
        assert!(render_template("a: {{ x", &vars(&[("x", "1")])).is_err());
        assert!(render_template("a: {{ }}", &vars(&[])).is_err());
    }

    fn dp(mesh: Option<&str>, name: &str) -> Resource {
        let mut text = String::from("type: Dataplane\n");
        if let Some(m) = mesh {
            text.push_str(&format!("mesh: {m}\n"));
        }
        if !name.is_empty() {
            text.push_str(&format!("name: {name}\n"));
        }
        text.push_str(
            "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags: {kuma.io/service: web}\n",
        );
        decode(&text).unwrap()
    }

    #[test]
    fn flags_only() {
        let id = resolve(Some("web-1"), None, None).unwrap();
        assert_eq!((id.name.as_str(), id.mesh.as_str()), ("web-1", "default"));
        let id = resolve(Some("web-1"), Some("demo"), None).unwrap();
        assert_eq!(id.mesh, "demo");
        assert!(id.resource.is_none());
        let err = resolve(None, Some("demo"), None).unwrap_err();
        assert!(err.to_string().contains("--name"), "{err}");
    }

    #[test]
    fn name_and_mesh_default_from_the_resource() {
        let id = resolve(None, None, Some(dp(Some("demo"), "web-1"))).unwrap();
        assert_eq!((id.name.as_str(), id.mesh.as_str()), ("web-1", "demo"));
        let r = id.resource.unwrap();
        assert_eq!(r.meta.mesh.as_deref(), Some("demo"));
    }

    #[test]
    fn flags_fill_what_the_resource_leaves_out() {
        let id = resolve(Some("web-2"), None, Some(dp(None, ""))).unwrap();
        assert_eq!((id.name.as_str(), id.mesh.as_str()), ("web-2", "default"));
        let r = id.resource.unwrap();
        assert_eq!(r.meta.name, "web-2");
        assert_eq!(r.meta.mesh.as_deref(), Some("default"));
    }

    #[test]
    fn equal_flags_and_resource_agree() {
        let id = resolve(Some("web-1"), Some("demo"), Some(dp(Some("demo"), "web-1"))).unwrap();
        assert_eq!((id.name.as_str(), id.mesh.as_str()), ("web-1", "demo"));
    }

    #[test]
    fn conflicting_flags_and_resource_are_errors() {
        let err = resolve(Some("other"), None, Some(dp(Some("demo"), "web-1"))).unwrap_err();
        assert!(err.to_string().contains("--name \"other\""), "{err}");
        let err = resolve(None, Some("prod"), Some(dp(Some("demo"), "web-1"))).unwrap_err();
        assert!(err.to_string().contains("--mesh \"prod\""), "{err}");
    }

    #[test]
    fn resource_without_name_or_flag_is_an_error() {
        let err = resolve(None, None, Some(dp(None, ""))).unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");
    }

    #[test]
    fn invalid_resource_reports_field_paths() {
        let err = decode("type: Dataplane\nname: x\nnetworking:\n  addres: 1.2.3.4\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("the Dataplane is not valid:"), "{msg}");
        assert!(msg.contains("addres"), "{msg}");

        let r = decode("type: Dataplane\nname: x\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 0\n    tags: {kuma.io/service: web}\n").unwrap();
        let err = resolve(None, None, Some(r)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\n  * networking.inbound[0].port"), "{msg}");
    }

    #[test]
    fn other_types_and_bad_yaml_are_rejected() {
        let err = decode("type: Mesh\nname: default\n").unwrap_err();
        assert!(
            err.to_string().contains("must be Dataplane, got Mesh"),
            "{err}"
        );
        let err = decode("type: [").unwrap_err();
        assert!(err.to_string().contains("cannot be read"), "{err}");
    }
}
