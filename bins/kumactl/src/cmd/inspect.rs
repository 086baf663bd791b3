//! `kumactl inspect dataplanes|meshes [-m MESH]`: resources with runtime
//! status (dataplanes) or with what they hold (meshes).
//!
//! `inspect dataplanes` prints, under Kuma's overview table, a second
//! table of the last config each Dataplane's Envoy rejected (NACK), with
//! Envoy's error and whether a later config was accepted since.
//!
//! Without `-m` both cover every mesh: dataplanes by listing
//! `/meshes/{mesh}/dataplanes+insights` for each mesh in `/meshes`.

use super::{Env, emit, emit_value, list_value};
use crate::cli::{InspectArgs, Output};
use crate::client::Client;
use crate::format::{age, counter, parse_time, text};
use crate::table::Table;
use crate::types::{collection_path, resource_path, user_types};
use crate::views::dataplane_tags;
use anyhow::Result;
use kuma_core::resource::{ResourceType, Scope};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use time::OffsetDateTime;

/// Mesh-scoped types not counted by `inspect meshes`: insights are status,
/// not configuration, and secrets may be readable by admins only.
const NOT_COUNTED: &[ResourceType] = &[ResourceType::DataplaneInsight, ResourceType::Secret];

pub fn dataplanes(env: &Env, args: &InspectArgs) -> Result<()> {
    let client = env.client()?;
    let mut items = Vec::new();
    for mesh in mesh_names(&client, args.mesh.as_deref())? {
        let path = format!(
            "{}+insights",
            collection_path(ResourceType::Dataplane, Some(&mesh))
        );
        items.extend(client.list(&path)?);
    }
    match args.output {
        Output::Table => {
            let now = OffsetDateTime::now_utc();
            let mut out = overview_table(&items, now).to_string();
            if let Some(nacks) = nack_table(&items, now) {
                out.push('\n');
                out.push_str(&nacks.to_string());
            }
            emit(&out)
        }
        other => emit_value(&list_value(items), other),
    }
}

pub fn meshes(env: &Env, args: &InspectArgs) -> Result<()> {
    let client = env.client()?;
    let meshes = mesh_names(&client, args.mesh.as_deref())?;
    let counted: Vec<ResourceType> = user_types()
        .filter(|t| t.scope() == Scope::Mesh && !NOT_COUNTED.contains(t))
        .collect();
    let mut counts = Vec::new();
    for ty in &counted {
        counts.push(count_by_mesh(&client, *ty, args.mesh.as_deref())?);
    }
    match args.output {
        Output::Table => {
            let headers = counted
                .iter()
                .map(|t| t.path().replace('-', " ").to_uppercase());
            let mut t = Table::new(["NAME".to_string()].into_iter().chain(headers));
            for mesh in &meshes {
                let cells = counts
                    .iter()
                    .map(|c| c.get(mesh).copied().unwrap_or(0).to_string());
                t.row([mesh.clone()].into_iter().chain(cells));
            }
            emit(&t.to_string())
        }
        other => {
            let items = meshes
                .iter()
                .map(|mesh| {
                    let resources: Map<String, Value> = counted
                        .iter()
                        .zip(&counts)
                        .map(|(t, c)| (t.name().to_string(), json!(c.get(mesh).unwrap_or(&0))))
                        .collect();
                    json!({"name": mesh, "resources": resources})
                })
                .collect();
            emit_value(&list_value(items), other)
        }
    }
}

/// The one mesh asked for (checked to exist), or every mesh.
fn mesh_names(client: &Client, only: Option<&str>) -> Result<Vec<String>> {
    let meshes = match only {
        Some(mesh) => vec![client.get(&resource_path(ResourceType::Mesh, None, mesh))?],
        None => client.list(&collection_path(ResourceType::Mesh, None))?,
    };
    Ok(meshes
        .iter()
        .map(|m| text(m, "/name").to_string())
        .collect())
}

/// How many resources of `ty` each mesh holds.
fn count_by_mesh(
    client: &Client,
    ty: ResourceType,
    only: Option<&str>,
) -> Result<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    for item in client.list(&collection_path(ty, only))? {
        *counts.entry(text(&item, "/mesh").to_string()).or_insert(0) += 1;
    }
    Ok(counts)
}

/// MESH NAME TAGS STATUS LAST CONNECTED AGO LAST UPDATED AGO TOTAL UPDATES
/// TOTAL ERRORS, from DataplaneOverview items (see also [`nack_table`]).
fn overview_table(items: &[Value], now: OffsetDateTime) -> Table {
    let mut t = Table::new([
        "MESH",
        "NAME",
        "TAGS",
        "STATUS",
        "LAST CONNECTED AGO",
        "LAST UPDATED AGO",
        "TOTAL UPDATES",
        "TOTAL ERRORS",
    ]);
    for item in items {
        let subs: &[Value] = item
            .pointer("/dataplaneInsight/subscriptions")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let last = subs.last();
        let online = last.is_some_and(|s| {
            s.get("disconnectTime").is_none_or(Value::is_null) && s.get("connectTime").is_some()
        });
        let ago = |pointer: &str| match last.and_then(|s| s.pointer(pointer)) {
            Some(v) => age(parse_time(Some(v)), now),
            None => "never".to_string(),
        };
        let total = |field: &str| -> u64 {
            subs.iter()
                .map(|s| counter(s.pointer(&format!("/status/total/{field}"))))
                .sum()
        };
        t.row([
            text(item, "/mesh").to_string(),
            text(item, "/name").to_string(),
            item.get("dataplane")
                .map(dataplane_tags)
                .unwrap_or_default(),
            if online { "Online" } else { "Offline" }.to_string(),
            ago("/connectTime"),
            ago("/status/lastUpdateTime"),
            total("responsesSent").to_string(),
            total("responsesRejected").to_string(),
        ]);
    }
    t
}

