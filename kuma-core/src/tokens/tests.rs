use super::*;
use crate::store::MemoryStore;

async fn setup(meshes: &[&str]) -> (ResourceManager, DataplaneTokens) {
    let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
    for m in meshes {
        manager
            .create(Resource::from_yaml(&format!("type: Mesh\nname: {m}\n")).unwrap())
            .await
            .unwrap();
    }
    let tokens = DataplaneTokens::new(manager.clone());
    (manager, tokens)
}

fn req(mesh: &str, name: &str) -> TokenRequest {
    TokenRequest {
        name: name.into(),
        mesh: mesh.into(),
        ..Default::default()
    }
}

fn signing_key_key(mesh: &str) -> ResourceKey {
    ResourceKey::new(ResourceType::Secret, Some(mesh), SIGNING_KEY_SECRET)
}

/// The error, after checking that its message does not quote the token.
fn refused(result: Result<TokenClaims, TokenError>, token: &str) -> TokenError {
    let err = result.expect_err("the token must be refused");
    let text = format!("{err} {err:?}");
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!text.contains(part), "{text} quotes the token");
    }
    err
}

#[tokio::test]
async fn issued_tokens_verify_with_their_claims() {
    let (manager, tokens) = setup(&["default"]).await;
    let before = SystemTime::now();
    let token = tokens.issue(&req("default", "web-1")).await.unwrap();
    assert_eq!(token.split('.').count(), 3);
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);

    let claims = tokens.verify(&token, "default", "web-1").await.unwrap();
    assert_eq!(claims.name.as_deref(), Some("web-1"));
    assert!(claims.tags.is_empty());
    assert_eq!(claims.token_type, TokenType::Dataplane);
    assert_eq!(claims.mesh, "default");
    assert_eq!(claims.id.len(), 32);
    let validity = claims.expires_at.duration_since(claims.issued_at).unwrap();
    assert_eq!(validity, DEFAULT_VALIDITY);
    assert!(claims.issued_at + Duration::from_secs(1) >= before);

    // The signing key was created on first use, as a PKCS#8 Ed25519 key.
    let secret = manager.get(&signing_key_key("default")).await.unwrap();
    let bytes = secret.spec_as::<SecretSpec>().unwrap().bytes();
    assert!(Ed25519KeyPair::from_pkcs8_maybe_unchecked(&bytes).is_ok());

    // A second token uses the same key and has its own id.
    let other = tokens.issue(&req("default", "web-1")).await.unwrap();
    let again = tokens.verify(&other, "default", "web-1").await.unwrap();
    assert_ne!(again.id, claims.id);
    assert_eq!(
        manager
            .get(&signing_key_key("default"))
            .await
            .unwrap()
            .meta
            .version,
        secret.meta.version
    );

    // The claim names are Kuma's.
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let json: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["Mesh", "Name", "Tags", "Type", "exp", "iat", "jti"]);
    assert_eq!(json["Type"], "dataplane");
    assert_eq!(json["Tags"], serde_json::json!({}));
}

#[tokio::test]
async fn bearer_prefix_is_accepted() {
    let (_, tokens) = setup(&["default"]).await;
    let token = tokens.issue(&req("default", "a")).await.unwrap();
    for presented in [format!("Bearer {token}"), format!("bearer  {token}\n")] {
        tokens.verify(&presented, "default", "a").await.unwrap();
    }
    assert_eq!(strip_bearer("  Bearer abc "), "abc");
    assert_eq!(strip_bearer("abc"), "abc");
    assert_eq!(strip_bearer("Bearer"), "");
    assert_eq!(strip_bearer("Bearerx"), "Bearerx");
    assert_eq!(strip_bearer("BEARER x"), "x");
}

