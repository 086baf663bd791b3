//! CRUD over every resource type, through the manager.

use super::{ApiError, ApiMode, ApiState, Call, redact};
use crate::resource::{Resource, ResourceKey, ResourceKind, ResourceType, Scope};
use crate::store::ListRequest;
use crate::validation::Violation;
use axum::Json;
use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Default and largest page sizes.
pub(crate) const DEFAULT_PAGE: usize = 100;
pub(crate) const MAX_PAGE: usize = 1000;

/// The type a REST path names; `Config` is internal and not served.
pub(crate) fn type_of(path: &str, full: &str) -> Result<ResourceType, ApiError> {
    match ResourceType::from_path(path) {
        Some(ResourceType::Config) | None => Err(ApiError::unknown_path(full)),
        Some(t) => Ok(t),
    }
}

/// Reads `size` (1..=1000, default 100) and `offset`.
pub(crate) fn page_params(call: &Call) -> Result<(usize, Option<String>), ApiError> {
    let size = match call.param("size") {
        None => DEFAULT_PAGE,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_field(
                    "size",
                    format!("invalid page size {s:?}: must be a number from 1 to {MAX_PAGE}"),
                ));
            }
        },
    };
    let offset = call
        .param("offset")
        .filter(|o| !o.is_empty())
        .map(str::to_string);
    Ok((size, offset))
}

