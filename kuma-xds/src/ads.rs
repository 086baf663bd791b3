//! The state-of-the-world ADS server (`xdsServer.grpcPort`, 5678).
//!
//! Per stream: the first request names the node (`<mesh>.<name>`); a
//! Dataplane carried in the node metadata (`dataplane.resource`, put there by
//! the bootstrap server for `kuma-dp --dataplane`) is registered, and removed
//! again when the node's last stream ends. A node with no Dataplane gets a
//! `NOT_FOUND` status. Then, per type:
//!
//! - a request whose `response_nonce` is not the last nonce sent for that
//!   type is stale and ignored (xDS protocol: "the management server should
//!   not send a response for a stale nonce");
//! - a request with the last nonce and no `error_detail` ACKs that version;
//!   with `error_detail` it NACKs: the rejected version is not sent again,
//!   the last good config stays in Envoy, and the next change is pushed;
//! - a response is sent whenever the snapshot's version for the requested
//!   names differs from the last one sent, in the order clusters, endpoints,
//!   listeners, routes, so that what a listener uses exists before it.

use crate::cache::{NodeId, SnapshotCache};
use crate::insight::InsightRecorder;
use crate::reconcile::ProxyEvent;
use crate::resource::{Snapshot, XdsType};
use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
use envoy_types::pb::envoy::config::core::v3::{ControlPlane, Node};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::protobuf::value::Kind;
use kuma_core::manager::{ManagerError, ResourceManager};
use kuma_core::resource::{Resource, ResourceKey, ResourceType};
use kuma_core::store::StoreError;
use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

/// Node metadata key carrying a Dataplane to register (JSON text).
pub const DATAPLANE_RESOURCE_KEY: &str = "dataplane.resource";
/// Node metadata key carrying kuma-dp's version.
pub const KUMA_DP_VERSION_KEY: &str = "version.kumaDp";

/// How often a stream writes its DataplaneInsight when it changed.
const INSIGHT_FLUSH: Duration = Duration::from_secs(1);

struct Shared {
    manager: ResourceManager,
    cache: Arc<SnapshotCache>,
    proxies: mpsc::UnboundedSender<ProxyEvent>,
    instance_id: String,
    streams: AtomicU64,
    /// Streams per node that registered their Dataplane from metadata.
    registrations: Mutex<HashMap<NodeId, usize>>,
}

/// The ADS service, ready to be served by tonic.
#[derive(Clone)]
pub struct AdsServer {
    shared: Arc<Shared>,
    /// Set to `true` when the server stops: open streams then end.
    stop: Option<watch::Receiver<bool>>,
}

impl std::fmt::Debug for AdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsServer")
            .field("instance_id", &self.shared.instance_id)
            .finish_non_exhaustive()
    }
}

impl AdsServer {
    /// An ADS server answering from `cache`, telling the reconciler about
    /// streams through `proxies`.
    pub fn new(
        manager: ResourceManager,
        cache: Arc<SnapshotCache>,
        proxies: mpsc::UnboundedSender<ProxyEvent>,
        instance_id: impl Into<String>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                manager,
                cache,
                proxies,
                instance_id: instance_id.into(),
                streams: AtomicU64::new(0),
                registrations: Mutex::new(HashMap::new()),
            }),
            stop: None,
        }
    }

    /// Ends every open stream (with `UNAVAILABLE`, so proxies reconnect)
    /// once `stop` turns `true`. Without it a graceful server shutdown waits
    /// forever: ADS streams only end when the proxy hangs up.
    pub fn with_shutdown(mut self, stop: watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The tonic service to add to a server.
    pub fn into_service(
        self,
    ) -> envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer<Self>
    {
        envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer::new(self)
            .max_decoding_message_size(16 * 1024 * 1024)
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let shared = self.shared.clone();
        let id = shared.streams.fetch_add(1, Ordering::Relaxed) + 1;
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let stream = SotwStream::new(shared, tx, id, stop);
            stream.run(request.into_inner()).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "incremental (delta) xDS is not served yet; use state-of-the-world ADS",
        ))
    }
}

fn metadata_string(node: &Node, key: &str) -> Option<String> {
    let fields = &node.metadata.as_ref()?.fields;
    match fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn envoy_version(node: &Node) -> Option<String> {
    match node.user_agent_version_type.as_ref()? {
        UserAgentVersionType::UserAgentVersion(v) => Some(v.clone()),
        UserAgentVersionType::UserAgentBuildVersion(b) => b
            .version
            .as_ref()
            .map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch)),
    }
}

