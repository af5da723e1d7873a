use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::{ErrorBody, MatchedRoute, ServiceName};
use tower_service::Service;

use crate::ResponseBody;

pin_project! {
    /// The response future of the [`Router`](crate::Router).
    ///
    /// For a matched request it owns a clone of the route's service and the
    /// request: it waits for the service to be ready, calls it, and copies
    /// [`MatchedRoute`] and [`ServiceName`] into the response extensions. For a
    /// rejected request it holds the gateway's error response. Dropping it drops
    /// the service clone, the request (if not yet sent) and the inner future.
    pub struct ResponseFuture<S, ReqBody, F> {
        #[pin]
        state: State<S, ReqBody, F>,
        route: Option<MatchedRoute>,
        service: Option<ServiceName>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, F> {
        NotReady {
            svc: S,
            req: Option<Request<ReqBody>>,
        },
        Called {
            #[pin]
            fut: F,
        },
        Rejected {
            res: Option<Response<ErrorBody>>,
        },
    }
}

// === impl ResponseFuture ===

impl<S, ReqBody, F> ResponseFuture<S, ReqBody, F> {
    pub(crate) fn routed(
        svc: S,
        req: Request<ReqBody>,
        route: MatchedRoute,
        service: Option<ServiceName>,
    ) -> Self {
        Self {
            state: State::NotReady {
                svc,
                req: Some(req),
            },
            route: Some(route),
            service,
        }
    }

    pub(crate) fn rejected(
        res: Response<ErrorBody>,
        route: Option<MatchedRoute>,
        service: Option<ServiceName>,
    ) -> Self {
        Self {
            state: State::Rejected { res: Some(res) },
            route,
            service,
        }
    }
}

impl<S, ReqBody, F> std::fmt::Debug for ResponseFuture<S, ReqBody, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::NotReady { .. } => "not_ready",
            State::Called { .. } => "called",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, S::Future>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::NotReady { svc, req } => {
                    ready!(svc.poll_ready(cx))?;
                    // `req` is `Some` until this branch moves to `Called`, which
                    // happens once: only a bug in this module could find it empty.
                    #[allow(clippy::expect_used, reason = "internal invariant")]
                    let req = req.take().expect("request is sent once, after readiness");
                    let fut = svc.call(req);
                    this.state.set(State::Called { fut });
                }
                StateProj::Called { fut } => {
                    let mut res = ready!(fut.poll(cx))?;
                    let ext = res.extensions_mut();
                    if let Some(route) = this.route.take() {
                        if ext.get::<MatchedRoute>().is_none() {
                            ext.insert(route);
                        }
                    }
                    if let Some(service) = this.service.take() {
                        if ext.get::<ServiceName>().is_none() {
                            ext.insert(service);
                        }
                    }
                    return Poll::Ready(Ok(res.map(ResponseBody::inner)));
                }
                StateProj::Rejected { res } => {
                    // Unreachable from any input: `res` is `Some` until this branch
                    // returns `Ready` once; only a caller polling a completed future
                    // finds it empty.
                    #[allow(clippy::expect_used, reason = "internal invariant")]
                    let mut res = res.take().expect("ResponseFuture polled after completion");
                    let ext = res.extensions_mut();
                    if let Some(route) = this.route.take() {
                        ext.insert(route);
                    }
                    if let Some(service) = this.service.take() {
                        ext.insert(service);
                    }
                    return Poll::Ready(Ok(res.map(ResponseBody::error)));
                }
            }
        }
    }
}
