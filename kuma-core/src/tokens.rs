//! Dataplane tokens: what a proxy presents to prove it may run as a given
//! Dataplane of a given mesh.
//!
//! A token is a JWT signed with Ed25519 (`EdDSA`) whose claims are Kuma's:
//! `Name` (the Dataplane; empty: any Dataplane whose tags fit), `Mesh`,
//! `Tags` (tag -> allowed values; empty: any tags), `Type` (`dataplane` or
//! `ingress`), plus `iat`, `exp` (seconds since the epoch) and `jti` (a
//! random id). Tokens issued before `Tags` and `Type` existed verify as
//! name-bound `dataplane` tokens allowing any tags. Each mesh has its own
//! signing key: the Secret [`SIGNING_KEY_SECRET`] in that mesh, holding a
//! PKCS#8 document. It is created the first time a token of the mesh is
//! issued; deleting it invalidates every token of the mesh (the next issue
//! creates a new key, and a token of the old key never verifies again).
//!
//! Checking a proxy is two steps: [`DataplaneAuth::authenticate`] verifies
//! the token (signature, expiry, mesh, and name when the token has one) and
//! returns its [`TokenClaims`]; [`TokenClaims::authorize`] then checks the
//! Dataplane the proxy runs as against them (name, type, tags: see
//! [`TokenClaims::authorize`]). The servers that accept proxies (bootstrap,
//! ADS, SDS) do both; [`DataplaneAuth::Off`] (`dpServer.auth.type: none`)
//! checks nothing.
//!
//! Errors say which check failed and what to do, and never contain the
//! token: it is a credential. Neither do `Debug` outputs of these types.
//!
//! ```
//! use kuma_core::manager::ResourceManager;
//! use kuma_core::resource::Resource;
//! use kuma_core::store::MemoryStore;
//! use kuma_core::tokens::{DataplaneAuth, DataplaneTokens, TokenRequest};
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let manager = ResourceManager::new(Arc::new(MemoryStore::new()));
//! manager.create(Resource::from_yaml("type: Mesh\nname: demo").unwrap()).await.unwrap();
//! let tokens = DataplaneTokens::new(manager);
//! let token = tokens
//!     .issue(&TokenRequest { name: "web-1".into(), mesh: "demo".into(), ..Default::default() })
//!     .await
//!     .unwrap();
//! let auth = DataplaneAuth::Tokens(tokens);
//! assert!(auth.check(Some(&token), "demo", "web-1").await.is_ok());
//! assert!(auth.check(Some(&token), "demo", "web-2").await.is_err());
//! assert!(auth.check(None, "demo", "web-1").await.is_err());
//! # });
//! ```

use crate::manager::{ManagerError, ResourceManager};
use crate::resource::{DataplaneSpec, Resource, ResourceKey, ResourceType, SecretSpec, Version};
use crate::store::StoreError;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Name of the Secret holding a mesh's token signing key (in that mesh).
pub const SIGNING_KEY_SECRET: &str = "dataplane-token-signing-key";

/// How long a token is valid when the request does not say (`8760h`).
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(8760 * 3600);

/// Tolerance, in seconds, when checking `exp`: none. The control plane both
/// issues and verifies (replicas share one store and are expected to run
/// NTP), and tokens live for hours, so a skew allowance would only extend
/// every token past the validity the operator asked for.
pub const EXPIRY_LEEWAY_SECS: u64 = 0;

/// What kind of proxy a token is for (the `Type` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TokenType {
    /// A Dataplane that is not a zone ingress (`dataplane`, the default).
    #[default]
    Dataplane,
    /// A zone ingress (`ingress`): a Dataplane with `networking.ingress`.
    Ingress,
}

