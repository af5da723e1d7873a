//! Serde configuration: [`AuthConfig`] and its sections, with `validate()`.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Uri};
use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::JwtAlgorithm;

/// One authentication scheme, chosen by its `type` key.
///
/// ```toml
/// [auth.partners]
/// type = "api_key"
/// header = "x-api-key"
/// keys = [ { identity = "acme", sha256 = "<64 hex chars>" } ]
/// ```
///
/// Each section rejects unknown keys. Build a layer with
/// [`AuthLayer::from_config`](crate::AuthLayer::from_config), which validates first.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthConfig {
    /// `type = "api_key"`: a key in a header or a query parameter.
    ApiKey(ApiKeyConfig),
    /// `type = "basic"`: HTTP Basic against argon2 or bcrypt hashes.
    Basic(BasicConfig),
    /// `type = "jwt"`: a signed JWT as a bearer token.
    Jwt(JwtConfig),
}

/// `type = "api_key"`: clients send a key in a header or a query parameter.
#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeyConfig {
    /// The request header that carries the key. Set exactly one of `header` and
    /// `query`. Default: none.
    pub header: Option<String>,
    /// The query parameter that carries the key. Set exactly one of `header` and
    /// `query`. Default: none.
    pub query: Option<String>,
    /// The accepted keys, each stored as the hex SHA-256 of the key. At least
    /// one. Default: empty.
    pub keys: Vec<ApiKeyEntry>,
    /// A request header in which to forward the identity upstream. Client-sent
    /// copies are always removed. Framing, hop-by-hop, credential, request-id and
    /// forwarding headers are refused (see
    /// [`AuthLayer::identity_header`](crate::AuthLayer::identity_header)).
    /// Default: none.
    pub identity_header: Option<String>,
    /// Forward the key header or query parameter upstream. Default: false.
    pub keep_credentials: bool,
}

/// One accepted API key.
#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeyEntry {
    /// The identity the key stands for. Required. Default: empty.
    pub identity: String,
    /// The SHA-256 of the key, 64 hex digits (`printf %s "$KEY" | sha256sum`).
    /// Required. Default: empty.
    pub sha256: Secret,
}

/// `type = "basic"`: HTTP Basic authentication.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BasicConfig {
    /// The realm named in the `WWW-Authenticate` challenge. Default: `portcullis`.
    pub realm: String,
    /// The users, each with an argon2 PHC string or a bcrypt hash. At least one.
    /// Default: empty.
    pub users: Vec<BasicUserEntry>,
    /// How many successful verifications to remember, so that repeat requests
    /// cost a hash lookup instead of a password hash. 0 disables the cache.
    /// Default: 1024.
    pub cache_entries: usize,
    /// How long a remembered verification stays valid. Default: 5m.
    #[serde(with = "crate::duration")]
    pub cache_ttl: Duration,
    /// How many password hashes may be verified at once, on blocking threads.
    /// Default: none, meaning twice the number of CPUs.
    pub max_verifications: Option<usize>,
    /// How long a request waits for a free verification slot before the answer is
    /// 503 `overloaded` with `Retry-After: 1`. Default: 100ms.
    #[serde(with = "crate::duration")]
    pub verification_wait: Duration,
    /// A request header in which to forward the identity (the user name)
    /// upstream. Client-sent copies are always removed. Framing, hop-by-hop,
    /// credential, request-id and forwarding headers are refused (see
    /// [`AuthLayer::identity_header`](crate::AuthLayer::identity_header)).
    /// Default: none.
    pub identity_header: Option<String>,
    /// Forward the `Authorization` header upstream. Default: false.
    pub keep_credentials: bool,
}

/// One HTTP Basic user.
#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BasicUserEntry {
    /// The user name, which is also the identity. Required. Default: empty.
    pub name: String,
    /// The password hash: an argon2 PHC string (`$argon2id$v=19$...`) or a bcrypt
    /// hash (`$2b$12$...`). Required. Default: empty.
    pub hash: Secret,
}

