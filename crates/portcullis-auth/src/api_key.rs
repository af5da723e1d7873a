//! API keys: [`ApiKeys`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Request, Uri};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::ConfigError;
use crate::shared::Decision;

/// Presented keys longer than this are refused without being hashed.
const MAX_KEY_LEN: usize = 4096;

/// API-key authentication, for [`AuthLayer::api_key`](crate::AuthLayer::api_key).
///
/// The key comes from one header or one query parameter. Keys are stored as
/// SHA-256 digests; the presented key is hashed and compared with **every**
/// stored digest in constant time, and the match names the identity.
///
/// ```
/// use http::HeaderName;
/// use portcullis_auth::ApiKeys;
///
/// let keys = ApiKeys::header(HeaderName::from_static("x-api-key"))
///     .key("acme", "s3cr3t-acme-key")
///     .sha256_hex(
///         "globex",
///         "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
///     )?;
/// # Ok::<(), portcullis_auth::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ApiKeys {
    source: Source,
    challenge: HeaderValue,
    keys: Vec<StoredKey>,
}

#[derive(Debug, Clone)]
enum Source {
    Header(HeaderName),
    Query(Box<str>),
}

#[derive(Clone)]
struct StoredKey {
    digest: [u8; 32],
    identity: Arc<str>,
}

// === impl ApiKeys ===

impl ApiKeys {
    /// Keys presented in the header `name`.
    pub fn header(name: HeaderName) -> Self {
        let challenge = HeaderValue::from_str(&format!("ApiKey header=\"{name}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("ApiKey"));
        Self {
            source: Source::Header(name),
            challenge,
            keys: Vec::new(),
        }
    }

    /// Keys presented in the query parameter `name`. Parameter names are
    /// compared decoded, as upstream frameworks decode them (`%XX` escapes and
    /// `+` as a space), so `api%5Fkey` is the same parameter as `api_key`: two
    /// such parameters are refused (403) like two key headers, and every one is
    /// removed with the key. The value is percent-decoded (`+` stays a `+`).
    ///
    /// Fails when `name` is empty or has characters other than ASCII letters,
    /// digits, `-`, `_` and `.`.
    pub fn query(name: &str) -> Result<Self, ConfigError> {
        check_query_param(name).map_err(|reason| ConfigError::invalid("query", name, reason))?;
        let challenge = HeaderValue::from_str(&format!("ApiKey query=\"{name}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("ApiKey"));
        Ok(Self {
            source: Source::Query(name.into()),
            challenge,
            keys: Vec::new(),
        })
    }

    /// Accepts `key` (the plain key; only its SHA-256 is kept) as `identity`.
    pub fn key(self, identity: impl Into<Arc<str>>, key: impl AsRef<[u8]>) -> Self {
        self.sha256(identity, Sha256::digest(key.as_ref()).into())
    }

    /// Accepts the key whose SHA-256 is `digest` as `identity`.
    pub fn sha256(mut self, identity: impl Into<Arc<str>>, digest: [u8; 32]) -> Self {
        self.keys.push(StoredKey {
            digest,
            identity: identity.into(),
        });
        self
    }

    /// Accepts the key whose SHA-256 is `hex` (64 hex digits) as `identity`.
    pub fn sha256_hex(self, identity: impl Into<Arc<str>>, hex: &str) -> Result<Self, ConfigError> {
        let digest = parse_sha256_hex(hex)
            .map_err(|reason| ConfigError::invalid("sha256", "[redacted]", reason))?;
        Ok(self.sha256(identity, digest))
    }

    /// The header the key comes in, if it comes in a header.
    pub(crate) fn header_name(&self) -> Option<&HeaderName> {
        match &self.source {
            Source::Header(name) => Some(name),
            Source::Query(_) => None,
        }
    }

    pub(crate) fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    pub(crate) fn check<B>(&self, req: &Request<B>) -> Decision {
        let presented: Cow<'_, [u8]> = match &self.source {
            Source::Header(name) => {
                let mut all = req.headers().get_all(name).iter();
                let Some(value) = all.next() else {
                    return Decision::Missing;
                };
                if all.next().is_some() {
                    return Decision::Deny("more than one key header");
                }
                Cow::Borrowed(value.as_bytes())
            }
            Source::Query(param) => {
                let query = req.uri().query().unwrap_or("");
                match find_param(query, param) {
                    Found::None => return Decision::Missing,
                    Found::Many => return Decision::Deny("more than one key parameter"),
                    Found::One(raw) => percent_decode(raw),
                }
            }
        };
        if presented.is_empty() {
            return Decision::Deny("empty key");
        }
        if presented.len() > MAX_KEY_LEN {
            return Decision::Deny("key too long");
        }
        let digest: [u8; 32] = Sha256::digest(&presented).into();
        // Compare with every key, without branching on the result, and select
        // the match's index in constant time.
        let mut found = u32::MAX;
        for (i, key) in self.keys.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            found.conditional_assign(&i, key.digest.ct_eq(&digest));
        }
        match usize::try_from(found).ok().and_then(|i| self.keys.get(i)) {
            Some(key) => Decision::Allow(key.identity.clone()),
            None => Decision::Deny("unknown key"),
        }
    }

    /// Removes the key from the request.
    pub(crate) fn strip<B>(&self, req: &mut Request<B>) -> Result<(), &'static str> {
        match &self.source {
            Source::Header(name) => {
                req.headers_mut().remove(name);
            }
            Source::Query(param) => {
                if let Some(uri) = without_param(req.uri(), param)? {
                    *req.uri_mut() = uri;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let identities: Vec<&str> = self.keys.iter().map(|k| &*k.identity).collect();
        f.debug_struct("ApiKeys")
            .field("source", &self.source)
            .field("identities", &identities)
            .finish_non_exhaustive()
    }
}

/// Checks a query parameter name.
pub(crate) fn check_query_param(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("must not be empty")
    } else if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Ok(())
    } else {
        Err("may only have ASCII letters, digits, '-', '_' and '.'")
    }
}

/// Parses 64 hex digits.
pub(crate) fn parse_sha256_hex(hex: &str) -> Result<[u8; 32], &'static str> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex.trim(), &mut digest)
        .map_err(|_| "must be 64 hex digits (the SHA-256 of the key)")?;
    Ok(digest)
}

enum Found<'a> {
    None,
    One(&'a str),
    Many,
}

/// The raw value of parameter `name` in `query`. Names are compared decoded
/// (see [`name_matches`]): `api%5Fkey` is the same parameter as `api_key`, and
/// both together are two key parameters.
fn find_param<'a>(query: &'a str, name: &str) -> Found<'a> {
    let mut found = Found::None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name_matches(key, name) {
            found = match found {
                Found::None => Found::One(value),
                _ => return Found::Many,
            };
        }
    }
    found
}