impl TokenType {
    /// The claim's value: `dataplane` or `ingress`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Dataplane => "dataplane",
            TokenType::Ingress => "ingress",
        }
    }

    /// The type of token a Dataplane needs.
    pub fn of(dataplane: &DataplaneSpec) -> Self {
        if dataplane.is_ingress() {
            TokenType::Ingress
        } else {
            TokenType::Dataplane
        }
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TokenType {
    type Err = TokenError;

    /// `dataplane` or `ingress` (empty: `dataplane`).
    fn from_str(s: &str) -> Result<Self, TokenError> {
        match s {
            "" | "dataplane" => Ok(TokenType::Dataplane),
            "ingress" => Ok(TokenType::Ingress),
            other => Err(TokenError::InvalidRequest {
                field: "type",
                reason: format!("{other:?} is not a token type: use dataplane or ingress"),
            }),
        }
    }
}

/// Tag -> the values a token allows for it (the `Tags` claim, Kuma's
/// `map[string][]string`).
pub type TokenTags = BTreeMap<String, Vec<String>>;

/// What to issue a token for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenRequest {
    /// The Dataplane's name; empty: any Dataplane whose tags fit.
    pub name: String,
    /// The Dataplane's mesh; it must exist.
    pub mesh: String,
    /// Tags every inbound (or the gateway) of the Dataplane must carry, with
    /// one of the listed values; empty: any tags.
    pub tags: TokenTags,
    /// The kind of proxy.
    pub token_type: TokenType,
    /// How long the token is valid; `None`: [`DEFAULT_VALIDITY`].
    pub valid_for: Option<Duration>,
}

/// The verified claims of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The Dataplane's name (`Name`); `None`: any Dataplane whose tags fit.
    pub name: Option<String>,
    /// The Dataplane's mesh (`Mesh`).
    pub mesh: String,
    /// The tags the Dataplane must carry (`Tags`); empty: any.
    pub tags: TokenTags,
    /// The kind of proxy (`Type`).
    pub token_type: TokenType,
    /// When the token was issued (`iat`).
    pub issued_at: SystemTime,
    /// When the token stops being valid (`exp`).
    pub expires_at: SystemTime,
    /// The token's unique id (`jti`).
    pub id: String,
}

/// Why a token could not be issued or was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token was presented.
    #[error(
        "dataplane token is missing: pass it with kuma-dp --dataplane-token-file (generate one with kumactl generate dataplane-token)"
    )]
    Missing,
    /// The token is not a JWT of the expected shape.
    #[error(
        "dataplane token is malformed: {0}; pass the token exactly as kumactl generate dataplane-token printed it"
    )]
    Malformed(String),
    /// The signature does not verify with the mesh's signing key.
    #[error(
        "dataplane token signature is not valid for mesh {mesh:?}: the token was not issued by this control plane for this mesh, or the mesh's signing key changed since; generate a new token"
    )]
    BadSignature {
        /// The mesh whose key was used.
        mesh: String,
    },
    /// The token's `exp` has passed.
    #[error("dataplane token expired at {}: generate a new one with kumactl generate dataplane-token", rfc3339(*.at))]
    Expired {
        /// When it expired.
        at: SystemTime,
    },
    /// The token was issued for another mesh.
    #[error(
        "dataplane token is for mesh {token_mesh:?}, but the proxy is in mesh {mesh:?}: generate a token for this mesh"
    )]
    WrongMesh {
        /// The token's `Mesh` claim.
        token_mesh: String,
        /// The proxy's mesh.
        mesh: String,
    },
    /// The token was issued for another Dataplane.
    #[error(
        "dataplane token is for dataplane {token_name:?}, but the proxy is {name:?}: generate a token for this dataplane"
    )]
    WrongName {
        /// The token's `Name` claim.
        token_name: String,
        /// The proxy's name.
        name: String,
    },
    /// The token is for another kind of proxy (an ingress token for a
    /// Dataplane that is not a zone ingress, or the reverse).
    #[error(
        "dataplane token is of type {token_type}, but the proxy's Dataplane is of type {dataplane_type}: generate a token with --type {dataplane_type}"
    )]
    WrongType {
        /// The token's `Type` claim.
        token_type: TokenType,
        /// What the proxy's Dataplane is.
        dataplane_type: TokenType,
    },
    /// A part of the Dataplane lacks a tag the token requires.
    #[error(
        "dataplane token requires tag {tag:?} on every inbound, but {place} of the Dataplane has none"
    )]
    TagMissing {
        /// The tag.
        tag: String,
        /// Where, e.g. `networking.inbound[1]` or `networking.gateway`.
        place: String,
    },
    /// A part of the Dataplane carries a tag value the token does not allow.
    #[error(
        "dataplane token does not allow {tag}={value:?} ({place} of the Dataplane); it allows {tag} in {allowed:?}: generate a token for it"
    )]
    TagNotAllowed {
        /// The tag, e.g. `kuma.io/service`.
        tag: String,
        /// The value that is not allowed, e.g. the service.
        value: String,
        /// The values the token allows.
        allowed: Vec<String>,
        /// Where, e.g. `networking.inbound[0]`.
        place: String,
    },
    /// The mesh does not exist.
    #[error("mesh {0:?} does not exist: create it first")]
    UnknownMesh(String),
    /// No token of the mesh was ever issued (or its key was deleted), so no
    /// token can be valid.
    #[error(
        "mesh {mesh:?} has no dataplane token signing key (no token was issued for it, or the key was deleted): generate a new token with kumactl generate dataplane-token"
    )]
    NoSigningKey {
        /// The mesh.
        mesh: String,
    },
    /// A token request is not acceptable.
    #[error("invalid token request: {field}: {reason}")]
    InvalidRequest {
        /// The request field, e.g. `validFor`.
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The stored signing key cannot be used.
    #[error(
        "the dataplane token signing key of mesh {mesh:?} (Secret {SIGNING_KEY_SECRET:?}) is not usable: {reason}; delete the Secret to have a new key generated (every token of the mesh then has to be reissued)"
    )]
    Key {
        /// The mesh.
        mesh: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store failed.
    #[error("dataplane tokens: {0}")]
    Store(#[source] ManagerError),
}

impl TokenError {
    /// Whether the error is about the presented credentials (the proxy should
    /// be refused as unauthenticated), rather than a control-plane failure
    /// or a valid token that does not allow the Dataplane
    /// ([`Self::is_forbidden`]).
    pub fn is_unauthenticated(&self) -> bool {
        !self.is_forbidden()
            && !matches!(
                self,
                TokenError::Store(_) | TokenError::Key { .. } | TokenError::InvalidRequest { .. }
            )
    }

    /// Whether a valid token does not allow the Dataplane the proxy runs as
    /// (its type or tags; the proxy should be refused as forbidden).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            TokenError::WrongType { .. }
                | TokenError::TagMissing { .. }
                | TokenError::TagNotAllowed { .. }
        )
    }
}

