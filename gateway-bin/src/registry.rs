//! The service registry of a running gateway: loaded from the state folder at
//! start, kept durable there, its leases expired on a timer, and every change
//! turned into a new route table.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use portcullis_registry::{FileStore, Policy, Registry, StateStore, StoreError, now_unix_ms};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::gateway::Routes;

/// How often lapsed leases are looked for: an endpoint stops taking traffic at
/// most this long after its lease ran out.
const EXPIRY_TICK: Duration = Duration::from_millis(250);

/// The registry and its background tasks.
#[derive(Debug)]
pub struct RunningRegistry {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Where it is kept.
    pub store: Arc<dyn StateStore>,
    /// The shared store, when registrations live in Redis.
    pub redis: Option<portcullis_registry::RedisStore>,
    /// Taken by every change of the registry with its save: admin calls, lease
    /// expiry, resyncs from Redis.
    pub write_lock: Arc<tokio::sync::Mutex<()>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Loads the registry from the state folder, publishes its routes, and starts
/// the tasks that rebuild the route table on every change and expire leases.
///
/// A corrupt state file is reported with its path and reason, moved aside, and
/// the gateway starts empty; a state file that cannot be read at all stops the
/// start (the gateway never runs half-loaded).
pub async fn start(
    cfg: &Config,
    routes: &Routes,
    own_addrs: Vec<SocketAddr>,
) -> anyhow::Result<RunningRegistry> {
    let policy = Policy {
        own_addrs,
        allow_link_local: cfg.registry.allow_link_local,
        allow_self: cfg.registry.allow_self,
    };
    let registry = Arc::new(Registry::new(policy));
    let redis = match &cfg.registry.redis {
        Some(url) => {
            let opts = portcullis_registry::RedisOptions::new(url.get_ref().clone())
                .key_prefix(cfg.registry.redis_prefix.clone())
                .timeout(cfg.registry.redis_timeout)
                .resync_interval(cfg.registry.redis_resync);
            Some(
                portcullis_registry::RedisStore::connect(opts)
                    .await
                    .context("registry.redis")?,
            )
        }
        None => None,
    };
    let store: Arc<dyn StateStore> = match &redis {
        Some(r) => Arc::new(r.clone()),
        None => Arc::new(FileStore::new(Path::new(&cfg.server.state_dir))),
    };
    match store.load().await {
        Ok(None) => {}
        Ok(Some(state)) => {
            let report = registry.restore(state, now_unix_ms());
            for (what, why) in &report.skipped {
                tracing::warn!(registration = %what, reason = %why.message(), "stored registration skipped");
            }
            // The config file wins on a name clash.
            let clashes: Vec<String> = routes
                .static_services()
                .into_iter()
                .filter(|s| registry.snapshot().service(s).is_some())
                .collect();
            for name in clashes {
                tracing::warn!(service = %name, "registered service shadowed by the config file's service of the same name; dropped");
                registry.delete_service(&name);
            }
            tracing::info!(
                services = report.services,
                endpoints = report.endpoints,
                expired = report.expired,
                "registrations restored"
            );
            if let Some(r) = &redis {
                r.mark_restored(&registry.to_stored())
                    .await
                    .context("encoding the restored registrations")?;
            }
        }
        Err(StoreError::Corrupt {
            path,
            reason,
            moved_to,
        }) => {
            tracing::error!(
                path = %path.display(),
                %reason,
                moved_to = %moved_to.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                "state file corrupt; moved aside, starting with no registrations"
            );
        }
        // A fleet's shared store that is down: serve the static routes, resync
        // when it is back (the subscription fires then).
        Err(error) if redis.is_some() => {
            tracing::warn!(%error, "registry store unreachable; starting without registrations, will resync");
        }
        Err(e) => return Err(anyhow::Error::new(e).context("loading the registry state")),
    }
    let snapshot = registry.snapshot();
    let now = now_unix_ms();
    routes
        .rebuild(&snapshot, now, &resolve(&snapshot, now).await)
        .context("routes of the stored registrations")?;

    let write_lock = Arc::new(tokio::sync::Mutex::new(()));
    let mut tasks = Vec::new();
    // Every change publishes a new version: rebuild the table for it.
    let mut changes = registry.subscribe();
    let (reg, rts) = (registry.clone(), routes.clone());
    tasks.push(tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let snapshot = reg.snapshot();
            let now = now_unix_ms();
            let resolved = resolve(&snapshot, now).await;
            if let Err(error) = rts.rebuild(&snapshot, now, &resolved) {
                tracing::error!(error = %format!("{error:#}"), "route table not rebuilt; the previous one keeps serving");
            }
        }
    }));
    // Lapsed leases: removed, and the removal made durable.
    let (reg, st, lock) = (registry.clone(), store.clone(), write_lock.clone());
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let _write = lock.lock().await;
            let expired = reg.expire(now_unix_ms());
            if expired.is_empty() {
                continue;
            }
            for e in &expired {
                tracing::info!(service = %e.service, endpoint = %e.id, "endpoint lease expired");
            }
            if let Err(error) = st.save(&reg.to_stored()).await {
                tracing::warn!(%error, "saving the registry after lease expiry failed");
            }
        }
    }));
    // Another gateway's change, a periodic resync, or Redis back after an
    // outage: reload the shared state. While Redis is unreachable the last known
    // table keeps serving.
    if let Some(r) = &redis {
        let mut notices = r.subscribe();
        let (reg, st, lock, redis) = (
            registry.clone(),
            store.clone(),
            write_lock.clone(),
            r.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while notices.recv().await.is_some() {
                // Not in the middle of a change and its save on this gateway:
                // the store's idea of what this registry holds stays true.
                let _write = lock.lock().await;
                match st.load().await {
                    Ok(Some(state)) => {
                        let report = reg.restore(state, now_unix_ms());
                        tracing::debug!(services = report.services, endpoints = report.endpoints, "registry resynced");
                        if let Err(error) = redis.mark_restored(&reg.to_stored()).await {
                            tracing::warn!(%error, "registry resynced, but the store could not record what it now holds");
                        }
                    }
                    Ok(None) => {
                        // Nothing stored at all (not even an empty state): Redis
                        // lost its data, say restarted without persistence. Seed it
                        // with the last known state rather than forget everything.
                        if !reg.snapshot().services().is_empty() {
                            tracing::info!("registry store is empty; seeding it with the last known registrations");
                            if let Err(error) = st.save(&reg.to_stored()).await {
                                tracing::warn!(%error, "seeding the registry store failed");
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "registry resync failed; the last known table keeps serving");
                    }
                }
            }
        }));
    }
    Ok(RunningRegistry {
        registry,
        store,
        redis,
        write_lock,
        tasks,
    })
}

