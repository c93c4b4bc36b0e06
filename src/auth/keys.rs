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
        let jwks = Arc::new(Jwks::new(client, url, min_refresh));
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
    /// When the last fetch started; held only for a read or a write, never
    /// across a fetch, so requests with known keys never wait for one.
    last_fetch: std::sync::Mutex<Option<Instant>>,
    /// One fetch at a time; a request with an unknown kid waits for the one
    /// in flight (bounded by the HTTP client's timeout) instead of starting
    /// another.
    fetching: Mutex<()>,
}

impl Jwks {
    fn new(client: reqwest::Client, url: String, min_refresh: Duration) -> Self {
        Self {
            client,
            url,
            min_refresh,
            keys: RwLock::new(HashMap::new()),
            last_fetch: std::sync::Mutex::new(None),
            fetching: Mutex::new(()),
        }
    }

    async fn lookup(&self, kid: Option<&str>) -> Option<VerifyingKey> {
        let keys = self.keys.read().await;
        match kid {
            Some(kid) => keys.get(kid).cloned(),
            // A token without `kid` is only unambiguous with a single key.
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        }
    }

    fn since_last_fetch(&self) -> Option<Duration> {
        let last = self.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
        last.map(|at| at.elapsed())
    }

    async fn find(self: &Arc<Self>, kid: Option<&str>) -> Result<VerifyingKey, AuthError> {
        // Keys the provider removed (rotated out, compromised) stop being
        // accepted within MAX_AGE; the refresh runs aside, with cached keys
        // answering meanwhile.
        if self.since_last_fetch().is_none_or(|age| age > MAX_AGE) {
            let jwks = Arc::clone(self);
            tokio::spawn(async move { jwks.refresh().await });
        }
        if let Some(key) = self.lookup(kid).await {
            return Ok(key);
        }
        // An unknown kid may be a rotation: fetch again (unless the floor
        // says we just did), then look again either way, since a fetch by
        // another request may have brought the key.
        self.refresh().await;
        self.lookup(kid).await.ok_or(AuthError::UnknownKey)
    }

    /// Fetches the set if the floor allows; `true` when it was fetched.
    /// A failed fetch keeps the cached keys: tokens signed by them go on
    /// working through a provider outage.
    async fn refresh(&self) -> bool {
        let _one_at_a_time = self.fetching.lock().await;
        if self
            .since_last_fetch()
            .is_some_and(|age| age < self.min_refresh)
        {
            return false;
        }
        *self.last_fetch.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
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
                // Encryption keys never verify signatures.
                if matches!(
                    jwk.common.public_key_use,
                    Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                ) {
                    return None;
                }
                let family = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
                    AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
                    AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
                    // Symmetric keys have no place in a public JWKS, and
                    // kinds added later are ignored until supported.
                    _ => return None,
                };
                // `alg` is optional in a JWK; when present it pins the
                // algorithm, and a key whose `alg` is not a signing one we
                // support is skipped rather than left unpinned.
                let pinned = match jwk.common.key_algorithm {
                    None => None,
                    Some(alg) => {
                        let name = serde_json::to_value(alg).ok()?;
                        Some(name.as_str()?.parse::<Algorithm>().ok()?)
                    }
                };
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
