//! The registry: services and endpoints with leases, published as snapshots.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::metrics;
use crate::model::{EndpointSpec, ServiceSpec};
use crate::store::StoredState;
use crate::validate::{
    MAX_ENDPOINTS_PER_SERVICE, MAX_SERVICES, Policy, RegistrationError, check_policy,
    describe_route, routes_overlap, validate_endpoint_spec, validate_name, validate_service_spec,
};

/// One registered endpoint: its spec and when its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// What was registered.
    pub spec: EndpointSpec,
    /// When the lease runs out, in milliseconds since the UNIX epoch (wall clock, so
    /// that it survives a restart).
    pub lease_expires: u64,
}

/// One registered service: its spec and its endpoints by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// What was registered.
    pub spec: ServiceSpec,
    /// The endpoints, by id.
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// An immutable view of the registry at one version. Requests in flight keep the
/// `Arc<Snapshot>` they loaded; later changes publish a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    version: u64,
    services: BTreeMap<String, Arc<ServiceEntry>>,
}

/// What [`Registry::put_service`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceChange {
    /// A new service (201).
    Created,
    /// An existing service's spec was replaced; its endpoints were kept (200).
    Replaced,
}

/// What [`Registry::put_endpoint`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointChange {
    /// A new endpoint (201).
    Created,
    /// An existing endpoint's lease was renewed and its spec updated (200): the heartbeat.
    Renewed,
}

/// The result of [`Registry::put_endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPut {
    /// Created or renewed.
    pub change: EndpointChange,
    /// The endpoint as stored, with its new lease.
    pub endpoint: Endpoint,
}

/// An endpoint removed by [`Registry::expire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The service it belonged to.
    pub service: String,
    /// Its id.
    pub id: String,
    /// The endpoint as it was.
    pub endpoint: Endpoint,
}

/// What [`Registry::restore`] kept and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Services restored.
    pub services: usize,
    /// Endpoints restored.
    pub endpoints: usize,
    /// Endpoints whose lease had run out, dropped.
    pub expired: usize,
    /// Services or endpoints refused by the current policy (`service` or
    /// `service/endpoint`, and why), dropped.
    pub skipped: Vec<(String, RegistrationError)>,
}

/// The service registry (R12): validated services and leased endpoints, published as
/// [`Snapshot`]s. Share it behind an `Arc`; every method takes `&self`.
///
/// Mutations take a short internal lock (never held across `.await`); readers only
/// load the current snapshot, lock-free.
#[derive(Debug)]
pub struct Registry {
    policy: ArcSwap<Policy>,
    state: Mutex<BTreeMap<String, Arc<ServiceEntry>>>,
    snapshot: ArcSwap<Snapshot>,
    version: watch::Sender<u64>,
}

/// The wall clock in milliseconds since the UNIX epoch (0 before 1970).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lease_end(now: u64, ttl: Duration) -> u64 {
    now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

// === impl Snapshot ===

impl Snapshot {
    /// The version: 0 for the empty start, +1 for every published change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// All services, by name.
    pub fn services(&self) -> &BTreeMap<String, Arc<ServiceEntry>> {
        &self.services
    }

    /// One service.
    pub fn service(&self, name: &str) -> Option<&Arc<ServiceEntry>> {
        self.services.get(name)
    }

    /// A service's endpoints whose lease has not run out at `now` (UNIX ms).
    pub fn live_endpoints<'a>(
        &'a self,
        service: &str,
        now: u64,
    ) -> impl Iterator<Item = (&'a str, &'a Endpoint)> + 'a {
        self.services
            .get(service)
            .into_iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(move |(_, e)| e.lease_expires > now)
            .map(|(id, e)| (id.as_str(), e))
    }
}

// === impl Registry ===

impl Default for Registry {
    fn default() -> Self {
        Registry::new(Policy::default())
    }
}

impl Registry {
    /// An empty registry that checks upstreams against `policy`.
    pub fn new(policy: Policy) -> Self {
        let (version, _) = watch::channel(0);
        Registry {
            policy: ArcSwap::from_pointee(policy),
            state: Mutex::new(BTreeMap::new()),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            version,
        }
    }