/// `type = "jwt"`: a signed JWT in `Authorization: Bearer <token>`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// The realm named in the `WWW-Authenticate` challenge. Default: `portcullis`.
    pub realm: String,
    /// The required `iss` claim; checked when set. Default: none.
    pub issuer: Option<String>,
    /// Accepted audiences; when not empty the token's `aud` (a string or an array)
    /// must name one of them. Default: empty (not checked).
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in whole seconds, at most 1h.
    /// Default: 30s.
    #[serde(with = "crate::duration")]
    pub leeway: Duration,
    /// The claim that holds the identity (a string). Not `exp`, `nbf` or `iat`,
    /// which are numbers. Default: `sub`.
    pub identity_claim: String,
    /// Static verification keys. At least one key or a `jwks_url`. Default: empty.
    pub keys: Vec<JwtKeyConfig>,
    /// A JWKS document to fetch keys from, over plain `http://` (feature `jwks`).
    /// Default: none.
    pub jwks_url: Option<String>,
    /// How often the JWKS is fetched again. Default: 5m.
    #[serde(with = "crate::duration")]
    pub jwks_refresh: Duration,
    /// Time limit of one JWKS fetch. Default: 2s.
    #[serde(with = "crate::duration")]
    pub jwks_timeout: Duration,
    /// How many verified tokens to remember (keyed by their SHA-256), so that a
    /// repeated token skips the signature verification. 0 disables the cache.
    /// Default: 4096.
    pub cache_entries: usize,
    /// How long a remembered token stays accepted at most; never past its `exp`
    /// plus the leeway. A revoked but unexpired token stays accepted this long.
    /// Above 0 and at most 1h when the cache is on. Default: 60s.
    #[serde(with = "crate::duration")]
    pub cache_ttl: Duration,
    /// A request header in which to forward the identity upstream. Client-sent
    /// copies are always removed. Framing, hop-by-hop, credential, request-id and
    /// forwarding headers are refused (see
    /// [`AuthLayer::identity_header`](crate::AuthLayer::identity_header)).
    /// Default: none.
    pub identity_header: Option<String>,
    /// Forward the `Authorization` header upstream. Default: false.
    pub keep_credentials: bool,
}

/// One static JWT verification key, pinned to one algorithm.
///
/// `HS256` takes a `secret`; the others take exactly one of `pem` and `pem_file`
/// (an SPKI public key, `-----BEGIN PUBLIC KEY-----`; RSA also as
/// `-----BEGIN RSA PUBLIC KEY-----`).
#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JwtKeyConfig {
    /// The key id matched against the token's `kid` header. Default: none (the
    /// key is tried for tokens without a `kid` whose `alg` matches).
    pub kid: Option<String>,
    /// The algorithm, one of `HS256`, `RS256`, `ES256`, `EdDSA`. Required.
    /// Default: none.
    pub alg: Option<JwtAlgorithm>,
    /// The public key in PEM form. Default: none.
    pub pem: Option<String>,
    /// A file holding the public key in PEM form, read when the layer is built.
    /// Default: none.
    pub pem_file: Option<PathBuf>,
    /// The HS256 secret, at least 32 bytes. Default: none.
    pub secret: Option<Secret>,
}

/// A secret string whose `Debug` and `Serialize` print `[redacted]`.
///
/// It deserializes from a plain string.
#[derive(Deserialize, Clone, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

/// The smallest HS256 secret accepted, in bytes (RFC 7518 §3.2: the key size
/// must be at least the hash size).
pub(crate) const MIN_HMAC_SECRET: usize = 32;

/// The shortest `jwks_refresh` accepted.
const MIN_JWKS_REFRESH: Duration = Duration::from_millis(100);

// === impl Secret ===

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

// === impl AuthConfig ===

