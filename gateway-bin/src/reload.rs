//! Config reload (R18), on `POST /api/v1/reload` and SIGHUP: the file is read and
//! validated in full first; an invalid one is refused with every reason and the
//! running config keeps serving; a valid one replaces the routes at once.
//!
//! What a reload changes: services, routes and their filters, auth policies,
//! filter sets, `[proxy]` settings, the admin API's reserved routes, filter set
//! names and service tokens, and, through a new listener generation (see
//! [`Frontend`]), `[server]`'s listeners, limits and global layers and
//! `[access_log]`: a moved listener is bound before anything else changes (a
//! failure refuses the reload) and the old one stops accepting once the new one
//! does; an unchanged address keeps its socket, so no connection is refused
//! meanwhile. Connections of the old generation finish their request in flight
//! under the old settings and are then closed gracefully.
//!
//! What it refuses to change (a restart applies it): `server.state_dir`,
//! `[metrics]`, `[registry]` other than service tokens, and the header names
//! auth policies read keys from or write identities to (connections of the old
//! generation would neither strip nor redact a new one).

use std::path::PathBuf;
use std::sync::Arc;

use portcullis_registry::{AdminRules, Registry, now_unix_ms};

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::admin::AdminServer;
use crate::config::{self, Config, ServerConfig};
use crate::gateway::{self, Routes};
use crate::server::Frontend;

/// The listeners a reload may move or restart.
#[derive(Clone, Debug)]
pub struct Listeners {
    /// The proxy listener's generations.
    pub proxy: Arc<Frontend>,
    /// The admin listener.
    pub admin: Arc<AdminServer>,
    /// The addresses they are bound to now: proxy, admin.
    pub addrs: Arc<std::sync::Mutex<(SocketAddr, SocketAddr)>>,
}

/// Counter of reloads, by `outcome`: `ok` or `refused`.
pub const CONFIG_RELOADS_TOTAL: &str = "portcullis_config_reloads_total";

