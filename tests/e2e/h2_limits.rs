//! HTTP/2 connection limits through the binary: an h2c connection is ended with a
//! graceful GOAWAY (streams already open finish) once it was idle for
//! `keepalive_timeout`, served `max_requests_per_connection` requests, or lived
//! `max_connection_lifetime`.
//!
//! hyper's client connection future ends when the connection closes (after the
//! GOAWAY, once the open streams finished), and its `SendRequest` then reports
//! `is_closed()`. A graceful GOAWAY lets open streams finish, so only a request
//! sent afterwards shows it: hyper's client refuses that request.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::support::wire::IO_TIMEOUT;
use crate::support::{Action, Gateway, Origin, Record, ok, service};

/// A gateway with `http2 = true` plus `server_extra` in `[server]`, routing
/// everything to `origin`.
async fn gateway(origin: &Origin, server_extra: &str) -> Gateway {
    let rest = format!(
        "{}[[routes]]\npath = \"/\"\nservice = \"svc\"\n",
        service("svc", &origin.url())
    );
    Gateway::run(&format!("http2 = true\n{server_extra}"), &rest).await
}

/// Answers `200` with the request target as the body.
fn echo(r: &Record) -> Action {
    Action::Respond(ok(r.head.target()))
}

/// An h2c client connection whose end can be awaited.
pub(crate) struct H2Conn {
    pub(crate) send: SendRequest<Full<Bytes>>,
    /// hyper's connection future, driven in a task; yields how it ended and when.
    conn: JoinHandle<(Result<(), String>, Instant)>,
}

/// An h2c connection with hyper's default client settings.
async fn h2_connect(gw: &Gateway) -> H2Conn {
    h2_connect_with(
        gw,
        &hyper::client::conn::http2::Builder::new(TokioExecutor::new()),
    )
    .await
}

/// An h2c connection made with `builder`; every step has a timeout.
pub(crate) async fn h2_connect_with(
    gw: &Gateway,
    builder: &hyper::client::conn::http2::Builder<TokioExecutor>,
) -> H2Conn {
    let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(gw.addr))
        .await
        .expect("connect: timed out")
        .expect("connect to the gateway");
    let _ = stream.set_nodelay(true);
    let (send, conn) = tokio::time::timeout(IO_TIMEOUT, builder.handshake(TokioIo::new(stream)))
        .await
        .expect("h2 handshake: timed out")
        .unwrap_or_else(|e| panic!("h2 handshake: {e}\nlogs:\n{}", gw.logs()));
    let conn = tokio::spawn(async move {
        let res = conn.await.map_err(|e| e.to_string());
        (res, Instant::now())
    });
    H2Conn { send, conn }
}

impl H2Conn {
    /// Waits until the connection ended cleanly, at the latest at `deadline`;
    /// returns when it ended.
    async fn ended_by(self, deadline: Instant, gw: &Gateway, what: &str) -> Instant {
        let (res, at) = tokio::time::timeout_at(deadline, self.conn)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{what}: the h2 connection was still open at the deadline\nlogs:\n{}",
                    gw.logs()
                )
            })
            .expect("connection task");
        assert_eq!(res, Ok(()), "{what}: the h2 connection ended with an error");
        assert!(self.send.is_closed(), "{what}: SendRequest not closed");
        at
    }
}

