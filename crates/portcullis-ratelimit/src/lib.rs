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
//! use up the others. (Locally, two requests racing for the last unit may both pass
//! that check; the loser is then refused after the limits before it counted it. With
//! Redis the decision is atomic.) [`RateLimitLayer::select`] makes a layer over some
//! of a layer's limits sharing their state: one per route, when routes use
//! different combinations of one config's limits.
//!
//! Build a layer from a [`LimitConfig`] ([`RateLimitLayer::new`]) or from a whole
//! [`RateLimitConfig`] ([`RateLimitLayer::from_config`]), typically read from TOML:
//!
//! ```toml
//! max_keys = 100000           # per limit
//! sweep_interval = "60s"
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
//! | `client_ip` | the [`ClientAddr`](portcullis_core::ClientAddr) a forwarding layer set (a trusted proxy's `X-Forwarded-For`), else the TCP peer ([`PeerAddr`](portcullis_core::PeerAddr)); an IPv6 address by its /64 (one host usually holds a whole /64) | one shared "unknown" key |
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
//! - `RateLimit-Policy` lists every limit in configuration order: `w` is `per` in
//!   whole seconds (rounded up, at least 1) and `q` the requests allowed in that
//!   window (`rate` scaled from `per` to `w`: 1 per 100ms is `q=10;w=1`).
//! - `RateLimit` lists every limit, the most restrictive first (fewest remaining, then
//!   longest reset): `r` is the requests that would pass right now, `t` the whole
//!   seconds (rounded up) until the full burst is available again. On an allowed
//!   response `t` is `(burst - r) × per / rate`, at most one interval above the exact
//!   time; on a refused one it is exact.
//! - A 503 `rate_limit_unavailable` has `RateLimit-Policy` only.
//!
//! # Bounded memory
//!
//! Each limit tracks at most `max_keys` keys (default 100000, a few dozen bytes each).
//! Past the cap, a **new** key is not tracked: it is counted in one of the limit's 64
//! overflow states, chosen by the key's hash (each with the limit's quota), and in
//! `portcullis_ratelimit_overflow_total` (requests). Keys already tracked keep their
//! own state, so a flood of fresh keys (spoofed headers, many addresses) cannot push
//! known clients out; the flood, and any newcomer while the cap is full, shares 64
//! quotas. The first request after each `sweep_interval` (default 60s) starts a
//! sweep (on the blocking pool when there is a runtime, so that request does not
//! wait): every key whose quota is full again (indistinguishable from a fresh key) is
//! forgotten and the memory given back when most of it is unused;
//! [`RateLimitLayer::sweep`] does it on demand. No background task runs between
//! sweeps, so a layer can be built outside a runtime. Time follows
//! `tokio::time::Instant`, so tests can pause and advance it.
//!
//! # Redis (fleet)
//!
//! With `store.kind = "redis"` (feature `redis`) every gateway asks Redis: the same
//! GCRA runs atomically in a small Lua script (loaded once, run with `EVALSHA`, loaded
//! again after `NOSCRIPT`) on the server's clock (`TIME`), using only `GET`, `SET … PX`
//! and `TIME`, so it runs on Redis, Valkey and Dragonfly without modules. Keys are
//! `{key_prefix}{<limit name>}:<hash>`, and every route and gateway using that name
//! shares one quota: **the same name must mean the same quota** everywhere. Keys
//! expire when their quota is full again. All the limits of a request are decided in
//! one script call, all or nothing: a request is counted only when every limit allows
//! it. Time resolution is 1µs. One Redis server (or a primary with replicas) is
//! supported, not Redis Cluster (the limit name is a hash tag, but a request's limits
//! are decided together).
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
//! [`PeerAddr`](portcullis_core::PeerAddr) for `client_ip`. Behind proxies, put
//! `portcullis-forwarded`'s `ForwardedLayer` (with the trusted proxies) before it: it
//! sets [`ClientAddr`](portcullis_core::ClientAddr) from a trusted proxy's
//! `X-Forwarded-For`, which this layer then keys on. This layer never reads that
//! header itself.
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
