//! The SDS server (`sdsServer.grpcPort`, 5677): proxy certificates for mesh
//! mTLS (see `docs/security.md`).
//!
//! State-of-the-world `StreamSecrets` only (`DeltaSecrets` answers
//! `UNIMPLEMENTED`; `FetchSecrets` answers once). A stream runs on the xDS
//! stream core ([`crate::stream`]), with the certificate state below as its
//! [`ResourceSource`]. Per stream:
//!
//! - the first request names the node (`<mesh>.<name>`); the dataplane token
//!   in the `authorization` gRPC metadata (with or without `Bearer `) is
//!   checked with [`DataplaneAuth`] ([`crate::stream::Client::identify`]): a
//!   refused token ends the stream with `UNAUTHENTICATED` and the check's
//!   message (never the token); a proxy with no Dataplane gets `NOT_FOUND`;
//!   a stored Dataplane the token does not allow (its name, type or tags,
//!   [`kuma_core::tokens::TokenClaims::authorize`]) gets `PERMISSION_DENIED`,
//!   when the stream opens and again before every identity is issued, so no
//!   certificate ever names a service the token does not allow;
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
use crate::generate::names::{IDENTITY_CERT_SECRET, MESH_CA_SECRET};
use crate::stream::client::authorize_claims;
use crate::stream::{
    self, AckTracker, Client, ClientStream, Credentials, Nonces, Reply, ResourceSource, Service,
    Sink, StreamLimits, Watch, hung_up, stopped,
};
use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::config::core::v3::Node;
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
use kuma_core::tokens::{DataplaneAuth, TokenClaims};
use prost::Message;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
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
    limits: StreamLimits,
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
    watchers: Arc<Watchers>,
    events_started: Once,
}

/// Change counters per [`WatchKey`].
type Watchers = Mutex<HashMap<WatchKey, watch::Sender<u64>>>;

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

fn subscribe(watchers: &Watchers, key: WatchKey) -> watch::Receiver<u64> {
    lock(watchers)
        .entry(key)
        .or_insert_with(|| watch::channel(0).0)
        .subscribe()
}

/// One stream's watch on its secrets: the mesh's CA, the proxy's Dataplane
/// and the rotation of its certificate. Dropping it forgets the counters no
/// other stream waits on.
pub(crate) struct SecretWatch {
    watchers: Arc<Watchers>,
    mesh_key: WatchKey,
    dp_key: WatchKey,
    mesh_rx: watch::Receiver<u64>,
    dp_rx: watch::Receiver<u64>,
    /// When the identity last sent is due for rotation.
    rotate_at: Option<Instant>,
}

impl Watch for SecretWatch {
    async fn wait(&mut self) -> bool {
        tokio::select! {
            changed = self.mesh_rx.changed() => changed.is_ok(),
            changed = self.dp_rx.changed() => changed.is_ok(),
            () = sleep_until(self.rotate_at) => true,
        }
    }
}

impl Drop for SecretWatch {
    fn drop(&mut self) {
        // The receivers go after this; a counter is released when only
        // this stream's receiver is left.
        let mut w = lock(&self.watchers);
        for key in [&self.mesh_key, &self.dp_key] {
            if w.get(key).is_some_and(|tx| tx.receiver_count() <= 1) {
                w.remove(key);
            }
        }
    }
}

/// The certificate state is where SDS streams get their secrets.
impl ResourceSource for Shared {
    type Watch = SecretWatch;

    fn watch(&self, node: &NodeId) -> SecretWatch {
        let mesh_key = WatchKey::Mesh(node.mesh.clone());
        let dp_key = WatchKey::Dataplane(node.clone());
        SecretWatch {
            mesh_rx: subscribe(&self.watchers, mesh_key.clone()),
            dp_rx: subscribe(&self.watchers, dp_key.clone()),
            watchers: self.watchers.clone(),
            mesh_key,
            dp_key,
            rotate_at: None,
        }
    }
}

impl Shared {
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
                watchers: Arc::new(Mutex::new(HashMap::new())),
                events_started: Once::new(),
            }),
            stop: None,
            limits: StreamLimits::default(),
        }
    }

    /// What one stream may take: its first request's deadline and the
    /// largest request message (default [`StreamLimits::default`]).
    pub fn with_limits(mut self, limits: StreamLimits) -> Self {
        self.limits = limits;
        self
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
        let max = self.limits.max_request_bytes;
        SecretDiscoveryServiceServer::new(self).max_decoding_message_size(max)
    }
}

