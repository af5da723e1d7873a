//! The client connection's IO: every byte read is shown to the raw head inspector
//! before hyper parses it, so framing tricks that hyper normalises away
//! (`Content-Length` beside `Transfer-Encoding`, `chunked\t`) are still refused.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use portcullis_body::{HeadInspector, RawHeadVerdict};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The inspector shared by a connection's IO (which feeds it) and its service
/// (which takes one verdict per request, in order).
#[derive(Clone, Debug)]
pub struct SharedInspector(Arc<Mutex<HeadInspector>>);

impl SharedInspector {
    /// An inspector for one connection.
    pub fn new(max_head_bytes: usize) -> Self {
        Self(Arc::new(Mutex::new(HeadInspector::new(max_head_bytes))))
    }

    /// The verdict on the next request head, if the inspector still tracks the
    /// connection.
    pub fn next_verdict(&self) -> Option<RawHeadVerdict> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_verdict()
    }

    /// Stops inspecting: the connection switched protocols.
    pub fn stop(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).stop();
    }

    /// Feeds bytes read from the client.
    fn feed(&self, bytes: &[u8]) -> Feed {
        let mut i = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        i.feed(bytes);
        if i.head_overflowed() {
            Feed::HeadTooLarge
        } else if i.is_passthrough() {
            Feed::Done
        } else {
            Feed::More {
                head_pending: i.heads_completed() == 0 || i.in_head(),
            }
        }
    }
}

/// What the inspector needs after a read.
enum Feed {
    /// More bytes: it still tracks the stream; `head_pending` while a request
    /// head (or the first one) is not complete.
    More { head_pending: bool },
    /// Nothing more: it stopped tracking (HTTP/2, an upgrade, a bad head).
    Done,
    /// A request head grew past the limit: the connection is to be closed.
    HeadTooLarge,
}

pin_project_lite::pin_project! {
    /// A client stream whose reads are inspected.
    ///
    /// A request head longer than the inspector's limit fails the read, so hyper
    /// closes the connection: hyper's own read buffer may be larger than any head
    /// we accept (large buffers make body uploads cheaper), and this keeps a slow
    /// or endless head from filling it.
    ///
    /// A request head must also arrive within `head_timeout`: the first one from
    /// the connection's start, later ones from their first byte (slowloris). The
    /// wait between requests is not bounded here (hyper's keep-alive timer does
    /// it: it knows when a response is done).
    #[derive(Debug)]
    pub struct InspectedIo<T> {
        #[pin]
        io: T,
        inspector: Option<SharedInspector>,
        head_timeout: Duration,
        // Only while a head is pending: an idle connection holds no timer.
        timer: Option<Pin<Box<Sleep>>>,
        send_timeout: Duration,
        // Only while a write is blocked (the client does not read).
        send_timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<T> InspectedIo<T> {
    /// Wraps `io`; with no inspector, reads pass untouched and are not timed.
    /// A write that stays blocked for `send_timeout` (the client stopped
    /// reading) fails, which closes the connection and lets go of its upstream.
    pub fn new(
        io: T,
        inspector: Option<SharedInspector>,
        head_timeout: Duration,
        send_timeout: Duration,
    ) -> Self {
        let timer = inspector
            .is_some()
            .then(|| Box::pin(tokio::time::sleep(head_timeout)));
        Self {
            io,
            inspector,
            head_timeout,
            timer,
            send_timeout,
            send_timer: None,
        }
    }
}

/// Bounds a blocked write: `Ready` clears the timer, `Pending` arms it, and a
/// timer that ran out turns the `Pending` into an error.
fn bound_write<R>(
    res: Poll<io::Result<R>>,
    timer: &mut Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> Poll<io::Result<R>> {
    if res.is_ready() {
        *timer = None;
        return res;
    }
    let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
    if t.as_mut().poll(cx).is_ready() {
        *timer = None;
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read its response in time",
        )));
    }
    res
}

impl<T: AsyncRead> AsyncRead for InspectedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.io.poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(inspector)) = (&res, this.inspector.as_ref()) {
            let new = buf.filled().get(before..).unwrap_or(&[]);
            if !new.is_empty() {
                match inspector.feed(new) {
                    Feed::More { head_pending } => {
                        if !head_pending {
                            *this.timer = None;
                        } else if this.timer.is_none() {
                            *this.timer = Some(Box::pin(tokio::time::sleep(*this.head_timeout)));
                        }
                    }
                    Feed::Done => {
                        *this.inspector = None;
                        *this.timer = None;
                    }
                    Feed::HeadTooLarge => {
                        *this.inspector = None;
                        *this.timer = None;
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "request head too large",
                        )));
                    }
                }
            }
        }
        if res.is_pending() {
            if let Some(timer) = this.timer.as_mut() {
                if timer.as_mut().poll(cx).is_ready() {
                    *this.timer = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not received in time",
                    )));
                }
            }
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for InspectedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.io.poll_write(cx, buf);
        bound_write(res, this.send_timer, *this.send_timeout, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let res = this.io.poll_flush(cx);
        bound_write(res, this.send_timer, *this.send_timeout, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.io.poll_write_vectored(cx, bufs);
        bound_write(res, this.send_timer, *this.send_timeout, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
