//! The three layers in a plain axum `Router`.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use portcullis_body::{BodyLimitLayer, FramingGuardLayer, LengthRequiredLayer, RawHeadVerdict};
use portcullis_core::Cause;
use tower::ServiceExt;

fn app() -> Router {
    Router::new()
        .route(
            "/upload",
            post(|body: Bytes| async move { format!("got {}", body.len()) }),
        )
        .route("/", get(|| async { "hi" }))
        .layer(BodyLimitLayer::new(10))
        .layer(LengthRequiredLayer::new())
        .layer(FramingGuardLayer::new())
}

async fn call(req: Request<Body>) -> (StatusCode, Option<String>, String) {
    let res = app().oneshot(req).await.unwrap();
    let status = res.status();
    let cause = res
        .headers()
        .get("portcullis-error")
        .map(|v| v.to_str().unwrap().to_owned());
    if let Some(cause) = &cause {
        assert_eq!(
            res.extensions().get::<Cause>().map(|c| c.as_str()),
            Some(cause.as_str())
        );
    }
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, cause, String::from_utf8(body.to_vec()).unwrap())
}

fn post_upload() -> axum::http::request::Builder {
    Request::post("/upload").header("host", "api.example.com")
}

#[tokio::test]
async fn get_without_body_passes() {
    let req = Request::get("/")
        .header("host", "a")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(req).await, (StatusCode::OK, None, "hi".to_owned()));
}

#[tokio::test]
async fn body_with_length_passes() {
    let req = post_upload()
        .header("content-length", "10")
        .body(Body::from("0123456789"))
        .unwrap();
    assert_eq!(call(req).await, (StatusCode::OK, None, "got 10".to_owned()));
}

#[tokio::test]
async fn missing_host_is_bad_request() {
    let req = Request::get("/").body(Body::empty()).unwrap();
    let (status, cause, body) = call(req).await;
    assert_eq!(status, 400);
    assert_eq!(cause.as_deref(), Some("bad_request"));
    assert_eq!(
        body,
        r#"{"error":"bad_request","status":400,"request_id":null,"service":null}"#
    );
}

#[tokio::test]
async fn chunked_is_length_required() {
    let req = post_upload()
        .header("transfer-encoding", "chunked")
        .body(Body::from("0123"))
        .unwrap();
    let (status, cause, _) = call(req).await;
    assert_eq!(status, 411);
    assert_eq!(cause.as_deref(), Some("length_required"));
}

#[tokio::test]
async fn over_the_limit_is_413() {
    let req = post_upload()
        .header("content-length", "11")
        .body(Body::from("0123456789A"))
        .unwrap();
    let (status, cause, body) = call(req).await;
    assert_eq!(status, 413);
    assert_eq!(cause.as_deref(), Some("body_too_large"));
    assert_eq!(
        body,
        r#"{"error":"body_too_large","status":413,"request_id":null,"service":null}"#
    );
}

#[tokio::test]
async fn guard_runs_before_the_others() {
    // Both a framing error and an oversize body: the outermost guard answers.
    let req = post_upload()
        .header("content-length", "11")
        .header("content-length", "11")
        .body(Body::from("0123456789A"))
        .unwrap();
    let (status, cause, _) = call(req).await;
    assert_eq!(status, 400);
    assert_eq!(cause.as_deref(), Some("bad_framing"));
}

#[tokio::test]
async fn bad_raw_verdict_is_refused() {
    let mut req = post_upload()
        .header("content-length", "1")
        .body(Body::from("x"))
        .unwrap();
    req.extensions_mut().insert(RawHeadVerdict::Bad {
        cause: Cause::BadFraming,
        reason: "content-length with transfer-encoding",
    });
    let (status, cause, _) = call(req).await;
    assert_eq!(status, 400);
    assert_eq!(cause.as_deref(), Some("bad_framing"));
}