impl Shared {
    /// Admits an authenticated client whose Dataplane exists and is allowed
    /// by its token ([`Client::authorize`]); else the status to end the
    /// stream with.
    async fn admit(&self, client: &Client) -> Result<(), Status> {
        let node = &client.node;
        let key = ResourceKey::new(ResourceType::Dataplane, Some(&node.mesh), &node.name);
        match self.manager.get(&key).await {
            Ok(dp) => match dp.spec_as::<DataplaneSpec>() {
                Some(spec) => client.authorize(spec, SdsStreams::NAME),
                None => Err(Status::internal(
                    "the stored Dataplane has no Dataplane spec",
                )),
            },
            Err(ManagerError::Store(StoreError::NotFound(_))) => Err(dataplane_not_found(node)),
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
        let credentials = Credentials::from_metadata(&self.shared.auth, request.metadata());
        // Bounded: when full, the stream's task waits for tonic to take a
        // response, i.e. for the proxy to read.
        let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
        let streams = SdsStreams {
            shared: self.shared.clone(),
        };
        let id = self.shared.streams.fetch_add(1, Ordering::Relaxed) + 1;
        let stop = self.stop.clone();
        let first_request_timeout = self.limits.first_request_timeout;
        tokio::spawn(async move {
            stream::run(
                &streams,
                id,
                credentials,
                request.into_inner(),
                tx,
                stop,
                first_request_timeout,
            )
            .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let credentials = Credentials::from_metadata(&self.shared.auth, request.metadata());
        let request = request.into_inner();
        let client = Client::identify(request.node.as_ref(), credentials, SdsStreams::NAME).await?;
        self.shared.admit(&client).await?;
        let claims = client.claims;
        let node = client.node;
        let names: BTreeSet<String> = request.resource_names.into_iter().collect();
        let mut warned = BTreeSet::new();
        match secrets(&self.shared, &node, claims.as_deref(), &names, &mut warned).await? {
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
/// (mTLS off, CA not loadable, no known name). An error ends the stream;
/// so does a stored Dataplane the client's token (`claims`) does not allow:
/// the identity is issued only for services the token allows, checked on
/// every issue since the stored Dataplane can change.
async fn secrets(
    shared: &Shared,
    node: &NodeId,
    claims: Option<&TokenClaims>,
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
                let spec = dp.spec_as::<DataplaneSpec>().ok_or_else(|| {
                    Status::internal("the stored Dataplane has no Dataplane spec")
                })?;
                authorize_claims(claims, node, spec, SdsStreams::NAME)?;
                let services = services_of(spec);
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

/// Responses a stream may queue before its task waits for tonic to take
/// them.
const RESPONSE_QUEUE: usize = 4;

/// Where an SDS stream's responses go: tonic's response stream.
type SecretSender = mpsc::Sender<Result<DiscoveryResponse, Status>>;

impl Sink for SecretSender {
    async fn end(&self, status: Status) {
        let _ = self.send(Err(status)).await;
    }
}

/// The SDS streams of one server: a [`Service`] of the stream core.
struct SdsStreams {
    shared: Arc<Shared>,
}

impl Service for SdsStreams {
    type Request = DiscoveryRequest;
    type Sink = SecretSender;
    type Stream = SecretStream;

    const NAME: &'static str = "SDS";

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    async fn open(
        &self,
        client: Client,
        _node: &Node,
        stream: u64,
    ) -> Result<SecretStream, Status> {
        self.shared.admit(&client).await?;
        // Watches first, content second: no change falls in between.
        let watch = ResourceSource::watch(&*self.shared, &client.node);
        debug!(node = %client.node, stream, "SDS stream opened");
        Ok(SecretStream {
            shared: self.shared.clone(),
            claims: client.claims,
            node: client.node,
            watch,
            names: BTreeSet::new(),
            nonces: Nonces::default(),
            acks: AckTracker::default(),
            warned: BTreeSet::new(),
        })
    }
}

/// One stream's protocol state.
struct SecretStream {
    shared: Arc<Shared>,
    node: NodeId,
    /// The verified claims of the stream's token (`None`: checks off).
    claims: Option<Arc<TokenClaims>>,
    watch: SecretWatch,
    names: BTreeSet<String>,
    nonces: Nonces,
    acks: AckTracker,
    warned: BTreeSet<String>,
}

impl ClientStream for SecretStream {
    type Request = DiscoveryRequest;
    type Sink = SecretSender;
    type Watch = SecretWatch;

    fn watch(&mut self) -> &mut SecretWatch {
        &mut self.watch
    }

    async fn on_request(&mut self, req: DiscoveryRequest, tx: &SecretSender) -> Result<(), Status> {
        if !req.type_url.is_empty() && req.type_url != SECRET_TYPE_URL {
            return Err(Status::invalid_argument(format!(
                "type {:?} is not served here: the SDS server serves {SECRET_TYPE_URL}",
                req.type_url
            )));
        }
        let error = req.error_detail.as_ref().map(|e| e.message.as_str());
        match self.acks.on_request(&req.response_nonce, error) {
            Reply::Initial => {}
            Reply::Stale => return Ok(()), // answered by a later response already
            Reply::Nack => warn!(
                node = %self.node,
                version = self.acks.sent_version().unwrap_or_default(),
                error = error.unwrap_or_default(),
                "proxy rejected secrets"
            ),
            Reply::Ack => {
                debug!(node = %self.node, version = %req.version_info, "proxy accepted secrets")
            }
        }
        let names: BTreeSet<String> = req.resource_names.into_iter().collect();
        if names != self.names || self.acks.sent_version().is_none() {
            self.names = names;
            self.push(tx).await?;
        }
        Ok(())
    }

    fn on_change(&mut self, tx: &SecretSender) -> impl Future<Output = Result<(), Status>> + Send {
        self.push(tx)
    }

    async fn close(self, stream: u64) {
        debug!(node = %self.node, stream, "SDS stream closed");
    }
}

impl SecretStream {
    /// Sends the current content if its version differs from the last one
    /// sent (a NACKed version is therefore not sent again).
    async fn push(&mut self, tx: &SecretSender) -> Result<(), Status> {
        let content = secrets(
            &self.shared,
            &self.node,
            self.claims.as_deref(),
            &self.names,
            &mut self.warned,
        )
        .await?;
        let Some(content) = content else {
            self.watch.rotate_at = None;
            return Ok(());
        };
        self.watch.rotate_at = content.rotate_at;
        if self.acks.sent_version() == Some(content.version.as_str()) {
            return Ok(());
        }
        let nonce = self.nonces.next_nonce();
        let response = DiscoveryResponse {
            version_info: content.version.clone(),
            resources: content.resources,
            type_url: SECRET_TYPE_URL.into(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        debug!(node = %self.node, version = %content.version, "sending secrets");
        self.acks.sent(content.version, nonce);
        tx.send(Ok(response)).await.map_err(|_| hung_up())
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