impl AuthConfig {
    /// Checks the whole section and reports every mistake, not only the first.
    ///
    /// Reads `pem_file`s, to report unreadable or invalid keys.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        match self {
            AuthConfig::ApiKey(c) => c.check(&mut errors),
            AuthConfig::Basic(c) => c.check(&mut errors),
            AuthConfig::Jwt(c) => c.check(&mut errors),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The scheme's name, as in the metric label: `api_key`, `basic` or `jwt`.
    pub fn scheme(&self) -> &'static str {
        match self {
            AuthConfig::ApiKey(_) => "api_key",
            AuthConfig::Basic(_) => "basic",
            AuthConfig::Jwt(_) => "jwt",
        }
    }
}

// === impl ApiKeyConfig ===

impl ApiKeyConfig {
    /// Checks this section and reports every mistake.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        collect(|e| self.check(e))
    }

    fn check(&self, errors: &mut Vec<ConfigError>) {
        let mut key_header = None;
        match (&self.header, &self.query) {
            (Some(h), None) => match HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => key_header = Some(name),
                Err(_) => errors.push(ConfigError::invalid(
                    "header",
                    h.as_str(),
                    "is not a valid header name",
                )),
            },
            (None, Some(q)) => {
                if let Err(reason) = crate::api_key::check_query_param(q) {
                    errors.push(ConfigError::invalid("query", q.as_str(), reason));
                }
            }
            _ => errors.push(ConfigError::missing(
                "header",
                "set exactly one of `header` and `query`",
            )),
        }
        if self.keys.is_empty() {
            errors.push(ConfigError::missing("keys", "list at least one key"));
        }
        let mut seen = HashSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            check_identity(&format!("keys[{i}].identity"), &k.identity, errors);
            match crate::api_key::parse_sha256_hex(k.sha256.expose()) {
                Ok(digest) => {
                    if !seen.insert(digest) {
                        errors.push(ConfigError::invalid(
                            format!("keys[{i}].sha256"),
                            "[redacted]",
                            "repeats the hash of an earlier key",
                        ));
                    }
                }
                Err(reason) => errors.push(ConfigError::invalid(
                    format!("keys[{i}].sha256"),
                    "[redacted]",
                    reason,
                )),
            }
        }
        check_identity_header(self.identity_header.as_deref(), key_header.as_ref(), errors);
    }
}

// === impl BasicConfig ===

impl Default for BasicConfig {
    fn default() -> Self {
        Self {
            realm: crate::DEFAULT_REALM.to_owned(),
            users: Vec::new(),
            cache_entries: 1024,
            cache_ttl: Duration::from_secs(300),
            max_verifications: None,
            verification_wait: Duration::from_millis(100),
            identity_header: None,
            keep_credentials: false,
        }
    }
}

impl BasicConfig {
    /// Checks this section and reports every mistake.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        collect(|e| self.check(e))
    }

    fn check(&self, errors: &mut Vec<ConfigError>) {
        if let Err(reason) = crate::shared::check_realm(&self.realm) {
            errors.push(ConfigError::invalid("realm", self.realm.as_str(), reason));
        }
        if self.users.is_empty() {
            errors.push(ConfigError::missing("users", "list at least one user"));
        }
        let mut seen = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("users[{i}].name");
            check_identity(&key, &u.name, errors);
            if u.name.contains(':') {
                errors.push(ConfigError::invalid(key, u.name.as_str(), "contains ':'"));
            } else if !seen.insert(u.name.as_str()) {
                errors.push(ConfigError::invalid(
                    key,
                    u.name.as_str(),
                    "is listed twice",
                ));
            }
            if let Err(reason) = crate::basic::StoredHash::parse(u.hash.expose()) {
                errors.push(ConfigError::invalid(
                    format!("users[{i}].hash"),
                    "[redacted]",
                    reason,
                ));
            }
        }
        if self.max_verifications == Some(0) {
            errors.push(ConfigError::invalid(
                "max_verifications",
                "0",
                "must be at least 1",
            ));
        }
        check_identity_header(self.identity_header.as_deref(), None, errors);
    }
}