/// The xDS discovery service of a type URL (`LDS`, `CDS`, ...).
fn discovery_service(type_url: &str) -> String {
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    match name.rsplit('.').next().unwrap_or(name) {
        "Listener" => "LDS".to_string(),
        "Cluster" => "CDS".to_string(),
        "ClusterLoadAssignment" => "EDS".to_string(),
        "RouteConfiguration" => "RDS".to_string(),
        "Secret" => "SDS".to_string(),
        _ => name.to_string(),
    }
}

/// The last config each Dataplane's Envoy rejected (`lastNack` of its
/// latest subscription, our extension), with Envoy's error: MESH NAME TYPE
/// VERSION REJECTED AGO RESOLVED AGO ERROR. `None` when no Dataplane has
/// one. Printed under the overview so that table keeps Kuma's columns.
fn nack_table(items: &[Value], now: OffsetDateTime) -> Option<Table> {
    let mut t = Table::new([
        "MESH",
        "NAME",
        "REJECTED CONFIG",
        "VERSION",
        "REJECTED AGO",
        "RESOLVED AGO",
        "ENVOY ERROR",
    ]);
    let mut any = false;
    for item in items {
        let nack = item
            .pointer("/dataplaneInsight/subscriptions")
            .and_then(Value::as_array)
            .and_then(|subs| subs.last())
            .and_then(|s| s.pointer("/status/lastNack"));
        let Some(nack) = nack else { continue };
        any = true;
        let error = text(nack, "/error").split_whitespace().collect::<Vec<_>>();
        t.row([
            text(item, "/mesh").to_string(),
            text(item, "/name").to_string(),
            discovery_service(text(nack, "/typeUrl")),
            text(nack, "/version").to_string(),
            age(parse_time(nack.get("time")), now),
            match nack.get("resolvedTime") {
                Some(v) if !v.is_null() => age(parse_time(Some(v)), now),
                _ => "unresolved".to_string(),
            },
            error.join(" "),
        ]);
    }
    any.then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn overview_rows_show_status_ages_and_totals() {
        let now = OffsetDateTime::parse("2024-01-01T01:00:00Z", &Rfc3339).unwrap();
        let online = json!({"type": "DataplaneOverview", "mesh": "default", "name": "web-1",
            "dataplane": {"networking": {"address": "1.1.1.1",
                "inbound": [{"port": 1, "tags": {"kuma.io/service": "web"}}]}},
            "dataplaneInsight": {"subscriptions": [
                {"id": "a", "controlPlaneInstanceId": "cp", "connectTime": "2024-01-01T00:00:00Z",
                 "disconnectTime": "2024-01-01T00:10:00Z",
                 "status": {"total": {"responsesSent": "3", "responsesRejected": "1"}}},
                {"id": "b", "controlPlaneInstanceId": "cp", "connectTime": "2024-01-01T00:59:00Z",
                 "status": {"lastUpdateTime": "2024-01-01T00:59:50Z",
                   "total": {"responsesSent": 4, "responsesAcknowledged": 4, "responsesRejected": 0}}}]}});
        let offline = json!({"type": "DataplaneOverview", "mesh": "default", "name": "db-1",
            "dataplane": {"networking": {"gateway": {"tags": {"kuma.io/service": "gw"}}}},
            "dataplaneInsight": {"subscriptions": []}});
        let t = overview_table(&[online, offline], now);
        assert_eq!(
            t.to_string(),
            "MESH      NAME    TAGS                  STATUS    LAST CONNECTED AGO   LAST UPDATED AGO   TOTAL UPDATES   TOTAL ERRORS\n\
             default   web-1   kuma.io/service=web   Online    60s                  10s                7               1\n\
             default   db-1    kuma.io/service=gw    Offline   never                never              0               0\n"
        );
        assert!(nack_table(&[], now).is_none());
    }

    #[test]
    fn nack_rows_show_envoy_error_and_resolution() {
        let now = OffsetDateTime::parse("2024-01-01T01:00:00Z", &Rfc3339).unwrap();
        let nack = |resolved: Value| {
            json!({"typeUrl": "type.googleapis.com/envoy.config.listener.v3.Listener",
                "version": "abc", "error": "Error adding/updating listener(s)\nduplicate",
                "time": "2024-01-01T00:59:00Z", "resolvedTime": resolved})
        };
        let dp = |name: &str, nack: Value| {
            json!({"mesh": "default", "name": name, "dataplaneInsight": {"subscriptions": [
                {"id": "b", "connectTime": "2024-01-01T00:58:00Z",
                 "status": {"lastNack": nack}}]}})
        };
        let ok =
            json!({"mesh": "default", "name": "ok", "dataplaneInsight": {"subscriptions": []}});
        let t = nack_table(
            &[
                dp("web-1", nack(Value::Null)),
                ok,
                dp("web-2", nack(json!("2024-01-01T00:59:30Z"))),
            ],
            now,
        )
        .unwrap();
        assert_eq!(
            t.to_string(),
            "MESH      NAME    REJECTED CONFIG   VERSION   REJECTED AGO   RESOLVED AGO   ENVOY ERROR\n\
             default   web-1   LDS               abc       60s            unresolved     Error adding/updating listener(s) duplicate\n\
             default   web-2   LDS               abc       60s            30s            Error adding/updating listener(s) duplicate\n"
        );
    }
}