#[derive(Debug, Default)]
struct TypeState {
    subscribed: bool,
    names: BTreeSet<String>,
    sent_version: Option<String>,
    nonce: String,
}

struct SotwStream {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    id: u64,
    nonce: u64,
    types: HashMap<XdsType, TypeState>,
    stop: Option<watch::Receiver<bool>>,
    node: Option<NodeId>,
    ready_sent: bool,
}

/// Resolves once `stop` is `true` (or its sender is gone); never without one.
async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(rx) => {
            let _ = rx.wait_for(|s| *s).await;
        }
        None => std::future::pending().await,
    }
}

impl SotwStream {
    fn new(
        shared: Arc<Shared>,
        tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
        id: u64,
        stop: Option<watch::Receiver<bool>>,
    ) -> Self {
        Self {
            shared,
            tx,
            id,
            nonce: 0,
            types: HashMap::new(),
            stop,
            node: None,
            ready_sent: false,
        }
    }

    async fn fail(&self, status: Status) {
        let _ = self.tx.send(Err(status)).await;
    }

    /// Registers the Dataplane carried in the node metadata, if any.
    async fn register(&self, node: &NodeId, text: &str) -> Result<(), Status> {
        let resource = Resource::from_json(text)
            .or_else(|_| Resource::from_yaml(text))
            .map_err(|e| Status::invalid_argument(format!("dataplane in node metadata: {e}")))?;
        if resource.resource_type() != ResourceType::Dataplane
            || resource.meta.name != node.name
            || resource.meta.mesh.as_deref() != Some(node.mesh.as_str())
        {
            return Err(Status::invalid_argument(format!(
                "dataplane in node metadata must be a Dataplane named {:?} in mesh {:?}",
                node.name, node.mesh
            )));
        }
        let mut regs = self.shared.registrations.lock().await;
        match self.shared.manager.upsert(resource).await {
            Ok(_) => {
                *regs.entry(node.clone()).or_default() += 1;
                info!(node = %node, "registered Dataplane from the proxy");
                Ok(())
            }
            Err(ManagerError::Validation(v)) => Err(Status::invalid_argument(format!(
                "dataplane in node metadata is not valid: {v}"
            ))),
            Err(ManagerError::MeshNotFound(m)) => Err(Status::not_found(format!(
                "mesh {m:?} does not exist: create it before starting the proxy"
            ))),
            Err(e) => Err(Status::unavailable(format!(
                "registering the Dataplane: {e}"
            ))),
        }
    }

    /// Removes a registered Dataplane when its last stream is gone.
    async fn deregister(&self, node: &NodeId) {
        let mut regs = self.shared.registrations.lock().await;
        let Some(n) = regs.get_mut(node) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        regs.remove(node);
        for ty in [ResourceType::Dataplane, ResourceType::DataplaneInsight] {
            let key = ResourceKey::new(ty, Some(&node.mesh), &node.name);
            match self.shared.manager.delete(&key).await {
                Ok(()) | Err(ManagerError::Store(StoreError::NotFound(_))) => {}
                Err(e) => warn!(%key, error = %e, "could not remove"),
            }
        }
        info!(node = %node, "removed the Dataplane of a proxy that went away");
    }

