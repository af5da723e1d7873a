//! [`RedisStore`]: registrations shared by a fleet of gateways through Redis (R12).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::metrics;
use crate::registry::{Endpoint, ServiceEntry, now_unix_ms};
use crate::store::{StateStore, StoreError, StoreFuture, StoredState};

/// The key prefix [`RedisOptions::new`] uses.
pub const DEFAULT_KEY_PREFIX: &str = "portcullis:";
/// The bound on every Redis call [`RedisOptions::new`] uses: 500ms.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// How often [`RedisStore::subscribe`] asks for a full resync by default: 10s.
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(10);

const STORE: &str = "redis";
/// Keys read per `MGET` and per `SCAN` step.
const BATCH: usize = 512;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where and how a [`RedisStore`] connects.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    url: String,
    key_prefix: String,
    timeout: Duration,
    resync_interval: Duration,
}

/// A [`StateStore`] in Redis, shared by a fleet of gateways, with change notifications.
///
/// # Key layout
///
/// With the prefix `p` (default [`DEFAULT_KEY_PREFIX`]):
///
/// | key | value | expiry |
/// | --- | --- | --- |
/// | `{p}format` | [`STATE_FORMAT`](crate::STATE_FORMAT) | none: marks "a state was stored" |
/// | `{p}epoch` | a number, new each time a store finds Redis without data | none |
/// | `{p}svc:{service}` | JSON of the [`ServiceSpec`](crate::ServiceSpec) | none |
/// | `{p}ep:{service}:{id}` | JSON of the [`Endpoint`] | the lease: `PX` until `lease_expires` |
/// | `{p}changes` | pub/sub channel: `{sender}:{seq}` after every save | |
///
/// Redis itself drops an endpoint whose lease lapsed. Names and ids never contain `:`.
///
/// [`save`](StateStore::save) writes, in one `MULTI`/`EXEC`, what changed against what
/// this store takes Redis to hold of its registry — the state it last saved, or the
/// one its registry restored from a load ([`RedisStore::mark_restored`]): it sets the
/// services and live endpoints whose JSON differs (a heartbeat changes an endpoint's
/// lease), deletes the keys it knew that the state no longer holds, leaves every other
/// key alone, then `PUBLISH`es on `{p}changes`. When `{p}epoch` is missing (Redis lost
/// its data) or changed (another store re-seeded it), the whole state is written.
/// [`load`](StateStore::load) `SCAN`s and `MGET`s; it answers `Ok(None)` while
/// `{p}format` is absent. Only portable commands are used (`GET`, `SET PX`, `MGET`,
/// `DEL`, `SCAN`, `MULTI`/`EXEC`, `PUBLISH`, `SUBSCRIBE`, `PING`), so Valkey and
/// Dragonfly work too.
///
/// So gateways of a fleet that change different services or endpoints at the same
/// time never undo each other's changes, even before they have reloaded: a key this
/// gateway did not change is not written, and a key it never held is never deleted
/// (nor one its registry refused when restoring). Two changes of the same service or
/// endpoint: the last writer wins. A save whose outcome is unknown (the reply timed
/// out) makes every key it set or deleted "unknown", so the next save writes or
/// deletes it again. An endpoint whose lease lapsed as far as this store knew is left
/// for Redis to expire: another gateway may have renewed it. The caller serializes a
/// change and its save with a load and the restore that follows it (the gateway holds
/// one lock for both).
///
/// # Failures
///
/// Every Redis call is bounded by the [timeout](RedisOptions::timeout). A failure is an
/// [`StoreError::Unavailable`], counts in `portcullis_store_errors_total{store="redis",op}`
/// and makes [`is_healthy`](RedisStore::is_healthy) false until a call succeeds. The
/// connection is re-established in the background, with backoff; nothing panics.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    options: RedisOptions,
    client: redis::Client,
    conn: ConnectionManager,
    sender: String,
    seq: AtomicU64,
    healthy: AtomicBool,
    /// What this store takes Redis to hold of its registry; held for the whole of
    /// a load or save, so that they never interleave.
    known: tokio::sync::Mutex<Known>,
}

