//! Router tests through `tower::ServiceExt::oneshot`, no sockets.

use super::*;
use crate::store::MemoryStore;
use axum::body::Body;
use axum::http::Request as HttpRequest;
use serde_json::Value;
use tower::ServiceExt;

async fn app_with(config: ApiConfig) -> Router {
    let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
    manager
        .create(crate::resource::Resource::from_yaml("type: Mesh\nname: default").unwrap())
        .await
        .unwrap();
    router(manager, config)
}

async fn app() -> Router {
    app_with(ApiConfig::default()).await
}

async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let mut req = HttpRequest::builder()
        .method(method)
        .uri(uri)
        .header("host", "cp:5681");
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, json)
}

fn dp(name: &str, port: u32) -> String {
    format!(
        r#"{{"type":"Dataplane","mesh":"default","name":"{name}","networking":{{"address":"10.0.0.1","inbound":[{{"port":{port},"servicePort":9000,"tags":{{"kuma.io/service":"web"}}}}]}}}}"#
    )
}

#[tokio::test]
async fn index_and_catalog() {
    let app = app().await;
    let (s, v) = call(&app, "GET", "/", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["tagline"], "Kuma");
    let (s, v) = call(&app, "GET", "/catalog", "").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["apis"]["bootstrap"]["url"].is_string());
}

#[tokio::test]
async fn crud_round_trip() {
    let app = app().await;
    let (s, _) = call(
        &app,
        "PUT",
        "/meshes/default/dataplanes/dp-1",
        &dp("dp-1", 8080),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        &app,
        "PUT",
        "/meshes/default/dataplanes/dp-1",
        &dp("dp-1", 8081),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&app, "GET", "/meshes/default/dataplanes/dp-1", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["networking"]["inbound"][0]["port"], 8081);
    assert_eq!(v["type"], "Dataplane");
    assert!(v["creationTime"].is_string());
    let (s, v) = call(&app, "GET", "/dataplanes", "").await;
    assert_eq!((s, v["total"].as_u64()), (StatusCode::OK, Some(1)));
    let (s, _) = call(&app, "DELETE", "/meshes/default/dataplanes/dp-1", "").await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&app, "GET", "/meshes/default/dataplanes/dp-1", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["title"], "Could not retrieve a resource");
}

