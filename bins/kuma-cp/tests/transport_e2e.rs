//! End to end with the real `kuma-cp`: the bootstrap server (5682) and ADS
//! (5678) speak TLS only (see `docs/security.md`, "Transport"). A plaintext
//! bootstrap request and a plaintext (h2c) ADS stream are refused at the
//! TLS handshake; the same requests over TLS trusting the control plane's
//! CA (from the admin server) are served, and the bootstrap's ADS cluster
//! trusts that CA. The admin server refuses a foreign `Host`.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use kuma_testing::{ControlPlane, OWN_TLS, http_get, http_put};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const DATAPLANE: &str = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 18080\n    servicePort: 18081\n    tags:\n      kuma.io/service: web\n";

/// Sends `bytes` on a fresh connection to `port` and reads what comes back
/// until the server closes (at most 15 s).
fn raw_exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(bytes).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server neither answered nor closed: {e}; got {got:?}"),
        }
    }
}

fn bootstrap_body(token: &str) -> String {
    serde_json::json!({
        "mesh": "default", "name": "web-1", "adminPort": 9901,
        "dataplaneToken": token, "dataplaneResource": DATAPLANE,
    })
    .to_string()
}

#[test]
fn plaintext_bootstrap_is_refused_and_tls_is_served() {
    let cp = ControlPlane::start(&[]);
    let token = cp.issue_token("default", "web-1");
    let body = bootstrap_body(&token);
    let request = format!(
        "POST /bootstrap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(cp.ports.bootstrap, request.as_bytes());
    assert!(
        !answer.starts_with(b"HTTP/"),
        "the bootstrap server answered plaintext HTTP: {}",
        String::from_utf8_lossy(&answer)
    );
    // At most a TLS alert record (content type 21) before the close.
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");

    // Over TLS, trusting the control plane's CA: served, and the ADS
    // cluster trusts that same CA.
    let (status, yaml) = cp.bootstrap(&body).expect("the bootstrap over TLS");
    assert_eq!(status, 200, "{yaml}");
    let b: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let ads = b["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ads_cluster")
        .expect("ads_cluster")
        .clone();
    assert_eq!(
        ads["transport_socket"]["name"],
        "envoy.transport_sockets.tls"
    );
    let ca = std::fs::read_to_string(&cp.ca_file).unwrap();
    assert_eq!(
        ads["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
            ["trusted_ca"]["inline_string"]
            .as_str()
            .map(str::trim),
        Some(ca.trim())
    );

    // A server the CA file does not vouch for is refused by the client.
    let other = tempfile::tempdir().unwrap();
    let wrong = other.path().join("wrong.pem");
    let (other_ca, _) =
        kuma_core::pki::generate_server_tls(&["localhost".into()], Duration::from_secs(60))
            .unwrap();
    std::fs::write(&wrong, other_ca.cert_pem).unwrap();
    let err = kuma_testing::try_https_post_json(
        &format!("{}/bootstrap", cp.bootstrap_url()),
        &wrong,
        &body,
    )
    .expect_err("a client trusting another CA got through");
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
}

fn ads_request() -> tonic::Request<tokio_stream::wrappers::ReceiverStream<DiscoveryRequest>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.try_send(DiscoveryRequest {
        node: Some(Node {
            id: "default.web-1".into(),
            ..Default::default()
        }),
        type_url: "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
        ..Default::default()
    })
    .unwrap();
    // Keep the sender alive with the stream: dropping it ends the stream.
    std::mem::forget(tx);
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("authorization", "not-a-token".parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_ads_is_refused_and_tls_is_served() {
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start(&[OWN_TLS]))
        .await
        .unwrap();
    let xds = cp.ports.xds;

    // h2c (gRPC without TLS): the connection is closed at the handshake;
    // the server never gets to answer with a gRPC status.
    let plain = async {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{xds}"))
            .unwrap()
            .connect()
            .await?;
        AggregatedDiscoveryServiceClient::new(channel)
            .stream_aggregated_resources(ads_request())
            .await
            .map(|_| ())
            .map_err(Into::into)
    };
    let plain: Result<(), Box<dyn std::error::Error + Send + Sync>> =
        tokio::time::timeout(Duration::from_secs(20), plain)
            .await
            .expect("the plaintext attempt ended in time");
    match plain {
        Ok(()) => panic!("a plaintext ADS stream was opened"),
        Err(e) => {
            if let Some(status) = e.downcast_ref::<tonic::Status>() {
                assert!(
                    !matches!(status.code(), tonic::Code::Unauthenticated),
                    "the server processed a plaintext stream: {status}"
                );
            }
        }
    }

    // Over TLS trusting the control plane's own CA, as Envoy does: the
    // server answers (here: the token is refused, which proves it read the
    // stream).
    let ca = std::fs::read_to_string(&cp.ca_file).unwrap();
    let channel = Channel::from_shared(format!("https://127.0.0.1:{xds}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("TLS connection to ADS");
    let answer = async {
        let mut stream = AggregatedDiscoveryServiceClient::new(channel)
            .stream_aggregated_resources(ads_request())
            .await?
            .into_inner();
        stream.message().await.map(|_| ())
    };
    let status = tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .expect("an answer in time")
        .expect_err("a stream with a bogus token was served");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    drop(cp);
}

#[test]
fn the_admin_server_checks_host_and_serves_the_ca() {
    let cp = ControlPlane::start(&[]);
    let ca = std::fs::read_to_string(&cp.ca_file).unwrap();
    let (status, served) = http_get(&format!("{}/control-plane/ca-cert", cp.admin));
    assert_eq!(status, 200);
    assert_eq!(served, ca);
    // A rebinding page: its requests name its own host.
    let request = format!(
        "POST /tokens HTTP/1.1\r\nHost: evil.example:{}\r\nContent-Type: application/json\r\nContent-Length: 33\r\nConnection: close\r\n\r\n{{\"name\":\"web-1\",\"mesh\":\"default\"}}",
        cp.ports.admin
    );
    let answer = String::from_utf8(raw_exchange(cp.ports.admin, request.as_bytes())).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("Host header"), "{answer}");
    // A form post (what a cross-origin page can send without a preflight).
    let (status, text) = http_put(
        &format!("{}/meshes/default/secrets/s1", cp.admin),
        "text/plain",
        br#"{"type":"Secret","mesh":"default","name":"s1","data":"eA=="}"#,
    );
    assert_eq!(status, 415, "{text}");
}
