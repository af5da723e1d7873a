//! Slowloris: a few thousand connections each dripping a request head, one byte
//! every 1–2 s. The gateway closes each at its header timeout, its resident
//! memory per held connection stays within a stated bound, and a normal client's
//! requests keep succeeding meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::{Action, Origin, ok};
use crate::util::{Proc, Read, get_once, median_max, routes, serial};

/// Slow connections held at once.
const CONNECTIONS: usize = 2000;

/// `[server] header_timeout` of the gateway under test.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How late after the header timeout a connection may be closed: the gateway
/// accepts 2000 connections on 2 shared cores, and its timer starts at accept.
const CLOSE_SLACK: Duration = Duration::from_secs(3);

/// Stated bound on the gateway's resident memory per held slow connection.
const MAX_KIB_PER_CONNECTION: f64 = 64.0;

/// Bound on each normal request while the slow connections are held.
const NORMAL_BOUND: Duration = Duration::from_secs(2);

/// Connections opened per [`OPEN_PACE`]: faster than the (debug) gateway
/// accepts on 2 shared cores, its accept queue overflows and connects stall
/// for a SYN retransmission (1 s).
const OPEN_BATCH: usize = 100;

/// See [`OPEN_BATCH`].
const OPEN_PACE: Duration = Duration::from_millis(100);

/// A head that never ends within the test: one byte of it is sent at a time.
const HEAD: &[u8] = b"GET /slow HTTP/1.1\r\nHost: test.local\r\nUser-Agent: slowloris\r\n\
    X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// How one slow connection ended.
#[derive(Debug)]
enum SlowEnd {
    /// Connecting failed.
    NoConnect(String),
    /// The gateway closed or reset it this long after connect, after this many
    /// bytes were sent.
    Closed(Duration, usize),
    /// Still open at the test's deadline.
    Open,
}

