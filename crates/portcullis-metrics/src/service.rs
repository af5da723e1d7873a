//! [`Metrics`] and [`InFlight`]: the services.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use portcullis_core::ServiceName;
use tokio::time::Instant;
use tower_service::Service;

use crate::body::InFlightGuard;
use crate::cache::DEFAULT_CACHE_CAPACITY;
use crate::labels::MethodLabel;
use crate::record::{InFlightShared, Shared};
use crate::{
    InFlightBody, InFlightFuture, InFlightLayer, MetricsLayer, ResponseBody, ResponseFuture,
};

/// Counts requests and measures their duration.
///
/// Made by [`MetricsLayer`]; see the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct Metrics<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// Keeps the gauge of requests in flight.
///
/// Made by [`InFlightLayer`]; see the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct InFlight<S> {
    inner: S,
    shared: Arc<InFlightShared>,
}

// === impl Metrics ===

impl<S> Metrics<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self::from_shared(inner, Arc::new(Shared::new(DEFAULT_CACHE_CAPACITY)))
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// A [`MetricsLayer`], the same as [`MetricsLayer::new`].
    pub fn layer() -> MetricsLayer {
        MetricsLayer::new()
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Metrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let method = MethodLabel::of(req.method());
        ResponseFuture::new(
            self.inner.call(req),
            Arc::clone(&self.shared),
            method,
            start,
        )
    }
}

// === impl InFlight ===

impl<S> InFlight<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self::from_shared(inner, Arc::new(InFlightShared::new()))
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<InFlightShared>) -> Self {
        Self { inner, shared }
    }

    /// An [`InFlightLayer`], the same as [`InFlightLayer::new`].
    pub fn layer() -> InFlightLayer {
        InFlightLayer::new()
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for InFlight<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<InFlightBody<ResBody>>;
    type Error = S::Error;
    type Future = InFlightFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let service = req.extensions().get::<ServiceName>().map(|name| &name.0);
        let guard = InFlightGuard::enter(self.shared.gauge(service));
        InFlightFuture::new(self.inner.call(req), guard)
    }
}
