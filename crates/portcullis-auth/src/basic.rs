//! HTTP Basic: [`BasicUsers`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderValue, Request};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::ConfigError;
use crate::shared::{Credential, Decision, Outcome, authorization};

/// `Authorization` values longer than this are refused without being decoded.
const MAX_CREDENTIALS_LEN: usize = 4096;

/// HTTP Basic authentication, for [`AuthLayer::basic`](crate::AuthLayer::basic).
///
/// Passwords are verified against argon2 PHC strings or bcrypt hashes. Hashing is
/// slow on purpose (tens of milliseconds), so it runs on tokio's blocking threads,
/// at most [`max_verifications`](Self::max_verifications) at once; a request that
/// finds no free slot within [`verification_wait`](Self::verification_wait) gets
/// 503 `overloaded` with `Retry-After: 1`. Successful verifications are cached
/// (keyed by the SHA-256 of `user\0password`), so repeat requests cost a hash
/// lookup. An unknown user costs a full verification too, against another user's
/// hash, so response times do not reveal which users exist.
///
/// ```
/// use portcullis_auth::BasicUsers;
///
/// let users = BasicUsers::new("staff")?
///     .user("alice", "$2b$04$9QV8UoVZ4qmuVsEyB1VUIObCF5Bd3qrbmNzgqOm1s1oeZkqOOvSm.")?;
/// # Ok::<(), portcullis_auth::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct BasicUsers {
    realm: Arc<str>,
    users: Vec<(Arc<str>, StoredHash)>,
    cache_entries: usize,
    cache_ttl: Duration,
    max_verifications: Option<usize>,
    verification_wait: Duration,
}

/// A password hash, checked for syntax when configured.
#[derive(Clone)]
pub(crate) enum StoredHash {
    Argon2(String),
    Bcrypt(String),
}

/// The built scheme.
#[derive(Clone)]
pub(crate) struct BasicScheme {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    challenge: HeaderValue,
    users: HashMap<Box<str>, (Arc<str>, StoredHash)>,
    /// Verified instead when the user is unknown, to cost the same time.
    dummy: Option<StoredHash>,
    cache: Mutex<Cache>,
    permits: Arc<Semaphore>,
    wait: Duration,
}

/// Successful verifications: digest of `user\0password` → identity, expiry.
struct Cache {
    map: HashMap<[u8; 32], (Arc<str>, Instant)>,
    capacity: usize,
    ttl: Duration,
}

// === impl BasicUsers ===

impl BasicUsers {
    /// No users yet, in `realm` (named in `WWW-Authenticate: Basic realm="…"`).
    ///
    /// Defaults: a cache of 1024 verifications for 5 minutes, twice as many
    /// concurrent verifications as CPUs, and a 100 ms wait for a free one. Fails on
    /// an empty realm or one with `"`, `\` or control characters.
    pub fn new(realm: &str) -> Result<Self, ConfigError> {
        crate::shared::check_realm(realm)
            .map_err(|reason| ConfigError::invalid("realm", realm, reason))?;
        Ok(Self {
            realm: Arc::from(realm),
            users: Vec::new(),
            cache_entries: 1024,
            cache_ttl: Duration::from_secs(300),
            max_verifications: None,
            verification_wait: Duration::from_millis(100),
        })
    }

    /// Adds a user with its password hash: an argon2 PHC string
    /// (`$argon2id$v=19$m=…`) or a bcrypt hash (`$2b$12$…`).
    ///
    /// Fails on a malformed hash, a name with `:` or an empty name. A repeated
    /// name replaces the earlier entry.
    pub fn user(mut self, name: &str, hash: &str) -> Result<Self, ConfigError> {
        if name.is_empty() || name.contains(':') {
            return Err(ConfigError::invalid(
                "users.name",
                name,
                "must be non-empty and without ':'",
            ));
        }
        let hash = StoredHash::parse(hash)
            .map_err(|reason| ConfigError::invalid("users.hash", "[redacted]", reason))?;
        self.users.retain(|(n, _)| &**n != name);
        self.users.push((Arc::from(name), hash));
        Ok(self)
    }

