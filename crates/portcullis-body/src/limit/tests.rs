use super::*;
use crate::LengthLimitError;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use portcullis_core::PORTCULLIS_ERROR;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::{ServiceExt, service_fn};

/// A streamed body of unknown length, like a chunked request.
struct Chunks(VecDeque<Bytes>);

impl Chunks {
    fn new(chunks: &[&'static [u8]]) -> Self {
        Self(chunks.iter().map(|c| Bytes::from_static(c)).collect())
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::new()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads the whole body like a handler: 200 with the byte count, or 400 on a
/// body error. Records what it received.
async fn read_all<B>(
    req: Request<Limited<B>>,
    seen: Arc<Mutex<Vec<u8>>>,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    seen.lock().unwrap().extend_from_slice(data);
                }
            }
            Err(e) => {
                assert!(e.downcast_ref::<LengthLimitError>().is_some(), "{e}");
                let mut res = Response::new(Full::from("handler saw an error"));
                *res.status_mut() = http::StatusCode::BAD_REQUEST;
                return Ok(res);
            }
        }
    }
    let n = seen.lock().unwrap().len();
    Ok(Response::new(Full::from(n.to_string())))
}

async fn assert_413<B>(res: Response<ResponseBody<B>>)
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    assert_eq!(res.status(), 413);
    assert_eq!(res.headers()[PORTCULLIS_ERROR], "body_too_large");
    assert_eq!(res.headers()[http::header::CONNECTION], "close");
    assert_eq!(res.extensions().get::<Cause>(), Some(&Cause::BodyTooLarge));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        br#"{"error":"body_too_large","status":413,"request_id":"r-1","service":null}"#
    );
}

#[tokio::test]
async fn declared_length_over_the_limit_is_refused_at_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let inner = service_fn(move |_req: Request<Limited<Full<Bytes>>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
    });
    let svc = BodyLimit::new(inner, 4);
    let req = Request::post("/")
        .header(CONTENT_LENGTH, "5")
        .header("x-request-id", "r-1")
        .body(Full::new(Bytes::from_static(b"12345")))
        .unwrap();
    assert_413(svc.clone().oneshot(req).await.unwrap()).await;
    // No Content-Length, but the body's size hint says 5.
    let req = Request::post("/")
        .header("x-request-id", "r-1")
        .body(Full::new(Bytes::from_static(b"12345")))
        .unwrap();
    assert_413(svc.oneshot(req).await.unwrap()).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn body_within_the_limit_passes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let svc = BodyLimit::new(service_fn(move |req| read_all(req, Arc::clone(&s))), 6);
    let req = Request::post("/")
        .body(Chunks::new(&[b"abc", b"def"]))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get(PORTCULLIS_ERROR).is_none());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"6");
    assert_eq!(&seen.lock().unwrap()[..], b"abcdef");
}

#[tokio::test]
async fn streaming_body_over_the_limit_gets_413() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let svc = BodyLimit::new(service_fn(move |req| read_all(req, Arc::clone(&s))), 6);
    let req = Request::post("/")
        .header("x-request-id", "r-1")
        .body(Chunks::new(&[b"abc", b"def", b"g", b"hij"]))
        .unwrap();
    assert_413(svc.oneshot(req).await.unwrap()).await;
    // The chunk that crossed the limit never reached the inner service.
    assert_eq!(&seen.lock().unwrap()[..], b"abcdef");
}

#[tokio::test]
async fn inner_error_after_the_limit_becomes_413() {
    let inner = service_fn(|req: Request<Limited<Chunks>>| async move {
        let err = req.into_body().collect().await.unwrap_err();
        Err::<Response<Full<Bytes>>, BoxError>(err)
    });
    let req = Request::post("/")
        .header("x-request-id", "r-1")
        .body(Chunks::new(&[b"0123456789"]))
        .unwrap();
    let res = BodyLimit::new(inner, 3).oneshot(req).await.unwrap();
    assert_413(res).await;
}

#[tokio::test]
async fn inner_error_before_the_limit_passes() {
    let inner = service_fn(|_req: Request<Limited<Chunks>>| async move {
        Err::<Response<Full<Bytes>>, BoxError>("upstream gone".into())
    });
    let req = Request::post("/")
        .body(Chunks::new(&[b"0123456789"]))
        .unwrap();
    let err = BodyLimit::new(inner, 3).oneshot(req).await.unwrap_err();
    assert_eq!(err.to_string(), "upstream gone");
}

#[tokio::test]
async fn response_before_the_limit_passes_unchanged() {
    let inner = service_fn(|req: Request<Limited<Chunks>>| async move {
        // Answer without reading: the body is still unread when the answer goes.
        let mut res = Response::new(Full::from("early"));
        *res.status_mut() = http::StatusCode::ACCEPTED;
        res.headers_mut().insert("x-inner", "yes".parse().unwrap());
        drop(req);
        Ok::<_, Infallible>(res)
    });
    let req = Request::post("/")
        .body(Chunks::new(&[b"0123456789"]))
        .unwrap();
    let res = BodyLimit::new(inner, 3).oneshot(req).await.unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(res.headers()["x-inner"], "yes");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"early");
}

#[tokio::test]
async fn limit_zero_allows_only_empty_bodies() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let svc = BodyLimit::new(service_fn(move |req| read_all(req, Arc::clone(&s))), 0);
    let req = Request::post("/").body(Chunks::new(&[b""])).unwrap();
    assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 200);
    let req = Request::post("/")
        .header("x-request-id", "r-1")
        .body(Chunks::new(&[b"x"]))
        .unwrap();
    assert_413(svc.oneshot(req).await.unwrap()).await;
}
