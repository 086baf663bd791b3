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
use crate::grpc::{Outgoing, RequestDecoder, ResponseBody, ResponseSender};
use crate::insight::InsightRecorder;
use crate::reconcile::ProxyEvent;
use crate::resource::{Snapshot, XdsType};
use crate::session::{AdsProtocol, Session, Shared, StreamAuth, drive};
use envoy_types::pb::envoy::config::core::v3::ControlPlane;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use kuma_core::manager::ResourceManager;
use kuma_core::tokens::DataplaneAuth;
use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::sync::{Mutex, mpsc, watch};
use tonic::codegen::http;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::{Status, Streaming};
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
    pub fn into_service(self) -> AdsService {
        AdsService { server: self }
    }

    /// Starts one stream of protocol `P` for `request`; the response body
    /// is fed by the stream's task.
    fn serve<P: AdsProtocol + 'static>(
        &self,
        request: http::Request<tonic::body::Body>,
        protocol: impl FnOnce(Arc<Shared>, ResponseSender) -> P,
    ) -> http::Response<tonic::body::Body>
    where
        P::Request: prost::Message + Default,
    {
        let (parts, body) = request.into_parts();
        let metadata = MetadataMap::from_headers(parts.headers);
        let credentials = StreamAuth::from_metadata(&self.auth, &metadata);
        let inbound = Streaming::new_request(
            RequestDecoder::<P::Request>::default(),
            body,
            None,
            Some(MAX_REQUEST_SIZE),
        );
        let (tx, response) = ResponseBody::channel(RESPONSE_QUEUE);
        let shared = self.shared.clone();
        let id = shared.streams.fetch_add(1, Ordering::Relaxed) + 1;
        let protocol = protocol(shared.clone(), tx);
        tokio::spawn(drive(
            protocol,
            shared,
            id,
            self.stop.clone(),
            inbound,
            credentials,
        ));
        response.into_response()
    }
}

/// Largest request accepted (the first one carries the node and possibly a
/// Dataplane).
const MAX_REQUEST_SIZE: usize = 16 * 1024 * 1024;

/// Responses a stream may queue before its task waits for HTTP/2 to take
/// them (each is held, encoded, until written).
const RESPONSE_QUEUE: usize = 4;

const SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The `envoy.service.discovery.v3.AggregatedDiscoveryService` gRPC
/// service (both methods), for `tonic::transport::Server::add_service`.
///
/// Hand-written rather than generated so that a stream keeps no encode
/// buffer between responses (see `crate::grpc`); requests are decoded by
/// tonic.
#[derive(Clone, Debug)]
pub struct AdsService {
    server: AdsServer,
}

impl NamedService for AdsService {
    const NAME: &'static str = SERVICE;
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for AdsService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let response = match request.uri().path() {
            SOTW_PATH => self.server.serve(request, SotwStream::new),
            DELTA_PATH => self.server.serve(request, crate::delta::DeltaStream::new),
            path => Status::unimplemented(format!("no method {path}")).into_http(),
        };
        std::future::ready(Ok(response))
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
    tx: ResponseSender,
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
        let _ = self.tx.send(Outgoing::End(status)).await;
    }
}

impl SotwStream {
    fn new(shared: Arc<Shared>, tx: ResponseSender) -> Self {
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
        let head = DiscoveryResponse {
            version_info: version.clone(),
            type_url: t.type_url().to_string(),
            nonce: nonce.clone(),
            control_plane: Some(ControlPlane {
                identifier: self.shared.instance_id.clone(),
            }),
            ..Default::default()
        };
        let response = crate::grpc::sotw_response(&head, t.type_url(), &items);
        // Not held while waiting for room in the response queue: a stream
        // stuck behind a slow proxy then keeps its encoded response only,
        // not the resources of a snapshot that may since have been replaced.
        drop(items);
        st.sent_version = Some(version);
        st.nonce = nonce;
        insight.sent(t);
        self.tx.send(Outgoing::Message(response)).await.is_ok()
    }
}
