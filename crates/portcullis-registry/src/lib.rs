//! Service registry for the Portcullis gateway (R12, R13): services and their routes,
//! endpoints with leases, validation of what registers, load balancers, and the state
//! stores that make registrations survive a restart.
//!
//! # Example
//!
//! Register a service and an endpoint, then serve from the published snapshot in an
//! axum handler, picking the endpoint with the service's balancer:
//!
//! ```
//! use std::sync::Arc;
//! use axum::{body::Body, extract::State, http::Request, routing::get, Router};
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use portcullis_registry::{
//!     now_unix_ms, AnyBalancer, EndpointChange, EndpointSpec, LoadBalancer, Policy,
//!     Registry, RouteSpec, ServiceChange, ServiceSpec,
//! };
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Arc::new(Registry::new(Policy::default()));
//! let spec = ServiceSpec::new(vec![RouteSpec::new("/droplets/{id}")]);
//! assert_eq!(registry.put_service("droplets", spec)?, ServiceChange::Created);
//! let put = registry.put_endpoint(
//!     "droplets", "d1", EndpointSpec::new("http://127.0.0.1:3000"), now_unix_ms())?;
//! assert_eq!(put.change, EndpointChange::Created);
//!
//! let snapshot = registry.snapshot();
//! assert_eq!(snapshot.version(), 2);
//! let service = snapshot.service("droplets").ok_or("no service")?;
//! assert_eq!(service.endpoints["d1"].spec.url, "http://127.0.0.1:3000");
//!
//! async fn pick(State(registry): State<Arc<Registry>>) -> String {
//!     let snapshot = registry.snapshot(); // held for the whole request
//!     let Some(service) = snapshot.service("droplets") else { return "none".into() };
//!     let endpoints = service.endpoints.values().map(|e| (e.spec.url.clone(), e.spec.weight));
//!     let balancer = AnyBalancer::new(service.spec.balancer, endpoints.collect());
//!     balancer.pick(&|_| true).map_or("none".into(), |p| p.endpoint)
//! }
//! let app = Router::new().route("/pick", get(pick)).with_state(registry.clone());
//! let res = app.oneshot(Request::get("/pick").body(Body::empty())?).await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(&res.into_body().collect().await?.to_bytes()[..], b"http://127.0.0.1:3000");
//! # Ok(()) }
//! ```
//!
//! # Admin API
//!
//! [`AdminApi`] is the axum router of the admin API (`/api/v1/...`): every change is
//! validated, applied, saved to the [`StateStore`], and answered only once saved:
//!
//! ```
//! use std::sync::Arc;
//! use axum::{body::Body, http::Request};
//! use tower::ServiceExt;
//! use portcullis_registry::{AdminApi, AdminToken, FileStore, Policy, Registry};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("portcullis-doc-admin-{}", std::process::id()));
//! let registry = Arc::new(Registry::new(Policy::default()));
//! let store = Arc::new(FileStore::new(&dir));
//! let app = AdminApi::new(registry.clone(), store, AdminToken::new("s3cret")).router();
//!
//! let put = Request::put("/api/v1/services/droplets")
//!     .header("authorization", "Bearer s3cret")
//!     .header("content-type", "application/json")
//!     .body(Body::from(r#"{"routes":[{"path":"/droplets/{id}"}]}"#))?;
//! assert_eq!(app.clone().oneshot(put).await?.status(), 201);
//! assert!(registry.snapshot().service("droplets").is_some());
//!
//! let anonymous = Request::get("/api/v1/services").body(Body::empty())?;
//! let res = app.oneshot(anonymous).await?;
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers()["portcullis-error"], "missing_credentials");
//! # let _ = std::fs::remove_dir_all(&dir);
//! # Ok(()) }
//! ```
//!
//! Routes, authentication, status codes and bounds are on [`AdminApi`] and in
//! the crate's `openapi.json` (served at `/api/v1/openapi.json`; a copy is kept in
//! the project's `docs/`, checked equal by a test).
//!
//! # Ordering
//!
//! Every change ([`Registry::put_service`], [`Registry::put_endpoint`], deletes,
//! [`Registry::expire`], [`Registry::restore`]) is validated first, then applied under a
//! short lock, then published as a new [`Snapshot`] through an `ArcSwap` and its version
//! sent on [`Registry::subscribe`]'s watch channel (for the gateway to rebuild its route
//! table). Readers never lock: a request loads one `Arc<Snapshot>` and keeps it, so a
//! change never alters what a request in flight sees.
//!
//! Persisting is the caller's step, after a successful change: `store.save(&registry.to_stored())`.
//! At start-up, `store.load()` then [`Registry::restore`]; a [`StoreError::Corrupt`]
//! file has been moved aside, so log it and start empty.
//!
//! Leases are wall-clock UNIX milliseconds (so they survive a restart); every method
//! that needs the time takes `now`, and [`now_unix_ms`] reads the clock. Call
//! [`Registry::expire`] on a timer.
//!
//! # Validation
//!
//! Names and ids are `[A-Za-z0-9._-]`, 1 to 64 bytes. Upstream URLs are
//! `http(s)://host:port` with an explicit port and nothing else (no user info, path,
//! query or fragment); non-canonical numeric hosts (`2852039166`, `0xa9.0xfe.0xa9.0xfe`)
//! are refused. The [`Policy`] refuses link-local addresses (169.254.0.0/16, fe80::/10,
//! IPv4-mapped too), the cloud metadata address (169.254.169.254, fd00:ec2::254,
//! `metadata.google.internal`) unless `allow_link_local`, and the gateway's own listener
//! addresses unless `allow_self` (a listener on `0.0.0.0`/`::` or loopback also matches a
//! loopback upstream or `localhost` on its port). Checks are syntactic: a host name is
//! not resolved. Loopback is allowed. A route (host, path, overlapping methods) owned by
//! another service is a `route_conflict`. Errors carry a cause ([`RegistrationError::as_str`])
//! and a status for the admin API.
//!
//! # Limits and defaults
//!
//! | what | default / bound |
//! | --- | --- |
//! | endpoint `ttl` | 30s, 1s..=1h |
//! | endpoint `weight` | 1, 1..=1000 |
//! | endpoint `metadata` | ≤ 32 entries, keys ≤ 64 bytes, values ≤ 256 bytes |
//! | `balancer` | `round_robin` |
//! | routes per service | ≤ [`MAX_ROUTES_PER_SERVICE`] (64) |
//! | endpoints per service | ≤ [`MAX_ENDPOINTS_PER_SERVICE`] (1024) |
//! | services | ≤ [`MAX_SERVICES`] (4096) |
//! | state file | ≤ [`MAX_STATE_FILE_BYTES`] (64 MiB) |
//! | least-request penalty | +4 per failure, halves every 5s, ≤ 1024 |
//!
//! # Feature flags
//!
//! - `redis`: `RedisStore`, a [`StateStore`] shared by a fleet of gateways through
//!   Redis (or Valkey, Dragonfly): endpoint leases are key TTLs, every save is
//!   published so the other gateways reload within a second, with a periodic full
//!   resync; while Redis is unreachable the gateway keeps its last known table and
//!   `RedisStore::is_healthy` is false. Its tests start a real `redis-server`
//!   (`scripts/test.sh` installs Debian's package).
//!
//! # Metrics
//!
//! [`REGISTRATIONS_TOTAL`] `{service,kind}`, [`LEASE_EXPIRIES_TOTAL`] `{service}` and
//! [`STORE_ERRORS_TOTAL`] `{store,op}`; [`describe_metrics`] registers their help text.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admin;
mod balance;
mod metrics;
mod model;
#[cfg(feature = "redis")]
mod redis_store;
mod registry;
mod store;
mod validate;

