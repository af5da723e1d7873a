//! [`HopByHopLayer`]: builds [`HopByHop`] services.

use tower_layer::Layer;

use crate::HopByHop;

/// Removes hop-by-hop headers from requests and responses.
///
/// See the [crate docs](crate) for the exact rules.
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct HopByHopLayer {
    _priv: (),
}

// === impl HopByHopLayer ===

impl HopByHopLayer {
    /// A layer that strips hop-by-hop headers in both directions. It has no knobs.
    pub fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for HopByHopLayer {
    type Service = HopByHop<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HopByHop::new(inner)
    }
}
