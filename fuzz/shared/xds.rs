// Shared by the `xds` fuzz target and the corpus replay test in
// kuma-xds/tests/fuzz_corpus.rs (both `include!` this file).
//
// The input is a sequence of xDS requests that one client sends on one stream
// to a real, in-process control plane (store, reconciler, ADS and SDS servers
// on a loopback socket):
//
//   byte 0      the stream: 0 state-of-the-world ADS, 1 delta ADS, 2 SDS (mod 3)
//   byte 1      bit 0: give the first request the node `default.web-1` when
//               it has none, so most inputs get past identification
//   then frames [u16 little-endian length][protobuf bytes of one request]
//               (frames that do not decode as the stream's request type are
//               left out: decoding is tonic's and prost's, the handling after
//               it is ours)
//
// Property: whatever a client sends, no server task panics, every response
// carries a nonce not used before on its stream, and afterwards the server
// still answers a well-formed client.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;

/// The cluster type URL, asked for by the liveness check.
pub const XDS_CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// The in-process control plane every input goes to.
struct XdsTarget {
    runtime: tokio::runtime::Runtime,
    ads: tonic::transport::Channel,
    sds: tonic::transport::Channel,
}

static XDS_PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn xds_target() -> &'static XdsTarget {
    static TARGET: std::sync::OnceLock<XdsTarget> = std::sync::OnceLock::new();
    TARGET.get_or_init(|| {
        // A panic in a server task would only end that task: record it.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            XDS_PANICKED.store(true, std::sync::atomic::Ordering::SeqCst);
            previous(info);
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let (ads, sds) = runtime.block_on(start_xds_servers());
        XdsTarget { runtime, ads, sds }
    })
}

async fn start_xds_servers() -> (tonic::transport::Channel, tonic::transport::Channel) {
    use kuma_core::manager::ResourceManager;
    use kuma_core::resource::Resource;
    use kuma_core::store::MemoryStore;
    use std::sync::Arc;

    let store = Arc::new(MemoryStore::new());
    let manager = ResourceManager::new(store.clone());
    for yaml in [
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n",
        "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  \
         inbound:\n  - port: 8080\n    servicePort: 9000\n    tags: {kuma.io/service: web}\n  \
         outbound:\n  - port: 10001\n    tags: {kuma.io/service: backend}\n",
        "type: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  address: 127.0.0.2\n  \
         inbound:\n  - port: 8080\n    servicePort: 9000\n    tags: {kuma.io/service: backend}\n",
    ] {
        manager
            .create(Resource::from_yaml(yaml).expect("a seed resource parses"))
            .await
            .expect("a seed resource is stored");
    }
    let cache = Arc::new(kuma_xds::cache::SnapshotCache::new());
    let (events, events_rx) = kuma_xds::ads::proxy_event_channel();
    tokio::spawn(kuma_xds::reconcile::Reconciler::new(store, cache.clone()).run(events_rx));
    let ads = kuma_xds::ads::AdsServer::new(manager.clone(), cache, events, "fuzz");
    let sds = kuma_xds::sds::SdsServer::new(manager, kuma_core::tokens::DataplaneAuth::Off);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ads.into_service())
            .add_service(sds.into_service())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid endpoint");
    let ads = endpoint.connect().await.expect("connecting to ADS");
    let sds = endpoint.connect().await.expect("connecting to SDS");
    (ads, sds)
}

/// The stream flavours of byte 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdsStream {
    /// State-of-the-world ADS.
    Sotw,
    /// Delta ADS.
    Delta,
    /// State-of-the-world SDS.
    Sds,
}

