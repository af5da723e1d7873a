//! R1: method, path and query reach the upstream byte for byte; Host as sent.

use crate::support::{Action, Origin, exchange, ok, proxy_to};

/// Sends `GET {target}` and returns the request line the origin got.
async fn forwarded_request_line(target: &str, host: &str) -> (String, crate::support::Record) {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = proxy_to(&origin, &[]).await;
    let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let res = exchange(&gw, req.as_bytes()).await;
    assert_eq!(res.status, 200, "{target}: {}", res.dump());
    let rec = origin.only_record().await;
    (rec.head.start.clone(), rec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_double_slashes_pass_untouched() {
    let (line, rec) = forwarded_request_line("//a/../b", "test.local").await;
    assert_eq!(line, "GET //a/../b HTTP/1.1", "{}", rec.head.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slash_passes_untouched() {
    let (line, rec) = forwarded_request_line("/x%2Fy", "test.local").await;
    assert_eq!(line, "GET /x%2Fy HTTP/1.1", "{}", rec.head.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_and_query_pass_untouched() {
    let (line, rec) = forwarded_request_line("/p;x=1?q=%20&r", "test.local").await;
    assert_eq!(line, "GET /p;x=1?q=%20&r HTTP/1.1", "{}", rec.head.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_kept_as_sent() {
    let (line, rec) = forwarded_request_line("/h", "Shop.Example:8080").await;
    assert_eq!(line, "GET /h HTTP/1.1");
    assert_eq!(
        rec.head.get_all("host"),
        ["Shop.Example:8080"],
        "{}",
        rec.head.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_keeps_path_query_and_host() {
    let (line, rec) = forwarded_request_line("http://example.com/abs?x=1", "example.com").await;
    // Origin-form is what an origin server expects; absolute-form is allowed too.
    assert!(
        line == "GET /abs?x=1 HTTP/1.1" || line == "GET http://example.com/abs?x=1 HTTP/1.1",
        "request line at the origin: {line:?}\n{}",
        rec.head.text()
    );
    assert_eq!(
        rec.head.get_all("host"),
        ["example.com"],
        "{}",
        rec.head.text()
    );
}

/// RFC 9112 §3.2.2: with an absolute-form target, the target's host replaces
/// whatever Host was sent beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_host_wins_over_the_host_header() {
    let (line, rec) = forwarded_request_line("http://a.example/abs", "b.example").await;
    assert_eq!(line, "GET /abs HTTP/1.1", "{}", rec.head.text());
    assert_eq!(
        rec.head.get_all("host"),
        ["a.example"],
        "{}",
        rec.head.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_is_kept() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = proxy_to(&origin, &[]).await;
    let res = exchange(
        &gw,
        b"PURGE /cache/item?a=b HTTP/1.1\r\nHost: test.local\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    assert_eq!(
        rec.head.start,
        "PURGE /cache/item?a=b HTTP/1.1",
        "{}",
        rec.head.text()
    );
}