/// Whether the raw parameter name `raw` decodes to `name` the way
/// `application/x-www-form-urlencoded` parsers (`form_urlencoded`, axum's
/// `Query`, Go's `url.ParseQuery`, Python's `parse_qs`, Java servlets) decode it:
/// `%XX` escapes with hex digits in either case, and `+` as a space. Upstreams
/// see the decoded name, so the layer must too. Allocates nothing.
fn name_matches(raw: &str, name: &str) -> bool {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return raw == name;
    }
    FormDecode(raw.as_bytes()).eq(name.bytes())
}

/// The bytes of a form-encoded string, decoded: `%XX` escapes and `+` as a
/// space; a malformed escape stays as is.
struct FormDecode<'a>(&'a [u8]);

impl Iterator for FormDecode<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        let (byte, rest) = match (first, rest) {
            (b'%', [hi, lo, after @ ..]) => match (hex_digit(*hi), hex_digit(*lo)) {
                (Some(hi), Some(lo)) => ((hi << 4) | lo, after),
                _ => (b'%', rest),
            },
            (b'+', _) => (b' ', rest),
            (b, _) => (b, rest),
        };
        self.0 = rest;
        Some(byte)
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes; anything else, a malformed escape included, stays as is.
fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('%') {
        return Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let mut peek = bytes.clone();
            let hi = peek.next().and_then(|c| (c as char).to_digit(16));
            let lo = peek.next().and_then(|c| (c as char).to_digit(16));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
                bytes = peek;
                continue;
            }
        }
        out.push(b);
    }
    Cow::Owned(out)
}