/// The absolute URL of the next page.
pub(crate) fn next_url(state: &ApiState, call: &Call, size: usize, offset: &str) -> String {
    let host = call
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| state.config.hostname.clone());
    let mut url = format!("http://{host}{}?", call.path);
    for (k, v) in call
        .query
        .iter()
        .filter(|(k, _)| k != "offset" && k != "size")
    {
        url.push_str(&format!("{}={}&", encode(k), encode(v)));
    }
    url.push_str(&format!("offset={}&size={size}", encode(offset)));
    url
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /meshes/{mesh}/{path}` and `GET /{path}`.
pub(crate) async fn list(
    state: &ApiState,
    call: &Call,
    path: &str,
    mesh: Option<&str>,
) -> Result<Response, ApiError> {
    let ty = type_of(path, &call.path)?;
    if mesh.is_some() && ty.scope() == Scope::Global {
        return Err(ApiError::unknown_path(&call.path));
    }
    let (size, offset) = page_params(call)?;
    let request = ListRequest {
        resource_type: ty,
        mesh: mesh.map(str::to_string),
        page_size: Some(size),
        offset,
    };
    let page = state.manager.list(&request).await?;
    let items: Vec<_> = page.items.iter().map(|r| public_json(r)).collect();
    let next = page.next_offset.map(|o| next_url(state, call, size, &o));
    Ok(Json(json!({"total": page.total, "items": items, "next": next})).into_response())
}

fn check_writable(state: &ApiState, ty: ResourceType) -> Result<(), ApiError> {
    if state.config.read_only {
        return Err(ApiError::not_allowed(
            "the API server is read-only (apiServer.readOnly)",
        ));
    }
    if ty.kind() == ResourceKind::Insight {
        return Err(ApiError::not_allowed(format!(
            "{ty} is managed by the control plane and cannot be changed through the API"
        )));
    }
    match (state.config.mode, ty) {
        (ApiMode::Global, ResourceType::Dataplane) => Err(ApiError::not_allowed(
            "on a global control plane Dataplanes are read-only: apply them on a remote (zone) control plane",
        )),
        (ApiMode::Remote, t) if t != ResourceType::Dataplane => {
            Err(ApiError::not_allowed(format!(
                "on a remote control plane only Dataplanes can be changed; apply {t} on the global control plane"
            )))
        }
        _ => Ok(()),
    }
}

/// `GET|PUT|DELETE /meshes/{mesh}/{path}/{name}` and `/{path}/{name}`.
pub(crate) async fn one(
    state: &ApiState,
    call: &Call,
    body: Body,
    path: &str,
    mesh: Option<&str>,
    name: &str,
) -> Result<Response, ApiError> {
    let ty = type_of(path, &call.path)?;
    match (mesh.is_some(), ty.scope()) {
        (true, Scope::Global) | (false, Scope::Mesh) => {
            return Err(ApiError::unknown_path(&call.path));
        }
        _ => {}
    }
    let key = ResourceKey::new(ty, mesh, name);
    match call.method {
        Method::GET | Method::HEAD => {
            let r = state.manager.get(&key).await?;
            Ok(Json(public_json(&r)).into_response())
        }
        Method::PUT => {
            check_writable(state, ty)?;
            let resource = decode_body(state, call, body).await?;
            let resource = check_identity(resource, &key)?;
            let resource = restore_redacted(state, &key, resource).await?;
            let (_, created) = state.manager.upsert(resource).await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(status.into_response())
        }
        Method::DELETE => {
            check_writable(state, ty)?;
            if ty == ResourceType::Mesh && call.param("force") != Some("true") {
                check_mesh_unused(state, name).await?;
            }
            state.manager.delete(&key).await?;
            Ok(StatusCode::OK.into_response())
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "this endpoint accepts GET, PUT and DELETE",
        )),
    }
}

/// A resource as the public API shows it: private keys redacted.
fn public_json(r: &Resource) -> serde_json::Value {
    let mut v = r.to_json_value();
    redact::redact(r.resource_type(), &mut v);
    v
}

/// Refuses `file` data sources and puts stored private keys back where
/// the written resource holds the redaction marker (see [`redact`]).
async fn restore_redacted(
    state: &ApiState,
    key: &ResourceKey,
    resource: Resource,
) -> Result<Resource, ApiError> {
    let ty = resource.resource_type();
    if !redact::has_sources(ty) {
        return Ok(resource);
    }
    let mut incoming = resource.to_json_value();
    let needs_stored = incoming.to_string().contains(redact::REDACTED);
    let stored = if needs_stored {
        match state.manager.get(key).await {
            Ok(r) => Some(r.to_json_value()),
            Err(crate::manager::ManagerError::Store(crate::store::StoreError::NotFound(_))) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    redact::prepare_write(ty, &mut incoming, stored.as_ref())?;
    if !needs_stored {
        return Ok(resource);
    }
    Ok(Resource::from_json(&incoming.to_string())?)
}

/// A Mesh that still has Dataplanes is not deleted (its resources would
/// go with it, and its proxies lose their configuration) unless the caller
/// says `?force=true`: 409 naming how many.
async fn check_mesh_unused(state: &ApiState, mesh: &str) -> Result<(), ApiError> {
    let page = state
        .manager
        .list(&ListRequest {
            resource_type: ResourceType::Dataplane,
            mesh: Some(mesh.to_string()),
            page_size: Some(1),
            offset: None,
        })
        .await?;
    if page.total == 0 {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "Mesh is in use",
        format!(
            "mesh {mesh:?} still has {} Dataplane(s): delete them first, or delete the mesh with ?force=true (kumactl delete mesh {mesh} --force)",
            page.total
        ),
    ))
}

async fn decode_body(state: &ApiState, call: &Call, body: Body) -> Result<Resource, ApiError> {
    let limit = state.config.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Could not process resource",
            format!("request body is larger than {limit} bytes"),
        )
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Could not process resource",
            "request body is not UTF-8 text",
        )
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Could not process resource",
            "request body is empty: send the resource as JSON or YAML",
        ));
    }
    let content_type = call
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let yaml = content_type.contains("yaml")
        || (!content_type.contains("json") && !text.trim_start().starts_with('{'));
    let decoded = if yaml {
        Resource::from_yaml(text)
    } else {
        Resource::from_json(text)
    };
    Ok(decoded?)
}

/// The body's type, name and mesh must be the URL's; missing ones are taken
/// from the URL.
fn check_identity(mut r: Resource, key: &ResourceKey) -> Result<Resource, ApiError> {
    let mut causes = Vec::new();
    if r.resource_type() != key.resource_type {
        causes.push(Violation {
            field: "type".into(),
            message: format!(
                "type {:?} in the body does not match the URL's type {:?}",
                r.resource_type().name(),
                key.resource_type.name()
            ),
        });
    }
    if r.meta.name.is_empty() {
        r.meta.name = key.name.clone();
    } else if r.meta.name != key.name {
        causes.push(Violation {
            field: "name".into(),
            message: format!(
                "name {:?} in the body does not match the name {:?} in the URL",
                r.meta.name, key.name
            ),
        });
    }
    match (&r.meta.mesh, &key.mesh) {
        (None, Some(m)) => r.meta.mesh = Some(m.clone()),
        (Some(b), Some(m)) if b != m => causes.push(Violation {
            field: "mesh".into(),
            message: format!("mesh {b:?} in the body does not match the mesh {m:?} in the URL"),
        }),
        _ => {}
    }
    if causes.is_empty() {
        Ok(r)
    } else {
        Err(ApiError {
            causes,
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "Could not process resource",
                "Resource is not valid",
            )
        })
    }
}