impl TokenClaims {
    /// Whether the token allows the proxy to run as the Dataplane `name`
    /// with `dataplane` (the mesh was checked when the token was verified).
    /// Refused when:
    ///
    /// - the token names a Dataplane and it is not `name`
    ///   ([`TokenError::WrongName`]);
    /// - the token's type does not fit: an `ingress` token for a Dataplane
    ///   without `networking.ingress`, or a `dataplane` token for one with
    ///   it ([`TokenError::WrongType`]);
    /// - the token has tags and some inbound (or the gateway) does not carry,
    ///   for each tag of the token, one of the token's values for it
    ///   ([`TokenError::TagMissing`], [`TokenError::TagNotAllowed`]).
    ///
    /// Errors name the tag and value, never the token.
    pub fn authorize(&self, name: &str, dataplane: &DataplaneSpec) -> Result<(), TokenError> {
        if let Some(token_name) = &self.name
            && token_name != name
        {
            return Err(TokenError::WrongName {
                token_name: token_name.clone(),
                name: name.to_string(),
            });
        }
        let dataplane_type = TokenType::of(dataplane);
        if self.token_type != dataplane_type {
            return Err(TokenError::WrongType {
                token_type: self.token_type,
                dataplane_type,
            });
        }
        let net = &dataplane.networking;
        let places = net
            .inbound
            .iter()
            .enumerate()
            .map(|(i, inbound)| (format!("networking.inbound[{i}]"), &inbound.tags))
            .chain(
                net.gateway
                    .iter()
                    .map(|g| ("networking.gateway".to_string(), &g.tags)),
            );
        for (place, tags) in places {
            for (tag, allowed) in &self.tags {
                match tags.get(tag) {
                    None => {
                        return Err(TokenError::TagMissing {
                            tag: tag.clone(),
                            place,
                        });
                    }
                    Some(value) if !allowed.contains(value) => {
                        return Err(TokenError::TagNotAllowed {
                            tag: tag.clone(),
                            value: value.clone(),
                            allowed: allowed.clone(),
                            place,
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} (seconds since the epoch)"))
}

/// The token with an optional `Bearer ` prefix (any case) and surrounding
/// whitespace removed, as sent in an `authorization` header or metadata.
pub fn strip_bearer(value: &str) -> &str {
    let v = value.trim();
    match (v.get(..6), v.get(6..)) {
        (Some(prefix), Some(rest))
            if prefix.eq_ignore_ascii_case("bearer")
                && (rest.is_empty() || rest.starts_with(char::is_whitespace)) =>
        {
            rest.trim_start()
        }
        _ => v,
    }
}

/// The claims as they travel in the JWT (Kuma's names). `Name` is empty
/// for a token without a name; tokens issued before `Tags` and `Type`
/// existed lack them.
#[derive(Serialize, Deserialize)]
struct WireClaims {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Mesh")]
    mesh: String,
    #[serde(rename = "Tags", default)]
    tags: TokenTags,
    #[serde(rename = "Type", default)]
    token_type: String,
    #[serde(default)]
    iat: u64,
    exp: u64,
    #[serde(default)]
    jti: String,
}

/// A mesh's parsed signing key, tagged with the Secret version and the
/// bytes it came from.
struct MeshKey {
    version: Option<Version>,
    /// The Secret's PKCS#8 document: a cached key is used only while the
    /// stored Secret has both the same version and the same bytes, so a key
    /// deleted and re-created (even by a store that reused a version) can
    /// never verify again.
    pkcs8: Vec<u8>,
    signing: EncodingKey,
    verifying: DecodingKey,
}

/// Issues and verifies dataplane tokens, keeping each mesh's signing key in
/// a Secret of that mesh. Cheap to clone (shared key cache).
#[derive(Clone)]
pub struct DataplaneTokens {
    manager: ResourceManager,
    /// Parsed keys per mesh. The Secret is read on every use (one store
    /// read) and re-parsed only when its version changed, so a replaced or
    /// deleted key takes effect at once, also for tokens already cached.
    keys: Arc<Mutex<HashMap<String, Arc<MeshKey>>>>,
    rng: SystemRandom,
}

impl fmt::Debug for DataplaneTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataplaneTokens").finish_non_exhaustive()
    }
}

fn secs_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn store_error(e: ManagerError) -> TokenError {
    TokenError::Store(e)
}

fn malformed(e: &jsonwebtoken::errors::Error) -> TokenError {
    // Only fixed descriptions: library messages may quote parts of the token.
    let reason = match e.kind() {
        ErrorKind::InvalidToken => {
            "it is not a JWT (three base64url parts separated by dots)".to_string()
        }
        ErrorKind::Base64(_) => "a part of it is not base64url".to_string(),
        ErrorKind::Utf8(_) => "a part of it is not UTF-8".to_string(),
        ErrorKind::Json(j) if j.to_string().starts_with("missing field") => {
            let msg = j.to_string();
            let field = msg.split('`').nth(1).unwrap_or("?");
            format!("its claims lack {field:?}")
        }
        ErrorKind::Json(_) => "its header or claims are not the expected JSON".to_string(),
        ErrorKind::MissingRequiredClaim(c) => format!("its claims lack {c:?}"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "it is not signed with EdDSA".to_string()
        }
        _ => "it cannot be decoded".to_string(),
    };
    TokenError::Malformed(reason)
}

impl DataplaneTokens {
    /// Tokens whose signing keys live in `manager`'s store.
    pub fn new(manager: ResourceManager) -> Self {
        Self {
            manager,
            keys: Arc::new(Mutex::new(HashMap::new())),
            rng: SystemRandom::new(),
        }
    }

    /// Issues a token for the Dataplane `req.name` of mesh `req.mesh`,
    /// creating the mesh's signing key on first use.
    pub async fn issue(&self, req: &TokenRequest) -> Result<String, TokenError> {
        self.issue_at(req, SystemTime::now()).await
    }

    /// [`Self::issue`] as of `now` (tests issue tokens in the past).
    async fn issue_at(&self, req: &TokenRequest, now: SystemTime) -> Result<String, TokenError> {
        if req.name != req.name.trim() {
            return Err(TokenError::InvalidRequest {
                field: "name",
                reason: "must not start or end with whitespace: the name of the Dataplane the token is for (empty: any Dataplane whose tags fit)".into(),
            });
        }
        check_tags(&req.tags)?;
        if req.mesh.trim().is_empty() {
            return Err(TokenError::InvalidRequest {
                field: "mesh",
                reason: "must be set: the mesh of the Dataplane the token is for".into(),
            });
        }
        let valid_for = req.valid_for.unwrap_or(DEFAULT_VALIDITY);
        if valid_for < Duration::from_secs(1) {
            return Err(TokenError::InvalidRequest {
                field: "validFor",
                reason: "must be at least 1s (e.g. 24h; default 8760h)".into(),
            });
        }
        let iat = secs_since_epoch(now);
        let exp = iat
            .checked_add(valid_for.as_secs())
            .filter(|e| i64::try_from(*e).is_ok())
            .ok_or_else(|| TokenError::InvalidRequest {
                field: "validFor",
                reason: "is too long (e.g. 24h; default 8760h)".into(),
            })?;
        let mesh_key = ResourceKey::new(ResourceType::Mesh, None, &req.mesh);
        match self.manager.get(&mesh_key).await {
            Ok(_) => {}
            Err(ManagerError::Store(StoreError::NotFound(_))) => {
                return Err(TokenError::UnknownMesh(req.mesh.clone()));
            }
            Err(e) => return Err(store_error(e)),
        }
        let key = self.mesh_key(&req.mesh, true).await?;
        let mut id = [0u8; 16];
        self.rng.fill(&mut id).map_err(|_| TokenError::Key {
            mesh: req.mesh.clone(),
            reason: "the system random number generator failed".into(),
        })?;
        let claims = WireClaims {
            name: req.name.clone(),
            mesh: req.mesh.clone(),
            tags: req.tags.clone(),
            token_type: req.token_type.as_str().to_string(),
            iat,
            exp,
            jti: id.iter().map(|b| format!("{b:02x}")).collect(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key.signing).map_err(|e| {
            TokenError::Key {
                mesh: req.mesh.clone(),
                reason: format!("signing failed: {e}"),
            }
        })
    }

    /// Verifies `token` for the Dataplane `name` of mesh `mesh`: a JWT of
    /// this control plane signed with the mesh's key, not expired, naming
    /// that mesh and, when the token has a name, that Dataplane. A `Bearer `
    /// prefix is accepted. The Dataplane itself is checked by
    /// [`TokenClaims::authorize`].
    pub async fn verify(
        &self,
        token: &str,
        mesh: &str,
        name: &str,
    ) -> Result<TokenClaims, TokenError> {
        let token = strip_bearer(token);
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| malformed(&e))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Malformed(format!(
                "it is signed with {:?}, not EdDSA",
                header.alg
            )));
        }
        // Read the claims first, to say which mesh a token of another mesh
        // is for; nothing is trusted before the signature is checked below.
        let mut peek = Validation::new(Algorithm::EdDSA);
        peek.insecure_disable_signature_validation();
        peek.validate_exp = false;
        peek.validate_aud = false;
        let unverified =
            jsonwebtoken::decode::<WireClaims>(token, &DecodingKey::from_secret(&[]), &peek)
                .map_err(|e| malformed(&e))?
                .claims;
        if unverified.mesh != mesh {
            return Err(TokenError::WrongMesh {
                token_mesh: unverified.mesh,
                mesh: mesh.to_string(),
            });
        }
        let key = self.mesh_key(mesh, false).await?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = EXPIRY_LEEWAY_SECS;
        // `exp` is checked below, to report when the token expired.
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<WireClaims>(token, &key.verifying, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature {
                    mesh: mesh.to_string(),
                },
                _ => malformed(&e),
            })?
            .claims;
        let expires_at = UNIX_EPOCH + Duration::from_secs(claims.exp);
        if secs_since_epoch(SystemTime::now()) >= claims.exp.saturating_add(EXPIRY_LEEWAY_SECS) {
            return Err(TokenError::Expired { at: expires_at });
        }
        if !claims.name.is_empty() && claims.name != name {
            return Err(TokenError::WrongName {
                token_name: claims.name,
                name: name.to_string(),
            });
        }
        let token_type = claims.token_type.parse::<TokenType>().map_err(|_| {
            TokenError::Malformed("its Type claim is not dataplane or ingress".into())
        })?;
        Ok(TokenClaims {
            name: (!claims.name.is_empty()).then_some(claims.name),
            mesh: claims.mesh,
            tags: claims.tags,
            token_type,
            issued_at: UNIX_EPOCH + Duration::from_secs(claims.iat),
            expires_at,
            id: claims.jti,
        })
    }

    /// The mesh's signing key, from the cache when the Secret is unchanged.
    /// With `create`, a missing key is generated and stored (a concurrent
    /// creator wins and its key is used).
    async fn mesh_key(&self, mesh: &str, create: bool) -> Result<Arc<MeshKey>, TokenError> {
        let key = ResourceKey::new(ResourceType::Secret, Some(mesh), SIGNING_KEY_SECRET);
        let secret = match self.manager.get(&key).await {
            Ok(s) => s,
            Err(ManagerError::Store(StoreError::NotFound(_))) if create => {
                self.create_key(mesh, &key).await?
            }
            Err(ManagerError::Store(StoreError::NotFound(_))) => {
                self.forget(mesh);
                let mesh_key = ResourceKey::new(ResourceType::Mesh, None, mesh);
                return Err(match self.manager.get(&mesh_key).await {
                    Ok(_) => TokenError::NoSigningKey { mesh: mesh.into() },
                    Err(ManagerError::Store(StoreError::NotFound(_))) => {
                        TokenError::UnknownMesh(mesh.into())
                    }
                    Err(e) => store_error(e),
                });
            }
            Err(e) => return Err(store_error(e)),
        };
        let bytes = secret_bytes(&secret);
        if let Some(cached) = self.cached(mesh)
            && cached.version.is_some()
            && cached.version == secret.meta.version
            && cached.pkcs8 == bytes
        {
            return Ok(cached);
        }
        let parsed = Arc::new(parse_key(mesh, &secret)?);
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(mesh.to_string(), parsed.clone());
        }
        Ok(parsed)
    }

