//! R18: HTTP/2 with prior knowledge (h2c) from the client, forwarded to an
//! HTTP/1.1 origin.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::TokioExecutor;

use crate::support::wire::IO_TIMEOUT;
use crate::support::{Action, Gateway, Origin, Record, ok, proxy_to};

/// An h2c connection to the gateway; the connection task runs in the background.
pub(crate) async fn h2_connect(gw: &Gateway) -> SendRequest<Full<Bytes>> {
    crate::h2_limits::h2_connect_with(
        gw,
        &hyper::client::conn::http2::Builder::new(TokioExecutor::new()),
    )
    .await
    .send
}

/// Sends `req` and reads the whole response, each step with a timeout.
pub(crate) async fn h2_exchange(
    send: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> (http::response::Parts, Bytes) {
    tokio::time::timeout(IO_TIMEOUT, send.ready())
        .await
        .expect("h2 ready: timed out")
        .expect("h2 connection ready");
    let res = tokio::time::timeout(IO_TIMEOUT, send.send_request(req))
        .await
        .expect("h2 response: timed out")
        .expect("h2 response");
    let (parts, body) = res.into_parts();
    let body = tokio::time::timeout(IO_TIMEOUT, body.collect())
        .await
        .expect("h2 body: timed out")
        .expect("h2 body")
        .to_bytes();
    (parts, body)
}

fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri)
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// Answers with the method, target and body length it got.
fn echo(r: &Record) -> Action {
    Action::Respond(ok(&format!(
        "{} {} {}",
        r.head.method(),
        r.head.target(),
        r.body.len
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_get_is_forwarded_as_http1() {
    let origin = Origin::start(echo).await;
    let gw = proxy_to(&origin, &[]).await;
    let mut send = h2_connect(&gw).await;
    let (parts, body) = h2_exchange(&mut send, get("http://test.local/h2?x=1")).await;
    assert_eq!(parts.status, StatusCode::OK, "{parts:?} {body:?}");
    assert_eq!(parts.version, http::Version::HTTP_2);
    assert_eq!(body, "GET /h2?x=1 0");
    let rec = origin.only_record().await;
    let h = &rec.head;
    assert_eq!(h.start, "GET /h2?x=1 HTTP/1.1", "{}", h.text());
    assert_eq!(h.get_all("host"), ["test.local"], "{}", h.text());
    assert_eq!(
        h.joined("via").as_deref(),
        Some("2 portcullis"),
        "{}",
        h.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_streams_on_one_connection_both_succeed() {
    // The delay keeps both requests in flight at once on the one connection.
    let origin =
        Origin::start(|r| Action::Delay(Duration::from_millis(300), Box::new(echo(r)))).await;
    let gw = proxy_to(&origin, &[]).await;
    let send = h2_connect(&gw).await;
    let (mut a, mut b) = (send.clone(), send);
    let (ra, rb) = tokio::join!(
        h2_exchange(&mut a, get("http://test.local/a")),
        h2_exchange(&mut b, get("http://test.local/b")),
    );
    assert_eq!(ra.0.status, StatusCode::OK, "{ra:?}");
    assert_eq!(ra.1, "GET /a 0");
    assert_eq!(rb.0.status, StatusCode::OK, "{rb:?}");
    assert_eq!(rb.1, "GET /b 0");
    let recs = origin.wait_records(2).await;
    let mut targets: Vec<_> = recs.iter().map(|r| r.head.target().to_owned()).collect();
    targets.sort();
    assert_eq!(targets, ["/a", "/b"]);
    // Both were in flight together: the origin served them on two connections.
    assert_eq!(origin.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_post_body_reaches_the_origin_intact() {
    let origin = Origin::start(echo).await;
    let gw = proxy_to(&origin, &[]).await;
    let mut send = h2_connect(&gw).await;
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let req = Request::post("http://test.local/upload")
        .header("content-type", "application/octet-stream")
        .body(Full::new(Bytes::from(payload.clone())))
        .expect("request");
    let (parts, body) = h2_exchange(&mut send, req).await;
    assert_eq!(parts.status, StatusCode::OK, "{parts:?} {body:?}");
    assert_eq!(body, "POST /upload 100000");
    let rec = origin.only_record().await;
    assert!(rec.body.complete, "{}", rec.head.text());
    assert_eq!(rec.body.data, payload, "{}", rec.head.text());
    assert_eq!(rec.head.method(), "POST");
    assert_eq!(
        rec.head.get("content-type"),
        Some("application/octet-stream"),
        "{}",
        rec.head.text()
    );
}
