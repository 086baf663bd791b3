//! A control plane embedded in another program: its own `ResourceStore`,
//! the reconciler and the ADS server, wired by hand, then one ADS client
//! (as Envoy would be) that gets its clusters.
//!
//! `cargo run -p kuma-xds --example embedded_control_plane`
//!
//! The path of a change (docs/architecture.md, "The path of a change"):
//! manager -> store -> subscription -> reconciler -> generator -> cache ->
//! stream core -> the client below.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use kuma_core::manager::ResourceManager;
use kuma_core::resource::{Resource, ResourceKey, ResourceType};
use kuma_core::store::{
    ListPage, ListRequest, MemoryStore, ResourceStore, StoreError, Subscription,
};
use kuma_xds::{ads, cache::SnapshotCache, reconcile::Reconciler};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The embedding program's store: here it counts writes and keeps the
/// resources in a `MemoryStore`; a real one would keep them elsewhere and
/// publish its changes through `kuma_core::store::EventHub`.
struct CountingStore {
    inner: MemoryStore,
    writes: AtomicU64,
}

#[async_trait::async_trait]
impl ResourceStore for CountingStore {
    async fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, request: &ListRequest) -> Result<ListPage, StoreError> {
        self.inner.list(request).await
    }
    async fn create(&self, resource: Resource) -> Result<Arc<Resource>, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.create(resource).await
    }
    async fn update(&self, resource: Resource) -> Result<Arc<Resource>, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.update(resource).await
    }
    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(key).await
    }
    fn subscribe(&self, types: &[ResourceType]) -> Subscription {
        self.inner.subscribe(types)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(CountingStore {
        inner: MemoryStore::new(),
        writes: AtomicU64::new(0),
    });
    let manager = ResourceManager::new(store.clone());
    for yaml in [
        "type: Mesh\nname: default\n",
        "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  \
         inbound:\n  - port: 8080\n    servicePort: 9000\n    tags: {kuma.io/service: web}\n  \
         outbound:\n  - port: 10001\n    tags: {kuma.io/service: backend}\n",
    ] {
        manager.create(Resource::from_yaml(yaml)?).await?;
    }

    // The wiring: reconciler -> cache <- ADS server, proxy events back.
    let cache = Arc::new(SnapshotCache::new());
    let (proxy_events, proxy_events_rx) = ads::proxy_event_channel();
    tokio::spawn(Reconciler::new(store.clone(), cache.clone()).run(proxy_events_rx));
    let server = ads::AdsServer::new(manager, cache, proxy_events, "embedded-1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server.into_service())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    println!(
        "ADS on {addr}; {} writes so far",
        store.writes.load(Ordering::Relaxed)
    );

    // What Envoy does first: ask for its clusters as node `<mesh>.<name>`.
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}")).await?;
    let (requests, requests_rx) = tokio::sync::mpsc::channel(4);
    requests
        .send(DiscoveryRequest {
            node: Some(Node {
                id: "default.web-1".into(),
                ..Node::default()
            }),
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            ..DiscoveryRequest::default()
        })
        .await?;
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(requests_rx))
        .await?
        .into_inner();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), responses.message())
        .await??
        .ok_or("the stream ended")?;
    println!(
        "clusters version {}: {} resources",
        response.version_info,
        response.resources.len()
    );
    // web's local app cluster and the EDS cluster of `backend`.
    assert_eq!(response.resources.len(), 2);
    Ok(())
}
