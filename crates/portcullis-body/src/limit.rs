use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};

use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use http_body::Body;
use portcullis_core::{Cause, ErrorContext, ErrorResponse};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{Limited, ResponseBody};
use crate::future::ResponseFuture;
use crate::raw::parse_digits;

/// Limits the size of request bodies: 413 from `Content-Length` at once, or
/// while streaming (R5).
///
/// See the [crate docs](crate#body-limit) for the behaviour and its ordering trap.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct BodyLimitLayer {
    max_bytes: u64,
}

/// The service of [`BodyLimitLayer`].
#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    max_bytes: u64,
}

// === impl BodyLimitLayer ===

impl BodyLimitLayer {
    /// Allows request bodies of at most `max_bytes` bytes. There is no default:
    /// the right size depends on the route.
    pub fn new(max_bytes: u64) -> Self {
        Self { max_bytes }
    }

    /// The limit in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit::new(inner, self.max_bytes)
    }
}

// === impl BodyLimit ===

impl<S> BodyLimit<S> {
    /// Wraps `inner`, allowing request bodies of at most `max_bytes` bytes.
    pub fn new(inner: S, max_bytes: u64) -> Self {
        Self { inner, max_bytes }
    }

    /// A [`BodyLimitLayer`].
    pub fn layer(max_bytes: u64) -> BodyLimitLayer {
        BodyLimitLayer::new(max_bytes)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyLimit<S>
where
    S: Service<Request<Limited<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // An unparsable Content-Length is the framing guard's business; the
        // streaming count still holds.
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| parse_digits(v.as_bytes()));
        let lower = req.body().size_hint().lower();
        if declared.is_some_and(|n| n > self.max_bytes) || lower > self.max_bytes {
            tracing::debug!(cause = %Cause::BodyTooLarge, limit = self.max_bytes, "declared body over the limit");
            let res = ErrorResponse::for_request(Cause::BodyTooLarge, &req).build();
            return ResponseFuture::rejected(res);
        }
        let error = ErrorContext::of(&req);
        let tripped = Arc::new(AtomicBool::new(false));
        let max_bytes = self.max_bytes;
        let req = req.map(|body| Limited::new(body, max_bytes, Arc::clone(&tripped)));
        ResponseFuture::limited(self.inner.call(req), tripped, error)
    }
}

#[cfg(test)]
mod tests;
