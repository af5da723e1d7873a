//! [`ServerTimingLayer`]: the gateway's and the upstream's share of each response's
//! time, in a `Server-Timing` header (R6: "is the proxy or the service slow?").

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::HeaderName;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::UpstreamDuration;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// `Server-Timing` (W3C Server Timing).
pub static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Adds `Server-Timing: gateway;dur=<ms>, upstream;dur=<ms>` to every response:
/// `upstream` is the time from sending the request upstream to its response head
/// (the [`UpstreamDuration`] a proxy put in the response extensions; absent when
/// the gateway answered itself), `gateway` the rest of the time from receiving the
/// request to the response head. Appended after any `Server-Timing` the upstream
/// sent.
///
/// ```
/// use std::time::Duration;
/// use http::{Request, Response};
/// use portcullis_core::UpstreamDuration;
/// use portcullis_metrics::ServerTimingLayer;
/// use tower::{service_fn, Layer, ServiceExt};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let svc = ServerTimingLayer::new().layer(service_fn(|_req: Request<()>| async {
///     let mut res = Response::new(());
///     res.extensions_mut().insert(UpstreamDuration(Duration::from_millis(12)));
///     Ok::<_, std::convert::Infallible>(res)
/// }));
/// let res = svc.oneshot(Request::new(())).await?;
/// let timing = res.headers()["server-timing"].to_str()?;
/// assert!(timing.starts_with("gateway;dur="), "{timing}");
/// assert!(timing.ends_with(", upstream;dur=12.000"), "{timing}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct ServerTimingLayer {
    enabled: bool,
}

impl Default for ServerTimingLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerTimingLayer {
    /// The layer.
    pub fn new() -> Self {
        Self { enabled: true }
    }

    /// A layer that adds nothing (the header turned off by configuration).
    pub fn disabled() -> Self {
        Self { enabled: false }
    }
}

impl<S> Layer<S> for ServerTimingLayer {
    type Service = ServerTiming<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTiming {
            inner,
            enabled: self.enabled,
        }
    }
}

/// The service of [`ServerTimingLayer`].
#[derive(Debug, Clone)]
pub struct ServerTiming<S> {
    inner: S,
    enabled: bool,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ServerTiming<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ServerTimingFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        ServerTimingFuture {
            inner: self.inner.call(req),
            start: self.enabled.then(Instant::now),
        }
    }
}

pin_project! {
    /// The future of [`ServerTiming`].
    #[derive(Debug)]
    pub struct ServerTimingFuture<F> {
        #[pin]
        inner: F,
        start: Option<Instant>,
    }
}

impl<F, B, E> Future for ServerTimingFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        let Some(start) = this.start else {
            return Poll::Ready(Ok(res));
        };
        let total = start.elapsed();
        let upstream = res.extensions().get::<UpstreamDuration>().map(|u| u.0);
        let gateway = total.saturating_sub(upstream.unwrap_or_default());
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let value = match upstream {
            Some(u) => format!("gateway;dur={:.3}, upstream;dur={:.3}", ms(gateway), ms(u)),
            None => format!("gateway;dur={:.3}", ms(gateway)),
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().append(SERVER_TIMING.clone(), v);
        }
        Poll::Ready(Ok(res))
    }
}
