//! Abuse of the real `kuma-cp` binary, each case bounded in count and time
//! (docs/security.md, "Limits"): slowloris on every HTTP port, 1,000
//! silent ADS streams, oversized requests, random bytes to every port.
//! Through all of it the control plane stays ready and serves real
//! clients.
//!
//! Every connection is opened by [`connect`] (HTTP) or [`ads_channel`]
//! (gRPC): the ports that speak TLS are switched there, in one place.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use kuma_testing::{ControlPlane, Dataplane, backend_yaml, free_port, http_get, tls_connect};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// The header-read timeout and first-request timeout the control planes
/// of these tests run with.
const TIMEOUT_SECS: u64 = 2;

/// A control plane with short timeouts, so the tests stay short.
fn start() -> ControlPlane {
    ControlPlane::start(&[
        ("KUMA_LIMITS_HTTP_HEADER_READ_TIMEOUT", "2s"),
        ("KUMA_LIMITS_GRPC_FIRST_REQUEST_TIMEOUT", "2s"),
    ])
}

/// The HTTP ports of a control plane, by name.
fn http_ports(cp: &ControlPlane) -> [(&'static str, u16); 4] {
    [
        ("api", cp.ports.api),
        ("admin", cp.ports.admin),
        ("bootstrap", cp.ports.bootstrap),
        ("diagnostics", cp.ports.diagnostics),
    ]
}

/// A connection to one HTTP port: plain TCP, or TLS on the bootstrap
/// port (the handshake done, so what follows is HTTP).
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn set_read_timeout(&self, timeout: Duration) {
        let socket = match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        };
        socket.set_read_timeout(Some(timeout)).unwrap();
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A connection to the HTTP port `name` (`api`, `admin`, `bootstrap`,
/// `diagnostics`) of a control plane whose CA is in `ca_file`: TLS for the
/// bootstrap port, plain TCP for the others.
fn connect(name: &str, port: u16, ca_file: &Path) -> Conn {
    if name == "bootstrap" {
        Conn::Tls(Box::new(
            tls_connect(port, ca_file).expect("TLS to the bootstrap port"),
        ))
    } else {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).ok();
        Conn::Plain(stream)
    }
}

/// A TLS channel to the ADS port, trusting the control plane's CA (PEM).
async fn ads_channel(port: u16, ca_pem: &str) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .expect("a TLS client configuration")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to ADS")
}