    /// The policy upstreams are checked against.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Replaces the gateway's own listener addresses in the policy (a reload moved
    /// a listener). Endpoints already registered are not re-checked.
    pub fn set_own_addrs(&self, own_addrs: Vec<std::net::SocketAddr>) {
        let mut policy = Policy::clone(&self.policy.load());
        policy.own_addrs = own_addrs;
        self.policy.store(Arc::new(policy));
    }

    /// The current snapshot. Cheap and lock-free; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// A receiver of the snapshot version, updated after every published change, so the
    /// gateway can rebuild its route table.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The whole state, for a [`StateStore`](crate::StateStore).
    pub fn to_stored(&self) -> StoredState {
        let snap = self.snapshot();
        StoredState::new(
            snap.services
                .iter()
                .map(|(k, v)| (k.clone(), ServiceEntry::clone(v)))
                .collect(),
        )
    }

    /// Creates or replaces a service. Replacing keeps its endpoints.
    ///
    /// Errors: `invalid_registration` for a bad name or spec, `route_conflict` when
    /// another service owns one of the routes (same host, path and an overlapping method).
    pub fn put_service(
        &self,
        name: &str,
        spec: ServiceSpec,
    ) -> Result<ServiceChange, RegistrationError> {
        validate_name("service name", name)?;
        validate_service_spec(&spec)?;
        let mut state = self.lock();
        check_conflicts(&state, name, &spec)?;
        let change = match state.get_mut(name) {
            Some(entry) => {
                Arc::make_mut(entry).spec = spec;
                ServiceChange::Replaced
            }
            None => {
                if state.len() >= MAX_SERVICES {
                    return Err(RegistrationError::Invalid(format!(
                        "the registry holds at most {MAX_SERVICES} services"
                    )));
                }
                state.insert(
                    name.to_owned(),
                    Arc::new(ServiceEntry {
                        spec,
                        endpoints: BTreeMap::new(),
                    }),
                );
                metrics::registered(name, "service");
                ServiceChange::Created
            }
        };
        self.publish(&state);
        Ok(change)
    }

    /// Removes a service and its endpoints; `None` when there was none.
    pub fn delete_service(&self, name: &str) -> Option<ServiceEntry> {
        let mut state = self.lock();
        let removed = state.remove(name)?;
        self.publish(&state);
        Some(Arc::unwrap_or_clone(removed))
    }

    /// Registers an endpoint or renews its lease (`now` + `ttl`, `now` in UNIX ms).
    ///
    /// Errors: `service_not_found`, `invalid_registration` (id, ttl, weight, metadata,
    /// URL), `forbidden_upstream` (the [`Policy`]).
    pub fn put_endpoint(
        &self,
        service: &str,
        id: &str,
        spec: EndpointSpec,
        now: u64,
    ) -> Result<EndpointPut, RegistrationError> {
        validate_name("endpoint id", id)?;
        let upstream = validate_endpoint_spec(&spec)?;
        check_policy(&upstream, &self.policy.load())?;
        let mut state = self.lock();
        let entry = state
            .get_mut(service)
            .ok_or_else(|| RegistrationError::ServiceNotFound(service.to_owned()))?;
        let exists = entry.endpoints.contains_key(id);
        if !exists && entry.endpoints.len() >= MAX_ENDPOINTS_PER_SERVICE {
            return Err(RegistrationError::Invalid(format!(
                "a service has at most {MAX_ENDPOINTS_PER_SERVICE} endpoints"
            )));
        }
        let endpoint = Endpoint {
            lease_expires: lease_end(now, spec.ttl),
            spec,
        };
        Arc::make_mut(entry)
            .endpoints
            .insert(id.to_owned(), endpoint.clone());
        let change = if exists {
            EndpointChange::Renewed
        } else {
            metrics::registered(service, "endpoint");
            EndpointChange::Created
        };
        self.publish(&state);
        Ok(EndpointPut { change, endpoint })
    }

    /// Removes an endpoint; `None` when there was none.
    pub fn delete_endpoint(&self, service: &str, id: &str) -> Option<Endpoint> {
        let mut state = self.lock();
        let entry = state.get_mut(service)?;
        if !entry.endpoints.contains_key(id) {
            return None;
        }
        let removed = Arc::make_mut(entry).endpoints.remove(id);
        self.publish(&state);
        removed
    }

