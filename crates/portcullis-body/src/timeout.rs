//! [`BodyTimeoutLayer`]: 408 `client_timeout` for a client that sends its request
//! body too slowly (R5: slow POST).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::{Cause, ErrorContext, ServiceName};
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use crate::ResponseBody;

/// Bounds how slowly a client may send its request body: at most `idle` between
/// two pieces of it, and, once `grace` has passed since the body started, at
/// least `min_rate` bytes per second on average. A body that breaks either fails
/// with [`BodyTimedOut`] and the request is answered 408 `client_timeout` with
/// `Connection: close` (whatever the inner service made of the failed body).
///
/// The clock starts when the inner service first reads the body, so time spent
/// waiting for an upstream connection is not the client's.
///
/// ```
/// use std::time::Duration;
/// use axum::{body::{Body, Bytes}, http::Request, routing::post, Router};
/// use portcullis_body::BodyTimeoutLayer;
/// use tower::ServiceExt;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Router::new()
///     .route("/upload", post(|body: Bytes| async move { format!("got {}", body.len()) }))
///     .layer(BodyTimeoutLayer::new(Duration::from_secs(60)));
/// let req = Request::post("/upload").body(Body::from("hello"))?;
/// assert_eq!(app.oneshot(req).await?.status(), 200);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct BodyTimeoutLayer {
    limits: Limits,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    idle: Duration,
    min_rate: u64,
    grace: Duration,
}

/// The service of [`BodyTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct BodyTimeout<S> {
    inner: S,
    limits: Limits,
}

/// The error of a request body its client sent too slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client sent its request body too slowly")
    }
}

impl std::error::Error for BodyTimedOut {}

impl BodyTimeoutLayer {
    /// At most `idle` between two pieces of a request body; no minimum rate.
    pub fn new(idle: Duration) -> Self {
        Self {
            limits: Limits {
                idle,
                min_rate: 0,
                grace: Duration::ZERO,
            },
        }
    }

    /// Also at least `bytes_per_sec` on average once `grace` has passed since the
    /// body started (0 turns it off).
    pub fn min_rate(mut self, bytes_per_sec: u64, grace: Duration) -> Self {
        self.limits.min_rate = bytes_per_sec;
        self.limits.grace = grace;
        self
    }
}

impl<S> Layer<S> for BodyTimeoutLayer {
    type Service = BodyTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyTimeout {
            inner,
            limits: self.limits,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyTimeout<S>
where
    S: Service<Request<TimedBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = BodyTimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // A request without a body (most GETs) costs nothing here: no tripwire,
        // no error context, no timer.
        let (tripped, error) = if req.body().is_end_stream() {
            (None, None)
        } else {
            (
                Some(Arc::new(AtomicBool::new(false))),
                Some(ErrorContext::of(&req)),
            )
        };
        let limits = self.limits;
        let wire = tripped.clone();
        let req = req.map(|body| TimedBody {
            inner: body,
            limits,
            started: None,
            received: 0,
            deadline: None,
            sleep: None,
            tripped: wire,
        });
        BodyTimeoutFuture {
            inner: self.inner.call(req),
            tripped,
            error,
        }
    }
}

pin_project! {
    /// The future of [`BodyTimeout`].
    #[derive(Debug)]
    pub struct BodyTimeoutFuture<F> {
        #[pin]
        inner: F,
        tripped: Option<Arc<AtomicBool>>,
        error: Option<ErrorContext>,
    }
}

impl<F, B, E> Future for BodyTimeoutFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if this
            .tripped
            .as_ref()
            .is_some_and(|t| t.load(Ordering::Acquire))
        {
            if let Some(error) = this.error.take() {
                // The inner service saw the body fail: its answer, Ok or Err, is
                // about a truncated request. A router inside named the service.
                let service = result
                    .as_ref()
                    .ok()
                    .and_then(|r| r.extensions().get::<ServiceName>())
                    .map(|s| s.0.to_string());
                drop(result);
                tracing::debug!(cause = "client_timeout", "request body too slow");
                let mut e = error.error(Cause::ClientTimeout);
                if let Some(service) = service {
                    e = e.service(service);
                }
                let mut res = e.build();
                res.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                return Poll::Ready(Ok(res.map(ResponseBody::error)));
            }
        }
        Poll::Ready(result.map(|res| res.map(ResponseBody::inner)))
    }
}

pin_project! {
    /// A request body bounded in time by [`BodyTimeoutLayer`].
    #[derive(Debug)]
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        limits: Limits,
        started: Option<Instant>,
        received: u64,
        // When the next piece must have come.
        deadline: Option<Instant>,
        // Only once the body had to be waited for.
        sleep: Option<Pin<Box<Sleep>>>,
        // None: the body was empty from the start, nothing to time.
        tripped: Option<Arc<AtomicBool>>,
    }
}

impl<B> TimedBody<B> {
    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(tripped) = this.tripped.as_ref() else {
            return this
                .inner
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(Into::into)));
        };
        let now = Instant::now();
        let started = *this.started.get_or_insert(now);
        let idle = this.limits.idle;
        let deadline = *this.deadline.get_or_insert(now + idle);
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.remaining() as u64;
                }
                let elapsed = now.saturating_duration_since(started);
                let min = this.limits.min_rate;
                if min > 0
                    && elapsed > this.limits.grace
                    && u128::from(*this.received) * 1000 < u128::from(min) * elapsed.as_millis()
                {
                    tripped.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
                }
                *this.deadline = Some(now + idle);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    tripped.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
