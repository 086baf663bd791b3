//! What every ADS stream does on top of the stream core
//! ([`crate::stream`]), whatever its flavour (state of the world or delta):
//! register the Dataplane the node carries, record the subscription in the
//! DataplaneInsight, tell the reconciler the proxy is connected (and, once
//! it ACKs its listeners, ready), watch the proxy's snapshot in the cache,
//! and undo all of that when the stream ends. A flavour ([`AdsProtocol`])
//! only adapts requests and snapshots to its wire shapes.
//!
//! A Dataplane the proxy registered outlives its stream by the cleanup age
//! ([`Lifecycle::cleanup_age`]): it is deleted only if, by then, the proxy
//! has not come back to this control plane or any other replica, and never
//! because this control plane is shutting down (see [`release`]).

use crate::cache::{NodeId, SnapshotCache, SnapshotWatch};
use crate::grpc::ResponseSender;
use crate::insight::InsightRecorder;
use crate::reconcile::ProxyEvent;
use crate::resource::Snapshot;
use crate::stream::client::{DATAPLANE_RESOURCE_KEY, metadata_string};
use crate::stream::{Client, ClientStream, ResourceSource, Service};
use envoy_types::pb::envoy::config::core::v3::Node;
use kuma_core::manager::{ManagerError, ResourceManager};
use kuma_core::resource::{
    DataplaneInsightSpec, DataplaneSpec, Resource, ResourceKey, ResourceType, SERVICE_TAG, Version,
};
use kuma_core::store::StoreError;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{Mutex, mpsc, watch};
use tonic::Status;
use tracing::{info, warn};

/// State shared by every stream of one ADS server.
pub(crate) struct Shared {
    pub(crate) manager: ResourceManager,
    pub(crate) cache: Arc<SnapshotCache>,
    pub(crate) proxies: mpsc::Sender<ProxyEvent>,
    pub(crate) instance_id: String,
    pub(crate) streams: std::sync::atomic::AtomicU64,
    /// Streams per node that registered their Dataplane from metadata.
    pub(crate) registrations: Mutex<HashMap<NodeId, usize>>,
    /// The Dataplanes a proxy created (registered where none was stored),
    /// with the version that proxy last wrote: a stored Dataplane is the
    /// proxy's own while its version is that one. Any other stored
    /// Dataplane (written through the API, or by a proxy on another
    /// control plane or before a restart) is treated as the operator's,
    /// whose identity a proxy cannot change ([`register`]).
    pub(crate) proxy_owned: std::sync::Mutex<HashMap<NodeId, Version>>,
}

/// What happens to a proxy-registered Dataplane once its stream ends.
#[derive(Clone, Debug)]
pub(crate) struct Lifecycle {
    /// How long a registered Dataplane stays after its last stream ended
    /// before it is deleted, if the proxy has not come back.
    pub(crate) cleanup_age: Duration,
    /// Turns `true` when the server stops: streams that end then keep their
    /// Dataplane, and pending cleanups are dropped.
    pub(crate) stop: Option<watch::Receiver<bool>>,
}

impl Lifecycle {
    fn shutting_down(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }
}

/// One proxy's ADS stream, from its first request to its end.
pub(crate) struct Session {
    shared: Arc<Shared>,
    lifecycle: Lifecycle,
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
    /// Opens a session for an authenticated `client` whose first request
    /// carried `node_pb`; the error is the status to end the stream with.
    ///
    /// The reconciler hears of the proxy (`Connected`) before the Dataplane
    /// it carries is written: a new proxy is then warming by the time its
    /// Dataplane reaches the reconciler, and its instances are held back
    /// until its listeners are up (see [`ProxyEvent::Ready`]). Written first,
    /// the Dataplane could be advertised for a moment before the proxy has
    /// any listener, and other proxies' requests to it would fail.
    async fn open(
        shared: &Arc<Shared>,
        lifecycle: &Lifecycle,
        client: Client,
        node_pb: &Node,
        stream: u64,
    ) -> Result<Self, Status> {
        // What the proxy runs as, checked before it is announced or anything
        // is written.
        let carried = match metadata_string(node_pb, DATAPLANE_RESOURCE_KEY) {
            Some(text) => Some(carried_dataplane(&client, &text)?),
            None => {
                check_stored_dataplane(shared, &client).await?;
                None
            }
        };
        info!(node = %client.node, stream, resumed = client.resumed, "proxy connected");
        let mut insight = InsightRecorder::new(
            &client.node.mesh,
            &client.node.name,
            &format!("{}-{stream}", shared.instance_id),
            &shared.instance_id,
            client.envoy_version.clone(),
            client.kuma_dp_version.clone(),
        );
        insight.flush(&shared.manager).await;
        let watch = ResourceSource::watch(&*shared.cache, &client.node);
        // The validated token goes to the proxy's own SDS config sources.
        let _ = shared
            .proxies
            .send(ProxyEvent::Connected {
                node: client.node.clone(),
                token: client.token.clone(),
                resumed: client.resumed,
            })
            .await;
        let registered = match carried {
            Some(resource) => {
                if let Err(status) = register(shared, &client, resource).await {
                    let _ = shared
                        .proxies
                        .send(ProxyEvent::Disconnected(client.node.clone()))
                        .await;
                    insight.disconnected();
                    insight.flush(&shared.manager).await;
                    return Err(status);
                }
                true
            }
            None => false,
        };
        Ok(Self {
            shared: shared.clone(),
            lifecycle: lifecycle.clone(),
            node: client.node,
            registered,
            ready_sent: false,
            insight,
            watch,
        })
    }

