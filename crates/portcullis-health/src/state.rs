//! The per-endpoint state: the active state machine and the shared, lock-free status.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::HealthCheckConfig;
use crate::probe::ProbeResult;

/// The active-check state of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// Registered, no probe passed yet: takes no traffic.
    Unknown,
    /// Takes traffic (unless passively ejected).
    Healthy,
    /// Failed `fall` probes in a row: takes no traffic until `rise` passes.
    Unhealthy,
}

/// A change of [`HealthState`] returned by [`EndpointHealth::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: HealthState,
    /// The state after.
    pub to: HealthState,
}

/// The rise/fall state machine of one endpoint's active checks.
///
/// Starts [`Unknown`](HealthState::Unknown). From there the first passing probe
/// makes it healthy, `fall` failures unhealthy. A healthy endpoint turns unhealthy
/// after `fall` consecutive failures, an unhealthy one healthy after `rise`
/// consecutive passes.
#[derive(Debug, Clone)]
pub struct EndpointHealth {
    state: HealthState,
    rise: u32,
    fall: u32,
    passes: u32,
    failures: u32,
    last_error: Option<String>,
}

/// A cheap, cloneable handle on one endpoint's health, read without locks on the
/// request path ([`is_available`](Self::is_available)).
#[derive(Clone)]
pub struct EndpointStatus {
    inner: Arc<StatusInner>,
}

struct StatusInner {
    active: AtomicU8,
    has_active_checks: bool,
    /// Nanoseconds after `base` at which a passive ejection ends, plus one; 0 when
    /// not ejected.
    ejected_until: AtomicU64,
    /// Set while ejected when active checks exist: a probe must pass after the
    /// ejection time before the endpoint returns.
    needs_probe: AtomicBool,
    base: Instant,
    last_error: Mutex<Option<String>>,
}

/// A point-in-time copy of an endpoint's health, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// The active-check state.
    pub state: HealthState,
    /// Whether a passive ejection is in force.
    pub ejected: bool,
    /// Whether the endpoint takes traffic.
    pub available: bool,
    /// The last probe failure or ejection reason, if any.
    pub last_error: Option<String>,
}

// === impl HealthState ===

impl HealthState {
    /// A fixed lower-case name (`unknown`, `healthy`, `unhealthy`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Healthy => 1,
            Self::Unhealthy => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Healthy,
            2 => Self::Unhealthy,
            _ => Self::Unknown,
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl EndpointHealth ===

impl EndpointHealth {
    /// A state machine with the given thresholds (a 0 counts as 1).
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            state: HealthState::Unknown,
            rise: rise.max(1),
            fall: fall.max(1),
            passes: 0,
            failures: 0,
            last_error: None,
        }
    }

    /// A state machine with the config's `rise` and `fall`.
    pub fn from_config(config: &HealthCheckConfig) -> Self {
        Self::new(config.rise, config.fall)
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// The last probe failure, kept after recovery for the admin API.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Feeds one probe result; returns the transition it caused, if any.
    pub fn observe(&mut self, result: &ProbeResult) -> Option<Transition> {
        let from = self.state;
        if result.is_ok() {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
            let to_healthy = match self.state {
                HealthState::Unknown => true,
                HealthState::Unhealthy => self.passes >= self.rise,
                HealthState::Healthy => false,
            };
            if to_healthy {
                self.state = HealthState::Healthy;
            }
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
            self.last_error = Some(result.to_string());
            if self.state != HealthState::Unhealthy && self.failures >= self.fall {
                self.state = HealthState::Unhealthy;
            }
        }
        (from != self.state).then_some(Transition {
            from,
            to: self.state,
        })
    }
}

// === impl EndpointStatus ===

impl EndpointStatus {
    /// A status for a new endpoint. With active checks it starts
    /// [`Unknown`](HealthState::Unknown) and takes no traffic until a probe passes;
    /// without, it starts [`Healthy`](HealthState::Healthy).
    pub fn new(has_active_checks: bool) -> Self {
        let state = if has_active_checks {
            HealthState::Unknown
        } else {
            HealthState::Healthy
        };
        Self {
            inner: Arc::new(StatusInner {
                active: AtomicU8::new(state.to_u8()),
                has_active_checks,
                ejected_until: AtomicU64::new(0),
                needs_probe: AtomicBool::new(false),
                base: Instant::now(),
                last_error: Mutex::new(None),
            }),
        }
    }

    /// Whether the endpoint takes traffic: active state healthy and no passive
    /// ejection in force. Lock-free.
    pub fn is_available(&self) -> bool {
        self.state() == HealthState::Healthy && !self.is_ejected_at(Instant::now())
    }

    /// The active-check state.
    pub fn state(&self) -> HealthState {
        HealthState::from_u8(self.inner.active.load(Ordering::Acquire))
    }

    /// Whether active checks run for this endpoint.
    pub fn has_active_checks(&self) -> bool {
        self.inner.has_active_checks
    }

    /// Whether a passive ejection is in force now.
    pub fn is_ejected(&self) -> bool {
        self.is_ejected_at(Instant::now())
    }

    /// The last probe failure or ejection reason, if any.
    pub fn last_error(&self) -> Option<String> {
        self.lock_error().clone()
    }