/// `uri` without every pair of its query whose name decodes to `name`
/// (`api_key=…`, `api%5Fkey=…`), other pairs kept byte for byte and in order;
/// `None` when the parameter is absent.
fn without_param(uri: &Uri, name: &str) -> Result<Option<Uri>, &'static str> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let is_key = |pair: &&str| name_matches(pair.split_once('=').map_or(*pair, |(k, _)| k), name);
    if !query.split('&').any(|pair| is_key(&pair)) {
        return Ok(None);
    }
    let mut pq = String::with_capacity(uri.path().len() + query.len());
    pq.push_str(uri.path());
    let mut first = true;
    for pair in query.split('&').filter(|pair| !is_key(pair)) {
        pq.push(if first { '?' } else { '&' });
        pq.push_str(pair);
        first = false;
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::from_maybe_shared(Bytes::from(pq)).map_err(|_| "cannot rebuild the uri")?,
    );
    Uri::from_parts(parts)
        .map(Some)
        .map_err(|_| "cannot rebuild the uri")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_params() {
        assert!(matches!(
            find_param("a=1&api_key=k&b=2", "api_key"),
            Found::One("k")
        ));
        assert!(matches!(find_param("api_key", "api_key"), Found::One("")));
        assert!(matches!(find_param("xapi_key=1", "api_key"), Found::None));
        assert!(matches!(
            find_param("api_key=1&api_key=2", "api_key"),
            Found::Many
        ));
    }

    #[test]
    fn param_names_are_compared_decoded() {
        assert!(name_matches("api_key", "api_key"));
        assert!(name_matches("api%5Fkey", "api_key"));
        assert!(name_matches("%61pi%5fkey", "api_key"));
        assert!(name_matches("a+b", "a b"));
        assert!(name_matches("a%2Bb", "a+b"));
        assert!(!name_matches("a+b", "a+b"));
        assert!(!name_matches("api%5key", "api_key"));
        assert!(name_matches("api%5", "api%5"));
        assert!(name_matches("api%", "api%"));
        assert!(!name_matches("api%255Fkey", "api_key"));
        assert!(!name_matches("api_keyx", "api_key"));
        assert!(matches!(
            find_param("api%5Fkey=k&b=2", "api_key"),
            Found::One("k")
        ));
        assert!(matches!(
            find_param("api_key=1&api%5Fkey=2", "api_key"),
            Found::Many
        ));
        assert!(matches!(
            find_param("api%5fkey=1&%61pi_key=2", "api_key"),
            Found::Many
        ));
    }

    #[test]
    fn removes_every_encoding_of_the_key_parameter() {
        let uri: Uri = "/p?a=1&api_key=s&api%5Fkey=t&%61pi_key&api%5fkeyx=2"
            .parse()
            .unwrap();
        let out = without_param(&uri, "api_key").unwrap().unwrap();
        assert_eq!(out, "/p?a=1&api%5fkeyx=2");
        let uri: Uri = "/p?api%5Fkey=s".parse().unwrap();
        assert_eq!(without_param(&uri, "api_key").unwrap().unwrap(), "/p");
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(&*percent_decode("a%2Bb%zz%4"), b"a+b%zz%4");
        assert_eq!(&*percent_decode("plain"), b"plain");
        assert_eq!(&*percent_decode("%ff"), &[0xff]);
    }

    #[test]
    fn removes_only_the_key_parameter() {
        let uri: Uri = "http://h/p/a;b?x=1&api_key=s&&y=%2F&api_keyx=2"
            .parse()
            .unwrap();
        let out = without_param(&uri, "api_key").unwrap().unwrap();
        assert_eq!(out.to_string(), "http://h/p/a;b?x=1&&y=%2F&api_keyx=2");
        let uri: Uri = "/p?api_key=s".parse().unwrap();
        assert_eq!(without_param(&uri, "api_key").unwrap().unwrap(), "/p");
        let uri: Uri = "/p?z=1".parse().unwrap();
        assert!(without_param(&uri, "api_key").unwrap().is_none());
    }

    #[test]
    fn sha256_hex_must_be_64_digits() {
        assert!(parse_sha256_hex("abc").is_err());
        assert!(parse_sha256_hex(&"g".repeat(64)).is_err());
        assert!(parse_sha256_hex(&"A".repeat(64)).is_ok());
    }
}
