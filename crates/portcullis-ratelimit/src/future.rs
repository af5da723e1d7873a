//! [`ResponseFuture`]: runs the inner service and adds the `RateLimit` headers, or
//! answers a rejection; with Redis, first waits for the decision.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::HeaderName;
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::{Cause, ErrorBody, ErrorResponse};
use tower_service::Service;

use crate::ResponseBody;
use crate::metrics::{self, Decision};
use crate::shared::{Headers, Outcome, Shared, Verdict, route_of};

/// The `RateLimit-Policy` header.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` header.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A pending store decision (Redis).
pub(crate) type CheckFuture = Pin<Box<dyn Future<Output = Verdict> + Send>>;

pin_project! {
    /// Response future of [`RateLimit`](crate::RateLimit).
    ///
    /// Either the inner service's future (whose response gets the `RateLimit`
    /// headers), a ready rejection, or (Redis store) the decision followed by the
    /// inner call. Dropping it while the decision runs cancels it: the request may
    /// or may not have been counted, and the inner service is not called.
    pub struct ResponseFuture<F, S, ReqBody> {
        #[pin]
        state: State<F, S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, ReqBody> {
        Inner {
            #[pin]
            fut: F,
            headers: Option<Headers>,
        },
        Rejected {
            res: Option<Response<ErrorBody>>,
        },
        #[cfg_attr(not(feature = "redis"), allow(dead_code))]
        Checking {
            check: CheckFuture,
            // The request and the inner service made ready for it.
            pending: Option<(Request<ReqBody>, S)>,
            shared: Arc<Shared>,
        },
    }
}

/// What to do with a decided request.
pub(crate) enum Next<F> {
    Call(F, Option<Headers>),
    Reject(Response<ErrorBody>),
}

/// Counts the decision, then calls `inner` or builds the rejection.
pub(crate) fn dispatch<S, ReqBody, ResBody>(
    shared: &Shared,
    verdict: Verdict,
    req: Request<ReqBody>,
    inner: &mut S,
) -> Next<S::Future>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    let route = route_of(&req);
    let headers = shared.headers(verdict.state);
    match verdict.outcome {
        Outcome::Allowed { fallback } => {
            let decision = if fallback {
                Decision::Fallback
            } else {
                Decision::Allowed
            };
            metrics::decision(route.as_ref(), decision);
            Next::Call(inner.call(req), headers)
        }
        Outcome::Limited { retry_after } => {
            metrics::decision(route.as_ref(), Decision::Limited);
            tracing::debug!(retry_after, "rate limited");
            let mut res = ErrorResponse::for_request(Cause::RateLimited, &req)
                .retry_after(retry_after)
                .build();
            add_headers(res.headers_mut(), headers);
            Next::Reject(res)
        }
        Outcome::Unavailable => {
            metrics::decision(route.as_ref(), Decision::Unavailable);
            let mut res = ErrorResponse::for_request(Cause::RateLimitUnavailable, &req)
                .retry_after(1)
                .build();
            add_headers(res.headers_mut(), headers);
            Next::Reject(res)
        }
    }
}

/// Appends the headers, after any the upstream sent for its own limits.
pub(crate) fn add_headers(map: &mut HeaderMap, headers: Option<Headers>) {
    if let Some(headers) = headers {
        map.append(RATELIMIT_POLICY, headers.policy);
        if let Some(state) = headers.state {
            map.append(RATELIMIT, state);
        }
    }
}

// === impl ResponseFuture ===

impl<F, S, ReqBody> ResponseFuture<F, S, ReqBody> {
    pub(crate) fn next(next: Next<F>) -> Self {
        let state = match next {
            Next::Call(fut, headers) => State::Inner { fut, headers },
            Next::Reject(res) => State::Rejected { res: Some(res) },
        };
        Self { state }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn checking(
        check: CheckFuture,
        req: Request<ReqBody>,
        inner: S,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            state: State::Checking {
                check,
                pending: Some((req, inner)),
                shared,
            },
        }
    }
}

impl<F, S, ReqBody> fmt::Debug for ResponseFuture<F, S, ReqBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "inner",
            State::Rejected { .. } => "rejected",
            State::Checking { .. } => "checking",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, S, ReqBody, ResBody, E> Future for ResponseFuture<F, S, ReqBody>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = E, Future = F>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    // The `expect`s below are unreachable from any client or upstream input: `res`
    // and `pending` are `Some` until their branch completes once, so only a caller
    // polling a completed future (a bug in the caller) finds them empty.
    #[allow(clippy::expect_used)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { fut, headers } => {
                    let mut res = ready!(fut.poll(cx))?;
                    add_headers(res.headers_mut(), headers.take());
                    return Poll::Ready(Ok(res.map(ResponseBody::inner)));
                }
                StateProj::Rejected { res } => {
                    let res = res.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(res.map(ResponseBody::error)));
                }
                StateProj::Checking {
                    check,
                    pending,
                    shared,
                } => {
                    let verdict = ready!(check.as_mut().poll(cx));
                    let (req, mut inner) = pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let next = dispatch(shared, verdict, req, &mut inner);
                    this.state.set(match next {
                        Next::Call(fut, headers) => State::Inner { fut, headers },
                        Next::Reject(res) => State::Rejected { res: Some(res) },
                    });
                }
            }
        }
    }
}
