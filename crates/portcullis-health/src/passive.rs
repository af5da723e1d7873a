//! Passive health checking from live traffic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

use crate::config::PassiveHealthConfig;
use crate::metrics;
use crate::state::{EndpointStatus, HealthState, ejection_time};

/// The outcome of one live request to an endpoint, as the proxy saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Any response below 500 (the endpoint is alive).
    Success,
    /// The connection could not be made.
    ConnectError,
    /// The endpoint answered 5xx.
    ServerError,
}

/// Passive ejection for one service's endpoints.
///
/// `consecutive_failures` connect errors or 5xx in a row eject an endpoint for
/// `base_ejection_time`, doubled on each repeat (capped at `max_ejection_time`;
/// the count starts over once an endpoint stayed un-ejected for
/// `max_ejection_time`). Never more than `max_ejected_percent` of the registered
/// endpoints are ejected at once: a lone endpoint is never ejected at 50%. An
/// ejected endpoint returns when its time is up and, when it has active checks,
/// a probe passed after that.
#[derive(Debug)]
pub struct PassiveHealth {
    service: Arc<str>,
    config: PassiveHealthConfig,
    endpoints: Mutex<HashMap<Arc<str>, Entry>>,
}

#[derive(Debug)]
struct Entry {
    status: EndpointStatus,
    consecutive: u32,
    ejections: u32,
    last_until: Option<Instant>,
}

// === impl PassiveHealth ===

