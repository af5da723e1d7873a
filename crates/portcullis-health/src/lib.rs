//! Active and passive health checking of upstream endpoints (R11).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{http::{HeaderMap, StatusCode}, routing::get, Router};
//! use portcullis_health::{probe, HealthCheckConfig, HealthChecker, PassiveHealthConfig, ProbeResult};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A Rails-like app that only answers 200 when told the client used TLS.
//! let app = Router::new().route("/healthz", get(|h: HeaderMap| async move {
//!     if h.get("x-forwarded-proto").is_some_and(|v| v == "https") { StatusCode::OK }
//!     else { StatusCode::MOVED_PERMANENTLY }
//! }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! let mut config: HealthCheckConfig = serde_json::from_str(
//!     r#"{ "path": "/healthz", "interval": "5s", "timeout": "1s", "expected_status": [200] }"#,
//! )?;
//! let result = probe(addr, "app.internal", &config).await;
//! assert!(matches!(result, ProbeResult::Failed { .. }), "301 is not expected");
//!
//! config.headers.insert("X-Forwarded-Proto".into(), "https".into());
//! let result = probe(addr, "app.internal", &config).await;
//! assert!(matches!(result, ProbeResult::Ok { status: 200, .. }));
//!
//! // A checker probes each endpoint in its own task; a new endpoint takes
//! // traffic only after its first passing probe.
//! let checker = HealthChecker::new("rails", Some(config), PassiveHealthConfig::default())
//!     .map_err(|e| format!("{e:?}"))?;
//! let status = checker.add("web-1", addr, "app.internal");
//! tokio::time::timeout(Duration::from_secs(2), async {
//!     while !status.is_available() { tokio::time::sleep(Duration::from_millis(5)).await }
//! }).await?;
//! assert!(status.is_available());
//! # Ok(()) }
//! ```
//!
//! # Active checks
//!
//! [`probe`] opens a **new** TCP connection for every probe (never the proxy's
//! pool), speaks HTTP/1.1 with `Host`, `User-Agent: portcullis-health/<version>`,
//! `Connection: close` and the configured headers, and compares the status with
//! `expected_status`. A failure has a [`FailureKind`] (refused, connect timeout,
//! timeout, status, protocol, other) and a bounded detail: for an unexpected
//! status, the first [`BODY_PREFIX_LIMIT`] bytes of the body with control
//! characters blanked.
//!
//! [`EndpointHealth`] applies the `rise` and `fall` thresholds; a new endpoint of
//! a service with active checks starts [`HealthState::Unknown`] and takes no
//! traffic until its first probe passes. Each transition is logged at `warn` with
//! `service`, `endpoint` and the error, and the last error is kept in the
//! [`EndpointStatus`] for the admin API.
//!
//! [`HealthChecker`] runs one Tokio task per endpoint, probing at once and then
//! every `interval ± jitter`. `remove` aborts the task, and so does dropping the
//! checker.
//!
//! # Passive checks
//!
//! [`PassiveHealth`] (also inside [`HealthChecker::record`]) ejects an endpoint
//! after `consecutive_failures` connect errors or 5xx responses in a row, for
//! `base_ejection_time` doubled on each repeat up to `max_ejection_time`, and
//! never ejects more than `max_ejected_percent` of the service's endpoints. The
//! endpoint returns when its time is up and, with active checks, only once a
//! probe passed after that.
//!
//! # Ordering
//!
//! The balancer asks [`EndpointStatus::is_available`] (lock-free: two atomic
//! loads and a clock read) before choosing an endpoint; the proxy reports each
//! outcome with [`HealthChecker::record`] after the response head (or the
//! connect error). With no available endpoint the gateway answers 503.
//!
//! # Limits and defaults
//!
//! | knob | default |
//! | --- | --- |
//! | `path` / `method` | `/healthz` / `GET` |
//! | `interval` / `jitter` | 5s / 10% of the interval |
//! | `timeout` (whole probe) / `connect_timeout` | 1s / 1s |
//! | `expected_status` | `[200]` |
//! | `rise` / `fall` | 2 / 3 |
//! | `consecutive_failures` | 5 |
//! | `base_ejection_time` / `max_ejection_time` | 30s / 5m |
//! | `max_ejected_percent` | 50 |
//!
//! A failure detail is at most 256 bytes. The repeat count of ejections starts
//! over once an endpoint stayed un-ejected for `max_ejection_time`. Time is
//! `tokio::time::Instant`, so tests can pause it.
//!
//! # Metrics
//!
//! Through the `metrics` facade ([`describe_metrics`] registers help text):
//! `portcullis_endpoint_healthy{service,endpoint}` (1 when the endpoint takes traffic),
//! `portcullis_health_probes_total{service,result}`,
//! `portcullis_health_probe_duration_seconds{service}` and
//! `portcullis_endpoint_ejections_total{service}`.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod checker;
mod config;
mod error;
mod metrics;
mod passive;
mod probe;
mod state;

pub use checker::HealthChecker;
pub use config::{HealthCheckConfig, PassiveHealthConfig};
pub use error::ConfigError;
pub use metrics::{
    ENDPOINT_EJECTIONS_TOTAL, ENDPOINT_HEALTHY, HEALTH_PROBE_DURATION_SECONDS, HEALTH_PROBES_TOTAL,
    describe as describe_metrics,
};
pub use passive::{Outcome, PassiveHealth};
pub use probe::{BODY_PREFIX_LIMIT, FailureKind, ProbeResult, USER_AGENT_VALUE, probe};
pub use state::{EndpointHealth, EndpointStatus, HealthSnapshot, HealthState, Transition};
