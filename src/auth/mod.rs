//! Bearer JWT authentication.
//!
//! Only asymmetric algorithms are accepted, and only the ones the key is
//! for: a token cannot pick HS256 and have a public key used as an HMAC
//! secret, nor `none`. `exp`, `sub` and the audience (in `aud`, or in
//! `client_id` for providers whose access tokens carry no `aud`) are
//! required; `nbf` and `iss` are checked; the caller is `sub`.

mod keys;

use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde::Deserialize;

pub use keys::{KeyError, KeyStore};

/// Why a token was refused. Each is answered 401; the reason is logged at
/// debug level and sent as the `detail` (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("an Authorization: Bearer token is required")]
    MissingToken,
    #[error("the Authorization header must use the Bearer scheme")]
    WrongScheme,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    AlgorithmNotAllowed,
    #[error("the token's signing key is unknown")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token lacks a required claim (exp, sub, and aud or client_id)")]
    MissingClaim,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    client_id: Option<String>,
}

/// Who a token must be meant for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    pub value: String,
    /// In `client_id` rather than `aud`.
    pub client_id: bool,
}

/// Verifies tokens and tells who sent them.
pub struct Authenticator {
    keys: KeyStore,
    audience: Audience,
    issuer: Option<String>,
    leeway: Duration,
}

impl Authenticator {
    pub fn new(
        keys: KeyStore,
        audience: Audience,
        issuer: Option<String>,
        leeway: Duration,
    ) -> Self {
        Self {
            keys,
            audience,
            issuer,
            leeway,
        }
    }

    /// The user id of the `Authorization` header's bearer token.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<String, AuthError> {
        let header = authorization.ok_or(AuthError::MissingToken)?;
        let (scheme, token) = header
            .trim()
            .split_once(' ')
            .ok_or(AuthError::WrongScheme)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::WrongScheme);
        }
        self.verify(token.trim()).await
    }

    pub async fn verify(&self, token: &str) -> Result<String, AuthError> {
        // `alg: none` and unknown algorithms fail to parse here.
        let header = decode_header(token).map_err(|err| match err.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithmName => AuthError::AlgorithmNotAllowed,
            _ => AuthError::Malformed,
        })?;
        if !keys::is_asymmetric(header.alg) {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let key = self.keys.find(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        if self.audience.client_id {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "sub"]);
        } else {
            validation.set_audience(&[&self.audience.value]);
            validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        }
        let data = decode::<Claims>(token, &key, &validation).map_err(classify)?;
        if data.claims.sub.is_empty() {
            return Err(AuthError::MissingClaim);
        }
        if self.audience.client_id {
            match data.claims.client_id {
                None => return Err(AuthError::MissingClaim),
                Some(client) if client != self.audience.value => {
                    return Err(AuthError::WrongAudience);
                }
                Some(_) => {}
            }
        }
        Ok(data.claims.sub)
    }
}

fn classify(err: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaim,
        ErrorKind::InvalidAlgorithm => AuthError::AlgorithmNotAllowed,
        _ => AuthError::Malformed,
    }
}

/// Algorithms a key of this family may verify.
pub fn algorithms_for(family: jsonwebtoken::AlgorithmFamily) -> &'static [Algorithm] {
    use jsonwebtoken::AlgorithmFamily;
    match family {
        AlgorithmFamily::Rsa => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmFamily::Ec => &[Algorithm::ES256, Algorithm::ES384],
        AlgorithmFamily::Ed => &[Algorithm::EdDSA],
        AlgorithmFamily::Hmac => &[],
    }
}
