//! [`RequestBody`] counts the bytes read; [`ResponseBody`] counts the bytes sent and
//! writes the access line at its end.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::record::{Outcome, RequestInfo, ResponseInfo, emit};

pin_project! {
    /// The request body the inner service of [`AccessLog`](crate::AccessLog) reads:
    /// the client's body, counting the data bytes read into the line's `bytes_in`.
    ///
    /// Frames, `size_hint` and `is_end_stream` are passed through untouched. When
    /// no line is written for the request, it counts nothing.
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        log: Option<Arc<RequestInfo>>,
    }
}

pin_project! {
    /// The response body of [`AccessLog`](crate::AccessLog): the inner service's body,
    /// counting the data bytes sent, that writes the access line once, at its end.
    ///
    /// The line is written when the last frame is read (or `is_end_stream` turns
    /// true), when the body fails (`aborted = true` and `error`), or when the body is
    /// dropped before its end (`aborted = true`). Frames (trailers included),
    /// `size_hint` and `is_end_stream` are passed through untouched.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        log: Option<Pending>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().log.take() {
                pending.finish_on_drop();
            }
        }
    }
}

/// A line waiting for the end of its response body.
pub(crate) struct Pending {
    req: Arc<RequestInfo>,
    res: ResponseInfo,
    bytes_out: u64,
    /// Whether the body reported its end (`is_end_stream`); a body hyper never
    /// polls because it is empty ends this way.
    ended: bool,
}

// === impl RequestBody ===

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, log: Option<Arc<RequestInfo>>) -> Self {
        Self { inner, log }
    }

    /// The client's body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The client's body, mutably.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// The client's body; bytes read from it later are not counted.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(log), Some(Ok(frame))) = (this.log.as_ref(), frame.as_ref()) {
            if let Some(data) = frame.data_ref() {
                log.add_bytes_in(data.remaining());
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("counting", &self.log.is_some())
            .finish_non_exhaustive()
    }
}

// === impl ResponseBody ===

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, log: Option<Pending>) -> Self {
        Self { inner, log }
    }

    /// The inner service's body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(pending) = this.log.as_mut() {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let n = u64::try_from(data.remaining()).unwrap_or(u64::MAX);
                        pending.bytes_out = pending.bytes_out.saturating_add(n);
                    }
                    if this.inner.is_end_stream() {
                        pending.ended = true;
                        if let Some(p) = this.log.take() {
                            p.finish(Outcome::Complete);
                        }
                    }
                }
                Some(Err(e)) => {
                    if let Some(p) = this.log.take() {
                        p.finish(Outcome::BodyError(e));
                    }
                }
                None => {
                    if let Some(p) = this.log.take() {
                        p.finish(Outcome::Complete);
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("pending", &self.log)
            .finish_non_exhaustive()
    }
}

// === impl Pending ===

impl Pending {
    pub(crate) fn new(req: Arc<RequestInfo>, res: ResponseInfo, ended: bool) -> Self {
        Self {
            req,
            res,
            bytes_out: 0,
            ended,
        }
    }

    fn finish(self, outcome: Outcome<'_>) {
        emit(&self.req, Some(&self.res), self.bytes_out, outcome);
    }

    fn finish_on_drop(self) {
        let outcome = if self.ended || self.res.bodiless() {
            Outcome::Complete
        } else {
            Outcome::Aborted
        };
        self.finish(outcome);
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("req", &self.req)
            .field("res", &self.res)
            .field("bytes_out", &self.bytes_out)
            .finish()
    }
}