    /// How many successful verifications are remembered, and for how long.
    /// 0 entries disables the cache. Default: 1024 for 5 minutes.
    pub fn cache(mut self, entries: usize, ttl: Duration) -> Self {
        self.cache_entries = entries;
        self.cache_ttl = ttl;
        self
    }

    /// How many password hashes may be verified at once (at least 1). Default:
    /// twice the number of CPUs.
    pub fn max_verifications(mut self, n: usize) -> Self {
        self.max_verifications = Some(n.max(1));
        self
    }

    /// How long a request waits for a free verification slot before 503.
    /// Default: 100 ms.
    pub fn verification_wait(mut self, wait: Duration) -> Self {
        self.verification_wait = wait;
        self
    }

    pub(crate) fn build(self) -> BasicScheme {
        let permits = self.max_verifications.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .saturating_mul(2)
        });
        let dummy = self.users.first().map(|(_, h)| h.clone());
        BasicScheme {
            inner: Arc::new(Inner {
                challenge: crate::shared::challenge("Basic", &self.realm),
                users: self
                    .users
                    .into_iter()
                    .map(|(name, hash)| (Box::from(&*name), (name, hash)))
                    .collect(),
                dummy,
                cache: Mutex::new(Cache {
                    map: HashMap::new(),
                    capacity: self.cache_entries,
                    ttl: self.cache_ttl,
                }),
                permits: Arc::new(Semaphore::new(permits.min(Semaphore::MAX_PERMITS))),
                wait: self.verification_wait,
            }),
        }
    }
}

impl fmt::Debug for BasicUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.users.iter().map(|(n, _)| &**n).collect();
        f.debug_struct("BasicUsers")
            .field("realm", &self.realm)
            .field("users", &names)
            .field("cache_entries", &self.cache_entries)
            .field("cache_ttl", &self.cache_ttl)
            .field("max_verifications", &self.max_verifications)
            .field("verification_wait", &self.verification_wait)
            .finish()
    }
}

// === impl StoredHash ===

impl StoredHash {
    pub(crate) fn parse(hash: &str) -> Result<Self, &'static str> {
        if hash.starts_with("$argon2") {
            let parsed = PasswordHash::new(hash).map_err(|_| "is not a valid argon2 PHC string")?;
            argon2::Params::try_from(&parsed).map_err(|_| "has invalid argon2 parameters")?;
            argon2::Algorithm::try_from(parsed.algorithm)
                .map_err(|_| "names an unknown argon2 variant")?;
            Ok(StoredHash::Argon2(hash.to_owned()))
        } else if hash.starts_with("$2") {
            let parts: bcrypt::HashParts =
                hash.parse().map_err(|_| "is not a valid bcrypt hash")?;
            if !(4..=31).contains(&parts.get_cost()) {
                return Err("has a bcrypt cost outside 4..=31");
            }
            Ok(StoredHash::Bcrypt(hash.to_owned()))
        } else {
            Err("must be an argon2 PHC string ($argon2id$...) or a bcrypt hash ($2b$...)")
        }
    }

    /// Slow: run on a blocking thread.
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            StoredHash::Argon2(s) => PasswordHash::new(s)
                .is_ok_and(|h| Argon2::default().verify_password(password, &h).is_ok()),
            StoredHash::Bcrypt(s) => bcrypt::verify(password, s).unwrap_or(false),
        }
    }
}

// === impl BasicScheme ===

impl BasicScheme {
    pub(crate) fn challenge(&self) -> &HeaderValue {
        &self.inner.challenge
    }

