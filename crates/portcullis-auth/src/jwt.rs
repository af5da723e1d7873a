//! JWT bearer tokens: [`JwtAuth`], [`JwtKey`], [`JwtAlgorithm`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request};
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER as RUST_CRYPTO;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::cache::{Source, TokenCache};
use crate::claims::{Compact, JoseHeader, Rules, Valid, decode_segment};
use crate::shared::{Credential, Decision, authorization};

/// Tokens longer than this are refused without being parsed.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The largest leeway accepted.
pub(crate) const MAX_LEEWAY: Duration = Duration::from_secs(3600);

/// At most this many keys are tried for one token (tokens without `kid` are
/// tried against every key of their algorithm).
const MAX_KEYS_TRIED: usize = 8;

/// The registered claims that are numbers (RFC 7519 §4.1), never an identity.
pub(crate) const NUMERIC_CLAIMS: [&str; 3] = ["exp", "nbf", "iat"];

/// A JWT signature algorithm. Each key is pinned to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256, a shared secret.
    #[serde(rename = "HS256")]
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519.
    #[serde(rename = "EdDSA")]
    EdDsa,
}

/// A JWT verification key, pinned to one [`JwtAlgorithm`], with an optional `kid`.
///
/// A token is verified with a key only when the token's `alg` header equals the
/// key's algorithm; this refuses `alg: none` and algorithm confusion (an HS256
/// token "signed" with an RSA public key).
#[derive(Clone)]
pub struct JwtKey {
    pub(crate) kid: Option<Arc<str>>,
    pub(crate) alg: JwtAlgorithm,
    pub(crate) key: DecodingKey,
}

/// JWT bearer-token authentication, for [`AuthLayer::jwt`](crate::AuthLayer::jwt).
///
/// Reads `Authorization: Bearer <token>`, tries the keys of the token's `alg`
/// with its `kid` (without a `kid`, every key of that `alg`; at most 8), verifies
/// the signature, requires `exp`,
/// checks `nbf` when present, and `iss`/`aud` when configured, all with the leeway.
/// The identity is the string claim named by
/// [`identity_claim`](JwtAuth::identity_claim). Verified tokens are cached (see
/// [`cache`](JwtAuth::cache)). See the [crate docs](crate).
#[derive(Clone)]
pub struct JwtAuth {
    realm: Arc<str>,
    keys: Vec<JwtKey>,
    issuer: Option<String>,
    audience: Vec<String>,
    leeway: Duration,
    identity_claim: Arc<str>,
    cache_entries: usize,
    cache_ttl: Duration,
    #[cfg(feature = "jwks")]
    jwks: Option<Arc<crate::jwks::Jwks>>,
}

/// The built scheme.
#[derive(Clone)]
pub(crate) struct JwtScheme {
    challenge: HeaderValue,
    keys: Vec<JwtKey>,
    rules: Rules,
    /// `None` when disabled.
    cache: Option<Arc<TokenCache>>,
    #[cfg(feature = "jwks")]
    jwks: Option<Arc<crate::jwks::Jwks>>,
    /// Signature verifications made, for tests to see cache hits.
    #[cfg(test)]
    verifications: Arc<std::sync::atomic::AtomicUsize>,
}

/// What verifying a token with one key gave.
enum Verified {
    /// The signature did not verify with this key: try the next one.
    WrongKey,
    /// The key is right and the claims pass, at `now` (seconds since the epoch).
    Valid { valid: Valid, now: f64 },
    /// The key is right and the token is refused for this reason.
    Invalid(&'static str),
}

// === impl JwtAlgorithm ===

impl JwtAlgorithm {
    /// The JOSE name: `HS256`, `RS256`, `ES256` or `EdDSA`.
    pub const fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
            JwtAlgorithm::EdDsa => "EdDSA",
        }
    }

    pub(crate) fn to_jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }

    /// The algorithm named `name` in a JOSE header (case-sensitive).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(JwtAlgorithm::Hs256),
            "RS256" => Some(JwtAlgorithm::Rs256),
            "ES256" => Some(JwtAlgorithm::Es256),
            "EdDSA" => Some(JwtAlgorithm::EdDsa),
            _ => None,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl JwtKey ===

