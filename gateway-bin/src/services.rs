//! Services at run time, static and registered: each one's health checker
//! (active probes and passive ejection) and load balancer, kept across
//! route-table rebuilds and reloads so that a heartbeat, another service's
//! change or a reload does not reset health state.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use portcullis_health::{EndpointStatus, HealthCheckConfig, HealthChecker, PassiveHealthConfig};
use portcullis_proxy::{Balance, Outcome, Picked, Upstream};
use portcullis_registry::{AnyBalancer, HealthSpec, LoadBalancer as _};

/// One endpoint as the balancer sees it.
#[derive(Debug, Clone)]
struct Ep {
    id: Arc<str>,
    upstream: Upstream,
    status: EndpointStatus,
}

/// A service's balancer over its endpoints, skipping unhealthy and ejected ones,
/// and reporting each exchange's outcome to the passive health check and to the
/// balancer's error penalty.
#[derive(Debug)]
pub struct ServiceBalance {
    balancer: AnyBalancer<Ep>,
    checker: Arc<HealthChecker>,
    /// How many endpoints it balances over.
    endpoints: usize,
}

impl Balance for ServiceBalance {
    fn may_pick_another(&self) -> bool {
        self.endpoints > 1
    }

    fn pick(&self) -> Option<Picked> {
        let pick = self.balancer.pick(&|e: &Ep| e.status.is_available())?;
        let guard = pick.guard;
        let ep = pick.endpoint;
        let checker = self.checker.clone();
        Some(Picked::new(ep.upstream.clone()).on_outcome(move |outcome| {
            if outcome == Outcome::Overloaded {
                // The gateway's own cap, not the endpoint: neither a failure
                // for the balancer's penalty nor for passive health.
                guard.record_outcome(true);
                return;
            }
            guard.record_outcome(outcome == Outcome::Success);
            let passive = match outcome {
                Outcome::Success => portcullis_health::Outcome::Success,
                Outcome::ConnectError | Outcome::Timeout => {
                    portcullis_health::Outcome::ConnectError
                }
                _ => portcullis_health::Outcome::ServerError,
            };
            checker.record(&ep.id, passive);
        }))
    }
}

/// What a service's endpoints were when last applied.
#[derive(Debug, PartialEq, Eq, Clone)]
struct EpKey {
    url: String,
    weight: u32,
    /// Whether it has a probe (a host name that did not resolve has none until
    /// it does; its probe then looks the name up again each time).
    probed: bool,
}

/// One endpoint to apply: its id, URL and weight.
#[derive(Debug, Clone, Copy)]
pub struct EndpointRef<'a> {
    /// The endpoint's id within its service.
    pub id: &'a str,
    /// `http://host:port`.
    pub url: &'a str,
    /// Its weight for the `weighted` balancer.
    pub weight: u32,
}

struct Runtime {
    health: Option<HealthSpec>,
    passive: PassiveHealthConfig,
    checker: Arc<HealthChecker>,
    endpoints: BTreeMap<String, (EpKey, Ep)>,
}

/// Every registered service's runtime state.
#[derive(Default)]
pub struct Services {
    runtimes: Mutex<HashMap<String, Runtime>>,
    /// Each service's retry budget, kept across rebuilds of its proxy.
    budgets: Mutex<HashMap<String, portcullis_proxy::RetryBudget>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

fn active_config(spec: &HealthSpec) -> HealthCheckConfig {
    let default = HealthCheckConfig::default();
    HealthCheckConfig {
        path: spec.path.clone(),
        method: spec.method.clone().unwrap_or(default.method.clone()),
        interval: spec.interval,
        timeout: spec.timeout,
        expected_status: spec.expected_status.clone(),
        headers: spec.headers.clone(),
        rise: spec.rise.unwrap_or(default.rise),
        fall: spec.fall.unwrap_or(default.fall),
        ..default
    }
}

/// Addresses of endpoint host names, resolved before a rebuild (asynchronously,
/// off the request path): rebuilding never blocks on DNS.
pub type Resolved = HashMap<String, SocketAddr>;

/// The socket address to probe and the Host to send, from `http://host:port`.
fn probe_target(upstream: &Upstream, resolved: &Resolved) -> Option<(SocketAddr, String)> {
    let authority = upstream.authority();
    let addr = authority
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| resolved.get(authority).copied())?;
    Some((addr, authority.to_owned()))
}

