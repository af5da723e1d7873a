//! [`RateLimit`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::future::{Next, ResponseFuture, dispatch};
use crate::shared::Shared;
use crate::{ConfigError, LimitConfig, RateLimitConfig, RateLimitLayer, ResponseBody};

/// Middleware that enforces GCRA rate limits: see the [crate docs](crate).
///
/// Build it with [`RateLimitLayer`]; clones share the limits' state.
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

// === impl RateLimit ===

impl<S> RateLimit<S> {
    /// Wraps `inner` with one local limit; see [`RateLimitLayer::new`].
    ///
    /// # Errors
    ///
    /// The first mistake in `limit`, as [`RateLimitConfig::validate`] finds them.
    pub fn new(inner: S, limit: LimitConfig) -> Result<Self, ConfigError> {
        Ok(RateLimitLayer::new(limit)?.wrap(inner))
    }

    /// Wraps `inner` with the limits of `config`; see [`RateLimitLayer::from_config`].
    ///
    /// # Errors
    ///
    /// The first mistake in `config`, as [`RateLimitConfig::validate`] finds them.
    pub fn from_config(inner: S, config: &RateLimitConfig) -> Result<Self, ConfigError> {
        Ok(RateLimitLayer::from_config(config)?.wrap(inner))
    }

    /// A layer with one local limit; see [`RateLimitLayer::new`].
    ///
    /// # Errors
    ///
    /// The first mistake in `limit`.
    pub fn layer(limit: LimitConfig) -> Result<RateLimitLayer, ConfigError> {
        RateLimitLayer::new(limit)
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// Forgets idle keys now; see [`RateLimitLayer::sweep`].
    pub fn sweep(&self) {
        self.shared.sweep();
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limits", &crate::layer::LimitNames(&self.shared))
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        if !shared.has_limits() {
            return ResponseFuture::next(Next::Call(self.inner.call(req), None));
        }
        shared.maybe_sweep();
        #[cfg(feature = "redis")]
        if let Some(redis) = &shared.redis {
            let check = redis.check(Arc::clone(shared), &req);
            // The decision is async: keep the service that was made ready for this
            // request, and leave a fresh clone in its place.
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::checking(check, req, inner, Arc::clone(shared));
        }
        let verdict = shared.decide_local(&shared.key_input(&req), false);
        ResponseFuture::next(dispatch(shared, verdict, req, &mut self.inner))
    }
}
