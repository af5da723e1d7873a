//! R5 slow clients through the binary: a request body sent too slowly is answered
//! 408 `client_timeout` (the client's fault), never confused with a 504 (the
//! upstream's), and the upstream connection it held is let go.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::{Action, Client, Gateway, Origin, ok, service};

async fn gateway(origin: &Origin, server_extra: &str) -> Gateway {
    let rest = format!(
        "{}[[routes]]\npath = \"/\"\nservice = \"svc\"\n",
        service("svc", &origin.url())
    );
    Gateway::run(server_extra, &rest).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_408_client_timeout() {
    let origin = Origin::start(|_| Action::Respond(ok("done"))).await;
    let gw = gateway(&origin, "client_body_timeout = \"1s\"").await;
    let mut c = Client::connect(gw.addr).await;
    let started = Instant::now();
    c.send(b"POST /upload HTTP/1.1\r\nHost: t.local\r\nContent-Length: 100\r\n\r\n0123456789")
        .await;
    // Then nothing.
    let res = c.response_to("POST").await;
    assert_eq!(res.status, 408, "{}", res.dump());
    assert_eq!(res.cause(), Some("client_timeout"), "{}", res.dump());
    assert_eq!(res.head.get("connection"), Some("close"), "{}", res.dump());
    assert_eq!(res.json()["service"], "svc", "{}", res.dump());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "answered after {took:?}"
    );
    assert!(c.closed().await, "the connection stays open after a 408");
    // The origin got the head and part of the body, never a whole request, and
    // its connection was let go.
    let rec = origin.only_record().await;
    assert!(!rec.body.complete, "{:?}", rec.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_under_the_minimum_rate_is_408() {
    let origin = Origin::start(|_| Action::Respond(ok("done"))).await;
    let gw = gateway(
        &origin,
        "client_body_timeout = \"5s\"\nclient_body_min_rate = \"1KiB\"\nclient_body_min_rate_after = \"1s\"",
    )
    .await;
    let mut c = Client::connect(gw.addr).await;
    c.send(b"POST /upload HTTP/1.1\r\nHost: t.local\r\nContent-Length: 100000\r\n\r\n")
        .await;
    // 20 bytes every 200 ms: never idle, but 100 B/s.
    let mut answered = None;
    for _ in 0..30 {
        c.send(&[b'x'; 20]).await;
        if let Ok(Ok(res)) =
            tokio::time::timeout(Duration::from_millis(200), c.try_response_to("POST")).await
        {
            answered = Some(res);
            break;
        }
    }
    let res = answered.expect("an answer within 6s");
    assert_eq!(res.status, 408, "{}", res.dump());
    assert_eq!(res.cause(), Some("client_timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_upload_is_not_cut() {
    let origin = Origin::start(|r| Action::Respond(ok(&r.body.data.len().to_string()))).await;
    let gw = gateway(
        &origin,
        "client_body_timeout = \"1s\"\nclient_body_min_rate = \"1KiB\"\nclient_body_min_rate_after = \"1s\"",
    )
    .await;
    let mut c = Client::connect(gw.addr).await;
    c.send(b"POST /upload HTTP/1.1\r\nHost: t.local\r\nContent-Length: 40000\r\n\r\n")
        .await;
    for _ in 0..20 {
        c.send(&[b'y'; 2000]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = c.response_to("POST").await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "40000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_after_its_request_quota() {
    let origin = Origin::start(|_| Action::Respond(ok("done"))).await;
    let gw = gateway(&origin, "max_requests_per_connection = 3").await;
    let mut c = Client::connect(gw.addr).await;
    for i in 1..=3 {
        c.send(format!("GET /r{i} HTTP/1.1\r\nHost: t.local\r\n\r\n").as_bytes())
            .await;
        let res = c.response_to("GET").await;
        assert_eq!(res.status, 200, "{}", res.dump());
        let close = res.head.get("connection") == Some("close");
        assert_eq!(close, i == 3, "request {i}: {}", res.dump());
    }
    assert!(
        c.closed().await,
        "the connection stays open after its last request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_is_cut_at_the_header_timeout_but_an_idle_keep_alive_is_not() {
    let origin = Origin::start(|_| Action::Respond(ok("done"))).await;
    let gw = gateway(
        &origin,
        "header_timeout = \"1s\"\nkeepalive_timeout = \"10s\"",
    )
    .await;

    // Idle between two requests for longer than the header timeout: kept.
    let mut c = Client::connect(gw.addr).await;
    c.send(b"GET /one HTTP/1.1\r\nHost: t.local\r\n\r\n").await;
    assert_eq!(c.response_to("GET").await.status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.send(b"GET /two HTTP/1.1\r\nHost: t.local\r\n\r\n").await;
    assert_eq!(c.response_to("GET").await.status, 200);

    // A head dribbled a byte at a time: closed about a second after it began.
    c.send(b"G").await;
    let started = Instant::now();
    let mut cut = false;
    for b in b"ET /three HTTP/1.1\r\nHost: t.local\r\n" {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if c.w.try_write(&[*b]).is_err() {
            cut = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    assert!(cut || c.closed().await, "a slow head was not cut");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut after {:?}",
        started.elapsed()
    );
    assert_eq!(
        origin.records().len(),
        2,
        "only the two whole requests went through"
    );
}