pub use admin::{
    AdminApi, AdminRules, AdminToken, Clock, EndpointHealthView, MAX_BODY_BYTES, MAX_JSON_DEPTH,
    OPENAPI_JSON, ReloadFuture, ReloadHook, ReservedRoute, RoutesView,
};
pub use balance::{
    AnyBalancer, FAILURE_PENALTY, InFlightGuard, LeastRequest, LoadBalancer, MAX_PENALTY,
    PENALTY_HALF_LIFE_MS, Pick, RoundRobin, WeightedRoundRobin,
};
pub use metrics::{
    LEASE_EXPIRIES_TOTAL, REGISTRATIONS_TOTAL, STORE_ERRORS_TOTAL, describe as describe_metrics,
};
pub use model::{
    Balancer, DEFAULT_TTL, EndpointSpec, HealthSpec, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_LEN,
    MAX_METADATA_VALUE_LEN, MAX_TTL, MAX_WEIGHT, MIN_TTL, RouteSpec, ServiceSpec,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_store::{
    DEFAULT_KEY_PREFIX, DEFAULT_REDIS_TIMEOUT, DEFAULT_RESYNC_INTERVAL, RedisOptions, RedisStore,
};
pub use registry::{
    Endpoint, EndpointChange, EndpointPut, Expired, Registry, RestoreReport, ServiceChange,
    ServiceEntry, Snapshot, now_unix_ms,
};
pub use store::{
    DEFAULT_FILE_NAME, FileStore, MAX_STATE_FILE_BYTES, STATE_FORMAT, StateStore, StoreError,
    StoreFuture, StoredState,
};
pub use validate::{
    MAX_ENDPOINTS_PER_SERVICE, MAX_HEALTH_HEADERS, MAX_METHODS_PER_ROUTE, MAX_NAME_LEN,
    MAX_ROUTES_PER_SERVICE, MAX_SERVICES, MAX_STRING_LEN, Policy, RegistrationError, Upstream,
    check_policy, parse_upstream, validate_endpoint_spec, validate_health, validate_name,
    validate_service_spec,
};