    fn cached(&self, mesh: &str) -> Option<Arc<MeshKey>> {
        self.keys.lock().ok()?.get(mesh).cloned()
    }

    fn forget(&self, mesh: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.remove(mesh);
        }
    }

    async fn create_key(&self, mesh: &str, key: &ResourceKey) -> Result<Arc<Resource>, TokenError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&self.rng).map_err(|_| TokenError::Key {
            mesh: mesh.into(),
            reason: "generating an Ed25519 key failed".into(),
        })?;
        let secret = Resource::new(
            Some(mesh),
            SIGNING_KEY_SECRET,
            SecretSpec::from_bytes(pkcs8.as_ref()),
        );
        match self.manager.create(secret).await {
            Ok(created) => Ok(created),
            // Another issuer created it first: use theirs.
            Err(ManagerError::Store(StoreError::AlreadyExists(_))) => {
                self.manager.get(key).await.map_err(store_error)
            }
            Err(ManagerError::MeshNotFound(m)) => Err(TokenError::UnknownMesh(m)),
            Err(e) => Err(store_error(e)),
        }
    }
}

fn secret_bytes(secret: &Resource) -> Vec<u8> {
    secret
        .spec_as::<SecretSpec>()
        .map(SecretSpec::bytes)
        .unwrap_or_default()
}