/// GET `path` on `send`: `Err` when the client refused to send it (it saw a
/// GOAWAY) or the stream was refused; otherwise the status and the whole body.
/// Every step has a timeout, and a body that fails is a failed test.
async fn h2_get(
    send: &mut SendRequest<Full<Bytes>>,
    path: &str,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    tokio::time::timeout(IO_TIMEOUT, send.ready())
        .await
        .expect("h2 ready: timed out")?;
    let req = Request::get(format!("http://test.local{path}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let res = tokio::time::timeout(IO_TIMEOUT, send.send_request(req))
        .await
        .expect("h2 response: timed out")?;
    let status = res.status();
    let body = tokio::time::timeout(IO_TIMEOUT, res.into_body().collect())
        .await
        .expect("h2 body: timed out")
        .unwrap_or_else(|e| panic!("{path}: the body of an accepted stream failed: {e}"))
        .to_bytes();
    Ok((status, body))
}

/// The request on a connection that must be served.
async fn must_get(send: &mut SendRequest<Full<Bytes>>, path: &str, gw: &Gateway) {
    let (status, body) = h2_get(send, path)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}\nlogs:\n{}", gw.logs()));
    assert_eq!(status, StatusCode::OK, "{path}: {body:?}");
    assert_eq!(body, path);
}

/// Requests the origin received whose target starts with `prefix`.
fn count(origin: &Origin, prefix: &str) -> usize {
    origin
        .records()
        .iter()
        .filter(|r| r.head.target().starts_with(prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2_connection_gets_goaway_after_keepalive_timeout() {
    let origin = Origin::start(echo).await;
    let gw = gateway(&origin, "keepalive_timeout = \"1s\"").await;
    let mut c = h2_connect(&gw).await;
    must_get(&mut c.send, "/idle/1", &gw).await;
    let answered = Instant::now();

    // Not early: idle checks run every 1s and close only after a whole interval
    // without a request, so well after the answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !c.conn.is_finished() && !c.send.is_closed(),
        "the h2 connection was closed 0.5s after its request (keepalive_timeout 1s)\nlogs:\n{}",
        gw.logs()
    );
    // Closed between 1x and 2x keepalive_timeout after the last request: allow 4s.
    let ended = c
        .ended_by(answered + Duration::from_secs(4), &gw, "idle")
        .await;
    let after = ended - answered;
    assert!(
        after >= Duration::from_millis(900),
        "GOAWAY only {after:?} after the last request (keepalive_timeout 1s)"
    );

    // The gateway still serves new connections.
    let mut c2 = h2_connect(&gw).await;
    must_get(&mut c2.send, "/idle/2", &gw).await;
    assert_eq!(count(&origin, "/idle/"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connection_ends_after_max_requests_per_connection() {
    let origin = Origin::start(echo).await;
    let gw = gateway(&origin, "max_requests_per_connection = 3").await;
    let mut c = h2_connect(&gw).await;
    for i in 1..=3 {
        must_get(&mut c.send, &format!("/first/{i}"), &gw).await;
    }
    // keepalive_timeout is the default 60s: only the request limit ends it.
    let mut send = c.send.clone();
    c.ended_by(Instant::now() + Duration::from_secs(3), &gw, "max requests")
        .await;
    // The ended connection takes no fourth request.
    assert!(
        h2_get(&mut send, "/first/4").await.is_err(),
        "a 4th request was served on a connection that had its 3"
    );

    let mut c2 = h2_connect(&gw).await;
    must_get(&mut c2.send, "/second/1", &gw).await;
    assert_eq!(count(&origin, "/first/"), 3, "{:#?}", origin.records());
    assert_eq!(count(&origin, "/second/"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_h2_connection_ends_after_max_connection_lifetime() {
    let origin = Origin::start(echo).await;
    let gw = gateway(&origin, "max_connection_lifetime = \"1s\"").await;
    let opened = Instant::now();
    let mut c = h2_connect(&gw).await;
    let deadline = opened + Duration::from_secs(4);

    // A request every 200ms: never idle. Stop once the client saw the GOAWAY.
    let mut served = 0;
    let mut refused = None;
    for i in 0.. {
        if c.conn.is_finished() || c.send.is_closed() || Instant::now() >= deadline {
            break;
        }
        let path = format!("/life/{i}");
        match h2_get(&mut c.send, &path).await {
            Ok((status, body)) => {
                // Accepted before the GOAWAY: answered in full.
                assert_eq!(status, StatusCode::OK, "{path}: {body:?}");
                assert_eq!(body, path);
                served += 1;
            }
            Err(e) => {
                // Sent as the GOAWAY came: refused, never forwarded (checked below).
                refused = Some(format!("{path}: {e}"));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ended = c.ended_by(deadline, &gw, "lifetime").await;
    let lived = ended - opened;
    assert!(
        lived >= Duration::from_millis(900),
        "GOAWAY after {lived:?} (max_connection_lifetime 1s); refused: {refused:?}"
    );
    // Requests ran for ~1s, one every ~200ms.
    assert!(
        served >= 3,
        "only {served} requests served; refused: {refused:?}"
    );
    // No request reached the origin without its 200 coming back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(&origin, "/life/"),
        served,
        "refused: {refused:?}; records: {:#?}",
        origin.records()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_waiting_for_its_response_keeps_h2_connection_open() {
    // Answers after 2.5s: idle checks (every 1s from the connection's start) pass
    // while the stream waits.
    let origin =
        Origin::start(|r| Action::Delay(Duration::from_millis(2500), Box::new(echo(r)))).await;
    let gw = gateway(&origin, "keepalive_timeout = \"1s\"").await;
    let mut c = h2_connect(&gw).await;
    let sent = Instant::now();
    must_get(&mut c.send, "/slow/1", &gw).await;
    assert!(sent.elapsed() >= Duration::from_millis(2400));

    // hyper's client refuses a request once it has seen a GOAWAY (a graceful one
    // leaves open streams running, so the answer above cannot tell). Counting
    // the waiting stream as idle would have sent one at the 2s check; the next
    // check at 3s sees this request, so it must be served.
    must_get(&mut c.send, "/slow/2", &gw).await;
    let answered = Instant::now();

    // Idle from here: closed within a couple of checks.
    c.ended_by(
        answered + Duration::from_secs(4),
        &gw,
        "after slow responses",
    )
    .await;
    assert_eq!(count(&origin, "/slow/"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_sending_its_body_keeps_h2_connection_open() {
    // The head comes at once, the body in 10 pieces over ~2.5 s: a stream whose
    // body is still being sent is not idle, so no GOAWAY is sent meanwhile.
    let origin = Origin::start(|_| Action::Drip {
        head: b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n".to_vec(),
        chunk: b"hello".to_vec(),
        every: Duration::from_millis(250),
        count: 10,
    })
    .await;
    let gw = gateway(&origin, "keepalive_timeout = \"1s\"").await;
    let mut c = h2_connect(&gw).await;
    let (status, body) = h2_get(&mut c.send, "/stream/1")
        .await
        .unwrap_or_else(|e| panic!("/stream/1: {e}\nlogs:\n{}", gw.logs()));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), 50, "{body:?}");
    // A GOAWAY during the body (at the 1 s or 2 s check) would make hyper's
    // client refuse this one.
    let res = h2_get(&mut c.send, "/stream/2").await;
    assert!(
        res.is_ok(),
        "/stream/2 refused: a GOAWAY came while a body was being sent\nlogs:\n{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_stream_is_closed_at_send_timeout() {
    // 16 MiB in 32 KiB pieces: far more than the client's 64 KiB stream window,
    // which it never opens again (it does not read the body), and than the
    // socket buffers between the origin and the gateway.
    let origin = Origin::start(|_| Action::Drip {
        head: format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            512 * 32 * 1024
        )
        .into_bytes(),
        chunk: vec![b'x'; 32 * 1024],
        every: Duration::from_millis(2),
        count: 512,
    })
    .await;
    let gw = gateway(&origin, "send_timeout = \"1s\"").await;
    // hyper's client opens a 2 MiB stream window by default: a small one here.
    let mut c = h2_connect_with(
        &gw,
        hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535),
    )
    .await;
    tokio::time::timeout(IO_TIMEOUT, c.send.ready())
        .await
        .expect("h2 ready: timed out")
        .expect("h2 ready");
    let req = Request::get("http://test.local/big")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let res = tokio::time::timeout(IO_TIMEOUT, c.send.send_request(req))
        .await
        .expect("h2 response: timed out")
        .expect("h2 response");
    assert_eq!(res.status(), StatusCode::OK);
    // The body is held, never read. The gateway closes the connection once its
    // response has waited for the window for send_timeout...
    let ended = tokio::time::timeout(Duration::from_secs(8), c.conn).await;
    assert!(
        ended.is_ok(),
        "the connection of a client that stopped reading is still open\nlogs:\n{}",
        gw.logs()
    );
    drop(res);
    // ...and the upstream exchange behind it is cancelled.
    origin
        .wait_until("the upstream stream cut", |o| {
            o.drips()
                .iter()
                .any(|d| matches!(d, crate::support::origin::DripEnd::PeerGone(_)))
        })
        .await;
}
