//! The SDS server over a real gRPC connection: authentication, the
//! certificate and CA it serves, and pushes on rotation and on change.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type as SecretType;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use kuma_core::manager::ResourceManager;
use kuma_core::pki;
use kuma_core::resource::{Resource, ResourceKey, ResourceType, SecretSpec};
use kuma_core::store::MemoryStore;
use kuma_core::tokens::{DataplaneAuth, DataplaneTokens, TokenRequest, TokenTags};
use kuma_xds::sds::{SECRET_TYPE_URL, SdsServer};
use prost::Message;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Channel;
use tonic::{Code, Request, Streaming};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

const WAIT: Duration = Duration::from_secs(10);

fn mesh(mtls: &str) -> Resource {
    Resource::from_yaml(&format!("type: Mesh\nname: demo\n{mtls}")).unwrap()
}

fn builtin(expiration: &str) -> String {
    format!(
        "mtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation:\n        expiration: {expiration}\n"
    )
}

fn dataplane(services: &[&str]) -> Resource {
    let mut yaml =
        "type: Dataplane\nmesh: demo\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n"
            .to_string();
    for (i, s) in services.iter().enumerate() {
        yaml += &format!(
            "  - port: {}\n    servicePort: 9000\n    tags:\n      kuma.io/service: {s}\n",
            8080 + i
        );
    }
    Resource::from_yaml(&yaml).unwrap()
}

struct Cp {
    manager: ResourceManager,
    addr: SocketAddr,
    _stop: watch::Sender<bool>,
}

async fn start(mtls: &str, tokens: bool) -> Cp {
    let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
    manager.create(mesh(mtls)).await.unwrap();
    manager.create(dataplane(&["web"])).await.unwrap();
    let auth = if tokens {
        DataplaneAuth::Tokens(DataplaneTokens::new(manager.clone()))
    } else {
        DataplaneAuth::Off
    };
    let (stop_tx, stop) = watch::channel(false);
    let sds = SdsServer::new(manager.clone(), auth).with_shutdown(stop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server_stop = stop;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(sds.into_service())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                let _ = server_stop.wait_for(|s| *s).await;
            }),
    );
    Cp {
        manager,
        addr,
        _stop: stop_tx,
    }
}

async fn client(addr: SocketAddr) -> SecretDiscoveryServiceClient<Channel> {
    SecretDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

fn request(names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: "demo.web-1".into(),
            ..Default::default()
        }),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        type_url: SECRET_TYPE_URL.into(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

/// A client stream: the sender of requests and the responses.
struct Stream {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

async fn open(
    addr: SocketAddr,
    token: Option<&str>,
    names: &[&str],
) -> Result<Stream, tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(request(names, "", "")).await.unwrap();
    let mut req = Request::new(ReceiverStream::new(rx));
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let rx = client(addr).await.stream_secrets(req).await?.into_inner();
    Ok(Stream { tx, rx })
}

impl Stream {
    async fn next(&mut self) -> Result<DiscoveryResponse, tonic::Status> {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("a response in time")
            .map(|m| m.expect("stream still open"))
    }

    /// Asserts that nothing arrives for a while.
    async fn assert_silent(&mut self, why: &str) {
        assert!(
            tokio::time::timeout(Duration::from_millis(300), self.rx.message())
                .await
                .is_err(),
            "{why}"
        );
    }

    async fn ack(&self, r: &DiscoveryResponse, names: &[&str]) {
        self.tx
            .send(request(names, &r.version_info, &r.nonce))
            .await
            .unwrap();
    }
}

fn secrets(r: &DiscoveryResponse) -> Vec<Secret> {
    assert_eq!(r.type_url, SECRET_TYPE_URL);
    r.resources
        .iter()
        .map(|a| {
            assert_eq!(a.type_url, SECRET_TYPE_URL);
            Secret::decode(a.value.as_slice()).unwrap()
        })
        .collect()
}

fn inline(ds: &Option<envoy_types::pb::envoy::config::core::v3::DataSource>) -> String {
    match ds.as_ref().and_then(|d| d.specifier.as_ref()) {
        Some(Specifier::InlineBytes(b)) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("expected inline bytes, got {other:?}"),
    }
}

/// (certificate PEM, key PEM) of an `identity_cert` secret.
fn identity(s: &Secret) -> (String, String) {
    assert_eq!(s.name, "identity_cert");
    match &s.r#type {
        Some(SecretType::TlsCertificate(t)) => {
            (inline(&t.certificate_chain), inline(&t.private_key))
        }
        other => panic!("expected a TLS certificate, got {other:?}"),
    }
}

