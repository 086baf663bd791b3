//! Dataplane token checks of the bootstrap server (through its router) and
//! the ADS server (a tonic client over a real socket, both stream flavours).

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use kuma_core::manager::ResourceManager;
use kuma_core::resource::Resource;
use kuma_core::store::MemoryStore;
use kuma_core::tokens::{DataplaneAuth, DataplaneTokens, TokenRequest};
use kuma_xds::ads::AdsServer;
use kuma_xds::bootstrap::{self, BootstrapConfig};
use kuma_xds::cache::SnapshotCache;
use kuma_xds::reconcile::ProxyEvent;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tower::ServiceExt;

const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

async fn setup() -> (ResourceManager, DataplaneTokens) {
    let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
    for yaml in [
        "type: Mesh\nname: default\n".to_string(),
        "type: Mesh\nname: other\n".to_string(),
        dataplane("web-1"),
        dataplane("web-2"),
    ] {
        manager
            .create(Resource::from_yaml(&yaml).unwrap())
            .await
            .unwrap();
    }
    let tokens = DataplaneTokens::new(manager.clone());
    (manager, tokens)
}

fn dataplane(name: &str) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 18080\n    tags:\n      kuma.io/service: web\n"
    )
}

async fn token(tokens: &DataplaneTokens, mesh: &str, name: &str) -> String {
    tokens
        .issue(&TokenRequest {
            name: name.into(),
            mesh: mesh.into(),
            valid_for: None,
        })
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// Bootstrap server

fn bootstrap_app(manager: ResourceManager, auth: DataplaneAuth) -> axum::Router {
    bootstrap::router(
        manager,
        BootstrapConfig {
            xds_host: Some("127.0.0.1".into()),
            xds_port: 5678,
            xds_ca_pem: None,
            sds: None,
        },
        auth,
    )
}

/// `POST /bootstrap` with a JSON body -> (status, body).
async fn post_bootstrap(app: &axum::Router, body: &serde_json::Value) -> (u16, String) {
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/bootstrap")
        .header("host", "127.0.0.1:5682")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn bootstrap_request(name: &str, token: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({"mesh": "default", "name": name, "adminPort": 9901});
    if let Some(t) = token {
        v["dataplaneToken"] = t.into();
    }
    v
}

#[tokio::test]
async fn bootstrap_refuses_missing_and_mismatched_tokens() {
    let (manager, tokens) = setup().await;
    let app = bootstrap_app(manager, DataplaneAuth::Tokens(tokens.clone()));
    let other = token(&tokens, "default", "web-2").await;
    let other_mesh = token(&tokens, "other", "web-1").await;
    let cases = [
        (None, "dataplane token is missing"),
        (Some("garbage"), "dataplane token is malformed"),
        (Some(other.as_str()), "is for dataplane \"web-2\""),
        (Some(other_mesh.as_str()), "is for mesh \"other\""),
    ];
    for (presented, expected) in cases {
        let (status, body) = post_bootstrap(&app, &bootstrap_request("web-1", presented)).await;
        assert_eq!(status, 401, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["title"], "Could not generate a bootstrap");
        assert!(
            v["details"].as_str().unwrap().contains(expected),
            "{expected}: {body}"
        );
        assert_eq!(v["causes"][0]["field"], "dataplaneToken", "{body}");
        if let Some(t) = presented.filter(|t| t.len() > 10) {
            for part in t.split('.') {
                assert!(!body.contains(part), "the answer quotes the token: {body}");
            }
        }
    }
}

#[tokio::test]
async fn bootstrap_with_a_valid_token_hands_it_to_ads() {
    let (manager, tokens) = setup().await;
    let app = bootstrap_app(manager, DataplaneAuth::Tokens(tokens.clone()));
    let t = token(&tokens, "default", "web-1").await;
    for presented in [t.clone(), format!("Bearer {t}\n")] {
        let (status, body) =
            post_bootstrap(&app, &bootstrap_request("web-1", Some(&presented))).await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_yaml_ng::from_str(&body).unwrap();
        let service = &v["dynamic_resources"]["ads_config"]["grpc_services"][0];
        assert_eq!(service["envoy_grpc"]["cluster_name"], "ads_cluster");
        assert_eq!(
            service["initial_metadata"],
            serde_json::json!([{"key": "authorization", "value": t}])
        );
    }
}

#[tokio::test]
async fn bootstrap_without_checks_needs_no_token() {
    let (manager, _) = setup().await;
    let app = bootstrap_app(manager, DataplaneAuth::Off);
    let (status, body) = post_bootstrap(&app, &bootstrap_request("web-1", None)).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_yaml_ng::from_str(&body).unwrap();
    let service = &v["dynamic_resources"]["ads_config"]["grpc_services"][0];
    assert!(service.get("initial_metadata").is_none(), "{body}");
}

// ---------------------------------------------------------------------------
// ADS server

struct Ads {
    addr: SocketAddr,
    events: kuma_xds::ads::ProxyEventReceiver,
}

async fn serve_ads(manager: ResourceManager, auth: DataplaneAuth) -> Ads {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, events) = kuma_xds::ads::proxy_event_channel();
    let ads = AdsServer::new(manager, Arc::new(SnapshotCache::new()), tx, "test").with_auth(auth);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ads.into_service())
            .serve_with_incoming(incoming),
    );
    Ads { addr, events }
}

