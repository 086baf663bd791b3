//! User tokens: what a person or a tool presents to the public HTTP API
//! (`Authorization: Bearer <token>`) to be allowed writes.
//!
//! Kuma's model: a token is a JWT signed with the control plane's user
//! token signing key, naming a user (`Name`) and the groups it belongs to
//! (`Groups`); members of [`ADMIN_GROUP`] may do everything. The signing key
//! (Ed25519, PKCS#8, base64) is the global Config
//! [`SIGNING_KEY_CONFIG`]; the admin user token issued at first start is the
//! Config [`ADMIN_TOKEN_CONFIG`] (Configs are never served by the public
//! API; the API answers `GET /global-secrets/admin-user-token` from an
//! admin caller, which includes localhost). Deleting the signing key
//! revokes every user token; [`UserTokens::ensure_admin_token`] then makes
//! a new key and a new admin token.
//!
//! Errors never contain the token.
//!
//! ```
//! use kuma_core::manager::ResourceManager;
//! use kuma_core::store::MemoryStore;
//! use kuma_core::user_tokens::{UserTokenRequest, UserTokens, ADMIN_GROUP};
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let users = UserTokens::new(ResourceManager::new(Arc::new(MemoryStore::new())));
//! let admin = users.ensure_admin_token().await.unwrap();
//! assert!(users.verify(&admin).await.unwrap().is_admin());
//! let john = users
//!     .issue(&UserTokenRequest { name: "john".into(), groups: vec!["team-a".into()], valid_for: None })
//!     .await
//!     .unwrap();
//! let who = users.verify(&format!("Bearer {john}")).await.unwrap();
//! assert_eq!(who.name, "john");
//! assert!(!who.is_admin());
//! # });
//! ```

use crate::manager::{ManagerError, ResourceManager};
use crate::resource::{ConfigSpec, Resource, ResourceKey, ResourceType, Version};
use crate::store::StoreError;
use crate::tokens::strip_bearer;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The global Config holding the user token signing key (base64 PKCS#8).
pub const SIGNING_KEY_CONFIG: &str = "user-token-signing-key";

/// The global Config holding the admin user token.
pub const ADMIN_TOKEN_CONFIG: &str = "admin-user-token";

/// The group whose members may do everything (Kuma's name).
pub const ADMIN_GROUP: &str = "mesh-system:admin";

/// The group every holder of a valid token is in (Kuma's name).
pub const AUTHENTICATED_GROUP: &str = "mesh-system:authenticated";

/// The name of the admin user the admin token is issued to.
pub const ADMIN_USER: &str = "mesh-system:admin";

/// How long a user token is valid when the request does not say (`8760h`).
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(8760 * 3600);

/// How long the admin user token created at start is valid (10 years; it
/// is revoked by rotating the signing key, not by expiry).
pub const ADMIN_TOKEN_VALIDITY: Duration = Duration::from_secs(10 * 8760 * 3600);

/// What to issue a user token for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTokenRequest {
    /// The user's name.
    pub name: String,
    /// The groups the user belongs to ([`ADMIN_GROUP`] for an admin).
    pub groups: Vec<String>,
    /// How long the token is valid; `None`: [`DEFAULT_VALIDITY`].
    pub valid_for: Option<Duration>,
}

/// Who a verified user token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    /// The user's name (`Name`).
    pub name: String,
    /// The token's groups (`Groups`) and [`AUTHENTICATED_GROUP`].
    pub groups: Vec<String>,
}

impl UserIdentity {
    /// Whether the user is in [`ADMIN_GROUP`].
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == ADMIN_GROUP)
    }
}

