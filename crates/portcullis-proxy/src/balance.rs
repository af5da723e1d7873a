//! Pluggable upstream choice: a [`Balance`] picks the upstream of each request and
//! hears how the exchange ended (load balancing, passive health checks).

use std::fmt;

use crate::Upstream;

/// How a forwarded request ended, as far as the upstream is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A response head arrived with a status below 500.
    Success,
    /// The upstream could not be reached (refused, reset before a response).
    ConnectError,
    /// No response head in time.
    Timeout,
    /// A 5xx status, or a response that was not valid HTTP.
    ServerError,
    /// The gateway's own cap for the upstream was full (nothing was sent): says
    /// nothing of the upstream's health.
    Overloaded,
}

/// Picks the upstream for each request.
///
/// Implementations are shared by every request of a route (`Send + Sync`) and
/// should not block: [`Balance::pick`] runs on the request path.
pub trait Balance: Send + Sync + fmt::Debug + 'static {
    /// The upstream for the next request; `None` when none is available (the
    /// proxy then answers 503 `no_healthy_endpoint` with `Retry-After`).
    fn pick(&self) -> Option<Picked>;

    /// Whether a second pick may name another upstream than the first. When it
    /// cannot (one upstream), the proxy keeps no copy of a request for a retry
    /// after a connect failure. Default: true.
    fn may_pick_another(&self) -> bool {
        true
    }
}

type Report = Box<dyn FnOnce(Outcome) + Send>;

/// An upstream picked by a [`Balance`], with what to call when the exchange ends.
pub struct Picked {
    pub(crate) upstream: Upstream,
    report: Option<Report>,
}

impl Picked {
    /// Sends the request to `upstream`.
    pub fn new(upstream: Upstream) -> Self {
        Self {
            upstream,
            report: None,
        }
    }

    /// Calls `report` once with the [`Outcome`], when the upstream's response head
    /// arrives or the exchange fails. If the request is cancelled first, `report`
    /// is dropped uncalled. Whatever it captures (an in-flight guard, say) is
    /// dropped then.
    #[must_use]
    pub fn on_outcome(mut self, report: impl FnOnce(Outcome) + Send + 'static) -> Self {
        self.report = Some(Box::new(report));
        self
    }

    pub(crate) fn report(&mut self, outcome: Outcome) {
        if let Some(r) = self.report.take() {
            r(outcome);
        }
    }
}

impl fmt::Debug for Picked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picked")
            .field("upstream", &self.upstream)
            .field("report", &self.report.is_some())
            .finish()
    }
}
