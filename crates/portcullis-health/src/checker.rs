//! The per-service health checker: one probe task per endpoint plus passive ejection.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{HealthCheckConfig, PassiveHealthConfig};
use crate::error::ConfigError;
use crate::metrics;
use crate::passive::{Outcome, PassiveHealth};
use crate::probe::probe;
use crate::state::{EndpointHealth, EndpointStatus, HealthSnapshot, HealthState};

/// Health of one service's endpoints: active probes (when configured) and
/// passive ejection.
///
/// [`add`](Self::add) spawns one Tokio task per endpoint that probes at once and
/// then every `interval ± jitter`; [`remove`](Self::remove) aborts it, and so does
/// dropping the checker (no connection is made after either). The returned
/// [`EndpointStatus`] is what the balancer reads, lock-free.
#[derive(Debug)]
pub struct HealthChecker {
    service: Arc<str>,
    active: Option<Arc<HealthCheckConfig>>,
    passive: PassiveHealth,
    endpoints: Mutex<HashMap<Arc<str>, Tracked>>,
}

#[derive(Debug)]
struct Tracked {
    status: EndpointStatus,
    _task: Option<AbortOnDrop>,
}

/// Aborts the probe task when dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct ProbeTask {
    service: Arc<str>,
    endpoint: Arc<str>,
    addr: SocketAddr,
    host: Arc<str>,
    config: Arc<HealthCheckConfig>,
    status: EndpointStatus,
}

// === impl HealthChecker ===

