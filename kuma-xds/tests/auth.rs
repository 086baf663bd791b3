//! Dataplane token checks of the bootstrap server (through its router) and
//! the ADS server (a tonic client over a real socket, both stream flavours):
//! the token itself, then the Dataplane it allows (tags, type), and a proxy
//! that tries to take over an operator's Dataplane.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{Struct, Value};
use kuma_core::manager::ResourceManager;
use kuma_core::resource::Resource;
use kuma_core::resource::{DataplaneSpec, ResourceKey, ResourceType};
use kuma_core::store::MemoryStore;
use kuma_core::tokens::{DataplaneAuth, DataplaneTokens, TokenRequest, TokenTags, TokenType};
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
            ..Default::default()
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
    sotw_as(addr, node(name), token).await
}

/// Opens a SotW stream with `node` presenting `token`; the first answer.
async fn sotw_as(
    addr: SocketAddr,
    node: Option<Node>,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let first = DiscoveryRequest {
        node,
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
        ProxyEvent::Connected { node, token, .. } => {
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

// ---------------------------------------------------------------------------
// The Dataplane a token allows (tags, type) and operators' Dataplanes

/// A Dataplane of mesh `default` with one inbound of `service`.
fn dp_of(name: &str, service: &str) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 18080\n    tags:\n      kuma.io/service: {service}\n"
    )
}

/// A zone ingress Dataplane of mesh `default`.
fn ingress_dp(name: &str) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  ingress:\n    publicAddress: 10.0.0.1\n    publicPort: 10001\n  inbound:\n  - port: 10001\n    tags:\n      kuma.io/service: ingress\n"
    )
}

