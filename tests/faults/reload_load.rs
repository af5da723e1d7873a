//! Reload under steady load: keep-alive clients send GETs without pause while
//! the config is reloaded ten times, alternating two valid configs whose route
//! sets a different response header and whose `[server]` differs (a listener
//! limit: every reload starts a new listener generation on the same socket and
//! drains the old one's keep-alive connections). No request may fail: zero
//! connection errors, zero non-`2xx`, and the new config serves once a reload
//! answered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::support::{Origin, ok};
use crate::util::{Proc, Raw, Read, get, get_once, routes, serial};

/// Client connections.
const CONNS: usize = 4;

/// Requests sent at least, over all connections.
const MIN_REQUESTS: usize = 1500;

/// The longest the load runs.
const MAX_RUN: Duration = Duration::from_secs(20);

/// Reloads done under the load.
const RELOADS: usize = 10;

/// Between two reloads.
const RELOAD_EVERY: Duration = Duration::from_millis(400);

/// The route's filters in config `version` (0 or 1): a response header naming
/// the version, and a request header in the second.
fn config(origin: &Origin, version: usize) -> String {
    let extra = if version == 1 {
        "[[routes.filters]]\nrequest_headers = { set = { \"x-env\" = \"reloaded\" } }\n"
    } else {
        ""
    };
    format!(
        "{}\n[[routes.filters]]\nresponse_headers = {{ set = {{ \"x-config\" = \"v{version}\" }} }}\n{extra}",
        routes(origin)
    )
}

/// The `[server]` lines of config `version`: a listener limit that differs.
fn server(version: usize) -> &'static str {
    if version == 1 {
        "header_timeout = \"11s\""
    } else {
        ""
    }
}

/// What one connection's GETs got.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    ok: usize,
    /// Connection errors: the gateway closed, reset or did not answer.
    errors: Vec<String>,
    /// Non-`2xx` responses.
    non_2xx: Vec<String>,
    /// `200`s with `Connection: close` (a handed-over listener's connections).
    closes: usize,
    /// `2xx` responses by `x-config`.
    by_config: BTreeMap<String, usize>,
}

async fn drive(
    addr: SocketAddr,
    conn: usize,
    done: Arc<AtomicBool>,
    sent: Arc<std::sync::atomic::AtomicUsize>,
) -> Tally {
    let mut t = Tally::default();
    let start = Instant::now();
    let mut c = match Raw::connect(addr, Duration::from_secs(10)).await {
        Ok(c) => Some(c),
        Err(e) => panic!("connection {conn}: connect: {e}"),
    };
    while start.elapsed() < MAX_RUN
        && !(done.load(Ordering::SeqCst) && sent.load(Ordering::SeqCst) >= MIN_REQUESTS)
    {
        let i = t.sent;
        t.sent += 1;
        sent.fetch_add(1, Ordering::SeqCst);
        let mut raw = match c.take() {
            Some(raw) => raw,
            None => match Raw::connect(addr, Duration::from_secs(10)).await {
                Ok(raw) => raw,
                Err(e) => {
                    t.errors.push(format!("c{conn}-r{i}: connect: {e}"));
                    continue;
                }
            },
        };
        if !raw
            .send(
                &get(&format!("/load/c{conn}-r{i}")),
                Duration::from_secs(10),
            )
            .await
        {
            t.errors
                .push(format!("c{conn}-r{i}: the request could not be written"));
            continue;
        }
        match raw.read("GET").await {
            Read::Response(res) if res.status == 200 => {
                t.ok += 1;
                let version = res.head.get("x-config").unwrap_or("none").to_owned();
                *t.by_config.entry(version).or_default() += 1;
                if res
                    .head
                    .get("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    // A handed-over listener's connection: a clean close.
                    t.closes += 1;
                } else {
                    c = Some(raw);
                }
            }
            Read::Response(res) => {
                t.non_2xx.push(format!("c{conn}-r{i}: {}", res.dump()));
                c = Some(raw);
            }
            other => t.errors.push(format!("c{conn}-r{i}: {other:?}")),
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_steady_load() {
    let _serial = serial().await;
    let started = Instant::now();
    let origin = Origin::start(|_| crate::support::Action::Respond(ok("fine"))).await;
    let p = Proc::run_with_token("", &config(&origin, 0)).await;

    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let drivers: Vec<_> = (0..CONNS)
        .map(|conn| tokio::spawn(drive(p.gw.addr, conn, done.clone(), sent.clone())))
        .collect();
    let mut reload_times = Vec::new();
    for n in 1..=RELOADS {
        tokio::time::sleep(RELOAD_EVERY).await;
        let version = n % 2;
        p.rewrite(server(version), &config(&origin, version));
        let t = Instant::now();
        match p.reload().await {
            Read::Response(res) if res.status == 200 => {}
            Read::Response(res) => panic!("reload {n}: {}", res.dump()),
            other => panic!("reload {n}: {other:?}"),
        }
        reload_times.push(t.elapsed());
        // The new config serves from now on.
        match get_once(p.gw.addr, "/check", Duration::from_secs(10)).await {
            Read::Response(res) => assert_eq!(
                res.head.get("x-config"),
                Some(format!("v{version}").as_str()),
                "after reload {n}: {}",
                res.dump()
            ),
            other => panic!("after reload {n}: {other:?}"),
        }
    }
    done.store(true, Ordering::SeqCst);
    let mut t = Tally::default();
    for d in drivers {
        let one = d.await.expect("a driver task");
        t.sent += one.sent;
        t.ok += one.ok;
        t.closes += one.closes;
        t.errors.extend(one.errors);
        t.non_2xx.extend(one.non_2xx);
        for (k, v) in one.by_config {
            *t.by_config.entry(k).or_default() += v;
        }
    }
    p.assert_alive("the reloads");
    eprintln!(
        "reload_under_steady_load: {RELOADS} reloads ({:?} each at most) under {CONNS} connections; sent {} / 200 {} / \
         connection errors {} / non-2xx {}; clean closes (Connection: close) {}; 200s by config {:?}; {:?}",
        reload_times.iter().max().copied().unwrap_or_default(),
        t.sent,
        t.ok,
        t.errors.len(),
        t.non_2xx.len(),
        t.closes,
        t.by_config,
        started.elapsed()
    );
    assert!(t.errors.is_empty(), "connection errors: {:#?}", t.errors);
    assert!(t.non_2xx.is_empty(), "non-2xx responses: {:#?}", t.non_2xx);
    assert_eq!(t.ok, t.sent);
    // Each reload handed the listener over: keep-alive connections were closed
    // cleanly and reopened.
    assert!(t.closes >= RELOADS, "clean closes: {}", t.closes);
    assert!(t.sent >= MIN_REQUESTS, "only {} requests sent", t.sent);
    assert!(
        t.by_config.get("v0").is_some_and(|n| *n > 0)
            && t.by_config.get("v1").is_some_and(|n| *n > 0),
        "both configs served: {:?}",
        t.by_config
    );
}