fn node(name: &str) -> Option<Node> {
    Some(Node {
        id: format!("default.{name}"),
        ..Default::default()
    })
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(t) = token {
        let value: MetadataValue<_> = t.parse().unwrap();
        req.metadata_mut().insert("authorization", value);
    }
    req
}

/// Opens a SotW stream as `name` presenting `token`; the first answer.
async fn sotw(addr: SocketAddr, name: &str, token: Option<&str>) -> Result<(), tonic::Status> {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let first = DiscoveryRequest {
        node: node(name),
        type_url: CLUSTER_TYPE.into(),
        ..Default::default()
    };
    // The stream stays open (the client end is kept) until the answer.
    let (tx, rx) = mpsc::channel(1);
    tx.send(first).await.unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut responses = client
        .stream_aggregated_resources(with_token(stream, token))
        .await?
        .into_inner();
    let answer = tokio::time::timeout(Duration::from_secs(2), responses.message()).await;
    drop(tx);
    match answer {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(status),
        // Accepted: nothing to send yet (empty snapshot), stream open.
        Err(_) => Ok(()),
    }
}

#[tokio::test]
async fn ads_refuses_streams_without_a_valid_token() {
    let (manager, tokens) = setup().await;
    let mut ads = serve_ads(manager, DataplaneAuth::Tokens(tokens.clone())).await;
    let other = token(&tokens, "default", "web-2").await;
    let cases = [
        (None, "dataplane token is missing"),
        (Some("not.a.token"), "dataplane token is malformed"),
        (Some(other.as_str()), "is for dataplane \"web-2\""),
    ];
    for (presented, expected) in cases {
        let status = sotw(ads.addr, "web-1", presented).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(status.message().contains(expected), "{status:?}");
        assert!(!status.message().contains(&other), "{status:?}");
    }
    // Nothing reached the reconciler.
    assert!(ads.events.try_recv().is_err());
}

#[tokio::test]
async fn ads_accepts_a_valid_token_and_passes_it_on() {
    let (manager, tokens) = setup().await;
    let mut ads = serve_ads(manager, DataplaneAuth::Tokens(tokens.clone())).await;
    let t = token(&tokens, "default", "web-1").await;
    let addr = ads.addr;
    let bearer = format!("Bearer {t}");
    let stream = tokio::spawn(async move { sotw(addr, "web-1", Some(&bearer)).await });
    let event = tokio::time::timeout(Duration::from_secs(5), ads.events.recv())
        .await
        .unwrap()
        .unwrap();
    match event {
        ProxyEvent::Connected { node, token } => {
            assert_eq!(node.to_string(), "default.web-1");
            assert_eq!(token.as_deref(), Some(t.as_str()));
        }
        other => panic!("expected Connected, got {other:?}"),
    }
    stream.await.unwrap().unwrap();
}

#[tokio::test]
async fn ads_without_checks_passes_no_token() {
    let (manager, _) = setup().await;
    let mut ads = serve_ads(manager, DataplaneAuth::Off).await;
    let addr = ads.addr;
    let stream = tokio::spawn(async move { sotw(addr, "web-1", None).await });
    let event = tokio::time::timeout(Duration::from_secs(5), ads.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(event, ProxyEvent::Connected { token: None, .. }),
        "{event:?}"
    );
    stream.await.unwrap().unwrap();
}

#[tokio::test]
async fn delta_ads_refuses_streams_without_a_token() {
    let (manager, tokens) = setup().await;
    let ads = serve_ads(manager, DataplaneAuth::Tokens(tokens)).await;
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{}", ads.addr))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(1);
    tx.send(DeltaDiscoveryRequest {
        node: node("web-1"),
        type_url: CLUSTER_TYPE.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut responses = client
        .delta_aggregated_resources(with_token(stream, None))
        .await
        .unwrap()
        .into_inner();
    let status = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("dataplane token is missing"));
}
