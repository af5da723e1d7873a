//! The proxy against real origins on 127.0.0.1: called directly with `oneshot`, and
//! served by axum behind a plain `Router::fallback_service`, asked by a raw TCP client.
//!
//! Origins record what they received (raw request heads, connection opens and
//! closes) so the tests assert the bytes that went upstream, not just the answer.
#![allow(clippy::expect_used)] // test helpers outside #[test] fns

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use portcullis_core::{Cause, SelectedEndpoint};
use portcullis_proxy::{Proxy, ProxyBody, ProxyClient, ProxyConfig, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tower::ServiceExt;

/// The bound on every network wait of these tests.
const WAIT: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

// === raw origin ===

/// What a raw origin saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Open(usize),
    Head { conn: usize, head: String },
    Closed(usize),
}

/// How a raw origin answers one request head.
enum Reply {
    /// Writes these bytes.
    Send(Vec<u8>),
    /// Writes these bytes and closes the connection.
    SendThenClose(Vec<u8>),
    /// Never answers; waits for the peer to close.
    Silent,
    /// Waits for the notify, then writes these bytes.
    Hold(Arc<Notify>, Vec<u8>),
    /// Writes `first`; if the peer does not close within a second, writes `rest`
    /// and keeps the connection.
    Partial { first: Vec<u8>, rest: Vec<u8> },
}

struct RawOrigin {
    addr: SocketAddr,
    events: mpsc::Receiver<Event>,
}

impl RawOrigin {
    async fn start(script: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let (tx, events) = mpsc::channel(256);
        let script = Arc::new(script);
        tokio::spawn(async move {
            let ids = AtomicUsize::new(1);
            while let Ok((stream, _)) = listener.accept().await {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let tx = tx.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let _ = tx.send(Event::Open(id)).await;
                    serve_raw(stream, id, &tx, &*script).await;
                    let _ = tx.send(Event::Closed(id)).await;
                });
            }
        });
        Self { addr, events }
    }

    fn upstream(&self) -> Upstream {
        Upstream::parse(&format!("http://{}", self.addr)).expect("origin url")
    }

    async fn next(&mut self) -> Event {
        within("an origin event", self.events.recv())
            .await
            .expect("origin alive")
    }

    /// The next event, which must be a request head: (connection id, head).
    async fn next_head(&mut self) -> (usize, String) {
        loop {
            match self.next().await {
                Event::Head { conn, head } => return (conn, head),
                Event::Open(_) => continue,
                other => panic!("expected a request head, got {other:?}"),
            }
        }
    }
}

