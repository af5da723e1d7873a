//! R4: ambiguous or malformed framing is refused before anything reaches the
//! upstream, and the connection is closed.

use crate::support::{Action, Client, Origin, ok, proxy_to};

/// How sure we are of the cause: ours, or possibly hyper's own bare 400.
#[derive(Clone, Copy)]
enum Expect {
    /// The gateway's `bad_framing` error.
    BadFraming,
    /// A 400; when it carries `portcullis-error`, that is `bad_framing` or
    /// `bad_request` (hyper may reject the message before the gateway sees it).
    Any400,
}

async fn assert_refused(request: &[u8], expect: Expect) {
    let origin = Origin::start(|_| Action::Respond(ok("should not be here"))).await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(request).await;
    let res = c.response().await;
    let shown = String::from_utf8_lossy(request).into_owned();
    assert_eq!(res.status, 400, "request {shown:?} got {}", res.dump());
    match expect {
        Expect::BadFraming => {
            assert_eq!(
                res.cause(),
                Some("bad_framing"),
                "request {shown:?} got {}",
                res.dump()
            );
            assert_eq!(res.json()["error"], "bad_framing", "{}", res.dump());
        }
        Expect::Any400 => {
            if let Some(cause) = res.cause() {
                assert!(
                    cause == "bad_framing" || cause == "bad_request",
                    "request {shown:?} got {}",
                    res.dump()
                );
            }
        }
    }
    assert!(
        c.closed().await,
        "connection left open after a framing error"
    );
    origin.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_then_transfer_encoding() {
    assert_refused(
        b"POST /f HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Expect::BadFraming,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_then_content_length() {
    assert_refused(
        b"POST /f HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        Expect::BadFraming,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differing_duplicate_content_length() {
    assert_refused(
        b"POST /f HTTP/1.1\r\nHost: test.local\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        Expect::Any400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_twice() {
    assert_refused(
        b"POST /f HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        Expect::BadFraming,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_then_chunked() {
    assert_refused(
        b"POST /f HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        Expect::BadFraming,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_followed_by_a_tab() {
    assert_refused(
        b"POST /f HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n",
        Expect::BadFraming,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_coding_not_chunked() {
    assert_refused(
        b"POST /f HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        Expect::Any400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_framed_requests_pass() {
    // The control: the same origin and gateway forward well-framed bodies.
    let origin = Origin::start(|r| Action::Respond(ok(&r.body.text()))).await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(b"POST /f HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "hello");
    c.send(b"POST /f HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "abcde");
    let recs = origin.wait_records(2).await;
    assert_eq!(recs[0].body.data, b"hello");
    assert_eq!(recs[1].body.data, b"abcde");
}
