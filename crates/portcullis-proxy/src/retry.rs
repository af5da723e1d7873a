//! When a request is sent again to another pick (R13), and the budget that keeps
//! retries from multiplying an outage.

use std::sync::atomic::{AtomicI64, Ordering};

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

/// A condition under which a request is sent again ([`RetryPolicy::on`]).
///
/// Names follow Envoy's `retry_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetryOn {
    /// The upstream could not be connected to: the request was provably never
    /// written. Always on, for every method; listing it changes nothing.
    ConnectFailure,
    /// A 502, 503 or 504 from the upstream (idempotent methods only).
    GatewayError,
    /// Any 5xx from the upstream (idempotent methods only).
    #[serde(rename = "5xx")]
    ServerError,
    /// No response head within the route's response-header timeout, which then
    /// bounds each try (idempotent methods only).
    Timeout,
    /// The connection was closed or reset before a response head arrived
    /// (idempotent methods only).
    Reset,
}

/// A route's retry policy: which failures are retried, and how often.
///
/// Whatever the policy, a request is only sent again when that is safe:
///
/// - a request whose upstream could not be connected to (never written) is retried
///   whatever its method, when it has no body;
/// - after the request was sent, only an idempotent method (`GET`, `HEAD`,
///   `OPTIONS`, `TRACE`, `PUT`, `DELETE`) without a body is retried, and only on
///   the conditions listed in [`RetryPolicy::on`]: a `POST` that reached an
///   upstream is never sent twice;
/// - never after response bytes went to the client (a retried response is
///   discarded before anything of it is sent), never past the whole-request
///   timeout, and only within the retry budget
///   ([`ProxyConfig::retry_budget_percent`](crate::ProxyConfig::retry_budget_percent)).
///
/// ```
/// use portcullis_proxy::{RetryOn, RetryPolicy};
/// let p: RetryPolicy = serde_json::from_str(r#"{"on": ["gateway_error", "timeout"], "attempts": 1}"#)?;
/// assert_eq!(p.on, [RetryOn::GatewayError, RetryOn::Timeout]);
/// assert_eq!(p.attempts, Some(1));
/// # Ok::<_, serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// The conditions retried beyond connect failures. Default: none.
    #[serde(default)]
    pub on: Vec<RetryOn>,
    /// The most retries of one request (0..=10). Default: the client's
    /// [`ProxyConfig::retries`](crate::ProxyConfig::retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

/// The most retries a policy may ask for.
pub const MAX_RETRIES: u32 = 10;

/// Why a try failed in a way a retry may fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Connect,
    /// The gateway's own cap for the upstream was full: nothing was sent.
    Overloaded,
    Status(StatusCode),
    Timeout,
    Reset,
}

/// The compiled form of a [`RetryPolicy`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Conditions {
    pub(crate) attempts: Option<u32>,
    gateway_error: bool,
    server_error: bool,
    timeout: bool,
    reset: bool,
}

impl Conditions {
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        let mut c = Conditions {
            attempts: policy.attempts,
            ..Conditions::default()
        };
        for on in &policy.on {
            match on {
                RetryOn::ConnectFailure => {}
                RetryOn::GatewayError => c.gateway_error = true,
                RetryOn::ServerError => c.server_error = true,
                RetryOn::Timeout => c.timeout = true,
                RetryOn::Reset => c.reset = true,
            }
        }
        c
    }

    /// Whether anything after a written request is retried.
    pub(crate) fn after_sent(&self) -> bool {
        self.gateway_error || self.server_error || self.timeout || self.reset
    }

    /// Whether tries have their own response-header timeout.
    pub(crate) fn per_try_timeout(&self) -> bool {
        self.timeout
    }

    /// Whether `failure` may be retried, given whether the request (method, body)
    /// is safe to send again after it was written.
    pub(crate) fn allows(&self, failure: Failure, idempotent: bool) -> bool {
        match failure {
            Failure::Connect | Failure::Overloaded => true,
            Failure::Status(s) => {
                idempotent
                    && (self.server_error && s.is_server_error()
                        || self.gateway_error
                            && matches!(
                                s,
                                StatusCode::BAD_GATEWAY
                                    | StatusCode::SERVICE_UNAVAILABLE
                                    | StatusCode::GATEWAY_TIMEOUT
                            ))
            }
            Failure::Timeout => idempotent && self.timeout,
            Failure::Reset => idempotent && self.reset,
        }
    }

    /// Whether a response with `status` is retried (a cheap test before the
    /// failure is built).
    pub(crate) fn retries_status(&self, status: StatusCode) -> bool {
        status.is_server_error() && (self.server_error || self.gateway_error)
    }
}