// === impl JwtConfig ===

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            realm: crate::DEFAULT_REALM.to_owned(),
            issuer: None,
            audience: Vec::new(),
            leeway: Duration::from_secs(30),
            identity_claim: "sub".to_owned(),
            keys: Vec::new(),
            jwks_url: None,
            jwks_refresh: Duration::from_secs(300),
            jwks_timeout: Duration::from_secs(2),
            cache_entries: 4096,
            cache_ttl: Duration::from_secs(60),
            identity_header: None,
            keep_credentials: false,
        }
    }
}

impl JwtConfig {
    /// Checks this section and reports every mistake. Reads `pem_file`s.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        collect(|e| self.check(e))
    }

    fn check(&self, errors: &mut Vec<ConfigError>) {
        if let Err(reason) = crate::shared::check_realm(&self.realm) {
            errors.push(ConfigError::invalid("realm", self.realm.as_str(), reason));
        }
        if self.issuer.as_deref() == Some("") {
            errors.push(ConfigError::invalid("issuer", "", "must not be empty"));
        }
        for (i, a) in self.audience.iter().enumerate() {
            if a.is_empty() {
                errors.push(ConfigError::invalid(
                    format!("audience[{i}]"),
                    "",
                    "must not be empty",
                ));
            }
        }
        if self.leeway > crate::jwt::MAX_LEEWAY {
            errors.push(ConfigError::invalid(
                "leeway",
                humantime::format_duration(self.leeway).to_string(),
                "must be at most 1h",
            ));
        }
        if self.identity_claim.is_empty() {
            errors.push(ConfigError::invalid(
                "identity_claim",
                "",
                "must not be empty",
            ));
        } else if crate::jwt::NUMERIC_CLAIMS.contains(&self.identity_claim.as_str()) {
            errors.push(ConfigError::invalid(
                "identity_claim",
                self.identity_claim.as_str(),
                "must not be a numeric registered claim (exp, nbf, iat): the identity is a string",
            ));
        }
        if self.keys.is_empty() && self.jwks_url.is_none() {
            errors.push(ConfigError::missing(
                "keys",
                "list at least one key or set `jwks_url`",
            ));
        }
        let mut kids = HashSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            if let Some(kid) = &k.kid {
                if !kids.insert(kid.as_str()) {
                    errors.push(ConfigError::invalid(
                        format!("keys[{i}].kid"),
                        kid.as_str(),
                        "is used by an earlier key",
                    ));
                }
            }
            if let Err(e) = k.load(i) {
                errors.push(e);
            }
        }
        if let Some(url) = &self.jwks_url {
            if let Err(e) = check_jwks_url(url) {
                errors.push(e);
            }
            if !cfg!(feature = "jwks") {
                errors.push(ConfigError::FeatureDisabled {
                    key: "jwks_url".to_owned(),
                    feature: "jwks",
                });
            }
        }
        if self.jwks_refresh < MIN_JWKS_REFRESH {
            errors.push(ConfigError::invalid(
                "jwks_refresh",
                humantime::format_duration(self.jwks_refresh).to_string(),
                "must be at least 100ms",
            ));
        }
        if self.jwks_timeout.is_zero() {
            errors.push(ConfigError::invalid(
                "jwks_timeout",
                "0s",
                "must be above 0",
            ));
        }
        if self.cache_entries > 0
            && (self.cache_ttl.is_zero() || self.cache_ttl > crate::cache::MAX_CACHE_TTL)
        {
            errors.push(ConfigError::invalid(
                "cache_ttl",
                humantime::format_duration(self.cache_ttl).to_string(),
                "must be above 0 and at most 1h (or set cache_entries = 0)",
            ));
        }
        check_identity_header(self.identity_header.as_deref(), None, errors);
    }
}

// === impl JwtKeyConfig ===

