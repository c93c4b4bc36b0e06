//! Where verification keys come from: a PEM file, or an identity
//! provider's JWKS, cached and refreshed when a token names a key id we do
//! not know (no more often than a floor allows).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use tokio::sync::{Mutex, RwLock};

use super::{AuthError, algorithms_for};

/// A key and what it may verify.
#[derive(Clone)]
pub struct VerifyingKey {
    key: DecodingKey,
    family: AlgorithmFamily,
    /// A JWK may pin its algorithm; then only that one is accepted.
    pinned: Option<Algorithm>,
}

impl VerifyingKey {
    fn accepts(&self, alg: Algorithm) -> bool {
        algorithms_for(self.family).contains(&alg) && self.pinned.is_none_or(|pinned| pinned == alg)
    }
}

/// Cached keys are fetched again after this long.
const MAX_AGE: Duration = Duration::from_secs(300);

pub fn is_asymmetric(alg: Algorithm) -> bool {
    alg.family() != AlgorithmFamily::Hmac
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JWT_PUBLIC_KEY_FILE {path}: {reason}")]
    File { path: String, reason: String },
}

pub enum KeyStore {
    /// One key from `JWT_PUBLIC_KEY_FILE`, whatever `kid` a token names.
    Static(VerifyingKey),
    Jwks(Arc<Jwks>),
}

impl KeyStore {
    /// Reads a PEM public key (RSA, EC or Ed25519) or an X.509 certificate.
    pub fn from_pem_file(path: &str) -> Result<Self, KeyError> {
        let error = |reason: String| KeyError::File {
            path: path.to_owned(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
        let candidates = [
            (AlgorithmFamily::Rsa, DecodingKey::from_rsa_pem(&pem)),
            (AlgorithmFamily::Ec, DecodingKey::from_ec_pem(&pem)),
            (AlgorithmFamily::Ed, DecodingKey::from_ed_pem(&pem)),
        ];
        candidates
            .into_iter()
            .find_map(|(family, key)| {
                key.ok().map(|key| VerifyingKey {
                    key,
                    family,
                    pinned: None,
                })
            })
            .map(KeyStore::Static)
            .ok_or_else(|| error("not a PEM public key or certificate (RSA, EC or Ed25519)".into()))
    }

    /// Fetches the JWKS once now; an unreachable provider is logged, not
    /// fatal (the keys are fetched again when the first token arrives).
    pub async fn from_jwks_url(
        client: reqwest::Client,
        url: String,
        min_refresh: Duration,
    ) -> Self {
        let jwks = Arc::new(Jwks {
            client,
            url,
            min_refresh,
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
        });
        jwks.refresh().await;
        KeyStore::Jwks(jwks)
    }

    pub(super) async fn find(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, AuthError> {
        let key = match self {
            KeyStore::Static(key) => key.clone(),
            KeyStore::Jwks(jwks) => jwks.find(kid).await?,
        };
        if key.accepts(alg) {
            Ok(key.key)
        } else {
            Err(AuthError::AlgorithmNotAllowed)
        }
    }
}

pub struct Jwks {
    client: reqwest::Client,
    url: String,
    min_refresh: Duration,
    keys: RwLock<HashMap<String, VerifyingKey>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl Jwks {
    async fn lookup(&self, kid: Option<&str>) -> Option<VerifyingKey> {
        let keys = self.keys.read().await;
        match kid {
            Some(kid) => keys.get(kid).cloned(),
            // A token without `kid` is only unambiguous with a single key.
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        }
    }

    async fn find(&self, kid: Option<&str>) -> Result<VerifyingKey, AuthError> {
        // Keys the provider removed (rotated out, compromised) stop being
        // accepted within MAX_AGE even if no unknown kid comes along.
        if self.is_stale().await {
            self.refresh().await;
        }
        if let Some(key) = self.lookup(kid).await {
            return Ok(key);
        }
        // An unknown kid may be a rotation: fetch again, unless we just did.
        if self.refresh().await
            && let Some(key) = self.lookup(kid).await
        {
            return Ok(key);
        }
        Err(AuthError::UnknownKey)
    }

    async fn is_stale(&self) -> bool {
        self.last_fetch
            .lock()
            .await
            .is_none_or(|at| at.elapsed() > MAX_AGE)
    }

    /// Fetches the set if the floor allows; `true` when it was fetched.
    /// A failed fetch keeps the cached keys: tokens signed by them go on
    /// working through a provider outage.
    async fn refresh(&self) -> bool {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "fetched the JWKS");
                *self.keys.write().await = keys;
                true
            }
            Err(reason) => {
                tracing::warn!(url = %self.url, %reason, "cannot fetch the JWKS; keeping cached keys");
                false
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, VerifyingKey>, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let set: JwkSet = response.json().await.map_err(|e| e.to_string())?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let family = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
                    AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
                    AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
                    // Symmetric keys have no place in a public JWKS, and
                    // kinds added later are ignored until supported.
                    _ => return None,
                };
                // `alg` is optional in a JWK; when present it pins the algorithm.
                let pinned = jwk.common.key_algorithm.and_then(|alg| {
                    let name = serde_json::to_value(alg).ok()?;
                    name.as_str()?.parse::<Algorithm>().ok()
                });
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((
                    kid,
                    VerifyingKey {
                        key,
                        family,
                        pinned,
                    },
                ))
            })
            .collect())
    }
}
