//! [`ResponseBody`]: the inner body, or the gateway's own error body.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::ErrorBody;

pin_project! {
    /// The response body of [`RateLimit`](crate::RateLimit): the inner service's body, or
    /// the JSON body of a rejection.
    #[project = ResponseBodyProj]
    #[derive(Debug)]
    // pin-project-lite takes no doc comments on enum fields; the variants
    // document their `body`.
    #[allow(missing_docs)]
    pub enum ResponseBody<B> {
        /// The inner service's `body`, unchanged.
        Inner {
            #[pin]
            body: B,
        },
        /// The JSON `body` of a response the layer made itself (R6).
        Error {
            #[pin]
            body: ErrorBody,
        },
    }
}

// === impl ResponseBody ===

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self::Inner { body }
    }

    pub(crate) fn error(body: ErrorBody) -> Self {
        Self::Error { body }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project() {
            ResponseBodyProj::Inner { body } => body.poll_frame(cx),
            ResponseBodyProj::Error { body } => match ready!(body.poll_frame(cx)) {
                Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
                Some(Err(never)) => match never {},
                None => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Inner { body } => body.is_end_stream(),
            ResponseBody::Error { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Inner { body } => body.size_hint(),
            ResponseBody::Error { body } => body.size_hint(),
        }
    }
}
