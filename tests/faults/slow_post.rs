//! Slow POST: a request head announcing a 100 000-byte body, then the body at a
//! few bytes per second. The gateway must end it — a 408 `client_timeout` or a
//! close — within its request body timeouts (issue #6 item 1: a request body idle
//! timeout and a minimum upload rate), and release the upstream connection the
//! upload was streaming into (the origin sees it closed).

use std::time::Duration;

use tokio::time::Instant;

use crate::util::{Proc, Raw, Read, Sink, routes_to, serial};

/// The gateway's request body timeouts (`[server]`): the longest silence
/// between two pieces of the body (2 s), and the slowest average upload
/// accepted (1 KiB/s) once [`MIN_RATE_AFTER`] has passed.
const BODY_TIMEOUTS: &str = "client_body_timeout = \"2s\"\nclient_body_min_rate = \"1KiB\"\nclient_body_min_rate_after = \"4s\"";

/// `client_body_min_rate_after`: a drip that is never silent for 2 s is ended by
/// the rate, not before this.
const MIN_RATE_AFTER: Duration = Duration::from_secs(4);

/// When the gateway must have ended the upload: past the idle timeout or the
/// rate's grace, with slack for a loaded machine.
const BOUND: Duration = Duration::from_secs(10);

/// The announced body.
const LENGTH: usize = 100_000;

/// The drip: this many bytes every [`EVERY`] (a few bytes per second: never
/// idle for the idle timeout, far below any sane minimum rate).
const BYTES: usize = 2;
const EVERY: Duration = Duration::from_millis(500);

/// How the upload proceeds after its head.
#[derive(Debug, Clone, Copy)]
enum Upload {
    /// [`BYTES`] every [`EVERY`]: never silent for long, far too slow.
    Drip,
    /// [`BYTES`] once, then silence.
    Stall,
}

/// Runs one slow upload against a gateway in front of a [`Sink`]; asserts the
/// gateway ended it with a 408 `client_timeout` (or a close) within [`BOUND`]
/// and closed the upstream connection; returns a line for the report.
async fn slow_upload(upload: Upload) -> String {
    let sink = Sink::start().await;
    let p = Proc::run(BODY_TIMEOUTS, &routes_to(&sink.url())).await;
    let mut c = Raw::connect(p.gw.addr, EVERY).await.expect("connect");
    let head =
        format!("POST /upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: {LENGTH}\r\n\r\n");
    assert!(
        c.send(head.as_bytes(), Duration::from_secs(5)).await,
        "send the head"
    );
    let start = Instant::now();
    let mut sent = 0;
    // Send (per `upload`) until the gateway answers or closes; each read waits
    // `EVERY`.
    let answer = loop {
        assert!(
            start.elapsed() < BOUND,
            "{upload:?}: the gateway neither answered nor closed the upload within {BOUND:?} \
             ({sent} of {LENGTH} body bytes sent)"
        );
        let send = match upload {
            Upload::Drip => true,
            Upload::Stall => sent == 0,
        };
        if send {
            if !c.send(&[b'x'; BYTES], Duration::from_secs(5)).await {
                break Read::Closed;
            }
            sent += BYTES;
        }
        match c.read("POST").await {
            Read::Silent => continue,
            other => break other,
        }
    };
    let ended_after = start.elapsed();
    if let Upload::Drip = upload {
        // Never silent for the idle timeout: only the rate may end it.
        assert!(
            ended_after + Duration::from_millis(500) >= MIN_RATE_AFTER,
            "a drip (never silent for 2 s) was ended after {ended_after:?}, before the rate applies"
        );
    }
    let shown = match &answer {
        Read::Response(res) => {
            assert_eq!(res.status, 408, "{upload:?}: {}", res.dump());
            assert_eq!(res.cause(), Some("client_timeout"), "{}", res.dump());
            format!("{} {}", res.status, res.cause().unwrap_or_default())
        }
        Read::Closed => "close".to_owned(),
        other => panic!("{upload:?}: a slow upload got {other:?}"),
    };
    // The upstream connection the upload was streaming into is closed too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sink.ended().len() < sink.accepted() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ended = sink.ended();
    assert_eq!(
        ended.len(),
        sink.accepted(),
        "{upload:?}: the gateway still holds the upstream connection of the timed-out upload"
    );
    assert!(
        sink.accepted() <= 1,
        "{upload:?}: more than one upstream connection"
    );
    p.assert_alive("a slow upload");
    format!(
        "{upload:?}: {shown} after {ended_after:?} ({sent} of {LENGTH} body bytes sent); \
         upstream connections {} accepted, {} closed",
        sink.accepted(),
        ended.len()
    )
}

/// A body arriving at a few bytes per second: the minimum upload rate ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_post() {
    let _serial = serial().await;
    let line = slow_upload(Upload::Drip).await;
    eprintln!("slow_post: {line}");
}

/// A body that stops arriving: the body idle timeout ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_post() {
    let _serial = serial().await;
    let line = slow_upload(Upload::Stall).await;
    eprintln!("stalled_post: {line}");
}
