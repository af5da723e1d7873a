use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use portcullis_core::{Cause, ErrorBody, ErrorContext};

use crate::body::ResponseBody;

pin_project! {
    /// Response future of [`FramingGuard`](crate::FramingGuard),
    /// [`LengthRequired`](crate::LengthRequired) and [`BodyLimit`](crate::BodyLimit).
    ///
    /// Either the inner service's future or a rejection ready at once. For
    /// `BodyLimit` it replaces the inner result with 413 when the request body
    /// went over the limit before the result came. Dropping it drops the inner
    /// future.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Inner {
            #[pin]
            fut: F,
            tripwire: Option<Tripwire>,
        },
        Rejected {
            res: Option<Response<ErrorBody>>,
        },
    }
}

/// Set by a [`Limited`](crate::Limited) body past its limit; holds the 413 to answer.
#[derive(Debug)]
pub(crate) struct Tripwire {
    tripped: Arc<AtomicBool>,
    error: ErrorContext,
}

// === impl ResponseFuture ===

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(fut: F) -> Self {
        Self {
            state: State::Inner {
                fut,
                tripwire: None,
            },
        }
    }

    pub(crate) fn limited(fut: F, tripped: Arc<AtomicBool>, error: ErrorContext) -> Self {
        Self {
            state: State::Inner {
                fut,
                tripwire: Some(Tripwire { tripped, error }),
            },
        }
    }

    pub(crate) fn rejected(res: Response<ErrorBody>) -> Self {
        Self {
            state: State::Rejected { res: Some(res) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut, tripwire } => {
                let result = ready!(fut.poll(cx));
                if let Some(wire) = tripwire.take() {
                    if wire.tripped.load(Ordering::Acquire) {
                        // The inner service saw the body fail (or gave up on it):
                        // its answer, Ok or Err, is about a truncated request.
                        drop(result);
                        tracing::debug!(cause = "body_too_large", "replaced inner response");
                        return Poll::Ready(Ok(wire
                            .error
                            .error(Cause::BodyTooLarge)
                            .build()
                            .map(ResponseBody::error)));
                    }
                }
                Poll::Ready(result.map(|res| res.map(ResponseBody::inner)))
            }
            StateProj::Rejected { res } => {
                // Unreachable from any input: `res` is `Some` until this branch
                // returns `Ready` once; only a caller polling a completed future
                // (a bug in the caller, not something a client or upstream can
                // cause) finds it empty.
                #[allow(clippy::expect_used, reason = "internal invariant")]
                let res = res.take().expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(res.map(ResponseBody::error)))
            }
        }
    }
}
