//! R2: hop-by-hop headers are removed in both directions.

use crate::support::{Action, Client, Origin, ok, proxy_to, response};

/// Headers that must never cross the gateway in either direction. (`Trailer` is
/// end-to-end here: see `responses::*_trailers_pass`.)
const HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "upgrade",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_hop_by_hop_headers_are_removed() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(
        b"GET /hop HTTP/1.1\r\n\
          Host: test.local\r\n\
          Connection: keep-alive, X-Foo\r\n\
          Keep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\n\
          Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
          TE: gzip\r\n\
          Trailer: X-Checksum\r\n\
          X-Foo: named-by-connection\r\n\
          X-Keep: yes\r\n\
          \r\n",
    )
    .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "ok");
    let rec = origin.only_record().await;
    for name in HOP.iter().chain(&["x-foo"]) {
        assert!(
            !rec.head.has(name),
            "{name} reached the origin:\n{}",
            rec.head.text()
        );
    }
    assert_eq!(rec.head.get("x-keep"), Some("yes"), "{}", rec.head.text());
    assert_eq!(rec.head.target(), "/hop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn te_trailers_is_kept() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(b"GET /te HTTP/1.1\r\nHost: test.local\r\nTE: trailers\r\n\r\n")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    assert_eq!(rec.head.get_all("te"), ["trailers"], "{}", rec.head.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_on_a_plain_request_is_removed() {
    // `Upgrade` without `Connection: upgrade` is no upgrade request: the header
    // goes, and the exchange is ordinary HTTP.
    let origin = Origin::start(|_| Action::Respond(ok("plain"))).await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(b"GET /plain HTTP/1.1\r\nHost: test.local\r\nUpgrade: websocket\r\n\r\n")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "plain");
    let rec = origin.only_record().await;
    assert!(!rec.head.has("upgrade"), "{}", rec.head.text());
    assert!(!rec.head.has("connection"), "{}", rec.head.text());
    // The connection still speaks HTTP.
    c.send(b"GET /again HTTP/1.1\r\nHost: test.local\r\n\r\n")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_hop_by_hop_headers_are_removed() {
    let origin = Origin::start(|_| {
        Action::Respond(response(
            "200 OK",
            &[
                ("Connection", "keep-alive, X-Bar"),
                ("Keep-Alive", "timeout=5, max=100"),
                ("Proxy-Connection", "keep-alive"),
                ("Proxy-Authenticate", "Basic realm=\"upstream\""),
                ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
                ("TE", "gzip"),
                ("Trailer", "X-Checksum"),
                ("Upgrade", "h2c"),
                ("X-Bar", "named-by-connection"),
                ("X-Kept", "1"),
            ],
            b"body",
        ))
    })
    .await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(&crate::support::get("/resp")).await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "body");
    for name in HOP.iter().chain(&["x-bar"]) {
        assert!(
            !res.head.has(name),
            "{name} reached the client:\n{}",
            res.head.text()
        );
    }
    assert_eq!(res.head.get("x-kept"), Some("1"), "{}", res.head.text());
    // The connection stays usable.
    c.send(&crate::support::get("/resp2")).await;
    assert_eq!(c.response().await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_removes_the_headers_it_names() {
    let origin = Origin::start(|_| Action::Respond(ok("bye"))).await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(b"GET /close HTTP/1.1\r\nHost: test.local\r\nConnection: close, X-Foo\r\nX-Foo: secret\r\nX-Other: kept\r\n\r\n")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "bye");
    let rec = origin.only_record().await;
    assert!(!rec.head.has("x-foo"), "{}", rec.head.text());
    assert!(!rec.head.has("connection"), "{}", rec.head.text());
    assert_eq!(rec.head.get("x-other"), Some("kept"));
    assert!(c.closed().await, "the client asked to close");
}
