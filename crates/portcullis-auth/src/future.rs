//! [`ResponseFuture`]: waits for a password verification when there is one, then
//! runs the inner service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::ErrorBody;
use tokio::task::JoinHandle;
use tower_service::Service;

use crate::ResponseBody;
use crate::shared::{Decision, Shared};

pin_project! {
    /// Response future of [`Auth`](crate::Auth).
    ///
    /// Either the inner service's future, a ready rejection, or (HTTP Basic on a
    /// cache miss) a password verification followed by the inner call. Dropping it
    /// while a verification runs lets the verification finish in the background
    /// (its result still fills the cache) and never calls the inner service.
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
        },
        Rejected {
            res: Option<Response<ErrorBody>>,
        },
        Checking {
            check: JoinHandle<Decision>,
            // The request and the inner service made ready for it.
            pending: Option<(Request<ReqBody>, S)>,
            shared: Arc<Shared>,
        },
    }
}

// === impl ResponseFuture ===

impl<F, S, ReqBody> ResponseFuture<F, S, ReqBody> {
    pub(crate) fn inner(fut: F) -> Self {
        Self {
            state: State::Inner { fut },
        }
    }

    pub(crate) fn rejected(res: Response<ErrorBody>) -> Self {
        Self {
            state: State::Rejected { res: Some(res) },
        }
    }

    pub(crate) fn checking(
        check: JoinHandle<Decision>,
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

    // The two `expect`s below are unreachable from any client or upstream input:
    // `res` and `pending` are `Some` until their branch completes once, so only a
    // caller polling a completed future (a bug in the caller) finds them empty.
    #[allow(clippy::expect_used)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { fut } => {
                    let res = ready!(fut.poll(cx))?;
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
                    // A panicked or cancelled verification is the gateway's fault: 503.
                    let decision =
                        ready!(Pin::new(check).poll(cx)).unwrap_or(Decision::Unavailable);
                    let (mut req, mut inner) = pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let next = match decision {
                        Decision::Allow(identity) => match shared.admit(&mut req, identity) {
                            Ok(()) => State::Inner {
                                fut: inner.call(req),
                            },
                            Err(reason) => State::Rejected {
                                res: Some(shared.reject(&req, &Decision::Deny(reason))),
                            },
                        },
                        other => State::Rejected {
                            res: Some(shared.reject(&req, &other)),
                        },
                    };
                    this.state.set(next);
                }
            }
        }
    }
}
