//! End to end with real Envoys for mTLS and TrafficPermission: `kuma-cp run`
//! (dataplane tokens on, as by default), a `backend`, a `frontend` and an
//! `other` proxy (`kuma-dp run`), the default mesh switched to a builtin CA,
//! and assertions on the wire:
//!
//! - with the default allow-all permission, frontend -> backend works;
//! - the backend's inbound presents a certificate issued by the mesh CA with
//!   the URI SAN `spiffe://default/backend` (read with a TLS client);
//! - a plain-text client on the backend's inbound port gets nothing from the
//!   app;
//! - without any permission, traffic is denied; a permission frontend ->
//!   backend lets the frontend in and keeps `other` out;
//! - the backend's certificate is rotated (a new serial) while requests flow,
//!   and none of them fails;
//! - a provided CA, uploaded as Secrets through the admin server, replaces
//!   the builtin one: proxies get certificates it issued, traffic flows.
//!
//! Envoy comes from `ENVOY_BIN`, `<workspace>/.venv/bin/envoy` or `PATH`;
//! without one the test is skipped, unless `CI=true`. The harness
//! (kuma-testing) builds kuma-cp if needed.
//!
//! Run: `cargo test -p kuma-dp --test mtls_e2e -- --nocapture`.

use base64::Engine;
use kuma_testing::{
    App, ControlPlane, Dataplane, free_port, try_http_delete, try_http_get, try_http_put_json,
    wait_for,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(30);
/// How long a policy change may take to show on the wire on a loaded
/// 2-core machine.
const APPLIED: Duration = Duration::from_secs(30);
/// Proxy certificates live this long, so the test sees rotations.
const CERT_LIFETIME: &str = "20s";

/// A TLS client's view of the server certificate: records the end-entity
/// certificate and accepts it (the test checks it itself).
#[derive(Debug)]
struct Capture {
    cert: Mutex<Option<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.cert.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The certificate (DER) the TLS server on `port` presents. The client
/// offers no certificate of its own, so the server ends the handshake after
/// sending its certificate; that is all this needs.
fn server_cert(port: u16) -> Result<Vec<u8>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(Capture {
        cert: Mutex::new(None),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let name = ServerName::try_from("backend").map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut sock =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut last_err = None;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            last_err = Some(e.to_string());
            break;
        }
    }
    capture
        .cert
        .lock()
        .unwrap()
        .take()
        .ok_or_else(|| format!("no server certificate ({last_err:?})"))
}

/// (URI SANs, serial in hex, issuer DN) of a DER certificate.
fn describe(der: &[u8]) -> (Vec<String>, String, String) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parsing the certificate");
    let uris = cert
        .subject_alternative_name()
        .expect("reading SANs")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    (uris, cert.raw_serial_as_string(), cert.issuer().to_string())
}

/// The subject DN of a PEM certificate.
fn subject_of_pem(pem: &[u8]) -> String {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).expect("a PEM block");
    let cert = pem.parse_x509().expect("a certificate");
    cert.subject().to_string()
}

/// The subject DN of the mesh CA, read from its Secret on the admin server.
fn mesh_ca_subject(cp: &ControlPlane) -> String {
    let url = format!(
        "{}/meshes/default/secrets/default.ca-builtin-cert-ca-1",
        cp.admin_url()
    );
    let (status, body) = try_http_get(&url).expect("reading the CA secret");
    assert_eq!(status, 200, "GET {url}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("secret JSON");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(v["data"].as_str().expect("secret data"))
        .expect("secret data is base64");
    subject_of_pem(&pem)
}

/// A CA of the user's own (not made by the control plane): (cert, key) PEM.
fn users_ca() -> (String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Acme Test Root CA");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Acme");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), key.serialize_pem())
}

/// Stores `data` as Secret `name` of mesh `default` through the admin server.
fn put_secret(cp: &ControlPlane, name: &str, data: &str) {
    let url = format!("{}/meshes/default/secrets/{name}", cp.admin_url());
    let body = serde_json::json!({
        "type": "Secret",
        "mesh": "default",
        "name": name,
        "data": base64::engine::general_purpose::STANDARD.encode(data),
    });
    let (status, resp) = try_http_put_json(&url, &body.to_string()).expect("PUT secret");
    assert!(status == 200 || status == 201, "PUT {url}: {status} {resp}");
}

