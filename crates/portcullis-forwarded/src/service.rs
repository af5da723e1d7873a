//! [`Forwarded`]: the service.

use std::task::{Context, Poll};

use http::Request;
use tower_service::Service;

use crate::headers::set_forwarding_headers;
use crate::{ForwardedLayer, TrustedProxies};

/// Sets the forwarding headers of the request, then calls the inner service.
///
/// Made by [`ForwardedLayer`]; see the [crate docs](crate) for the exact rules.
#[derive(Debug, Clone)]
pub struct Forwarded<S> {
    inner: S,
    trusted: TrustedProxies,
    rfc7239: bool,
}

// === impl Forwarded ===

impl<S> Forwarded<S> {
    /// Wraps `inner`, trusting the forwarding headers of `trusted` proxies only, and
    /// without RFC 7239 `Forwarded` (use [`ForwardedLayer::rfc7239`] for it).
    pub fn new(inner: S, trusted: TrustedProxies) -> Self {
        Self::from_parts(inner, trusted, false)
    }

    pub(crate) fn from_parts(inner: S, trusted: TrustedProxies, rfc7239: bool) -> Self {
        Self {
            inner,
            trusted,
            rfc7239,
        }
    }

    /// A [`ForwardedLayer`], the same as [`ForwardedLayer::new`].
    pub fn layer(trusted: TrustedProxies) -> ForwardedLayer {
        ForwardedLayer::new(trusted)
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

impl<S, ReqBody> Service<Request<ReqBody>> for Forwarded<S>
where
    S: Service<Request<ReqBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Decided from the headers as received, before they are rewritten.
        if let Some(ip) = crate::client_ip(&req, &self.trusted) {
            req.extensions_mut().insert(portcullis_core::ClientAddr(ip));
        }
        set_forwarding_headers(&mut req, &self.trusted, self.rfc7239);
        self.inner.call(req)
    }
}
