//! The upstream connector: hyper-util's `HttpConnector` plus a cap on open
//! connections per upstream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tower_service::Service;

use crate::caps::PerUpstream;
use crate::error::{BoxError, UpstreamOverloaded};

tokio::task_local! {
    /// A route's connect timeout, set around the request whose connection this
    /// is: the connector reads it when it starts connecting (which happens
    /// within that request's future; a connection started later, for the pool,
    /// gets the client's own timeout).
    pub(crate) static CONNECT_TIMEOUT: Duration;
}

/// Connects to upstreams, holding one slot of the upstream's connection cap for
/// as long as each connection lives.
#[derive(Clone, Debug)]
pub(crate) struct CappedConnector {
    http: HttpConnector,
    caps: Arc<Caps>,
}

#[derive(Debug)]
struct Caps {
    wait: Duration,
    // Keyed by upstream authorities (never client data).
    per_upstream: PerUpstream,
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
                wait,
                per_upstream: PerUpstream::new(per_upstream),
            }),
        }
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
        let sem = self
            .caps
            .per_upstream
            .get(dst.authority().map_or("", |a| a.as_str()));
        let wait = self.caps.wait;
        let mut http = self.http.clone();
        // hyper-util's own timeout, split over the addresses a name resolves to
        // (one silent address does not use up the others' time).
        if let Ok(d) = CONNECT_TIMEOUT.try_with(|d| *d) {
            http.set_connect_timeout(Some(d));
        }
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