impl PassiveHealth {
    /// Passive health for `service`; `config` should have passed `validate()`.
    pub fn new(service: impl Into<Arc<str>>, config: PassiveHealthConfig) -> Self {
        Self {
            service: service.into(),
            config,
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// Tracks an endpoint (replacing one of the same id).
    pub fn register(&self, endpoint: impl Into<Arc<str>>, status: EndpointStatus) {
        self.lock().insert(
            endpoint.into(),
            Entry {
                status,
                consecutive: 0,
                ejections: 0,
                last_until: None,
            },
        );
    }

    /// Stops tracking an endpoint; returns whether it was tracked.
    pub fn deregister(&self, endpoint: &str) -> bool {
        self.lock().remove(endpoint).is_some()
    }

    /// Records one live outcome; returns `true` when it ejected the endpoint.
    /// Unknown endpoints are ignored.
    pub fn record(&self, endpoint: &str, outcome: Outcome) -> bool {
        let id = endpoint;
        let mut endpoints = self.lock();
        // The common case, on every request: a success on an endpoint with no
        // failure to reset and no ejection to expire costs a lookup, nothing more.
        match endpoints.get(endpoint) {
            None => return false,
            Some(e)
                if outcome == Outcome::Success
                    && e.consecutive == 0
                    && e.status.ejected_until_raw() == 0 =>
            {
                return false;
            }
            Some(_) => {}
        }
        let now = Instant::now();
        let total = endpoints.len();
        // Out of rotation already: ejected, or failing their active checks.
        let unavailable = endpoints
            .values()
            .filter(|e| e.status.state() != HealthState::Healthy || e.status.is_ejected_at(now))
            .count();
        let Some(entry) = endpoints.get_mut(endpoint) else {
            return false;
        };
        if !entry.status.has_active_checks() && entry.status.clear_expired_ejection(now) {
            tracing::warn!(service = %self.service, endpoint = %id, "endpoint returned after ejection");
            metrics::set_healthy(&self.service, id, entry.status.is_available());
        }
        if outcome == Outcome::Success {
            entry.consecutive = 0;
            return false;
        }
        entry.consecutive = entry.consecutive.saturating_add(1);
        if entry.consecutive < self.config.consecutive_failures || entry.status.is_ejected_at(now) {
            return false;
        }
        // (unavailable + 1) / total <= percent / 100, in integers: endpoints out
        // for failing their probes count too, so that passive ejection does not
        // take the last ones in rotation (unless the percentage is 100).
        let allowed = unavailable.saturating_add(1).saturating_mul(100)
            <= total.saturating_mul(usize::from(self.config.max_ejected_percent));
        if !allowed {
            tracing::debug!(service = %self.service, endpoint = %id, "ejection skipped: max_ejected_percent reached");
            return false;
        }
        if entry
            .last_until
            .is_some_and(|last| now.saturating_duration_since(last) > self.config.max_ejection_time)
        {
            entry.ejections = 0;
        }
        let duration = ejection_time(
            self.config.base_ejection_time,
            self.config.max_ejection_time,
            entry.ejections,
        );
        let until = now + duration;
        entry.status.eject_until(until);
        entry.ejections = entry.ejections.saturating_add(1);
        entry.last_until = Some(until);
        entry.consecutive = 0;
        let reason = match outcome {
            Outcome::ConnectError => "connect errors",
            _ => "5xx responses",
        };
        let error = format!(
            "ejected for {} after {} consecutive {reason}",
            humantime::format_duration(duration),
            self.config.consecutive_failures
        );
        tracing::warn!(service = %self.service, endpoint = %id, error = %error, "endpoint ejected");
        entry.status.set_last_error(error);
        metrics::ejected(&self.service);
        metrics::set_healthy(&self.service, id, false);
        true
    }

    /// How many tracked endpoints are ejected now.
    pub fn ejected_count(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .values()
            .filter(|e| e.status.is_ejected_at(now))
            .count()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        // Every mutation leaves the map consistent, so a poisoned lock is still usable.
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn passive(n: usize, active: bool) -> (PassiveHealth, Vec<EndpointStatus>) {
        let p = PassiveHealth::new(
            "svc",
            PassiveHealthConfig {
                consecutive_failures: 3,
                ..PassiveHealthConfig::default()
            },
        );
        let statuses = (0..n)
            .map(|i| {
                let s = EndpointStatus::new(active);
                if active {
                    s.set_state(crate::HealthState::Healthy);
                }
                p.register(format!("e{i}"), s.clone());
                s
            })
            .collect();
        (p, statuses)
    }

    #[tokio::test(start_paused = true)]
    async fn ejects_after_n_errors_and_doubles() {
        let (p, s) = passive(4, false);
        assert!(!p.record("e0", Outcome::ConnectError));
        assert!(!p.record("e0", Outcome::ServerError));
        assert!(
            !p.record("e0", Outcome::Success),
            "success resets the count"
        );
        assert!(!p.record("e0", Outcome::ServerError));
        assert!(!p.record("e0", Outcome::ServerError));
        assert!(p.record("e0", Outcome::ServerError));
        assert!(!s[0].is_available());
        assert!(s[0].last_error().unwrap().starts_with("ejected for 30s"));

        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!s[0].is_available());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(s[0].is_available(), "returns when the time is up");

        for _ in 0..3 {
            p.record("e0", Outcome::ConnectError);
        }
        assert!(s[0].last_error().unwrap().starts_with("ejected for 1m"));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(!s[0].is_available());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(s[0].is_available());
        assert!(s[1].is_available());
    }

    #[tokio::test(start_paused = true)]
    async fn never_ejects_beyond_max_percent() {
        let (p, s) = passive(4, false);
        for e in ["e0", "e1", "e2", "e3"] {
            for _ in 0..3 {
                p.record(e, Outcome::ServerError);
            }
        }
        assert_eq!(p.ejected_count(), 2);
        assert_eq!(s.iter().filter(|s| s.is_available()).count(), 2);

        let (lone, s) = passive(1, false);
        for _ in 0..10 {
            assert!(!lone.record("e0", Outcome::ServerError));
        }
        assert!(
            s[0].is_available(),
            "a lone endpoint is never ejected at 50%"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_active_checks_returns_only_after_a_passing_probe() {
        let (p, s) = passive(2, true);
        for _ in 0..3 {
            p.record("e0", Outcome::ConnectError);
        }
        assert!(!s[0].is_available());
        // A probe passing before the time is up does not end the ejection.
        assert!(!s[0].clear_expired_ejection(Instant::now()));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(!s[0].is_available(), "time is up but no probe passed yet");
        assert!(s[0].clear_expired_ejection(Instant::now()));
        assert!(s[0].is_available());
    }

    #[tokio::test(start_paused = true)]
    async fn endpoints_failing_their_probes_count_against_the_share() {
        // Two endpoints, one out for failing its probes: ejecting the other would
        // leave none in rotation.
        let (p, s) = passive(2, true);
        s[0].set_state(crate::HealthState::Unhealthy);
        for _ in 0..10 {
            assert!(!p.record("e1", Outcome::ServerError));
        }
        assert!(s[1].is_available());
        // Once the first is healthy again, the second (still failing) may go.
        s[0].set_state(crate::HealthState::Healthy);
        assert!(p.record("e1", Outcome::ServerError));
        assert!(!s[1].is_available());
    }

    #[test]
    fn unknown_endpoint_is_ignored() {
        let p = PassiveHealth::new("svc", PassiveHealthConfig::default());
        assert!(!p.record("nope", Outcome::ServerError));
    }
}
