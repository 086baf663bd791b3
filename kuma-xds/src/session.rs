//! What every ADS stream does, whatever its flavour (state of the world or
//! delta): identify the node, check its dataplane token (the `authorization`
//! metadata of the stream) when token checks are on, register the Dataplane
//! it carries, record the
//! subscription in the DataplaneInsight, tell the reconciler the proxy is
//! connected (and, once it ACKs its listeners, ready), and undo all of that
//! when the stream ends.

use crate::cache::{NodeId, SnapshotWatch};
use crate::insight::InsightRecorder;
use crate::reconcile::ProxyEvent;
use crate::resource::Snapshot;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
use envoy_types::pb::google::protobuf::value::Kind;
use kuma_core::manager::{ManagerError, ResourceManager};
use kuma_core::resource::{Resource, ResourceKey, ResourceType};
use kuma_core::store::StoreError;
use kuma_core::tokens::DataplaneAuth;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::sync::{Mutex, mpsc};
use tonic::Status;
use tonic::Streaming;
use tracing::{debug, info, warn};

/// Node metadata key carrying a Dataplane to register (JSON text).
pub const DATAPLANE_RESOURCE_KEY: &str = "dataplane.resource";
/// Node metadata key carrying kuma-dp's version.
pub const KUMA_DP_VERSION_KEY: &str = "version.kumaDp";

/// State shared by every stream of one ADS server.
pub(crate) struct Shared {
    pub(crate) manager: ResourceManager,
    pub(crate) cache: Arc<crate::cache::SnapshotCache>,
    pub(crate) proxies: mpsc::UnboundedSender<ProxyEvent>,
    pub(crate) instance_id: String,
    pub(crate) streams: std::sync::atomic::AtomicU64,
    /// Streams per node that registered their Dataplane from metadata.
    pub(crate) registrations: Mutex<HashMap<NodeId, usize>>,
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

/// How a stream authenticates: the server's token checking and the token
/// the stream presented (its `authorization` metadata, `Bearer ` prefix
/// removed). Deliberately not `Debug`: the token is a credential.
pub(crate) struct StreamAuth {
    /// Whether and how tokens are checked.
    pub(crate) auth: DataplaneAuth,
    /// The presented token, if any.
    pub(crate) token: Option<String>,
}

impl StreamAuth {
    /// The credentials of a stream whose request carried `metadata`.
    pub(crate) fn from_metadata(
        auth: &DataplaneAuth,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Self {
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(kuma_core::tokens::strip_bearer)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        Self {
            auth: auth.clone(),
            token,
        }
    }

    /// Checks the token for `node`; the error is the status to end the
    /// stream with. On success, the token to hand to config generation
    /// (`None` when checks are off).
    async fn check(&self, node: &NodeId) -> Result<Option<Arc<str>>, Status> {
        match self
            .auth
            .check(self.token.as_deref(), &node.mesh, &node.name)
            .await
        {
            Ok(()) if self.auth.is_on() => Ok(self.token.as_deref().map(Arc::from)),
            Ok(()) => Ok(None),
            Err(e) if e.is_unauthenticated() => {
                // The error names the failed check, never the token.
                warn!(node = %node, error = %e, "refused a proxy's ADS stream");
                Err(Status::unauthenticated(e.to_string()))
            }
            Err(e) => {
                warn!(node = %node, error = %e, "could not check a proxy's dataplane token");
                Err(Status::unavailable(e.to_string()))
            }
        }
    }
}

/// One proxy's stream, from its first request to its end.
pub(crate) struct Session {
    shared: Arc<Shared>,
    /// The proxy.
    pub(crate) node: NodeId,
    registered: bool,
    ready_sent: bool,
    /// The DataplaneInsight subscription of this stream.
    pub(crate) insight: InsightRecorder,
    /// The proxy's snapshot.
    pub(crate) watch: SnapshotWatch,
}

impl Session {
    /// Opens a session for the node of a stream's first request; the error
    /// is the status to end the stream with.
    pub(crate) async fn open(
        shared: &Arc<Shared>,
        node_pb: Option<&Node>,
        stream: u64,
        credentials: &StreamAuth,
    ) -> Result<Self, Status> {
        let node_pb = node_pb
            .ok_or_else(|| Status::invalid_argument("the first request must carry the node"))?;
        let node = NodeId::parse(&node_pb.id).ok_or_else(|| {
            Status::invalid_argument(format!("node id {:?} is not <mesh>.<name>", node_pb.id))
        })?;
        // Before anything is registered or recorded for the node.
        let token = credentials.check(&node).await?;
        let registered = match metadata_string(node_pb, DATAPLANE_RESOURCE_KEY) {
            Some(text) => {
                register(shared, &node, &text).await?;
                true
            }
            None => false,
        };
        let key = ResourceKey::new(ResourceType::Dataplane, Some(&node.mesh), &node.name);
        if let Err(ManagerError::Store(StoreError::NotFound(_))) = shared.manager.get(&key).await {
            return Err(Status::not_found(format!(
                "Dataplane {:?} in mesh {:?} does not exist: apply it first, or start kuma-dp with --dataplane-file",
                node.name, node.mesh
            )));
        }
        info!(node = %node, stream, "proxy connected");
        let mut insight = InsightRecorder::new(
            &node.mesh,
            &node.name,
            &format!("{}-{stream}", shared.instance_id),
            &shared.instance_id,
            envoy_version(node_pb),
            metadata_string(node_pb, KUMA_DP_VERSION_KEY),
        );
        insight.flush(&shared.manager).await;
        let watch = shared.cache.watch(&node);
        // The validated token goes to the proxy's own SDS config sources.
        let _ = shared.proxies.send(ProxyEvent::Connected {
            node: node.clone(),
            token,
        });
        Ok(Self {
            shared: shared.clone(),
            node,
            registered,
            ready_sent: false,
            insight,
            watch,
        })
    }

