//! Config reload (R18), on `POST /api/v1/reload` and SIGHUP: the file is read and
//! validated in full first; an invalid one is refused with every reason and the
//! running config keeps serving; a valid one replaces the routes at once.
//!
//! What a reload changes: services, routes and their filters, auth policies,
//! filter sets, `[proxy]` settings, and the admin API's reserved routes, filter
//! set names and service tokens. What it refuses to change (a restart applies
//! it): `[server]` (listeners, limits, admin token file), `[access_log]`,
//! `[metrics]`, `[registry]`, and the header names auth policies read keys from
//! or write identities to (the global layers that redact and strip them are
//! built once).

use std::path::PathBuf;
use std::sync::Arc;

use portcullis_registry::{AdminRules, Registry, now_unix_ms};

use crate::config::{self, Config};
use crate::gateway::{self, Routes};

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
        // Host names resolved first (bounded, off the lock); the snapshot the
        // table is built from is taken under the routes' lock.
        let resolved = {
            let snapshot = self.inner.registry.snapshot();
            crate::registry::resolve(&snapshot, now_unix_ms()).await
        };
        self.inner
            .routes
            .reload(&next, &self.inner.registry, &resolved)
            .map_err(|e| vec![format!("{e:#}")])?;
        let (tokens, reserved, filter_sets) = crate::registry::admin_rules(&next);
        self.inner
            .rules
            .replace(tokens, reserved, Some(filter_sets));
        *current = next;
        Ok(())
    }
}

/// The changes between `old` and `new` that only a restart applies, one reason each.
fn restart_only(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let json = |v: &dyn erased::Ser| v.to_json();
    // Service tokens reload; the rest of [registry] does not.
    let (mut old_registry, mut new_registry) = (old.registry.clone(), new.registry.clone());
    old_registry.service_tokens.clear();
    new_registry.service_tokens.clear();
    let sections: [(&str, &dyn erased::Ser, &dyn erased::Ser); 4] = [
        ("[server]", &old.server, &new.server),
        ("[access_log]", &old.access_log, &new.access_log),
        ("[metrics]", &old.metrics, &new.metrics),
        (
            "[registry] (other than service_tokens)",
            &old_registry,
            &new_registry,
        ),
    ];
    for (name, a, b) in sections {
        if json(a) != json(b) {
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
    if set(old) != set(new) || gateway::access_log_config(old) != gateway::access_log_config(new) {
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

/// Serializing config sections of different types through one signature.
mod erased {
    pub(super) trait Ser {
        fn to_json(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize> Ser for T {
        fn to_json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}