/// Checks the tags of a token request: tag names and values non-empty,
/// at least one value per tag.
fn check_tags(tags: &TokenTags) -> Result<(), TokenError> {
    for (tag, values) in tags {
        if tag.trim().is_empty() {
            return Err(TokenError::InvalidRequest {
                field: "tags",
                reason: "a tag name is empty (e.g. {\"kuma.io/service\": [\"backend\"]})".into(),
            });
        }
        if values.is_empty() || values.iter().any(|v| v.trim().is_empty()) {
            return Err(TokenError::InvalidRequest {
                field: "tags",
                reason: format!(
                    "tag {tag:?} must list one or more non-empty values (e.g. {{\"kuma.io/service\": [\"backend\"]}})"
                ),
            });
        }
    }
    Ok(())
}

fn parse_key(mesh: &str, secret: &Resource) -> Result<MeshKey, TokenError> {
    let bytes = secret_bytes(secret);
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&bytes).map_err(|e| TokenError::Key {
        mesh: mesh.into(),
        reason: format!("it is not an Ed25519 PKCS#8 key ({e})"),
    })?;
    Ok(MeshKey {
        version: secret.meta.version,
        signing: EncodingKey::from_ed_der(&bytes),
        verifying: DecodingKey::from_ed_der(pair.public_key().as_ref()),
        pkcs8: bytes,
    })
}

mod auth;
pub use auth::{DataplaneAuth, authorize};

#[cfg(test)]
mod tests;