impl HealthChecker {
    /// A checker for `service`. `active` is `None` when the service has no active
    /// checks (endpoints then start healthy). Both configs are validated; all
    /// mistakes are returned.
    pub fn new(
        service: impl Into<Arc<str>>,
        active: Option<HealthCheckConfig>,
        passive: PassiveHealthConfig,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if let Some(Err(mut e)) = active.as_ref().map(HealthCheckConfig::validate) {
            errors.append(&mut e);
        }
        if let Err(mut e) = passive.validate() {
            errors.append(&mut e);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let service = service.into();
        Ok(Self {
            passive: PassiveHealth::new(service.clone(), passive),
            service,
            active: active.map(Arc::new),
            endpoints: Mutex::new(HashMap::new()),
        })
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Whether active checks are configured.
    pub fn has_active_checks(&self) -> bool {
        self.active.is_some()
    }

    /// Starts tracking `endpoint` at `addr`, probed with `Host: host`, replacing
    /// (and stopping) an endpoint of the same id. With active checks the endpoint
    /// takes no traffic until its first probe passes.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when active checks are configured (it spawns a task).
    pub fn add(
        &self,
        endpoint: impl Into<Arc<str>>,
        addr: SocketAddr,
        host: impl Into<Arc<str>>,
    ) -> EndpointStatus {
        let endpoint = endpoint.into();
        let status = EndpointStatus::new(self.active.is_some());
        metrics::set_healthy(&self.service, &endpoint, status.is_available());
        self.passive.register(endpoint.clone(), status.clone());
        let task = self.active.as_ref().map(|config| {
            let task = ProbeTask {
                service: self.service.clone(),
                endpoint: endpoint.clone(),
                addr,
                host: host.into(),
                config: config.clone(),
                status: status.clone(),
            };
            AbortOnDrop(tokio::spawn(task.run()))
        });
        let tracked = Tracked {
            status: status.clone(),
            _task: task,
        };
        // Dropping a replaced entry aborts its task.
        drop(self.lock().insert(endpoint, tracked));
        status
    }

    /// Stops tracking `endpoint` and aborts its probe task; returns whether it was
    /// tracked.
    pub fn remove(&self, endpoint: &str) -> bool {
        let removed = self.lock().remove(endpoint);
        self.passive.deregister(endpoint);
        if removed.is_some() {
            metrics::set_healthy(&self.service, endpoint, false);
        }
        removed.is_some()
    }

    /// Records a live-traffic outcome for passive checking; returns `true` when it
    /// ejected the endpoint.
    pub fn record(&self, endpoint: &str, outcome: Outcome) -> bool {
        self.passive.record(endpoint, outcome)
    }

    /// The status handle of `endpoint`.
    pub fn status(&self, endpoint: &str) -> Option<EndpointStatus> {
        self.lock().get(endpoint).map(|t| t.status.clone())
    }

    /// A snapshot of every endpoint, sorted by id (for the admin API).
    pub fn snapshot(&self) -> Vec<(Arc<str>, HealthSnapshot)> {
        let mut all: Vec<_> = self
            .lock()
            .iter()
            .map(|(id, t)| (id.clone(), t.status.snapshot()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The passive part, for direct use.
    pub fn passive(&self) -> &PassiveHealth {
        &self.passive
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Tracked>> {
        // Inserts and removes leave the map consistent, so a poisoned lock is usable.
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl ProbeTask ===

impl ProbeTask {
    /// The address `host` names now, when it is a host name (not an IP literal)
    /// that resolves within the probe timeout.
    async fn lookup(&self) -> Option<SocketAddr> {
        let authority = self.host.parse::<http::uri::Authority>().ok()?;
        let name = authority.host();
        if name.starts_with('[') || name.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        let port = authority.port_u16().unwrap_or(self.addr.port());
        let found: Vec<SocketAddr> =
            tokio::time::timeout(self.config.timeout, tokio::net::lookup_host((name, port)))
                .await
                .ok()?
                .ok()?
                .collect();
        // The family it was reached at before, when the name has both.
        found
            .iter()
            .find(|a| a.is_ipv4() == self.addr.is_ipv4())
            .or(found.first())
            .copied()
    }

    async fn run(self) {
        let mut health = EndpointHealth::from_config(&self.config);
        let mut rng = Rng::seeded(&self.addr, &self.endpoint);
        let jitter = self.config.effective_jitter();
        let mut addr = self.addr;
        loop {
            // A host name is looked up again for every probe (the endpoint's
            // address may change under it, as containers' do); the last address
            // found serves when the lookup fails.
            if let Some(found) = self.lookup().await {
                addr = found;
            }
            let result = probe(addr, &self.host, &self.config).await;
            metrics::probed(
                &self.service,
                result.as_str(),
                result.duration().as_secs_f64(),
            );
            if result.is_ok() {
                if self.status.clear_expired_ejection(Instant::now()) {
                    tracing::warn!(
                        service = %self.service,
                        endpoint = %self.endpoint,
                        "endpoint returned after ejection"
                    );
                }
            } else {
                tracing::debug!(
                    service = %self.service,
                    endpoint = %self.endpoint,
                    error = %result,
                    "health probe failed"
                );
                self.status.set_last_error(result.to_string());
            }
            if let Some(t) = health.observe(&result) {
                self.status.set_state(t.to);
                match t.to {
                    HealthState::Unhealthy => tracing::warn!(
                        service = %self.service,
                        endpoint = %self.endpoint,
                        from = %t.from,
                        error = %result,
                        "endpoint unhealthy"
                    ),
                    _ => tracing::warn!(
                        service = %self.service,
                        endpoint = %self.endpoint,
                        from = %t.from,
                        last_error = health.last_error().unwrap_or("none"),
                        "endpoint healthy"
                    ),
                }
            }
            metrics::set_healthy(&self.service, &self.endpoint, self.status.is_available());
            tokio::time::sleep(rng.jittered(self.config.interval, jitter)).await;
        }
    }
}

/// A small splitmix64 generator: enough to spread probe times, not for secrets.
struct Rng(u64);

impl Rng {
    fn seeded(addr: &SocketAddr, endpoint: &str) -> Self {
        // RandomState carries per-process random keys; mixing in the endpoint
        // makes each task's sequence differ.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        addr.hash(&mut hasher);
        endpoint.hash(&mut hasher);
        Self(hasher.finish())
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `interval` plus a uniform offset in `[-jitter, +jitter]`, at least 1ms.
    fn jittered(&mut self, interval: Duration, jitter: Duration) -> Duration {
        let span = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX / 2);
        if span == 0 {
            return interval.max(Duration::from_millis(1));
        }
        let offset = self.next() % span.saturating_mul(2).saturating_add(1);
        let delay = if offset >= span {
            interval.saturating_add(Duration::from_nanos(offset - span))
        } else {
            interval.saturating_sub(Duration::from_nanos(span - offset))
        };
        delay.max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_bounds_and_varies() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut rng = Rng::seeded(&addr, "e");
        let interval = Duration::from_secs(5);
        let jitter = Duration::from_millis(500);
        let delays: Vec<_> = (0..200).map(|_| rng.jittered(interval, jitter)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= interval - jitter && *d <= interval + jitter)
        );
        assert!(delays.iter().any(|d| *d < interval));
        assert!(delays.iter().any(|d| *d > interval));
        assert_eq!(rng.jittered(interval, Duration::ZERO), interval);
    }

    #[test]
    fn new_rejects_invalid_configs() {
        let bad = HealthCheckConfig {
            rise: 0,
            ..HealthCheckConfig::default()
        };
        let passive = PassiveHealthConfig {
            max_ejected_percent: 200,
            ..PassiveHealthConfig::default()
        };
        let errors = HealthChecker::new("svc", Some(bad), passive).unwrap_err();
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn without_active_checks_endpoints_start_available_and_spawn_nothing() {
        // No runtime here: `add` must not spawn when there are no active checks.
        let checker = HealthChecker::new("svc", None, PassiveHealthConfig::default()).unwrap();
        let status = checker.add("e0", "127.0.0.1:9".parse().unwrap(), "svc");
        assert!(status.is_available());
        assert_eq!(checker.snapshot().len(), 1);
        assert!(checker.remove("e0"));
        assert!(!checker.remove("e0"));
        assert!(checker.status("e0").is_none());
    }
}
