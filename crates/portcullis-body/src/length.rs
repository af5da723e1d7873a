use std::task::{Context, Poll};

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Request, Response};
use http_body::Body;
use portcullis_core::{Cause, ErrorResponse};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::future::ResponseFuture;

/// Answers 411 Length Required to a request whose body length is not declared.
///
/// See the [crate docs](crate#length-required) for the exact rule.
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct LengthRequiredLayer {
    _priv: (),
}

/// The service of [`LengthRequiredLayer`].
#[derive(Debug, Clone)]
pub struct LengthRequired<S> {
    inner: S,
}

// === impl LengthRequiredLayer ===

impl LengthRequiredLayer {
    /// The layer. It has no knobs.
    pub fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for LengthRequiredLayer {
    type Service = LengthRequired<S>;

    fn layer(&self, inner: S) -> LengthRequired<S> {
        LengthRequired::new(inner)
    }
}

// === impl LengthRequired ===

impl<S> LengthRequired<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// A [`LengthRequiredLayer`].
    pub fn layer() -> LengthRequiredLayer {
        LengthRequiredLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for LengthRequired<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if length_is_known(&req) {
            ResponseFuture::inner(self.inner.call(req))
        } else {
            tracing::debug!(cause = %Cause::LengthRequired, "request body without a length");
            let res = ErrorResponse::for_request(Cause::LengthRequired, &req).build();
            ResponseFuture::rejected(res)
        }
    }
}

fn length_is_known<B: Body>(req: &Request<B>) -> bool {
    if req.headers().contains_key(TRANSFER_ENCODING) {
        return false;
    }
    if req.headers().contains_key(CONTENT_LENGTH) {
        return true;
    }
    // hyper drops `Transfer-Encoding` from nothing, but the hop-by-hop layer
    // does: the body itself tells whether it is chunked. A body of known exact
    // size is sent upstream with a Content-Length by hyper.
    let body = req.body();
    body.is_end_stream() || body.size_hint().exact().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body::{Frame, SizeHint};
    use http_body_util::{BodyExt, Empty, Full};
    use portcullis_core::PORTCULLIS_ERROR;
    use std::convert::Infallible;
    use std::pin::Pin;
    use tower::{ServiceExt, service_fn};

    /// A body of unknown length, like a chunked one.
    struct Unsized(Option<Bytes>);

    impl Body for Unsized {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
        }
        fn size_hint(&self) -> SizeHint {
            SizeHint::new()
        }
    }

    async fn status<B: Body + Send + 'static>(req: Request<B>) -> (u16, Option<String>) {
        let inner = service_fn(|_req: Request<B>| async {
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        });
        let res = LengthRequired::new(inner).oneshot(req).await.unwrap();
        let cause = res
            .headers()
            .get(PORTCULLIS_ERROR)
            .map(|v| v.to_str().unwrap().to_owned());
        if res.status() == 411 {
            assert_eq!(
                res.extensions().get::<Cause>(),
                Some(&Cause::LengthRequired)
            );
            assert!(res.headers().get(http::header::CONNECTION).is_none());
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(
                &body[..],
                br#"{"error":"length_required","status":411,"request_id":null,"service":null}"#
            );
            return (411, cause);
        }
        (res.status().as_u16(), cause)
    }

    #[tokio::test]
    async fn passes_known_lengths() {
        let get = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
        assert_eq!(status(get).await, (200, None));
        let with_cl = Request::post("/")
            .header(CONTENT_LENGTH, "2")
            .body(Unsized(Some(Bytes::from_static(b"hi"))))
            .unwrap();
        assert_eq!(status(with_cl).await, (200, None));
        let exact = Request::post("/")
            .body(Full::new(Bytes::from_static(b"hi")))
            .unwrap();
        assert_eq!(status(exact).await, (200, None));
        let ended = Request::post("/").body(Unsized(None)).unwrap();
        // `Unsized(None)` does not claim to be at its end: unknown, refused.
        assert_eq!(status(ended).await.0, 411);
    }

    #[tokio::test]
    async fn refuses_chunked_and_unknown_lengths() {
        let te = Request::post("/")
            .header(TRANSFER_ENCODING, "chunked")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(status(te).await, (411, Some("length_required".to_owned())));
        let unknown = Request::post("/")
            .body(Unsized(Some(Bytes::from_static(b"hi"))))
            .unwrap();
        assert_eq!(
            status(unknown).await,
            (411, Some("length_required".to_owned()))
        );
    }
}
