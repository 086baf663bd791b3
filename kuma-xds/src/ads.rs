//! The ADS server (`xdsServer.grpcPort`, 5678): state of the world here,
//! incremental (delta) in [`crate::delta`](self) on the same port.
//!
//! Per stream: the first request names the node (`<mesh>.<name>`); with
//! token checks on ([`AdsServer::with_auth`]) the stream's `authorization`
//! metadata must hold a valid dataplane token for that node, else the stream
//! ends with `UNAUTHENTICATED` naming the failed check; a
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

use crate::cache::SnapshotCache;
use crate::insight::InsightRecorder;
use crate::reconcile::ProxyEvent;
use crate::resource::{Snapshot, XdsType};
use crate::session::{AdsProtocol, Session, Shared, StreamAuth, drive};
use envoy_types::pb::envoy::config::core::v3::ControlPlane;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use kuma_core::manager::ResourceManager;
use kuma_core::tokens::DataplaneAuth;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

pub use crate::session::{DATAPLANE_RESOURCE_KEY, KUMA_DP_VERSION_KEY};

/// The ADS service, ready to be served by tonic.
#[derive(Clone)]
pub struct AdsServer {
    shared: Arc<Shared>,
    /// Set to `true` when the server stops: open streams then end.
    stop: Option<watch::Receiver<bool>>,
    /// Dataplane token checking (off unless [`AdsServer::with_auth`]).
    auth: DataplaneAuth,
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
            auth: DataplaneAuth::Off,
        }
    }

    /// Checks every stream's dataplane token (`authorization` metadata, with
    /// or without `Bearer `) against its node before serving it. Without
    /// this call tokens are not checked.
    pub fn with_auth(mut self, auth: DataplaneAuth) -> Self {
        self.auth = auth;
        self
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
        let credentials = StreamAuth::from_metadata(&self.auth, request.metadata());
        let protocol = SotwStream::new(shared.clone(), tx);
        tokio::spawn(drive(
            protocol,
            shared,
            id,
            stop,
            request.into_inner(),
            credentials,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let shared = self.shared.clone();
        let id = shared.streams.fetch_add(1, Ordering::Relaxed) + 1;
        let stop = self.stop.clone();
        let credentials = StreamAuth::from_metadata(&self.auth, request.metadata());
        let protocol = crate::delta::DeltaStream::new(shared.clone(), tx);
        tokio::spawn(drive(
            protocol,
            shared,
            id,
            stop,
            request.into_inner(),
            credentials,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
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
    nonce: u64,
    types: HashMap<XdsType, TypeState>,
}

impl AdsProtocol for SotwStream {
    type Request = DiscoveryRequest;

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn on_request(
        &mut self,
        request: DiscoveryRequest,
        snapshot: Option<&Snapshot>,
        session: &mut Session,
    ) -> impl Future<Output = bool> + Send {
        self.handle_request(request, snapshot, session)
    }

    fn push_all(
        &mut self,
        snapshot: &Snapshot,
        insight: &mut InsightRecorder,
    ) -> impl Future<Output = bool> + Send {
        self.push_changes(snapshot, insight)
    }

    async fn fail(&self, status: Status) {
        let _ = self.tx.send(Err(status)).await;
    }
}

impl SotwStream {
    fn new(shared: Arc<Shared>, tx: mpsc::Sender<Result<DiscoveryResponse, Status>>) -> Self {
        Self {
            shared,
            tx,
            nonce: 0,
            types: HashMap::new(),
        }
    }

    /// Handles one request; false when the stream is gone.
    async fn handle_request(
        &mut self,
        req: DiscoveryRequest,
        snapshot: Option<&Snapshot>,
        session: &mut Session,
    ) -> bool {
        let insight = &mut session.insight;
        let Some(t) = XdsType::from_type_url(&req.type_url) else {
            debug!(type_url = %req.type_url, "ignoring request for an unknown type");
            return true;
        };
        // A reconnecting Envoy that already runs listeners (it names the
        // version it holds) serves traffic already: it is ready at once, so
        // a control-plane restart never withholds its endpoints.
        let mut listeners_acked =
            t == XdsType::Listener && req.response_nonce.is_empty() && !req.version_info.is_empty();
        let st = self.types.entry(t).or_default();
        if !req.response_nonce.is_empty() {
            if req.response_nonce != st.nonce {
                return true; // stale
            }
            match &req.error_detail {
                Some(err) => {
                    // `version_info` is the last version Envoy accepted;
                    // the rejected one is the version sent with the nonce.
                    let rejected = st.sent_version.as_deref().unwrap_or_default();
                    warn!(r#type = t.short(), version = rejected, accepted = %req.version_info, error = %err.message, "proxy rejected config");
                    insight.nacked(t, rejected, &err.message);
                }
                None => {
                    insight.acked(t);
                    listeners_acked = t == XdsType::Listener;
                }
            }
        }
        st.subscribed = true;
        st.names = req.resource_names.into_iter().collect();
        if listeners_acked {
            session.listeners_acked();
        }
        match snapshot {
            Some(s) => self.send(t, s, &mut session.insight).await,
            None => true,
        }
    }

    async fn push_changes(&mut self, snapshot: &Snapshot, insight: &mut InsightRecorder) -> bool {
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