/// Why a user token could not be issued or was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UserTokenError {
    /// The token is not a JWT of the expected shape.
    #[error("user token is malformed: {0}")]
    Malformed(String),
    /// The signature does not verify with the signing key.
    #[error(
        "user token signature is not valid: it was not issued by this control plane, or the user token signing key was rotated since"
    )]
    BadSignature,
    /// The token's `exp` has passed.
    #[error("user token expired at {at} (seconds since the epoch): get a new one")]
    Expired {
        /// When it expired, in seconds since the epoch.
        at: u64,
    },
    /// There is no signing key, so no token can be valid.
    #[error(
        "there is no user token signing key (it was deleted): restart the control plane or rotate the key to get a new admin user token"
    )]
    NoSigningKey,
    /// A token request is not acceptable.
    #[error("invalid user token request: {field}: {reason}")]
    InvalidRequest {
        /// The request field, e.g. `validFor`.
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The stored signing key cannot be used.
    #[error(
        "the user token signing key (Config {SIGNING_KEY_CONFIG:?}) is not usable: {0}; delete it to have a new key generated"
    )]
    Key(String),
    /// The store failed.
    #[error("user tokens: {0}")]
    Store(#[source] ManagerError),
}

impl UserTokenError {
    /// Whether the error is about the presented token (answer 401), rather
    /// than a control-plane failure.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            Self::Malformed(_) | Self::BadSignature | Self::Expired { .. } | Self::NoSigningKey
        )
    }
}

/// The claims as they travel in the JWT.
#[derive(Serialize, Deserialize)]
struct WireClaims {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Groups", default)]
    groups: Vec<String>,
    #[serde(default)]
    iat: u64,
    exp: u64,
    #[serde(default)]
    jti: String,
}

struct Key {
    version: Option<Version>,
    signing: EncodingKey,
    verifying: DecodingKey,
}

/// Issues and verifies user tokens with the signing key kept in the store.
/// Cheap to clone.
#[derive(Clone)]
pub struct UserTokens {
    manager: ResourceManager,
    /// The parsed key, re-parsed only when the Config's version changed (it
    /// is read on every use, so a deleted key takes effect at once).
    key: Arc<Mutex<Option<Arc<Key>>>>,
    rng: SystemRandom,
}

impl fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTokens").finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn config_key(name: &str) -> ResourceKey {
    ResourceKey::new(ResourceType::Config, None, name)
}

fn malformed(e: &jsonwebtoken::errors::Error) -> UserTokenError {
    // Only fixed descriptions: library messages may quote parts of the token.
    let reason = match e.kind() {
        ErrorKind::InvalidToken => "it is not a JWT (three base64url parts separated by dots)",
        ErrorKind::Base64(_) => "a part of it is not base64url",
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => "its header or claims are not the expected JSON",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "it is not signed with EdDSA"
        }
        _ => "it cannot be decoded",
    };
    UserTokenError::Malformed(reason.into())
}

impl UserTokens {
    /// User tokens whose signing key lives in `manager`'s store.
    pub fn new(manager: ResourceManager) -> Self {
        Self {
            manager,
            key: Arc::new(Mutex::new(None)),
            rng: SystemRandom::new(),
        }
    }

