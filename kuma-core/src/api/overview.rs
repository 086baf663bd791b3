//! `dataplanes+insights`, `zones+insights` and `/status/zones`: resources
//! joined with the runtime insight of the same name.

use super::resources::{next_url, page_params};
use super::{ApiError, ApiState, Call};
use crate::resource::{Resource, ResourceKey, ResourceType};
use crate::store::{ListRequest, StoreError};
use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;

const META: [&str; 5] = ["type", "mesh", "name", "creationTime", "modificationTime"];

/// Splits a resource's universal JSON into (meta, spec) objects.
fn split(r: &Resource) -> (Map<String, Value>, Value) {
    let Value::Object(all) = r.to_json_value() else {
        return (Map::new(), json!({}));
    };
    let (mut meta, mut spec) = (Map::new(), Map::new());
    for (k, v) in all {
        if META.contains(&k.as_str()) {
            meta.insert(k, v);
        } else {
            spec.insert(k, v);
        }
    }
    (meta, Value::Object(spec))
}

async fn insight_of(state: &ApiState, key: ResourceKey) -> Result<Value, ApiError> {
    match state.manager.get(&key).await {
        Ok(r) => Ok(split(&r).1),
        Err(crate::manager::ManagerError::Store(StoreError::NotFound(_))) => Ok(json!({})),
        Err(e) => Err(e.into()),
    }
}

fn overview(
    kind: &str,
    r: &Resource,
    field: &str,
    spec: Value,
    ifield: &str,
    insight: Value,
) -> Value {
    let (mut meta, _) = split(r);
    meta.insert("type".into(), Value::String(kind.into()));
    meta.insert(field.into(), spec);
    meta.insert(ifield.into(), insight);
    Value::Object(meta)
}

/// Whether a Dataplane passes the `tag=k:v`, `gateway` and `ingress` filters.
fn passes(call: &Call, dp: &Value) -> Result<bool, ApiError> {
    let networking = &dp["networking"];
    let mut tag_sets: Vec<&Map<String, Value>> = Vec::new();
    if let Some(inbounds) = networking["inbound"].as_array() {
        tag_sets.extend(inbounds.iter().filter_map(|i| i["tags"].as_object()));
    }
    if let Some(t) = networking["gateway"]["tags"].as_object() {
        tag_sets.push(t);
    }
    for (k, v) in &call.query {
        match k.as_str() {
            "tag" => {
                let (tk, tv) = v.split_once(':').ok_or_else(|| {
                    ApiError::bad_field(
                        "tag",
                        format!("invalid tag filter {v:?}: use tag=key:value"),
                    )
                })?;
                let hit = tag_sets
                    .iter()
                    .any(|t| t.get(tk).and_then(Value::as_str) == Some(tv));
                if !hit {
                    return Ok(false);
                }
            }
            "gateway" | "ingress" => {
                let want = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::bad_field(
                            k,
                            format!("invalid value {v:?}: use true or false"),
                        ));
                    }
                };
                if networking[k.as_str()].is_object() != want {
                    return Ok(false);
                }
            }
            _ => {}
        }
    }
    Ok(true)
}

/// Numeric offsets for overview lists (they are filtered after reading).
fn parse_index(offset: Option<String>) -> Result<usize, ApiError> {
    match offset {
        None => Ok(0),
        Some(o) => o.parse().map_err(|_| {
            ApiError::bad_field(
                "offset",
                format!("invalid offset {o:?}: use the `next` URL of the previous page"),
            )
        }),
    }
}

/// `GET [/meshes/{mesh}]/dataplanes+insights[/{name}]`.
pub(crate) async fn dataplanes(
    state: &ApiState,
    call: &Call,
    mesh: Option<&str>,
    name: Option<&str>,
) -> Result<Response, ApiError> {
    let build = |r: Arc<Resource>| async move {
        let key = ResourceKey::new(
            ResourceType::DataplaneInsight,
            r.meta.mesh.as_deref(),
            &r.meta.name,
        );
        let insight = insight_of(state, key).await?;
        let (_, spec) = split(&r);
        Ok::<_, ApiError>(overview(
            "DataplaneOverview",
            &r,
            "dataplane",
            spec,
            "dataplaneInsight",
            insight,
        ))
    };
    if let Some(name) = name {
        let r = state
            .manager
            .get(&ResourceKey::new(ResourceType::Dataplane, mesh, name))
            .await?;
        return Ok(Json(build(r).await?).into_response());
    }
    let request = ListRequest {
        resource_type: ResourceType::Dataplane,
        mesh: mesh.map(str::to_string),
        page_size: None,
        offset: None,
    };
    let all = state.manager.list(&request).await?.items;
    let mut matching = Vec::new();
    for r in all {
        if passes(call, &split(&r).1)? {
            matching.push(r);
        }
    }
    page_out(state, call, matching, build).await
}

async fn page_out<F, Fut>(
    state: &ApiState,
    call: &Call,
    matching: Vec<Arc<Resource>>,
    build: F,
) -> Result<Response, ApiError>
where
    F: Fn(Arc<Resource>) -> Fut,
    Fut: std::future::Future<Output = Result<Value, ApiError>>,
{
    let (size, offset) = page_params(call)?;
    let start = parse_index(offset)?;
    let total = matching.len();
    let mut items = Vec::new();
    for r in matching.into_iter().skip(start).take(size) {
        items.push(build(r).await?);
    }
    let next =
        (start + size < total).then(|| next_url(state, call, size, &(start + size).to_string()));
    Ok(Json(json!({"total": total, "items": items, "next": next})).into_response())
}

/// `GET /zones+insights[/{name}]`.
pub(crate) async fn zones(
    state: &ApiState,
    call: &Call,
    name: Option<&str>,
) -> Result<Response, ApiError> {
    let build = |r: Arc<Resource>| async move {
        let key = ResourceKey::new(ResourceType::ZoneInsight, None, &r.meta.name);
        let insight = insight_of(state, key).await?;
        let (_, spec) = split(&r);
        Ok::<_, ApiError>(overview(
            "ZoneOverview",
            &r,
            "zone",
            spec,
            "zoneInsight",
            insight,
        ))
    };
    if let Some(name) = name {
        let r = state
            .manager
            .get(&ResourceKey::new(ResourceType::Zone, None, name))
            .await?;
        return Ok(Json(build(r).await?).into_response());
    }
    let all = state
        .manager
        .list(&ListRequest::all(ResourceType::Zone))
        .await?
        .items;
    page_out(state, call, all, build).await
}

/// `GET /status/zones`: each zone and whether its KDS stream is up.
pub(crate) async fn zone_status(state: &ApiState) -> Result<Response, ApiError> {
    let all = state
        .manager
        .list(&ListRequest::all(ResourceType::Zone))
        .await?
        .items;
    let mut out = Vec::new();
    for z in all {
        let key = ResourceKey::new(ResourceType::ZoneInsight, None, &z.meta.name);
        let insight = insight_of(state, key).await?;
        let active = insight["subscriptions"]
            .as_array()
            .and_then(|s| s.last())
            .is_some_and(|s| s.get("disconnectTime").is_none_or(Value::is_null));
        out.push(json!({"name": z.meta.name, "url": "", "active": active}));
    }
    Ok(Json(Value::Array(out)).into_response())
}