/// Re-reads the config file of a running gateway and applies it.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    current: tokio::sync::Mutex<Config>,
    routes: Routes,
    registry: Arc<Registry>,
    rules: AdminRules,
    listeners: Listeners,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader of the gateway running `current`, read from `path`.
    pub fn new(
        path: PathBuf,
        current: Config,
        routes: Routes,
        registry: Arc<Registry>,
        rules: AdminRules,
        listeners: Listeners,
    ) -> Self {
        metrics::describe_counter!(
            CONFIG_RELOADS_TOTAL,
            "Config reloads, by outcome (ok, refused)"
        );
        Self {
            inner: Arc::new(Inner {
                path,
                current: tokio::sync::Mutex::new(current),
                routes,
                registry,
                rules,
                listeners,
            }),
        }
    }

    /// Reads, validates and applies the file. `Err` holds every reason it was
    /// refused; the running config is then unchanged. Reloads run one at a time.
    pub async fn reload(&self) -> Result<(), Vec<String>> {
        let res = self.apply().await;
        let outcome = match &res {
            Ok(()) => {
                tracing::info!(path = %self.inner.path.display(), "config reloaded");
                "ok"
            }
            Err(reasons) => {
                tracing::error!(path = %self.inner.path.display(), reasons = %reasons.join("; "), "config reload refused; the running config keeps serving");
                "refused"
            }
        };
        metrics::counter!(CONFIG_RELOADS_TOTAL, "outcome" => outcome).increment(1);
        res
    }

    async fn apply(&self) -> Result<(), Vec<String>> {
        let mut current = self.inner.current.lock().await;
        let path = self.inner.path.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| vec![format!("reading the config failed: {e}")])?;
        let next = match loaded {
            Err(e) => return Err(vec![format!("{e:#}")]),
            Ok(Err(mistakes)) => return Err(mistakes.iter().map(ToString::to_string).collect()),
            Ok(Ok(c)) => c,
        };
        let fixed = restart_only(&current, &next);
        if !fixed.is_empty() {
            return Err(fixed);
        }
        let in_use = filter_sets_in_use(&self.inner.registry, &next);
        if !in_use.is_empty() {
            return Err(in_use);
        }
        // Moved listeners are bound first: a failure refuses the reload before
        // anything changed.
        let plan = self.plan_listeners(&current, &next).await?;
        // Host names resolved first (bounded, off the lock); the snapshot the
        // table is built from is taken under the routes' lock.
        let resolved = {
            let snapshot = self.inner.registry.snapshot();
            let mut resolved = crate::registry::resolve(&snapshot, now_unix_ms()).await;
            resolved
                .extend(crate::registry::resolve_urls(crate::registry::static_urls(&next)).await);
            resolved
        };
        self.inner
            .routes
            .reload(&next, &self.inner.registry, &resolved)
            .map_err(|e| vec![format!("{e:#}")])?;
        let (tokens, reserved, filter_sets) = crate::registry::admin_rules(&next);
        self.inner
            .rules
            .replace(tokens, reserved, Some(filter_sets));
        self.commit_listeners(plan);
        *current = next;
        Ok(())
    }

    /// Binds what moved and builds the next proxy generation's stack, if `[server]`
    /// or `[access_log]` changed. Nothing runs yet.
    async fn plan_listeners(&self, old: &Config, new: &Config) -> Result<Plan, Vec<String>> {
        let listeners = &self.inner.listeners;
        let mut reasons = Vec::new();
        let mut plan = Plan::default();
        let listen = parse_addr("server.listen", new.server.listen.get_ref(), &mut reasons);
        let admin = parse_addr(
            "server.admin_listen",
            new.server.admin_listen.get_ref(),
            &mut reasons,
        );
        let (Some(listen), Some(admin)) = (listen, admin) else {
            return Err(reasons);
        };
        if listen == admin && listen.port() != 0 {
            return Err(vec![
                "server.admin_listen must differ from server.listen".to_owned(),
            ]);
        }
        if listeners.proxy.is_shutting_down() {
            return Err(vec!["the gateway is shutting down".to_owned()]);
        }
        // Compared as addresses: `[::1]:80` and `[0:0:0:0:0:0:0:1]:80` are one.
        let same = |a: &str, b: SocketAddr| a.parse::<SocketAddr>().ok() == Some(b);
        let moved = !same(old.server.listen.get_ref(), listen);
        if moved {
            match TcpListener::bind(listen).await {
                Ok(l) => plan.proxy_socket = Some(Arc::new(l)),
                Err(e) => reasons.push(bind_failed("server.listen", listen, &e)),
            }
        }
        if !same(old.server.admin_listen.get_ref(), admin) {
            match TcpListener::bind(admin).await {
                Ok(l) => plan.admin_socket = Some(l),
                Err(e) => reasons.push(bind_failed("server.admin_listen", admin, &e)),
            }
        }
        if !reasons.is_empty() {
            return Err(reasons);
        }
        if moved
            || generation_settings(&old.server) != generation_settings(&new.server)
            || json(&old.access_log) != json(&new.access_log)
        {
            let stack =
                gateway::build_with(new, &self.inner.routes).map_err(|e| vec![format!("{e:#}")])?;
            let socket = match plan.proxy_socket.take() {
                Some(s) => s,
                None => listeners
                    .proxy
                    .listener()
                    .ok_or_else(|| vec!["the proxy listener is not running".to_owned()])?,
            };
            plan.generation = Some((socket, stack, gateway::limits(new)));
        }
        Ok(plan)
    }

    /// Starts what [`Reloader::plan_listeners`] prepared.
    fn commit_listeners(&self, plan: Plan) {
        let listeners = &self.inner.listeners;
        let mut addrs = listeners
            .addrs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((socket, stack, limits)) = plan.generation {
            let addr = socket.local_addr().unwrap_or(addrs.0);
            if !listeners.proxy.start(socket, stack, limits) {
                tracing::warn!(
                    "the gateway is shutting down: the new listener settings are not applied"
                );
                return;
            }
            if addr != addrs.0 {
                tracing::info!(addr = %addr, "proxy listening");
            }
            addrs.0 = addr;
        }
        if let Some(socket) = plan.admin_socket {
            let addr = socket.local_addr().unwrap_or(addrs.1);
            if listeners.admin.rebind(socket) {
                tracing::info!(addr = %addr, "admin listening");
                addrs.1 = addr;
            }
        }
        self.inner.registry.set_own_addrs(vec![addrs.0, addrs.1]);
    }
}

