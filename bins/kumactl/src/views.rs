//! Table views of resources for `kumactl get`, one layout per type, read
//! straight from the API's JSON so that fields the client does not model
//! still print as the server sent them.

use crate::format::{age, on_off, parse_time, tag_set, text};
use crate::table::Table;
use kuma_core::resource::{ResourceType, Scope};
use serde_json::Value;
use time::OffsetDateTime;

/// The table `kumactl get <type>` prints for `items` of type `ty`.
pub fn resource_table(ty: ResourceType, items: &[Value], now: OffsetDateTime) -> Table {
    match ty {
        ResourceType::Mesh => meshes(items, now),
        ResourceType::Dataplane => with_mesh(["TAGS"], items, now, |dp| vec![dataplane_tags(dp)]),
        ResourceType::ExternalService => with_mesh(["TAGS", "ADDRESS"], items, now, |es| {
            vec![
                tag_set(es.get("tags")),
                text(es, "/networking/address").to_string(),
            ]
        }),
        _ if ty.scope() == Scope::Mesh => with_mesh([], items, now, |_| Vec::new()),
        _ => {
            let mut t = Table::new(["NAME", "AGE"]);
            for item in items {
                t.row([text(item, "/name").to_string(), created_age(item, now)]);
            }
            t
        }
    }
}

/// The merged tags of a Dataplane spec's inbounds and gateway.
pub fn dataplane_tags(spec: &Value) -> String {
    let inbound = spec
        .pointer("/networking/inbound")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("tags"));
    let gateway = spec.pointer("/networking/gateway/tags");
    tag_set(inbound.chain(gateway))
}

/// AGE of a resource, from its `creationTime`.
pub fn created_age(item: &Value, now: OffsetDateTime) -> String {
    age(parse_time(item.get("creationTime")), now)
}

/// MESH, NAME, the given columns, AGE.
fn with_mesh<const N: usize>(
    extra: [&str; N],
    items: &[Value],
    now: OffsetDateTime,
    cells: impl Fn(&Value) -> Vec<String>,
) -> Table {
    let headers = ["MESH", "NAME"].into_iter().chain(extra).chain(["AGE"]);
    let mut t = Table::new(headers);
    for item in items {
        let mut row = vec![
            text(item, "/mesh").to_string(),
            text(item, "/name").to_string(),
        ];
        row.extend(cells(item));
        row.push(created_age(item, now));
        t.row(row);
    }
    t
}

fn meshes(items: &[Value], now: OffsetDateTime) -> Table {
    let mut t = Table::new([
        "NAME", "mTLS", "METRICS", "LOGGING", "TRACING", "LOCALITY", "AGE",
    ]);
    for mesh in items {
        let locality = mesh
            .pointer("/routing/localityAwareLoadBalancing")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        t.row([
            text(mesh, "/name").to_string(),
            enabled_backend(mesh, "mtls"),
            enabled_backend(mesh, "metrics"),
            all_backends(mesh, "logging"),
            all_backends(mesh, "tracing"),
            on_off(locality).to_string(),
            created_age(mesh, now),
        ]);
    }
    t
}

fn backends<'a>(mesh: &'a Value, section: &str) -> impl Iterator<Item = &'a Value> {
    mesh.pointer(&format!("/{section}/backends"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn backend_label(backend: &Value) -> String {
    let (ty, name) = (text(backend, "/type"), text(backend, "/name"));
    if ty.is_empty() {
        name.to_string()
    } else {
        format!("{ty}/{name}")
    }
}

/// `type/name` of the section's `enabledBackend`, or `off`.
fn enabled_backend(mesh: &Value, section: &str) -> String {
    let enabled = text(mesh, &format!("/{section}/enabledBackend"));
    if enabled.is_empty() {
        return "off".to_string();
    }
    backends(mesh, section)
        .find(|b| text(b, "/name") == enabled)
        .map_or_else(|| enabled.to_string(), backend_label)
}

/// `type/name` of every backend of the section, or `off`.
fn all_backends(mesh: &Value, section: &str) -> String {
    let labels: Vec<String> = backends(mesh, section).map(backend_label).collect();
    if labels.is_empty() {
        "off".to_string()
    } else {
        labels.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2024-01-01T01:00:00Z", &Rfc3339).unwrap()
    }

    #[test]
    fn dataplanes_show_merged_tags() {
        let dp = json!({"type": "Dataplane", "mesh": "default", "name": "backend-1",
            "creationTime": "2024-01-01T00:59:55Z",
            "networking": {"address": "10.0.0.1", "inbound": [
                {"port": 1, "tags": {"kuma.io/service": "backend", "version": "v1"}},
                {"port": 2, "tags": {"kuma.io/service": "backend-admin"}}]}});
        let t = resource_table(ResourceType::Dataplane, &[dp], now());
        assert_eq!(
            t.to_string(),
            "MESH      NAME        TAGS                                               AGE\n\
             default   backend-1   kuma.io/service=backend,backend-admin version=v1   5s\n"
        );
    }

    #[test]
    fn meshes_show_backends_or_off() {
        let m = json!({"type": "Mesh", "name": "m1", "creationTime": "2024-01-01T00:57:00Z",
            "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
            "logging": {"backends": [{"name": "file", "type": "file"}]},
            "routing": {"localityAwareLoadBalancing": true}});
        let bare = json!({"type": "Mesh", "name": "default"});
        let t = resource_table(ResourceType::Mesh, &[m, bare], now());
        assert_eq!(
            t.to_string(),
            "NAME      mTLS           METRICS   LOGGING     TRACING   LOCALITY   AGE\n\
             m1        builtin/ca-1   off       file/file   off       on         3m\n\
             default   off            off       off         off       off        <unknown>\n"
        );
    }

    #[test]
    fn policies_show_mesh_name_age_and_global_types_name_age() {
        let tp = json!({"type": "TrafficPermission", "mesh": "default", "name": "allow-all-default",
            "creationTime": "2024-01-01T00:00:00Z"});
        let t = resource_table(ResourceType::TrafficPermission, &[tp], now());
        assert_eq!(
            t.to_string(),
            "MESH      NAME                AGE\ndefault   allow-all-default   60m\n"
        );
        let t = resource_table(ResourceType::Zone, &[], now());
        assert_eq!(t.to_string(), "NAME   AGE\n");
    }
}