    async fn run(mut self, mut inbound: Streaming<DiscoveryRequest>) {
        let first = match inbound.message().await {
            Ok(Some(r)) => r,
            _ => return,
        };
        let Some(node_pb) = first.node.clone() else {
            return self
                .fail(Status::invalid_argument(
                    "the first request must carry the node",
                ))
                .await;
        };
        let Some(node) = NodeId::parse(&node_pb.id) else {
            return self
                .fail(Status::invalid_argument(format!(
                    "node id {:?} is not <mesh>.<name>",
                    node_pb.id
                )))
                .await;
        };
        let registered = match metadata_string(&node_pb, DATAPLANE_RESOURCE_KEY) {
            Some(text) => match self.register(&node, &text).await {
                Ok(()) => true,
                Err(s) => return self.fail(s).await,
            },
            None => false,
        };
        let key = ResourceKey::new(ResourceType::Dataplane, Some(&node.mesh), &node.name);
        if let Err(ManagerError::Store(StoreError::NotFound(_))) =
            self.shared.manager.get(&key).await
        {
            return self
                .fail(Status::not_found(format!(
                    "Dataplane {:?} in mesh {:?} does not exist: apply it first, or start kuma-dp with --dataplane-file",
                    node.name, node.mesh
                )))
                .await;
        }
        info!(node = %node, stream = self.id, "proxy connected");
        let mut insight = InsightRecorder::new(
            &node.mesh,
            &node.name,
            &format!("{}-{}", self.shared.instance_id, self.id),
            &self.shared.instance_id,
            envoy_version(&node_pb),
            metadata_string(&node_pb, KUMA_DP_VERSION_KEY),
        );
        insight.flush(&self.shared.manager).await;
        let mut watch = self.shared.cache.watch(&node);
        self.node = Some(node.clone());
        let _ = self
            .shared
            .proxies
            .send(ProxyEvent::Connected(node.clone()));

        let mut flush = tokio::time::interval(INSIGHT_FLUSH);
        let mut stop = self.stop.take();
        let mut pending = Some(first);
        loop {
            if let Some(req) = pending.take() {
                let snapshot = watch.borrow().clone();
                if !self
                    .on_request(req, snapshot.as_deref(), &mut insight)
                    .await
                {
                    break;
                }
            }
            tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => pending = Some(req),
                    Ok(None) => break,
                    Err(e) => {
                        debug!(node = %node, error = %e, "stream error");
                        break;
                    }
                },
                changed = watch.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let snapshot = watch.borrow_and_update().clone();
                    if let Some(s) = snapshot
                        && !self.push_all(&s, &mut insight).await
                    {
                        break;
                    }
                },
                _ = flush.tick() => insight.flush(&self.shared.manager).await,
                () = stopped(&mut stop) => {
                    self.fail(Status::unavailable("the control plane is shutting down")).await;
                    break;
                }
            }
        }
        info!(node = %node, stream = self.id, "proxy disconnected");
        drop(watch);
        let _ = self
            .shared
            .proxies
            .send(ProxyEvent::Disconnected(node.clone()));
        if registered {
            self.deregister(&node).await;
        } else {
            insight.disconnected();
            insight.flush(&self.shared.manager).await;
        }
    }

    /// Handles one request; false when the stream is gone.
    async fn on_request(
        &mut self,
        req: DiscoveryRequest,
        snapshot: Option<&Snapshot>,
        insight: &mut InsightRecorder,
    ) -> bool {
        let Some(t) = XdsType::from_type_url(&req.type_url) else {
            debug!(type_url = %req.type_url, "ignoring request for an unknown type");
            return true;
        };
        let mut listeners_acked = false;
        let st = self.types.entry(t).or_default();
        if !req.response_nonce.is_empty() {
            if req.response_nonce != st.nonce {
                return true; // stale
            }
            match &req.error_detail {
                Some(err) => {
                    warn!(r#type = t.short(), version = %req.version_info, error = %err.message, "proxy rejected config");
                    insight.rejected(t);
                }
                None => {
                    insight.acked(t);
                    listeners_acked = t == XdsType::Listener;
                }
            }
        }
        st.subscribed = true;
        st.names = req.resource_names.into_iter().collect();
        if listeners_acked && !self.ready_sent {
            // Envoy accepted its listeners, inbound ones included: from now
            // on other proxies may be sent to this one.
            self.ready_sent = true;
            if let Some(node) = &self.node {
                let _ = self.shared.proxies.send(ProxyEvent::Ready(node.clone()));
            }
        }
        match snapshot {
            Some(s) => self.send(t, s, insight).await,
            None => true,
        }
    }

    async fn push_all(&mut self, snapshot: &Snapshot, insight: &mut InsightRecorder) -> bool {
        for t in XdsType::PUSH_ORDER {
            if self.types.get(&t).is_some_and(|s| s.subscribed)
                && !self.send(t, snapshot, insight).await
            {
                return false;
            }
        }
        true
    }

    /// Sends type `t` if its version for the subscribed names changed.
    async fn send(
        &mut self,
        t: XdsType,
        snapshot: &Snapshot,
        insight: &mut InsightRecorder,
    ) -> bool {
        let st = self.types.entry(t).or_default();
        let (version, items) = snapshot.select(t, &st.names);
        if st.sent_version.as_deref() == Some(version.as_str()) {
            return true;
        }
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: items
                .iter()
                .map(|r| Any {
                    type_url: t.type_url().to_string(),
                    value: r.body.to_vec(),
                })
                .collect(),
            type_url: t.type_url().to_string(),
            nonce: nonce.clone(),
            control_plane: Some(ControlPlane {
                identifier: self.shared.instance_id.clone(),
            }),
            ..Default::default()
        };
        st.sent_version = Some(version);
        st.nonce = nonce;
        insight.sent(t);
        self.tx.send(Ok(response)).await.is_ok()
    }
}