/// One slow client: connect, then a byte every 1–2 s until the gateway hangs up.
async fn slow_client(
    i: usize,
    gw: std::net::SocketAddr,
    connected: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
) -> SlowEnd {
    let batch = u32::try_from(i / OPEN_BATCH).unwrap_or(u32::MAX);
    tokio::time::sleep(OPEN_PACE * batch).await;
    let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(gw)).await;
    let mut stream = match stream {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return SlowEnd::NoConnect(e.to_string()),
        Err(_) => return SlowEnd::NoConnect("timed out".to_owned()),
    };
    let _ = stream.set_nodelay(true);
    let start = Instant::now();
    connected.fetch_add(1, Ordering::SeqCst);
    // Spread the drips over 1–2 s, deterministically per connection.
    let every = Duration::from_millis(1000 + (i as u64 * 7919) % 1000);
    let deadline = HEADER_TIMEOUT + CLOSE_SLACK + Duration::from_secs(2);
    let mut sent = 0;
    let mut buf = [0u8; 512];
    loop {
        let byte = &HEAD[sent % HEAD.len()..sent % HEAD.len() + 1];
        if stream.write_all(byte).await.is_err() {
            closed.fetch_add(1, Ordering::SeqCst);
            return SlowEnd::Closed(start.elapsed(), sent);
        }
        sent += 1;
        tokio::select! {
            got = stream.read(&mut buf) => {
                // End of stream, a reset, or an answer (a 408 would do): the
                // gateway is done with the connection once it closes it.
                match got {
                    Ok(0) | Err(_) => {
                        closed.fetch_add(1, Ordering::SeqCst);
                        return SlowEnd::Closed(start.elapsed(), sent);
                    }
                    Ok(_) => {
                        // Bytes came back; wait for the close that follows.
                        let rest = tokio::time::timeout(deadline, async {
                            while let Ok(n) = stream.read(&mut buf).await {
                                if n == 0 { break; }
                            }
                        }).await;
                        closed.fetch_add(1, Ordering::SeqCst);
                        return match rest {
                            Ok(()) => SlowEnd::Closed(start.elapsed(), sent),
                            Err(_) => SlowEnd::Open,
                        };
                    }
                }
            }
            () = tokio::time::sleep(every) => {
                if start.elapsed() > deadline {
                    return SlowEnd::Open;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris() {
    let _serial = serial().await;
    let origin = Origin::start(|_| Action::Respond(ok("fine"))).await;
    let p = Proc::run(
        &format!("header_timeout = \"{}s\"", HEADER_TIMEOUT.as_secs()),
        &routes(&origin),
    )
    .await;
    // Warm up: the first requests allocate pools and buffers that stay.
    for i in 0..20 {
        match get_once(p.gw.addr, &format!("/warm/{i}"), NORMAL_BOUND).await {
            Read::Response(res) if res.status == 200 => {}
            other => panic!("warm-up request {i}: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = p.rss_kib();

    // The normal client: a request on a fresh connection every 100 ms until
    // the slow ones are done.
    let stop = Arc::new(AtomicBool::new(false));
    let normal = {
        let stop = stop.clone();
        let addr = p.gw.addr;
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut bad = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                let got = get_once(addr, &format!("/normal/{i}"), NORMAL_BOUND).await;
                let took = t.elapsed();
                match got {
                    Read::Response(res) if res.status == 200 && took <= NORMAL_BOUND => {}
                    other => bad.push(format!("request {i} after {took:?}: {other:?}")),
                }
                latencies.push(took);
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (latencies, bad)
        })
    };

    let connected = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let opening = Instant::now();
    let slow: Vec<_> = (0..CONNECTIONS)
        .map(|i| tokio::spawn(slow_client(i, p.gw.addr, connected.clone(), closed.clone())))
        .collect();
    // Measure once every connection is open (before the first header timeout).
    let deadline = Instant::now() + Duration::from_secs(20);
    while connected.load(Ordering::SeqCst) < CONNECTIONS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened_in = opening.elapsed();
    // Let the gateway accept the backlog and read the first bytes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_held = p.rss_kib();
    let held = connected
        .load(Ordering::SeqCst)
        .saturating_sub(closed.load(Ordering::SeqCst));
    p.assert_alive("opening the slow connections");

    let mut ends = Vec::with_capacity(CONNECTIONS);
    for task in slow {
        let end =
            tokio::time::timeout(HEADER_TIMEOUT + CLOSE_SLACK + Duration::from_secs(30), task)
                .await
                .expect("a slow client task outlived its own deadline")
                .expect("slow client task");
        ends.push(end);
    }
    stop.store(true, Ordering::SeqCst);
    let (latencies, bad) = normal.await.expect("normal client task");
    p.assert_alive("the slowloris");

    let kib_per_conn = rss_held.saturating_sub(rss_before) as f64 / held.max(1) as f64;
    let mut close_times: Vec<Duration> = Vec::new();
    let mut early = Vec::new();
    let mut late = Vec::new();
    let mut failed = Vec::new();
    for (i, end) in ends.iter().enumerate() {
        match end {
            SlowEnd::Closed(after, sent) => {
                close_times.push(*after);
                if *after + Duration::from_millis(200) < HEADER_TIMEOUT {
                    early.push(format!("#{i} after {after:?} ({sent} bytes)"));
                }
                if *after > HEADER_TIMEOUT + CLOSE_SLACK {
                    late.push(format!("#{i} after {after:?} ({sent} bytes)"));
                }
            }
            SlowEnd::Open => late.push(format!("#{i} still open")),
            SlowEnd::NoConnect(e) => failed.push(format!("#{i}: {e}")),
        }
    }
    let (close_median, close_max) = median_max(&close_times);
    let (lat_median, lat_max) = median_max(&latencies);
    eprintln!(
        "slowloris: {CONNECTIONS} connections (opened in {opened_in:?}), {held} held at the measurement; \
         RSS {rss_before} KiB before, {rss_held} KiB with them held: {kib_per_conn:.1} KiB per connection \
         (bound {MAX_KIB_PER_CONNECTION}); closed after median {close_median:?}, max {close_max:?} \
         (header_timeout {HEADER_TIMEOUT:?}); normal requests {} (median {lat_median:?}, max {lat_max:?}), {} failed",
        latencies.len(),
        bad.len()
    );

    assert!(
        failed.is_empty(),
        "slow connections failed to connect: {failed:?}"
    );
    assert!(
        held >= CONNECTIONS * 9 / 10,
        "only {held} of {CONNECTIONS} slow connections were open at the measurement"
    );
    assert!(
        kib_per_conn < MAX_KIB_PER_CONNECTION,
        "{kib_per_conn:.1} KiB of resident memory per slow connection (bound {MAX_KIB_PER_CONNECTION})"
    );
    assert!(
        early.is_empty(),
        "{} connections closed before the header timeout: {:?}",
        early.len(),
        early.iter().take(10).collect::<Vec<_>>()
    );
    assert!(
        late.is_empty(),
        "{} connections not closed within header_timeout + {CLOSE_SLACK:?}: {:?}",
        late.len(),
        late.iter().take(10).collect::<Vec<_>>()
    );
    assert!(
        latencies.len() >= 10,
        "only {} normal requests ran",
        latencies.len()
    );
    assert!(
        bad.is_empty(),
        "normal requests failed during the slowloris: {bad:#?}"
    );
}
