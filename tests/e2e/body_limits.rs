//! R4 and R5: 411 on routes that require a length, 413 past a route's body limit.

use tokio::io::AsyncWriteExt;

use crate::support::{Action, Client, Gateway, Origin, ok};

async fn gateway(origin: &Origin, route: &str) -> Gateway {
    let rest = format!(
        "[[services]]\nname = \"svc\"\nendpoints = [\"{}\"]\n\n[[routes]]\npath = \"/\"\nservice = \"svc\"\n{route}\n",
        origin.url()
    );
    Gateway::run("", &rest).await
}

fn echo_len(r: &crate::support::Record) -> Action {
    Action::Respond(ok(&format!("got {}", r.body.len)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_on_a_length_required_route_gets_411() {
    let origin = Origin::start(echo_len).await;
    let gw = gateway(&origin, "length_required = true").await;
    let mut c = Client::connect(gw.addr).await;
    c.send(b"POST /upload HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 411, "{}", res.dump());
    assert_eq!(res.cause(), Some("length_required"), "{}", res.dump());
    assert_eq!(res.json()["error"], "length_required");
    origin.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_body_on_a_length_required_route_passes() {
    let origin = Origin::start(echo_len).await;
    let gw = gateway(&origin, "length_required = true").await;
    let mut c = Client::connect(gw.addr).await;
    c.send(b"POST /upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "got 5");
    let rec = origin.only_record().await;
    assert_eq!(rec.body.data, b"hello");
    assert_eq!(
        rec.head.get("content-length"),
        Some("5"),
        "{}",
        rec.head.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_length_over_the_limit_gets_413() {
    let origin = Origin::start(echo_len).await;
    let gw = gateway(&origin, "max_body = \"1KiB\"").await;
    let Client { mut r, mut w } = Client::connect(gw.addr).await;
    // Write in the background: the gateway may answer (and close) before reading
    // the body.
    let writer = tokio::spawn(async move {
        let mut req =
            b"POST /upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: 2000\r\n\r\n".to_vec();
        req.extend_from_slice(&[b'a'; 2000]);
        let _ = w.write_all(&req).await;
        w
    });
    let head = r
        .read_head()
        .await
        .expect("response head")
        .expect("a response");
    let body = r
        .read_body(head.response_framing("POST"))
        .await
        .expect("response body");
    assert_eq!(head.status(), 413, "{}{}", head.text(), body.text());
    assert_eq!(
        head.get("portcullis-error"),
        Some("body_too_large"),
        "{}",
        head.text()
    );
    let _ = writer.await;
    origin.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_body_under_the_limit_passes() {
    let origin = Origin::start(echo_len).await;
    let gw = gateway(&origin, "max_body = \"1KiB\"").await;
    let mut c = Client::connect(gw.addr).await;
    let mut req =
        b"POST /upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: 1024\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'a'; 1024]);
    c.send(&req).await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "got 1024");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunked_body_over_the_limit_gets_413() {
    const LEN: usize = 64 * 1024;
    let origin = Origin::start(echo_len).await;
    let gw = gateway(&origin, "max_body = \"1KiB\"").await;
    let Client { mut r, mut w } = Client::connect(gw.addr).await;
    let writer = tokio::spawn(async move {
        if w.write_all(
            b"POST /upload HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .is_err()
        {
            return;
        }
        for _ in 0..LEN / 512 {
            let mut chunk = b"200\r\n".to_vec();
            chunk.extend_from_slice(&[b'z'; 512]);
            chunk.extend_from_slice(b"\r\n");
            if w.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = w.write_all(b"0\r\n\r\n").await;
    });
    let head = r
        .read_head()
        .await
        .expect("response head")
        .expect("a response");
    let body = r
        .read_body(head.response_framing("POST"))
        .await
        .expect("response body");
    assert_eq!(head.status(), 413, "{}{}", head.text(), body.text());
    assert_eq!(
        head.get("portcullis-error"),
        Some("body_too_large"),
        "{}",
        head.text()
    );
    let _ = writer.await;
    // Give a forwarded body time to arrive, then check none arrived whole.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for rec in origin.records() {
        assert!(
            !(rec.body.complete && rec.body.len as usize == LEN),
            "the origin received the whole over-limit body: {}",
            rec.head.text()
        );
        // A shorter body that looked complete would be a request the client never
        // sent (R4).
        assert!(
            !rec.body.complete,
            "the origin received a truncated body framed as complete ({} bytes): {}",
            rec.body.len,
            rec.head.text()
        );
    }
}
