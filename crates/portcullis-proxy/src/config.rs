use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Settings of the upstream client: pool, limits and timeouts (R5).
///
/// Every field has a safe default; durations are human strings (`"500ms"`, `"30s"`).
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Upper bound on establishing a TCP connection to an upstream. Default: 5s.
    #[serde(with = "crate::duration_str")]
    pub connect_timeout: Duration,
    /// Upper bound on waiting for the upstream's response headers after the request
    /// was sent. Default: 60s.
    #[serde(with = "crate::duration_str")]
    pub response_header_timeout: Duration,
    /// Upper bound on the whole exchange, response body included; `"0s"` disables.
    /// Default: 0s (disabled: long downloads and streams are legitimate).
    #[serde(with = "crate::duration_str")]
    pub request_timeout: Duration,
    /// How long an idle pooled connection is kept before it is closed. Default: 90s.
    #[serde(with = "crate::duration_str")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per upstream. Default: 256.
    pub pool_max_idle_per_upstream: usize,
    /// Open connections allowed per upstream (idle and busy). Default: 1024.
    pub max_connections_per_upstream: usize,
    /// Requests in flight allowed per upstream, response bodies included; past it a
    /// request is answered 503 `upstream_overloaded` with `Retry-After` at once
    /// (Envoy's `max_requests` circuit breaker). 0 = no cap of its own: with
    /// HTTP/1.1 upstreams every request in flight holds a connection, so
    /// `max_connections_per_upstream` bounds them already; set this lower to shed
    /// load early instead of queueing for a connection. An upgraded (WebSocket)
    /// exchange gives its slot back once the 101 is sent: tunnels are bounded by
    /// the listener's connection cap instead. Default: 0.
    pub max_requests_per_upstream: usize,
    /// How long a request waits for a connection slot when the cap is reached,
    /// before it is answered 503 `upstream_overloaded`. Default: 1s.
    #[serde(with = "crate::duration_str")]
    pub connection_wait_timeout: Duration,
    /// Upper bound on the wait for the next piece of the upstream's response body;
    /// past it the response is aborted. Default: 60s (nginx's `proxy_read_timeout`).
    #[serde(with = "crate::duration_str")]
    pub body_idle_timeout: Duration,
    /// Idle timeout of an upgraded (WebSocket) tunnel. Default: 300s.
    #[serde(with = "crate::duration_str")]
    pub tunnel_idle_timeout: Duration,
    /// Send the upstream's authority as `Host` instead of the client's. Default: false.
    pub set_upstream_host: bool,
    /// Largest upstream response header section, in bytes; also the most the
    /// client buffers per connection for writing (larger buffers mean fewer
    /// syscalls for uploads). Default: 417792 (hyper's default).
    pub max_response_header_bytes: usize,
    /// Times a request without a body is sent to another endpoint when its
    /// endpoint cannot be connected to (it was never written), and the default
    /// number of retries of a route's [`RetryPolicy`](crate::RetryPolicy).
    /// At most 10. Default: 2.
    pub retries: u32,
    /// Retries allowed as a share of requests, in percent (plus a reserve of 10),
    /// so that retries cannot multiply an outage. Retries after a connect
    /// failure (no work done upstream) do not spend it. Default: 20.
    pub retry_budget_percent: u32,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            response_header_timeout: Duration::from_secs(60),
            request_timeout: Duration::ZERO,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_upstream: 256,
            max_connections_per_upstream: 1024,
            max_requests_per_upstream: 0,
            connection_wait_timeout: Duration::from_secs(1),
            body_idle_timeout: Duration::from_secs(60),
            tunnel_idle_timeout: Duration::from_secs(300),
            set_upstream_host: false,
            max_response_header_bytes: 8192 + 4096 * 100,
            retries: 2,
            retry_budget_percent: 20,
        }
    }
}

impl ProxyConfig {
    /// Checks every field and reports all mistakes.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errs = Vec::new();
        let positive = [
            ("connect_timeout", self.connect_timeout),
            ("response_header_timeout", self.response_header_timeout),
            ("pool_idle_timeout", self.pool_idle_timeout),
            ("connection_wait_timeout", self.connection_wait_timeout),
            ("body_idle_timeout", self.body_idle_timeout),
            ("tunnel_idle_timeout", self.tunnel_idle_timeout),
        ];
        for (key, d) in positive {
            if d.is_zero() {
                errs.push(ConfigError::ZeroDuration { key });
            }
        }
        if self.max_connections_per_upstream == 0 {
            errs.push(ConfigError::Zero {
                key: "max_connections_per_upstream",
            });
        }
        if self.max_response_header_bytes < 8192 {
            errs.push(ConfigError::TooSmall {
                key: "max_response_header_bytes",
                value: self.max_response_header_bytes as u64,
                min: 8192,
            });
        }
        for (key, value, max) in [
            ("retries", self.retries, 10),
            ("retry_budget_percent", self.retry_budget_percent, 100),
        ] {
            if value > max {
                errs.push(ConfigError::TooLarge {
                    key,
                    value: u64::from(value),
                    max: u64::from(max),
                });
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}
