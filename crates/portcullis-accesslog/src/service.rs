//! [`AccessLog`]: the access log service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::layer::Settings;
use crate::record::{RequestInfo, TARGET};
use crate::{AccessLogLayer, RequestBody, ResponseBody, ResponseFuture};

/// Writes one access line per request; built by [`AccessLogLayer`].
///
/// See the [crate docs](crate) for the fields and when the line is written.
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    settings: Arc<Settings>,
}

// === impl AccessLog ===

impl<S> AccessLog<S> {
    /// Wraps `inner` with the default settings of [`AccessLogLayer::new`].
    pub fn new(inner: S) -> Self {
        AccessLogLayer::new().layer(inner)
    }

    /// A layer with the default settings; see [`AccessLogLayer`] for the others.
    pub fn layer() -> AccessLogLayer {
        AccessLogLayer::new()
    }

    pub(crate) fn from_parts(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AccessLog<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    S::Error: fmt::Display,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        self.settings.mark_sensitive(req.headers_mut());
        // The interest of this callsite is cached by `tracing`: when no subscriber
        // wants access lines, nothing is captured, counted or formatted.
        let log = (self.settings.enabled
            && tracing::enabled!(target: TARGET, tracing::Level::INFO))
        .then(|| Arc::new(RequestInfo::capture(&self.settings, &req)));
        let req = req.map(|body| RequestBody::new(body, log.clone()));
        ResponseFuture::new(self.inner.call(req), log)
    }
}