/// A token of mesh `default` without a name, for `services`, of `kind`.
async fn service_token(tokens: &DataplaneTokens, services: &[&str], kind: TokenType) -> String {
    let tags: TokenTags = if services.is_empty() {
        TokenTags::new()
    } else {
        [(
            "kuma.io/service".to_string(),
            services.iter().map(|s| s.to_string()).collect(),
        )]
        .into()
    };
    tokens
        .issue(&TokenRequest {
            mesh: "default".into(),
            tags,
            token_type: kind,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// A node carrying `yaml` as the Dataplane to register, as kuma-dp's
/// bootstrap makes it.
fn node_registering(name: &str, yaml: &str) -> Option<Node> {
    let json = Resource::from_yaml(yaml).unwrap().to_json();
    Some(Node {
        id: format!("default.{name}"),
        metadata: Some(Struct {
            fields: [(
                kuma_xds::ads::DATAPLANE_RESOURCE_KEY.to_string(),
                Value {
                    kind: Some(Kind::StringValue(json)),
                },
            )]
            .into(),
        }),
        ..Default::default()
    })
}

async fn stored_service(manager: &ResourceManager, name: &str) -> Option<String> {
    let key = ResourceKey::new(ResourceType::Dataplane, Some("default"), name);
    let dp = manager.get(&key).await.ok()?;
    let spec = dp.spec_as::<DataplaneSpec>()?;
    spec.networking.inbound[0]
        .tags
        .get("kuma.io/service")
        .cloned()
}

#[tokio::test]
async fn bootstrap_refuses_a_dataplane_outside_the_tokens_tags() {
    let (manager, tokens) = setup().await;
    manager
        .create(Resource::from_yaml(&dp_of("payments-1", "payments")).unwrap())
        .await
        .unwrap();
    let app = bootstrap_app(manager, DataplaneAuth::Tokens(tokens.clone()));
    let backend = service_token(&tokens, &["backend"], TokenType::Dataplane).await;

    // The Dataplane in the request claims payments.
    let mut req = bootstrap_request("backend-1", Some(&backend));
    req["dataplaneResource"] = dp_of("backend-1", "payments").into();
    let (status, body) = post_bootstrap(&app, &req).await;
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let details = v["details"].as_str().unwrap();
    assert!(
        details.contains("does not allow kuma.io/service=\"payments\""),
        "{body}"
    );
    assert_eq!(v["causes"][0]["field"], "dataplaneToken", "{body}");
    for part in backend.split('.') {
        assert!(!body.contains(part), "the answer quotes the token: {body}");
    }

    // The stored Dataplane (none in the request) claims payments.
    let (status, body) =
        post_bootstrap(&app, &bootstrap_request("payments-1", Some(&backend))).await;
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["details"]
            .as_str()
            .unwrap()
            .contains("kuma.io/service=\"payments\""),
        "{body}"
    );

    // The same token with a backend Dataplane, under any name.
    for name in ["backend-1", "backend-2"] {
        let mut req = bootstrap_request(name, Some(&backend));
        req["dataplaneResource"] = dp_of(name, "backend").into();
        let (status, body) = post_bootstrap(&app, &req).await;
        assert_eq!(status, 200, "{body}");
    }

    // An ingress token is not a Dataplane token, and the reverse.
    let ingress = service_token(&tokens, &[], TokenType::Ingress).await;
    let mut req = bootstrap_request("backend-1", Some(&ingress));
    req["dataplaneResource"] = dp_of("backend-1", "backend").into();
    let (status, body) = post_bootstrap(&app, &req).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("is of type ingress"), "{body}");
    let mut req = bootstrap_request("zi-1", Some(&ingress));
    req["dataplaneResource"] = ingress_dp("zi-1").into();
    let (status, body) = post_bootstrap(&app, &req).await;
    assert_eq!(status, 200, "{body}");
    let mut req = bootstrap_request("zi-1", Some(&backend));
    req["dataplaneResource"] = ingress_dp("zi-1").into();
    let (status, body) = post_bootstrap(&app, &req).await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn ads_refuses_a_dataplane_outside_the_tokens_tags() {
    let (manager, tokens) = setup().await;
    manager
        .create(Resource::from_yaml(&dp_of("payments-1", "payments")).unwrap())
        .await
        .unwrap();
    let mut ads = serve_ads(manager.clone(), DataplaneAuth::Tokens(tokens.clone())).await;
    let backend = service_token(&tokens, &["backend"], TokenType::Dataplane).await;

    // Registering from node metadata as payments: refused, nothing stored.
    let status = sotw_as(
        ads.addr,
        node_registering("backend-1", &dp_of("backend-1", "payments")),
        Some(&backend),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("does not allow kuma.io/service=\"payments\""),
        "{status:?}"
    );
    assert!(!status.message().contains(&backend));
    assert_eq!(stored_service(&manager, "backend-1").await, None);

    // No metadata: the stored Dataplane (payments) is the one checked.
    let status = sotw(ads.addr, "payments-1", Some(&backend))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("\"payments\""), "{status:?}");

    // An ingress token for a sidecar.
    let ingress = service_token(&tokens, &[], TokenType::Ingress).await;
    let status = sotw_as(
        ads.addr,
        node_registering("backend-1", &dp_of("backend-1", "backend")),
        Some(&ingress),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(ads.events.try_recv().is_err(), "a refused proxy connected");

    // The same token with a backend Dataplane is accepted and registers it.
    let addr = ads.addr;
    let b = backend.clone();
    let stream = tokio::spawn(async move {
        sotw_as(
            addr,
            node_registering("backend-1", &dp_of("backend-1", "backend")),
            Some(&b),
        )
        .await
    });
    let event = tokio::time::timeout(Duration::from_secs(5), ads.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&event, ProxyEvent::Connected { node, .. } if node.name == "backend-1"),
        "{event:?}"
    );
    stream.await.unwrap().unwrap();
    assert_eq!(
        stored_service(&manager, "backend-1").await.as_deref(),
        Some("backend")
    );
}

/// A proxy cannot take over a Dataplane an operator created: registering
/// one of that name with other services is refused, with checks on or off;
/// the same services, or a Dataplane the proxy registered itself, are fine.
#[tokio::test]
async fn a_proxy_cannot_change_the_identity_of_an_operators_dataplane() {
    for auth_on in [true, false] {
        let (manager, tokens) = setup().await;
        let auth = if auth_on {
            DataplaneAuth::Tokens(tokens.clone())
        } else {
            DataplaneAuth::Off
        };
        let mut ads = serve_ads(manager.clone(), auth).await;
        // A mesh-wide token: it allows any tags.
        let any = service_token(&tokens, &[], TokenType::Dataplane).await;
        let any = auth_on.then_some(any.as_str());

        // `web-1` was created through the API (setup) with service web.
        let status = sotw_as(
            ads.addr,
            node_registering("web-1", &dp_of("web-1", "payments")),
            any,
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains("was not registered by a proxy"),
            "{status:?}"
        );
        assert_eq!(
            stored_service(&manager, "web-1").await.as_deref(),
            Some("web")
        );

        // The same identity is accepted.
        let addr = ads.addr;
        let t = any.map(str::to_string);
        let same = tokio::spawn(async move {
            sotw_as(
                addr,
                node_registering("web-1", &dp_of("web-1", "web")),
                t.as_deref(),
            )
            .await
        });
        let event = tokio::time::timeout(Duration::from_secs(5), ads.events.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(event, ProxyEvent::Connected { .. }), "{event:?}");
        same.await.unwrap().unwrap();

        // A Dataplane the proxy registered itself may change its services.
        for service in ["fresh", "renamed"] {
            let t = any.map(str::to_string);
            let yaml = dp_of("own-1", service);
            let stream = tokio::spawn(async move {
                sotw_as(addr, node_registering("own-1", &yaml), t.as_deref()).await
            });
            loop {
                let event = tokio::time::timeout(Duration::from_secs(5), ads.events.recv())
                    .await
                    .unwrap()
                    .unwrap();
                if matches!(&event, ProxyEvent::Connected { node, .. } if node.name == "own-1") {
                    break;
                }
            }
            stream.await.unwrap().unwrap();
            assert_eq!(
                stored_service(&manager, "own-1").await.as_deref(),
                Some(service)
            );
        }
        // Once an operator rewrites it, it is theirs.
        manager
            .upsert(Resource::from_yaml(&dp_of("own-1", "operated")).unwrap())
            .await
            .unwrap();
        let status = sotw_as(
            ads.addr,
            node_registering("own-1", &dp_of("own-1", "fresh")),
            any,
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(
            stored_service(&manager, "own-1").await.as_deref(),
            Some("operated")
        );
    }
}