/// How long resolving one endpoint host name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Resolves the host names (not IP literals) of every live endpoint, for health
/// probes: asynchronously, each bounded by a 1 s timeout, so that a rebuild
/// never blocks a runtime thread on DNS. A name that does not resolve is left
/// out (its endpoint is then not probed, and logged).
pub async fn resolve(
    snapshot: &portcullis_registry::Snapshot,
    now: u64,
) -> crate::services::Resolved {
    let mut urls = Vec::new();
    for name in snapshot.services().keys() {
        for (_, ep) in snapshot.live_endpoints(name, now) {
            urls.push(ep.spec.url.as_str());
        }
    }
    resolve_urls(urls).await
}

/// Resolves the host names (not IP literals) of `urls`, each within
/// `RESOLVE_TIMEOUT`; those that do not resolve are left out.
pub async fn resolve_urls<'a>(
    urls: impl IntoIterator<Item = &'a str>,
) -> crate::services::Resolved {
    let mut out = crate::services::Resolved::new();
    for url in urls {
        let Ok(upstream) = portcullis_proxy::Upstream::parse(url) else {
            continue;
        };
        let authority = upstream.authority();
        if authority.parse::<SocketAddr>().is_ok() || out.contains_key(authority) {
            continue;
        }
        // IPv4 first when a name has both (as `localhost` usually does).
        let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(authority))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|addrs| {
                let all: Vec<SocketAddr> = addrs.collect();
                all.iter().find(|a| a.is_ipv4()).or(all.first()).copied()
            });
        if let Some(addr) = found {
            out.insert(authority.to_owned(), addr);
        }
    }
    out
}

/// The endpoint URLs of `config`'s static services.
pub fn static_urls(config: &Config) -> impl Iterator<Item = &str> {
    config
        .services
        .iter()
        .flat_map(|s| s.endpoints.iter().map(|e| e.get_ref().as_str()))
}

impl RunningRegistry {
    /// Whether the store answered its last call (always true for the file).
    pub fn store_healthy(&self) -> bool {
        self.redis
            .as_ref()
            .is_none_or(portcullis_registry::RedisStore::is_healthy)
    }

