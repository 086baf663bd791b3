//! Resource type names as kumactl's arguments spell them, and the API paths
//! of resources.
//!
//! The plural is the type's REST collection path (`traffic-permissions`); the
//! singular drops the plural ending (`traffic-permission`, `mesh`, `retry`).
//! Both come from `kuma_core`'s [`ResourceType`] table, so a type added there
//! shows up here without a change.

use anyhow::{Result, bail};
use kuma_core::resource::{ResourceKind, ResourceType, Scope};

/// The types kumactl lets users get and delete: all but the control plane's
/// internal ones.
pub fn user_types() -> impl Iterator<Item = ResourceType> {
    ResourceType::ALL
        .iter()
        .copied()
        .filter(|t| t.kind() != ResourceKind::Config)
}

/// The singular argument form of a type, e.g. `traffic-permission`.
pub fn singular(ty: ResourceType) -> String {
    let plural = ty.path();
    if let Some(stem) = plural.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = plural.strip_suffix("shes") {
        format!("{stem}sh")
    } else {
        plural.strip_suffix('s').unwrap_or(plural).to_string()
    }
}

/// Looks a type up by its plural or singular argument form.
pub fn parse_type(arg: &str) -> Result<ResourceType> {
    let arg = arg.to_ascii_lowercase();
    if let Some(ty) = user_types().find(|t| t.path() == arg || singular(*t) == arg) {
        return Ok(ty);
    }
    let known: Vec<&str> = user_types().map(|t| t.path()).collect();
    bail!(
        "unknown resource type {arg:?}; known types: {}",
        known.join(", ")
    )
}

/// Percent-encodes one path segment (names are normally already safe).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The API path of a type's collection: `/meshes/{mesh}/{path}` for
/// mesh-scoped types when a mesh is given, `/{path}` otherwise (global types,
/// or mesh-scoped types across every mesh).
pub fn collection_path(ty: ResourceType, mesh: Option<&str>) -> String {
    match (ty.scope(), mesh) {
        (Scope::Mesh, Some(mesh)) => format!("/meshes/{}/{}", segment(mesh), ty.path()),
        _ => format!("/{}", ty.path()),
    }
}

/// The API path of one resource.
pub fn resource_path(ty: ResourceType, mesh: Option<&str>, name: &str) -> String {
    format!("{}/{}", collection_path(ty, mesh), segment(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singular_and_plural_forms_parse() {
        for (arg, ty) in [
            ("meshes", ResourceType::Mesh),
            ("mesh", ResourceType::Mesh),
            ("dataplane", ResourceType::Dataplane),
            ("traffic-permissions", ResourceType::TrafficPermission),
            ("traffic-permission", ResourceType::TrafficPermission),
            ("retries", ResourceType::Retry),
            ("retry", ResourceType::Retry),
            ("proxytemplate", ResourceType::ProxyTemplate),
            ("external-service", ResourceType::ExternalService),
            ("zones", ResourceType::Zone),
            ("Secrets", ResourceType::Secret),
        ] {
            assert_eq!(parse_type(arg).unwrap(), ty, "{arg}");
        }
        let err = parse_type("configs").unwrap_err().to_string();
        assert!(err.contains("unknown resource type \"configs\""), "{err}");
        assert!(err.contains("traffic-routes"), "{err}");
    }

    #[test]
    fn paths_follow_scope() {
        assert_eq!(
            resource_path(ResourceType::Dataplane, Some("default"), "dp-1"),
            "/meshes/default/dataplanes/dp-1"
        );
        assert_eq!(
            resource_path(ResourceType::Mesh, Some("ignored"), "m1"),
            "/meshes/m1"
        );
        assert_eq!(collection_path(ResourceType::Retry, None), "/retries");
        assert_eq!(
            resource_path(ResourceType::Zone, None, "a b"),
            "/zones/a%20b"
        );
    }
}