// === impl RedisOptions ===

impl RedisOptions {
    /// Options for the server at `url` (`redis://host:port/db`), with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            resync_interval: DEFAULT_RESYNC_INTERVAL,
        }
    }

    /// The prefix of every key and of the channel (default [`DEFAULT_KEY_PREFIX`]).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The bound on every Redis call, connecting included (default 500ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often [`RedisStore::subscribe`] fires for a full resync (default 10s).
    pub fn resync_interval(mut self, interval: Duration) -> Self {
        self.resync_interval = interval;
        self
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: show only that one is set.
        f.debug_struct("RedisOptions")
            .field("url", &redact(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("resync_interval", &self.resync_interval)
            .finish()
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

// === impl RedisStore ===

impl RedisStore {
    /// A store for `options`. Succeeds while Redis is down (the connection is made
    /// lazily and retried); fails only on an invalid URL. Pings once, within the
    /// timeout, to set [`is_healthy`](RedisStore::is_healthy).
    pub async fn connect(options: RedisOptions) -> Result<Self, StoreError> {
        let invalid = |e: redis::RedisError| StoreError::Unavailable {
            store: STORE,
            op: "connect",
            reason: e.to_string(),
        };
        let client = redis::Client::open(options.url.as_str()).map_err(invalid)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(2)
            .set_min_delay(BACKOFF_MIN)
            .set_max_delay(BACKOFF_MAX);
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(invalid)?;
        static INSTANCE: AtomicU64 = AtomicU64::new(0);
        let sender = format!(
            "{:x}-{:x}-{:x}",
            std::process::id(),
            now_unix_ms(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        );
        let store = RedisStore {
            inner: Arc::new(Inner {
                options,
                client,
                conn,
                sender,
                seq: AtomicU64::new(0),
                healthy: AtomicBool::new(false),
                known: tokio::sync::Mutex::new(Known::default()),
            }),
        };
        let _ = store.ping().await;
        Ok(store)
    }

    /// The options this store was made with.
    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// Whether the last Redis call succeeded: for `/readyz`.
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
    }

    /// Pings Redis within the timeout, updating [`is_healthy`](RedisStore::is_healthy).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.inner.conn.clone();
        self.call("ping", redis::cmd("PING").query_async::<()>(&mut conn))
            .await
    }

    /// Notifications that the shared state may have changed: the receiver gets `()`
    /// when another gateway saved (this store's own saves are ignored), every
    /// [resync interval](RedisOptions::resync_interval) as a safety net, and when the
    /// subscription comes back after Redis was unreachable. On each, `load()` then
    /// [`Registry::restore`](crate::Registry::restore). Notifications coalesce: the
    /// channel holds one.
    ///
    /// A background task keeps the subscription, reconnecting with backoff (100ms
    /// doubling to 5s); it ends when the receiver is dropped. Must be called within a
    /// Tokio runtime.
    pub fn subscribe(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(subscriber(self.inner.clone(), tx));
        rx
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.inner.options.key_prefix)
    }

    /// Runs one Redis call within the timeout, recording health and errors.
    async fn call<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        call(&self.inner, op, fut).await
    }

    /// Every key under `pattern` (already prefixed and escaped).
    async fn scan(&self, op: &'static str, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.inner.conn.clone();
        let mut cursor = 0u64;
        let mut keys = BTreeSet::new();
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .call(
                    op,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(BATCH)
                        .query_async(&mut conn),
                )
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys.into_iter().collect());
            }
            cursor = next;
        }
    }

    async fn load_inner(&self) -> Result<Option<StoredState>, StoreError> {
        let mut known = self.inner.known.lock().await;
        let mut conn = self.inner.conn.clone();
        let format: Option<u32> = self
            .call(
                "load",
                redis::cmd("GET")
                    .arg(self.key("format"))
                    .query_async(&mut conn),
            )
            .await?;
        let Some(format) = format else {
            known.keys.clear();
            known.epoch = None;
            return Ok(None);
        };
        let epoch: Option<u64> = self
            .call(
                "load",
                redis::cmd("GET")
                    .arg(self.key("epoch"))
                    .query_async(&mut conn),
            )
            .await?;
        let pattern = format!("{}*", glob_escape(&self.inner.options.key_prefix));
        let keys = self.scan("load", &pattern).await?;
        let svc_prefix = self.key("svc:");
        let ep_prefix = self.key("ep:");
        let mut services = BTreeMap::new();
        let mut endpoints = Vec::new();
        for chunk in keys.chunks(BATCH) {
            let values: Vec<Option<String>> = self
                .call("load", redis::cmd("MGET").arg(chunk).query_async(&mut conn))
                .await?;
            for (key, value) in chunk.iter().zip(values) {
                // A key may expire between SCAN and MGET.
                let Some(value) = value else { continue };
                if let Some(name) = key.strip_prefix(&svc_prefix) {
                    match serde_json::from_str(&value) {
                        Ok(spec) => {
                            services.insert(
                                name.to_owned(),
                                ServiceEntry {
                                    spec,
                                    endpoints: BTreeMap::new(),
                                },
                            );
                        }
                        Err(e) => return Err(corrupt(&mut known, key, &e)),
                    }
                } else if let Some(rest) = key.strip_prefix(&ep_prefix) {
                    let Some((service, id)) = rest.split_once(':') else {
                        let e = format!("not {ep_prefix}SERVICE:ID");
                        return Err(corrupt(&mut known, key, &e));
                    };
                    match serde_json::from_str::<Endpoint>(&value) {
                        Ok(ep) => endpoints.push((service.to_owned(), id.to_owned(), ep)),
                        Err(e) => return Err(corrupt(&mut known, key, &e)),
                    }
                }
            }
        }
        for (service, id, ep) in endpoints {
            // An endpoint whose service was deleted meanwhile is dropped.
            if let Some(entry) = services.get_mut(&service) {
                entry.endpoints.insert(id, ep);
            }
        }
        let state = StoredState { format, services };
        state.validate().map_err(invalid)?;
        if epoch != known.epoch {
            // Another store seeded Redis anew: what this one knew is stale.
            known.keys.clear();
            known.epoch = epoch;
        }
        Ok(Some(state))
    }

    /// The keys, JSON and lease (ms left) that `state` is stored as.
    fn entries(&self, state: &StoredState, now: u64) -> Result<Vec<Entry>, StoreError> {
        let svc_prefix = self.key("svc:");
        let ep_prefix = self.key("ep:");
        let mut out = Vec::new();
        for (name, entry) in &state.services {
            let spec = serde_json::to_string(&entry.spec).map_err(StoreError::Encode)?;
            out.push((format!("{svc_prefix}{name}"), spec, None));
            for (id, ep) in &entry.endpoints {
                let Some(ttl) = ep.lease_expires.checked_sub(now).filter(|t| *t > 0) else {
                    continue; // lapsed: not written (nor deleted, see `save_inner`)
                };
                let json = serde_json::to_string(ep).map_err(StoreError::Encode)?;
                out.push((format!("{ep_prefix}{name}:{id}"), json, Some(ttl)));
            }
        }
        Ok(out)
    }

    /// Tells the store that its registry now holds `state`, as restored from a
    /// [`load`](StateStore::load): the next save writes only what changes from
    /// it, and never deletes what the registry skipped when restoring (another
    /// gateway's registration this one refuses stays in Redis).
    ///
    /// # Errors
    ///
    /// [`StoreError::Encode`] when the state cannot be encoded.
    pub async fn mark_restored(&self, state: &StoredState) -> Result<(), StoreError> {
        let entries = self.entries(state, now_unix_ms())?;
        let mut known = self.inner.known.lock().await;
        known.keys = entries.into_iter().map(|(k, v, _)| (k, v)).collect();
        Ok(())
    }

    async fn save_inner(&self, state: &StoredState) -> Result<(), StoreError> {
        let ep_prefix = self.key("ep:");
        let now = now_unix_ms();
        let wanted = self.entries(state, now)?;
        // One save (or load) at a time from this store.
        let mut known = self.inner.known.lock().await;
        let mut conn = self.inner.conn.clone();
        // The epoch changes when a store finds Redis without data (restarted
        // without persistence, flushed) and writes its whole state: what any
        // store knew before is then stale, so it writes its whole state too.
        let epoch: Option<u64> = self
            .call(
                "save",
                redis::cmd("GET")
                    .arg(self.key("epoch"))
                    .query_async(&mut conn),
            )
            .await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        match epoch {
            Some(e) if known.epoch == Some(e) => {}
            Some(e) => {
                known.keys.clear();
                known.epoch = Some(e);
            }
            None => {
                known.keys.clear();
                let e = self.inner.seq.load(Ordering::Relaxed)
                    ^ now.rotate_left(20)
                    ^ fnv(&self.inner.sender);
                known.epoch = Some(e);
                pipe.cmd("SET").arg(self.key("epoch")).arg(e).ignore();
            }
        }
        pipe.cmd("SET")
            .arg(self.key("format"))
            .arg(state.format)
            .ignore();
        let mut touched = Vec::new();
        for (key, value, ttl) in &wanted {
            if known.keys.get(key) == Some(value) {
                continue;
            }
            touched.push(key.clone());
            let cmd = pipe.cmd("SET").arg(key).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(*ttl);
            }
            cmd.ignore();
        }
        let wanted_keys: BTreeSet<&str> = wanted.iter().map(|(k, _, _)| k.as_str()).collect();
        // Keys this store knew that the state no longer holds; but an endpoint
        // whose lease lapsed as far as this store knew is left to Redis, which
        // drops it at the lease it holds: another gateway may have renewed it.
        let gone: Vec<String> = known
            .keys
            .iter()
            .filter(|(k, v)| {
                let lapsed = k.starts_with(&ep_prefix)
                    && serde_json::from_str::<Endpoint>(v).is_ok_and(|ep| ep.lease_expires <= now);
                !lapsed && !wanted_keys.contains(k.as_str())
            })
            .map(|(k, _)| k.clone())
            .collect();
        for chunk in gone.chunks(BATCH) {
            pipe.cmd("DEL").arg(chunk).ignore();
        }
        if let Err(e) = self.call("save", pipe.query_async::<()>(&mut conn)).await {
            // Applied or not: every key it set or deleted is now of unknown value,
            // so the next save sets it again if wanted, or deletes it.
            for key in touched.into_iter().chain(gone) {
                known.keys.insert(key, String::new());
            }
            return Err(e);
        }
        known.keys = wanted.into_iter().map(|(k, v, _)| (k, v)).collect();
        drop(known);
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let message = format!("{}:{seq}", self.inner.sender);
        // The change is stored: a lost notice only delays the other gateways
        // until their periodic resync.
        if let Err(error) = self
            .call(
                "publish",
                redis::cmd("PUBLISH")
                    .arg(self.key("changes"))
                    .arg(message)
                    .query_async::<()>(&mut conn),
            )
            .await
        {
            tracing::warn!(%error, "registry change saved but not announced; other gateways see it at their next resync");
        }
        Ok(())
    }
}

