//! What the servers that accept proxies (bootstrap, ADS, SDS) call:
//! [`DataplaneAuth`] verifies a presented token, [`authorize`] checks the
//! Dataplane against its claims.

use super::{DataplaneTokens, TokenClaims, TokenError, strip_bearer};
use crate::resource::DataplaneSpec;

/// Whether and how the servers that accept proxies check their tokens
/// (`dpServer.auth.type`).
#[derive(Clone, Debug)]
pub enum DataplaneAuth {
    /// No checking (`none`): any proxy may connect as any Dataplane.
    Off,
    /// Every proxy must present a valid token for its Dataplane (`dpToken`).
    Tokens(DataplaneTokens),
}

impl DataplaneAuth {
    /// Whether tokens are checked.
    pub fn is_on(&self) -> bool {
        matches!(self, DataplaneAuth::Tokens(_))
    }

    /// Checks the token a proxy presented (`None` or empty: none) for the
    /// Dataplane `name` of `mesh` ([`DataplaneTokens::verify`]); always `Ok`
    /// when off. The Dataplane itself is not looked at: see
    /// [`Self::authenticate`] and [`TokenClaims::authorize`].
    pub async fn check(
        &self,
        token: Option<&str>,
        mesh: &str,
        name: &str,
    ) -> Result<(), TokenError> {
        self.authenticate(token, mesh, name).await.map(|_| ())
    }

    /// Verifies the token a proxy presented (`None` or empty: none) for the
    /// Dataplane `name` of `mesh` and returns its claims, to authorize the
    /// Dataplane with ([`TokenClaims::authorize`], or [`authorize`]);
    /// `Ok(None)` when off.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        mesh: &str,
        name: &str,
    ) -> Result<Option<TokenClaims>, TokenError> {
        match self {
            DataplaneAuth::Off => Ok(None),
            DataplaneAuth::Tokens(tokens) => {
                let token = token.map(strip_bearer).filter(|t| !t.is_empty());
                match token {
                    None => Err(TokenError::Missing),
                    Some(t) => tokens.verify(t, mesh, name).await.map(Some),
                }
            }
        }
    }
}

/// [`TokenClaims::authorize`] when there are claims; `Ok` without (token
/// checks are off).
pub fn authorize(
    claims: Option<&TokenClaims>,
    name: &str,
    dataplane: &DataplaneSpec,
) -> Result<(), TokenError> {
    claims.map_or(Ok(()), |c| c.authorize(name, dataplane))
}