fn assert_ready(cp: &ControlPlane) {
    let start = Instant::now();
    let (status, body) = http_get(&format!("{}/ready", cp.diagnostics));
    assert_eq!(status, 200, "/ready: {body}");
    let (status, body) = http_get(&cp.url("/"));
    assert_eq!(status, 200, "GET /: {body}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

/// Drips a request head one byte every 200 ms (or, with `silent`, sends
/// nothing) until the server closes the connection; how long that took
/// (`None`: still open after 10 s). A silent client of the bootstrap port
/// does not even start the TLS handshake.
fn slowloris(name: &'static str, port: u16, silent: bool, ca_file: &Path) -> Option<Duration> {
    let start = Instant::now();
    let mut stream = if silent && name == "bootstrap" {
        Conn::Plain(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
    } else {
        connect(name, port, ca_file)
    };
    stream.set_read_timeout(Duration::from_millis(200));
    let head = b"GET / HTTP/1.1\r\nHost: cp\r\nX-Slow: ";
    let mut buf = [0u8; 512];
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(10) {
        if !silent {
            let byte = head.get(sent).copied().unwrap_or(b'a');
            if stream.write_all(&[byte]).is_err() {
                return Some(start.elapsed());
            }
            sent += 1;
        }
        match stream.read(&mut buf) {
            // Closed, or answered (an error status) and then closed.
            Ok(_) => return Some(start.elapsed()),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn slowloris_on_every_http_port_is_cut_off_while_others_are_served() {
    let cp = start();
    let mut threads = Vec::new();
    for (name, port) in http_ports(&cp) {
        for i in 0..24 {
            let silent = i % 4 == 0;
            let ca_file = cp.ca_file.clone();
            threads.push((
                name,
                std::thread::spawn(move || slowloris(name, port, silent, &ca_file)),
            ));
        }
    }
    // Meanwhile, normal requests are answered at once.
    std::thread::sleep(Duration::from_millis(500));
    assert_ready(&cp);
    let limit = Duration::from_secs(TIMEOUT_SECS + 2);
    for (name, t) in threads {
        let closed = t.join().unwrap();
        let after = closed.unwrap_or_else(|| panic!("{name}: a slow connection stayed open"));
        assert!(
            after >= Duration::from_millis(TIMEOUT_SECS * 1000 - 300) && after <= limit,
            "{name}: closed after {after:?}"
        );
    }
    assert_ready(&cp);
}

fn node(name: &str) -> Option<Node> {
    Some(Node {
        id: format!("default.{name}"),
        ..Default::default()
    })
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    let value: MetadataValue<_> = token.parse().unwrap();
    req.metadata_mut().insert("authorization", value);
    req
}

const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

fn dataplane_json(name: &str) -> String {
    format!(
        r#"{{"type":"Dataplane","mesh":"default","name":"{name}","networking":{{"address":"127.0.0.1","inbound":[{{"port":18080,"servicePort":18081,"tags":{{"kuma.io/service":"web"}}}}]}}}}"#
    )
}

/// A real client's first answer: a stream as `name` with its token.
async fn first_answer(
    port: u16,
    ca_pem: &str,
    name: &str,
    token: &str,
) -> Result<(), tonic::Status> {
    let mut client = AggregatedDiscoveryServiceClient::new(ads_channel(port, ca_pem).await);
    let (tx, rx) = mpsc::channel(1);
    tx.send(DiscoveryRequest {
        node: node(name),
        type_url: CLUSTER_TYPE.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut responses = client
        .stream_aggregated_resources(with_token(ReceiverStream::new(rx), token))
        .await?
        .into_inner();
    let answer = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer in 10s"))??;
    drop(tx);
    answer
        .map(|_| ())
        .ok_or_else(|| tonic::Status::unknown("stream ended"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_ads_streams_end_and_a_real_proxy_is_served() {
    // The binaries first (a no-op under scripts/test), so that building
    // them does not count against the streams' time.
    let envoy = kuma_testing::envoy_or_skip("a_thousand_silent_ads_streams");
    if envoy.is_some() {
        kuma_testing::kuma_dp_bin();
    }
    let cp = start();
    cp.put("dataplanes", "web-1", &dataplane_json("web-1"));
    let token = cp.issue_token("default", "web-1");
    let port = cp.ports.xds;
    let ca = std::fs::read_to_string(&cp.ca_file).expect("the control plane's CA");

    // 1,000 streams that never send a request: 16 per connection (the
    // default limits.grpc.maxConcurrentStreams), 63 connections.
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..63 {
        let channel = ads_channel(port, &ca).await;
        for _ in 0..16 {
            if silent.len() == 1000 {
                break;
            }
            let channel = channel.clone();
            silent.push(tokio::spawn(async move {
                let mut client = AggregatedDiscoveryServiceClient::new(channel);
                let (tx, rx) = mpsc::channel::<DiscoveryRequest>(1);
                let mut responses = client
                    .stream_aggregated_resources(ReceiverStream::new(rx))
                    .await?
                    .into_inner();
                let ended = tokio::time::timeout(Duration::from_secs(15), responses.message())
                    .await
                    .map_err(|_| tonic::Status::deadline_exceeded("still open after 15s"));
                drop(tx);
                match ended? {
                    Err(status) => Ok::<_, tonic::Status>(status.code()),
                    Ok(_) => Ok(Code::Ok),
                }
            }));
        }
    }
    // While they are open, a real proxy (kuma-dp and Envoy) and a gRPC
    // client get their configuration, and the control plane stays ready.
    let dir = tempfile::tempdir().expect("a temp dir");
    let proxy = envoy.map(|envoy| {
        let started = Instant::now();
        let yaml = backend_yaml("backend-1", free_port(), free_port(), None);
        let dp = tokio::task::block_in_place(|| {
            let mut dp = Dataplane::start(&cp, &envoy, dir.path(), "backend-1", &yaml);
            dp.wait_ready(Duration::from_secs(15));
            dp
        });
        println!(
            "a real proxy was configured {:?} after it started, with 1,000 silent streams open",
            started.elapsed()
        );
        assert!(dp.is_ready());
        dp
    });
    first_answer(port, &ca, "web-1", &token).await.unwrap();
    let cp_ref = &cp;
    tokio::task::block_in_place(|| assert_ready(cp_ref));

    let mut codes = std::collections::BTreeMap::new();
    for s in silent {
        let code = s.await.unwrap().unwrap_or_else(|s| s.code());
        *codes.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    assert_eq!(
        codes,
        std::collections::BTreeMap::from([("DeadlineExceeded".to_string(), 1000)]),
        "how the silent streams ended"
    );
    assert!(
        opened.elapsed() < Duration::from_secs(TIMEOUT_SECS + 10),
        "{:?}",
        opened.elapsed()
    );
    first_answer(port, &ca, "web-1", &token).await.unwrap();
    drop(proxy);
}

/// Sends `head` then `body_len` bytes on a fresh connection to `port`;
/// the status line and body of the answer.
fn raw_request(
    name: &'static str,
    port: u16,
    ca_file: &Path,
    head: &str,
    body_len: usize,
) -> String {
    let mut stream = connect(name, port, ca_file);
    stream.set_read_timeout(Duration::from_secs(10));
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer and close before the whole body is sent.
    let chunk = vec![b'a'; 64 * 1024];
    let mut left = body_len;
    while left > 0 {
        let n = left.min(chunk.len());
        if stream.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_with_the_limit_named() {
    let cp = start();
    let big = 5 * 1024 * 1024;
    let limit = "4194304";
    // Declared too large: refused before the body is read.
    for (name, port, path) in [
        ("api", cp.ports.api, "/meshes/big"),
        ("bootstrap", cp.ports.bootstrap, "/bootstrap"),
        ("admin", cp.ports.admin, "/tokens"),
    ] {
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\nContent-Length: {big}\r\n\r\n"
        );
        let head = if name == "api" {
            head
        } else {
            head.replacen("PUT", "POST", 1)
        };
        let answer = raw_request(name, port, &cp.ca_file, &head, big);
        assert!(answer.starts_with("HTTP/1.1 413"), "{name}: {answer}");
        assert!(answer.contains(limit), "{name}: {answer}");
    }
    // Not declared (chunked): cut off when the handler reads past it.
    let head = "PUT /meshes/big HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut stream = connect("api", cp.ports.api, &cp.ca_file);
    stream.set_read_timeout(Duration::from_secs(10));
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..(big / chunk.len()) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&framed).is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(limit), "{answer}");

    // ADS: a request over limits.grpc.maxMessageBytes ends the stream.
    let ca = std::fs::read_to_string(&cp.ca_file).expect("the control plane's CA");
    let mut client = AggregatedDiscoveryServiceClient::new(ads_channel(cp.ports.xds, &ca).await);
    let (tx, rx) = mpsc::channel(1);
    tx.send(DiscoveryRequest {
        node: node("web-1"),
        type_url: CLUSTER_TYPE.into(),
        resource_names: vec!["x".repeat(big)],
        ..Default::default()
    })
    .await
    .unwrap();
    let status = match client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
    {
        Err(status) => status,
        Ok(resp) => {
            let mut responses = resp.into_inner();
            tokio::time::timeout(Duration::from_secs(10), responses.message())
                .await
                .expect("the stream ends")
                .expect_err("an error status")
        }
    };
    drop(tx);
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(limit), "{status:?}");
    let cp_ref = &cp;
    tokio::task::block_in_place(|| assert_ready(cp_ref));
}

/// Deterministic noise (xorshift), so a failure can be replayed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn random_bytes_to_every_port_do_no_harm() {
    let mut cp = start();
    let mut ports: Vec<(&'static str, u16)> = http_ports(&cp).to_vec();
    ports.extend([
        ("xds", cp.ports.xds),
        ("sds", cp.ports.sds),
        ("dns", cp.ports.dns),
    ]);
    let mut threads = Vec::new();
    for (name, port) in ports.clone() {
        for i in 0..10u64 {
            let ca_file = cp.ca_file.clone();
            threads.push(std::thread::spawn(move || {
                // Noise straight on TCP (into the TLS layer of the TLS
                // ports), and for half of the bootstrap port's connections
                // inside a completed TLS handshake.
                let mut stream = if name == "bootstrap" && i % 2 == 1 {
                    connect(name, port, &ca_file)
                } else {
                    Conn::Plain(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
                };
                stream.set_read_timeout(Duration::from_secs(5));
                let bytes = noise(u64::from(port) * 100 + i, 64 * 1024);
                let _ = stream.write_all(&bytes);
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink);
            }));
        }
    }
    // UDP noise for DNS too.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..100u64 {
        let _ = udp.send_to(&noise(i, 512), ("127.0.0.1", cp.ports.dns));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_ready(&cp);
    assert!(cp.proc.try_wait().is_none(), "kuma-cp exited");
}
