use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use portcullis_core::ErrorBody;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::error::{BoxError, UpstreamTimedOut};

pin_project_lite::pin_project! {
    /// The body of a proxied response: the upstream's body streamed as it arrives,
    /// or the small body of an error the proxy made itself.
    ///
    /// When the upstream's body fails (the upstream died mid-body, or the whole
    /// request deadline passed), the error is passed on, so the server aborts the
    /// client's response instead of finishing it cleanly.
    #[project = ProxyBodyProj]
    #[derive(Debug)]
    pub struct ProxyBody {
        #[pin]
        kind: Kind,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind {
        Upstream {
            #[pin]
            body: Incoming,
            deadline: Option<Pin<Box<Sleep>>>,
            idle: Duration,
            // Created at the first wait only: a body that is ready at once costs
            // no timer.
            idle_timer: Option<Pin<Box<Sleep>>>,
            // The upstream's in-flight slot, held until the body is dropped.
            in_flight: Option<tokio::sync::OwnedSemaphorePermit>,
        },
        Error {
            #[pin]
            body: ErrorBody,
        },
    }
}

// === impl ProxyBody ===

impl ProxyBody {
    pub(crate) fn upstream(
        body: Incoming,
        deadline: Option<Pin<Box<Sleep>>>,
        idle: Duration,
        in_flight: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Self {
        Self {
            kind: Kind::Upstream {
                body,
                deadline,
                idle,
                idle_timer: None,
                in_flight,
            },
        }
    }

    pub(crate) fn error(body: ErrorBody) -> Self {
        Self {
            kind: Kind::Error { body },
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Upstream {
                body,
                deadline,
                idle,
                idle_timer,
                ..
            } => {
                if let Some(d) = deadline {
                    if d.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Err(Box::new(UpstreamTimedOut::new("request")))));
                    }
                }
                match body.poll_frame(cx) {
                    Poll::Ready(frame) => {
                        if let Some(t) = idle_timer {
                            t.as_mut().reset(Instant::now() + *idle);
                        }
                        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
                    }
                    Poll::Pending => {
                        let idle = *idle;
                        let t =
                            idle_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                        if t.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Some(Err(Box::new(UpstreamTimedOut::new(
                                "response body",
                            )))));
                        }
                        Poll::Pending
                    }
                }
            }
            KindProj::Error { body } => body.poll_frame(cx).map_err(|e| match e {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream { body, .. } => body.is_end_stream(),
            Kind::Error { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::Error { body } => body.size_hint(),
        }
    }
}
