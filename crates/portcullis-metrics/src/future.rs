//! [`ResponseFuture`] and [`InFlightFuture`]: hand the recording to the body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use portcullis_core::{Cause, MatchedRoute, ServiceName, UpstreamDuration};
use tokio::time::Instant;

use crate::body::InFlightGuard;
use crate::labels::{MethodLabel, StatusClass};
use crate::record::{Pending, RequestLabels, Shared};
use crate::{InFlightBody, ResponseBody};

pin_project! {
    /// Response future of [`Metrics`](crate::Metrics).
    ///
    /// When the response head arrives it reads the labels from the response
    /// extensions, records the upstream's duration and cause, and wraps the body
    /// so that the request is recorded when the body ends. When the inner service
    /// fails it records a `5xx` at once. Dropping it before then drops the inner
    /// future and records nothing: the request was never answered.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        start: Option<Start>,
    }
}

pin_project! {
    /// Response future of [`InFlight`](crate::InFlight).
    ///
    /// Moves the in-flight count into the response body. Dropping it, or the
    /// inner service failing, ends the count.
    #[derive(Debug)]
    pub struct InFlightFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlightGuard>,
    }
}

#[derive(Debug)]
struct Start {
    shared: Arc<Shared>,
    method: MethodLabel,
    at: Instant,
}

// === impl ResponseFuture ===

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, shared: Arc<Shared>, method: MethodLabel, at: Instant) -> Self {
        Self {
            inner,
            start: Some(Start { shared, method, at }),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        // `None` only if polled again after completion, which the inner future
        // would have refused already; pass the response through unrecorded.
        let Some(Start { shared, method, at }) = this.start.take() else {
            return Poll::Ready(result.map(|res| res.map(ResponseBody::unrecorded)));
        };
        let res = match result {
            Ok(res) => res,
            Err(err) => {
                shared.internal_error(method, at);
                return Poll::Ready(Err(err));
            }
        };

        let ext = res.extensions();
        let route = match ext.get::<MatchedRoute>() {
            Some(matched) => Arc::clone(&matched.template),
            None => Arc::clone(shared.unmatched()),
        };
        let service = match ext.get::<ServiceName>() {
            Some(ServiceName(name)) => Arc::clone(name),
            None => Arc::clone(shared.no_service()),
        };
        if let Some(UpstreamDuration(took)) = ext.get::<UpstreamDuration>() {
            shared.upstream_duration(&service, took.as_secs_f64());
        }
        if let Some(cause) = ext.get::<Cause>() {
            shared.cause(*cause, &service, &route);
        }
        let labels = RequestLabels {
            service,
            route,
            method,
            class: StatusClass::of(res.status()),
        };
        let pending = Pending::new(shared, labels, at);
        Poll::Ready(Ok(res.map(|body| ResponseBody::new(body, pending))))
    }
}

// === impl InFlightFuture ===

impl<F> InFlightFuture<F> {
    pub(crate) fn new(inner: F, guard: InFlightGuard) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<F, B, E> Future for InFlightFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<InFlightBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        // On `Err` the guard is dropped here, ending the count.
        let guard = this.guard.take();
        Poll::Ready(result.map(|res| res.map(|body| InFlightBody::new(body, guard))))
    }
}