impl Services {
    /// Brings `name`'s runtime in line with its `health` check and `endpoints`,
    /// and returns its balancer. Endpoints that did not change keep their health.
    /// `None` only if no health checker could be made at all.
    pub fn apply<'a>(
        &self,
        name: &str,
        health: Option<&HealthSpec>,
        passive: &PassiveHealthConfig,
        balancer: portcullis_registry::Balancer,
        endpoints: impl Iterator<Item = EndpointRef<'a>>,
        resolved: &Resolved,
    ) -> Option<Arc<ServiceBalance>> {
        let mut runtimes = match self.runtimes.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        let fresh = || {
            let active = health.map(active_config);
            let checker = HealthChecker::new(name, active.clone(), passive.clone())
                .or_else(|errors| {
                    tracing::warn!(service = %name, errors = ?errors.iter().map(ToString::to_string).collect::<Vec<_>>(), "health check settings refused; no active checks");
                    HealthChecker::new(name, None, PassiveHealthConfig::default())
                });
            checker.ok().map(|c| Runtime {
                health: health.cloned(),
                passive: passive.clone(),
                checker: Arc::new(c),
                endpoints: BTreeMap::new(),
            })
        };
        let rt = match runtimes.get(name) {
            Some(rt) if rt.health.as_ref() == health && rt.passive == *passive => {
                runtimes.get_mut(name)
            }
            _ => {
                if let Some(rt) = fresh() {
                    runtimes.insert(name.to_owned(), rt);
                }
                runtimes.get_mut(name)
            }
        };
        let rt = rt?;
        let mut seen = Vec::new();
        for EndpointRef { id, url, weight } in endpoints {
            seen.push(id.to_owned());
            let upstream = match Upstream::parse(url) {
                Ok(u) => u,
                Err(error) => {
                    tracing::warn!(service = %name, endpoint = %id, %error, "endpoint not usable");
                    continue;
                }
            };
            let target = probe_target(&upstream, resolved);
            let key = EpKey {
                url: url.to_owned(),
                weight,
                probed: target.is_some() && rt.checker.has_active_checks(),
            };
            // Unchanged: it keeps its health, and its probe (which follows its
            // name's address by itself) — also when the name did not resolve
            // this time.
            if rt.endpoints.get(id).is_some_and(|(k, _)| {
                k.url == key.url && k.weight == key.weight && (k.probed || !key.probed)
            }) {
                continue;
            }
            let status = match target {
                Some((addr, host)) => rt.checker.add(id, addr, host),
                None => {
                    if rt.checker.has_active_checks() {
                        tracing::warn!(service = %name, endpoint = %id, "endpoint address does not resolve; not probed");
                    }
                    // Passive ejection still applies.
                    let status = EndpointStatus::new(false);
                    rt.checker.passive().register(id, status.clone());
                    status
                }
            };
            let e = Ep {
                id: Arc::from(id),
                upstream,
                status,
            };
            rt.endpoints.insert(id.to_owned(), (key, e));
        }
        let gone: Vec<String> = rt
            .endpoints
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for id in gone {
            rt.endpoints.remove(&id);
            rt.checker.remove(&id);
        }
        let list: Vec<(Ep, u32)> = rt
            .endpoints
            .values()
            .map(|(k, e)| (e.clone(), k.weight))
            .collect();
        Some(Arc::new(ServiceBalance {
            endpoints: list.len(),
            balancer: AnyBalancer::new(balancer, list),
            checker: rt.checker.clone(),
        }))
    }

    /// One endpoint's health as JSON for the admin API: `state` (unknown,
    /// healthy, unhealthy), `available`, `ejected`, `last_error`.
    pub fn health_json(&self, service: &str, endpoint: &str) -> Option<serde_json::Value> {
        let runtimes = match self.runtimes.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (_, ep) = runtimes.get(service)?.endpoints.get(endpoint)?;
        let h = ep.status.snapshot();
        Some(serde_json::json!({
            "state": h.state.as_str(),
            "available": h.available,
            "ejected": h.ejected,
            "last_error": h.last_error,
        }))
    }

    /// Forgets services that no longer exist (stopping their probes).
    pub fn retain(&self, registered: &dyn Fn(&str) -> bool) {
        let mut runtimes = match self.runtimes.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        runtimes.retain(|name, _| registered(name));
        let mut budgets = match self.budgets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        budgets.retain(|name, _| registered(name));
    }

    /// The retry budget of the service `name` (made with `percent` the first time).
    pub fn budget(&self, name: &str, percent: u32) -> portcullis_proxy::RetryBudget {
        let mut budgets = match self.budgets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        budgets
            .entry(name.to_owned())
            .or_insert_with(|| portcullis_proxy::RetryBudget::new(percent))
            .clone()
    }
}