impl JwtKey {
    /// An HS256 key from its shared secret.
    ///
    /// Use at least 32 random bytes: [`AuthConfig`](crate::AuthConfig) refuses
    /// shorter secrets.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        Self {
            kid: None,
            alg: JwtAlgorithm::Hs256,
            key: DecodingKey::from_secret(secret.as_ref()),
        }
    }

    /// A public key in PEM form for `alg` (`RS256`, `ES256` or `EdDSA`).
    ///
    /// Takes an SPKI public key (`-----BEGIN PUBLIC KEY-----`), or for RSA also
    /// `-----BEGIN RSA PUBLIC KEY-----`. Fails for `HS256` (use [`hs256`](Self::hs256))
    /// and for a PEM that is not a key of that algorithm.
    pub fn from_pem(alg: JwtAlgorithm, pem: &[u8]) -> Result<Self, ConfigError> {
        Self::from_pem_at(alg, pem, "pem".to_owned())
    }

    pub(crate) fn from_pem_at(
        alg: JwtAlgorithm,
        pem: &[u8],
        key: String,
    ) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError::BadPem {
            key: key.clone(),
            alg: alg.as_str(),
            reason,
        };
        let parsed = match alg {
            JwtAlgorithm::Hs256 => {
                return Err(bad("HS256 keys are secrets, not PEM".to_owned()));
            }
            JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(pem),
            JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(pem),
            JwtAlgorithm::EdDsa => DecodingKey::from_ed_pem(pem),
        }
        .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            kid: None,
            alg,
            key: parsed,
        })
    }

    /// Sets the key id matched against the token's `kid` header.
    pub fn kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.alg
    }

    /// The key id, if any.
    pub fn key_id(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

// === impl JwtAuth ===

impl Default for JwtAuth {
    fn default() -> Self {
        Self::new()
    }
}

impl JwtAuth {
    /// JWT authentication with no keys yet, realm `portcullis`, no issuer or
    /// audience check, a 30 s leeway, the identity in `sub`, and a cache of 4096
    /// verified tokens for at most 60 s each.
    pub fn new() -> Self {
        Self {
            realm: Arc::from(crate::DEFAULT_REALM),
            keys: Vec::new(),
            issuer: None,
            audience: Vec::new(),
            leeway: Duration::from_secs(30),
            identity_claim: Arc::from("sub"),
            cache_entries: 4096,
            cache_ttl: Duration::from_secs(60),
            #[cfg(feature = "jwks")]
            jwks: None,
        }
    }

    /// Adds a static verification key.
    pub fn key(mut self, key: JwtKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Sets the realm of the `WWW-Authenticate: Bearer realm="…"` challenge.
    /// Default: `portcullis`. Fails on `"`, `\` or control characters.
    pub fn realm(mut self, realm: &str) -> Result<Self, ConfigError> {
        crate::shared::check_realm(realm)
            .map_err(|reason| ConfigError::invalid("realm", realm, reason))?;
        self.realm = Arc::from(realm);
        Ok(self)
    }

    /// Requires this `iss` claim. Default: not checked.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Accepts this audience; once one is set, the token's `aud` (a string or an
    /// array) must name one of them. Default: not checked.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience.push(audience.into());
        self
    }

    /// Clock skew allowed on `exp` and `nbf`, in whole seconds (the fraction is
    /// dropped), at most one hour (larger values are capped). Default: 30 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(MAX_LEEWAY);
        self
    }

    /// The claim holding the identity, a string. Default: `sub`.
    ///
    /// A numeric registered claim (`exp`, `nbf`, `iat`) never holds a string,
    /// so every token would be refused: [`JwtConfig`](crate::JwtConfig) refuses
    /// them.
    pub fn identity_claim(mut self, claim: impl Into<Arc<str>>) -> Self {
        self.identity_claim = claim.into();
        self
    }

    /// How many verified tokens are remembered, and for how long at most: a
    /// repeated token then costs a SHA-256 and a map lookup instead of a signature
    /// verification (about 160 µs for RS256).
    ///
    /// An entry is never served past the token's `exp` plus the leeway, nor after
    /// a JWKS refresh changed the key set when a JWKS key verified it. A revoked
    /// but unexpired token stays accepted for at most `ttl`. 0 entries or a zero
    /// `ttl` disable the cache; a `ttl` above one hour is capped. Default: 4096
    /// entries for 60 s.
    pub fn cache(mut self, entries: usize, ttl: Duration) -> Self {
        self.cache_entries = entries;
        self.cache_ttl = ttl.min(crate::cache::MAX_CACHE_TTL);
        self
    }

    /// Also takes keys from the JWKS document at `url` (plain `http://` only),
    /// fetched now and every `refresh` in a background task, each fetch bounded by
    /// `timeout`, and fetched again (at most once per 10 s) when a token names an
    /// unknown `kid`.
    ///
    /// Must be called inside a tokio runtime: the task is spawned here, and stops
    /// when the last clone of the layer and its services is dropped. Until the
    /// first fetch succeeds, and when there are no static keys, requests get 503
    /// `auth_unavailable` with `Retry-After: 1`. A failed fetch keeps the last good
    /// key set and logs a warning.
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub fn jwks(
        mut self,
        url: &str,
        refresh: Duration,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        self.jwks = Some(Arc::new(crate::jwks::Jwks::start(url, refresh, timeout)?));
        Ok(self)
    }

    pub(crate) fn build(self) -> JwtScheme {
        JwtScheme {
            challenge: crate::shared::challenge("Bearer", &self.realm),
            keys: self.keys,
            rules: Rules {
                issuer: self.issuer.map(Box::from),
                audience: self.audience.into_iter().map(Box::from).collect(),
                // Whole seconds, as documented; at most an hour.
                leeway: Duration::from_secs(self.leeway.as_secs()).as_secs_f64(),
                identity_claim: self.identity_claim,
            },
            cache: TokenCache::new(self.cache_entries, self.cache_ttl).map(Arc::new),
            #[cfg(feature = "jwks")]
            jwks: self.jwks,
            #[cfg(test)]
            verifications: Arc::default(),
        }
    }
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("JwtAuth");
        d.field("realm", &self.realm)
            .field("keys", &self.keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("identity_claim", &self.identity_claim)
            .field("cache_entries", &self.cache_entries)
            .field("cache_ttl", &self.cache_ttl);
        #[cfg(feature = "jwks")]
        d.field("jwks", &self.jwks.is_some());
        d.finish()
    }
}