fn allowed(outbound: u16) -> bool {
    matches!(kuma_testing::request(outbound), Ok((200, ref b)) if b == "backend-1")
}

#[test]
fn mtls_identity_permissions_and_rotation() {
    let Some(envoy) = kuma_testing::envoy_or_skip("mtls_identity_permissions_and_rotation") else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("kuma-e2e-mtls-")
        .tempdir()
        .expect("creating a temp dir");
    let path = dir.path();
    let cp = ControlPlane::start_in(path, "kuma-cp", None);

    // mTLS on before the proxies start: a builtin CA with short-lived
    // proxy certificates.
    let mesh = format!(
        r#"{{"type":"Mesh","name":"default","mtls":{{"enabledBackend":"ca-1","backends":[{{"name":"ca-1","type":"builtin","dpCert":{{"rotation":{{"expiration":"{CERT_LIFETIME}"}}}}}}]}}}}"#
    );
    let url = format!("{}/meshes/default", cp.api_url());
    let (status, body) = try_http_put_json(&url, &mesh).expect("PUT mesh");
    assert!(status == 200 || status == 201, "PUT {url}: {status} {body}");

    let app = App::start("backend-1");
    let backend_inbound = free_port();
    let yaml = kuma_testing::backend_yaml("backend-1", backend_inbound, app.port, None);
    let mut backend = Dataplane::start(&cp, &envoy, path, "backend-1", &yaml);
    backend.wait_ready(READY);
    let outbound = free_port();
    let yaml =
        kuma_testing::caller_yaml("frontend", "frontend", free_port(), free_port(), outbound);
    let mut frontend = Dataplane::start(&cp, &envoy, path, "frontend", &yaml);
    frontend.wait_ready(READY);
    let other_outbound = free_port();
    let yaml =
        kuma_testing::caller_yaml("other", "other", free_port(), free_port(), other_outbound);
    let mut other = Dataplane::start(&cp, &envoy, path, "other", &yaml);
    other.wait_ready(READY);

    // 1. allow-all: traffic flows from both callers, over mTLS.
    wait_for("frontend -> backend over mTLS", APPLIED, || {
        allowed(outbound).then_some(())
    });
    wait_for("other -> backend over mTLS", APPLIED, || {
        allowed(other_outbound).then_some(())
    });

    // 2. The backend presents its SPIFFE identity, issued by the mesh CA.
    let der = wait_for(
        "the backend's inbound to present a certificate",
        APPLIED,
        || server_cert(backend_inbound).ok(),
    );
    let (uris, first_serial, issuer) = describe(&der);
    assert_eq!(
        uris,
        ["spiffe://default/backend"],
        "URI SANs of the backend"
    );
    assert_eq!(
        issuer,
        mesh_ca_subject(&cp),
        "issuer of the backend's certificate"
    );

    // 3. Plain text on the inbound port never reaches the app.
    let hits = app.hits();
    let plain = kuma_testing::request(backend_inbound);
    assert!(
        !matches!(plain, Ok((200, _))),
        "a plain-text request got through: {plain:?}"
    );
    assert_eq!(app.hits(), hits, "the app saw a plain-text request");

    // 4. No permission: denied.
    let url = format!(
        "{}/meshes/default/traffic-permissions/allow-all-default",
        cp.api_url()
    );
    let (status, body) = try_http_delete(&url).expect("DELETE allow-all");
    assert_eq!(status, 200, "DELETE {url}: {body}");
    wait_for("frontend -> backend to be denied", APPLIED, || {
        (!allowed(outbound)).then_some(())
    });
    let hits = app.hits();
    let t = kuma_testing::send(outbound, 5);
    assert_eq!(t.total_ok(), 0, "denied traffic got through: {t:?}");
    assert_eq!(app.hits(), hits, "the app saw denied requests");

    // 5. frontend -> backend allowed; other still denied.
    cp.put(
        "traffic-permissions",
        "frontend-to-backend",
        r#"{"type":"TrafficPermission","mesh":"default","name":"frontend-to-backend",
            "sources":[{"match":{"kuma.io/service":"frontend"}}],
            "destinations":[{"match":{"kuma.io/service":"backend"}}]}"#,
    );
    wait_for("frontend -> backend to be allowed", APPLIED, || {
        allowed(outbound).then_some(())
    });
    // A connection `other` opened under allow-all may carry one more
    // request while Envoy drains it (kuma-dp runs Envoy with
    // `--drain-strategy immediate`); after that, `other` is refused.
    wait_for("other -> backend to be denied", APPLIED, || {
        (!allowed(other_outbound)).then_some(())
    });
    let t = kuma_testing::send(other_outbound, 5);
    assert_eq!(t.total_ok(), 0, "other got through: {t:?}");
    let t = kuma_testing::send(outbound, 5);
    assert_eq!(t.total_ok(), 5, "frontend was refused: {t:?}");

    // 6. Rotation: requests flow while the backend's certificate changes.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut t = kuma_testing::Tally::default();
            while !stop.load(Ordering::Relaxed) {
                t.add(kuma_testing::request(outbound));
                std::thread::sleep(Duration::from_millis(20));
            }
            t
        })
    };
    let started = Instant::now();
    let rotated = wait_for(
        "the backend's certificate to be rotated",
        Duration::from_secs(60),
        || {
            let (uris, serial, _) = describe(&server_cert(backend_inbound).ok()?);
            (serial != first_serial).then_some((uris, serial))
        },
    );
    // Keep the load on a little after the switch.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let t = load.join().expect("load thread");
    eprintln!(
        "rotation after {:?}: serial {first_serial} -> {}; {} requests, {} failed",
        started.elapsed(),
        rotated.1,
        t.total_ok() + t.errors.len(),
        t.errors.len()
    );
    assert_eq!(
        rotated.0,
        ["spiffe://default/backend"],
        "SANs after rotation"
    );
    assert!(t.total_ok() > 20, "too few requests during rotation: {t:?}");
    assert!(
        t.errors.is_empty(),
        "requests failed during rotation: {:?}",
        t.errors
    );

    // 7. A provided CA, uploaded through the admin server, is switched on.
    let (ca_cert, ca_key) = users_ca();
    put_secret(&cp, "acme-ca-cert", &ca_cert);
    put_secret(&cp, "acme-ca-key", &ca_key);
    let mesh = format!(
        r#"{{"type":"Mesh","name":"default","mtls":{{"enabledBackend":"acme","backends":[
            {{"name":"ca-1","type":"builtin","dpCert":{{"rotation":{{"expiration":"{CERT_LIFETIME}"}}}}}},
            {{"name":"acme","type":"provided","dpCert":{{"rotation":{{"expiration":"1h"}}}},
              "conf":{{"cert":{{"secret":"acme-ca-cert"}},"key":{{"secret":"acme-ca-key"}}}}}}]}}}}"#
    );
    let url = format!("{}/meshes/default", cp.api_url());
    let (status, body) = try_http_put_json(&url, &mesh).expect("PUT mesh");
    assert_eq!(status, 200, "PUT {url}: {body}");
    let acme = subject_of_pem(ca_cert.as_bytes());
    let der = wait_for(
        "the backend to present a certificate of the provided CA",
        APPLIED,
        || {
            let der = server_cert(backend_inbound).ok()?;
            (describe(&der).2 == acme).then_some(der)
        },
    );
    assert_eq!(
        describe(&der).0,
        ["spiffe://default/backend"],
        "SANs under the provided CA"
    );
    wait_for("frontend -> backend under the provided CA", APPLIED, || {
        allowed(outbound).then_some(())
    });
    let t = kuma_testing::send(outbound, 5);
    assert_eq!(t.total_ok(), 5, "frontend under the provided CA: {t:?}");
    let t = kuma_testing::send(other_outbound, 3);
    assert_eq!(
        t.total_ok(),
        0,
        "other got through under the provided CA: {t:?}"
    );
    eprintln!(
        "provided CA {acme}: the backend's certificate is its, frontend allowed, other denied"
    );
    drop((backend, frontend, other));
}
