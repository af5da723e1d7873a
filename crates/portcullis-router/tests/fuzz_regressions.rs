//! Regression tests for inputs found by the `router` fuzz target (`fuzz/`, see
//! fuzz/README.md). Each test is the minimised input, written by hand.

use std::convert::Infallible;
use std::future::{Ready, ready};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use portcullis_router::{RouteSpec, Router};
use tower::{ServiceExt, service_fn, util::ServiceFn};

type EchoFn = fn(Request<()>) -> Ready<Result<Response<Full<Bytes>>, Infallible>>;

/// Answers with the URI it received.
fn echo(req: Request<()>) -> Ready<Result<Response<Full<Bytes>>, Infallible>> {
    ready(Ok(Response::new(Full::new(Bytes::from(
        req.uri().to_string(),
    )))))
}

fn strip_v1() -> Result<Router<ServiceFn<EchoFn>>, Box<dyn std::error::Error>> {
    let spec = RouteSpec::new("v1", "/v1/")?.strip_prefix("/v1")?;
    Router::builder()
        .route(spec, service_fn(echo as EchoFn))
        .build()
        .map_err(|e| format!("{e:?}").into())
}

async fn send(
    router: &Router<ServiceFn<EchoFn>>,
    path: &str,
) -> Result<(StatusCode, String), Box<dyn std::error::Error>> {
    let req = Request::get(path)
        .header("host", "api.example.com")
        .body(())?;
    let res = router.clone().oneshot(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The documented refusal of an edited path that starts with `//` (a
/// network-path reference to an upstream that resolves it against a base URL)
/// holds when the path is written plainly.
#[tokio::test]
async fn edited_double_slash_is_refused() -> Result<(), Box<dyn std::error::Error>> {
    let router = strip_v1()?;
    let (status, _) = send(&router, "/v1//evil.example/x").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    Ok(())
}

/// Found by the `router` target: `/v1/.//evil.example/x` through
/// `strip_prefix("/v1")` was forwarded as `/.//evil.example/x`, which an upstream
/// that removes dot segments reads as `//evil.example/x`: the `//` check looked
/// at the edited path only as written. Same with `%2e`. Now refused (400).
#[tokio::test]
async fn single_dot_segment_hides_an_edited_double_slash() -> Result<(), Box<dyn std::error::Error>>
{
    let router = strip_v1()?;
    for path in ["/v1/.//evil.example/x", "/v1/%2e//evil.example/x"] {
        let (status, uri) = send(&router, path).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} forwarded as {uri}");
    }
    Ok(())
}
