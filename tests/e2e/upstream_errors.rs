//! R6: the gateway's own errors when the upstream fails, each with its cause.

use crate::support::{
    Action, Client, Framing, Gateway, Origin, exchange, get, ok, proxy_to, refusing_port,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_502_upstream_unreachable() {
    let (_reserved, port) = refusing_port();
    let dead = format!("http://127.0.0.1:{port}");
    let gw = Gateway::proxy(&[&dead], &[]).await;
    let res = exchange(&gw, &get("/down")).await;
    assert_eq!(res.status, 502, "{}", res.dump());
    assert_eq!(res.cause(), Some("upstream_unreachable"), "{}", res.dump());
    let json = res.json();
    assert_eq!(json["error"], "upstream_unreachable", "{}", res.dump());
    assert_eq!(json["status"], 502, "{}", res.dump());
    assert!(
        res.head
            .get("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "{}",
        res.head.text()
    );
    // The endpoint that failed is named; a bodyless request keeps its connection.
    assert_eq!(
        json["endpoint"],
        format!("127.0.0.1:{port}"),
        "{}",
        res.dump()
    );
    assert_eq!(res.head.get("connection"), None, "{}", res.dump());
    // A request whose body was not read says the connection closes, instead of
    // closing it under the client's next request.
    let res = exchange(
        &gw,
        b"POST /down HTTP/1.1\r\nHost: t.local\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(res.status, 502, "{}", res.dump());
    assert_eq!(res.head.get("connection"), Some("close"), "{}", res.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_is_504_upstream_timeout() {
    let origin = Origin::start(|_| Action::Hang).await;
    let gw = proxy_to(&origin, &["--timeout", "300ms"]).await;
    let res = exchange(&gw, &get("/slow")).await;
    assert_eq!(res.status, 504, "{}", res.dump());
    assert_eq!(res.cause(), Some("upstream_timeout"), "{}", res.dump());
    assert_eq!(res.json()["error"], "upstream_timeout");
    assert_eq!(
        origin.records().len(),
        1,
        "the request reached the origin once"
    );
}

async fn assert_invalid_response(garbage: &'static [u8]) {
    let origin = Origin::start(move |_| Action::RespondClose(garbage.to_vec())).await;
    let gw = proxy_to(&origin, &[]).await;
    let res = exchange(&gw, &get("/garbage")).await;
    assert_eq!(
        res.status,
        502,
        "origin sent {:?}; client got {}",
        String::from_utf8_lossy(garbage),
        res.dump()
    );
    assert_eq!(
        res.cause(),
        Some("upstream_invalid_response"),
        "{}",
        res.dump()
    );
    assert_eq!(res.json()["status"], 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_status_line_is_502_upstream_invalid_response() {
    assert_invalid_response(b"HTTP/1.1 abc\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_http_reply_is_502_upstream_invalid_response() {
    assert_invalid_response(b"foo bar\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_upstream_connection_cap_is_503_upstream_overloaded() {
    let origin = Origin::start(|r| {
        if r.head.target() == "/hang" {
            Action::Hang
        } else {
            Action::Respond(ok("fast"))
        }
    })
    .await;
    let rest = format!(
        "[proxy]\nmax_connections_per_upstream = 1\nconnection_wait_timeout = \"200ms\"\n\n\
         [[services]]\nname = \"svc\"\nendpoints = [\"{}\"]\n\n[[routes]]\npath = \"/\"\nservice = \"svc\"\n",
        origin.url()
    );
    let gw = Gateway::run("", &rest).await;
    let mut first = Client::connect(gw.addr).await;
    first.send(&get("/hang")).await;
    origin.wait_records(1).await;
    let res = exchange(&gw, &get("/second")).await;
    assert_eq!(res.status, 503, "{}", res.dump());
    assert_eq!(res.cause(), Some("upstream_overloaded"), "{}", res.dump());
    let retry = res
        .head
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {}", res.dump()));
    assert!(
        retry.parse::<u64>().is_ok(),
        "Retry-After {retry:?} is not delay-seconds"
    );
    assert_eq!(
        origin.records().len(),
        1,
        "the second request reached the origin"
    );
    assert_eq!(origin.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dying_mid_body_aborts_the_response() {
    let origin = Origin::start(|_| {
        let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[b'x'; 1000]);
        Action::RespondClose(bytes)
    })
    .await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(&get("/cut")).await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.head.text());
    assert!(
        matches!(res.framing, Framing::Length(100_000) | Framing::Chunked),
        "the response must keep a framing that can show the cut: {:?}\n{}",
        res.framing,
        res.head.text()
    );
    assert!(
        !res.body.complete,
        "a cut upstream body reached the client as a complete one ({:?}, {} bytes)",
        res.framing, res.body.len
    );
    assert!(res.body.len <= 1000, "{} bytes", res.body.len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_without_answer_is_502() {
    let origin = Origin::start(|_| Action::Close).await;
    let gw = proxy_to(&origin, &[]).await;
    let res = exchange(&gw, &get("/closed")).await;
    assert_eq!(res.status, 502, "{}", res.dump());
    let cause = res
        .cause()
        .unwrap_or_else(|| panic!("no portcullis-error: {}", res.dump()));
    assert!(
        cause == "upstream_invalid_response" || cause == "upstream_unreachable",
        "{}",
        res.dump()
    );
}
