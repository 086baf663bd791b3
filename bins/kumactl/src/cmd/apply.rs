//! `kumactl apply -f FILE|- [-v key=value]... [--dry-run]`.
//!
//! Every document is parsed before anything is sent, so a typo in the third
//! document leaves the first two unapplied. Resources are then PUT in order,
//! stopping at the first error the server answers. Secrets go to the admin
//! server (the API refuses them), everything else to the API.

use super::{Env, emit};
use crate::cli::ApplyArgs;
use crate::template::{parse_vars, split_documents, substitute};
use crate::types::resource_path;
use anyhow::{Context as _, Result, anyhow, bail};
use kuma_core::resource::{DecodeError, Resource, ResourceType, Scope};
use std::io::Read;

pub fn run(env: &Env, args: &ApplyArgs) -> Result<()> {
    let text = read_input(&args.file)?;
    let vars = parse_vars(&args.vars)?;
    let text = substitute(&text, &vars).with_context(|| source_name(&args.file))?;
    let resources = parse_resources(&text)?;
    if resources.is_empty() {
        bail!("{}: no resources found", source_name(&args.file));
    }
    if args.dry_run {
        let docs: Vec<String> = resources.iter().map(Resource::to_yaml).collect();
        return emit(&docs.join("---\n"));
    }
    let client = env.client()?;
    let mut admin = None;
    for res in &resources {
        let ty = res.resource_type();
        let mesh = res.meta.mesh.as_deref();
        let path = resource_path(ty, mesh, &res.meta.name);
        let target = if ty == ResourceType::Secret {
            match &mut admin {
                Some(c) => &*c,
                None => &*admin.insert(env.admin_client("admin")?),
            }
        } else {
            &client
        };
        target.put(&path, &res.to_json_value())?;
    }
    Ok(())
}

fn source_name(file: &str) -> String {
    if file == "-" {
        "stdin".to_string()
    } else {
        file.to_string()
    }
}

fn read_input(file: &str) -> Result<String> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("could not read stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(file).with_context(|| format!("could not read {file}"))
}

/// Decodes every document of a YAML stream, naming the document (1-based)
/// and field of the first one that is not a resource.
pub fn parse_resources(text: &str) -> Result<Vec<Resource>> {
    split_documents(text)
        .iter()
        .enumerate()
        .map(|(i, doc)| parse_document(i + 1, doc))
        .collect()
}

fn parse_document(index: usize, doc: &str) -> Result<Resource> {
    let res = Resource::from_yaml(doc).map_err(|e| match &e {
        DecodeError::Shape(_) => {
            let causes: Vec<String> = e.violations().iter().map(|v| format!("* {v}")).collect();
            anyhow!(
                "document {index} is not a valid resource:\n{}",
                causes.join("\n")
            )
        }
        _ => anyhow!("document {index}: {e}"),
    })?;
    let ty = res.resource_type();
    let missing = if res.meta.name.is_empty() {
        Some("name")
    } else if ty.scope() == Scope::Mesh && res.meta.mesh.as_deref().is_none_or(str::is_empty) {
        Some("mesh")
    } else {
        None
    };
    if let Some(field) = missing {
        bail!("document {index} is not a valid resource:\n* {field}: must be set for {ty}");
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "type: Mesh\nname: demo\n---\n\
        type: TrafficPermission\nmesh: demo\nname: allow\n\
        sources:\n- match:\n    kuma.io/service: '*'\n\
        destinations:\n- match:\n    kuma.io/service: '*'\n";

    #[test]
    fn several_documents_parse_in_order() {
        let res = parse_resources(TWO).unwrap();
        assert_eq!(res.len(), 2);
        assert_eq!(res[0].resource_type(), ResourceType::Mesh);
        assert_eq!(res[1].resource_type(), ResourceType::TrafficPermission);
        assert_eq!(
            resource_path(
                res[1].resource_type(),
                res[1].meta.mesh.as_deref(),
                &res[1].meta.name
            ),
            "/meshes/demo/traffic-permissions/allow"
        );
        assert_eq!(
            resource_path(
                res[0].resource_type(),
                res[0].meta.mesh.as_deref(),
                &res[0].meta.name
            ),
            "/meshes/demo"
        );
    }

    #[test]
    fn errors_name_the_document_and_field() {
        let text = "type: Mesh\nname: a\n---\ntype: Nope\nname: b\n";
        let err = parse_resources(text).unwrap_err().to_string();
        assert!(
            err.starts_with("document 2 is not a valid resource:\n* type:"),
            "{err}"
        );

        let err = parse_resources("type: Mesh\nname: a\n---\nname: [\n").unwrap_err();
        assert!(
            err.to_string().starts_with("document 2: malformed YAML"),
            "{err}"
        );
    }

    #[test]
    fn mesh_and_name_must_be_present() {
        let err = parse_resources("type: TrafficRoute\nname: r\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("* mesh: must be set for TrafficRoute"),
            "{err}"
        );
        let err = parse_resources("type: Mesh\n").unwrap_err().to_string();
        assert!(err.contains("* name: must be set for Mesh"), "{err}");
    }

    #[test]
    fn variables_then_documents() {
        let vars = parse_vars(&["m=prod".to_string()]).unwrap();
        let text = substitute("type: Mesh\nname: {{ m }}\n", &vars).unwrap();
        let res = parse_resources(&text).unwrap();
        assert_eq!(res[0].meta.name, "prod");
    }
}
