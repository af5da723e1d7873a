use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use portcullis_core::ErrorBody;
use tokio::time::Sleep;

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
        },
        Error {
            #[pin]
            body: ErrorBody,
        },
    }
}

// === impl ProxyBody ===

impl ProxyBody {
    pub(crate) fn upstream(body: Incoming, deadline: Option<Pin<Box<Sleep>>>) -> Self {
        Self {
            kind: Kind::Upstream { body, deadline },
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
            KindProj::Upstream { body, deadline } => {
                if let Some(d) = deadline {
                    if d.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Err(Box::new(UpstreamTimedOut::new("request")))));
                    }
                }
                body.poll_frame(cx).map_err(Into::into)
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
