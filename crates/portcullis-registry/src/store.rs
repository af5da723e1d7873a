//! Where registrations survive a restart: the [`StateStore`] trait and the embedded
//! [`FileStore`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::metrics;
use crate::registry::{ServiceEntry, now_unix_ms};
use crate::validate::{
    MAX_ENDPOINTS_PER_SERVICE, MAX_SERVICES, RegistrationError, validate_endpoint_spec,
    validate_name, validate_service_spec,
};

/// The current version of the stored format.
pub const STATE_FORMAT: u32 = 1;
/// The largest state file [`FileStore`] reads: 64 MiB.
pub const MAX_STATE_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The file name [`FileStore::new`] uses.
pub const DEFAULT_FILE_NAME: &str = "registry.json";

/// The boxed future a [`StateStore`] returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The whole registry state, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredState {
    /// The format version, [`STATE_FORMAT`].
    pub format: u32,
    /// The services, by name.
    pub services: BTreeMap<String, ServiceEntry>,
}

/// Keeps the registry state across restarts (R12). Object-safe: the gateway holds a
/// `Box<dyn StateStore>` (the file store by default, Redis for a fleet).
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Loads the stored state; `Ok(None)` when nothing was ever stored.
    fn load(&self) -> StoreFuture<'_, Option<StoredState>>;

    /// Stores `state`, durably before the future completes. Saves are applied in call
    /// order; a later save supersedes an earlier one that has not been written yet.
    fn save<'a>(&'a self, state: &'a StoredState) -> StoreFuture<'a, ()>;
}

/// Why a [`StateStore`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing the store failed.
    #[error("state store i/o failed on {path}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The stored state is unreadable (bad JSON, too large, or failed validation). The
    /// [`FileStore`] has moved it aside to `moved_to` (`None` if even that failed); the
    /// caller should log this and start empty.
    #[error("state file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file that was read.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// Where it was moved: `<name>.corrupt-<unix-ms>` beside it.
        moved_to: Option<PathBuf>,
    },
    /// The state could not be encoded.
    #[error("state could not be encoded")]
    Encode(#[source] serde_json::Error),
    /// The blocking task doing the i/o panicked or was cancelled.
    #[error("state store task failed")]
    Task,
    /// A networked store (Redis) could not be reached, or a command failed or took
    /// longer than its timeout. Keep serving the last known state and retry later.
    #[error("{store} store unavailable during {op}: {reason}")]
    Unavailable {
        /// The store: `redis`.
        store: &'static str,
        /// The operation: `load`, `save`, `publish`, `subscribe` or `ping`.
        op: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A shared store holds a state that fails [`StoredState::validate`]. Unlike
    /// [`StoreError::Corrupt`] nothing was moved aside: other gateways share it.
    #[error("{store} store holds an invalid state: {reason}")]
    Invalid {
        /// The store: `redis`.
        store: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The embedded default store: one JSON file in a folder.
///
/// `save` writes a temporary file in the same folder, fsyncs it, renames it over the
/// target and fsyncs the folder, so a reader (or a crash) sees the old state or the new
/// one, never a partial file. Saves run one at a time, in call order.
///
/// `load` treats a missing file as "nothing stored" (`Ok(None)`). A corrupt file (bad
/// JSON, larger than [`MAX_STATE_FILE_BYTES`], or failing [`StoredState::validate`]) is
/// moved aside to `<name>.corrupt-<unix-ms>` and reported as [`StoreError::Corrupt`]:
/// log it and start with an empty registry; the next save writes a fresh file.
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<FileStoreInner>,
}

#[derive(Debug)]
struct FileStoreInner {
    dir: PathBuf,
    file_name: String,
    next_seq: AtomicU64,
    written: tokio::sync::Mutex<u64>,
}

// === impl StoredState ===

impl StoredState {
    /// A state of the current format.
    pub fn new(services: BTreeMap<String, ServiceEntry>) -> Self {
        StoredState {
            format: STATE_FORMAT,
            services,
        }
    }

    /// Checks the format version and the shape of every entry (names, specs, bounds,
    /// URL syntax), without the upstream policy: that is applied by
    /// [`Registry::restore`](crate::Registry::restore), which skips what it refuses.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != STATE_FORMAT {
            return Err(format!(
                "unsupported format {}, expected {STATE_FORMAT}",
                self.format
            ));
        }
        if self.services.len() > MAX_SERVICES {
            return Err(format!("more than {MAX_SERVICES} services"));
        }
        let err = |at: &str, e: RegistrationError| format!("{at}: {}", e.message());
        for (name, entry) in &self.services {
            validate_name("service name", name).map_err(|e| err(name, e))?;
            validate_service_spec(&entry.spec).map_err(|e| err(name, e))?;
            if entry.endpoints.len() > MAX_ENDPOINTS_PER_SERVICE {
                return Err(format!(
                    "{name}: more than {MAX_ENDPOINTS_PER_SERVICE} endpoints"
                ));
            }
            for (id, ep) in &entry.endpoints {
                let at = format!("{name}/{id}");
                validate_name("endpoint id", id).map_err(|e| err(&at, e))?;
                validate_endpoint_spec(&ep.spec).map_err(|e| err(&at, e))?;
            }
        }
        Ok(())
    }
}