/// Encodes a corpus entry: the stream, the flags byte and the requests.
pub fn encode_xds_input<M: prost::Message>(
    stream: XdsStream,
    flags: u8,
    requests: &[M],
) -> Vec<u8> {
    let mut out = vec![stream as u8, flags];
    for r in requests {
        let bytes = r.encode_to_vec();
        let len = u16::try_from(bytes.len()).expect("a seed request under 64 KiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

fn xds_frames(data: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let body = &rest[2..];
        let take = len.min(body.len());
        frames.push(&body[..take]);
        rest = &body[take..];
    }
    frames
}

fn web_node() -> Option<Node> {
    Some(Node {
        id: "default.web-1".into(),
        ..Node::default()
    })
}

/// The frames that decode as `R`; with `fill_node`, the first one gets the
/// node `default.web-1` when it has none.
fn xds_requests<R: prost::Message + Default>(
    frames: &[&[u8]],
    fill_node: bool,
    node: impl Fn(&mut R) -> &mut Option<Node>,
) -> Vec<R> {
    let mut requests: Vec<R> = frames.iter().filter_map(|f| R::decode(*f).ok()).collect();
    if fill_node && let Some(first) = requests.first_mut() {
        let n = node(first);
        *n = n.take().or_else(web_node);
    }
    requests
}

/// Sends the requests `data` describes and checks the property above.
pub fn check_xds(data: &[u8]) {
    let target = xds_target();
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let (flags, rest) = rest.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
    let fill_node = flags & 1 == 1;
    let frames = xds_frames(rest);
    target.runtime.block_on(async {
        use envoy_types::pb::envoy::service::discovery::v3::{
            DeltaDiscoveryResponse, DiscoveryResponse,
        };
        let nonces = match kind % 3 {
            0 => {
                let requests =
                    xds_requests(&frames, fill_node, |r: &mut DiscoveryRequest| &mut r.node);
                let mut client = AggregatedDiscoveryServiceClient::new(target.ads.clone());
                let open = |s| async move { client.stream_aggregated_resources(s).await };
                exchange(requests, open, |r: &DiscoveryResponse| r.nonce.clone()).await
            }
            1 => {
                let requests = xds_requests(&frames, fill_node, |r: &mut DeltaDiscoveryRequest| {
                    &mut r.node
                });
                let mut client = AggregatedDiscoveryServiceClient::new(target.ads.clone());
                let open = |s| async move { client.delta_aggregated_resources(s).await };
                exchange(requests, open, |r: &DeltaDiscoveryResponse| r.nonce.clone()).await
            }
            _ => {
                let requests =
                    xds_requests(&frames, fill_node, |r: &mut DiscoveryRequest| &mut r.node);
                let mut client = SecretDiscoveryServiceClient::new(target.sds.clone());
                let open = |s| async move { client.stream_secrets(s).await };
                exchange(requests, open, |r: &DiscoveryResponse| r.nonce.clone()).await
            }
        };
        assert_unique(&nonces);
        assert!(
            !XDS_PANICKED.load(std::sync::atomic::Ordering::SeqCst),
            "a server task panicked (see the panic message above)"
        );
        still_serving(target).await;
    });
}

/// Opens a stream with `open`, sends `requests`, and collects the nonces of
/// the responses until the stream ends or goes quiet. The stream's end
/// status may be any refusal, but never `UNKNOWN` or `INTERNAL`, which is
/// what a server task that died would leave.
async fn exchange<Req, Resp, Open, Fut>(
    requests: Vec<Req>,
    open: Open,
    nonce: impl Fn(&Resp) -> String,
) -> Vec<String>
where
    Req: Send + 'static,
    Open: FnOnce(tokio_stream::wrappers::ReceiverStream<Req>) -> Fut,
    Fut: std::future::Future<
            Output = Result<tonic::Response<tonic::codec::Streaming<Resp>>, tonic::Status>,
        >,
{
    use std::time::Duration;
    let (tx, rx) = tokio::sync::mpsc::channel(requests.len().max(1));
    for r in requests {
        tx.send(r).await.expect("the request channel is open");
    }
    let mut nonces = Vec::new();
    let opened = tokio::time::timeout(
        Duration::from_secs(5),
        open(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .expect("the server answers a new stream within 5 s");
    let mut responses = match opened {
        Ok(r) => r.into_inner(),
        Err(status) => {
            check_status(&status);
            return nonces;
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        // Quiet for a while: the server waits for the client, as it may.
        let quiet = tokio::time::Instant::now() + Duration::from_millis(150);
        match tokio::time::timeout_at(quiet.min(deadline), responses.message()).await {
            Err(_) => break,
            Ok(Ok(Some(r))) => nonces.push(nonce(&r)),
            Ok(Ok(None)) => break,
            Ok(Err(status)) => {
                check_status(&status);
                break;
            }
        }
    }
    drop(tx);
    nonces
}

fn check_status(status: &tonic::Status) {
    assert!(
        !matches!(status.code(), tonic::Code::Unknown | tonic::Code::Internal),
        "the stream ended with {status:?}"
    );
}

fn assert_unique(nonces: &[String]) {
    let mut seen = std::collections::HashSet::new();
    for n in nonces {
        assert!(!n.is_empty(), "a response without a nonce");
        assert!(seen.insert(n), "nonce {n:?} was sent twice on one stream");
    }
}

/// A well-formed client still gets its clusters.
async fn still_serving(target: &XdsTarget) {
    let mut client = AggregatedDiscoveryServiceClient::new(target.ads.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: "default.backend-1".into(),
            ..Node::default()
        }),
        type_url: XDS_CLUSTER_TYPE.into(),
        ..DiscoveryRequest::default()
    })
    .await
    .expect("the request channel is open");
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        client
            .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("the server accepts a well-formed stream")
            .into_inner()
            .message()
            .await
    })
    .await
    .expect("a well-formed client gets its clusters within 10 s")
    .expect("the stream delivers a response")
    .expect("the stream is not over");
    assert!(!response.resources.is_empty(), "backend-1 got no clusters");
    drop(tx);
}
