//! Regressions for findings of the first review: framing inspection across a
//! refused upgrade, connection close after oversize heads, long pipelines,
//! routing by the target's host, CONNECT, and a stalled upstream body.

use std::time::Duration;

use crate::support::{Action, Client, Gateway, Origin, get, ok, proxy_to};

fn routes(origin: &Origin) -> String {
    format!(
        "[[services]]\nname = \"svc\"\nendpoints = [\"{}\"]\n\n[[routes]]\npath = \"/\"\nservice = \"svc\"\n",
        origin.url()
    )
}

const SMUGGLE: &[u8] = b"POST /smug HTTP/1.1\r\nHost: test.local\r\nContent-Length: 3\r\n\
    Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

/// An upgrade the upstream refuses leaves the connection speaking HTTP/1.1: the
/// framing of what follows must still be inspected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_is_inspected_after_a_refused_upgrade() {
    let origin = Origin::start(|_| Action::Respond(ok("no upgrade here"))).await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(
        b"GET /first HTTP/1.1\r\nHost: test.local\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\n\r\n",
    )
    .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    c.send(SMUGGLE).await;
    let res = c.response().await;
    assert_eq!(res.status, 400, "{}", res.dump());
    assert_eq!(res.cause(), Some("bad_framing"), "{}", res.dump());
    assert!(
        !origin.records().iter().any(|r| r.head.target() == "/smug"),
        "the smuggling request reached the origin"
    );
}

/// A 414/431 closes the connection: nothing after a refused head is trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_heads_close_the_connection() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = Gateway::run("max_uri_bytes = \"1KiB\"", &routes(&origin)).await;
    let mut c = Client::connect(gw.addr).await;
    let long = format!("/{}", "u".repeat(3000));
    c.send(&get(&long)).await;
    let res = c.response().await;
    assert_eq!(res.status, 414, "{}", res.dump());
    assert_eq!(
        res.head
            .get("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close"),
        "{}",
        res.head.text()
    );
    let _ = tokio::io::AsyncWriteExt::write_all(&mut c.w, SMUGGLE).await;
    let end = tokio::time::timeout(Duration::from_secs(5), c.r.fill()).await;
    assert!(
        matches!(end, Ok(Ok(0)) | Ok(Err(_))),
        "the connection stayed open after a 414: {end:?}"
    );
    origin.assert_untouched().await;
}

/// Any number of pipelined requests in one write is served, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_pipeline_is_served_in_order() {
    let origin = Origin::start(|r| Action::Respond(ok(&format!("got {}", r.head.target())))).await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    let mut burst = Vec::new();
    for i in 0..150 {
        burst.extend_from_slice(
            format!("GET /p{i} HTTP/1.1\r\nHost: test.local\r\n\r\n").as_bytes(),
        );
    }
    c.send(&burst).await;
    for i in 0..150 {
        let res = c.response().await;
        assert_eq!(res.status, 200, "request {i}: {}", res.dump());
        assert_eq!(res.body.text(), format!("got /p{i}"));
    }
}

/// The router picks the route by the host the request will be delivered to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_is_routed_by_its_own_host() {
    let a = Origin::start(|_| Action::Respond(ok("service a"))).await;
    let b = Origin::start(|_| Action::Respond(ok("service b"))).await;
    let rest = format!(
        "[[services]]\nname = \"a\"\nendpoints = [\"{}\"]\n\n\
         [[services]]\nname = \"b\"\nendpoints = [\"{}\"]\n\n\
         [[routes]]\nhost = \"a.example\"\npath = \"/\"\nservice = \"a\"\n\n\
         [[routes]]\nhost = \"b.example\"\npath = \"/\"\nservice = \"b\"\n",
        a.url(),
        b.url()
    );
    let gw = Gateway::run("", &rest).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(b"GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "service a");
    assert_eq!(a.only_record().await.head.get("host"), Some("a.example"));
    b.assert_untouched().await;
}

/// A reverse proxy opens no tunnels: CONNECT gets 405 and reaches no upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_405() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 405, "{}", res.dump());
    assert_eq!(res.cause(), Some("method_not_allowed"), "{}", res.dump());
    origin.assert_untouched().await;
}

/// An upstream that stops sending its body mid-way is cut off after
/// `body_idle_timeout`: the client sees an aborted response, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upstream_body_is_aborted() {
    let origin = Origin::start(|_| Action::Drip {
        head: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc".to_vec(),
        chunk: b"d".to_vec(),
        every: Duration::from_secs(30),
        count: 1,
    })
    .await;
    let gw = Gateway::run(
        "",
        &format!(
            "{}\n[proxy]\nbody_idle_timeout = \"300ms\"\n",
            routes(&origin)
        ),
    )
    .await;
    let mut c = Client::connect(gw.addr).await;
    c.send(&get("/stall")).await;
    let res = tokio::time::timeout(Duration::from_secs(8), c.response())
        .await
        .expect("the gateway must end a stalled response");
    assert_eq!(res.status, 200, "{}", res.head.text());
    assert!(!res.body.complete, "a stalled body looked complete");
    assert_eq!(res.body.len, 3);
}

/// An upgraded connection keeps its slot under `max_connections` while its
/// tunnel lives: the next connection is shed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_keeps_its_connection_slot() {
    const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\n\r\n";
    let origin = Origin::start(|_| Action::Upgrade(SWITCH.to_vec())).await;
    let gw = Gateway::run(
        "max_connections = 1\nconnection_wait = \"100ms\"",
        &routes(&origin),
    )
    .await;
    let mut ws = Client::connect(gw.addr).await;
    ws.send(
        b"GET /ws HTTP/1.1\r\nHost: test.local\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\n\r\n",
    )
    .await;
    assert_eq!(ws.head().await.status(), 101);
    ws.send(b"ping").await;
    assert_eq!(ws.r.read_exact_vec(4).await.expect("echo"), b"ping");

    let mut other = Client::connect(gw.addr).await;
    let res = other.response().await;
    assert_eq!(res.status, 503, "{}", res.dump());
    assert_eq!(res.cause(), Some("overloaded"), "{}", res.dump());

    // The tunnel still works.
    ws.send(b"pong").await;
    assert_eq!(ws.r.read_exact_vec(4).await.expect("echo"), b"pong");
}