#[tokio::test]
async fn paging_links_the_next_page() {
    let app = app().await;
    for i in 0..5 {
        let (s, _) = call(
            &app,
            "PUT",
            &format!("/meshes/default/dataplanes/dp-{i}"),
            &dp(&format!("dp-{i}"), 8080),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (_, v) = call(&app, "GET", "/meshes/default/dataplanes?size=2", "").await;
    assert_eq!(v["total"], 5);
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let next = v["next"].as_str().unwrap();
    assert!(
        next.starts_with("http://cp:5681/meshes/default/dataplanes?offset="),
        "{next}"
    );
    let path = next.trim_start_matches("http://cp:5681");
    let (_, v) = call(&app, "GET", path, "").await;
    assert_eq!(v["items"][0]["name"], "dp-2");
    let (s, v) = call(&app, "GET", "/meshes/default/dataplanes?size=5000", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["causes"][0]["field"], "size");
    let (s, v) = call(
        &app,
        "GET",
        "/meshes/default/dataplanes?offset=garbage!",
        "",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["causes"][0]["field"], "offset");
}

#[tokio::test]
async fn bad_input_is_rejected_and_nothing_is_stored() {
    let app = app().await;
    let cases: Vec<(&str, String, StatusCode, Option<&str>)> = vec![
        (
            "/meshes/default/dataplanes/x",
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "/meshes/default/dataplanes/x",
            dp("y", 8080),
            StatusCode::BAD_REQUEST,
            Some("name"),
        ),
        (
            "/meshes/other/dataplanes/x",
            dp("x", 8080),
            StatusCode::BAD_REQUEST,
            Some("mesh"),
        ),
        (
            "/meshes/default/dataplanes/x",
            dp("x", 70000),
            StatusCode::BAD_REQUEST,
            Some("networking.inbound[0].port"),
        ),
        (
            "/meshes/default/dataplanes/x",
            dp("x", 8080).replace("\"address\"", "\"adress\""),
            StatusCode::BAD_REQUEST,
            Some("networking"),
        ),
        (
            "/meshes/default/traffic-routes/x",
            dp("x", 8080),
            StatusCode::BAD_REQUEST,
            Some("type"),
        ),
        (
            "/meshes/default/no-such-things/x",
            dp("x", 8080),
            StatusCode::NOT_FOUND,
            None,
        ),
    ];
    for (uri, body, status, field) in cases {
        let (s, v) = call(&app, "PUT", uri, &body).await;
        assert_eq!(s, status, "{uri}: {v}");
        if let Some(f) = field {
            let causes: Vec<&str> = v["causes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["field"].as_str().unwrap())
                .collect();
            assert!(causes.iter().any(|c| c.starts_with(f)), "{uri}: {causes:?}");
        }
        assert!(v["title"].is_string() && v["details"].is_string(), "{v}");
    }
    // Writes into a missing mesh.
    let body = dp("x", 8080).replace("\"mesh\":\"default\"", "\"mesh\":\"ghost\"");
    let (s, v) = call(&app, "PUT", "/meshes/ghost/dataplanes/x", &body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["causes"][0]["field"], "mesh");
    // Oversized body.
    let small = app_with(ApiConfig {
        max_body_bytes: 64,
        ..ApiConfig::default()
    })
    .await;
    let (s, _) = call(
        &small,
        "PUT",
        "/meshes/default/dataplanes/x",
        &dp("x", 8080),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (_, v) = call(&app, "GET", "/dataplanes", "").await;
    assert_eq!(v["total"], 0);
}

#[tokio::test]
async fn modes_restrict_writes() {
    let global = app_with(ApiConfig {
        mode: ApiMode::Global,
        ..ApiConfig::default()
    })
    .await;
    let (s, _) = call(
        &global,
        "PUT",
        "/meshes/default/dataplanes/x",
        &dp("x", 8080),
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _) = call(
        &global,
        "PUT",
        "/meshes/m2",
        r#"{"type":"Mesh","name":"m2"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let remote = app_with(ApiConfig {
        mode: ApiMode::Remote,
        ..ApiConfig::default()
    })
    .await;
    let (s, _) = call(
        &remote,
        "PUT",
        "/meshes/m2",
        r#"{"type":"Mesh","name":"m2"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _) = call(
        &remote,
        "PUT",
        "/meshes/default/dataplanes/x",
        &dp("x", 8080),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(&remote, "DELETE", "/meshes/default", "").await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let ro = app_with(ApiConfig {
        read_only: true,
        ..ApiConfig::default()
    })
    .await;
    let (s, _) = call(&ro, "PUT", "/meshes/default/dataplanes/x", &dp("x", 8080)).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn dataplanes_with_insights_and_filters() {
    let app = app().await;
    call(&app, "PUT", "/meshes/default/dataplanes/a", &dp("a", 8080)).await;
    let gw = r#"{"type":"Dataplane","mesh":"default","name":"gw","networking":{"address":"10.0.0.2","gateway":{"tags":{"kuma.io/service":"edge"}}}}"#;
    let (s, v) = call(&app, "PUT", "/meshes/default/dataplanes/gw", gw).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = call(&app, "GET", "/meshes/default/dataplanes+insights", "").await;
    assert_eq!(v["total"], 2);
    assert_eq!(v["items"][0]["type"], "DataplaneOverview");
    assert_eq!(
        v["items"][0]["dataplane"]["networking"]["address"],
        "10.0.0.1"
    );
    assert!(v["items"][0]["dataplaneInsight"].is_object());
    let (_, v) = call(
        &app,
        "GET",
        "/meshes/default/dataplanes+insights?gateway=true",
        "",
    )
    .await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["name"], "gw");
    let (_, v) = call(
        &app,
        "GET",
        "/meshes/default/dataplanes+insights?tag=kuma.io%2Fservice:web",
        "",
    )
    .await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["name"], "a");
    let (s, v) = call(&app, "GET", "/meshes/default/dataplanes+insights/a", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["name"], "a");
    let (s, _) = call(&app, "PUT", "/meshes/default/dataplanes+insights/a", "{}").await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_mesh_with_dataplanes_is_deleted_only_with_force() {
    let app = app().await;
    let (s, _) = call(
        &app,
        "PUT",
        "/meshes/default/dataplanes/web-1",
        &dp("web-1", 8080),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        &app,
        "PUT",
        "/meshes/default/dataplanes/web-2",
        &dp("web-2", 8081),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = call(&app, "DELETE", "/meshes/default", "").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let details = v["details"].as_str().unwrap();
    assert!(details.contains("2 Dataplane"), "{details}");
    assert!(details.contains("force=true"), "{details}");
    let (s, _) = call(&app, "GET", "/meshes/default", "").await;
    assert_eq!(s, StatusCode::OK, "the mesh is still there");
    let (s, v) = call(&app, "DELETE", "/meshes/default?force=true", "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = call(&app, "GET", "/meshes/default/dataplanes/web-1", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // An empty mesh needs no force.
    let (s, _) = call(
        &app,
        "PUT",
        "/meshes/empty",
        r#"{"type":"Mesh","name":"empty"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(&app, "DELETE", "/meshes/empty", "").await;
    assert_eq!(s, StatusCode::OK);
}
