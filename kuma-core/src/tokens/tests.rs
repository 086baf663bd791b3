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
        valid_for: None,
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
    assert_eq!(claims.name, "web-1");
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
    assert_eq!(keys, ["Mesh", "Name", "exp", "iat", "jti"]);
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
        ("eyJhbGciOiJFZERTQSJ9.e30.AAAA".to_string(), "lack \"Name\""),
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
        field(tokens.issue(&req("default", "")).await.unwrap_err()),
        "name"
    );
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
