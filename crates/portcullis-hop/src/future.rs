//! [`ResponseFuture`]: strips the response's hop-by-hop headers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::strip::strip_response;

pin_project! {
    /// Response future of [`HopByHop`](crate::HopByHop).
    ///
    /// Strips the hop-by-hop headers of the inner service's response. Dropping it
    /// drops the inner future.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Whether the request was a real upgrade request, so a 101 keeps `Upgrade`.
        upgrade_request: bool,
    }
}

// === impl ResponseFuture ===

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, upgrade_request: bool) -> Self {
        Self {
            inner,
            upgrade_request,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        strip_response(&mut res, *this.upgrade_request);
        Poll::Ready(Ok(res))
    }
}
