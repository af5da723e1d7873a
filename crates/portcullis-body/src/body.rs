use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::ErrorBody;

use crate::error::{BoxError, LengthLimitError};

pin_project! {
    /// The response body of this crate's services: the inner service's body, or
    /// the gateway's own error body.
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
        /// The JSON `body` of a response the gateway made itself (R6).
        Error {
            #[pin]
            body: ErrorBody,
        },
    }
}

pin_project! {
    /// A request body that fails once more than the limit has been read.
    ///
    /// Made by [`BodyLimit`](crate::BodyLimit). The data frame that would cross
    /// the limit is never passed on: the body yields a [`LengthLimitError`]
    /// (boxed) instead and ends.
    #[derive(Debug)]
    pub struct Limited<B> {
        #[pin]
        inner: B,
        limit: u64,
        remaining: u64,
        tripped: Arc<AtomicBool>,
        failed: bool,
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
            Self::Inner { body } => body.is_end_stream(),
            Self::Error { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Inner { body } => body.size_hint(),
            Self::Error { body } => body.size_hint(),
        }
    }
}

// === impl Limited ===

impl<B> Limited<B> {
    pub(crate) fn new(inner: B, limit: u64, tripped: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            limit,
            remaining: limit,
            tripped,
            failed: false,
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl<B> Body for Limited<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        let frame = match ready!(this.inner.poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let len = u64::try_from(data.remaining()).unwrap_or(u64::MAX);
            match this.remaining.checked_sub(len) {
                Some(left) => *this.remaining = left,
                None => {
                    *this.failed = true;
                    // Release: the response future that sees the flag must also
                    // see everything the service did before reading this frame.
                    this.tripped.store(true, Ordering::Release);
                    tracing::debug!(limit = *this.limit, "request body over the limit");
                    return Poll::Ready(Some(Err(LengthLimitError::new(*this.limit).into())));
                }
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn limited_passes_a_body_at_the_limit() {
        let flag = Arc::new(AtomicBool::new(false));
        let body = Limited::new(Full::new(Bytes::from_static(b"12345")), 5, flag.clone());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"12345");
        assert!(!flag.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn limited_fails_past_the_limit_and_withholds_the_chunk() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut body = Limited::new(Full::new(Bytes::from_static(b"123456")), 5, flag.clone());
        let err = body.frame().await.unwrap().unwrap_err();
        let err = err.downcast_ref::<LengthLimitError>().unwrap();
        assert_eq!(err.limit(), 5);
        assert_eq!(
            err.to_string(),
            "request body is larger than the limit of 5 bytes"
        );
        assert!(flag.load(Ordering::Acquire));
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }
}