    /// The control plane's identifier in responses.
    pub(crate) fn instance_id(&self) -> &str {
        &self.shared.instance_id
    }

    /// The proxy acknowledged its listeners, inbound ones included: from now
    /// on other proxies may be sent to it.
    pub(crate) async fn listeners_acked(&mut self) {
        if !self.ready_sent {
            self.ready_sent = true;
            let _ = self
                .shared
                .proxies
                .send(ProxyEvent::Ready(self.node.clone()))
                .await;
        }
    }

    /// Writes the insight if it changed.
    async fn flush(&mut self) {
        self.insight.flush(&self.shared.manager).await;
    }

    /// Ends the session: the reconciler forgets the stream, the insight
    /// records the disconnect, and a Dataplane the proxy registered is
    /// [`release`]d when its last stream here is gone.
    async fn close(self, stream: u64) {
        let Session {
            shared,
            lifecycle,
            node,
            registered,
            mut insight,
            watch,
            ..
        } = self;
        info!(node = %node, stream, "proxy disconnected");
        drop(watch);
        let _ = shared
            .proxies
            .send(ProxyEvent::Disconnected(node.clone()))
            .await;
        insight.disconnected();
        insight.flush(&shared.manager).await;
        if registered {
            let gone = Departure {
                node,
                connected_at: insight.subscription().connect_time,
                subscription: insight.subscription().id.clone(),
            };
            release(&shared, &lifecycle, gone).await;
        }
    }
}

/// The identity of a Dataplane: whether it is a zone ingress, and the
/// `kuma.io/service` values of its inbounds (or gateway).
fn identity(spec: &DataplaneSpec) -> (bool, BTreeSet<&str>) {
    let services = spec
        .tag_sets()
        .into_iter()
        .filter_map(|t| t.get(SERVICE_TAG).map(String::as_str))
        .collect();
    (spec.is_ingress(), services)
}

/// The Dataplane carried in the node metadata, if it is one named as the
/// node and the client's token allows it (`PERMISSION_DENIED` otherwise).
fn carried_dataplane(client: &Client, text: &str) -> Result<Resource, Status> {
    let node = &client.node;
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
    let spec = resource.spec_as::<DataplaneSpec>().ok_or_else(|| {
        Status::invalid_argument("dataplane in node metadata has no Dataplane spec")
    })?;
    client.authorize(spec, "ADS")?;
    Ok(resource)
}

/// Checks the stored Dataplane a proxy without one in its metadata runs
/// as: it must exist, and the client's token must allow it.
async fn check_stored_dataplane(shared: &Shared, client: &Client) -> Result<(), Status> {
    let key = ResourceKey::new(
        ResourceType::Dataplane,
        Some(&client.node.mesh),
        &client.node.name,
    );
    match shared.manager.get(&key).await {
        Ok(dp) => {
            let spec = dp
                .spec_as::<DataplaneSpec>()
                .ok_or_else(|| Status::internal("the stored Dataplane has no Dataplane spec"))?;
            client.authorize(spec, "ADS")
        }
        Err(ManagerError::Store(StoreError::NotFound(_))) => Err(Status::not_found(format!(
            "Dataplane {:?} in mesh {:?} does not exist: apply it first, or start kuma-dp with --dataplane-file",
            client.node.name, client.node.mesh
        ))),
        Err(e) => Err(Status::unavailable(format!("reading the Dataplane: {e}"))),
    }
}

