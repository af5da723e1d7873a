//! [`ForwardedLayer`]: builds [`Forwarded`] services.

use tower_layer::Layer;

use crate::{Forwarded, TrustedProxies};

/// Sets `X-Forwarded-For`, `-Proto`, `-Host`, `-Port` and, optionally, RFC 7239
/// `Forwarded` on requests.
///
/// See the [crate docs](crate) for the exact rules.
#[derive(Debug, Clone)]
#[must_use]
pub struct ForwardedLayer {
    trusted: TrustedProxies,
    rfc7239: bool,
}

// === impl ForwardedLayer ===

impl ForwardedLayer {
    /// A layer that believes the forwarding headers of the `trusted` proxies only.
    ///
    /// Pass [`TrustedProxies::none()`] when clients connect directly.
    pub fn new(trusted: TrustedProxies) -> Self {
        Self {
            trusted,
            rfc7239: false,
        }
    }

    /// Also set the RFC 7239 `Forwarded` header. Default: false (a `Forwarded` header
    /// from an untrusted peer is still removed, and a trusted one's passes as sent).
    pub fn rfc7239(mut self, enabled: bool) -> Self {
        self.rfc7239 = enabled;
        self
    }
}

impl<S> Layer<S> for ForwardedLayer {
    type Service = Forwarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Forwarded::from_parts(inner, self.trusted.clone(), self.rfc7239)
    }
}