/// A key to write: its name, JSON, and lease in ms (endpoints only).
type Entry = (String, String, Option<u64>);

/// What a store takes Redis to hold of its registry.
#[derive(Default)]
struct Known {
    /// Each key with the JSON this store last wrote or restored it as (`""`:
    /// unknown, after a save whose outcome is unknown).
    keys: BTreeMap<String, String>,
    /// The `{p}epoch` this store last saw.
    epoch: Option<u64>,
}

/// FNV-1a of a string, to mix a store's id into an epoch.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl StateStore for RedisStore {
    fn load(&self) -> StoreFuture<'_, Option<StoredState>> {
        Box::pin(async move {
            let res = self.load_inner().await;
            if let Err(StoreError::Invalid { .. } | StoreError::Encode(_)) = &res {
                metrics::store_error(STORE, "load");
            }
            res
        })
    }

    fn save<'a>(&'a self, state: &'a StoredState) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let res = self.save_inner(state).await;
            if let Err(StoreError::Encode(_)) = &res {
                metrics::store_error(STORE, "save");
            }
            res
        })
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("options", &self.inner.options)
            .field("sender", &self.inner.sender)
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

/// A key whose value cannot be read: the load fails (the caller keeps what it
/// has), and the key becomes "known with an unknown value", so that the next save
/// deletes it unless the state holds it.
fn corrupt(known: &mut Known, key: &str, e: &dyn std::fmt::Display) -> StoreError {
    known.keys.insert(key.to_owned(), String::new());
    invalid(format!("{key}: {e}"))
}

