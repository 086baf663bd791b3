//! The ADS server (`xdsServer.grpcPort`, 5678): state of the world here,
//! incremental (delta) in [`crate::delta`](self) on the same port. Both run
//! on the xDS stream core ([`crate::stream`]) with the snapshot cache as
//! their source; what they share beyond the core (registration, insight,
//! the reconciler's [`ProxyEvent`]s) is the ADS session (`crate::session`).
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
use crate::reconcile::ProxyEvent;
use crate::resource::{Snapshot, XdsType};
use crate::session::{AdsProtocol, AdsStreams, Lifecycle, Session, Shared};
use crate::stream::{self, AckTracker, Credentials, Nonces, Reply, StreamLimits, hung_up};
use envoy_types::pb::envoy::config::core::v3::ControlPlane;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use kuma_core::manager::ResourceManager;
use kuma_core::tokens::DataplaneAuth;
use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, watch};
use tonic::codegen::http;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::{Status, Streaming};
use tracing::{debug, warn};

pub use crate::stream::client::{DATAPLANE_RESOURCE_KEY, KUMA_DP_VERSION_KEY};

/// How many [`ProxyEvent`]s ADS streams may queue for the reconciler.
/// More than the proxies of the largest mesh we measure connect at once
/// (see docs/performance.md), so that the reconciler keeps seeing a whole
/// wave of connects as one batch.
pub const PROXY_EVENT_QUEUE: usize = 16 * 1024;

/// How ADS streams tell the reconciler about proxies (connected, ready,
/// disconnected): the sending half of a channel of [`PROXY_EVENT_QUEUE`]
/// events, received by `Reconciler::run`.
///
/// Bounded: when it is full (the reconciler is busy regenerating and that
/// many events wait), a stream that connects, becomes ready or ends waits
/// until the reconciler takes events again. This is backpressure on
/// connects: a waiting stream has sent nothing yet, or has nothing left to
/// send. Nothing is dropped, and the reconciler never waits on streams, so
/// the wait always ends.
pub type ProxyEventSender = mpsc::Sender<ProxyEvent>;

/// The receiving half of a [`ProxyEventSender`].
pub type ProxyEventReceiver = mpsc::Receiver<ProxyEvent>;

/// The channel from ADS streams to the reconciler (see
/// [`ProxyEventSender`]).
pub fn proxy_event_channel() -> (ProxyEventSender, ProxyEventReceiver) {
    mpsc::channel(PROXY_EVENT_QUEUE)
}

/// How long a Dataplane registered by its proxy (kuma-dp) stays after the
/// proxy's last stream ended, unless [`AdsServer::with_dataplane_cleanup_age`]
/// says otherwise: 30 s. Long enough to ride out a control-plane restart or
/// a network blip (proxies retry every second at most, see
/// [`crate::bootstrap::XDS_RETRY_MAX`]), short enough that the endpoint of
/// a proxy that really died leaves the mesh quickly. (Kuma deletes such a
/// Dataplane as soon as its stream closes, and garbage-collects others
/// after 72 h.)
pub const DEFAULT_DATAPLANE_CLEANUP_AGE: Duration = Duration::from_secs(30);