    /// The proxy acknowledged its listeners, inbound ones included: from now
    /// on other proxies may be sent to it.
    pub(crate) fn listeners_acked(&mut self) {
        if !self.ready_sent {
            self.ready_sent = true;
            let _ = self
                .shared
                .proxies
                .send(ProxyEvent::Ready(self.node.clone()));
        }
    }

    /// Writes the insight if it changed.
    pub(crate) async fn flush(&mut self) {
        self.insight.flush(&self.shared.manager).await;
    }

    /// Ends the session: the reconciler forgets the stream, a Dataplane the
    /// proxy registered goes when its last stream does, else the insight
    /// records the disconnect.
    pub(crate) async fn close(self, stream: u64) {
        let Session {
            shared,
            node,
            registered,
            mut insight,
            watch,
            ..
        } = self;
        info!(node = %node, stream, "proxy disconnected");
        drop(watch);
        let _ = shared.proxies.send(ProxyEvent::Disconnected(node.clone()));
        if registered {
            deregister(&shared, &node).await;
        } else {
            insight.disconnected();
            insight.flush(&shared.manager).await;
        }
    }
}

/// Registers the Dataplane carried in the node metadata.
async fn register(shared: &Shared, node: &NodeId, text: &str) -> Result<(), Status> {
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
    let mut regs = shared.registrations.lock().await;
    match shared.manager.upsert(resource).await {
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

/// Removes a registered Dataplane (and its insight) when its last stream is
/// gone.
async fn deregister(shared: &Shared, node: &NodeId) {
    let mut regs = shared.registrations.lock().await;
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
        match shared.manager.delete(&key).await {
            Ok(()) | Err(ManagerError::Store(StoreError::NotFound(_))) => {}
            Err(e) => warn!(%key, error = %e, "could not remove"),
        }
    }
    info!(node = %node, "removed the Dataplane of a proxy that went away");
}

/// How often a stream writes its DataplaneInsight when it changed.
const INSIGHT_FLUSH: Duration = Duration::from_secs(1);

/// Resolves once `stop` is `true` (or its sender is gone); never without one.
async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(rx) => {
            let _ = rx.wait_for(|s| *s).await;
        }
        None => std::future::pending().await,
    }
}

/// One flavour of the ADS protocol (state of the world, delta): how a
/// stream answers a request and pushes a new snapshot. [`drive`] does the
/// rest, the same for both.
pub(crate) trait AdsProtocol: Send {
    /// The request message.
    type Request: Send + 'static;

    /// The node of a request (set on a stream's first request).
    fn node(request: &Self::Request) -> Option<&Node>;

    /// Handles one request; false when the stream is gone.
    fn on_request(
        &mut self,
        request: Self::Request,
        snapshot: Option<&Snapshot>,
        session: &mut Session,
    ) -> impl Future<Output = bool> + Send;

    /// Pushes what changed in a new snapshot; false when the stream is gone.
    fn push_all(
        &mut self,
        snapshot: &Snapshot,
        insight: &mut InsightRecorder,
    ) -> impl Future<Output = bool> + Send;

    /// Ends the stream with `status`.
    fn fail(&self, status: Status) -> impl Future<Output = ()> + Send;
}

/// Runs one ADS stream: opens the session from the first request, answers
/// requests, pushes snapshot changes, flushes the insight, ends the stream
/// when the proxy hangs up or the server stops, and closes the session.
pub(crate) async fn drive<P: AdsProtocol>(
    mut protocol: P,
    shared: Arc<Shared>,
    stream: u64,
    mut stop: Option<watch::Receiver<bool>>,
    mut inbound: Streaming<P::Request>,
    credentials: StreamAuth,
) {
    let first = match inbound.message().await {
        Ok(Some(r)) => r,
        _ => return,
    };
    // The sub-futures below are boxed: awaited in place they would all be
    // laid out in this task's future, which lives as long as the stream
    // (~8.7 KB each when inline; the stream's state is what stays).
    let mut session = match Box::pin(Session::open(
        &shared,
        P::node(&first),
        stream,
        &credentials,
    ))
    .await
    {
        Ok(s) => s,
        Err(status) => return Box::pin(protocol.fail(status)).await,
    };
    let mut flush = tokio::time::interval(INSIGHT_FLUSH);
    let mut pending = Some(first);
    loop {
        if let Some(req) = pending.take() {
            let snapshot = session.watch.borrow().clone();
            if !Box::pin(protocol.on_request(req, snapshot.as_deref(), &mut session)).await {
                break;
            }
        }
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(req)) => pending = Some(req),
                Ok(None) => break,
                Err(e) => {
                    debug!(node = %session.node, error = %e, "stream error");
                    break;
                }
            },
            changed = session.watch.changed() => {
                if changed.is_err() {
                    break;
                }
                let snapshot = session.watch.borrow_and_update().clone();
                if let Some(s) = snapshot
                    && !Box::pin(protocol.push_all(&s, &mut session.insight)).await
                {
                    break;
                }
            },
            _ = flush.tick() => Box::pin(session.flush()).await,
            () = stopped(&mut stop) => {
                protocol.fail(Status::unavailable("the control plane is shutting down")).await;
                break;
            }
        }
    }
    Box::pin(session.close(stream)).await;
}
