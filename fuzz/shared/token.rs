// Shared by the `token` fuzz target and the corpus replay test in
// kuma-core/tests/fuzz_token.rs (both `include!` this file).
//
// One token is issued for Dataplane `web-1` of mesh `default` with the tag
// kuma.io/service=web. The input says what is presented instead:
//
//   byte 0 % 3 = 0   the rest of the input, as text
//   byte 0 % 3 = 1   the issued token with bytes overwritten: each pair
//                    (position, byte) of the rest sets token[position % len]
//   byte 0 % 3 = 2   the issued token's header and signature around the rest
//                    of the input, base64url-encoded, as its claims
//
// Property: verifying never panics, and whatever is accepted carries exactly
// the issued token's claims (only the one signing key exists, so nothing
// else can verify); an accepted token authorizes `web-1` as issued.

/// The issued token, its claims and what checks it.
struct TokenTarget {
    runtime: tokio::runtime::Runtime,
    tokens: kuma_core::tokens::DataplaneTokens,
    token: String,
    claims: kuma_core::tokens::TokenClaims,
    web: kuma_core::resource::DataplaneSpec,
}

fn token_target() -> &'static TokenTarget {
    use kuma_core::manager::ResourceManager;
    use kuma_core::resource::{Resource, ResourceSpec};
    use kuma_core::store::MemoryStore;
    use kuma_core::tokens::{DataplaneTokens, TokenRequest};

    static TARGET: std::sync::OnceLock<TokenTarget> = std::sync::OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime");
        let manager = ResourceManager::new(std::sync::Arc::new(MemoryStore::new()));
        let web = Resource::from_yaml(
            "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  \
             inbound:\n  - port: 8080\n    servicePort: 9000\n    tags: {kuma.io/service: web}\n",
        )
        .expect("the Dataplane parses");
        let ResourceSpec::Dataplane(web) = web.spec else {
            panic!("a Dataplane spec");
        };
        let tokens = DataplaneTokens::new(manager.clone());
        let (token, claims) = runtime.block_on(async {
            manager
                .create(Resource::from_yaml("type: Mesh\nname: default\n").expect("a Mesh"))
                .await
                .expect("the mesh is stored");
            let mut tags = kuma_core::tokens::TokenTags::new();
            tags.insert("kuma.io/service".into(), vec!["web".into()]);
            let token = tokens
                .issue(&TokenRequest {
                    name: "web-1".into(),
                    mesh: "default".into(),
                    tags,
                    ..TokenRequest::default()
                })
                .await
                .expect("a token is issued");
            let claims = tokens
                .verify(&token, "default", "web-1")
                .await
                .expect("the issued token verifies");
            (token, claims)
        });
        TokenTarget {
            runtime,
            tokens,
            token,
            claims,
            web,
        }
    })
}

/// Presents what `data` describes and checks the property above.
pub fn check_token(data: &[u8]) {
    use base64::Engine as _;
    let target = token_target();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let presented = match mode % 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => {
            let mut bytes = target.token.clone().into_bytes();
            let len = bytes.len();
            for pair in rest.chunks_exact(2) {
                bytes[usize::from(pair[0]) * 7 % len] = pair[1];
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => {
            let parts: Vec<&str> = target.token.split('.').collect();
            let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rest);
            format!("{}.{claims}.{}", parts[0], parts[2])
        }
    };
    for mesh in ["default", "other"] {
        let result = target
            .runtime
            .block_on(target.tokens.verify(&presented, mesh, "web-1"));
        if let Ok(claims) = result {
            assert_eq!(
                claims, target.claims,
                "a token that is not the issued one was accepted: {presented:?}"
            );
            claims
                .authorize("web-1", &target.web)
                .expect("the issued token authorizes its Dataplane");
        }
    }
}