/// The ADS service, ready to be served by tonic.
#[derive(Clone)]
pub struct AdsServer {
    shared: Arc<Shared>,
    /// Set to `true` when the server stops: open streams then end.
    stop: Option<watch::Receiver<bool>>,
    /// How long a proxy-registered Dataplane outlives its last stream.
    cleanup_age: Duration,
    /// Dataplane token checking (off unless [`AdsServer::with_auth`]).
    auth: DataplaneAuth,
    /// First-request deadline and request size cap.
    limits: StreamLimits,
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
        proxies: ProxyEventSender,
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
                proxy_owned: std::sync::Mutex::new(HashMap::new()),
            }),
            stop: None,
            cleanup_age: DEFAULT_DATAPLANE_CLEANUP_AGE,
            auth: DataplaneAuth::Off,
            limits: StreamLimits::default(),
        }
    }

    /// What one stream may take: its first request's deadline and the
    /// largest request message (default [`StreamLimits::default`]).
    pub fn with_limits(mut self, limits: StreamLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How long a Dataplane registered by its proxy (from the node
    /// metadata) stays after the proxy's last stream on this server ended
    /// (`runtime.universal.dataplaneCleanupAge`; default
    /// [`DEFAULT_DATAPLANE_CLEANUP_AGE`]). It is then deleted with its
    /// DataplaneInsight, unless the proxy came back meanwhile: a stream
    /// here, a re-registration, or a newer subscription in its insight (a
    /// stream to another replica). Streams ended by this server's shutdown
    /// ([`Self::with_shutdown`]) never delete their Dataplane.
    pub fn with_dataplane_cleanup_age(mut self, age: Duration) -> Self {
        self.cleanup_age = age;
        self
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

    /// Starts one stream of flavour `P` for `request`; the response body
    /// is fed by the stream's task.
    fn serve<P: AdsProtocol>(
        &self,
        request: http::Request<tonic::body::Body>,
    ) -> http::Response<tonic::body::Body>
    where
        P::Request: prost::Message + Default,
    {
        let (parts, body) = request.into_parts();
        let metadata = MetadataMap::from_headers(parts.headers);
        let credentials = Credentials::from_metadata(&self.auth, &metadata);
        let inbound = Streaming::new_request(
            RequestDecoder::<P::Request>::default(),
            body,
            None,
            Some(self.limits.max_request_bytes),
        );
        let (tx, response) = ResponseBody::channel(RESPONSE_QUEUE);
        let id = self.shared.streams.fetch_add(1, Ordering::Relaxed) + 1;
        let lifecycle = Lifecycle {
            cleanup_age: self.cleanup_age,
            stop: self.stop.clone(),
        };
        let streams = AdsStreams::<P>::new(self.shared.clone(), lifecycle);
        let stop = self.stop.clone();
        let first_request_timeout = self.limits.first_request_timeout;
        tokio::spawn(async move {
            stream::run(
                &streams,
                id,
                credentials,
                inbound,
                tx,
                stop,
                first_request_timeout,
            )
            .await;
        });
        response.into_response()
    }
}

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
            SOTW_PATH => self.server.serve::<SotwStream>(request),
            DELTA_PATH => self.server.serve::<crate::delta::DeltaStream>(request),
            path => Status::unimplemented(format!("no method {path}")).into_http(),
        };
        std::future::ready(Ok(response))
    }
}

/// What a SotW stream knows of one type.
#[derive(Debug, Default)]
struct TypeState {
    subscribed: bool,
    names: BTreeSet<String>,
    acks: AckTracker,
}

/// One state-of-the-world ADS stream.
#[derive(Default)]
struct SotwStream {
    nonces: Nonces,
    types: HashMap<XdsType, TypeState>,
    /// Listeners or routes were held back while clusters awaited Envoy's
    /// reply (see [`SotwStream::clusters_pending`]).
    deferred: bool,
}

impl AdsProtocol for SotwStream {
    type Request = DiscoveryRequest;

    const NAME: &'static str = "ADS";

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    /// Envoy's first request of a type on a new stream carries the version
    /// of that type it last accepted.
    fn resumes(first: &DiscoveryRequest) -> bool {
        !first.version_info.is_empty()
    }

