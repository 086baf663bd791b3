//! The SDS server (`sdsServer.grpcPort`, 5677): proxy certificates for mesh
//! mTLS (see `docs/security.md`).
//!
//! State-of-the-world `StreamSecrets` only (`DeltaSecrets` answers
//! `UNIMPLEMENTED`; `FetchSecrets` answers once). Per stream:
//!
//! - the first request names the node (`<mesh>.<name>`); the dataplane token
//!   in the `authorization` gRPC metadata (with or without `Bearer `) is
//!   checked with [`DataplaneAuth`]: a refused token ends the stream with
//!   `UNAUTHENTICATED` and the check's message (never the token); a proxy
//!   with no Dataplane gets `NOT_FOUND`;
//! - two secret names are served: `identity_cert` (the proxy's certificate
//!   chain and private key, one `spiffe://<mesh>/<service>` URI SAN per
//!   `kuma.io/service` of its inbounds or gateway) and `mesh_ca` (a
//!   validation context trusting the mesh CA);
//! - other names are left out of the response with a warning (once per
//!   stream), rather than ending the stream: Envoy keeps the secrets it can
//!   get working, and a stream ended on purpose would only be reopened in a
//!   loop;
//! - while the mesh has mTLS off, or its CA cannot be loaded (logged), no
//!   response is sent: Envoy keeps waiting (or keeps what it has) and gets
//!   the secrets as soon as the mesh has a usable CA;
//! - nonces work as in ADS: a request with a stale nonce is ignored, one
//!   with the last nonce ACKs or (with `error_detail`) NACKs that version,
//!   which is then not sent again; the version is a hash of the content.
//!
//! Certificates are cached per proxy (shared by its streams and kept across
//! reconnects until its Dataplane is deleted), valid for the enabled
//! backend's `dpCert.rotation.expiration` (default 24h), and replaced and
//! pushed when 4/5 of that validity has passed, or at once when the mesh's
//! CA (the Mesh or a Secret of the mesh changed) or the Dataplane's services
//! change. One task follows the store's events for all streams.

use crate::cache::NodeId;
use crate::generate::names::{IDENTITY_CERT_SECRET, MESH_CA_SECRET, SDS_TOKEN_METADATA};
use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type as SecretType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use envoy_types::pb::google::protobuf::Any;
use kuma_core::manager::{ManagerError, ResourceManager};
use kuma_core::pki::{self, IdentityCert};
use kuma_core::resource::{DataplaneSpec, MeshSpec, ResourceKey, ResourceType, SERVICE_TAG};
use kuma_core::store::{Event, EventKind, StoreError, StoreEvent, Subscription};
use kuma_core::tokens::DataplaneAuth;
use prost::Message;
use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

/// The type URL of SDS resources.
pub const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The SDS service, ready to be served by tonic (over TLS: private keys
/// cross this connection).
#[derive(Clone)]
pub struct SdsServer {
    shared: Arc<Shared>,
    stop: Option<watch::Receiver<bool>>,
}

impl std::fmt::Debug for SdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdsServer")
            .field("tokens_checked", &self.shared.auth.is_on())
            .finish_non_exhaustive()
    }
}

/// State shared by every stream.
struct Shared {
    manager: ResourceManager,
    auth: DataplaneAuth,
    streams: AtomicU64,
    /// The current certificate of each proxy.
    certs: Mutex<HashMap<NodeId, Arc<CachedIdentity>>>,
    /// Change counters streams wait on, bumped by the event task.
    watchers: Mutex<HashMap<WatchKey, watch::Sender<u64>>>,
    events_started: Once,
}

/// What a stream waits on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum WatchKey {
    /// The Mesh or any Secret of the mesh (the CA may have changed).
    Mesh(String),
    /// The proxy's Dataplane (its services may have changed).
    Dataplane(NodeId),
}

/// A proxy's certificate and what it was issued from.
struct CachedIdentity {
    ca_cert_pem: String,
    services: Vec<String>,
    validity: Duration,
    cert: IdentityCert,
    /// When 4/5 of the validity has passed.
    rotate_at: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single map operation; a poisoned lock
    // holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn watch(&self, key: WatchKey) -> watch::Receiver<u64> {
        lock(&self.watchers)
            .entry(key)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn release(&self, key: &WatchKey) {
        let mut w = lock(&self.watchers);
        if w.get(key).is_some_and(|tx| tx.receiver_count() == 0) {
            w.remove(key);
        }
    }

