//! What every ADS stream does, whatever its flavour (state of the world or
//! delta): identify the node, register the Dataplane it carries, record the
//! subscription in the DataplaneInsight, tell the reconciler the proxy is
//! connected (and, once it ACKs its listeners, ready), and undo all of that
//! when the stream ends.

use crate::cache::{NodeId, SnapshotWatch};
use crate::insight::InsightRecorder;
use crate::reconcile::ProxyEvent;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
use envoy_types::pb::google::protobuf::value::Kind;
use kuma_core::manager::{ManagerError, ResourceManager};
use kuma_core::resource::{Resource, ResourceKey, ResourceType};
use kuma_core::store::StoreError;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc};
use tonic::Status;
use tracing::{info, warn};

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
    ) -> Result<Self, Status> {
        let node_pb = node_pb
            .ok_or_else(|| Status::invalid_argument("the first request must carry the node"))?;
        let node = NodeId::parse(&node_pb.id).ok_or_else(|| {
            Status::invalid_argument(format!("node id {:?} is not <mesh>.<name>", node_pb.id))
        })?;
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
        let _ = shared.proxies.send(ProxyEvent::Connected(node.clone()));
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
