//! The client connection's IO: every byte read is shown to the raw head inspector
//! before hyper parses it, so framing tricks that hyper normalises away
//! (`Content-Length` beside `Transfer-Encoding`, `chunked\t`) are still refused.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use portcullis_body::{HeadInspector, RawHeadVerdict};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

    /// Feeds bytes read from the client; returns false once the inspector stopped
    /// tracking (it then needs no more bytes).
    fn feed(&self, bytes: &[u8]) -> bool {
        let mut i = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        i.feed(bytes);
        !i.is_passthrough()
    }
}

pin_project_lite::pin_project! {
    /// A client stream whose reads are inspected.
    #[derive(Debug)]
    pub struct InspectedIo<T> {
        #[pin]
        io: T,
        inspector: Option<SharedInspector>,
    }
}

impl<T> InspectedIo<T> {
    /// Wraps `io`; with no inspector, reads pass untouched.
    pub fn new(io: T, inspector: Option<SharedInspector>) -> Self {
        Self { io, inspector }
    }
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
            if !new.is_empty() && !inspector.feed(new) {
                *this.inspector = None;
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
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