/// What a reload starts once everything else is in place.
#[derive(Default)]
struct Plan {
    /// A newly bound proxy socket (the address changed).
    proxy_socket: Option<Arc<TcpListener>>,
    /// A newly bound admin socket.
    admin_socket: Option<TcpListener>,
    /// The next proxy generation: its socket, stack and limits.
    generation: Option<(
        Arc<TcpListener>,
        gateway::Stack,
        crate::server::ListenerLimits,
    )>,
}

/// Why binding `addr` for `key` failed; an address in use may be one that
/// overlaps the running listener's.
fn bind_failed(key: &str, addr: SocketAddr, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "{key}: binding {addr} failed: {e} (if it overlaps the running listener's address, such as the same port on 0.0.0.0, restart the gateway for it)"
        )
    } else {
        format!("{key}: binding {addr} failed: {e}")
    }
}

fn parse_addr(key: &str, value: &str, reasons: &mut Vec<String>) -> Option<SocketAddr> {
    match value.parse() {
        Ok(a) => Some(a),
        Err(e) => {
            reasons.push(format!("{key}: {value:?} is not an address: {e}"));
            None
        }
    }
}

/// `[server]` without what a new generation does not apply: the admin listener
/// (rebound on its own) and the state folder (restart only).
fn generation_settings(server: &ServerConfig) -> serde_json::Value {
    let mut v = json(server);
    if let Some(m) = v.as_object_mut() {
        m.remove("admin_listen");
        m.remove("state_dir");
    }
    v
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The changes between `old` and `new` that only a restart applies, one reason each.
fn restart_only(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    // Service tokens reload; the rest of [registry] does not.
    let (mut old_registry, mut new_registry) = (old.registry.clone(), new.registry.clone());
    old_registry.service_tokens.clear();
    new_registry.service_tokens.clear();
    let sections = [
        (
            "server.state_dir",
            json(&old.server.state_dir),
            json(&new.server.state_dir),
        ),
        ("[metrics]", json(&old.metrics), json(&new.metrics)),
        (
            "[registry] (other than service_tokens)",
            json(&old_registry),
            json(&new_registry),
        ),
    ];
    for (name, a, b) in sections {
        if a != b {
            out.push(format!(
                "{name} changed: it is applied at start only; restart the gateway for it"
            ));
        }
    }
    let set = |c: &Config| {
        gateway::identity_headers(c)
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let key_names = |c: &Config| {
        let mut names = std::collections::BTreeSet::new();
        for policy in c.auth.values() {
            if let portcullis_auth::AuthConfig::ApiKey(k) = policy.get_ref() {
                names.extend(
                    k.header
                        .iter()
                        .map(|h| format!("header {}", h.to_ascii_lowercase())),
                );
                names.extend(k.query.iter().map(|q| format!("query {q}")));
            }
        }
        names
    };
    if set(old) != set(new) || key_names(old) != key_names(new) {
        out.push(
            "an auth policy's identity_header, API-key header or query parameter changed: \
             the layers that strip and redact them are built at start; restart the gateway for it"
                .to_owned(),
        );
    }
    out
}

/// A filter set that registered services name and `new` no longer has: their
/// routes would stop being served, so the reload is refused.
fn filter_sets_in_use(registry: &Registry, new: &Config) -> Vec<String> {
    let snapshot = registry.snapshot();
    snapshot
        .services()
        .iter()
        .filter_map(|(name, entry)| {
            let set = entry.spec.filters.as_ref()?;
            (!new.filter_sets.contains_key(set)).then(|| {
                format!(
                    "filter set {set:?} is used by the registered service {name:?}: keep it, or re-register the service without it first"
                )
            })
        })
        .collect()
}
