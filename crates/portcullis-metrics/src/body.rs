//! [`ResponseBody`] and [`InFlightBody`]: end the measurement with the body.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ::metrics::Gauge;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::record::Pending;

pin_project! {
    /// Response body of [`Metrics`](crate::Metrics).
    ///
    /// Passes the inner body's frames, trailers, size hint and end of stream
    /// through unchanged, and records the request once: when the body ends, fails,
    /// or is dropped, whichever comes first.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
    }
}

pin_project! {
    /// Response body of [`InFlight`](crate::InFlight).
    ///
    /// Passes the inner body through unchanged and ends the in-flight count once:
    /// when the body ends, fails, or is dropped, whichever comes first.
    #[derive(Debug)]
    pub struct InFlightBody<B> {
        #[pin]
        inner: B,
        guard: Option<InFlightGuard>,
    }
}

/// One request counted in `portcullis_http_requests_in_flight`, until dropped.
#[derive(Debug)]
pub(crate) struct InFlightGuard {
    gauge: Gauge,
}

// === impl ResponseBody ===

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, pending: Pending) -> Self {
        Self {
            inner,
            pending: Some(pending),
        }
    }

    pub(crate) fn unrecorded(inner: B) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        // End of stream, error, or the last frame: dropping `Pending` records
        // the request (hyper may drop a body without polling past its end).
        if !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream() {
            this.pending.take();
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

// === impl InFlightBody ===

impl<B> InFlightBody<B> {
    pub(crate) fn new(inner: B, guard: Option<InFlightGuard>) -> Self {
        Self { inner, guard }
    }
}

impl<B: Body> Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream() {
            this.guard.take();
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

// === impl InFlightGuard ===

impl InFlightGuard {
    /// Counts one request in `gauge` until the guard is dropped.
    pub(crate) fn enter(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self { gauge }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}
