//! [`ResponseFuture`]: the response future of [`AccessLog`](crate::AccessLog).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use http::header::SET_COOKIE;
use http_body::Body;
use pin_project_lite::pin_project;

use crate::ResponseBody;
use crate::body::Pending;
use crate::record::{Outcome, RequestInfo, ResponseInfo, emit};

pin_project! {
    /// The response future of [`AccessLog`](crate::AccessLog).
    ///
    /// When the inner service fails, it writes the line (`status = 0`, `error`).
    /// Dropping it before the response head arrives (the client went away) writes
    /// the line with `status = 0` and `aborted = true`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        log: Option<Arc<RequestInfo>>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(req) = this.project().log.take() {
                emit(&req, None, 0, Outcome::Cancelled);
            }
        }
    }
}

// === impl ResponseFuture ===

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, log: Option<Arc<RequestInfo>>) -> Self {
        Self { inner, log }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    E: fmt::Display,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let log = this.log.take();
        match result {
            Ok(mut res) => {
                if res.headers().contains_key(SET_COOKIE) {
                    for (name, value) in res.headers_mut().iter_mut() {
                        if name == SET_COOKIE {
                            value.set_sensitive(true);
                        }
                    }
                }
                let pending = log.map(|req| {
                    let info = ResponseInfo::capture(&req, &res);
                    Pending::new(req, info, res.body().is_end_stream())
                });
                Poll::Ready(Ok(res.map(|body| ResponseBody::new(body, pending))))
            }
            Err(e) => {
                if let Some(req) = log {
                    emit(&req, None, 0, Outcome::ServiceError(&e));
                }
                Poll::Ready(Err(e))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}