impl Default for StoredState {
    fn default() -> Self {
        StoredState::new(BTreeMap::new())
    }
}

// === impl FileStore ===

impl FileStore {
    /// A store keeping [`DEFAULT_FILE_NAME`] in `dir` (created on the first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStore::with_file_name(dir, DEFAULT_FILE_NAME)
    }

    /// A store keeping `file_name` in `dir`.
    pub fn with_file_name(dir: impl Into<PathBuf>, file_name: impl Into<String>) -> Self {
        FileStore {
            inner: Arc::new(FileStoreInner {
                dir: dir.into(),
                file_name: file_name.into(),
                next_seq: AtomicU64::new(1),
                written: tokio::sync::Mutex::new(0),
            }),
        }
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.inner.dir.join(&self.inner.file_name)
    }

    /// The folder holding the state file.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

impl StateStore for FileStore {
    fn load(&self) -> StoreFuture<'_, Option<StoredState>> {
        let path = self.path();
        let file_name = self.inner.file_name.clone();
        Box::pin(async move {
            let res = tokio::task::spawn_blocking(move || load_blocking(&path, &file_name))
                .await
                .unwrap_or(Err(StoreError::Task));
            if res.is_err() {
                metrics::store_error("file", "load");
            }
            res
        })
    }

    fn save<'a>(&'a self, state: &'a StoredState) -> StoreFuture<'a, ()> {
        // Encode and take a sequence number now, so saves apply in call order even if
        // their futures are polled out of order.
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let encoded = serde_json::to_vec_pretty(state).map_err(StoreError::Encode);
        Box::pin(async move {
            let res = async {
                let bytes = encoded?;
                let mut written = self.inner.written.lock().await;
                if *written > seq {
                    // A later state is already durable: this one is superseded.
                    return Ok(());
                }
                let dir = self.inner.dir.clone();
                let name = self.inner.file_name.clone();
                tokio::task::spawn_blocking(move || save_blocking(&dir, &name, seq, &bytes))
                    .await
                    .unwrap_or(Err(StoreError::Task))?;
                *written = seq;
                Ok(())
            }
            .await;
            if res.is_err() {
                metrics::store_error("file", "save");
            }
            res
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn load_blocking(path: &Path, file_name: &str) -> Result<Option<StoredState>, StoreError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_STATE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    let parsed = if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_STATE_FILE_BYTES {
        Err(format!("larger than {MAX_STATE_FILE_BYTES} bytes"))
    } else {
        serde_json::from_slice::<StoredState>(&bytes)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|s| s.validate().map(|()| s))
    };
    match parsed {
        Ok(state) => Ok(Some(state)),
        Err(reason) => {
            let aside = path.with_file_name(format!("{file_name}.corrupt-{}", now_unix_ms()));
            let moved_to = match std::fs::rename(path, &aside) {
                Ok(()) => Some(aside),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot move corrupt state file aside");
                    None
                }
            };
            Err(StoreError::Corrupt {
                path: path.to_owned(),
                reason,
                moved_to,
            })
        }
    }
}

