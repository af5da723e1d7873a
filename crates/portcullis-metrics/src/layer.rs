//! [`MetricsLayer`] and [`InFlightLayer`]: build the services.

use std::sync::Arc;

use tower_layer::Layer;

use crate::cache::DEFAULT_CACHE_CAPACITY;
use crate::record::{InFlightShared, Shared};
use crate::{InFlight, Metrics};

/// Counts requests and measures their duration, by service, route template,
/// method and status class.
///
/// A global layer: put it outside the router. See the [crate docs](crate) for
/// what it records and when.
#[derive(Debug, Clone)]
#[must_use]
pub struct MetricsLayer {
    shared: Arc<Shared>,
}

/// Keeps the gauge of requests in flight, by service.
///
/// A route layer: put it inside the router, where the request carries its
/// [`ServiceName`](portcullis_core::ServiceName). See the [crate docs](crate).
#[derive(Debug, Clone)]
#[must_use]
pub struct InFlightLayer {
    shared: Arc<InFlightShared>,
}

// === impl MetricsLayer ===

impl MetricsLayer {
    /// A metrics layer. Labels come from the response extensions and metrics go
    /// to the current `metrics` recorder.
    pub fn new() -> Self {
        Self::with_cache_capacity(DEFAULT_CACHE_CAPACITY)
    }

    /// How many label sets (service, route, method, status class) the layer
    /// keeps metric handles for; default 16,384.
    ///
    /// Size it to the configuration: services × routes × 10 methods × 6 status
    /// classes, at most. A label set past it evicts a sixteenth of the cached
    /// ones to make room, and re-registers its handles with the recorder when
    /// seen again: still counted, only slower. `0` is taken as `1`.
    ///
    /// The layer starts with an empty cache: call this before
    /// [`layer`](Layer::layer)ing any service.
    pub fn cache_capacity(self, capacity: usize) -> Self {
        Self::with_cache_capacity(capacity)
    }

    fn with_cache_capacity(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared::new(capacity)),
        }
    }

    /// The state this layer's services share.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl Default for MetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics::from_shared(inner, Arc::clone(&self.shared))
    }
}

// === impl InFlightLayer ===

impl InFlightLayer {
    /// An in-flight layer. It has no knobs.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(InFlightShared::new()),
        }
    }
}

impl Default for InFlightLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for InFlightLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlight::from_shared(inner, Arc::clone(&self.shared))
    }
}