fn invalid(reason: String) -> StoreError {
    StoreError::Invalid {
        store: STORE,
        reason,
    }
}

async fn call<T>(
    inner: &Inner,
    op: &'static str,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    let reason = match tokio::time::timeout(inner.options.timeout, fut).await {
        Ok(Ok(v)) => {
            inner.healthy.store(true, Ordering::Release);
            return Ok(v);
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {:?}", inner.options.timeout),
    };
    inner.healthy.store(false, Ordering::Release);
    metrics::store_error(STORE, op);
    tracing::warn!(store = STORE, op, reason = %reason, "state store call failed");
    Err(StoreError::Unavailable {
        store: STORE,
        op,
        reason,
    })
}

/// Escapes the glob characters of a `SCAN MATCH` pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Keeps a subscription to `{prefix}changes`, forwarding other senders' messages and
/// resync ticks to `tx`, until `tx` is closed.
async fn subscriber(inner: Arc<Inner>, tx: mpsc::Sender<()>) {
    let channel = format!("{}changes", inner.options.key_prefix);
    let own = format!("{}:", inner.sender);
    let mut backoff = BACKOFF_MIN;
    let mut first = true;
    loop {
        let connected = async {
            let pubsub = call(&inner, "subscribe", inner.client.get_async_pubsub()).await?;
            let (mut sink, stream) = pubsub.split();
            call(&inner, "subscribe", sink.subscribe(&channel)).await?;
            Ok::<_, StoreError>((sink, stream))
        };
        let (mut sink, mut stream) = tokio::select! {
            r = connected => match r {
                Ok(pair) => pair,
                Err(_) => {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = tx.closed() => return,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        backoff = BACKOFF_MIN;
        if !first {
            // Back after a failure: changes may have been missed.
            let _ = tx.try_send(());
        }
        first = false;
        let mut tick = tokio::time::interval(inner.options.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        let payload = String::from_utf8_lossy(msg.get_payload_bytes());
                        if !payload.starts_with(&own) {
                            let _ = tx.try_send(());
                        }
                    }
                    None => {
                        inner.healthy.store(false, Ordering::Release);
                        metrics::store_error(STORE, "subscribe");
                        tracing::warn!(store = STORE, "subscription lost, reconnecting");
                        break;
                    }
                },
                _ = tick.tick() => {
                    let _ = tx.try_send(());
                    // A silent half-open connection is found by the ping.
                    if call(&inner, "ping", sink.ping::<redis::Value>()).await.is_err() {
                        break;
                    }
                }
                () = tx.closed() => return,
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests;