    fn bump(&self, key: &WatchKey) {
        if let Some(tx) = lock(&self.watchers).get(key) {
            tx.send_modify(|n| *n += 1);
        }
    }

    fn bump_all(&self) {
        for tx in lock(&self.watchers).values() {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// Starts the task following store events (once, from inside the
    /// runtime). It subscribes before returning, so a stream that sets up
    /// its watches afterwards misses no change.
    fn start_events(self: &Arc<Self>, stop: Option<watch::Receiver<bool>>) {
        self.events_started.call_once(|| {
            let events = self.manager.subscribe(&[
                ResourceType::Mesh,
                ResourceType::Secret,
                ResourceType::Dataplane,
            ]);
            tokio::spawn(follow_events(Arc::downgrade(self), events, stop));
        });
    }

    /// The proxy's certificate for these inputs: the cached one while it
    /// was issued from the same CA, services and validity and is not due
    /// for rotation, else a new one.
    fn identity(
        &self,
        node: &NodeId,
        issuer: &pki::Issuer,
        services: Vec<String>,
        validity: Duration,
    ) -> Result<Arc<CachedIdentity>, pki::PkiError> {
        let fresh = |c: &CachedIdentity| {
            c.ca_cert_pem == issuer.ca_cert_pem()
                && c.services == services
                && c.validity == validity
                && Instant::now() < c.rotate_at
        };
        if let Some(c) = lock(&self.certs).get(node).filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        // Issued outside the lock; two streams of one proxy racing here
        // both issue, and the last one stored wins. Harmless.
        let cert = issuer.issue_identity(&node.mesh, &services, validity)?;
        info!(node = %node, serial = %cert.serial_hex, services = ?services, valid_for = ?validity, "issued identity certificate");
        let entry = Arc::new(CachedIdentity {
            ca_cert_pem: issuer.ca_cert_pem().to_string(),
            services,
            validity,
            cert,
            rotate_at: Instant::now() + validity.mul_f64(0.8),
        });
        lock(&self.certs).insert(node.clone(), entry.clone());
        Ok(entry)
    }
}

/// Follows store events for every stream: a Mesh or a Secret of a mesh
/// wakes the streams of that mesh, a Dataplane those of that proxy. Ends
/// when the server is gone, the store closes, or `stop` turns true.
async fn follow_events(
    shared: Weak<Shared>,
    mut events: Subscription,
    mut stop: Option<watch::Receiver<bool>>,
) {
    // The first `Resync` stands for the state the streams read after
    // subscribing: nothing to redo.
    let mut initial = true;
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            () = stopped(&mut stop) => return,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match event {
            Some(Event::Changed(StoreEvent { kind, key })) => {
                let mesh = key.mesh.clone().unwrap_or_default();
                match key.resource_type {
                    ResourceType::Mesh => shared.bump(&WatchKey::Mesh(key.name)),
                    ResourceType::Secret => shared.bump(&WatchKey::Mesh(mesh)),
                    ResourceType::Dataplane => {
                        let node = NodeId {
                            mesh,
                            name: key.name,
                        };
                        if kind == EventKind::Deleted {
                            lock(&shared.certs).remove(&node);
                        }
                        shared.bump(&WatchKey::Dataplane(node));
                    }
                    _ => {}
                }
            }
            Some(Event::Resync) if std::mem::take(&mut initial) => {}
            Some(Event::Resync) => shared.bump_all(),
            None => return,
        }
    }
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

impl SdsServer {
    /// An SDS server issuing from the CAs in `manager`'s store, checking
    /// proxies' tokens with `auth`.
    pub fn new(manager: ResourceManager, auth: DataplaneAuth) -> Self {
        Self {
            shared: Arc::new(Shared {
                manager,
                auth,
                streams: AtomicU64::new(0),
                certs: Mutex::new(HashMap::new()),
                watchers: Mutex::new(HashMap::new()),
                events_started: Once::new(),
            }),
            stop: None,
        }
    }

    /// Ends every open stream (with `UNAVAILABLE`, so proxies reconnect)
    /// once `stop` turns `true`; without it a graceful shutdown waits for
    /// proxies to hang up.
    pub fn with_shutdown(mut self, stop: watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The tonic service to add to a server.
    pub fn into_service(self) -> SecretDiscoveryServiceServer<Self> {
        SecretDiscoveryServiceServer::new(self)
    }

    /// Authenticates the proxy named by `request`'s node; the node on
    /// success, else the status to end the stream with.
    async fn open(
        &self,
        token: Option<&str>,
        request: &DiscoveryRequest,
    ) -> Result<NodeId, Status> {
        let id = request
            .node
            .as_ref()
            .map(|n| n.id.as_str())
            .ok_or_else(|| Status::invalid_argument("the first request must carry the node"))?;
        let node = NodeId::parse(id).ok_or_else(|| {
            Status::invalid_argument(format!("node id {id:?} is not <mesh>.<name>"))
        })?;
        if let Err(e) = self.shared.auth.check(token, &node.mesh, &node.name).await {
            warn!(node = %node, error = %e, "refused SDS stream");
            return Err(if e.is_unauthenticated() {
                Status::unauthenticated(e.to_string())
            } else {
                Status::unavailable(e.to_string())
            });
        }
        let key = ResourceKey::new(ResourceType::Dataplane, Some(&node.mesh), &node.name);
        match self.shared.manager.get(&key).await {
            Ok(_) => Ok(node),
            Err(ManagerError::Store(StoreError::NotFound(_))) => Err(dataplane_not_found(&node)),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

fn dataplane_not_found(node: &NodeId) -> Status {
    Status::not_found(format!(
        "Dataplane {:?} in mesh {:?} does not exist",
        node.name, node.mesh
    ))
}

/// The token in a request's `authorization` metadata.
fn token_of<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get(SDS_TOKEN_METADATA)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SecretDiscoveryService for SdsServer {
    type DeltaSecretsStream = ResponseStream<DeltaDiscoveryResponse>;
    type StreamSecretsStream = ResponseStream<DiscoveryResponse>;

    async fn delta_secrets(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented(
            "incremental (delta) SDS is not supported: use the state-of-the-world StreamSecrets (api_type GRPC)",
        ))
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        self.shared.start_events(self.stop.clone());
        let token = token_of(&request);
        let (tx, rx) = mpsc::channel(4);
        let server = self.clone();
        let id = self.shared.streams.fetch_add(1, Ordering::Relaxed) + 1;
        tokio::spawn(async move {
            server.drive(id, token, request.into_inner(), tx).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let token = token_of(&request);
        let request = request.into_inner();
        let node = self.open(token.as_deref(), &request).await?;
        let names: BTreeSet<String> = request.resource_names.into_iter().collect();
        let mut warned = BTreeSet::new();
        match secrets(&self.shared, &node, &names, &mut warned).await? {
            Some(content) => Ok(Response::new(DiscoveryResponse {
                version_info: content.version,
                resources: content.resources,
                type_url: SECRET_TYPE_URL.into(),
                nonce: "1".into(),
                ..Default::default()
            })),
            None => Err(Status::failed_precondition(format!(
                "no secret to serve for {:?} in mesh {:?}: mTLS is off or the mesh's CA cannot be loaded",
                node.name, node.mesh
            ))),
        }
    }
}

/// What a stream sends: the requested secrets it knows, and their version.
struct Content {
    version: String,
    resources: Vec<Any>,
    /// When the identity in it is due for rotation.
    rotate_at: Option<Instant>,
}

fn inline(bytes: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(Specifier::InlineBytes(bytes.as_bytes().to_vec())),
        ..Default::default()
    })
}

/// The `kuma.io/service` values of a Dataplane's inbounds (or gateway).
fn services_of(spec: &DataplaneSpec) -> Vec<String> {
    let set: BTreeSet<String> = spec
        .tag_sets()
        .iter()
        .filter_map(|t| t.get(SERVICE_TAG).cloned())
        .collect();
    set.into_iter().collect()
}

/// The content for `names`, or `None` when there is nothing to send
/// (mTLS off, CA not loadable, no known name). An error ends the stream.
async fn secrets(
    shared: &Shared,
    node: &NodeId,
    names: &BTreeSet<String>,
    warned: &mut BTreeSet<String>,
) -> Result<Option<Content>, Status> {
    for unknown in names
        .iter()
        .filter(|n| *n != IDENTITY_CERT_SECRET && *n != MESH_CA_SECRET)
    {
        if warned.insert(unknown.clone()) {
            warn!(node = %node, secret = %unknown, "unknown SDS secret requested: only identity_cert and mesh_ca are served; leaving it out");
        }
    }
    let wants_identity = names.contains(IDENTITY_CERT_SECRET);
    if !wants_identity && !names.contains(MESH_CA_SECRET) {
        return Ok(None);
    }
    let manager = &shared.manager;
    let mesh_res = match manager
        .get(&ResourceKey::new(ResourceType::Mesh, None, &node.mesh))
        .await
    {
        Ok(m) => m,
        Err(ManagerError::Store(StoreError::NotFound(_))) => {
            return Err(Status::not_found(format!(
                "mesh {:?} does not exist",
                node.mesh
            )));
        }
        Err(e) => return Err(Status::unavailable(e.to_string())),
    };
    let Some(mesh) = mesh_res.spec_as::<MeshSpec>() else {
        return Ok(None);
    };
    let Some(backend) = mesh.enabled_ca() else {
        debug!(node = %node, "mTLS is off in the mesh: no secret to send");
        return Ok(None);
    };
    let issuer = match pki::load_mesh_issuer(manager.store().as_ref(), &node.mesh, mesh).await {
        Ok(Some(i)) => i,
        Ok(None) => return Ok(None),
        Err(e) => {
            warn!(node = %node, mesh = %node.mesh, error = %e, "cannot load the mesh CA: no secret to send");
            return Ok(None);
        }
    };
    let mut resources = Vec::new();
    let mut rotate_at = None;
    let mut hasher = DefaultHasher::new();
    for name in names {
        let secret = match name.as_str() {
            IDENTITY_CERT_SECRET => {
                let key = ResourceKey::new(ResourceType::Dataplane, Some(&node.mesh), &node.name);
                let dp = match manager.get(&key).await {
                    Ok(dp) => dp,
                    Err(ManagerError::Store(StoreError::NotFound(_))) => {
                        return Err(dataplane_not_found(node));
                    }
                    Err(e) => return Err(Status::unavailable(e.to_string())),
                };
                let services = dp
                    .spec_as::<DataplaneSpec>()
                    .map(services_of)
                    .unwrap_or_default();
                let validity = pki::dp_cert_validity(backend);
                let identity = match shared.identity(node, &issuer, services, validity) {
                    Ok(i) => i,
                    Err(e) => {
                        warn!(node = %node, error = %e, "cannot issue the proxy's certificate");
                        continue;
                    }
                };
                rotate_at = Some(identity.rotate_at);
                Secret {
                    name: name.clone(),
                    r#type: Some(SecretType::TlsCertificate(TlsCertificate {
                        certificate_chain: inline(&identity.cert.cert_pem),
                        private_key: inline(&identity.cert.key_pem),
                        ..Default::default()
                    })),
                }
            }
            MESH_CA_SECRET => Secret {
                name: name.clone(),
                r#type: Some(SecretType::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: inline(issuer.ca_cert_pem()),
                        ..Default::default()
                    },
                )),
            },
            _ => continue,
        };
        let value = secret.encode_to_vec();
        value.hash(&mut hasher);
        resources.push(Any {
            type_url: SECRET_TYPE_URL.into(),
            value,
        });
    }
    if resources.is_empty() {
        return Ok(None);
    }
    Ok(Some(Content {
        version: format!("{:016x}", hasher.finish()),
        resources,
        rotate_at,
    }))
}

