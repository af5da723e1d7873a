//! Authentication layer for tower and axum: API keys, HTTP Basic and JWT (R9).
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, http::{HeaderMap, HeaderName, Request}, routing::get, Extension, Router};
//! use http_body_util::BodyExt;
//! use portcullis_auth::{ApiKeys, AuthLayer};
//! use portcullis_core::Identity;
//! use tower::ServiceExt;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The handler sees the identity, and never the key.
//! async fn whoami(Extension(id): Extension<Identity>, headers: HeaderMap) -> String {
//!     format!("{} {}", id.0, headers.contains_key("x-api-key"))
//! }
//! let keys = ApiKeys::header(HeaderName::from_static("x-api-key")).key("acme", "k-acme-1");
//! let app = Router::new().route("/", get(whoami)).layer(AuthLayer::api_key(keys));
//!
//! let res = app.clone().oneshot(Request::get("/").body(Body::empty())?).await?;
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers()["www-authenticate"], r#"ApiKey header="x-api-key""#);
//! assert_eq!(res.headers()["portcullis-error"], "missing_credentials");
//!
//! let req = Request::get("/").header("x-api-key", "wrong").body(Body::empty())?;
//! assert_eq!(app.clone().oneshot(req).await?.status(), 403);
//!
//! let req = Request::get("/").header("x-api-key", "k-acme-1").body(Body::empty())?;
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(&res.into_body().collect().await?.to_bytes()[..], b"acme false");
//! # Ok(()) }
//! ```
//!
//! The same layer from the gateway's TOML:
//!
//! ```
//! use portcullis_auth::{AuthConfig, AuthLayer};
//! let config: AuthConfig = toml::from_str(r#"
//!     type = "api_key"
//!     header = "x-api-key"
//!     keys = [ { identity = "acme", sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" } ]
//!     identity_header = "x-portcullis-identity"
//! "#)?;
//! config.validate().map_err(|errors| format!("{errors:?}"))?;
//! let layer = AuthLayer::from_config(&config)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Schemes
//!
//! - **API key** ([`ApiKeys`]): the key comes from one header or one query
//!   parameter. Keys are stored as SHA-256 digests; the presented key is hashed and
//!   compared with every stored digest in constant time. Each key names an identity.
//! - **HTTP Basic** ([`BasicUsers`]): `Authorization: Basic base64(user:password)`,
//!   checked against argon2 PHC strings or bcrypt hashes on tokio's blocking
//!   threads, with a cache of recent successes. Unknown users cost a full
//!   verification too (no user enumeration by timing).
//! - **JWT** ([`JwtAuth`]): `Authorization: Bearer <token>`, HS256, RS256, ES256 or
//!   EdDSA. Every key is pinned to one algorithm, and only the keys of the
//!   token's `alg` are tried: those with the token's `kid` (several keys may share
//!   one, across algorithms), or without a `kid`, all of them. A token is never
//!   verified with a key of another algorithm. That refuses `alg: none` and
//!   algorithm confusion (an HS256 token "signed" with an RSA public key). `exp` is
//!   required, `nbf` checked when present, `iss` and `aud` when configured, all
//!   with the leeway. The identity is a string claim (`sub` by default). Keys come
//!   from PEM files or inline PEM, and (feature `jwks`) from a JWKS URL.
//!
//! # Verified-token cache
//!
//! An RS256 verification costs about 160 µs, so the JWT scheme remembers tokens
//! that passed every check ([`JwtAuth::cache`], `cache_entries` and `cache_ttl` in
//! [`JwtConfig`]). The key is the SHA-256 of the token (the token itself is never
//! stored); the value is the identity, the key that verified it and the instant
//! the entry ends: the earlier of `cache_ttl` after the check and the token's
//! `exp` plus the leeway, so an expired token is never served from the cache.
//! Only successes are cached: getting in needs a valid signature, so
//! unauthenticated clients cannot fill it.
//!
//! - At most `cache_entries` (default 4096) entries for at most `cache_ttl`
//!   (default 60 s, at most 1 h). When full, expired entries go first, then those
//!   closest to their end. `cache_entries = 0` disables the cache.
//! - An entry verified by a JWKS key is not served once a refresh brings a
//!   different document: removing a key from the JWKS invalidates its tokens at
//!   the next refresh. Fetching the same document again keeps the entries.
//! - A revoked but unexpired token stays accepted for at most `cache_ttl`.
//! - Entries end by tokio's monotonic clock; `exp` is read from the system clock
//!   once, when the entry is made.
//!
//! # Answers
//!
//! | situation | status | `portcullis-error` | extra header |
//! | --- | --- | --- | --- |
//! | no credentials for the scheme (another `Authorization` scheme counts as none) | 401 | `missing_credentials` | `WWW-Authenticate: ApiKey header="x-api-key"`, `Basic realm="staff"`, `Bearer realm="portcullis"` |
//! | wrong, unknown, expired or malformed credentials; duplicated credential headers | 403 | `bad_credentials` | |
//! | JWKS never fetched yet and no static key | 503 | `auth_unavailable` | `Retry-After: 1` |
//! | no password-verification slot free in time | 503 | `overloaded` | `Retry-After: 1` |
//!
//! Rejections use the gateway's error shape (`portcullis-core`): a JSON body and
//! the [`Cause`](portcullis_core::Cause) in the response extensions. Denials are
//! logged at `debug` with a short `reason`; secrets and header values are never
//! logged.
//!
//! On success the request gets the [`Identity`](portcullis_core::Identity)
//! extension, loses its credentials (the `Authorization` header, the key header,
//! or the key query parameter, the other parameters kept byte for byte and in
//! order) unless [`keep_credentials`](AuthLayer::keep_credentials) is set, and,
//! when [`identity_header`](AuthLayer::identity_header) is set, carries the
//! identity in that header. Client-sent copies of the identity header are removed
//! from every request, before anything else.
//!
//! Each decision increments the counter [`AUTH_DECISIONS_TOTAL`]
//! (`portcullis_auth_decisions_total{route,scheme,decision}`), with `route` the
//! [`MatchedRoute`](portcullis_core::MatchedRoute) template or `unmatched`.
//!
//! # Ordering
//!
//! - Put the layer *inside* the router (per route) so the metric has the route
//!   template, and *before* (outside) rate limiting keyed by identity, which reads
//!   the [`Identity`](portcullis_core::Identity) extension.
//! - Put it *after* (inside) the access log, which must have marked
//!   `Authorization` and the key header as sensitive; this layer removes them
//!   before the upstream, not before the log.
//! - The inner service must be `Clone` (axum routes and handlers are).
//!
//! # Limits and defaults
//!
//! - Presented API keys over 4 KiB, Basic credentials over 4 KiB and tokens over
//!   16 KiB are refused (403) without being parsed.
//! - HTTP Basic: at most `max_verifications` hashes at once (default twice the
//!   CPUs), a 100 ms wait for a free slot, a cache of 1024 successes for 5 minutes.
//! - JWT: leeway 30 s, identity claim `sub`, at most 8 keys tried per token, a
//!   cache of 4096 verified tokens for at most 60 s each.
//! - JWKS (feature `jwks`): plain `http://` only (TLS to JWKS arrives with R16),
//!   refreshed every 5 minutes and on a `kid` unknown for the token's `alg` (at
//!   most once per 10 s),
//!   2 s per fetch, 1 MiB per document, 64 keys per document; symmetric (`oct`)
//!   keys are ignored; a failed fetch keeps the last good set and logs a warning,
//!   retrying after 1 s, doubling up to the refresh interval. The fetch task needs
//!   a tokio runtime when the layer is built and stops when the last clone of the
//!   layer and its services is dropped.
//!
//! # Feature flags
//!
//! - `jwks`: fetch JWT keys from a JWKS URL in the background (hyper client).
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api_key;
mod basic;
mod body;
mod cache;
mod claims;
mod config;
mod duration;
mod error;
mod future;
#[cfg(feature = "jwks")]
mod jwks;
mod jwt;
mod layer;
mod metrics;
mod service;
mod shared;
#[cfg(test)]
mod tests;

/// The default realm of `WWW-Authenticate` challenges.
const DEFAULT_REALM: &str = "portcullis";

pub use api_key::ApiKeys;
pub use basic::BasicUsers;
pub use body::ResponseBody;
pub use config::{
    ApiKeyConfig, ApiKeyEntry, AuthConfig, BasicConfig, BasicUserEntry, JwtConfig, JwtKeyConfig,
    Secret,
};
pub use error::ConfigError;
pub use future::ResponseFuture;
pub use jwt::{JwtAlgorithm, JwtAuth, JwtKey};
pub use layer::AuthLayer;
pub use metrics::{AUTH_DECISIONS_TOTAL, describe as describe_metrics};
pub use service::Auth;