    /// Issues a token for `req`, creating the signing key if there is none.
    pub async fn issue(&self, req: &UserTokenRequest) -> Result<String, UserTokenError> {
        if req.name.trim().is_empty() {
            return Err(UserTokenError::InvalidRequest {
                field: "name",
                reason: "must be set: the name of the user".into(),
            });
        }
        let valid_for = req.valid_for.unwrap_or(DEFAULT_VALIDITY);
        if valid_for < Duration::from_secs(1) {
            return Err(UserTokenError::InvalidRequest {
                field: "validFor",
                reason: "must be at least 1s (e.g. 24h; default 8760h)".into(),
            });
        }
        let iat = now_secs();
        let exp = iat
            .checked_add(valid_for.as_secs())
            .filter(|e| i64::try_from(*e).is_ok())
            .ok_or_else(|| UserTokenError::InvalidRequest {
                field: "validFor",
                reason: "is too long (e.g. 24h; default 8760h)".into(),
            })?;
        let key = self.key(true).await?;
        let mut id = [0u8; 16];
        self.rng
            .fill(&mut id)
            .map_err(|_| UserTokenError::Key("the system random number generator failed".into()))?;
        let claims = WireClaims {
            name: req.name.clone(),
            groups: req.groups.clone(),
            iat,
            exp,
            jti: id.iter().map(|b| format!("{b:02x}")).collect(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key.signing)
            .map_err(|e| UserTokenError::Key(format!("signing failed: {e}")))
    }

    /// Verifies `token` (a `Bearer ` prefix is accepted): signed with the
    /// current key and not expired.
    pub async fn verify(&self, token: &str) -> Result<UserIdentity, UserTokenError> {
        let token = strip_bearer(token);
        if token.is_empty() {
            return Err(UserTokenError::Malformed("it is empty".into()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| malformed(&e))?;
        if header.alg != Algorithm::EdDSA {
            return Err(UserTokenError::Malformed(
                "it is not signed with EdDSA".into(),
            ));
        }
        let key = self.key(false).await?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<WireClaims>(token, &key.verifying, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => UserTokenError::BadSignature,
                _ => malformed(&e),
            })?
            .claims;
        if now_secs() >= claims.exp {
            return Err(UserTokenError::Expired { at: claims.exp });
        }
        let mut groups = claims.groups;
        if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.into());
        }
        Ok(UserIdentity {
            name: claims.name,
            groups,
        })
    }

    /// The stored admin user token, if it still verifies; otherwise a new
    /// one (and a new signing key if there is none), stored. Run at start,
    /// and after a key rotation.
    pub async fn ensure_admin_token(&self) -> Result<String, UserTokenError> {
        if let Some(token) = self.stored_admin_token().await?
            && self.verify(&token).await.is_ok_and(|u| u.is_admin())
        {
            return Ok(token);
        }
        let token = self
            .issue(&UserTokenRequest {
                name: ADMIN_USER.into(),
                groups: vec![ADMIN_GROUP.into()],
                valid_for: Some(ADMIN_TOKEN_VALIDITY),
            })
            .await?;
        let resource = Resource::new(None, ADMIN_TOKEN_CONFIG, ConfigSpec::new(token.clone()));
        self.manager
            .upsert(resource)
            .await
            .map_err(UserTokenError::Store)?;
        Ok(token)
    }

    /// The admin user token kept in the store (`None`: not created yet).
    pub async fn stored_admin_token(&self) -> Result<Option<String>, UserTokenError> {
        match self.manager.get(&config_key(ADMIN_TOKEN_CONFIG)).await {
            Ok(r) => Ok(r.spec_as::<ConfigSpec>().map(|c| c.config.clone())),
            Err(ManagerError::Store(StoreError::NotFound(_))) => Ok(None),
            Err(e) => Err(UserTokenError::Store(e)),
        }
    }

    /// Rotates the signing key: deletes it (every user token stops being
    /// valid at once) and issues a new admin token with a new key.
    pub async fn rotate(&self) -> Result<String, UserTokenError> {
        match self.manager.delete(&config_key(SIGNING_KEY_CONFIG)).await {
            Ok(()) | Err(ManagerError::Store(StoreError::NotFound(_))) => {}
            Err(e) => return Err(UserTokenError::Store(e)),
        }
        if let Ok(mut k) = self.key.lock() {
            *k = None;
        }
        self.ensure_admin_token().await
    }