    /// Stops the background tasks and saves the registrations a last time
    /// (bounded by 5 s).
    pub async fn stop(&self) {
        // No change is being saved while the lock is held: the tasks stop between
        // changes, and the registry is saved as it is now (a store that takes only
        // what changed writes nothing more when everything was saved already).
        let _write = self.write_lock.lock().await;
        for t in &self.tasks {
            t.abort();
        }
        let stored = self.registry.to_stored();
        match tokio::time::timeout(FLUSH_TIMEOUT, self.store.save(&stored)).await {
            Ok(Ok(())) => tracing::info!(
                services = stored.services.len(),
                "registrations saved to the state store"
            ),
            Ok(Err(error)) => tracing::warn!(%error, "saving the registrations at exit failed"),
            Err(_) => tracing::warn!(
                timeout_ms = FLUSH_TIMEOUT.as_millis(),
                "saving the registrations at exit timed out"
            ),
        }
    }
}

/// How long the last save at exit may take.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl RunningRegistry {
    /// The admin API under `/api/v1/`, for the admin listener: the token from
    /// `PORTCULLIS_ADMIN_TOKEN` or the state folder, the static routes reserved
    /// (a registration may not take them, nor a static service's name), and
    /// `GET /api/v1/routes` showing static and registered routes together. With
    /// the config file's `path`, `POST /api/v1/reload` re-reads it (the returned
    /// [`Reloader`](crate::reload::Reloader) serves SIGHUP too).
    pub fn api(
        &self,
        cfg: &Config,
        routes: &Routes,
        path: Option<&Path>,
        listeners: crate::reload::Listeners,
    ) -> anyhow::Result<(axum::Router, Option<crate::reload::Reloader>)> {
        use portcullis_registry::{AdminApi, AdminToken};
        let token = crate::admin::admin_token(Path::new(&cfg.server.state_dir))?;
        let (tokens, reserved, filter_sets) = admin_rules(cfg);
        let registry = self.registry.clone();
        let routes_now = routes.clone();
        let view = Arc::new(move || {
            let mut routes = routes_now.static_routes_json();
            let snapshot = registry.snapshot();
            for (name, entry) in snapshot.services() {
                for r in &entry.spec.routes {
                    routes.push(serde_json::json!({
                        "service": name,
                        "host": r.host,
                        "path": r.path,
                        "methods": r.methods,
                        "strip_prefix": r.strip_prefix,
                        "source": "registry",
                    }));
                }
            }
            serde_json::json!({ "routes": routes })
        });
        let mut api = AdminApi::new(
            self.registry.clone(),
            self.store.clone(),
            AdminToken::new(token),
        )
        .write_lock(self.write_lock.clone())
        .reserved_routes(reserved)
        .routes_view(view)
        .filter_sets(filter_sets)
        .service_tokens(tokens)
        .endpoint_health({
            let routes = routes.clone();
            Arc::new(move |service: &str, id: &str| routes.endpoint_health(service, id))
        });
        let reloader = path.map(|p| {
            crate::reload::Reloader::new(
                p.to_owned(),
                cfg.clone(),
                routes.clone(),
                self.registry.clone(),
                api.rules(),
                listeners,
            )
        });
        if let Some(r) = &reloader {
            let r = r.clone();
            api = api.reload(Arc::new(move || {
                let r = r.clone();
                Box::pin(async move { r.reload().await })
            }));
        }
        Ok((api.router(), reloader))
    }
}

/// What the admin API takes from the config: per-service tokens, the static
/// routes (a registration may not take them, nor a static service's name), and
/// the filter-set names.
pub(crate) fn admin_rules(
    cfg: &Config,
) -> (
    std::collections::HashMap<String, portcullis_registry::AdminToken>,
    Vec<portcullis_registry::ReservedRoute>,
    Vec<String>,
) {
    use portcullis_registry::{AdminToken, ReservedRoute};
    let mut reserved: Vec<ReservedRoute> = cfg
        .routes
        .iter()
        .map(|r| ReservedRoute {
            host: r.host.as_ref().map(|h| h.get_ref().clone()),
            path: r.path.get_ref().clone(),
            methods: r.methods.as_ref().map(|m| m.get_ref().clone()),
            owner: r.service.get_ref().clone(),
        })
        .collect();
    // A static service with no route still owns its name.
    for s in &cfg.services {
        if !reserved.iter().any(|r| &r.owner == s.name.get_ref()) {
            reserved.push(ReservedRoute {
                host: None,
                path: format!("/.portcullis-static/{}", s.name.get_ref()),
                methods: None,
                owner: s.name.get_ref().clone(),
            });
        }
    }
    let tokens = cfg
        .registry
        .service_tokens
        .iter()
        .map(|(s, t)| (s.clone(), AdminToken::new(t.expose().trim())))
        .collect();
    (tokens, reserved, cfg.filter_sets.keys().cloned().collect())
}
