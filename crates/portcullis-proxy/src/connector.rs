//! The upstream connector: hyper-util's `HttpConnector` plus a cap on open
//! connections per upstream.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

use crate::error::{BoxError, UpstreamOverloaded};

/// Connects to upstreams, holding one slot of the upstream's connection cap for
/// as long as each connection lives.
#[derive(Clone, Debug)]
pub(crate) struct CappedConnector {
    http: HttpConnector,
    caps: Arc<Caps>,
}

#[derive(Debug)]
struct Caps {
    per_upstream: usize,
    wait: Duration,
    // Keyed by configured upstream authorities only (never client data), so the map
    // is bounded by the configuration.
    map: Mutex<HashMap<String, Arc<Semaphore>>>,
}

pin_project_lite::pin_project! {
    /// A connection to an upstream that frees its cap slot when dropped.
    #[derive(Debug)]
    pub(crate) struct CappedIo {
        #[pin]
        io: TokioIo<TcpStream>,
        _permit: OwnedSemaphorePermit,
    }
}

// === impl CappedConnector ===

impl CappedConnector {
    pub(crate) fn new(http: HttpConnector, per_upstream: usize, wait: Duration) -> Self {
        Self {
            http,
            caps: Arc::new(Caps {
                per_upstream,
                wait,
                map: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn semaphore(&self, dst: &Uri) -> Arc<Semaphore> {
        let key = dst.authority().map(|a| a.as_str()).unwrap_or("");
        let mut map = match self.caps.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(s) = map.get(key) {
            return s.clone();
        }
        let s = Arc::new(Semaphore::new(self.caps.per_upstream));
        map.insert(key.to_owned(), s.clone());
        s
    }
}

impl Service<Uri> for CappedConnector {
    type Response = CappedIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<CappedIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let sem = self.semaphore(&dst);
        let wait = self.caps.wait;
        let mut http = self.http.clone();
        Box::pin(async move {
            let permit = match sem.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => match tokio::time::timeout(wait, sem.acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => return Err(Box::new(UpstreamOverloaded::new()) as BoxError),
                },
            };
            let io = http.call(dst).await?;
            Ok(CappedIo {
                io,
                _permit: permit,
            })
        })
    }
}

// === impl CappedIo ===

impl Connection for CappedIo {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl Read for CappedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl Write for CappedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
}
