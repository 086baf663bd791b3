// Shared by the `bootstrap` fuzz target and the corpus replay test in
// kuma-xds/tests/fuzz_bootstrap.rs (both `include!` this file).
//
// The bootstrap server (its router, with token checks on) holds mesh
// `default` with the Dataplane `web-1` (service `web`), and one token, for
// `web-1`. The input is what a client posts to `/bootstrap`:
//
//   byte 0 % 2 = 0   the rest of the input is the request body, as is
//   byte 0 % 2 = 1   the rest, split at 0x00, fills a request's fields in
//                    order: mesh, name, adminPort (text), dataplaneResource,
//                    dataplaneToken, where a token field of exactly `@` stands
//                    for the issued token
//
// Property: no panic, never a 5xx, and a bootstrap (200) only for the
// issued token presented for `web-1` of `default` with a Dataplane it
// allows, whose node id is then `default.web-1`.

/// The bootstrap server and the one token it accepts.
struct BootstrapTarget {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    token: String,
}

fn bootstrap_target() -> &'static BootstrapTarget {
    use kuma_core::manager::ResourceManager;
    use kuma_core::resource::Resource;
    use kuma_core::store::MemoryStore;
    use kuma_core::tokens::{DataplaneAuth, DataplaneTokens, TokenRequest};

    static TARGET: std::sync::OnceLock<BootstrapTarget> = std::sync::OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let manager = ResourceManager::new(std::sync::Arc::new(MemoryStore::new()));
        let tokens = DataplaneTokens::new(manager.clone());
        let token = runtime.block_on(async {
            for yaml in [
                "type: Mesh\nname: default\n",
                "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  \
                 inbound:\n  - port: 8080\n    servicePort: 9000\n    tags: {kuma.io/service: web}\n",
            ] {
                manager
                    .create(Resource::from_yaml(yaml).expect("a seed resource parses"))
                    .await
                    .expect("a seed resource is stored");
            }
            let mut tags = kuma_core::tokens::TokenTags::new();
            tags.insert("kuma.io/service".into(), vec!["web".into()]);
            tokens
                .issue(&TokenRequest {
                    name: "web-1".into(),
                    mesh: "default".into(),
                    tags,
                    ..TokenRequest::default()
                })
                .await
                .expect("a token is issued")
        });
        let app = kuma_xds::bootstrap::router(
            manager,
            kuma_xds::bootstrap::BootstrapConfig {
                xds_host: Some("127.0.0.1".into()),
                xds_port: 5678,
                xds_ca_pem: None,
                sds: None,
            },
            DataplaneAuth::Tokens(tokens),
        );
        BootstrapTarget {
            runtime,
            app,
            token,
        }
    })
}

/// The request body `data` describes, and whether it presents the issued
/// token for `web-1` of `default` (structured inputs only).
fn bootstrap_body(data: &[u8], token: &str) -> (Vec<u8>, bool) {
    let Some((&mode, rest)) = data.split_first() else {
        return (Vec::new(), false);
    };
    if mode % 2 == 0 {
        return (rest.to_vec(), false);
    }
    let mut fields = rest
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let mesh = fields.next().unwrap_or_default();
    let name = fields.next().unwrap_or_default();
    let admin_port = fields.next().unwrap_or_default();
    let resource = fields.next().unwrap_or_default();
    let presented = fields.next().unwrap_or_default();
    let real = presented == "@";
    let presented = if real { token.to_string() } else { presented };
    let mut body = serde_json::json!({
        "mesh": mesh,
        "name": name,
        "dataplaneToken": presented,
        "dataplaneResource": resource,
    });
    // A port that is not a number stays text: the server must refuse it.
    body["adminPort"] = match admin_port.parse::<i64>() {
        Ok(n) => serde_json::json!(n),
        Err(_) => serde_json::json!(admin_port),
    };
    let valid = real && mesh == "default" && name == "web-1";
    (body.to_string().into_bytes(), valid)
}

/// Posts what `data` describes, checks the property above, and returns
/// the status.
pub fn check_bootstrap(data: &[u8]) -> u16 {
    use tower::ServiceExt as _;
    let target = bootstrap_target();
    let (body, valid) = bootstrap_body(data, &target.token);
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/bootstrap")
        .header("host", "127.0.0.1:5682")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .expect("a request");
    let (status, text) = target.runtime.block_on(async {
        let response = target
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
            .await
            .expect("the body is read");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    });
    assert!(
        !status.is_server_error(),
        "{status} for a client's request: {text}"
    );
    if status.is_success() {
        assert!(
            valid,
            "a bootstrap was served without the issued token for web-1: {text}"
        );
        assert!(
            text.contains("default.web-1"),
            "the bootstrap is not for default.web-1: {text}"
        );
    }
    status.as_u16()
}