#[tokio::test]
async fn missing_tokens_are_refused() {
    let (_, tokens) = setup(&["default"]).await;
    for t in ["", "   ", "Bearer "] {
        let err = tokens.verify(t, "default", "a").await.unwrap_err();
        assert_eq!(err, TokenError::Missing);
    }
    let auth = DataplaneAuth::Tokens(tokens);
    assert_eq!(
        auth.check(None, "default", "a").await.unwrap_err(),
        TokenError::Missing
    );
    let err = auth.check(Some(""), "default", "a").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("dataplane token is missing: pass it with kuma-dp --dataplane-token-file"),
        "{err}"
    );
    assert!(err.is_unauthenticated());
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let (_, tokens) = setup(&["default"]).await;
    tokens.issue(&req("default", "a")).await.unwrap();
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &WireClaims {
            name: "a".into(),
            mesh: "default".into(),
            tags: TokenTags::new(),
            token_type: String::new(),
            iat: 0,
            exp: u64::MAX / 2,
            jti: String::new(),
        },
        &EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    let cases = [
        ("not-a-jwt-at-all".to_string(), "not a JWT"),
        ("a.b.c".to_string(), "not base64url"),
        ("eyJhbGciOiJFZERTQSJ9.e30.AAAA".to_string(), "lack \"Mesh\""),
        (hs256, "signed with HS256"),
    ];
    for (token, reason) in cases {
        let err = refused(tokens.verify(&token, "default", "a").await, &token);
        match &err {
            TokenError::Malformed(r) => assert!(r.contains(reason), "{token}: {r}"),
            other => panic!("{token}: expected Malformed, got {other:?}"),
        }
        assert!(err.to_string().starts_with("dataplane token is malformed"));
    }
}

