//! Background fetching of a JWKS document (feature `jwks`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwapOption, Guard};
use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::{ConfigError, JwtAlgorithm, JwtKey};

/// A JWKS response larger than this is refused.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// At most this many keys are taken from one JWKS document.
const MAX_JWKS_KEYS: usize = 64;

/// On-demand refreshes (unknown `kid`) happen at most this often.
const ON_DEMAND_INTERVAL: Duration = Duration::from_secs(10);

/// After a failed fetch, the next one comes after this, doubling up to the
/// refresh interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// A fetched key set and its generation, which goes up each time a fetch brings
/// a different document. Cached verifications remember the generation they were
/// made with, and are not served under another one.
#[derive(Debug)]
pub(crate) struct KeySet {
    pub(crate) generation: u64,
    pub(crate) keys: Vec<JwtKey>,
}

/// A running JWKS fetcher. Dropping it stops the task.
#[derive(Debug)]
pub(crate) struct Jwks {
    state: Arc<State>,
    task: AbortHandle,
}

#[derive(Debug)]
struct State {
    /// `None` until the first successful fetch.
    keys: ArcSwapOption<KeySet>,
    refresh_now: Notify,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last on-demand refresh, plus one; 0 = never.
    last_on_demand: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("timed out")]
    Timeout,
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("body unreadable or larger than 1 MiB")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("not a JWKS document")]
    Json(#[source] serde_json::Error),
    #[error("no usable key (RS256, ES256 or EdDSA) in the document")]
    NoUsableKey,
}

// === impl Jwks ===

impl Jwks {
    /// Starts fetching `url` in a task on the current tokio runtime.
    pub(crate) fn start(
        url: &str,
        refresh: Duration,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let uri = crate::config::check_jwks_url(url)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime {
                key: "jwks_url".to_owned(),
            })?;
        let state = Arc::new(State {
            keys: ArcSwapOption::empty(),
            refresh_now: Notify::new(),
            epoch: Instant::now(),
            last_on_demand: AtomicU64::new(0),
        });
        let task = runtime
            .spawn(run(
                state.clone(),
                uri,
                refresh.max(Duration::from_millis(100)),
                timeout,
            ))
            .abort_handle();
        Ok(Self { state, task })
    }

    /// The last good key set; `None` before the first successful fetch.
    pub(crate) fn keys(&self) -> Guard<Option<Arc<KeySet>>> {
        self.state.keys.load()
    }

    /// Asks for a fetch now, unless one was asked for in the last 10 s.
    pub(crate) fn refresh_soon(&self) {
        let now = u64::try_from(self.state.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.state.last_on_demand.load(Ordering::Relaxed);
        let interval = u64::try_from(ON_DEMAND_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < interval {
            return;
        }
        if self
            .state
            .last_on_demand
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::debug!("jwks refresh requested for an unknown kid");
            self.state.refresh_now.notify_one();
        }
    }
}

impl Drop for Jwks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(state: Arc<State>, url: Uri, refresh: Duration, timeout: Duration) {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http();
    let host = url.host().unwrap_or_default().to_owned();
    let mut retry = FIRST_RETRY.min(refresh);
    // The digest of the installed document: the same document again keeps the
    // key set, its generation and so the cached verifications.
    let mut installed: Option<[u8; 32]> = None;
    let mut generation: u64 = 0;
    loop {
        let wait = match fetch(&client, &url, timeout).await {
            Ok((keys, digest)) => {
                if installed == Some(digest) {
                    tracing::debug!(host = %host, "jwks unchanged");
                } else {
                    generation = generation.wrapping_add(1);
                    tracing::debug!(host = %host, keys = keys.len(), generation, "jwks refreshed");
                    state
                        .keys
                        .store(Some(Arc::new(KeySet { generation, keys })));
                    installed = Some(digest);
                }
                retry = FIRST_RETRY.min(refresh);
                refresh
            }
            Err(error) => {
                let error: &dyn std::error::Error = &error;
                tracing::warn!(
                    host = %host,
                    path = url.path(),
                    error,
                    "jwks refresh failed; keeping the last good key set"
                );
                let wait = retry;
                retry = retry.saturating_mul(2).min(refresh);
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = state.refresh_now.notified() => {}
        }
    }
}

async fn fetch(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &Uri,
    timeout: Duration,
) -> Result<(Vec<JwtKey>, [u8; 32]), FetchError> {
    let req = Request::get(url.clone())
        .header(ACCEPT, "application/json")
        .header(
            USER_AGENT,
            concat!("portcullis-auth/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|_| FetchError::Status(StatusCode::BAD_REQUEST))?;
    let body = tokio::time::timeout(timeout, async {
        let res = client.request(req).await.map_err(FetchError::Request)?;
        if res.status() != StatusCode::OK {
            return Err(FetchError::Status(res.status()));
        }
        let body = Limited::new(res.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(FetchError::Body)?;
        Ok(body.to_bytes())
    })
    .await
    .map_err(|_| FetchError::Timeout)??;
    let keys = parse(&body)?;
    Ok((keys, Sha256::digest(&body).into()))
}

/// Parses a JWKS document, keeping the keys this crate can use.
fn parse(body: &[u8]) -> Result<Vec<JwtKey>, FetchError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let doc: Document = serde_json::from_slice(body).map_err(FetchError::Json)?;
    let keys: Vec<JwtKey> = doc
        .keys
        .into_iter()
        .filter_map(|value| {
            let jwk: Jwk = serde_json::from_value(value).ok()?;
            key_from_jwk(&jwk)
        })
        .take(MAX_JWKS_KEYS)
        .collect();
    if keys.is_empty() {
        return Err(FetchError::NoUsableKey);
    }
    Ok(keys)
}

/// A verification key from a JWK, with its algorithm from `alg` or derived from
/// `kty`/`crv`. Symmetric (`oct`) keys and encryption keys are skipped: secrets do
/// not belong in a published key set.
fn key_from_jwk(jwk: &Jwk) -> Option<JwtKey> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return None;
    }
    let derived = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => JwtAlgorithm::Rs256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            JwtAlgorithm::Es256
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            JwtAlgorithm::EdDsa
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => derived,
        Some(KeyAlgorithm::RS256) => JwtAlgorithm::Rs256,
        Some(KeyAlgorithm::ES256) => JwtAlgorithm::Es256,
        Some(KeyAlgorithm::EdDSA) => JwtAlgorithm::EdDsa,
        Some(_) => return None,
    };
    // A JWK whose `alg` contradicts its key type is not used.
    if alg != derived {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(JwtKey {
        kid: jwk.common.key_id.as_deref().map(Arc::from),
        alg,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_algorithms_and_skips_unusable_keys() {
        let doc = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"sym"},
            {"kty":"EC","crv":"P-256","kid":"ec","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","crv":"P-256","alg":"RS256","kid":"liar","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"weird"}
        ]}"#;
        let keys = parse(doc).unwrap();
        let got: Vec<(Option<&str>, JwtAlgorithm)> =
            keys.iter().map(|k| (k.key_id(), k.algorithm())).collect();
        assert_eq!(
            got,
            [
                (Some("ec"), JwtAlgorithm::Es256),
                (Some("ed"), JwtAlgorithm::EdDsa)
            ]
        );
    }

    #[test]
    fn a_document_without_usable_keys_is_an_error() {
        assert!(matches!(
            parse(br#"{"keys":[]}"#),
            Err(FetchError::NoUsableKey)
        ));
        assert!(matches!(parse(b"<html>"), Err(FetchError::Json(_))));
    }
}
