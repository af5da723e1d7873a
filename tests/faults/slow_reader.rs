//! Slow reader: clients that ask for a large response (the origin streams
//! 50 MiB) and then never read. The gateway must not buffer the response (its
//! resident memory stays far below the response size), the upstream connections
//! such clients hold stay under `[proxy] max_connections_per_upstream` (further
//! requests get 503 `upstream_overloaded`), and the configured timeouts end the
//! exchange, which releases the upstream connection.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::{Action, Client, DripEnd, Origin, ok};
use crate::util::{Proc, Read, get, get_once, routes, serial};

/// The response the origin streams.
const SIZE: u64 = 50 << 20;

/// Its pieces: `SIZE / PIECE` of them, one per millisecond at most.
const PIECE: usize = 64 << 10;

/// `[proxy] max_connections_per_upstream` of the gateway under test.
const UPSTREAM_CAP: usize = 3;

/// `[proxy] request_timeout`: the whole exchange, response body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// `[proxy] body_idle_timeout`: the wait for the next piece of the upstream body.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// How late after its timeout an exchange may end.
const SLACK: Duration = Duration::from_secs(4);

/// Stated bound on the gateway's resident memory growth with the slow readers
/// held (three of them stalled on 50 MiB each would be 150 MiB if buffered).
const MAX_RSS_GROWTH_KIB: u64 = 16 * 1024;

async fn origin() -> Origin {
    Origin::start(|r| {
        if r.head.target().starts_with("/big") {
            Action::Drip {
                head: format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes(),
                chunk: vec![b'x'; PIECE],
                every: Duration::from_millis(1),
                count: usize::try_from(SIZE).unwrap_or(usize::MAX) / PIECE,
            }
        } else {
            Action::Respond(ok("fine"))
        }
    })
    .await
}

async fn gateway(origin: &Origin) -> Proc {
    Proc::run(
        "send_timeout = \"3s\"",
        &format!(
            "{}\n[proxy]\nmax_connections_per_upstream = {UPSTREAM_CAP}\nconnection_wait_timeout = \"500ms\"\n\
             request_timeout = \"{}s\"\nbody_idle_timeout = \"{}s\"\n",
            routes(origin),
            REQUEST_TIMEOUT.as_secs(),
            BODY_IDLE_TIMEOUT.as_secs()
        ),
    )
    .await
}

/// A client that asks for the large response, reads its head, and stops reading.
async fn stalled_reader(p: &Proc, i: usize) -> Client {
    let mut c = Client::connect(p.gw.addr).await;
    c.send(&get(&format!("/big/{i}"))).await;
    let head = c.head().await;
    assert_eq!(head.status(), 200, "slow reader {i}: {}", head.text());
    c
}

/// Memory and the per-upstream cap while slow readers hold their exchanges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader() {
    let _serial = serial().await;
    let origin = origin().await;
    let p = gateway(&origin).await;
    for i in 0..5 {
        match get_once(p.gw.addr, &format!("/warm/{i}"), Duration::from_secs(5)).await {
            Read::Response(res) if res.status == 200 => {}
            other => panic!("warm-up request {i}: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = p.rss_kib();

    let mut readers = Vec::new();
    for i in 0..UPSTREAM_CAP {
        readers.push(stalled_reader(&p, i).await);
    }
    // Every upstream connection is now held by a reader that does not read: a
    // further request waits `connection_wait_timeout`, then gets a 503.
    let t = Instant::now();
    let over = get_once(p.gw.addr, "/over-the-cap", Duration::from_secs(10)).await;
    let waited = t.elapsed();
    // Let the stalled streams fill every buffer on the way.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss_held = p.rss_kib();
    // Every upstream connection the origin ever accepted (the warm-up's pooled
    // one included): at most the cap, although four exchanges wanted one.
    let upstream_conns = origin.connections();
    p.assert_alive("the slow readers");
    eprintln!(
        "slow_reader: {UPSTREAM_CAP} readers stalled on {} MiB each; RSS {rss_before} KiB before, {rss_held} KiB held \
         (+{} KiB, bound {MAX_RSS_GROWTH_KIB}); upstream connections accepted {upstream_conns} (cap {UPSTREAM_CAP}); \
         a request over the cap answered after {waited:?}",
        SIZE >> 20,
        rss_held.saturating_sub(rss_before)
    );
    match over {
        Read::Response(res) => {
            assert_eq!(res.status, 503, "{}", res.dump());
            assert_eq!(res.cause(), Some("upstream_overloaded"), "{}", res.dump());
            assert_eq!(res.head.get("retry-after"), Some("1"), "{}", res.dump());
        }
        other => panic!("a request over the upstream cap got {other:?}"),
    }
    assert!(
        upstream_conns <= UPSTREAM_CAP,
        "{upstream_conns} upstream connections for {UPSTREAM_CAP} slow readers and one request over the cap"
    );
    assert!(
        rss_held.saturating_sub(rss_before) < MAX_RSS_GROWTH_KIB,
        "RSS grew from {rss_before} KiB to {rss_held} KiB with {UPSTREAM_CAP} stalled {} MiB responses",
        SIZE >> 20
    );
    drop(readers);
}

/// The configured timeouts end a stalled exchange: the client's connection is
/// closed, the upstream connection is released, and the next request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_closed_at_its_timeout() {
    let _serial = serial().await;
    let origin = origin().await;
    let p = gateway(&origin).await;
    let start = Instant::now();
    let mut readers = Vec::new();
    for i in 0..UPSTREAM_CAP {
        readers.push(stalled_reader(&p, i).await);
    }
    // The upstream side: the origin sees each of its streams cut (the gateway
    // closed the upstream connection) once the exchange timed out.
    let bound = REQUEST_TIMEOUT + SLACK;
    let ended = loop {
        let drips = origin.drips();
        if drips.len() >= UPSTREAM_CAP || start.elapsed() > bound {
            break drips;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let upstream_released = start.elapsed();
    // The client side: what the kernel buffered, then the end of the stream,
    // short of the whole response (a gateway that never closed would now let
    // the whole body through).
    let mut received = Vec::new();
    for mut c in readers {
        let mut got = 0u64;
        let read = c.r.read_n(SIZE, &mut |b| got += b.len() as u64).await;
        received.push((got, read.is_err()));
    }
    eprintln!(
        "slow_reader_is_closed_at_its_timeout: upstream streams ended {ended:?} after {upstream_released:?} \
         (request_timeout {REQUEST_TIMEOUT:?}); body bytes each client got before the close (and whether it was a reset): {received:?}"
    );
    assert_eq!(
        ended.len(),
        UPSTREAM_CAP,
        "the gateway still holds {} of {UPSTREAM_CAP} upstream streams {bound:?} after they stalled",
        UPSTREAM_CAP - ended.len()
    );
    assert!(
        ended
            .iter()
            .all(|e| matches!(e, DripEnd::PeerGone(n) if *n < SIZE)),
        "{ended:?}"
    );
    assert!(
        received.iter().all(|(got, _)| *got < SIZE),
        "a stalled client still got the whole response: {received:?}"
    );
    match get_once(p.gw.addr, "/after", Duration::from_secs(5)).await {
        Read::Response(res) if res.status == 200 => {}
        other => panic!("after the slow readers timed out, a request got {other:?}"),
    }
}