async fn serve_raw(
    mut stream: TcpStream,
    id: usize,
    tx: &mpsc::Sender<Event>,
    script: &(dyn Fn(&str) -> Reply + Send + Sync),
) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let reply = script(&head);
        let _ = tx.send(Event::Head { conn: id, head }).await;
        match reply {
            Reply::Send(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::SendThenClose(bytes) => {
                let _ = stream.write_all(&bytes).await;
                return;
            }
            Reply::Silent => {
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            Reply::Hold(notify, bytes) => {
                notify.notified().await;
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::Partial { first, rest } => {
                if stream.write_all(&first).await.is_err() {
                    return;
                }
                let mut one = [0u8; 1];
                match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut one)).await {
                    Ok(Ok(0) | Err(_)) => return,
                    Ok(Ok(_)) => panic!("the proxy sent bytes in the middle of a response"),
                    Err(_) => {
                        if stream.write_all(&rest).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Reads one request head (no bodies on raw origins); `None` at EOF.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            return Some(String::from_utf8(head).expect("ascii head"));
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The request line of a raw head.
fn request_line(head: &str) -> &str {
    head.split("\r\n").next().unwrap_or_default()
}

/// Every value of header `name` in a raw head, in order.
fn header_values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn ok_response(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const TRAILER_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n";

fn redirect_response(origin: SocketAddr) -> Vec<u8> {
    format!(
        "HTTP/1.1 302 Found\r\nlocation: http://{origin}/elsewhere?y=%2F\r\nset-cookie: s=1\r\ncontent-length: 5\r\n\r\nmoved"
    )
    .into_bytes()
}

// === helpers ===

fn client(config: ProxyConfig) -> ProxyClient {
    ProxyClient::new(config).expect("valid proxy config")
}

fn proxy_to(upstream: Upstream, config: ProxyConfig) -> Proxy {
    Proxy::new(client(config), vec![upstream])
}

fn get(target: &str) -> Request<Empty<Bytes>> {
    Request::get(target)
        .header("host", "client.example")
        .body(Empty::new())
        .expect("valid request")
}

async fn call<B>(proxy: &Proxy, req: Request<B>) -> http::Response<ProxyBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match within("the proxy's response", proxy.clone().oneshot(req)).await {
        Ok(res) => res,
        Err(never) => match never {},
    }
}

async fn body_string(res: http::Response<ProxyBody>) -> String {
    let bytes = within("the response body", res.into_body().collect())
        .await
        .expect("body ok")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

/// An address nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

// === oneshot: forwarding ===

#[tokio::test]
async fn path_and_query_go_upstream_byte_for_byte() {
    let mut origin = RawOrigin::start(|_| Reply::Send(ok_response("ok"))).await;
    let proxy = proxy_to(origin.upstream(), ProxyConfig::default());

    let res = call(&proxy, get("/a//b/../c%2F?x=%20")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_string(res).await, "ok");

    let (_, head) = origin.next_head().await;
    assert_eq!(request_line(&head), "GET /a//b/../c%2F?x=%20 HTTP/1.1");
}

#[tokio::test]
async fn host_is_the_clients_by_default() {
    let mut origin = RawOrigin::start(|_| Reply::Send(ok_response("ok"))).await;
    let proxy = proxy_to(origin.upstream(), ProxyConfig::default());

    let res = call(&proxy, get("/")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (_, head) = origin.next_head().await;
    assert_eq!(header_values(&head, "host"), ["client.example"]);
}

#[tokio::test]
async fn host_is_the_upstreams_with_set_upstream_host() {
    let mut origin = RawOrigin::start(|_| Reply::Send(ok_response("ok"))).await;
    let config = ProxyConfig {
        set_upstream_host: true,
        ..ProxyConfig::default()
    };
    let proxy = proxy_to(origin.upstream(), config);

    let res = call(&proxy, get("/")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (_, head) = origin.next_head().await;
    let want = origin.addr.to_string();
    assert_eq!(header_values(&head, "host"), [want.as_str()]);
}

#[tokio::test]
async fn absolute_form_target_goes_in_origin_form_with_its_host() {
    let mut origin = RawOrigin::start(|_| Reply::Send(ok_response("ok"))).await;
    let proxy = proxy_to(origin.upstream(), ProxyConfig::default());

    let req = Request::get("http://client.example:8080/p?q=1")
        .body(Empty::<Bytes>::new())
        .expect("valid request");
    let res = call(&proxy, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (_, head) = origin.next_head().await;
    assert_eq!(request_line(&head), "GET /p?q=1 HTTP/1.1");
    assert_eq!(header_values(&head, "host"), ["client.example:8080"]);
}

/// An origin that reports each request body frame as it arrives and answers with
/// the whole body once it has ended.
async fn streaming_origin() -> (SocketAddr, mpsc::Receiver<Bytes>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("origin addr");
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let chunked = header_is(&req, "transfer-encoding", "chunked");
                        let mut body = req.into_body();
                        let mut all = Vec::new();
                        while let Some(frame) = body.frame().await {
                            if let Ok(data) = frame?.into_data() {
                                all.extend_from_slice(&data);
                                let _ = tx.send(data).await;
                            }
                        }
                        let mut res =
                            http::Response::new(http_body_util::Full::new(Bytes::from(all)));
                        res.headers_mut().insert(
                            "x-request-was-chunked",
                            http::HeaderValue::from_static(if chunked { "yes" } else { "no" }),
                        );
                        Ok::<_, hyper::Error>(res)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

fn header_is<B>(req: &Request<B>, name: &str, value: &str) -> bool {
    req.headers()
        .get(name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

#[tokio::test]
async fn streamed_request_body_arrives_intact_and_streams() {
    let (addr, mut seen) = streaming_origin().await;
    let upstream = Upstream::parse(&format!("http://{addr}")).expect("origin url");
    let proxy = proxy_to(upstream, ProxyConfig::default());

    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|data| (Ok::<_, Infallible>(Frame::data(data)), rx))
    });
    let req = Request::post("/upload")
        .header("host", "client.example")
        .body(StreamBody::new(stream))
        .expect("valid request");
    let pending = tokio::spawn({
        let proxy = proxy.clone();
        async move { call(&proxy, req).await }
    });

    // Each chunk reaches the origin before the next one is even produced.
    let chunks = ["first chunk;", "second;", &"x".repeat(70_000)];
    for chunk in chunks {
        within("send", tx.send(Bytes::from(chunk.to_owned())))
            .await
            .expect("body open");
        let mut got = Vec::new();
        while got.len() < chunk.len() {
            let data = within("the origin to get a chunk", seen.recv())
                .await
                .expect("origin alive");
            got.extend_from_slice(&data);
        }
        assert_eq!(got, chunk.as_bytes());
    }
    drop(tx);

    let res = within("the proxied exchange", pending).await.expect("task");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-request-was-chunked"], "yes");
    assert_eq!(body_string(res).await, chunks.concat());
}

#[tokio::test]
async fn response_trailers_pass() {
    let mut origin = RawOrigin::start(|_| Reply::Send(TRAILER_RESPONSE.to_vec())).await;
    let proxy = proxy_to(origin.upstream(), ProxyConfig::default());

    let res = call(&proxy, get("/t")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["trailer"], "x-checksum");
    let collected = within("the response body", res.into_body().collect())
        .await
        .expect("body ok");
    let trailers = collected.trailers().cloned().expect("a trailers frame");
    assert_eq!(trailers["x-checksum"], "abc");
    assert_eq!(trailers.len(), 1);
    assert_eq!(&collected.to_bytes()[..], b"hello");
    let (_, head) = origin.next_head().await;
    assert_eq!(request_line(&head), "GET /t HTTP/1.1");
}

#[tokio::test]
async fn upstream_redirect_is_returned_unchanged() {
    let listener_addr = Arc::new(std::sync::OnceLock::<SocketAddr>::new());
    let addr_for_script = listener_addr.clone();
    let mut origin = RawOrigin::start(move |head| {
        if request_line(head).starts_with("GET /old ") {
            let addr = addr_for_script.get().copied().expect("origin addr set");
            Reply::Send(redirect_response(addr))
        } else {
            Reply::Send(ok_response("followed"))
        }
    })
    .await;
    listener_addr.set(origin.addr).expect("set once");
    let proxy = proxy_to(origin.upstream(), ProxyConfig::default());

    let res = call(&proxy, get("/old")).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(
        res.headers()["location"],
        format!("http://{}/elsewhere?y=%2F", origin.addr).as_str()
    );
    assert_eq!(res.headers()["set-cookie"], "s=1");
    assert_eq!(body_string(res).await, "moved");

    // The proxy did not follow it: the origin saw exactly one request.
    let (_, head) = origin.next_head().await;
    assert_eq!(request_line(&head), "GET /old HTTP/1.1");
    tokio::time::sleep(Duration::from_millis(100)).await;
    while let Ok(ev) = origin.events.try_recv() {
        assert!(
            !matches!(ev, Event::Head { .. }),
            "the proxy followed the redirect: {ev:?}"
        );
    }
}

// === oneshot: errors ===

#[tokio::test]
async fn connection_refused_is_502_upstream_unreachable() {
    let addr = closed_port().await;
    let upstream = Upstream::parse(&format!("http://{addr}")).expect("url");
    let proxy = proxy_to(upstream, ProxyConfig::default());

    let req = Request::get("/x")
        .header("host", "client.example")
        .header("x-request-id", "req-42")
        .body(Empty::<Bytes>::new())
        .expect("valid request");
    let res = call(&proxy, req).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(res.headers()["portcullis-error"], "upstream_unreachable");
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["x-request-id"], "req-42");
    assert_eq!(
        res.extensions().get::<Cause>(),
        Some(&Cause::UpstreamUnreachable)
    );
    let endpoint = res
        .extensions()
        .get::<SelectedEndpoint>()
        .expect("endpoint in extensions");
    assert_eq!(&*endpoint.id, addr.to_string().as_str());
    assert_eq!(
        body_string(res).await,
        format!(
            r#"{{"error":"upstream_unreachable","status":502,"request_id":"req-42","service":null,"endpoint":"{addr}"}}"#
        )
    );
}

#[tokio::test]
async fn silent_origin_is_504_upstream_timeout() {
    let mut origin = RawOrigin::start(|_| Reply::Silent).await;
    let config = ProxyConfig {
        response_header_timeout: Duration::from_millis(200),
        ..ProxyConfig::default()
    };
    let proxy = proxy_to(origin.upstream(), config);

    let res = call(&proxy, get("/slow")).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.headers()["portcullis-error"], "upstream_timeout");
    assert_eq!(
        res.extensions().get::<Cause>(),
        Some(&Cause::UpstreamTimeout)
    );
    let endpoint = res
        .extensions()
        .get::<SelectedEndpoint>()
        .expect("endpoint");
    assert_eq!(&*endpoint.id, origin.addr.to_string().as_str());

    // The abandoned exchange's connection is closed, not pooled.
    let (conn, _) = origin.next_head().await;
    assert_eq!(origin.next().await, Event::Closed(conn));
}

#[tokio::test]
async fn connection_cap_reached_is_503_upstream_overloaded() {
    let release = Arc::new(Notify::new());
    let hold = release.clone();
    let mut origin = RawOrigin::start(move |head| {
        if request_line(head).starts_with("GET /hold ") {
            Reply::Hold(hold.clone(), ok_response("held"))
        } else {
            Reply::Send(ok_response("ok"))
        }
    })
    .await;
    let config = ProxyConfig {
        max_connections_per_upstream: 1,
        connection_wait_timeout: Duration::from_millis(100),
        ..ProxyConfig::default()
    };
    let proxy = proxy_to(origin.upstream(), config);

    let first = tokio::spawn({
        let proxy = proxy.clone();
        async move { call(&proxy, get("/hold")).await }
    });
    let (held_conn, head) = origin.next_head().await;
    assert_eq!(request_line(&head), "GET /hold HTTP/1.1");

    let res = call(&proxy, get("/second")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["portcullis-error"], "upstream_overloaded");
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(
        res.extensions().get::<Cause>(),
        Some(&Cause::UpstreamOverloaded)
    );
    assert!(res.extensions().get::<SelectedEndpoint>().is_some());

    release.notify_one();
    let res = within("the held request", first).await.expect("task");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_string(res).await, "held");

    // Once the held exchange is done its connection serves the next request.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let res = call(&proxy, get("/third")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (conn, _) = origin.next_head().await;
    assert_eq!(conn, held_conn);
}

#[tokio::test]
async fn in_flight_cap_answers_503_at_once_and_counts_response_bodies() {
    let release = Arc::new(Notify::new());
    let hold = release.clone();
    let mut origin = RawOrigin::start(move |head| {
        if request_line(head).starts_with("GET /hold ") {
            Reply::Hold(hold.clone(), ok_response("held"))
        } else {
            Reply::Send(ok_response("ok"))
        }
    })
    .await;
    let config = ProxyConfig {
        max_requests_per_upstream: 1,
        // Plenty of connections: only the in-flight cap can refuse.
        max_connections_per_upstream: 100,
        ..ProxyConfig::default()
    };
    let proxy = proxy_to(origin.upstream(), config);

    let first = tokio::spawn({
        let proxy = proxy.clone();
        async move { call(&proxy, get("/hold")).await }
    });
    let (_, head) = origin.next_head().await;
    assert_eq!(request_line(&head), "GET /hold HTTP/1.1");

    let res = call(&proxy, get("/second")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["portcullis-error"], "upstream_overloaded");
    assert_eq!(res.headers()["retry-after"], "1");
    assert!(res.extensions().get::<SelectedEndpoint>().is_some());

    // The first response's head is back, its body not yet consumed: still in
    // flight.
    release.notify_one();
    let held = within("the held request", first).await.expect("task");
    assert_eq!(held.status(), StatusCode::OK);
    let res = call(&proxy, get("/third")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Once its body is read (and dropped), the slot is free again.
    assert_eq!(body_string(held).await, "held");
    let res = call(&proxy, get("/fourth")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_string(res).await, "ok");
    let (_, head) = origin.next_head().await;
    assert_eq!(request_line(&head), "GET /fourth HTTP/1.1");
}

#[tokio::test]
async fn a_retry_on_the_same_upstream_keeps_its_in_flight_slot() {
    // One upstream, an in-flight cap of 1: the retry of a 503 goes to the same
    // upstream, which must not need a second slot.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mut origin = RawOrigin::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::Send(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown".to_vec(),
            )
        } else {
            Reply::Send(ok_response("ok"))
        }
    })
    .await;
    let config = ProxyConfig {
        max_requests_per_upstream: 1,
        ..ProxyConfig::default()
    };
    let policy = portcullis_proxy::RetryPolicy {
        on: vec![portcullis_proxy::RetryOn::GatewayError],
        attempts: Some(1),
    };
    let proxy = proxy_to(origin.upstream(), config).retry(&policy);
    let res = call(&proxy, get("/again")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_string(res).await, "ok");
    assert_eq!(origin.next_head().await.1, origin.next_head().await.1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// An upstream whose connects hang: a listener that never accepts, its backlog
/// filled, so the kernel drops further SYNs. Returns the listener and the
/// connections that fill it (keep both alive).
async fn unconnectable() -> (tokio::net::TcpListener, Vec<TcpStream>, Upstream) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fill = Vec::new();
    // A connect that does not finish at once means the backlog is full.
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fill.push(s),
            _ => break,
        }
    }
    let upstream = Upstream::parse(&format!("http://{addr}")).expect("upstream");
    (listener, fill, upstream)
}

#[tokio::test]
async fn a_route_connect_timeout_overrides_the_clients() {
    let (_listener, _fill, upstream) = unconnectable().await;
    // The client's own connect timeout would hold the request far longer than
    // the test waits (`call` gives up after a few seconds): the route's 200 ms
    // must apply.
    let config = ProxyConfig {
        connect_timeout: Duration::from_secs(60),
        ..ProxyConfig::default()
    };
    let proxy = proxy_to(upstream.clone(), config).connect_timeout(Duration::from_millis(200));
    let res = call(&proxy, get("/slow-connect")).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.headers()["portcullis-error"], "upstream_timeout");

    // Without the override, the client's (short) one applies.
    let config = ProxyConfig {
        connect_timeout: Duration::from_millis(200),
        ..ProxyConfig::default()
    };
    let res = call(&proxy_to(upstream, config), get("/slow-connect")).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.headers()["portcullis-error"], "upstream_timeout");
}