    pub(crate) fn check<B>(&self, req: &Request<B>) -> Outcome {
        let encoded = match authorization(req.headers(), "basic") {
            Credential::Missing => return Outcome::Now(Decision::Missing),
            Credential::Bad(reason) => return Outcome::Now(Decision::Deny(reason)),
            Credential::Found(c) => c,
        };
        if encoded.len() > MAX_CREDENTIALS_LEN {
            return Outcome::Now(Decision::Deny("credentials too long"));
        }
        let Ok(decoded) = STANDARD.decode(encoded) else {
            return Outcome::Now(Decision::Deny("malformed basic credentials"));
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return Outcome::Now(Decision::Deny("malformed basic credentials"));
        };
        let (user, rest) = decoded.split_at(colon);
        let password = rest.get(1..).unwrap_or_default();
        let Ok(user) = std::str::from_utf8(user) else {
            return Outcome::Now(Decision::Deny("malformed basic credentials"));
        };
        let key = cache_key(user, password);
        if let Some(identity) = self.inner.cached(&key) {
            return Outcome::Now(Decision::Allow(identity));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Outcome::Now(Decision::Unavailable);
        };
        let inner = self.inner.clone();
        let user = user.to_owned();
        let password = password.to_vec();
        Outcome::Later(runtime.spawn(async move {
            let acquire = inner.permits.clone().acquire_owned();
            let Ok(Ok(permit)) = tokio::time::timeout(inner.wait, acquire).await else {
                return Decision::Overloaded;
            };
            let verify = move || {
                // The slot is held while the hash runs, even if the request is gone.
                let _permit = permit;
                inner.verify(&user, &password, key)
            };
            tokio::task::spawn_blocking(verify)
                .await
                .unwrap_or(Decision::Unavailable)
        }))
    }
}

impl fmt::Debug for BasicScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicScheme")
            .field("challenge", &self.inner.challenge)
            .field("users", &self.inner.users.len())
            .finish_non_exhaustive()
    }
}

// === impl Inner ===

impl Inner {
    fn cached(&self, key: &[u8; 32]) -> Option<Arc<str>> {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        match cache.map.get(key) {
            Some((identity, expires)) if *expires > now => Some(identity.clone()),
            Some(_) => {
                cache.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Slow: run on a blocking thread.
    fn verify(&self, user: &str, password: &[u8], key: [u8; 32]) -> Decision {
        match self.users.get(user) {
            Some((identity, hash)) => {
                if hash.verify(password) {
                    self.remember(key, identity.clone());
                    Decision::Allow(identity.clone())
                } else {
                    Decision::Deny("wrong password")
                }
            }
            None => {
                // Same work as for a known user, result ignored.
                if let Some(dummy) = &self.dummy {
                    let _ = dummy.verify(password);
                }
                Decision::Deny("unknown user")
            }
        }
    }

    fn remember(&self, key: [u8; 32], identity: Arc<str>) {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.capacity == 0 {
            return;
        }
        if cache.map.len() >= cache.capacity && !cache.map.contains_key(&key) {
            cache.map.retain(|_, (_, expires)| *expires > now);
            if cache.map.len() >= cache.capacity {
                // Evict the entry closest to expiry.
                let oldest = cache
                    .map
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    cache.map.remove(&oldest);
                }
            }
        }
        // A TTL too large to add means "forever", which is not worth the risk: skip.
        if let Some(expires) = now.checked_add(cache.ttl) {
            cache.map.insert(key, (identity, expires));
        }
    }
}

fn cache_key(user: &str, password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0u8]);
    h.update(password);
    h.finalize().into()
}

#[cfg(test)]
impl BasicScheme {
    pub(crate) fn inner_for_tests(&self) -> &Inner {
        &self.inner
    }
}

#[cfg(test)]
impl Inner {
    pub(crate) fn remember_for_tests(&self, key: [u8; 32], identity: &str) {
        self.remember(key, Arc::from(identity));
    }

    pub(crate) fn cached_for_tests(&self, key: &[u8; 32]) -> Option<Arc<str>> {
        self.cached(key)
    }

    pub(crate) fn permits_for_tests(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.permits
            .clone()
            .try_acquire_many_owned(u32::try_from(self.permits.available_permits()).unwrap())
            .unwrap()
    }
}