fn save_blocking(dir: &Path, file_name: &str, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let target = dir.join(file_name);
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{seq}", std::process::id()));
    let res = write_synced(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &target))
        .map_err(io_err(&tmp));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res?;
    sync_dir(dir).map_err(io_err(dir))
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename in `dir` durable. A no-op where folders cannot be opened (Windows).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EndpointSpec, RouteSpec, ServiceSpec};
    use crate::registry::Endpoint;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "portcullis-registry-{tag}-{}-{}-{}",
                std::process::id(),
                now_unix_ms(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn state(services: usize, endpoints: usize) -> StoredState {
        let mut map = BTreeMap::new();
        for s in 0..services {
            let mut eps = BTreeMap::new();
            for e in 0..endpoints {
                eps.insert(
                    format!("e{e}"),
                    Endpoint {
                        spec: EndpointSpec::new(format!(
                            "http://10.0.{}.{}:8080",
                            s % 250,
                            e % 250
                        )),
                        lease_expires: 1_000 + u64::try_from(e).unwrap(),
                    },
                );
            }
            map.insert(
                format!("svc-{s}"),
                ServiceEntry {
                    spec: ServiceSpec::new(vec![RouteSpec::new(format!("/svc/{s}/"))]),
                    endpoints: eps,
                },
            );
        }
        StoredState::new(map)
    }

    #[tokio::test]
    async fn missing_file_loads_none_and_round_trips() {
        let tmp = TempDir::new("roundtrip");
        let store = FileStore::new(tmp.0.join("nested/state"));
        assert!(store.load().await.unwrap().is_none());
        let s = state(3, 2);
        store.save(&s).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(s));
        let s2 = state(1, 1);
        store.save(&s2).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(s2));
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [DEFAULT_FILE_NAME]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn object_safe_store() {
        let tmp = TempDir::new("dyn");
        let store: Box<dyn StateStore> = Box::new(FileStore::new(&tmp.0));
        store.save(&StoredState::default()).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(StoredState::default()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_never_see_a_partial_file() {
        let tmp = TempDir::new("atomic");
        let store = FileStore::new(&tmp.0);
        let big = state(400, 40);
        let small = state(1, 1);
        store.save(&small).await.unwrap();
        let path = store.path();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut reads = 0u32;
                while !stop.load(Ordering::Acquire) {
                    let bytes = std::fs::read(&path).unwrap();
                    let parsed: StoredState = serde_json::from_slice(&bytes)
                        .unwrap_or_else(|e| panic!("partial file of {} bytes: {e}", bytes.len()));
                    assert!(parsed.services.len() == 1 || parsed.services.len() == 400);
                    reads += 1;
                }
                reads
            }
        });
        for i in 0..40 {
            let s = if i % 2 == 0 { &big } else { &small };
            store.save(s).await.unwrap();
        }
        stop.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(store.load().await.unwrap(), Some(small));
    }

    #[tokio::test]
    async fn later_save_supersedes_and_saves_are_serialised() {
        let tmp = TempDir::new("order");
        let store = FileStore::new(&tmp.0);
        let (a, b) = (state(1, 0), state(2, 0));
        let fa = store.save(&a);
        let fb = store.save(&b);
        // Poll the later save first: the earlier one must not overwrite it.
        fb.await.unwrap();
        fa.await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(b));
        // Concurrent saves from many tasks all succeed and leave one whole state.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let store = store.clone();
            tasks.spawn(async move { store.save(&state(i + 1, 0)).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        let n = store.load().await.unwrap().unwrap().services.len();
        assert!((1..=8).contains(&n));
    }

    #[tokio::test]
    async fn corrupt_file_is_moved_aside() {
        let tmp = TempDir::new("corrupt");
        let store = FileStore::new(&tmp.0);
        std::fs::create_dir_all(&tmp.0).unwrap();
        std::fs::write(store.path(), b"{\"format\": 1, \"services\": ").unwrap();
        let err = store.load().await.unwrap_err();
        let StoreError::Corrupt {
            path,
            reason,
            moved_to,
        } = err
        else {
            panic!("expected Corrupt, got {err:?}");
        };
        assert_eq!(path, store.path());
        assert!(
            reason.starts_with("invalid JSON: EOF while parsing"),
            "{reason}"
        );
        let moved_to = moved_to.unwrap();
        let name = moved_to.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with("registry.json.corrupt-"), "{name}");
        assert_eq!(
            std::fs::read(&moved_to).unwrap(),
            b"{\"format\": 1, \"services\": "
        );
        assert!(!store.path().exists());
        assert!(store.load().await.unwrap().is_none());

        // Valid JSON that fails validation is corrupt too.
        let mut bad = state(1, 1);
        bad.services
            .get_mut("svc-0")
            .unwrap()
            .endpoints
            .get_mut("e0")
            .unwrap()
            .spec
            .url = "ftp://x:21".to_owned();
        std::fs::write(store.path(), serde_json::to_vec(&bad).unwrap()).unwrap();
        match store.load().await.unwrap_err() {
            StoreError::Corrupt { reason, .. } => assert_eq!(
                reason,
                "svc-0/e0: url scheme must be http or https, got \"ftp\""
            ),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let future = StoredState {
            format: 2,
            ..StoredState::default()
        };
        std::fs::write(store.path(), serde_json::to_vec(&future).unwrap()).unwrap();
        match store.load().await.unwrap_err() {
            StoreError::Corrupt { reason, .. } => {
                assert_eq!(reason, "unsupported format 2, expected 1");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn sync_dir_syncs_and_reports_errors() {
        let tmp = TempDir::new("syncdir");
        std::fs::create_dir_all(&tmp.0).unwrap();
        sync_dir(&tmp.0).unwrap();
        #[cfg(unix)]
        assert_eq!(
            sync_dir(&tmp.0.join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[tokio::test]
    async fn save_into_unwritable_place_is_an_io_error() {
        let tmp = TempDir::new("unwritable");
        std::fs::create_dir_all(&tmp.0).unwrap();
        let file = tmp.0.join("a-file");
        std::fs::write(&file, b"x").unwrap();
        // The store's folder is a regular file: create_dir_all fails.
        let store = FileStore::new(&file);
        match store.save(&StoredState::default()).await.unwrap_err() {
            StoreError::Io { path, .. } => assert_eq!(path, file),
            other => panic!("expected Io, got {other:?}"),
        }
    }
}
