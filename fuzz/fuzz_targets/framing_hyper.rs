//! `framing_hyper`: the raw head inspector against hyper itself, on one client
//! connection, the way `gateway-bin` wires them (src/io.rs and src/server.rs).
//!
//! Input: byte 0 picks the size of each read hyper gets (0: everything at once),
//! the rest is what the client sends. The connection is served by hyper's HTTP/1
//! server with the gateway's settings; every byte hyper reads is fed to a
//! `HeadInspector` first, as `InspectedIo` does (a head over the limit fails the
//! read); each request hyper produces takes the next verdict and carries a `Bad`
//! one into the `FramingGuard`, as `ConnService` does; the inner service reads
//! the whole body, as the proxy does, and answers 200.
//!
//! Checks (a failure means the inspector and hyper disagree on where requests
//! start, so a verdict could land on another request, or a request could pass
//! without one):
//! - every request hyper produces finds a verdict waiting, and a `Bad` verdict
//!   about `Content-Length` or `Transfer-Encoding` lands on a request that has
//!   that header;
//! - when the connection ends cleanly at a message boundary after keep-alive
//!   requests only, no verdict is left over (the inspector counted no request
//!   hyper did not see);
//! - nothing panics and the connection finishes (a hang is a libFuzzer timeout).
#![no_main]

use std::cell::RefCell;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use portcullis_body::{FramingGuard, HeadInspector, RawHeadVerdict};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower_service::Service;

/// The gateway's default head limit: `max_header_bytes + max_uri_bytes + 4096`.
const HEAD_LIMIT: usize = 32 * 1024 + 8 * 1024 + 4096;
/// hyper's default read buffer limit, which the gateway keeps when larger.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let [read_sel, stream @ ..] = data else {
        return;
    };
    let read_size = match read_sel {
        0 => usize::MAX,
        n => usize::from(*n),
    };
    let inspector = Arc::new(Mutex::new(HeadInspector::new(HEAD_LIMIT)));
    let io = FuzzIo {
        data: stream,
        pos: 0,
        read_size,
        inspector: Some(Arc::clone(&inspector)),
    };
    let log = Rc::new(RefCell::new(Log::default()));

    let svc = {
        let inspector = Arc::clone(&inspector);
        let log = Rc::clone(&log);
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let verdict = lock(&inspector).next_verdict();
            {
                let mut log = log.borrow_mut();
                log.requests += 1;
                log.all_keep_alive &= keeps_alive(&req);
                assert!(
                    verdict.is_some(),
                    "request {} ({} {} {:?}) reached the service without a verdict; \
                     inspector passthrough: {}",
                    log.requests,
                    req.method(),
                    req.uri(),
                    req.version(),
                    lock(&inspector).is_passthrough(),
                );
            }
            // The verdict belongs to this request: one that names a framing
            // header finds that header here (hyper keeps `Transfer-Encoding`
            // and drops `Content-Length` when both are present).
            if let Some(RawHeadVerdict::Bad { reason, .. }) = &verdict {
                let has = |name| req.headers().contains_key(name);
                if reason.contains("transfer-encoding") {
                    assert!(
                        has(http::header::TRANSFER_ENCODING),
                        "verdict {reason:?} on a request without transfer-encoding"
                    );
                } else if reason.contains("content-length") {
                    // (hyper drops every `Content-Length` next to a
                    // `Transfer-Encoding`, however many there are.)
                    assert!(
                        has(http::header::CONTENT_LENGTH) || has(http::header::TRANSFER_ENCODING),
                        "verdict {reason:?} on a request without content-length"
                    );
                }
            }
            if let Some(v @ RawHeadVerdict::Bad { .. }) = verdict {
                req.extensions_mut().insert(v);
            }
            let inner = ReadAll {
                log: Rc::clone(&log),
            };
            let log = Rc::clone(&log);
            async move {
                let res = FramingGuard::new(inner).call(req).await;
                if let Ok(res) = &res {
                    // A rejection closes the connection: later heads are unread.
                    let close = res
                        .headers()
                        .get(http::header::CONNECTION)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                    log.borrow_mut().closed |= close;
                }
                res
            }
        })
    };

    let mut h1 = http1::Builder::new();
    h1.max_buf_size(HEAD_LIMIT.max(HYPER_DEFAULT_MAX_BUF))
        .keep_alive(true);
    let conn = h1.serve_connection(TokioIo::new(io), svc);
    // A connection that never finishes shows up as a libFuzzer timeout.
    let result = runtime().block_on(conn);

    let log = log.borrow();
    let mut inspector = lock(&inspector);
    if result.is_ok()
        && log.all_keep_alive
        && !log.closed
        && !log.body_error
        && !inspector.is_passthrough()
    {
        assert_eq!(
            inspector.next_verdict(),
            None,
            "the inspector counted a request head hyper never produced \
             ({} requests served)",
            log.requests
        );
    }
});

fn lock(inspector: &Mutex<HeadInspector>) -> std::sync::MutexGuard<'_, HeadInspector> {
    inspector.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct Log {
    requests: usize,
    all_keep_alive: bool,
    /// A response said `Connection: close`.
    closed: bool,
    body_error: bool,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            requests: 0,
            all_keep_alive: true,
            closed: false,
            body_error: false,
        }
    }
}

/// Whether hyper keeps the connection open after this request.
fn keeps_alive<B>(req: &Request<B>) -> bool {
    let close = req
        .headers()
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"close"))
        });
    req.version() == Version::HTTP_11 && !close && req.method() != Method::CONNECT
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The inner service: reads the whole body, as the proxy streams it upstream,
/// then answers 200 (405 to `CONNECT`, which the gateway does not tunnel).
#[derive(Clone)]
struct ReadAll {
    log: Rc<RefCell<Log>>,
}

impl Service<Request<Incoming>> for ReadAll {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>>>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let log = Rc::clone(&self.log);
        Box::pin(async move {
            let connect = req.method() == Method::CONNECT;
            let status = match req.into_body().collect().await {
                Ok(_) if connect => 405,
                Ok(_) => 200,
                Err(_) => {
                    log.borrow_mut().body_error = true;
                    400
                }
            };
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
            Ok(res)
        })
    }
}

/// The client's side of the connection: hands out `data` in reads of
/// `read_size` bytes, feeding each read to the inspector first, exactly as
/// `gateway-bin`'s `InspectedIo` does; writes are discarded.
struct FuzzIo<'a> {
    data: &'a [u8],
    pos: usize,
    read_size: usize,
    inspector: Option<Arc<Mutex<HeadInspector>>>,
}

impl AsyncRead for FuzzIo<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(self.read_size).min(buf.remaining());
        let read = rest.get(..n).unwrap_or_default();
        buf.put_slice(read);
        self.pos += n;
        if n > 0 {
            if let Some(inspector) = self.inspector.clone() {
                let mut i = lock(&inspector);
                i.feed(read);
                if i.head_overflowed() {
                    self.inspector = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "request head too large",
                    )));
                } else if i.is_passthrough() {
                    self.inspector = None;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for FuzzIo<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