    async fn on_request(
        &mut self,
        req: DiscoveryRequest,
        snapshot: Option<&Snapshot>,
        session: &mut Session,
        tx: &ResponseSender,
    ) -> Result<(), Status> {
        let Some(t) = XdsType::from_type_url(&req.type_url) else {
            debug!(type_url = %req.type_url, "ignoring request for an unknown type");
            return Ok(());
        };
        // A reconnecting Envoy that already runs listeners (it names the
        // version it holds) serves traffic already: it is ready at once, so
        // a control-plane restart never withholds its endpoints.
        let mut listeners_acked =
            t == XdsType::Listener && req.response_nonce.is_empty() && !req.version_info.is_empty();
        let st = self.types.entry(t).or_default();
        let error = req.error_detail.as_ref().map(|e| e.message.as_str());
        match st.acks.on_request(&req.response_nonce, error) {
            Reply::Stale => return Ok(()),
            Reply::Initial => {}
            Reply::Nack => {
                // `version_info` is the last version Envoy accepted; the
                // rejected one is the version sent with the nonce.
                let rejected = st.acks.sent_version().unwrap_or_default();
                let error = error.unwrap_or_default();
                warn!(r#type = t.short(), version = rejected, accepted = %req.version_info, error, "proxy rejected config");
                session.insight.nacked(t, rejected, error);
            }
            Reply::Ack => {
                session.insight.acked(t);
                listeners_acked = t == XdsType::Listener;
            }
        }
        let cluster_reply = t == XdsType::Cluster && !req.response_nonce.is_empty();
        st.subscribed = true;
        st.names = req.resource_names.into_iter().collect();
        if listeners_acked {
            session.listeners_acked().await;
        }
        let Some(s) = snapshot else {
            return Ok(());
        };
        self.send(t, s, session, tx).await?;
        // Envoy answered the clusters: what was held back for them goes now.
        if cluster_reply && self.deferred && !self.clusters_pending() {
            self.deferred = false;
            for held in [XdsType::Listener, XdsType::Route] {
                if self.types.get(&held).is_some_and(|s| s.subscribed) {
                    self.send(held, s, session, tx).await?;
                }
            }
        }
        Ok(())
    }

    async fn push_all(
        &mut self,
        snapshot: &Snapshot,
        session: &mut Session,
        tx: &ResponseSender,
    ) -> Result<(), Status> {
        for t in XdsType::PUSH_ORDER {
            if self.types.get(&t).is_some_and(|s| s.subscribed) {
                self.send(t, snapshot, session, tx).await?;
            }
        }
        Ok(())
    }
}

impl SotwStream {
    /// Whether clusters were sent and Envoy has not answered them yet.
    ///
    /// Listeners and routes wait for that answer: a listener naming a
    /// cluster Envoy does not have yet is rejected ("unknown cluster"), and
    /// a rejected version is not sent again. This is the order the xDS
    /// protocol asks of a server: CDS before LDS and RDS.
    fn clusters_pending(&self) -> bool {
        self.types
            .get(&XdsType::Cluster)
            .is_some_and(|s| s.acks.awaiting_reply())
    }

    /// Sends type `t` if its version for the subscribed names changed
    /// (listeners and routes: once no clusters await Envoy's answer).
    async fn send(
        &mut self,
        t: XdsType,
        snapshot: &Snapshot,
        session: &mut Session,
        tx: &ResponseSender,
    ) -> Result<(), Status> {
        if matches!(t, XdsType::Listener | XdsType::Route) && self.clusters_pending() {
            self.deferred = true;
            return Ok(());
        }
        let st = self.types.entry(t).or_default();
        let (version, items) = snapshot.select(t, &st.names);
        if st.acks.sent_version() == Some(version.as_str()) {
            return Ok(());
        }
        let nonce = self.nonces.next_nonce();
        let head = DiscoveryResponse {
            version_info: version.clone(),
            type_url: t.type_url().to_string(),
            nonce: nonce.clone(),
            control_plane: Some(ControlPlane {
                identifier: session.instance_id().to_string(),
            }),
            ..Default::default()
        };
        let response = crate::grpc::sotw_response(&head, t.type_url(), &items);
        // Not held while waiting for room in the response queue: a stream
        // stuck behind a slow proxy then keeps its encoded response only,
        // not the resources of a snapshot that may since have been replaced.
        drop(items);
        st.acks.sent(version, nonce);
        session.insight.sent(t);
        tx.send(Outgoing::Message(response))
            .await
            .map_err(|_| hung_up())
    }
}
