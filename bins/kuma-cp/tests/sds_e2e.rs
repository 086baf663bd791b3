//! End to end: the real `kuma-cp` serves SDS over TLS on
//! `sdsServer.grpcPort`, and the bootstrap it hands out lets a client
//! (standing in for Envoy) verify that TLS and fetch the proxy's secrets
//! with its dataplane token.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type as SecretType;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use kuma_testing::{ControlPlane, OWN_TLS, address_of, http_put, try_https_post_json};
use prost::Message;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const YAML: &str = "application/yaml";

/// POST `body` (JSON) -> (status, body).
fn post_json(url: &str, body: &serde_json::Value) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut resp = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string())
        .expect("POST");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().expect("body"))
}

fn server_address(cp: &ControlPlane, server: &str) -> String {
    cp.startup_log
        .iter()
        .find_map(|l| address_of(l, server))
        .unwrap_or_else(|| panic!("no `listening server=\"{server}\"` line"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds_over_tls_serves_a_proxy_its_certificate() {
    // The control plane's own identity: its CA kept in the store.
    sds_through_the_bootstrap(vec![(OWN_TLS.0.into(), OWN_TLS.1.into())]).await;
}

/// With `general.tlsCertFile`/`tlsKeyFile`, SDS presents that certificate
/// and bootstraps trust the last certificate of the file (here the CA of a
/// chain), so they stay valid across control-plane restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds_uses_the_configured_tls_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, server) = kuma_core::pki::generate_server_tls(
        &["localhost".into(), "127.0.0.1".into()],
        Duration::from_secs(3600),
    )
    .unwrap();
    let cert_file = dir.path().join("cp.crt");
    let key_file = dir.path().join("cp.key");
    std::fs::write(&cert_file, format!("{}{}", server.cert_pem, ca.cert_pem)).unwrap();
    std::fs::write(&key_file, &server.key_pem).unwrap();
    let trusted = sds_through_the_bootstrap(vec![
        (
            "KUMA_GENERAL_TLS_CERT_FILE".into(),
            cert_file.display().to_string(),
        ),
        (
            "KUMA_GENERAL_TLS_KEY_FILE".into(),
            key_file.display().to_string(),
        ),
    ])
    .await;
    assert_eq!(trusted.trim(), ca.cert_pem.trim());
}

/// Starts kuma-cp with `env`, enables mTLS, bootstraps a proxy and fetches
/// its secrets over SDS trusting only what the bootstrap says; returns the
/// trusted certificate (PEM).
async fn sds_through_the_bootstrap(env: Vec<(String, String)>) -> String {
    let cp = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ControlPlane::start(&env)
    })
    .await
    .unwrap();
    let sds_addr = server_address(&cp, "sds");
    let bootstrap_url = format!("{}/bootstrap", cp.bootstrap_url());
    let ca_file = cp.ca_file.clone();
    let admin_addr = server_address(&cp, "admin");
    let api = cp.api.clone();

    let setup = tokio::task::spawn_blocking(move || {
        let mesh = "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n";
        let (status, body) = http_put(&format!("{api}/meshes/default"), YAML, mesh.as_bytes());
        assert!(status == 200 || status == 201, "{status} {body}");
        let dp = "type: Dataplane\nmesh: default\nname: dp-1\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 18080\n    servicePort: 18081\n    tags:\n      kuma.io/service: backend\n";
        let (status, body) = http_put(
            &format!("{api}/meshes/default/dataplanes/dp-1"),
            YAML,
            dp.as_bytes(),
        );
        assert_eq!(status, 201, "{body}");
        let (status, token) = post_json(
            &format!("http://{admin_addr}/tokens"),
            &serde_json::json!({"name": "dp-1", "mesh": "default"}),
        );
        assert_eq!(status, 200, "{token}");
        let (status, bootstrap) = try_https_post_json(
            &bootstrap_url,
            &ca_file,
            &serde_json::json!({"mesh": "default", "name": "dp-1", "adminPort": 30001, "dataplaneToken": token}).to_string(),
        )
        .expect("the bootstrap request over TLS");
        assert_eq!(status, 200, "{bootstrap}");
        (token, bootstrap)
    });
    let (token, bootstrap) = setup.await.unwrap();

    // The bootstrap's kuma:sds cluster points at the SDS port over TLS.
    let b: serde_json::Value = serde_yaml_ng::from_str(&bootstrap).unwrap();
    let cluster = b["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kuma:sds")
        .expect("a kuma:sds cluster")
        .clone();
    let socket = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"];
    let sds_port = sds_addr.rsplit(':').next().unwrap();
    assert_eq!(socket["port_value"].to_string(), sds_port);
    let tls = &cluster["transport_socket"]["typed_config"];
    assert_eq!(
        cluster["transport_socket"]["name"],
        "envoy.transport_sockets.tls"
    );
    let ca_pem = tls["common_tls_context"]["validation_context"]["trusted_ca"]["inline_string"]
        .as_str()
        .expect("the SDS CA inline");
    // The host is the IP the bootstrap request was sent to: TLS has no SNI
    // for an IP address, so none is set.
    assert_eq!(socket["address"], "127.0.0.1");
    assert!(tls.get("sni").is_none(), "{tls}");

    // A TLS client trusting only that CA reaches SDS under the name
    // `localhost` and gets the proxy's secrets with its token.
    let channel = Channel::from_shared(format!("https://{sds_addr}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca_pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("TLS connection to SDS");
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: "default.dp-1".into(),
            ..Default::default()
        }),
        resource_names: vec!["identity_cert".into(), "mesh_ca".into()],
        type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("authorization", token.trim().parse().unwrap());
    let mut stream = SecretDiscoveryServiceClient::new(channel)
        .stream_secrets(req)
        .await
        .expect("stream")
        .into_inner();
    let response = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a response in time")
        .expect("no error")
        .expect("a response");
    let secrets: Vec<Secret> = response
        .resources
        .iter()
        .map(|a| Secret::decode(a.value.as_slice()).unwrap())
        .collect();
    assert_eq!(secrets.len(), 2);
    assert!(matches!(
        secrets[0].r#type,
        Some(SecretType::TlsCertificate(_))
    ));
    assert!(matches!(
        secrets[1].r#type,
        Some(SecretType::ValidationContext(_))
    ));
    drop(tx);
    ca_pem.to_string()
}
