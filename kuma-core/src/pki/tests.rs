use super::*;
use crate::resource::Resource;
use crate::store::MemoryStore;
use x509_parser::extensions::GeneralName;

const HOUR: Duration = Duration::from_secs(3600);

fn parse(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

fn uris(x509: &X509Certificate<'_>) -> Vec<String> {
    x509.subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A CA valid only between the given offsets from now (seconds).
fn ca_between(from: i64, to: i64) -> CaPem {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let now = OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::seconds(from);
    params.not_after = now + time::Duration::seconds(to);
    let key = new_key().unwrap();
    let cert = params.self_signed(&key).unwrap();
    CaPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

#[test]
fn names() {
    assert_eq!(spiffe_id("m", "web"), "spiffe://m/web");
    assert_eq!(
        builtin_ca_cert_secret("m", "ca-1"),
        "m.ca-builtin-cert-ca-1"
    );
    assert_eq!(builtin_ca_key_secret("m", "ca-1"), "m.ca-builtin-key-ca-1");
}

#[test]
fn generated_ca_is_a_spiffe_root() {
    let ca = generate_ca("demo", 10 * HOUR).unwrap();
    assert!(ca.key_pem.contains("BEGIN PRIVATE KEY"));
    let der = parse(&ca.cert_pem);
    let (_, x509) = X509Certificate::from_der(&der).unwrap();
    assert!(x509.is_ca());
    let ku = x509.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert_eq!(uris(&x509), ["spiffe://demo"]);
    let subject = x509.subject().to_string();
    assert!(subject.contains("O=kuma"), "{subject}");
    assert!(subject.contains("CN=demo"), "{subject}");
    assert!(subject.contains("OU=demo"), "{subject}");
    let left = x509.validity().time_to_expiration().unwrap();
    assert!(left.whole_seconds() > 9 * 3600 && left.whole_seconds() <= 10 * 3600);
    x509.verify_signature(None).unwrap();
    let issuer = Issuer::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
    assert_eq!(issuer.ca_cert_pem(), ca.cert_pem);
    let dbg = format!("{ca:?} {issuer:?}");
    assert!(!dbg.contains("PRIVATE"), "{dbg}");
}

#[test]
fn issued_identity() {
    let ca = generate_ca("demo", 10 * HOUR).unwrap();
    let issuer = Issuer::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
    let services = ["web".to_string(), "api".to_string(), "web".to_string()];
    let before = SystemTime::now();
    let cert = issuer.issue_identity("demo", &services, HOUR).unwrap();
    assert!(!format!("{cert:?}").contains("PRIVATE"));
    assert!(cert.key_pem.contains("BEGIN PRIVATE KEY"));
    let der = parse(&cert.cert_pem);
    let (_, x509) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(uris(&x509), ["spiffe://demo/api", "spiffe://demo/web"]);
    assert!(!x509.is_ca());
    let eku = x509.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let ku = x509.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    assert_eq!(hex(x509.raw_serial()), cert.serial_hex);
    assert_eq!(cert.serial_hex.len(), 32);
    assert!(x509.serial.bits() <= 127);
    assert_eq!(asn1_to_system(x509.validity().not_before), cert.not_before);
    assert_eq!(asn1_to_system(x509.validity().not_after), cert.not_after);
    let skew = before.duration_since(cert.not_before).unwrap();
    assert!(skew >= Duration::from_secs(59) && skew <= Duration::from_secs(61));
    let life = cert.not_after.duration_since(before).unwrap();
    assert!(life >= HOUR - Duration::from_secs(1) && life <= HOUR + Duration::from_secs(1));
    // Signed by the CA.
    let ca_der = parse(&ca.cert_pem);
    let (_, ca_x509) = X509Certificate::from_der(&ca_der).unwrap();
    x509.verify_signature(Some(ca_x509.public_key())).unwrap();
    assert_eq!(x509.issuer(), ca_x509.subject());
    // Serials differ.
    let other = issuer.issue_identity("demo", &services, HOUR).unwrap();
    assert_ne!(other.serial_hex, cert.serial_hex);
    assert_eq!(
        issuer.issue_identity("demo", &[], HOUR).unwrap_err(),
        PkiError::NoServices
    );
}

#[test]
fn issuer_checks() {
    let ca = generate_ca("demo", HOUR).unwrap();
    let other = generate_ca("other", HOUR).unwrap();
    assert_eq!(
        Issuer::from_pem("not pem", &ca.key_pem).unwrap_err(),
        PkiError::CertNotPem
    );
    assert_eq!(
        Issuer::from_pem(&ca.cert_pem, "garbage").unwrap_err(),
        PkiError::KeyNotPem
    );
    assert_eq!(
        Issuer::from_pem(&ca.cert_pem, &other.key_pem).unwrap_err(),
        PkiError::KeyMismatch
    );
    let rsa_label = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    let e = Issuer::from_pem(&ca.cert_pem, rsa_label).unwrap_err();
    assert!(e.to_string().contains("openssl pkcs8"), "{e}");
    assert!(!e.to_string().contains("AAAA"));
    let (_, leaf) = generate_server_tls(&["localhost".into()], HOUR).unwrap();
    assert_eq!(
        Issuer::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err(),
        PkiError::NotCa
    );
    let expired = ca_between(-7200, -3600);
    assert!(matches!(
        Issuer::from_pem(&expired.cert_pem, &expired.key_pem),
        Err(PkiError::Expired(_))
    ));
    let future = ca_between(3600, 7200);
    assert!(matches!(
        Issuer::from_pem(&future.cert_pem, &future.key_pem),
        Err(PkiError::NotYetValid(_))
    ));
    // Key bytes never show in an error.
    let e = Issuer::from_pem(&ca.cert_pem, &other.key_pem).unwrap_err();
    let body: String = other.key_pem.lines().nth(1).unwrap().into();
    assert!(!e.to_string().contains(&body));
}

#[test]
fn validity_out_of_range() {
    assert!(matches!(
        generate_ca("m", Duration::from_secs(u64::MAX)),
        Err(PkiError::ValidityOutOfRange(_))
    ));
}

#[test]
fn server_tls() {
    let sans = [
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "cp.example.com".to_string(),
    ];
    let (ca, leaf) = generate_server_tls(&sans, HOUR).unwrap();
    let ca_der = parse(&ca.cert_pem);
    let (_, ca_x509) = X509Certificate::from_der(&ca_der).unwrap();
    assert!(ca_x509.is_ca());
    let der = parse(&leaf.cert_pem);
    let (_, x509) = X509Certificate::from_der(&der).unwrap();
    x509.verify_signature(Some(ca_x509.public_key())).unwrap();
    let names = &x509
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    let mut dns = vec![];
    let mut ips = vec![];
    for n in names {
        match n {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(ip) => ips.push(ip.len()),
            _ => panic!("unexpected SAN {n:?}"),
        }
    }
    dns.sort();
    ips.sort();
    assert_eq!(dns, ["cp.example.com", "localhost"]);
    assert_eq!(ips, [4, 16]);
    assert!(
        x509.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .server_auth
    );
    assert!(matches!(
        generate_server_tls(&["bäd.example".into()], HOUR),
        Err(PkiError::InvalidSan { .. })
    ));
}

fn mesh_spec(yaml: &str) -> MeshSpec {
    let r = Resource::from_yaml(yaml).unwrap();
    r.validate().unwrap();
    r.spec_as::<MeshSpec>().unwrap().clone()
}

async fn store_with_mesh() -> MemoryStore {
    let store = MemoryStore::new();
    store
        .create(Resource::from_yaml("type: Mesh\nname: m\n").unwrap())
        .await
        .unwrap();
    store
}

async fn put_secret(store: &MemoryStore, name: &str, data: &str) {
    store
        .create(Resource::new(
            Some("m"),
            name,
            SecretSpec::from_bytes(data.as_bytes()),
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn load_builtin() {
    let store = store_with_mesh().await;
    let spec = mesh_spec(
        "type: Mesh\nname: m\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-0\n    type: builtin\n  - name: ca-1\n    type: builtin\n",
    );
    let e = load_mesh_issuer(&store, "m", &spec).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "mtls.backends[1]: secret \"m.ca-builtin-cert-ca-1\" not found"
    );
    let ca = generate_ca("m", HOUR).unwrap();
    put_secret(&store, &builtin_ca_cert_secret("m", "ca-1"), &ca.cert_pem).await;
    put_secret(&store, &builtin_ca_key_secret("m", "ca-1"), &ca.key_pem).await;
    let issuer = load_mesh_issuer(&store, "m", &spec).await.unwrap().unwrap();
    assert_eq!(issuer.ca_cert_pem(), ca.cert_pem);
    let off = mesh_spec("type: Mesh\nname: m\n");
    assert!(load_mesh_issuer(&store, "m", &off).await.unwrap().is_none());
}

#[tokio::test]
async fn load_provided_from_every_kind_of_source() {
    let store = store_with_mesh().await;
    let ca = generate_ca("m", HOUR).unwrap();
    let provided = |cert: &str, key: &str| {
        mesh_spec(&format!(
            "type: Mesh\nname: m\nmtls:\n  enabledBackend: p\n  backends:\n  - name: p\n    type: provided\n    conf:\n      cert:\n        {cert}\n      key:\n        {key}\n"
        ))
    };
    let missing = provided("secret: cert-s", "secret: key-s");
    let e = load_mesh_issuer(&store, "m", &missing).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "mtls.backends[0].conf.cert: secret \"cert-s\" not found"
    );
    put_secret(&store, "cert-s", &ca.cert_pem).await;
    put_secret(&store, "key-s", &ca.key_pem).await;
    load_mesh_issuer(&store, "m", &missing)
        .await
        .unwrap()
        .unwrap();

    let dir = std::env::temp_dir().join(format!("kuma-pki-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert_file = dir.join("ca.pem");
    std::fs::write(&cert_file, &ca.cert_pem).unwrap();
    use base64::Engine as _;
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(&ca.key_pem);
    let spec = provided(
        &format!("file: {}", cert_file.display()),
        &format!("inline: {key_b64}"),
    );
    load_mesh_issuer(&store, "m", &spec).await.unwrap().unwrap();
    let spec = provided(&format!("inlineString: {:?}", ca.cert_pem), "secret: key-s");
    load_mesh_issuer(&store, "m", &spec).await.unwrap().unwrap();

    let other = generate_ca("o", HOUR).unwrap();
    put_secret(&store, "other-key", &other.key_pem).await;
    let spec = provided("secret: cert-s", "secret: other-key");
    let e = load_mesh_issuer(&store, "m", &spec).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "mtls.backends[0].conf.key: private key does not match the certificate's public key"
    );
    let spec = provided("file: /nonexistent/ca.pem", "secret: key-s");
    let e = load_mesh_issuer(&store, "m", &spec).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("mtls.backends[0].conf.cert: cannot read file \"/nonexistent/ca.pem\""),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ca_is_created_once_and_shared() {
    let store: std::sync::Arc<dyn ResourceStore> = std::sync::Arc::new(MemoryStore::new());
    // Replicas starting at once race on the create: all get the same CA.
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { load_or_create_server_ca(&*store, HOUR).await })
        })
        .collect();
    let mut cas = Vec::new();
    for s in starts {
        cas.push(s.await.unwrap().unwrap());
    }
    assert!(
        cas.iter().all(|c| *c == cas[0]),
        "replicas got different CAs"
    );
    // A later start (a restart) reads it back.
    let again = load_or_create_server_ca(&*store, HOUR).await.unwrap();
    assert_eq!(again, cas[0]);

    // Each replica issues its own server certificate from it, for its own
    // names; both chain to the one CA.
    let issuer = Issuer::from_pem(&again.cert_pem, &again.key_pem).unwrap();
    let a = issuer
        .issue_server(&["cp-a.example".into(), "127.0.0.1".into()])
        .unwrap();
    let b = issuer.issue_server(&["cp-b.example".into()]).unwrap();
    assert_ne!(a.cert_pem, b.cert_pem);
    let ca_der = parse(&again.cert_pem);
    let (_, ca_x509) = X509Certificate::from_der(&ca_der).unwrap();
    for (leaf, name) in [(&a, "cp-a.example"), (&b, "cp-b.example")] {
        let der = parse(&leaf.cert_pem);
        let (_, x509) = X509Certificate::from_der(&der).unwrap();
        x509.verify_signature(Some(ca_x509.public_key())).unwrap();
        let dns: Vec<String> = x509
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(dns, [name]);
        assert!(x509.validity().not_after <= ca_x509.validity().not_after);
    }
}

#[tokio::test]
async fn a_broken_stored_server_ca_is_an_error_naming_the_config() {
    let store = MemoryStore::new();
    let other = generate_server_ca(HOUR).unwrap();
    let mismatched = generate_server_ca(HOUR).unwrap();
    for text in [
        "not json".to_string(),
        r#"{"cert": "x"}"#.to_string(),
        serde_json::json!({"cert": other.cert_pem, "key": mismatched.key_pem}).to_string(),
    ] {
        let key = ResourceKey::new(ResourceType::Config, None, SERVER_CA_CONFIG);
        let _ = store.delete(&key).await;
        store
            .create(Resource::new(
                None,
                SERVER_CA_CONFIG,
                ConfigSpec::new(text.clone()),
            ))
            .await
            .unwrap();
        let e = load_or_create_server_ca(&store, HOUR).await.unwrap_err();
        assert!(e.to_string().contains(SERVER_CA_CONFIG), "{text}: {e}");
        assert!(!e.to_string().contains("PRIVATE KEY"), "{e}");
        // Left as it was: never replaced behind the proxies' back.
        let kept = store.get(&key).await.unwrap();
        assert_eq!(kept.spec_as::<ConfigSpec>().unwrap().config, text);
    }
}

#[test]
fn file_data_sources_are_regular_files_of_bounded_size() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("ca.pem");
    std::fs::write(&small, b"-----BEGIN CERTIFICATE-----\n").unwrap();
    assert_eq!(
        read_ca_file(small.to_str().unwrap()).unwrap(),
        b"-----BEGIN CERTIFICATE-----\n"
    );
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'a'; MAX_DATA_SOURCE_FILE as usize + 1]).unwrap();
    let e = read_ca_file(big.to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("larger than 65536"), "{e}");
    let e = read_ca_file(dir.path().to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    // A character device would never end.
    let e = read_ca_file("/dev/zero").unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
}