/// One stream's protocol state.
struct SecretStream {
    shared: Arc<Shared>,
    node: NodeId,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    names: BTreeSet<String>,
    nonce: u64,
    last_nonce: String,
    sent_version: Option<String>,
    warned: BTreeSet<String>,
    rotate_at: Option<Instant>,
}

impl SecretStream {
    /// Handles a request; `Err` ends the stream with that status.
    async fn on_request(&mut self, req: DiscoveryRequest) -> Result<(), Status> {
        if !req.type_url.is_empty() && req.type_url != SECRET_TYPE_URL {
            return Err(Status::invalid_argument(format!(
                "type {:?} is not served here: the SDS server serves {SECRET_TYPE_URL}",
                req.type_url
            )));
        }
        if !req.response_nonce.is_empty() {
            if req.response_nonce != self.last_nonce {
                return Ok(()); // stale: answered by a later response already
            }
            match &req.error_detail {
                Some(err) => warn!(
                    node = %self.node,
                    version = self.sent_version.as_deref().unwrap_or_default(),
                    error = %err.message,
                    "proxy rejected secrets"
                ),
                None => {
                    debug!(node = %self.node, version = %req.version_info, "proxy accepted secrets")
                }
            }
        }
        let names: BTreeSet<String> = req.resource_names.into_iter().collect();
        if names != self.names || self.sent_version.is_none() {
            self.names = names;
            self.push().await?;
        }
        Ok(())
    }

