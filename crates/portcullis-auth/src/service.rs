//! [`Auth`]: the service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::shared::{Decision, Outcome, Shared};
use crate::{AuthLayer, ResponseBody, ResponseFuture};

/// Authenticates each request before calling the inner service.
///
/// Made by [`AuthLayer`]; see the [crate docs](crate) for the exact behaviour.
/// The inner service must be `Clone`: HTTP Basic verifies passwords off the async
/// worker and calls the inner service (the clone made ready by `poll_ready`) only
/// afterwards.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    shared: Arc<Shared>,
}

// === impl Auth ===

impl<S> Auth<S> {
    /// Wraps `inner` with the authentication of `layer`.
    pub fn new(inner: S, layer: &AuthLayer) -> Self {
        Self {
            inner,
            shared: layer.shared(),
        }
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.shared.check(&mut req) {
            Outcome::Now(Decision::Allow(identity)) => {
                match self.shared.admit(&mut req, identity) {
                    Ok(()) => ResponseFuture::inner(self.inner.call(req)),
                    Err(reason) => {
                        ResponseFuture::rejected(self.shared.reject(&req, &Decision::Deny(reason)))
                    }
                }
            }
            Outcome::Now(decision) => ResponseFuture::rejected(self.shared.reject(&req, &decision)),
            Outcome::Later(check) => {
                // Take the service that poll_ready made ready; keep a fresh clone.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(check, req, inner, self.shared.clone())
            }
        }
    }
}
