//! The Dataplane a proxy registers from its node metadata outlives the
//! proxy's stream by the cleanup age
//! (`AdsServer::with_dataplane_cleanup_age`): it stays when the proxy comes
//! back within the age (to the same server or to another replica on the
//! same store), goes after the age when it does not, and is never deleted
//! because the server shuts down. Real ADS servers on real sockets, a tonic
//! client as the proxy.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{Struct, Value};
use kuma_core::manager::ResourceManager;
use kuma_core::resource::{Resource, ResourceKey, ResourceType};
use kuma_core::store::MemoryStore;
use kuma_xds::ads::{AdsServer, DATAPLANE_RESOURCE_KEY, ProxyEventReceiver};
use kuma_xds::cache::SnapshotCache;
use kuma_xds::reconcile::ProxyEvent;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// The cleanup age of these tests.
const AGE: Duration = Duration::from_millis(1500);

async fn store() -> ResourceManager {
    let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
    manager
        .create(Resource::from_yaml("type: Mesh\nname: default\n").unwrap())
        .await
        .unwrap();
    manager
}

/// One ADS server (a control-plane replica) on `manager`'s store.
struct Replica {
    addr: SocketAddr,
    events: ProxyEventReceiver,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

async fn replica(manager: ResourceManager, name: &str) -> Replica {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, events) = kuma_xds::ads::proxy_event_channel();
    let (stop, stop_rx) = watch::channel(false);
    let ads = AdsServer::new(manager, Arc::new(SnapshotCache::new()), tx, name)
        .with_shutdown(stop_rx.clone())
        .with_dataplane_cleanup_age(AGE);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let mut until = stop_rx;
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(ads.into_service())
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = until.wait_for(|s| *s).await;
            })
            .await
            .unwrap();
    });
    Replica {
        addr,
        events,
        stop,
        server,
    }
}

impl Replica {
    /// Waits for the reconciler event saying `name` connected.
    async fn connected(&mut self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(ProxyEvent::Connected { node, .. })) if node.name == name => return,
                Ok(Some(_)) => continue,
                other => panic!("{name} did not connect: {other:?}"),
            }
        }
    }
}

/// A proxy's open ADS stream; dropping it hangs up.
struct Proxy {
    _requests: mpsc::Sender<DiscoveryRequest>,
    _responses: tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
}

fn dataplane_json(name: &str) -> String {
    Resource::from_yaml(&format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 18080\n    tags:\n      kuma.io/service: web\n"
    ))
    .unwrap()
    .to_json()
}

/// Connects as kuma-dp's Envoy does: the Dataplane in the node metadata.
async fn connect(replica: &mut Replica, name: &str) -> Proxy {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{}", replica.addr))
        .await
        .unwrap();
    let metadata = Struct {
        fields: [(
            DATAPLANE_RESOURCE_KEY.to_string(),
            Value {
                kind: Some(Kind::StringValue(dataplane_json(name))),
            },
        )]
        .into(),
    };
    let first = DiscoveryRequest {
        node: Some(Node {
            id: format!("default.{name}"),
            metadata: Some(metadata),
            ..Default::default()
        }),
        type_url: CLUSTER_TYPE.into(),
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel(1);
    tx.send(first).await.unwrap();
    let responses = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    replica.connected(name).await;
    Proxy {
        _requests: tx,
        _responses: responses,
    }
}

async fn exists(manager: &ResourceManager, ty: ResourceType, name: &str) -> bool {
    manager
        .get(&ResourceKey::new(ty, Some("default"), name))
        .await
        .is_ok()
}

/// Waits until the Dataplane `name` is gone; how long that took.
async fn gone_after(manager: &ResourceManager, name: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    while exists(manager, ResourceType::Dataplane, name).await {
        assert!(
            start.elapsed() < limit,
            "Dataplane {name} still there after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn dataplane_survives_a_short_absence_and_goes_after_the_age() {
    let manager = store().await;
    let mut cp = replica(manager.clone(), "cp-1").await;

    let proxy = connect(&mut cp, "web-1").await;
    assert!(exists(&manager, ResourceType::Dataplane, "web-1").await);
    drop(proxy);
    // Away for less than the age, then back.
    tokio::time::sleep(AGE / 3).await;
    assert!(exists(&manager, ResourceType::Dataplane, "web-1").await);
    let proxy = connect(&mut cp, "web-1").await;
    // Well past the first disconnect's age: still there.
    tokio::time::sleep(AGE * 2).await;
    assert!(
        exists(&manager, ResourceType::Dataplane, "web-1").await,
        "the Dataplane of a proxy that came back was deleted"
    );
    assert!(exists(&manager, ResourceType::DataplaneInsight, "web-1").await);

    // Gone for good: deleted once the age has passed, not before.
    drop(proxy);
    let took = gone_after(&manager, "web-1", AGE + Duration::from_secs(5)).await;
    assert!(
        took >= AGE - Duration::from_millis(100),
        "deleted after {took:?}"
    );
    assert!(!exists(&manager, ResourceType::DataplaneInsight, "web-1").await);
}

#[tokio::test]
async fn dataplane_stays_when_its_proxy_moves_to_another_replica() {
    let manager = store().await;
    let mut a = replica(manager.clone(), "cp-a").await;
    let mut b = replica(manager.clone(), "cp-b").await;

    let proxy = connect(&mut a, "web-1").await;
    drop(proxy);
    let moved = connect(&mut b, "web-1").await;
    tokio::time::sleep(AGE * 2).await;
    assert!(
        exists(&manager, ResourceType::Dataplane, "web-1").await,
        "replica A deleted the Dataplane of a proxy connected to replica B"
    );
    // Back to A, away from B: B's cleanup must not delete it either.
    let back = connect(&mut a, "web-1").await;
    drop(moved);
    tokio::time::sleep(AGE * 2).await;
    assert!(exists(&manager, ResourceType::Dataplane, "web-1").await);
    drop(back);
    gone_after(&manager, "web-1", AGE + Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_never_deletes_dataplanes() {
    let manager = store().await;
    let mut cp = replica(manager.clone(), "cp-1").await;
    let proxy = connect(&mut cp, "web-1").await;
    let other = connect(&mut cp, "web-2").await;
    drop(other);
    tokio::time::sleep(AGE / 5).await;
    // web-2 left before the shutdown: its cleanup is pending. The shutdown
    // ends web-1's stream; neither Dataplane is deleted.
    cp.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), &mut cp.server)
        .await
        .expect("the server stops")
        .unwrap();
    drop(proxy);
    tokio::time::sleep(AGE * 2).await;
    assert!(exists(&manager, ResourceType::Dataplane, "web-1").await);
    assert!(exists(&manager, ResourceType::Dataplane, "web-2").await);
}