#[tokio::test]
async fn upstream_dying_mid_body_fails_the_response_body() {
    let mut origin = RawOrigin::start(|_| {
        Reply::SendThenClose(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec())
    })
    .await;
    let proxy = proxy_to(origin.upstream(), ProxyConfig::default());

    let res = call(&proxy, get("/cut")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-length"], "10");
    let collected = within("the response body", res.into_body().collect()).await;
    assert!(collected.is_err(), "a truncated body must end in an error");
    assert_eq!(origin.next().await, Event::Open(1));
    assert_eq!(origin.next_head().await.0, 1);
}

#[tokio::test]
async fn request_timeout_fails_a_body_still_streaming() {
    let mut origin = RawOrigin::start(pool_script).await;
    let config = ProxyConfig {
        request_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let proxy = proxy_to(origin.upstream(), config);

    let res = call(&proxy, get("/big")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let err = within("the response body", res.into_body().collect())
        .await
        .expect_err("the deadline passes mid-body");
    assert_eq!(err.to_string(), "upstream request timed out");
    assert_eq!(portcullis_proxy::classify(&*err), Cause::UpstreamTimeout);
    // The abandoned connection is closed.
    assert_eq!(origin.next().await, Event::Open(1));
    assert_eq!(origin.next_head().await.0, 1);
    assert_eq!(origin.next().await, Event::Closed(1));
}

// === oneshot: pool ===

fn pool_script(head: &str) -> Reply {
    if request_line(head).starts_with("GET /big ") {
        let mut first = b"HTTP/1.1 200 OK\r\ncontent-length: 20000\r\n\r\n".to_vec();
        first.extend_from_slice(&[b'a'; 1000]);
        Reply::Partial {
            first,
            rest: vec![b'b'; 19_000],
        }
    } else {
        Reply::Send(ok_response("small"))
    }
}

#[tokio::test]
async fn half_read_response_body_is_not_reused() {
    let mut origin = RawOrigin::start(pool_script).await;
    let proxy = proxy_to(origin.upstream(), ProxyConfig::default());

    let res = call(&proxy, get("/big")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let frame = within("the first frame", body.frame())
        .await
        .expect("a frame")
        .expect("frame ok");
    let data = frame.into_data().expect("a data frame");
    assert!(!data.is_empty() && data.iter().all(|b| *b == b'a'));
    drop(body);

    assert_eq!(origin.next().await, Event::Open(1));
    let (conn, _) = origin.next_head().await;
    assert_eq!(conn, 1);
    // The proxy closes the connection instead of draining it into the pool.
    assert_eq!(origin.next().await, Event::Closed(1));

    let res = call(&proxy, get("/small")).await;
    assert_eq!(body_string(res).await, "small");
    assert_eq!(origin.next().await, Event::Open(2));
    let (conn, head) = origin.next_head().await;
    assert_eq!(conn, 2);
    assert_eq!(request_line(&head), "GET /small HTTP/1.1");
}

#[tokio::test]
async fn fully_read_response_body_is_reused() {
    let mut origin = RawOrigin::start(pool_script).await;
    let proxy = proxy_to(origin.upstream(), ProxyConfig::default());

    let res = call(&proxy, get("/small")).await;
    assert_eq!(body_string(res).await, "small");
    // Let the connection go back to the pool.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let res = call(&proxy, get("/small")).await;
    assert_eq!(body_string(res).await, "small");

    assert_eq!(origin.next().await, Event::Open(1));
    assert_eq!(origin.next_head().await.0, 1);
    assert_eq!(origin.next_head().await.0, 1);
    assert!(
        origin.events.try_recv().is_err(),
        "no other connection or close"
    );
}

#[tokio::test]
async fn pool_idle_timeout_closes_the_connection() {
    let mut origin = RawOrigin::start(pool_script).await;
    let config = ProxyConfig {
        pool_idle_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let proxy = proxy_to(origin.upstream(), config);

    let res = call(&proxy, get("/small")).await;
    assert_eq!(body_string(res).await, "small");
    assert_eq!(origin.next().await, Event::Open(1));
    assert_eq!(origin.next_head().await.0, 1);
    // The origin never closes on its own: EOF here is the proxy's pool letting go.
    assert_eq!(origin.next().await, Event::Closed(1));

    // And the next request opens a new connection.
    let res = call(&proxy, get("/small")).await;
    assert_eq!(body_string(res).await, "small");
    assert_eq!(origin.next().await, Event::Open(2));
}

// === served by axum, asked over raw TCP ===

/// Serves `Router::new().fallback_service(proxy)` on a free port.
async fn serve(proxy: Proxy) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let addr = listener.local_addr().expect("gateway addr");
    let app = Router::new().fallback_service(proxy);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A response read off the wire.
#[derive(Debug)]
struct RawResponse {
    head: String,
    body: Vec<u8>,
    /// The raw trailer section of a chunked body (without the final CRLF).
    trailers: String,
}

impl RawResponse {
    fn status_line(&self) -> &str {
        request_line(&self.head)
    }

    fn header(&self, name: &str) -> Vec<&str> {
        header_values(&self.head, name)
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    within("connect", TcpStream::connect(addr))
        .await
        .expect("connect to gateway")
}

async fn read_response(stream: &mut TcpStream) -> RawResponse {
    within("a whole response", async {
        let mut buf = Vec::new();
        loop {
            if let Some(res) = parse_response(&buf) {
                return res;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "connection closed mid-response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
}

/// A complete response at the start of `buf`, if there is one.
fn parse_response(buf: &[u8]) -> Option<RawResponse> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8(buf[..end + 4].to_vec()).expect("ascii head");
    let rest = &buf[end + 4..];
    if header_values(&head, "transfer-encoding")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        let mut at = rest;
        loop {
            let line_end = find(at, b"\r\n")?;
            let size_line = std::str::from_utf8(&at[..line_end]).expect("ascii size");
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16).expect("hex chunk size");
            at = &at[line_end + 2..];
            if size == 0 {
                let trailer_end = if at.starts_with(b"\r\n") {
                    0
                } else {
                    find(at, b"\r\n\r\n")? + 2
                };
                let trailers = String::from_utf8(at[..trailer_end].to_vec()).expect("ascii");
                return Some(RawResponse {
                    head,
                    body,
                    trailers,
                });
            }
            if at.len() < size + 2 {
                return None;
            }
            body.extend_from_slice(&at[..size]);
            assert_eq!(&at[size..size + 2], b"\r\n", "chunk ends with CRLF");
            at = &at[size + 2..];
        }
    }
    let len = header_values(&head, "content-length")
        .first()
        .map_or(0, |v| v.parse::<usize>().expect("numeric content-length"));
    (rest.len() >= len).then(|| RawResponse {
        head,
        body: rest[..len].to_vec(),
        trailers: String::new(),
    })
}

#[tokio::test]
async fn served_path_query_and_host_go_upstream_byte_for_byte() {
    let mut origin = RawOrigin::start(|_| Reply::Send(ok_response("ok"))).await;
    let gateway = serve(proxy_to(origin.upstream(), ProxyConfig::default())).await;

    let mut conn = connect(gateway).await;
    conn.write_all(b"GET /a//b/../c%2F?x=%20 HTTP/1.1\r\nHost: Client.Example:8443\r\n\r\n")
        .await
        .expect("write");
    let res = read_response(&mut conn).await;
    assert_eq!(res.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(res.body, b"ok");

    let (_, head) = origin.next_head().await;
    assert_eq!(request_line(&head), "GET /a//b/../c%2F?x=%20 HTTP/1.1");
    assert_eq!(header_values(&head, "host"), ["Client.Example:8443"]);

    // The client connection is kept alive for a second request.
    conn.write_all(b"GET /second HTTP/1.1\r\nHost: client.example\r\n\r\n")
        .await
        .expect("write");
    let res = read_response(&mut conn).await;
    assert_eq!(res.status_line(), "HTTP/1.1 200 OK");
    let (_, head) = origin.next_head().await;
    assert_eq!(request_line(&head), "GET /second HTTP/1.1");
}

#[tokio::test]
async fn served_set_upstream_host_sends_the_upstream_authority() {
    let mut origin = RawOrigin::start(|_| Reply::Send(ok_response("ok"))).await;
    let config = ProxyConfig {
        set_upstream_host: true,
        ..ProxyConfig::default()
    };
    let gateway = serve(proxy_to(origin.upstream(), config)).await;

    let mut conn = connect(gateway).await;
    conn.write_all(b"GET / HTTP/1.1\r\nHost: client.example\r\n\r\n")
        .await
        .expect("write");
    let res = read_response(&mut conn).await;
    assert_eq!(res.status_line(), "HTTP/1.1 200 OK");
    let (_, head) = origin.next_head().await;
    let want = origin.addr.to_string();
    assert_eq!(header_values(&head, "host"), [want.as_str()]);
}

#[tokio::test]
async fn served_chunked_request_body_streams_to_the_origin() {
    let (addr, mut seen) = streaming_origin().await;
    let upstream = Upstream::parse(&format!("http://{addr}")).expect("origin url");
    let gateway = serve(proxy_to(upstream, ProxyConfig::default())).await;

    let mut conn = connect(gateway).await;
    conn.write_all(
        b"POST /up HTTP/1.1\r\nHost: client.example\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n",
    )
    .await
    .expect("write");
    // The first chunk is at the origin before the client sends the rest.
    let data = within("the first chunk at the origin", seen.recv())
        .await
        .expect("origin alive");
    assert_eq!(&data[..], b"hello ");
    conn.write_all(b"5\r\nworld\r\n0\r\n\r\n")
        .await
        .expect("write");

    let res = read_response(&mut conn).await;
    assert_eq!(res.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(res.header("x-request-was-chunked"), ["yes"]);
    assert_eq!(res.body, b"hello world");
}

#[tokio::test]
async fn served_response_trailers_reach_the_client() {
    let origin = RawOrigin::start(|_| Reply::Send(TRAILER_RESPONSE.to_vec())).await;
    let gateway = serve(proxy_to(origin.upstream(), ProxyConfig::default())).await;

    let mut conn = connect(gateway).await;
    conn.write_all(b"GET /t HTTP/1.1\r\nHost: client.example\r\nTE: trailers\r\n\r\n")
        .await
        .expect("write");
    let res = read_response(&mut conn).await;
    assert_eq!(res.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(res.header("transfer-encoding"), ["chunked"]);
    assert_eq!(res.body, b"hello");
    assert_eq!(res.trailers, "x-checksum: abc\r\n");
}

#[tokio::test]
async fn served_redirect_is_returned_unchanged() {
    let mut origin = RawOrigin::start(|_| {
        Reply::Send(
            b"HTTP/1.1 301 Moved Permanently\r\nlocation: /new?a=%20\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let gateway = serve(proxy_to(origin.upstream(), ProxyConfig::default())).await;

    let mut conn = connect(gateway).await;
    conn.write_all(b"GET /old HTTP/1.1\r\nHost: client.example\r\n\r\n")
        .await
        .expect("write");
    let res = read_response(&mut conn).await;
    assert_eq!(res.status_line(), "HTTP/1.1 301 Moved Permanently");
    assert_eq!(res.header("location"), ["/new?a=%20"]);
    assert!(res.body.is_empty());
    let (_, head) = origin.next_head().await;
    assert_eq!(request_line(&head), "GET /old HTTP/1.1");
}

#[tokio::test]
async fn served_connection_refused_is_502() {
    let addr = closed_port().await;
    let upstream = Upstream::parse(&format!("http://{addr}")).expect("url");
    let gateway = serve(proxy_to(upstream, ProxyConfig::default())).await;

    let mut conn = connect(gateway).await;
    conn.write_all(b"GET / HTTP/1.1\r\nHost: client.example\r\nX-Request-Id: r1\r\n\r\n")
        .await
        .expect("write");
    let res = read_response(&mut conn).await;
    assert_eq!(res.status_line(), "HTTP/1.1 502 Bad Gateway");
    assert_eq!(res.header("portcullis-error"), ["upstream_unreachable"]);
    assert_eq!(res.header("cache-control"), ["no-store"]);
    assert_eq!(
        String::from_utf8(res.body).expect("utf-8"),
        format!(
            r#"{{"error":"upstream_unreachable","status":502,"request_id":"r1","service":null,"endpoint":"{addr}"}}"#
        )
    );
}

#[tokio::test]
async fn served_silent_origin_is_504() {
    let origin = RawOrigin::start(|_| Reply::Silent).await;
    let config = ProxyConfig {
        response_header_timeout: Duration::from_millis(200),
        ..ProxyConfig::default()
    };
    let gateway = serve(proxy_to(origin.upstream(), config)).await;

    let mut conn = connect(gateway).await;
    conn.write_all(b"GET / HTTP/1.1\r\nHost: client.example\r\n\r\n")
        .await
        .expect("write");
    let res = read_response(&mut conn).await;
    assert_eq!(res.status_line(), "HTTP/1.1 504 Gateway Timeout");
    assert_eq!(res.header("portcullis-error"), ["upstream_timeout"]);
}
