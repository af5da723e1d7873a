//! GCRA rate limiting for tower and axum (R10): exact local limits, and limits shared
//! by a fleet of gateways through Redis.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{body::Body, http::Request, routing::get, Router};
//! use portcullis_core::PeerAddr;
//! use portcullis_ratelimit::{KeyPart, LimitConfig, RateLimitLayer};
//! use tower::ServiceExt;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 2 requests a minute per client IP, at most 2 at once.
//! let per_ip = LimitConfig::new("per_ip", 2, Duration::from_secs(60)).key([KeyPart::ClientIp]);
//! let app = Router::new()
//!     .route("/", get(|| async { "hi" }))
//!     .layer(RateLimitLayer::new(per_ip)?);
//!
//! // The listener sets `PeerAddr`; a test sets it by hand.
//! let from = |ip: &str| {
//!     Request::get("/")
//!         .extension(PeerAddr((ip.parse::<std::net::IpAddr>().unwrap(), 40000).into()))
//!         .body(Body::empty())
//!         .unwrap()
//! };
//! let res = app.clone().oneshot(from("203.0.113.7")).await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.headers()["ratelimit-policy"], r#""per_ip";q=2;w=60"#);
//! assert_eq!(res.headers()["ratelimit"], r#""per_ip";r=1;t=30"#);
//! assert_eq!(app.clone().oneshot(from("203.0.113.7")).await?.status(), 200);
//!
//! // The third request within the burst is refused until a unit comes back.
//! let res = app.clone().oneshot(from("203.0.113.7")).await?;
//! assert_eq!(res.status(), 429);
//! assert_eq!(res.headers()["retry-after"], "30");
//! assert_eq!(res.headers()["portcullis-error"], "rate_limited");
//! assert_eq!(res.headers()["ratelimit"], r#""per_ip";r=0;t=60"#);
//!
//! // Another client has its own quota.
//! assert_eq!(app.oneshot(from("198.51.100.4")).await?.status(), 200);
//! # Ok(()) }
//! ```
//!
//! A limit allows `rate` requests `per` period, sustained, and `burst` at once
//! (default: `rate`): the Generic Cell Rate Algorithm spaces requests by
//! `per / rate` and tolerates `burst - 1` of them early. A refused request gets
//! 429 `rate_limited` (the gateway's JSON error body, R6) with `Retry-After`: the
//! whole seconds, rounded up and at least 1, until the next request can pass.
//!
//! A layer holds one or more limits; a request must pass every one. With one limit
//! the check counts at once. With several, each is first checked without counting
//! and counted only when all would allow, so a request one limit refuses does not
//! use up the others. (Two requests racing for the last unit may both pass that
//! check; the loser is then refused after the limits before it counted it.)
//!
//! Build a layer from a [`LimitConfig`] ([`RateLimitLayer::new`]) or from a whole
//! [`RateLimitConfig`] ([`RateLimitLayer::from_config`]), typically read from TOML:
//!
//! ```toml
//! max_keys = 100000           # per limit
//! sweep_interval = "60s"
//! trusted_proxies = ["10.0.0.0/8"]
//!
//! [[limits]]
//! name = "per_ip"
//! key = "client_ip"           # or a list: ["identity", "route", { header = "x-tenant" }]
//! rate = 100
//! per = "1m"
//! burst = 20
//!
//! [store]                     # optional; default: kind = "local"
//! kind = "redis"
//! url = "redis://10.0.0.5:6379/"
//! timeout = "50ms"
//! on_failure = "fail_open"    # or "fail_closed"
//! fleet_size = 4
//! breaker_cooldown = "1s"
//! ```
//!
//! # Keys
//!
//! A limit counts requests with the same key together. The key combines any of:
//!
//! | part | value | when missing |
//! |---|---|---|
//! | `client_ip` | the TCP peer ([`PeerAddr`](portcullis_core::PeerAddr)), or the address a trusted proxy put in `X-Forwarded-For` (`portcullis_forwarded::client_ip`) | one shared "unknown" key |
//! | `identity` | the [`Identity`](portcullis_core::Identity) an authentication layer set | one shared "anonymous" key |
//! | `route` | the [`MatchedRoute`](portcullis_core::MatchedRoute) template (`/droplets/{id}`) | one shared "unmatched" key |
//! | `{ header = "name" }` | the header's first value | the empty value |
//!
//! An empty list is one key for every request (a global limit). A client that sends
//! its own `X-Forwarded-For` without being a trusted proxy is keyed by its TCP peer:
//! rotating the header does not give it new quota. Unauthenticated requests all share
//! the "anonymous" identity key, so put `client_ip` beside `identity` when anonymous
//! traffic must not starve itself.
//!
//! Keys are never kept or logged as request data: their parts are hashed (a per-process
//! random 64-bit SipHash in memory, a SHA-256 prefix in Redis), so a long header value
//! costs no memory and appears in no log.
//!
//! # Headers
//!
//! Every response of a limited route, allowed or refused, carries the IETF
//! `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers),
//! appended after any the upstream set for its own limits:
//!
//! ```text
//! RateLimit-Policy: "per_ip";q=100;w=60, "per_tenant";q=1000;w=3600
//! RateLimit: "per_ip";r=19;t=1, "per_tenant";r=998;t=8
//! ```
//!
//! - `RateLimit-Policy` lists every limit in configuration order: `q` is `rate` and `w`
//!   is `per` in seconds (rounded up).
//! - `RateLimit` lists every limit, the most restrictive first (fewest remaining, then
//!   longest reset): `r` is the requests that would pass right now, `t` the whole
//!   seconds (rounded up) until the full burst is available again. On an allowed
//!   response `t` is `(burst - r) × per / rate`, at most one interval above the exact
//!   time; on a refused one it is exact.
//! - With Redis, limits after the one that refused are not asked and not listed in
//!   `RateLimit`; a 503 `rate_limit_unavailable` has `RateLimit-Policy` only.
//!
//! # Bounded memory
//!
//! Each limit tracks at most `max_keys` keys (default 100000, a few dozen bytes each).
//! Past the cap, a **new** key is not tracked: it is counted in the limit's one shared
//! overflow key (with the limit's quota), and in `portcullis_ratelimit_overflow_total`.
//! Keys already tracked keep their own state, so a flood of fresh keys (spoofed
//! headers, many addresses) cannot push known clients out; the flood itself shares one
//! quota. The first request after each `sweep_interval` (default 60s) sweeps: it
//! forgets every key whose quota is full again (indistinguishable from a fresh key)
//! and gives the memory back; [`RateLimitLayer::sweep`] does it on demand. No
//! background task is needed, so a layer can be built outside a runtime. Time follows
//! `tokio::time::Instant`, so tests can pause and advance it.
//!
//! # Redis (fleet)
//!
//! With `store.kind = "redis"` (feature `redis`) every gateway asks Redis: the same
//! GCRA runs atomically in a small Lua script (loaded once, run with `EVALSHA`, loaded
//! again after `NOSCRIPT`) on the server's clock (`TIME`), using only `GET`, `SET … PX`
//! and `TIME`, so it runs on Redis, Valkey and Dragonfly without modules. Keys are
//! `{key_prefix}{<limit name>}:<hash>`: the limit name is a hash tag, so a cluster keeps
//! a policy on one slot, and every route and gateway using that name shares one quota:
//! **the same name must mean the same quota** everywhere. Keys expire when their quota
//! is full again. Limits are asked one after the other, stopping at the first refusal
//! (limits before it have counted the request). Time resolution is 1µs.
//!
//! Each decision waits at most `timeout` (default 50ms, connecting included). When
//! Redis fails or is late, a circuit breaker skips Redis for `breaker_cooldown`
//! (default 1s), then lets one request probe it, and closes again on success: a dead
//! Redis costs one timeout per cooldown, not one per request. Meanwhile `on_failure`
//! applies:
//!
//! - `fail_open` (default): a local limiter with each quota divided by `fleet_size`
//!   (the interval multiplied, the burst divided, at least 1) decides; allowed requests
//!   count as `fallback` in the metrics.
//! - `fail_closed`: 503 `rate_limit_unavailable` with `Retry-After: 1`.
//!
//! Tolerance: the limit is exact while Redis answers; during an outage a fleet of
//! `fleet_size` gateways allows up to `fleet_size ×` the local share (about the
//! configured quota if `fleet_size` is right, more if the fleet is larger, and the
//! local state starts empty).
//!
//! # Metrics
//!
//! Through the `metrics` facade; call [`describe_metrics`] once after installing a
//! recorder.
//!
//! | metric | labels |
//! |---|---|
//! | [`DECISIONS_TOTAL`] | `route` (template or `unmatched`), `decision` (`allowed`, `limited`, `fallback`, `unavailable`) |
//! | [`TRACKED_KEYS`] (gauge, set at each sweep) | `limit` |
//! | [`OVERFLOW_TOTAL`] | `limit` |
//! | [`REDIS_DURATION_SECONDS`] (histogram) | none |
//! | [`REDIS_ERRORS_TOTAL`] | `kind` (`timeout`, `error`) |
//! | [`REDIS_BREAKER_STATE`] (gauge: 0 closed, 1 open, 2 half-open) | none |
//!
//! # Ordering
//!
//! Put the layer **after** authentication, so that `identity` is known, and **inside**
//! the router (on the routes), so that `route` is known and a 404 costs no quota; the
//! listener (or a small middleware in a plain axum app) must set
//! [`PeerAddr`](portcullis_core::PeerAddr) for `client_ip`. It needs no
//! `portcullis_forwarded::Forwarded` layer before it: `client_ip` reads
//! `X-Forwarded-For` itself, believing only `trusted_proxies`.
//!
//! # Limits and defaults
//!
//! | knob | default |
//! |---|---|
//! | `key` | `client_ip` |
//! | `per` | 1s (at most 365 days) |
//! | `burst` | `rate` |
//! | `max_keys` | 100000 per limit |
//! | `sweep_interval` | 60s |
//! | `trusted_proxies` | none |
//! | `store` | `local` |
//! | `store.key_prefix` | `portcullis:rl:` |
//! | `store.timeout` | 50ms |
//! | `store.on_failure` | `fail_open` |
//! | `store.fleet_size` | 1 |
//! | `store.breaker_cooldown` | 1s |
//!
//! Limit names are 1 to 64 ASCII letters, digits, `_`, `-` or `.`. The inner service
//! must be `Clone` (with Redis, the one made ready is kept for the request while
//! Redis answers). A local decision costs well under a microsecond.
//!
//! # Feature flags
//!
//! - `redis`: the Redis store. Off by default.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod config;
mod error;
mod future;
mod key;
mod layer;
mod local;
mod metrics;
#[cfg(feature = "redis")]
mod redis_store;
mod service;
mod shared;
#[cfg(test)]
mod tests;

pub use body::ResponseBody;
pub use config::{FailurePolicy, KeyPart, LimitConfig, RateLimitConfig, RedisConfig, StoreConfig};
pub use error::ConfigError;
pub use future::ResponseFuture;
pub use layer::RateLimitLayer;
pub use metrics::{
    DECISIONS_TOTAL, OVERFLOW_TOTAL, REDIS_BREAKER_STATE, REDIS_DURATION_SECONDS,
    REDIS_ERRORS_TOTAL, TRACKED_KEYS, describe as describe_metrics,
};
pub use service::RateLimit;