// === impl JwtScheme ===

impl fmt::Debug for JwtScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtScheme")
            .field("challenge", &self.challenge)
            .field("keys", &self.keys)
            .field("rules", &self.rules)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl JwtScheme {
    pub(crate) fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    pub(crate) fn check<B>(&self, req: &Request<B>) -> Decision {
        let token = match authorization(req.headers(), "bearer") {
            Credential::Missing => return Decision::Missing,
            Credential::Bad(reason) => return Decision::Deny(reason),
            Credential::Found(t) => t,
        };
        if token.len() > MAX_TOKEN_LEN {
            return Decision::Deny("token too long");
        }

        #[cfg(feature = "jwks")]
        let fetched = self.jwks.as_ref().map(|j| j.keys());
        #[cfg(feature = "jwks")]
        let (dynamic, generation, jwks_pending): (&[JwtKey], Option<u64>, bool) = match &fetched {
            Some(guard) => match guard.as_deref() {
                Some(set) => (set.keys.as_slice(), Some(set.generation), false),
                None => (&[], None, true),
            },
            None => (&[], None, false),
        };
        #[cfg(not(feature = "jwks"))]
        let (dynamic, generation, jwks_pending): (&[JwtKey], Option<u64>, bool) =
            (&[], None, false);

        let digest = self.cache.as_ref().map(|_| TokenCache::digest(token));
        if let (Some(cache), Some(digest)) = (&self.cache, &digest) {
            if let Some(identity) = cache.get(digest, generation) {
                return Decision::Allow(identity);
            }
        }

        let Ok(token) = std::str::from_utf8(token) else {
            return Decision::Deny("malformed token");
        };
        let Some(compact) = Compact::split(token) else {
            return Decision::Deny("malformed token");
        };
        let Some(header_json) = decode_segment(compact.header) else {
            return Decision::Deny("malformed token");
        };
        let Ok(header) = serde_json::from_slice::<JoseHeader<'_>>(&header_json) else {
            return Decision::Deny("malformed token");
        };
        // `alg: none` and every algorithm without a key type here stop now.
        let Some(alg) = JwtAlgorithm::from_name(&header.alg) else {
            return Decision::Deny("unsupported algorithm");
        };
        if header.crit.is_some() {
            return Decision::Deny("unsupported critical header");
        }

        if jwks_pending && self.keys.is_empty() {
            return Decision::Unavailable;
        }

        // Candidates: the keys of the token's `alg` with its `kid`, or, without a
        // `kid`, every key of its `alg`. A key of another algorithm is never
        // tried: several keys may share a `kid` across algorithms (a JWKS
        // rotating algorithms), so one of another `alg` refuses nothing alone.
        let mut tried = 0;
        let mut kid_found = false;
        let mut last = "no key for the token's algorithm";
        for (i, key) in self.keys.iter().chain(dynamic).enumerate() {
            if let Some(want) = header.kid.as_deref() {
                if key.kid.as_deref() != Some(want) {
                    continue;
                }
                kid_found = true;
            }
            if key.alg != alg {
                if header.kid.is_some() && tried == 0 {
                    last = "algorithm does not match the key";
                }
                continue;
            }
            if tried == MAX_KEYS_TRIED {
                break;
            }
            tried += 1;
            match self.verify(&compact, key) {
                Verified::Valid { valid, now } => {
                    // Which key: a static one, or a JWKS one of this generation.
                    let source = if i < self.keys.len() {
                        Some(Source::Static)
                    } else {
                        generation.map(Source::Jwks)
                    };
                    if let (Some(cache), Some(digest), Some(source)) = (&self.cache, digest, source)
                    {
                        let remaining = valid.exp + self.rules.leeway - now;
                        cache.insert(
                            digest,
                            valid.identity.clone(),
                            source,
                            remaining,
                            generation,
                        );
                    }
                    return Decision::Allow(valid.identity);
                }
                Verified::Invalid(reason) => return Decision::Deny(reason),
                Verified::WrongKey => last = "bad signature",
            }
        }
        if header.kid.is_some() && tried == 0 {
            // An unknown `kid`, or one known only for other algorithms: the JWKS
            // may have rotated since the last fetch.
            #[cfg(feature = "jwks")]
            if let Some(jwks) = &self.jwks {
                jwks.refresh_soon();
            }
            if !kid_found {
                return Decision::Deny("unknown key id");
            }
        }
        Decision::Deny(last)
    }

    fn verify(&self, token: &Compact<'_>, key: &JwtKey) -> Verified {
        #[cfg(test)]
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(signature) = decode_segment(token.signature) else {
            return Verified::Invalid("malformed token");
        };
        // The RustCrypto verifiers, called directly: `jsonwebtoken::crypto::verify`
        // goes through the process-wide provider, which panics on every call when
        // feature unification enables both `rust_crypto` and `aws_lc_rs` and
        // nobody installed one, and which any crate in the process may replace.
        let verifier = match (RUST_CRYPTO.verifier_factory)(&key.alg.to_jsonwebtoken(), &key.key) {
            Ok(verifier) => verifier,
            Err(_) => return Verified::Invalid("malformed token"),
        };
        if verifier
            .verify(token.signing_input.as_bytes(), &signature)
            .is_err()
        {
            return Verified::WrongKey;
        }
        let Some(claims) = decode_segment(token.payload) else {
            return Verified::Invalid("malformed token");
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        match self.rules.check(&claims, now) {
            Ok(valid) => Verified::Valid { valid, now },
            Err(reason) => Verified::Invalid(reason),
        }
    }
}

#[cfg(test)]
impl JwtScheme {
    /// How many signature verifications this scheme made.
    pub(crate) fn verifications_for_tests(&self) -> usize {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many tokens the cache holds.
    pub(crate) fn cached_for_tests(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len_for_tests())
    }
}
