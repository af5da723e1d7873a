//! [`MetricsLayer`] and [`InFlightLayer`]: build the services.

use std::sync::Arc;

use tower_layer::Layer;

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
    /// A metrics layer. It has no knobs: labels come from the response
    /// extensions and metrics go to the current `metrics` recorder.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared::new()),
        }
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