    async fn key(&self, create: bool) -> Result<Arc<Key>, UserTokenError> {
        let stored = match self.manager.get(&config_key(SIGNING_KEY_CONFIG)).await {
            Ok(r) => r,
            Err(ManagerError::Store(StoreError::NotFound(_))) if create => {
                self.create_key().await?
            }
            Err(ManagerError::Store(StoreError::NotFound(_))) => {
                return Err(UserTokenError::NoSigningKey);
            }
            Err(e) => return Err(UserTokenError::Store(e)),
        };
        if let Some(cached) = self.key.lock().ok().and_then(|k| k.clone())
            && cached.version.is_some()
            && cached.version == stored.meta.version
        {
            return Ok(cached);
        }
        let text = stored
            .spec_as::<ConfigSpec>()
            .map(|c| c.config.clone())
            .unwrap_or_default();
        let der = BASE64
            .decode(text.trim())
            .map_err(|_| UserTokenError::Key("it is not base64".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| UserTokenError::Key(format!("it is not an Ed25519 PKCS#8 key ({e})")))?;
        let key = Arc::new(Key {
            version: stored.meta.version,
            signing: EncodingKey::from_ed_der(&der),
            verifying: DecodingKey::from_ed_der(pair.public_key().as_ref()),
        });
        if let Ok(mut k) = self.key.lock() {
            *k = Some(key.clone());
        }
        Ok(key)
    }

    async fn create_key(&self) -> Result<Arc<Resource>, UserTokenError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&self.rng)
            .map_err(|_| UserTokenError::Key("generating an Ed25519 key failed".into()))?;
        let resource = Resource::new(
            None,
            SIGNING_KEY_CONFIG,
            ConfigSpec::new(BASE64.encode(pkcs8.as_ref())),
        );
        match self.manager.create(resource).await {
            Ok(created) => Ok(created),
            // Another replica created it first: use theirs.
            Err(ManagerError::Store(StoreError::AlreadyExists(_))) => self
                .manager
                .get(&config_key(SIGNING_KEY_CONFIG))
                .await
                .map_err(UserTokenError::Store),
            Err(e) => Err(UserTokenError::Store(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn users() -> UserTokens {
        UserTokens::new(ResourceManager::new(Arc::new(MemoryStore::new())))
    }

    #[tokio::test]
    async fn the_admin_token_is_kept_and_rotation_revokes_every_token() {
        let users = users();
        let admin = users.ensure_admin_token().await.unwrap();
        assert_eq!(users.ensure_admin_token().await.unwrap(), admin);
        assert_eq!(
            users.stored_admin_token().await.unwrap(),
            Some(admin.clone())
        );
        let john = users
            .issue(&UserTokenRequest {
                name: "john".into(),
                groups: vec![],
                valid_for: None,
            })
            .await
            .unwrap();
        let who = users.verify(&john).await.unwrap();
        assert_eq!(who.groups, vec![AUTHENTICATED_GROUP.to_string()]);

        let new_admin = users.rotate().await.unwrap();
        assert_ne!(new_admin, admin);
        assert_eq!(
            users.verify(&admin).await.unwrap_err(),
            UserTokenError::BadSignature
        );
        assert_eq!(
            users.verify(&john).await.unwrap_err(),
            UserTokenError::BadSignature
        );
        assert!(users.verify(&new_admin).await.unwrap().is_admin());
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_without_echoing_them() {
        let users = users();
        // A token signed by another control plane.
        let other = UserTokens::new(ResourceManager::new(Arc::new(MemoryStore::new())));
        let foreign = other.ensure_admin_token().await.unwrap();
        assert_eq!(
            users.verify(&foreign).await.unwrap_err(),
            UserTokenError::NoSigningKey
        );
        users.ensure_admin_token().await.unwrap();
        let e = users.verify("not-a-jwt").await.unwrap_err();
        assert!(matches!(e, UserTokenError::Malformed(_)), "{e}");
        assert!(!e.to_string().contains("not-a-jwt"));
        assert_eq!(
            users.verify(&foreign).await.unwrap_err(),
            UserTokenError::BadSignature
        );
        assert!(matches!(
            users
                .issue(&UserTokenRequest {
                    name: " ".into(),
                    groups: vec![],
                    valid_for: None
                })
                .await,
            Err(UserTokenError::InvalidRequest { field: "name", .. })
        ));
    }
}