#[tokio::test]
async fn tokens_of_another_key_or_tampered_are_refused() {
    let (_, tokens) = setup(&["default"]).await;
    let (_, elsewhere) = setup(&["default"]).await;
    tokens.issue(&req("default", "a")).await.unwrap();
    let foreign = elsewhere.issue(&req("default", "a")).await.unwrap();
    let err = refused(tokens.verify(&foreign, "default", "a").await, &foreign);
    assert_eq!(
        err,
        TokenError::BadSignature {
            mesh: "default".into()
        }
    );
    assert!(
        err.to_string()
            .contains("signature is not valid for mesh \"default\"")
    );

    // Claims swapped for another Dataplane's, signature kept.
    let mine = tokens.issue(&req("default", "a")).await.unwrap();
    let theirs = tokens.issue(&req("default", "b")).await.unwrap();
    let parts: Vec<&str> = mine.split('.').collect();
    let other_payload = theirs.split('.').nth(1).unwrap();
    let forged = format!("{}.{}.{}", parts[0], other_payload, parts[2]);
    let err = refused(tokens.verify(&forged, "default", "b").await, &forged);
    assert!(matches!(err, TokenError::BadSignature { .. }), "{err:?}");
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let (_, tokens) = setup(&["default"]).await;
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    let request = TokenRequest {
        valid_for: Some(Duration::from_secs(3600)),
        ..req("default", "a")
    };
    let token = tokens.issue_at(&request, two_hours_ago).await.unwrap();
    let err = refused(tokens.verify(&token, "default", "a").await, &token);
    let TokenError::Expired { at } = err else {
        panic!("expected Expired, got {err:?}");
    };
    let expected = UNIX_EPOCH + Duration::from_secs(secs_since_epoch(two_hours_ago) + 3600);
    assert_eq!(at, expected);
    let text = err.to_string();
    assert!(text.starts_with("dataplane token expired at 20"), "{text}");
    assert!(text.contains("generate a new one"), "{text}");

    // No leeway: valid one second, refused once that second is over.
    let token = tokens
        .issue_at(
            &TokenRequest {
                valid_for: Some(Duration::from_secs(1)),
                ..req("default", "a")
            },
            SystemTime::now() - Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert!(matches!(
        tokens.verify(&token, "default", "a").await,
        Err(TokenError::Expired { .. })
    ));
}

#[tokio::test]
async fn tokens_for_another_mesh_or_dataplane_are_refused() {
    let (_, tokens) = setup(&["default", "other"]).await;
    tokens.issue(&req("default", "x")).await.unwrap();
    let token = tokens.issue(&req("other", "web-1")).await.unwrap();
    let err = refused(tokens.verify(&token, "default", "web-1").await, &token);
    assert_eq!(
        err,
        TokenError::WrongMesh {
            token_mesh: "other".into(),
            mesh: "default".into()
        }
    );
    assert!(err.to_string().contains("is for mesh \"other\""), "{err}");

    let err = refused(tokens.verify(&token, "other", "web-2").await, &token);
    assert_eq!(
        err,
        TokenError::WrongName {
            token_name: "web-1".into(),
            name: "web-2".into()
        }
    );
    assert!(
        err.to_string().contains("is for dataplane \"web-1\""),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_meshes_and_missing_keys() {
    let (manager, tokens) = setup(&["default", "gone"]).await;
    assert_eq!(
        tokens.issue(&req("nope", "a")).await.unwrap_err(),
        TokenError::UnknownMesh("nope".into())
    );

    // A mesh without a key yet: nothing can verify, and verifying does not
    // create one.
    let (_, elsewhere) = setup(&["default"]).await;
    let foreign = elsewhere.issue(&req("default", "a")).await.unwrap();
    let err = refused(tokens.verify(&foreign, "default", "a").await, &foreign);
    assert_eq!(
        err,
        TokenError::NoSigningKey {
            mesh: "default".into()
        }
    );
    assert!(manager.get(&signing_key_key("default")).await.is_err());

    // Deleting the key invalidates every token; the next issue makes a new key.
    let old = tokens.issue(&req("default", "a")).await.unwrap();
    tokens.verify(&old, "default", "a").await.unwrap();
    manager.delete(&signing_key_key("default")).await.unwrap();
    assert!(matches!(
        tokens.verify(&old, "default", "a").await,
        Err(TokenError::NoSigningKey { .. })
    ));
    let new = tokens.issue(&req("default", "a")).await.unwrap();
    tokens.verify(&new, "default", "a").await.unwrap();
    assert!(matches!(
        tokens.verify(&old, "default", "a").await,
        Err(TokenError::BadSignature { .. })
    ));

    // A deleted mesh.
    let token = tokens.issue(&req("gone", "a")).await.unwrap();
    manager
        .delete(&ResourceKey::new(ResourceType::Mesh, None, "gone"))
        .await
        .unwrap();
    assert_eq!(
        tokens.verify(&token, "gone", "a").await.unwrap_err(),
        TokenError::UnknownMesh("gone".into())
    );
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let (_, tokens) = setup(&["default"]).await;
    let field = |e: TokenError| match e {
        TokenError::InvalidRequest { field, .. } => field,
        other => panic!("expected InvalidRequest, got {other:?}"),
    };
    assert_eq!(
        field(tokens.issue(&req("default", " a")).await.unwrap_err()),
        "name"
    );
    for tags in [
        TokenTags::from([("kuma.io/service".to_string(), vec![])]),
        TokenTags::from([("kuma.io/service".to_string(), vec![" ".to_string()])]),
        TokenTags::from([(String::new(), vec!["x".to_string()])]),
    ] {
        let request = TokenRequest {
            tags,
            ..req("default", "")
        };
        assert_eq!(field(tokens.issue(&request).await.unwrap_err()), "tags");
    }
    assert_eq!(field("gateway".parse::<TokenType>().unwrap_err()), "type");
    assert_eq!(
        field(tokens.issue(&req("", "a")).await.unwrap_err()),
        "mesh"
    );
    let zero = TokenRequest {
        valid_for: Some(Duration::ZERO),
        ..req("default", "a")
    };
    let err = tokens.issue(&zero).await.unwrap_err();
    assert!(!err.is_unauthenticated());
    assert_eq!(field(err), "validFor");
    let forever = TokenRequest {
        valid_for: Some(Duration::from_secs(u64::MAX)),
        ..req("default", "a")
    };
    assert_eq!(field(tokens.issue(&forever).await.unwrap_err()), "validFor");
}

#[tokio::test]
async fn an_unusable_stored_key_is_reported() {
    let (manager, tokens) = setup(&["default"]).await;
    manager
        .create(Resource::new(
            Some("default"),
            SIGNING_KEY_SECRET,
            SecretSpec::from_bytes(b"not a key"),
        ))
        .await
        .unwrap();
    let err = tokens.issue(&req("default", "a")).await.unwrap_err();
    assert!(matches!(err, TokenError::Key { .. }), "{err:?}");
    assert!(!err.is_unauthenticated());
    assert!(err.to_string().contains("delete the Secret"), "{err}");
}

#[tokio::test]
async fn a_replaced_key_takes_effect_at_once() {
    let (manager, tokens) = setup(&["default"]).await;
    let old = tokens.issue(&req("default", "a")).await.unwrap();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    manager
        .upsert(Resource::new(
            Some("default"),
            SIGNING_KEY_SECRET,
            SecretSpec::from_bytes(pkcs8.as_ref()),
        ))
        .await
        .unwrap();
    assert!(matches!(
        tokens.verify(&old, "default", "a").await,
        Err(TokenError::BadSignature { .. })
    ));
    let new = tokens.issue(&req("default", "a")).await.unwrap();
    tokens.verify(&new, "default", "a").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_issues_share_one_key() {
    let (manager, _) = setup(&["default"]).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        // Separate instances: no shared cache, only the store.
        let tokens = DataplaneTokens::new(manager.clone());
        tasks.push(tokio::spawn(async move {
            tokens.issue(&req("default", &format!("dp-{i}"))).await
        }));
    }
    let verifier = DataplaneTokens::new(manager.clone());
    for (i, t) in tasks.into_iter().enumerate() {
        let token = t.await.unwrap().unwrap();
        verifier
            .verify(&token, "default", &format!("dp-{i}"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn auth_off_lets_everything_in() {
    let auth = DataplaneAuth::Off;
    assert!(!auth.is_on());
    auth.check(None, "default", "a").await.unwrap();
    auth.check(Some("garbage"), "nope", "a").await.unwrap();
}

#[tokio::test]
async fn debug_output_shows_no_key_material() {
    let (_, tokens) = setup(&["default"]).await;
    tokens.issue(&req("default", "a")).await.unwrap();
    let auth = DataplaneAuth::Tokens(tokens.clone());
    assert_eq!(format!("{tokens:?}"), "DataplaneTokens { .. }");
    assert_eq!(format!("{auth:?}"), "Tokens(DataplaneTokens { .. })");
}

/// The key cache is keyed by the Secret's version: a signing key deleted
/// and re-created behind the issuer's back (the cache still holds the old
/// one) must not be mistaken for the old key. Guards the store's contract
/// that a re-created key never reuses a version.
#[tokio::test]
async fn a_key_deleted_and_recreated_invalidates_old_tokens() {
    let (manager, tokens) = setup(&["default"]).await;
    let old = tokens.issue(&req("default", "a")).await.unwrap();
    // Verifying caches the parsed key with the Secret's version.
    tokens.verify(&old, "default", "a").await.unwrap();
    let before = manager.get(&signing_key_key("default")).await.unwrap();
    manager.delete(&signing_key_key("default")).await.unwrap();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let recreated = manager
        .create(Resource::new(
            Some("default"),
            SIGNING_KEY_SECRET,
            SecretSpec::from_bytes(pkcs8.as_ref()),
        ))
        .await
        .unwrap();
    assert!(recreated.meta.version > before.meta.version);
    assert!(matches!(
        tokens.verify(&old, "default", "a").await,
        Err(TokenError::BadSignature { .. })
    ));
    let new = tokens.issue(&req("default", "a")).await.unwrap();
    tokens.verify(&new, "default", "a").await.unwrap();
}

fn dataplane(yaml_networking: &str) -> DataplaneSpec {
    let resource = Resource::from_yaml(&format!(
        "type: Dataplane\nmesh: default\nname: dp\nnetworking:\n{yaml_networking}"
    ))
    .unwrap();
    resource.spec_as::<DataplaneSpec>().unwrap().clone()
}

fn sidecar(services: &[&str]) -> DataplaneSpec {
    let mut yaml = "  address: 10.0.0.1\n  inbound:\n".to_string();
    for (i, s) in services.iter().enumerate() {
        yaml.push_str(&format!(
            "  - port: {}\n    tags:\n      kuma.io/service: {s}\n      version: v1\n",
            8000 + i
        ));
    }
    dataplane(&yaml)
}

fn claims(name: Option<&str>, tags: &[(&str, &[&str])], token_type: TokenType) -> TokenClaims {
    TokenClaims {
        name: name.map(str::to_string),
        mesh: "default".into(),
        tags: tags
            .iter()
            .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect(),
        token_type,
        issued_at: UNIX_EPOCH,
        expires_at: UNIX_EPOCH,
        id: String::new(),
    }
}

#[test]
fn tags_bind_every_inbound_to_the_tokens_values() {
    let backend = claims(
        None,
        &[("kuma.io/service", &["backend"])],
        TokenType::Dataplane,
    );
    backend
        .authorize("any-name", &sidecar(&["backend"]))
        .unwrap();
    backend
        .authorize("other", &sidecar(&["backend", "backend"]))
        .unwrap();

    let err = backend.authorize("x", &sidecar(&["payments"])).unwrap_err();
    assert_eq!(
        err,
        TokenError::TagNotAllowed {
            tag: "kuma.io/service".into(),
            value: "payments".into(),
            allowed: vec!["backend".into()],
            place: "networking.inbound[0]".into(),
        }
    );
    assert!(err.is_forbidden() && !err.is_unauthenticated());
    let text = err.to_string();
    assert!(
        text.contains("does not allow kuma.io/service=\"payments\""),
        "{text}"
    );
    // One inbound of two outside the token is enough to refuse.
    let err = backend
        .authorize("x", &sidecar(&["backend", "payments"]))
        .unwrap_err();
    assert!(
        matches!(&err, TokenError::TagNotAllowed { place, value, .. } if place == "networking.inbound[1]" && value == "payments"),
        "{err:?}"
    );

    // Several values, several tags: each inbound needs a listed value of
    // every tag of the token.
    let two = claims(
        None,
        &[
            ("kuma.io/service", &["backend", "payments"]),
            ("version", &["v1"]),
        ],
        TokenType::Dataplane,
    );
    two.authorize("x", &sidecar(&["backend", "payments"]))
        .unwrap();
    let no_version = dataplane(
        "  address: 10.0.0.1\n  inbound:\n  - port: 8000\n    tags:\n      kuma.io/service: backend\n",
    );
    let err = two.authorize("x", &no_version).unwrap_err();
    assert_eq!(
        err,
        TokenError::TagMissing {
            tag: "version".into(),
            place: "networking.inbound[0]".into()
        }
    );
    assert!(err.is_forbidden());

    // A gateway's tags are checked the same way.
    let gateway = |service: &str| {
        dataplane(&format!(
            "  address: 10.0.0.1\n  gateway:\n    tags:\n      kuma.io/service: {service}\n"
        ))
    };
    backend.authorize("gw", &gateway("backend")).unwrap();
    let err = backend.authorize("gw", &gateway("edge")).unwrap_err();
    assert!(
        matches!(&err, TokenError::TagNotAllowed { place, .. } if place == "networking.gateway"),
        "{err:?}"
    );

    // No tags: any tags.
    claims(None, &[], TokenType::Dataplane)
        .authorize("x", &sidecar(&["payments"]))
        .unwrap();
}

#[test]
fn names_and_types_must_fit() {
    let named = claims(Some("web-1"), &[], TokenType::Dataplane);
    named.authorize("web-1", &sidecar(&["web"])).unwrap();
    assert_eq!(
        named.authorize("web-2", &sidecar(&["web"])).unwrap_err(),
        TokenError::WrongName {
            token_name: "web-1".into(),
            name: "web-2".into()
        }
    );
    let ingress = dataplane(
        "  address: 10.0.0.1\n  ingress:\n    availableServices: []\n  inbound:\n  - port: 10001\n    tags:\n      kuma.io/service: ingress\n",
    );
    let err = named.authorize("web-1", &ingress).unwrap_err();
    assert_eq!(
        err,
        TokenError::WrongType {
            token_type: TokenType::Dataplane,
            dataplane_type: TokenType::Ingress
        }
    );
    assert!(err.is_forbidden());
    assert!(err.to_string().contains("--type ingress"), "{err}");
    let ingress_token = claims(None, &[], TokenType::Ingress);
    ingress_token.authorize("zi", &ingress).unwrap();
    assert!(matches!(
        ingress_token.authorize("zi", &sidecar(&["web"])),
        Err(TokenError::WrongType {
            token_type: TokenType::Ingress,
            dataplane_type: TokenType::Dataplane
        })
    ));
    // Checks off: nothing to authorize against.
    authorize(None, "anything", &ingress).unwrap();
    authorize(Some(&named), "web-1", &ingress).unwrap_err();
}

#[tokio::test]
async fn tagged_and_typed_tokens_round_trip() {
    let (_, tokens) = setup(&["default"]).await;
    let request = TokenRequest {
        tags: TokenTags::from([("kuma.io/service".to_string(), vec!["backend".to_string()])]),
        token_type: TokenType::Ingress,
        ..req("default", "")
    };
    let token = tokens.issue(&request).await.unwrap();
    for name in ["a", "b"] {
        let claims = tokens.verify(&token, "default", name).await.unwrap();
        assert_eq!(claims.name, None);
        assert_eq!(claims.tags, request.tags);
        assert_eq!(claims.token_type, TokenType::Ingress);
    }
}

/// A token of the first format (claims `Name`, `Mesh`, `iat`, `exp`, `jti`
/// only) still verifies, as a name-bound `dataplane` token allowing any
/// tags.
#[tokio::test]
async fn tokens_without_tags_or_type_claims_still_verify() {
    #[derive(Serialize)]
    struct FirstFormat {
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "Mesh")]
        mesh: String,
        iat: u64,
        exp: u64,
        jti: String,
    }
    let (manager, tokens) = setup(&["default"]).await;
    tokens.issue(&req("default", "x")).await.unwrap();
    let secret = manager.get(&signing_key_key("default")).await.unwrap();
    let pkcs8 = secret.spec_as::<SecretSpec>().unwrap().bytes();
    let now = secs_since_epoch(SystemTime::now());
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &FirstFormat {
            name: "web-1".into(),
            mesh: "default".into(),
            iat: now,
            exp: now + 3600,
            jti: "00".into(),
        },
        &EncodingKey::from_ed_der(&pkcs8),
    )
    .unwrap();
    let claims = tokens.verify(&token, "default", "web-1").await.unwrap();
    assert_eq!(claims.name.as_deref(), Some("web-1"));
    assert!(claims.tags.is_empty());
    assert_eq!(claims.token_type, TokenType::Dataplane);
    claims.authorize("web-1", &sidecar(&["anything"])).unwrap();
    assert!(matches!(
        tokens.verify(&token, "default", "web-2").await,
        Err(TokenError::WrongName { .. })
    ));

    // An unknown Type is malformed, not silently a dataplane token.
    let mut odd = serde_json::to_value(FirstFormat {
        name: "web-1".into(),
        mesh: "default".into(),
        iat: now,
        exp: now + 3600,
        jti: "01".into(),
    })
    .unwrap();
    odd["Type"] = "gateway".into();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &odd,
        &EncodingKey::from_ed_der(&pkcs8),
    )
    .unwrap();
    assert!(matches!(
        tokens.verify(&token, "default", "web-1").await,
        Err(TokenError::Malformed(r)) if r.contains("Type")
    ));
}

/// The cache also compares the key's bytes: even a store that handed a
/// re-created key the version of the deleted one could not make the deleted
/// key verify again.
#[tokio::test]
async fn a_cached_key_needs_the_same_bytes_as_the_stored_one() {
    let (manager, tokens) = setup(&["default"]).await;
    let old = tokens.issue(&req("default", "a")).await.unwrap();
    let old_secret = manager.get(&signing_key_key("default")).await.unwrap();
    manager.delete(&signing_key_key("default")).await.unwrap();
    let new = tokens.issue(&req("default", "a")).await.unwrap();
    let current = manager.get(&signing_key_key("default")).await.unwrap();
    // The cache holds the deleted key under the current version.
    let mut stale = (*old_secret).clone();
    stale.meta.version = current.meta.version;
    tokens.keys.lock().unwrap().insert(
        "default".into(),
        Arc::new(parse_key("default", &stale).unwrap()),
    );
    assert!(matches!(
        tokens.verify(&old, "default", "a").await,
        Err(TokenError::BadSignature { .. })
    ));
    tokens.verify(&new, "default", "a").await.unwrap();
}
