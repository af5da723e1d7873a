//! The admin listener: `GET /healthz`, `GET /readyz`, `GET /metrics`.
//!
//! It has its own accept loop, apart from the proxy listener's, so operators can
//! still look in when the proxy listener is at its connection cap.
//!
//! TODO(#4): the registration API under `/api/v1/` mounts here.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use hyper_util::rt::{TokioIo, TokioTimer};
use portcullis_core::{Cause, ErrorResponse};
use tokio::net::TcpListener;

/// Renders the Prometheus text exposition of the gateway's metrics.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The admin endpoints as an axum [`Router`]; `/metrics` only when `metrics` is
/// given; the registration API (`/api/v1/`) when `api` is given (its fallback,
/// in the gateway's error shape, then answers unknown paths).
///
/// `/readyz` answers 200 `{"status":"ready"}`, or, when `store_healthy` says the
/// registry's shared store (Redis) is unreachable, 200
/// `{"status":"degraded","registry_store":"unreachable"}`: the gateway still
/// serves its last known table, so it stays in rotation.
pub fn router(
    metrics: Option<RenderMetrics>,
    api: Option<Router>,
    store_healthy: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
) -> Router {
    let ready = move || {
        let healthy = store_healthy.as_ref().is_none_or(|f| f());
        async move {
            if healthy {
                json(r#"{"status":"ready"}"#)
            } else {
                json(r#"{"status":"degraded","registry_store":"unreachable"}"#)
            }
        }
    };
    let mut app = Router::new()
        .route("/healthz", get(|| async { json(r#"{"status":"ok"}"#) }))
        .route("/readyz", get(ready));
    if let Some(render) = metrics {
        app = app.route(
            "/metrics",
            get(move || {
                let render = render.clone();
                async move {
                    (
                        [(
                            CONTENT_TYPE,
                            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                        )],
                        render(),
                    )
                }
            }),
        );
    }
    if let Some(api) = api {
        return app.merge(api);
    }
    // The gateway's own error shape, as on the proxy listener.
    app.fallback(|req: Request| async move {
        ErrorResponse::for_request(Cause::NoRoute, &req)
            .build()
            .into_response()
    })
}

fn json(body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// Admin connections served at once: the admin listener's own budget, apart
/// from the proxy listener's `max_connections`, so a flood of either cannot take
/// the other's slots. Past it a new admin connection gets the gateway's 503
/// `overloaded` answer and is closed.
pub const ADMIN_MAX_CONNECTIONS: usize = 256;

/// Serves the admin endpoints (HTTP/1.1, a 10 s header read timeout: axum's own
/// `serve` has none) until `stop` turns true; then serves what is already
/// queued on the socket (closing it would reset those connections) and returns.
async fn serve_with(
    listener: TcpListener,
    app: Router,
    slots: Arc<tokio::sync::Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let shed = crate::server::shed_response();
    let serve_one = |stream: tokio::net::TcpStream, peer: std::net::SocketAddr| {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer_addr = %peer, max_connections = ADMIN_MAX_CONNECTIONS, "admin connection limit reached, closing connection");
            crate::server::shed(stream, &shed);
            return;
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            drop(slot);
        });
    };
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => serve_one(stream, peer),
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    crate::server::take_queued(Arc::new(listener), ADMIN_MAX_CONNECTIONS, serve_one);
}

/// The admin listener, which a reload may move: [`AdminServer::rebind`] starts
/// accepting on the new socket, then stops the old accept loop (connections it
/// accepted, such as the one asking for the reload, finish on their own, and
/// those queued on the old socket are still served).
///
/// The app it serves holds the reloader, which holds this server: [`stop`]
/// (called at exit) lets the app go and so breaks that cycle.
///
/// [`stop`]: AdminServer::stop
pub struct AdminServer {
    inner: std::sync::Mutex<AdminInner>,
    slots: Arc<tokio::sync::Semaphore>,
}

#[derive(Default)]
struct AdminInner {
    app: Option<Router>,
    /// The accept loop and its stop signal.
    task: Option<(
        tokio::task::JoinHandle<()>,
        tokio::sync::watch::Sender<bool>,
    )>,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer").finish_non_exhaustive()
    }
}

impl Default for AdminServer {
    fn default() -> Self {
        Self::new()
    }
}

impl AdminServer {
    /// An admin server not serving yet.
    pub fn new() -> Self {
        Self {
            inner: std::sync::Mutex::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(ADMIN_MAX_CONNECTIONS)),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, AdminInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves `app` on `listener`.
    pub fn start(&self, listener: TcpListener, app: Router) {
        let mut inner = self.inner();
        inner.app = Some(app);
        self.run(&mut inner, listener);
    }

    /// Serves the same app on `listener` instead (the old socket's queued
    /// connections are still served); false when not serving.
    pub fn rebind(&self, listener: TcpListener) -> bool {
        let mut inner = self.inner();
        if inner.app.is_none() {
            return false;
        }
        self.run(&mut inner, listener);
        true
    }

    fn run(&self, inner: &mut AdminInner, listener: TcpListener) {
        let Some(app) = inner.app.clone() else {
            return;
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(serve_with(listener, app, self.slots.clone(), stop_rx));
        if let Some((_, old_stop)) = inner.task.replace((task, stop_tx)) {
            let _ = old_stop.send(true);
        }
    }

    /// Stops accepting and lets the app go.
    pub fn stop(&self) {
        let mut inner = self.inner();
        inner.app = None;
        if let Some((t, _)) = inner.task.take() {
            t.abort();
        }
    }
}

/// The admin bearer token: the `PORTCULLIS_ADMIN_TOKEN` variable when set, else
/// the token file [`ensure_token`] made in the state folder.
pub fn admin_token(state_dir: &Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    if let Some(t) = std::env::var_os("PORTCULLIS_ADMIN_TOKEN") {
        let t = t
            .into_string()
            .map_err(|_| anyhow::anyhow!("PORTCULLIS_ADMIN_TOKEN is not UTF-8"))?;
        if t.trim().is_empty() {
            anyhow::bail!("PORTCULLIS_ADMIN_TOKEN is empty");
        }
        return Ok(t.trim().to_owned());
    }
    let path = state_dir.join("admin-token");
    let t = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the admin token {}", path.display()))?;
    Ok(t.trim().to_owned())
}

/// Makes sure an admin token exists: the `PORTCULLIS_ADMIN_TOKEN` variable, or a
/// token file in the state folder, created (mode 0600) at first start.
pub fn ensure_token(state_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    use anyhow::Context as _;
    if std::env::var_os("PORTCULLIS_ADMIN_TOKEN").is_some() {
        return Ok(None);
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state folder {}", state_dir.display()))?;
    let path = state_dir.join("admin-token");
    if path.exists() {
        return Ok(Some(path));
    }
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw))
        .context("reading /dev/urandom for the admin token")?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(token.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}