    /// A copy of the whole state, for the admin API.
    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            state: self.state(),
            ejected: self.is_ejected(),
            available: self.is_available(),
            last_error: self.last_error(),
        }
    }

    pub(crate) fn set_state(&self, state: HealthState) {
        self.inner.active.store(state.to_u8(), Ordering::Release);
    }

    pub(crate) fn set_last_error(&self, error: String) {
        *self.lock_error() = Some(error);
    }

    fn lock_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // Only a panic while storing a String could poison it; the value is still valid.
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The raw ejection deadline: 0 when never ejected or the last ejection was
    /// cleared.
    pub(crate) fn ejected_until_raw(&self) -> u64 {
        self.inner.ejected_until.load(Ordering::Acquire)
    }

    pub(crate) fn is_ejected_at(&self, now: Instant) -> bool {
        let until = self.inner.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return false;
        }
        self.inner.needs_probe.load(Ordering::Acquire) || self.nanos(now) < until
    }

    /// Ejects until `until`; with active checks a probe must also pass after it.
    pub(crate) fn eject_until(&self, until: Instant) {
        self.inner
            .needs_probe
            .store(self.inner.has_active_checks, Ordering::Release);
        let nanos = self.nanos(until).max(1);
        self.inner.ejected_until.store(nanos, Ordering::Release);
    }

    /// Ends an ejection whose time is up (called after a passing probe, or for
    /// endpoints without active checks when traffic is seen). Returns whether it did.
    pub(crate) fn clear_expired_ejection(&self, now: Instant) -> bool {
        let until = self.inner.ejected_until.load(Ordering::Acquire);
        if until == 0 || self.nanos(now) < until {
            return false;
        }
        self.inner.needs_probe.store(false, Ordering::Release);
        self.inner
            .ejected_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Nanoseconds since `base`, plus one (so 0 stays "none"), saturating.
    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.inner.base);
        u64::try_from(since.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }
}

impl fmt::Debug for EndpointStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointStatus")
            .field("state", &self.state())
            .field("ejected", &self.is_ejected())
            .field("has_active_checks", &self.inner.has_active_checks)
            .finish()
    }
}

/// Doubles `base` per earlier ejection, capped at `max`.
pub(crate) fn ejection_time(base: Duration, max: Duration, earlier: u32) -> Duration {
    let factor = 1u32.checked_shl(earlier.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::FailureKind;

    fn ok() -> ProbeResult {
        ProbeResult::Ok {
            status: 200,
            duration: Duration::from_millis(1),
        }
    }

    fn fail() -> ProbeResult {
        ProbeResult::Failed {
            kind: FailureKind::Status(500),
            detail: "status 500: boom".into(),
            duration: Duration::from_millis(1),
        }
    }

    #[test]
    fn first_pass_makes_unknown_healthy() {
        let mut h = EndpointHealth::new(2, 3);
        assert_eq!(h.state(), HealthState::Unknown);
        let t = h.observe(&ok()).unwrap();
        assert_eq!((t.from, t.to), (HealthState::Unknown, HealthState::Healthy));
    }

    #[test]
    fn fall_then_rise_thresholds() {
        let mut h = EndpointHealth::new(2, 3);
        h.observe(&ok());
        assert_eq!(h.observe(&fail()), None);
        assert_eq!(h.observe(&fail()), None);
        let t = h.observe(&fail()).unwrap();
        assert_eq!(t.to, HealthState::Unhealthy);
        assert_eq!(h.last_error(), Some("status: status 500: boom"));
        assert_eq!(h.observe(&ok()), None);
        assert_eq!(h.observe(&fail()), None, "a failure resets the rise count");
        assert_eq!(h.observe(&ok()), None);
        let t = h.observe(&ok()).unwrap();
        assert_eq!(
            (t.from, t.to),
            (HealthState::Unhealthy, HealthState::Healthy)
        );
        assert_eq!(h.last_error(), Some("status: status 500: boom"));
    }

    #[test]
    fn unknown_falls_to_unhealthy_after_fall_failures() {
        let mut h = EndpointHealth::new(1, 2);
        assert_eq!(h.observe(&fail()), None);
        assert_eq!(h.observe(&fail()).unwrap().to, HealthState::Unhealthy);
        assert_eq!(h.observe(&ok()).unwrap().to, HealthState::Healthy);
    }

    #[test]
    fn status_starts_by_active_checks() {
        assert!(!EndpointStatus::new(true).is_available());
        assert_eq!(EndpointStatus::new(true).state(), HealthState::Unknown);
        assert!(EndpointStatus::new(false).is_available());
    }

    #[test]
    fn ejection_time_doubles_and_caps() {
        let base = Duration::from_secs(30);
        let max = Duration::from_secs(300);
        assert_eq!(ejection_time(base, max, 0), base);
        assert_eq!(ejection_time(base, max, 1), Duration::from_secs(60));
        assert_eq!(ejection_time(base, max, 3), Duration::from_secs(240));
        assert_eq!(ejection_time(base, max, 4), max);
        assert_eq!(ejection_time(base, max, 1000), max);
    }
}
