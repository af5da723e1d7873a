//! R1: responses pass as the upstream sent them: redirects not followed, bodiless
//! responses without a body, repeated fields kept apart.

use crate::support::{Action, Client, Framing, Origin, exchange, get, ok, proxy_to, response};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_returned_not_followed() {
    let origin = Origin::start(|r| {
        if r.head.target() == "/old" {
            Action::Respond(response("302 Found", &[("Location", "/elsewhere")], b""))
        } else {
            Action::Respond(ok("followed!"))
        }
    })
    .await;
    let gw = proxy_to(&origin, &[]).await;
    let res = exchange(&gw, &get("/old")).await;
    assert_eq!(res.status, 302, "{}", res.dump());
    assert_eq!(
        res.head.get_all("location"),
        ["/elsewhere"],
        "{}",
        res.head.text()
    );
    assert!(res.body.data.is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let recs = origin.records();
    assert_eq!(
        recs.len(),
        1,
        "{:#?}",
        recs.iter().map(|r| r.head.text()).collect::<Vec<_>>()
    );
    assert_eq!(recs[0].head.target(), "/old");
}

/// Sends `first`, reads a bodiless response to `method`, then checks the connection
/// still works for a GET: a stray body byte would corrupt the second response.
async fn bodiless_then_next(
    method: &str,
    target: &str,
    answer: Vec<u8>,
    want_status: u16,
) -> crate::support::Response {
    let origin = Origin::start(move |r| {
        if r.head.target() == "/next" {
            Action::Respond(ok("next"))
        } else {
            Action::Respond(answer.clone())
        }
    })
    .await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(format!("{method} {target} HTTP/1.1\r\nHost: test.local\r\n\r\n").as_bytes())
        .await;
    let first = c.response_to(method).await;
    assert_eq!(first.status, want_status, "{}", first.dump());
    assert_eq!(first.framing, Framing::None);
    c.send(&get("/next")).await;
    let next = c.response().await;
    assert_eq!(next.status, 200, "{}", next.dump());
    assert_eq!(next.body.text(), "next", "{}", next.dump());
    let recs = origin.wait_records(2).await;
    assert_eq!(recs[0].head.method(), method);
    assert_eq!(recs[1].head.target(), "/next");
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_response_has_no_body() {
    let first = bodiless_then_next(
        "HEAD",
        "/file",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n".to_vec(),
        200,
    )
    .await;
    assert_eq!(
        first.head.get("content-length"),
        Some("1234"),
        "{}",
        first.head.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_content_response_has_no_body() {
    let first = bodiless_then_next(
        "DELETE",
        "/item",
        b"HTTP/1.1 204 No Content\r\nX-Done: yes\r\n\r\n".to_vec(),
        204,
    )
    .await;
    assert_eq!(first.head.get("x-done"), Some("yes"));
    assert!(
        !first.head.has("transfer-encoding"),
        "{}",
        first.head.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_modified_response_has_no_body() {
    let first = bodiless_then_next(
        "GET",
        "/cached",
        b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec(),
        304,
    )
    .await;
    assert_eq!(first.head.get("etag"), Some("\"v1\""));
    assert!(
        !first.head.has("transfer-encoding"),
        "{}",
        first.head.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_cookie_lines_stay_separate() {
    let origin = Origin::start(|_| {
        Action::Respond(response(
            "200 OK",
            &[
                ("Set-Cookie", "a=1; Path=/; HttpOnly"),
                ("Set-Cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
                ("Set-Cookie", "c=3"),
            ],
            b"ok",
        ))
    })
    .await;
    let gw = proxy_to(&origin, &[]).await;
    let res = exchange(&gw, &get("/cookies")).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(
        res.head.get_all("set-cookie"),
        [
            "a=1; Path=/; HttpOnly",
            "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
            "c=3"
        ],
        "{}",
        res.head.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_trailers_pass() {
    let origin = Origin::start(|_| {
        Action::Respond(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
              5\r\nhello\r\n0\r\nX-Checksum: abc123\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let gw = proxy_to(&origin, &[]).await;
    let res = exchange(
        &gw,
        b"GET /trailers HTTP/1.1\r\nHost: test.local\r\nTE: trailers\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.framing, Framing::Chunked, "{}", res.head.text());
    assert!(res.body.complete);
    assert_eq!(res.body.text(), "hello");
    assert_eq!(
        res.body.trailers,
        [("x-checksum".to_owned(), "abc123".to_owned())],
        "raw body: {:?}",
        String::from_utf8_lossy(&res.body.raw)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trailers_pass() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = proxy_to(&origin, &[]).await;
    let res = exchange(
        &gw,
        b"POST /up HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
          5\r\nhello\r\n0\r\nX-Checksum: abc123\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    assert_eq!(rec.body.data, b"hello");
    assert_eq!(
        rec.body
            .trailers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_str()))
            .collect::<Vec<_>>(),
        [("x-checksum".to_owned(), "abc123")],
        "raw body at the origin: {:?}",
        String::from_utf8_lossy(&rec.body.raw)
    );
}