    /// Sends the current content if its version differs from the last one
    /// sent (a NACKed version is therefore not sent again).
    async fn push(&mut self) -> Result<(), Status> {
        let content = secrets(&self.shared, &self.node, &self.names, &mut self.warned).await?;
        let Some(content) = content else {
            self.rotate_at = None;
            return Ok(());
        };
        self.rotate_at = content.rotate_at;
        if self.sent_version.as_deref() == Some(content.version.as_str()) {
            return Ok(());
        }
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let response = DiscoveryResponse {
            version_info: content.version.clone(),
            resources: content.resources,
            type_url: SECRET_TYPE_URL.into(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        debug!(node = %self.node, version = %content.version, "sending secrets");
        self.sent_version = Some(content.version);
        self.last_nonce = nonce;
        self.tx
            .send(Ok(response))
            .await
            .map_err(|_| Status::cancelled("the proxy hung up"))
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl SdsServer {
    /// Runs one stream from its first request to its end.
    async fn drive(
        self,
        id: u64,
        token: Option<String>,
        mut inbound: Streaming<DiscoveryRequest>,
        tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    ) {
        let first = match inbound.message().await {
            Ok(Some(r)) => r,
            _ => return,
        };
        let node = match self.open(token.as_deref(), &first).await {
            Ok(n) => n,
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
        };
        drop(token);
        let shared = self.shared.clone();
        // Watches first, content second: no change falls in between.
        let mesh_key = WatchKey::Mesh(node.mesh.clone());
        let dp_key = WatchKey::Dataplane(node.clone());
        let mut mesh_rx = shared.watch(mesh_key.clone());
        let mut dp_rx = shared.watch(dp_key.clone());
        debug!(node = %node, stream = id, "SDS stream opened");
        let mut stream = SecretStream {
            shared: shared.clone(),
            node,
            tx,
            names: BTreeSet::new(),
            nonce: 0,
            last_nonce: String::new(),
            sent_version: None,
            warned: BTreeSet::new(),
            rotate_at: None,
        };
        let mut stop = self.stop.clone();
        let mut result = stream.on_request(first).await;
        while result.is_ok() {
            result = tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => stream.on_request(req).await,
                    Ok(None) => break,
                    Err(e) => {
                        debug!(node = %stream.node, error = %e, "SDS stream error");
                        break;
                    }
                },
                changed = mesh_rx.changed() => match changed {
                    Ok(()) => stream.push().await,
                    Err(_) => break,
                },
                changed = dp_rx.changed() => match changed {
                    Ok(()) => stream.push().await,
                    Err(_) => break,
                },
                () = sleep_until(stream.rotate_at) => stream.push().await,
                () = stopped(&mut stop) => Err(Status::unavailable("the control plane is shutting down")),
            };
        }
        if let Err(status) = result
            && status.code() != tonic::Code::Cancelled
        {
            let _ = stream.tx.send(Err(status)).await;
        }
        debug!(node = %stream.node, stream = id, "SDS stream closed");
        drop((mesh_rx, dp_rx));
        shared.release(&mesh_key);
        shared.release(&dp_key);
    }
}
