//! [`HopByHop`]: the service.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::strip::strip_request;
use crate::{HopByHopLayer, ResponseFuture};

/// Strips hop-by-hop headers from the request before calling the inner service,
/// and from its response afterwards.
///
/// Made by [`HopByHopLayer`]; see the [crate docs](crate) for the exact rules.
#[derive(Debug, Clone)]
pub struct HopByHop<S> {
    inner: S,
}

// === impl HopByHop ===

impl<S> HopByHop<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// A [`HopByHopLayer`], the same as [`HopByHopLayer::new`].
    pub fn layer() -> HopByHopLayer {
        HopByHopLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HopByHop<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let upgrade = strip_request(&mut req);
        ResponseFuture::new(self.inner.call(req), upgrade)
    }
}