impl JwtKeyConfig {
    /// Builds the key of `keys[i]`, reading its `pem_file`.
    pub(crate) fn load(&self, i: usize) -> Result<crate::JwtKey, ConfigError> {
        let Some(alg) = self.alg else {
            return Err(ConfigError::missing(
                format!("keys[{i}].alg"),
                "set the algorithm: HS256, RS256, ES256 or EdDSA",
            ));
        };
        let key = match (alg, &self.secret, &self.pem, &self.pem_file) {
            (JwtAlgorithm::Hs256, Some(secret), None, None) => {
                if secret.expose().len() < MIN_HMAC_SECRET {
                    return Err(ConfigError::invalid(
                        format!("keys[{i}].secret"),
                        "[redacted]",
                        "must be at least 32 bytes long",
                    ));
                }
                crate::JwtKey::hs256(secret.expose())
            }
            (JwtAlgorithm::Hs256, ..) => {
                return Err(ConfigError::missing(
                    format!("keys[{i}]"),
                    "an HS256 key takes a `secret`, and no `pem` or `pem_file`",
                ));
            }
            (alg, None, Some(pem), None) => {
                crate::JwtKey::from_pem_at(alg, pem.as_bytes(), format!("keys[{i}].pem"))?
            }
            (alg, None, None, Some(path)) => {
                let pem = std::fs::read(path).map_err(|source| ConfigError::ReadPem {
                    key: format!("keys[{i}].pem_file"),
                    path: path.clone(),
                    source,
                })?;
                crate::JwtKey::from_pem_at(alg, &pem, format!("keys[{i}].pem_file"))?
            }
            (alg, ..) => {
                return Err(ConfigError::missing(
                    format!("keys[{i}]"),
                    format!(
                        "an {} key takes exactly one of `pem` and `pem_file`, and no `secret`",
                        alg.as_str()
                    ),
                ));
            }
        };
        Ok(match &self.kid {
            Some(kid) => key.kid(kid.as_str()),
            None => key,
        })
    }
}

fn collect(check: impl FnOnce(&mut Vec<ConfigError>)) -> Result<(), Vec<ConfigError>> {
    let mut errors = Vec::new();
    check(&mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// An identity must be usable as a header value and a log field.
fn check_identity(key: &str, identity: &str, errors: &mut Vec<ConfigError>) {
    if identity.is_empty() {
        errors.push(ConfigError::invalid(key, identity, "must not be empty"));
    } else if !identity.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        errors.push(ConfigError::invalid(
            key,
            identity,
            "must be printable ASCII (it may be forwarded in a header)",
        ));
    }
}

/// Checks `identity_header`: a valid name, not reserved, not the key header.
fn check_identity_header(
    name: Option<&str>,
    key_header: Option<&HeaderName>,
    errors: &mut Vec<ConfigError>,
) {
    let Some(name) = name else {
        return;
    };
    let reason = match HeaderName::from_bytes(name.as_bytes()) {
        Ok(h) => match crate::shared::check_identity_header(&h, key_header) {
            Ok(()) => return,
            Err(reason) => reason,
        },
        Err(_) => "is not a valid header name",
    };
    errors.push(ConfigError::invalid("identity_header", name, reason));
}

/// Parses and checks a JWKS URL: plain `http://` with a host.
pub(crate) fn check_jwks_url(url: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| ConfigError::invalid("jwks_url", url, "is not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(ConfigError::invalid(
                "jwks_url",
                url,
                "uses https, which is not supported yet: TLS to JWKS arrives with R16; \
                 use an http:// URL on a trusted network",
            ));
        }
        _ => {
            return Err(ConfigError::invalid(
                "jwks_url",
                url,
                "must be an absolute http:// URL",
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid("jwks_url", url, "has no host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(ConfigError::invalid(
            "jwks_url",
            "[redacted]",
            "must not contain user info",
        ));
    }
    Ok(uri)
}