fn der(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .unwrap()
        .1
        .contents
}

/// (URI SANs, serial hex) of a certificate.
fn sans_and_serial(cert_pem: &str) -> (Vec<String>, String) {
    let der = der(cert_pem);
    let (_, x509) = X509Certificate::from_der(&der).unwrap();
    let uris = x509
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    (uris, x509.raw_serial_as_string())
}

async fn builtin_ca_pem(manager: &ResourceManager) -> String {
    let key = ResourceKey::new(
        ResourceType::Secret,
        Some("demo"),
        &pki::builtin_ca_cert_secret("demo", "ca-1"),
    );
    let secret = manager.get(&key).await.unwrap();
    String::from_utf8(secret.spec_as::<SecretSpec>().unwrap().bytes()).unwrap()
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused() {
    let cp = start(&builtin("1d"), true).await;
    let status = match open(cp.addr, None, &["identity_cert"]).await {
        Ok(mut s) => s.next().await.unwrap_err(),
        Err(s) => s,
    };
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("missing"), "{}", status.message());

    let tokens = DataplaneTokens::new(cp.manager.clone());
    let other = tokens
        .issue(&TokenRequest {
            name: "web-2".into(),
            mesh: "demo".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let status = match open(cp.addr, Some(&other), &["identity_cert"]).await {
        Ok(mut s) => s.next().await.unwrap_err(),
        Err(s) => s,
    };
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("web-2"), "{}", status.message());
    assert!(!status.message().contains(&other));

    let good = tokens
        .issue(&TokenRequest {
            name: "web-1".into(),
            mesh: "demo".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut s = open(cp.addr, Some(&good), &["identity_cert"])
        .await
        .unwrap();
    let r = s.next().await.unwrap();
    assert_eq!(secrets(&r).len(), 1);
}

#[tokio::test]
async fn serves_the_proxy_identity_and_the_mesh_ca() {
    let cp = start(&builtin("1d"), false).await;
    let mut s = open(cp.addr, None, &["identity_cert", "mesh_ca", "bogus"])
        .await
        .unwrap();
    let r = s.next().await.unwrap();
    assert!(!r.version_info.is_empty() && !r.nonce.is_empty());
    let got = secrets(&r);
    // The unknown name is left out; the known ones come sorted by name.
    assert_eq!(got.len(), 2, "{got:?}");
    let (cert, key) = identity(&got[0]);
    assert!(key.contains("BEGIN PRIVATE KEY"));
    let (uris, _) = sans_and_serial(&cert);
    assert_eq!(uris, ["spiffe://demo/web"]);
    let ca_pem = builtin_ca_pem(&cp.manager).await;
    assert_eq!(got[1].name, "mesh_ca");
    match &got[1].r#type {
        Some(SecretType::ValidationContext(v)) => assert_eq!(inline(&v.trusted_ca), ca_pem),
        other => panic!("{other:?}"),
    }
    // Signed by the mesh CA.
    let ca_der = der(&ca_pem);
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let leaf_der = der(&cert);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    leaf.verify_signature(Some(ca.public_key())).unwrap();

    // ACK: nothing more. A second stream of the same proxy gets the same
    // (cached) certificate.
    s.ack(&r, &["identity_cert", "mesh_ca", "bogus"]).await;
    let mut s2 = open(cp.addr, None, &["identity_cert"]).await.unwrap();
    let r2 = s2.next().await.unwrap();
    assert_eq!(identity(&secrets(&r2)[0]).0, cert);
    s.assert_silent("no response to an ACK").await;

    // The Dataplane's services change: a new certificate is pushed.
    let mut dp = (*cp
        .manager
        .get(&ResourceKey::new(
            ResourceType::Dataplane,
            Some("demo"),
            "web-1",
        ))
        .await
        .unwrap())
    .clone();
    let changed = dataplane(&["web", "admin"]);
    dp.spec = changed.spec;
    cp.manager.update(dp).await.unwrap();
    let r3 = s.next().await.unwrap();
    let (uris, _) = sans_and_serial(&identity(&secrets(&r3)[0]).0);
    assert_eq!(uris, ["spiffe://demo/admin", "spiffe://demo/web"]);
}

#[tokio::test]
async fn rotation_pushes_a_new_certificate() {
    let cp = start(&builtin("3s"), false).await;
    let mut s = open(cp.addr, None, &["identity_cert"]).await.unwrap();
    let r1 = s.next().await.unwrap();
    let (cert1, _) = identity(&secrets(&r1)[0]);
    s.ack(&r1, &["identity_cert"]).await;
    let started = std::time::Instant::now();
    let r2 = s.next().await.unwrap();
    let elapsed = started.elapsed();
    let (cert2, _) = identity(&secrets(&r2)[0]);
    assert_ne!(sans_and_serial(&cert1).1, sans_and_serial(&cert2).1);
    assert_ne!(r1.version_info, r2.version_info);
    // 4/5 of 3 s.
    assert!(
        elapsed >= Duration::from_millis(2000) && elapsed <= Duration::from_millis(3500),
        "{elapsed:?}"
    );
    // A NACK of it is not answered with the same version.
    s.tx.send(DiscoveryRequest {
        error_detail: Some(RpcStatus {
            message: "bad".into(),
            ..Default::default()
        }),
        ..request(&["identity_cert"], &r1.version_info, &r2.nonce)
    })
    .await
    .unwrap();
    s.assert_silent("a NACK is not answered").await;
}

#[tokio::test]
async fn nothing_is_sent_until_the_mesh_enables_mtls() {
    let cp = start("", false).await;
    let mut s = open(cp.addr, None, &["identity_cert", "mesh_ca"])
        .await
        .unwrap();
    s.assert_silent("nothing while mTLS is off").await;
    let mut m = (*cp
        .manager
        .get(&ResourceKey::new(ResourceType::Mesh, None, "demo"))
        .await
        .unwrap())
    .clone();
    m.spec = mesh(&builtin("1d")).spec;
    cp.manager.update(m).await.unwrap();
    let r = s.next().await.unwrap();
    assert_eq!(secrets(&r).len(), 2);

    // Switching to another CA backend pushes certificates from the new CA.
    let (cert1, _) = identity(&secrets(&r)[0]);
    s.ack(&r, &["identity_cert", "mesh_ca"]).await;
    let mut m = (*cp
        .manager
        .get(&ResourceKey::new(ResourceType::Mesh, None, "demo"))
        .await
        .unwrap())
    .clone();
    m.spec = mesh("mtls:\n  enabledBackend: ca-2\n  backends:\n  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n").spec;
    cp.manager.update(m).await.unwrap();
    let r2 = s.next().await.unwrap();
    let got = secrets(&r2);
    assert_ne!(identity(&got[0]).0, cert1);
    let key = ResourceKey::new(
        ResourceType::Secret,
        Some("demo"),
        &pki::builtin_ca_cert_secret("demo", "ca-2"),
    );
    let ca2 = String::from_utf8(
        cp.manager
            .get(&key)
            .await
            .unwrap()
            .spec_as::<SecretSpec>()
            .unwrap()
            .bytes(),
    )
    .unwrap();
    match &got[1].r#type {
        Some(SecretType::ValidationContext(v)) => assert_eq!(inline(&v.trusted_ca), ca2),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unknown_proxies_and_delta_are_refused() {
    let cp = start(&builtin("1d"), false).await;
    let (tx, rx) = mpsc::channel(1);
    let mut req = request(&["identity_cert"], "", "");
    req.node.as_mut().unwrap().id = "demo.nobody".into();
    tx.send(req).await.unwrap();
    let status = match client(cp.addr)
        .await
        .stream_secrets(ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner().message().await.unwrap_err(),
        Err(s) => s,
    };
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    let (_tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(1);
    let status = client(cp.addr)
        .await
        .delta_secrets(ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

    // FetchSecrets answers once.
    let r = client(cp.addr)
        .await
        .fetch_secrets(request(&["mesh_ca"], "", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secrets(&r)[0].name, "mesh_ca");
}

// ---------------------------------------------------------------------------
// A real Envoy, configured by the bootstrap's `kuma:sds` cluster, fetching
// its secrets over TLS with its token, and taking a rotation.

fn envoy_binary() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return Some(p.into());
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/envoy");
    if venv.exists() {
        return Some(venv);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("envoy"))
        .find(|p| p.is_file())
}

/// An SDS config source for `name` through `kuma:sds` with the token.
fn sds_secret(name: &str, token: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "sds_config": {
            "resource_api_version": "V3",
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{
                    "envoy_grpc": {"cluster_name": "kuma:sds"},
                    "initial_metadata": [{"key": "authorization", "value": token}],
                }],
            },
        },
    })
}

/// GET `path` from Envoy's admin: the body (de-chunked).
async fn admin_get(admin: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(admin).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await.ok()?;
    let (head, mut rest) = response.split_once("\r\n\r\n")?;
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(rest.to_string());
    }
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// The serial numbers of the certificates Envoy holds with `uri` as SAN.
fn serials_with_san(certs: &str, uri: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(certs) else {
        return vec![];
    };
    let mut out = vec![];
    for c in v["certificates"].as_array().into_iter().flatten() {
        for chain in c["cert_chain"].as_array().into_iter().flatten() {
            let has = chain["subject_alt_names"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["uri"] == uri);
            if has {
                out.push(
                    chain["serial_number"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    }
    out
}

#[tokio::test]
async fn envoy_gets_and_rotates_its_certificate_through_the_bootstrap_cluster() {
    use kuma_xds::bootstrap::{BootstrapParams, SdsBootstrap, bootstrap};
    let Some(envoy) = envoy_binary() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no Envoy"
        );
        eprintln!("skipped: no Envoy binary (ENVOY_BIN, .venv/bin/envoy or PATH)");
        return;
    };
    // The SDS server over TLS, as kuma-cp serves it, with tokens checked.
    let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
    manager.create(mesh(&builtin("4s"))).await.unwrap();
    manager.create(dataplane(&["web"])).await.unwrap();
    let tokens = DataplaneTokens::new(manager.clone());
    let token = tokens
        .issue(&TokenRequest {
            name: "web-1".into(),
            mesh: "demo".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (ca, server) = pki::generate_server_tls(
        &["localhost".into(), "127.0.0.1".into()],
        Duration::from_secs(3600),
    )
    .unwrap();
    let sds = SdsServer::new(manager.clone(), DataplaneAuth::Tokens(tokens));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sds_port = listener.local_addr().unwrap().port();
    let tls = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(server.cert_pem, server.key_pem),
    );
    tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(sds.into_service())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    // kuma-dp's bootstrap, with a static TLS listener using the two secrets
    // (instead of ADS, which this test does not run).
    let mut b = bootstrap(&BootstrapParams {
        node_id: "demo.web-1".into(),
        service: "web".into(),
        admin_port: 0,
        xds_host: "localhost".into(),
        xds_port: 1,
        xds_ca_pem: None,
        dataplane_resource: None,
        kuma_dp_version: None,
        delta_xds: false,
        dataplane_token: Some(token.clone()),
        sds: Some(SdsBootstrap {
            port: sds_port,
            ca_pem: ca.cert_pem.clone(),
        }),
    });
    let sds_cluster = b["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kuma:sds")
        .cloned()
        .expect("kuma:sds cluster");
    assert_eq!(
        sds_cluster["transport_socket"]["typed_config"]["sni"],
        "localhost"
    );
    b.as_object_mut().unwrap().remove("dynamic_resources");
    b["static_resources"]["listeners"] = serde_json::json!([{
        "name": "inbound",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": "inbound",
                    "cluster": "ads_cluster",
                },
            }],
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": true,
                    "common_tls_context": {
                        "tls_certificate_sds_secret_configs": [sds_secret("identity_cert", &token)],
                        "validation_context_sds_secret_config": sds_secret("mesh_ca", &token),
                    },
                },
            },
        }],
    }]);
    let dir = std::env::temp_dir().join(format!("kuma-sds-envoy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bootstrap.json");
    std::fs::write(&config, serde_json::to_vec(&b).unwrap()).unwrap();
    let admin_file = dir.join("admin");
    let mut child = tokio::process::Command::new(&envoy)
        .arg("-c")
        .arg(&config)
        .arg("--admin-address-path")
        .arg(&admin_file)
        .args(["--disable-hot-restart", "-l", "warning"])
        .arg("--base-id")
        .arg((std::process::id() % 60_000 + 1000).to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Envoy holds a certificate for spiffe://demo/web, then a rotated one
    // (4/5 of 4 s later).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut first: Option<String> = None;
    let rotated = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Envoy did not get (then rotate) its certificate; first serial: {first:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(admin) = std::fs::read_to_string(&admin_file) else {
            continue;
        };
        let Some(certs) = admin_get(admin.trim(), "/certs").await else {
            continue;
        };
        let serials = serials_with_san(&certs, "spiffe://demo/web");
        match (&first, serials.first()) {
            (None, Some(s)) => first = Some(s.clone()),
            (Some(f), Some(s)) if s != f => break s.clone(),
            _ => {}
        }
    };
    assert_ne!(Some(rotated), first);
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A token for `kuma.io/service: web` only (any name).
async fn web_token(manager: &ResourceManager) -> String {
    DataplaneTokens::new(manager.clone())
        .issue(&TokenRequest {
            mesh: "demo".into(),
            tags: TokenTags::from([("kuma.io/service".to_string(), vec!["web".to_string()])]),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// The SPIFFE ids of every `identity_cert` in a response.
fn identity_sans(r: &DiscoveryResponse) -> Vec<String> {
    secrets(r)
        .iter()
        .filter(|s| s.name == "identity_cert")
        .flat_map(|s| sans_and_serial(&identity(s).0).0)
        .collect()
}

/// SDS never issues an identity for a service the token does not allow:
/// a stream of a proxy whose stored Dataplane claims `payments` with a
/// token for `web` is refused at open, and a stream that is up when its
/// Dataplane turns into `payments` is ended instead of being sent a
/// `payments` certificate.
#[tokio::test]
async fn no_identity_for_a_service_the_token_does_not_allow() {
    let cp = start(&builtin("1d"), true).await;
    let token = web_token(&cp.manager).await;

    // Allowed: the stored Dataplane is web.
    let mut s = open(cp.addr, Some(&token), &["identity_cert", "mesh_ca"])
        .await
        .unwrap();
    let r = s.next().await.unwrap();
    assert_eq!(identity_sans(&r), ["spiffe://demo/web"]);
    s.ack(&r, &["identity_cert", "mesh_ca"]).await;

    // The operator turns the Dataplane into payments (and web): the stream
    // ends with PERMISSION_DENIED, and no payments certificate was sent.
    cp.manager
        .upsert(dataplane(&["web", "payments"]))
        .await
        .unwrap();
    let mut responses = Vec::new();
    let status = loop {
        match s.next().await {
            Ok(r) => responses.push(r),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("does not allow kuma.io/service=\"payments\""),
        "{status:?}"
    );
    assert!(!status.message().contains(&token));
    for r in &responses {
        assert!(
            !identity_sans(r).iter().any(|san| san.contains("payments")),
            "a payments identity was sent: {:?}",
            identity_sans(r)
        );
    }

    // A new stream, and a one-shot fetch, are refused outright.
    let status = match open(cp.addr, Some(&token), &["identity_cert"]).await {
        Ok(mut s) => s.next().await.unwrap_err(),
        Err(s) => s,
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let mut fetch = Request::new(request(&["identity_cert"], "", ""));
    fetch
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let status = client(cp.addr)
        .await
        .fetch_secrets(fetch)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Back to web only: the same token gets a web identity again.
    cp.manager.upsert(dataplane(&["web"])).await.unwrap();
    let mut s = open(cp.addr, Some(&token), &["identity_cert"])
        .await
        .unwrap();
    let r = s.next().await.unwrap();
    assert_eq!(identity_sans(&r), ["spiffe://demo/web"]);
}