/// Registers `resource`, the Dataplane carried in the node metadata (see
/// [`carried_dataplane`]), unless it would change the identity of a
/// Dataplane the proxy does not own (see [`Shared::proxy_owned`]): an
/// operator's Dataplane of that name with other services is refused with
/// `PERMISSION_DENIED`.
async fn register(shared: &Shared, client: &Client, resource: Resource) -> Result<(), Status> {
    let node = &client.node;
    let spec = resource.spec_as::<DataplaneSpec>().ok_or_else(|| {
        Status::invalid_argument("dataplane in node metadata has no Dataplane spec")
    })?;
    let mut regs = shared.registrations.lock().await;
    let key = resource.key();
    let stored = match shared.manager.get(&key).await {
        Ok(dp) => Some(dp),
        Err(ManagerError::Store(StoreError::NotFound(_))) => None,
        Err(e) => {
            return Err(Status::unavailable(format!(
                "reading the stored Dataplane: {e}"
            )));
        }
    };
    let owned = match &stored {
        None => true,
        Some(dp) => {
            let owned = lock(&shared.proxy_owned).get(node).copied();
            owned.is_some() && owned == dp.meta.version
        }
    };
    if let Some(dp) = &stored
        && !owned
        && let Some(stored_spec) = dp.spec_as::<DataplaneSpec>()
        && identity(stored_spec) != identity(spec)
    {
        let (_, services) = identity(stored_spec);
        warn!(node = %node, "refused to overwrite an operator's Dataplane with another identity");
        return Err(Status::permission_denied(format!(
            "Dataplane {:?} in mesh {:?} exists with another identity (services {services:?}) and was not registered by a proxy: a proxy cannot change it; delete it or use another name",
            node.name, node.mesh
        )));
    }
    let written = match stored {
        // Written only if still the version read: an operator's write in
        // between is not overwritten (the proxy reconnects and is checked
        // again).
        Some(dp) => {
            let mut resource = resource;
            resource.meta.version = dp.meta.version;
            shared.manager.update(resource).await
        }
        None => shared.manager.create(resource).await,
    };
    match written {
        Ok(dp) => {
            *regs.entry(node.clone()).or_default() += 1;
            if owned && let Some(v) = dp.meta.version {
                lock(&shared.proxy_owned).insert(node.clone(), v);
            }
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

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a single map operation.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stream of a proxy that registered its Dataplane, just ended.
#[derive(Debug)]
struct Departure {
    node: NodeId,
    /// When that stream connected.
    connected_at: OffsetDateTime,
    /// Its DataplaneInsight subscription id.
    subscription: String,
}

/// The last stream of a proxy-registered Dataplane on this control plane
/// ended: unless the control plane is shutting down (a restart must not
/// pull endpoints out of the mesh), its Dataplane and DataplaneInsight are
/// deleted after the cleanup age if the proxy has not come back by then
/// (see [`cleanup`]).
async fn release(shared: &Arc<Shared>, lifecycle: &Lifecycle, gone: Departure) {
    {
        let mut regs = shared.registrations.lock().await;
        let Some(n) = regs.get_mut(&gone.node) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        regs.remove(&gone.node);
    }
    if lifecycle.shutting_down() {
        info!(node = %gone.node, "keeping the Dataplane of a proxy disconnected by the shutdown");
        return;
    }
    // The Dataplane's version now: every re-registration (a reconnect to
    // any replica) writes it again, so a changed version means the proxy
    // is back.
    let key = ResourceKey::new(
        ResourceType::Dataplane,
        Some(&gone.node.mesh),
        &gone.node.name,
    );
    let version = match shared.manager.get(&key).await {
        Ok(dp) => dp.meta.version,
        Err(_) => return,
    };
    let shared = shared.clone();
    let age = lifecycle.cleanup_age;
    let stop = lifecycle.stop.clone();
    tokio::spawn(async move {
        let wait = tokio::time::sleep(age);
        match stop {
            Some(mut stop) => {
                tokio::select! {
                    _ = wait => {}
                    // Stopping (or the server is gone): keep it.
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            None => wait.await,
        }
        cleanup(&shared, &gone, version).await;
    });
}

/// Deletes the Dataplane (and DataplaneInsight) of a proxy that went away
/// a cleanup age ago, unless it came back: it has a stream on this control
/// plane, its Dataplane was written since (`version` was read at the
/// disconnect), or its insight holds a subscription newer than the one
/// that ended (a stream to another replica).
async fn cleanup(shared: &Shared, gone: &Departure, version: Option<Version>) {
    let node = &gone.node;
    // Held until the deletes are done: a reconnect here registers after
    // them, not between the checks and the deletes.
    let regs = shared.registrations.lock().await;
    if regs.contains_key(node) {
        return;
    }
    let dp_key = ResourceKey::new(ResourceType::Dataplane, Some(&node.mesh), &node.name);
    match shared.manager.get(&dp_key).await {
        Ok(dp) if dp.meta.version == version => {}
        Ok(_) => {
            info!(node = %node, "keeping the Dataplane: its proxy registered it again");
            return;
        }
        Err(ManagerError::Store(StoreError::NotFound(_))) => return,
        Err(e) => {
            warn!(node = %node, error = %e, "could not check a departed proxy's Dataplane; keeping it");
            return;
        }
    }
    let insight_key =
        ResourceKey::new(ResourceType::DataplaneInsight, Some(&node.mesh), &node.name);
    if let Ok(insight) = shared.manager.get(&insight_key).await
        && let Some(spec) = insight.spec_as::<DataplaneInsightSpec>()
        && spec
            .subscriptions
            .iter()
            .any(|s| s.id != gone.subscription && s.connect_time > gone.connected_at)
    {
        info!(node = %node, "keeping the Dataplane: its proxy reconnected to another control plane");
        return;
    }
    lock(&shared.proxy_owned).remove(node);
    for key in [dp_key, insight_key] {
        match shared.manager.delete(&key).await {
            Ok(()) | Err(ManagerError::Store(StoreError::NotFound(_))) => {}
            Err(e) => warn!(%key, error = %e, "could not remove"),
        }
    }
    drop(regs);
    info!(node = %node, "removed the Dataplane of a proxy that went away");
}

/// How often a stream writes its DataplaneInsight when it changed.
const INSIGHT_FLUSH: Duration = Duration::from_secs(1);

/// One flavour of the ADS protocol (state of the world, delta): how a
/// stream answers a request and pushes a new snapshot. The stream core and
/// [`Session`] do the rest, the same for both. Errors end the stream as
/// the core's handlers do ([`crate::stream::hung_up`] when the proxy is
/// gone).
pub(crate) trait AdsProtocol: Default + Send + 'static {
    /// The request message.
    type Request: Send + 'static;

    /// The flavour's name in logs.
    const NAME: &'static str;

    /// The node of a request (set on a stream's first request).
    fn node(request: &Self::Request) -> Option<&Node>;

    /// Whether a first request carries versions the proxy accepted on an
    /// earlier stream (see [`crate::stream::Service::resumes`]).
    fn resumes(first: &Self::Request) -> bool;

    /// Handles one request.
    fn on_request(
        &mut self,
        request: Self::Request,
        snapshot: Option<&Snapshot>,
        session: &mut Session,
        tx: &ResponseSender,
    ) -> impl Future<Output = Result<(), Status>> + Send;

    /// Pushes what changed in a new snapshot.
    fn push_all(
        &mut self,
        snapshot: &Snapshot,
        session: &mut Session,
        tx: &ResponseSender,
    ) -> impl Future<Output = Result<(), Status>> + Send;
}

/// The ADS streams of flavour `P`: a [`Service`] of the stream core.
pub(crate) struct AdsStreams<P> {
    pub(crate) shared: Arc<Shared>,
    lifecycle: Lifecycle,
    flavour: PhantomData<fn() -> P>,
}

impl<P> AdsStreams<P> {
    /// The streams of one server.
    pub(crate) fn new(shared: Arc<Shared>, lifecycle: Lifecycle) -> Self {
        Self {
            shared,
            lifecycle,
            flavour: PhantomData,
        }
    }
}

impl<P: AdsProtocol> Service for AdsStreams<P> {
    type Request = P::Request;
    type Sink = ResponseSender;
    type Stream = AdsStream<P>;

    const NAME: &'static str = P::NAME;
    const HOUSEKEEPING: Option<Duration> = Some(INSIGHT_FLUSH);

    fn node(request: &P::Request) -> Option<&Node> {
        P::node(request)
    }

    fn resumes(first: &P::Request) -> bool {
        P::resumes(first)
    }

    async fn open(&self, client: Client, node: &Node, stream: u64) -> Result<AdsStream<P>, Status> {
        Ok(AdsStream {
            session: Session::open(&self.shared, &self.lifecycle, client, node, stream).await?,
            protocol: P::default(),
        })
    }
}

/// One ADS stream: its session and its flavour's state.
pub(crate) struct AdsStream<P> {
    session: Session,
    protocol: P,
}

impl<P: AdsProtocol> ClientStream for AdsStream<P> {
    type Request = P::Request;
    type Sink = ResponseSender;
    type Watch = SnapshotWatch;

    fn watch(&mut self) -> &mut SnapshotWatch {
        &mut self.session.watch
    }

    async fn on_request(&mut self, request: P::Request, tx: &ResponseSender) -> Result<(), Status> {
        let snapshot = self.session.watch.borrow().clone();
        self.protocol
            .on_request(request, snapshot.as_deref(), &mut self.session, tx)
            .await
    }

    async fn on_change(&mut self, tx: &ResponseSender) -> Result<(), Status> {
        let snapshot = self.session.watch.borrow_and_update().clone();
        match snapshot {
            Some(s) => self.protocol.push_all(&s, &mut self.session, tx).await,
            None => Ok(()),
        }
    }

    async fn housekeeping(&mut self) {
        self.session.flush().await;
    }

    async fn close(self, stream: u64) {
        self.session.close(stream).await;
    }
}