impl Failure {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Failure::Connect => "connect_failure",
            Failure::Overloaded => "overloaded",
            Failure::Status(_) => "status",
            Failure::Timeout => "timeout",
            Failure::Reset => "reset",
        }
    }
}

/// RFC 9110 §9.2.2 idempotent methods.
pub(crate) fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Retries allowed as a share of requests: every request deposits `percent`
/// hundredths of a retry, every retry withdraws one, and the balance holds at
/// most 10 retries (the reserve it starts with) — so retries cannot multiply an
/// outage.
///
/// Clones share the balance: give every [`Proxy`](crate::Proxy) of one service the
/// same budget ([`Proxy::retry_budget`](crate::Proxy::retry_budget)) so that it
/// survives rebuilding them. Each proxy has its own by default.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    inner: std::sync::Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    /// In hundredths of a retry.
    balance: AtomicI64,
    percent: i64,
}

impl RetryBudget {
    /// Retries that can be spent at once, and the starting balance.
    const RESERVE: i64 = 10;

    /// A budget of `percent` retries per 100 requests.
    pub fn new(percent: u32) -> Self {
        Self {
            inner: std::sync::Arc::new(BudgetInner {
                balance: AtomicI64::new(Self::RESERVE * 100),
                percent: i64::from(percent),
            }),
        }
    }

    pub(crate) fn deposit(&self) {
        let cap = Self::RESERVE * 100;
        let percent = self.inner.percent;
        let _ = self
            .inner
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b + percent).min(cap))
            });
    }

    pub(crate) fn withdraw(&self) -> bool {
        self.inner
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= 100).then_some(b - 100)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_the_reserve_then_the_share() {
        let b = RetryBudget::new(20);
        assert_eq!((0..20).filter(|_| b.withdraw()).count(), 10);
        for _ in 0..10 {
            b.deposit();
        }
        // 10 requests at 20% earn 2 retries.
        assert_eq!((0..5).filter(|_| b.withdraw()).count(), 2);
    }

    #[test]
    fn only_listed_failures_of_idempotent_requests_are_retried() {
        let none = Conditions::new(&RetryPolicy::default());
        assert!(none.allows(Failure::Connect, false));
        assert!(!none.allows(Failure::Status(StatusCode::BAD_GATEWAY), true));

        let gw = Conditions::new(&RetryPolicy {
            on: vec![RetryOn::GatewayError, RetryOn::Timeout],
            attempts: None,
        });
        assert!(gw.allows(Failure::Status(StatusCode::SERVICE_UNAVAILABLE), true));
        assert!(!gw.allows(Failure::Status(StatusCode::INTERNAL_SERVER_ERROR), true));
        assert!(!gw.allows(Failure::Status(StatusCode::BAD_GATEWAY), false));
        assert!(gw.allows(Failure::Timeout, true));
        assert!(!gw.allows(Failure::Timeout, false));
        assert!(!gw.allows(Failure::Reset, true));

        let any = Conditions::new(&RetryPolicy {
            on: vec![RetryOn::ServerError, RetryOn::Reset],
            attempts: Some(1),
        });
        assert!(any.allows(Failure::Status(StatusCode::INTERNAL_SERVER_ERROR), true));
        assert!(any.allows(Failure::Reset, true));
        assert!(!any.retries_status(StatusCode::NOT_FOUND));
    }

    #[test]
    fn idempotent_methods() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(idempotent(&m.parse().expect("method")), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT", "PURGE"] {
            assert!(!idempotent(&m.parse().expect("method")), "{m}");
        }
    }
}
