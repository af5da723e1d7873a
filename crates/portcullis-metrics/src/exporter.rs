//! [`Exporter`]: the Prometheus recorder, its buckets and its text rendering.

use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::task::JoinHandle;

/// Bucket upper bounds, in seconds, of every `_seconds` histogram.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Renders the metrics of a Prometheus recorder as text.
///
/// Made by [`Exporter::install`] (the global recorder) or [`Exporter::build_local`] (a
/// recorder of your own). Cloning it is cheap and renders the same recorder.
#[cfg_attr(docsrs, doc(cfg(feature = "exporter")))]
#[derive(Debug, Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
}

/// A Prometheus recorder not installed globally, made by [`Exporter::build_local`].
///
/// Use it with `metrics::with_local_recorder`,
/// `metrics::set_default_local_recorder`, or install it yourself with
/// `metrics::set_global_recorder`.
#[cfg_attr(docsrs, doc(cfg(feature = "exporter")))]
#[derive(Debug)]
pub struct ExporterRecorder {
    inner: PrometheusRecorder,
}

/// The Prometheus recorder could not be built or installed.
///
/// The usual reason: another global recorder is installed already.
#[cfg_attr(docsrs, doc(cfg(feature = "exporter")))]
#[derive(Debug, thiserror::Error)]
#[error("building the prometheus recorder")]
pub struct ExporterError {
    #[source]
    source: BuildError,
}

// === impl Exporter ===

impl Exporter {
    /// A good upkeep period for [`Exporter::spawn_upkeep`]: 5s.
    pub const DEFAULT_UPKEEP: Duration = Duration::from_secs(5);

    /// Builds a Prometheus recorder with [`SECONDS_BUCKETS`] for every metric
    /// whose name ends in `_seconds`, installs it as the global recorder, and
    /// registers the help texts ([`describe`](crate::describe)).
    ///
    /// Call [`Exporter::spawn_upkeep`] too, or histograms grow between scrapes.
    ///
    /// # Errors
    ///
    /// When a global recorder is installed already.
    pub fn install() -> Result<Exporter, ExporterError> {
        let handle = builder()?
            .install_recorder()
            .map_err(|source| ExporterError { source })?;
        crate::describe();
        Ok(Exporter { handle })
    }

    /// Like [`Exporter::install`], without installing the recorder anywhere: for
    /// tests that run in parallel, or to combine recorders. The help texts are
    /// registered with the returned recorder.
    ///
    /// # Errors
    ///
    /// Never with the built-in buckets; the `Result` keeps the signature of
    /// [`Exporter::install`].
    pub fn build_local() -> Result<(Exporter, ExporterRecorder), ExporterError> {
        let inner = builder()?.build_recorder();
        ::metrics::with_local_recorder(&inner, crate::describe);
        let exporter = Exporter {
            handle: inner.handle(),
        };
        Ok((exporter, ExporterRecorder { inner }))
    }

    /// The metrics in the Prometheus text format, version 0.0.4
    /// (`text/plain; version=0.0.4`).
    ///
    /// Rendering also drains the samples recorded since the last upkeep into the
    /// histograms.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Moves recorded histogram samples into their buckets.
    ///
    /// Samples are kept in memory until this or [`Exporter::render`] runs, so
    /// something must run it periodically: see [`Exporter::spawn_upkeep`].
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Spawns a task that runs [`Exporter::run_upkeep`] every `every` (a zero
    /// period is taken as 1ms), until the task is aborted.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like `tokio::spawn`.
    pub fn spawn_upkeep(&self, every: Duration) -> JoinHandle<()> {
        let handle = self.handle.clone();
        let every = every.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick completes at once; skip it.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                handle.run_upkeep();
            }
        })
    }
}

fn builder() -> Result<PrometheusBuilder, ExporterError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
        .map_err(|source| ExporterError { source })
}

// === impl ExporterRecorder ===

impl Recorder for ExporterRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.inner.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.inner.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.inner.register_histogram(key, metadata)
    }
}