    /// Removes every endpoint whose lease ran out at or before `now` (UNIX ms) and
    /// returns them. Publishes a snapshot only when something was removed. Call it on
    /// a timer (every second or so).
    pub fn expire(&self, now: u64) -> Vec<Expired> {
        let mut state = self.lock();
        let mut out = Vec::new();
        for (name, entry) in state.iter_mut() {
            if entry.endpoints.values().all(|e| e.lease_expires > now) {
                continue;
            }
            let entry = Arc::make_mut(entry);
            let (dead, live) = std::mem::take(&mut entry.endpoints)
                .into_iter()
                .partition::<BTreeMap<_, _>, _>(|(_, e)| e.lease_expires <= now);
            entry.endpoints = live;
            for (id, endpoint) in dead {
                metrics::expired(name);
                tracing::debug!(service = %name, endpoint = %id, "endpoint lease expired");
                out.push(Expired {
                    service: name.clone(),
                    id,
                    endpoint,
                });
            }
        }
        if !out.is_empty() {
            self.publish(&state);
        }
        out
    }

    /// Replaces the whole state with `stored` (at start-up, or from a shared store).
    ///
    /// Entries are re-validated against the current policy: refused services and
    /// endpoints are skipped and reported, as are endpoints whose lease ran out at `now`.
    pub fn restore(&self, stored: StoredState, now: u64) -> RestoreReport {
        let mut report = RestoreReport::default();
        let policy = self.policy.load_full();
        let mut next: BTreeMap<String, Arc<ServiceEntry>> = BTreeMap::new();
        for (name, entry) in stored.services {
            let checked = validate_name("service name", &name)
                .and_then(|()| validate_service_spec(&entry.spec))
                .and_then(|()| check_conflicts(&next, &name, &entry.spec))
                .and_then(|()| {
                    if next.len() >= MAX_SERVICES {
                        Err(RegistrationError::Invalid("too many services".to_owned()))
                    } else {
                        Ok(())
                    }
                });
            if let Err(e) = checked {
                report.skipped.push((name, e));
                continue;
            }
            let mut endpoints = BTreeMap::new();
            for (id, ep) in entry.endpoints {
                if ep.lease_expires <= now {
                    report.expired += 1;
                    continue;
                }
                let checked = validate_name("endpoint id", &id)
                    .and_then(|()| validate_endpoint_spec(&ep.spec))
                    .and_then(|up| check_policy(&up, &policy))
                    .and_then(|()| {
                        if endpoints.len() >= MAX_ENDPOINTS_PER_SERVICE {
                            Err(RegistrationError::Invalid("too many endpoints".to_owned()))
                        } else {
                            Ok(())
                        }
                    });
                match checked {
                    Ok(()) => {
                        // A lease never outlives its ttl, even if the stored clock was off.
                        let cap = lease_end(now, ep.spec.ttl);
                        let ep = Endpoint {
                            lease_expires: ep.lease_expires.min(cap),
                            spec: ep.spec,
                        };
                        endpoints.insert(id, ep);
                    }
                    Err(e) => report.skipped.push((format!("{name}/{id}"), e)),
                }
            }
            report.services += 1;
            report.endpoints += endpoints.len();
            next.insert(
                name,
                Arc::new(ServiceEntry {
                    spec: entry.spec,
                    endpoints,
                }),
            );
        }
        let mut state = self.lock();
        *state = next;
        self.publish(&state);
        report
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<ServiceEntry>>> {
        // The state is valid after every statement that can panic, so a poisoned
        // lock still holds a consistent map.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes a snapshot of `state`. Called with the lock held so versions are
    /// published in order.
    fn publish(&self, state: &BTreeMap<String, Arc<ServiceEntry>>) {
        let version = self.snapshot.load().version.wrapping_add(1);
        self.snapshot.store(Arc::new(Snapshot {
            version,
            services: state.clone(),
        }));
        self.version.send_replace(version);
    }
}

fn check_conflicts(
    state: &BTreeMap<String, Arc<ServiceEntry>>,
    name: &str,
    spec: &ServiceSpec,
) -> Result<(), RegistrationError> {
    for (other, entry) in state {
        if other == name {
            continue;
        }
        for mine in &spec.routes {
            if let Some(theirs) = entry.spec.routes.iter().find(|r| routes_overlap(mine, r)) {
                return Err(RegistrationError::RouteConflict {
                    message: format!(
                        "route {} overlaps {} of service {other:?}",
                        describe_route(mine),
                        describe_route(theirs)
                    ),
                    owner: other.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RouteSpec;

    fn svc(path: &str) -> ServiceSpec {
        ServiceSpec::new(vec![RouteSpec::new(path)])
    }

    #[test]
    fn put_service_created_then_replaced_keeps_endpoints() {
        let reg = Registry::default();
        assert_eq!(reg.put_service("a", svc("/a")), Ok(ServiceChange::Created));
        reg.put_endpoint("a", "e1", EndpointSpec::new("http://10.0.0.1:80"), 0)
            .unwrap();
        assert_eq!(
            reg.put_service("a", svc("/a2")),
            Ok(ServiceChange::Replaced)
        );
        let snap = reg.snapshot();
        let entry = snap.service("a").unwrap();
        assert_eq!(entry.spec.routes[0].path, "/a2");
        assert_eq!(entry.endpoints.len(), 1);
        assert_eq!(snap.version(), 3);
    }

    #[test]
    fn bad_names_are_invalid() {
        let reg = Registry::default();
        assert_eq!(
            reg.put_service("a/b", svc("/a")).unwrap_err().as_str(),
            "invalid_registration"
        );
        reg.put_service("a", svc("/a")).unwrap();
        let err = reg
            .put_endpoint("a", "", EndpointSpec::new("http://10.0.0.1:80"), 0)
            .unwrap_err();
        assert_eq!(err.as_str(), "invalid_registration");
        let err = reg
            .put_endpoint("zz", "e", EndpointSpec::new("http://10.0.0.1:80"), 0)
            .unwrap_err();
        assert_eq!(err.as_str(), "service_not_found");
        assert_eq!(err.status(), 404);
    }

    #[test]
    fn route_conflict_with_another_service() {
        let reg = Registry::default();
        let mut get = RouteSpec::new("/x");
        get.methods = Some(vec!["GET".to_owned()]);
        reg.put_service("a", ServiceSpec::new(vec![get])).unwrap();

        let mut post = RouteSpec::new("/x");
        post.methods = Some(vec!["POST".to_owned()]);
        assert!(reg.put_service("b", ServiceSpec::new(vec![post])).is_ok());

        let err = reg.put_service("c", svc("/x")).unwrap_err();
        assert_eq!(err.as_str(), "route_conflict");
        assert_eq!(err.status(), 409);
        assert_eq!(
            err,
            RegistrationError::RouteConflict {
                message: "route * */x overlaps GET */x of service \"a\"".to_owned(),
                owner: "a".to_owned(),
            }
        );
        let mut hosted = RouteSpec::new("/x");
        hosted.host = Some("API.example.com".to_owned());
        assert!(reg.put_service("d", ServiceSpec::new(vec![hosted])).is_ok());
        let mut hosted2 = RouteSpec::new("/x");
        hosted2.host = Some("api.EXAMPLE.com".to_owned());
        assert_eq!(
            reg.put_service("e", ServiceSpec::new(vec![hosted2]))
                .unwrap_err()
                .as_str(),
            "route_conflict"
        );
        // A service may re-register its own routes.
        assert_eq!(reg.put_service("a", svc("/x")), Err(err_owner("b")));
    }

    fn err_owner(owner: &str) -> RegistrationError {
        RegistrationError::RouteConflict {
            message: "route * */x overlaps POST */x of service \"b\"".to_owned(),
            owner: owner.to_owned(),
        }
    }

    #[test]
    fn lease_renew_and_expire() {
        let reg = Registry::default();
        reg.put_service("a", svc("/a")).unwrap();
        let spec = EndpointSpec::new("http://127.0.0.1:3000").ttl(Duration::from_secs(10));
        let put = reg.put_endpoint("a", "e", spec.clone(), 1_000).unwrap();
        assert_eq!(put.change, EndpointChange::Created);
        assert_eq!(put.endpoint.lease_expires, 11_000);

        let put = reg.put_endpoint("a", "e", spec.clone(), 8_000).unwrap();
        assert_eq!(put.change, EndpointChange::Renewed);
        assert_eq!(put.endpoint.lease_expires, 18_000);

        assert!(reg.expire(17_999).is_empty());
        assert_eq!(reg.snapshot().live_endpoints("a", 17_999).count(), 1);
        assert_eq!(reg.snapshot().live_endpoints("a", 18_000).count(), 0);
        let before = reg.snapshot().version();
        let gone = reg.expire(18_000);
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].service.as_str(), gone[0].id.as_str()), ("a", "e"));
        assert!(reg.snapshot().service("a").unwrap().endpoints.is_empty());
        assert_eq!(reg.snapshot().version(), before + 1);
        assert!(reg.expire(99_999).is_empty());
        assert_eq!(reg.snapshot().version(), before + 1);
    }

    #[test]
    fn forbidden_upstream_is_refused() {
        let reg = Registry::new(Policy {
            own_addrs: vec!["127.0.0.1:9090".parse().unwrap()],
            ..Policy::default()
        });
        reg.put_service("a", svc("/a")).unwrap();
        let err = reg
            .put_endpoint("a", "e", EndpointSpec::new("http://127.0.0.1:9090"), 0)
            .unwrap_err();
        assert_eq!(err.as_str(), "forbidden_upstream");
        let err = reg
            .put_endpoint("a", "e", EndpointSpec::new("http://169.254.169.254:80"), 0)
            .unwrap_err();
        assert_eq!(err.as_str(), "forbidden_upstream");
        assert!(reg.snapshot().service("a").unwrap().endpoints.is_empty());
    }

    #[tokio::test]
    async fn snapshot_swap_is_visible_and_old_snapshot_unchanged() {
        let reg = Registry::default();
        let mut rx = reg.subscribe();
        reg.put_service("a", svc("/a")).unwrap();
        let old = reg.snapshot();
        reg.put_endpoint("a", "e", EndpointSpec::new("http://10.0.0.1:80"), 0)
            .unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 2);
        let new = reg.snapshot();
        assert_eq!(new.version(), 2);
        assert_eq!(new.service("a").unwrap().endpoints.len(), 1);
        assert_eq!(old.version(), 1);
        assert!(old.service("a").unwrap().endpoints.is_empty());
        assert_eq!(
            reg.delete_endpoint("a", "e").unwrap().spec.url,
            "http://10.0.0.1:80"
        );
        assert!(reg.delete_endpoint("a", "e").is_none());
        assert_eq!(new.service("a").unwrap().endpoints.len(), 1);
        assert!(reg.delete_service("a").is_some());
        assert!(reg.delete_service("a").is_none());
        assert!(reg.snapshot().services().is_empty());
        assert_eq!(new.services().len(), 1);
    }

    #[test]
    fn to_stored_and_restore() {
        let reg = Registry::default();
        reg.put_service("a", svc("/a")).unwrap();
        reg.put_endpoint(
            "a",
            "live",
            EndpointSpec::new("http://10.0.0.1:80"),
            100_000,
        )
        .unwrap();
        reg.put_endpoint("a", "old", EndpointSpec::new("http://10.0.0.2:80"), 0)
            .unwrap();
        let stored = reg.to_stored();

        let strict = Registry::new(Policy::default());
        let mut tampered = stored.clone();
        let entry = tampered.services.get_mut("a").unwrap();
        entry.endpoints.insert(
            "meta".to_owned(),
            Endpoint {
                spec: EndpointSpec::new("http://169.254.169.254:80"),
                lease_expires: u64::MAX,
            },
        );
        let report = strict.restore(tampered, 50_000);
        assert_eq!(report.services, 1);
        assert_eq!(report.endpoints, 1);
        assert_eq!(report.expired, 1);
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].0, "a/meta");
        assert_eq!(report.skipped[0].1.as_str(), "forbidden_upstream");
        let snap = strict.snapshot();
        let eps = &snap.service("a").unwrap().endpoints;
        assert_eq!(eps.keys().collect::<Vec<_>>(), ["live"]);
        // The lease is capped at now + ttl: the stored clock was ahead.
        assert_eq!(eps["live"].lease_expires, 80_000);
    }
}
