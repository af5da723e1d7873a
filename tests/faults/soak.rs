//! Soak with integrity: several thousand requests of mixed methods and body
//! sizes, each with a unique `x-test-id`, over keep-alive connections, while
//! origins are killed and restarted on their port, paused, and the config is
//! reloaded. Afterwards every request has exactly one response, every `2xx`
//! carries its own request's id and body checksum (no mixing on pooled
//! connections), no `POST` reached an origin twice, and every failure is a
//! 502/503/504 naming an upstream cause.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::support::{Checksum, fill_pattern};
use crate::util::{EchoOrigin, EchoShared, Proc, Raw, Read, serial};

/// Client connections, each sending its requests one after the other.
const CONNS: usize = 8;

/// Requests each connection sends at least (it keeps going until the fault
/// schedule ends, up to [`MAX_PER_CONN`]).
const MIN_PER_CONN: usize = 250;

/// Requests each connection sends at most.
const MAX_PER_CONN: usize = 1000;

/// Pause between two requests of a connection, so the load spans the faults
/// without running away.
const PACE: Duration = Duration::from_millis(8);

/// Body sizes of `POST` and `PUT`, in turn.
const SIZES: [usize; 3] = [0, 1000, 64 << 10];

/// Origin names; the service balances over all of them.
const NAMES: [&str; 3] = ["a", "b", "c"];

/// How long a killed origin's port refuses connections.
const DOWN: Duration = Duration::from_millis(300);

/// How long a paused origin holds its answers.
const PAUSE: Duration = Duration::from_secs(1);

/// The causes a gateway-made error may name when origins die or stall.
const CAUSES: [&str; 4] = [
    "upstream_unreachable",
    "upstream_timeout",
    "no_healthy_endpoint",
    "upstream_overloaded",
];

fn config(urls: &[String], version: usize) -> String {
    let endpoints: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[proxy]\nresponse_header_timeout = \"5s\"\n\n\
         [[services]]\nname = \"svc\"\nendpoints = [{}]\n\n\
         [[routes]]\npath = \"/\"\nservice = \"svc\"\n\n\
         [[routes.filters]]\nretry = {{ on = [\"reset\", \"gateway_error\"] }}\n\
         [[routes.filters]]\nresponse_headers = {{ set = {{ \"x-config\" = \"v{version}\" }} }}\n",
        endpoints.join(", ")
    )
}

/// What one connection's requests got.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    answered: usize,
    ok: usize,
    /// Requests without a response (the connection was cut, or nothing came).
    lost: Vec<String>,
    /// `2xx` responses carrying another request's id or checksum.
    mixed: Vec<String>,
    /// Non-`2xx` responses by `METHOD STATUS CAUSE`.
    failures: BTreeMap<String, usize>,
    /// Non-`2xx` responses that are not a 502/503/504 with an upstream cause.
    bad: Vec<String>,
    /// `2xx` responses by origin.
    by_origin: BTreeMap<String, usize>,
    /// Kept-alive connections found closed (without `Connection: close`) after
    /// a failed exchange; their next request was sent again on a new one.
    silent_closes: usize,
}

impl Tally {
    fn merge(&mut self, o: Self) {
        self.sent += o.sent;
        self.answered += o.answered;
        self.ok += o.ok;
        self.silent_closes += o.silent_closes;
        self.lost.extend(o.lost);
        self.mixed.extend(o.mixed);
        self.bad.extend(o.bad);
        for (k, v) in o.failures {
            *self.failures.entry(k).or_default() += v;
        }
        for (k, v) in o.by_origin {
            *self.by_origin.entry(k).or_default() += v;
        }
    }
}

/// Request `i` of connection `conn`: its id, method and body.
fn request(conn: usize, i: usize) -> (String, &'static str, Vec<u8>) {
    let id = format!("c{conn}-r{i}");
    let method = ["GET", "POST", "PUT"][i % 3];
    let size = if method == "GET" {
        0
    } else {
        SIZES[(i / 3) % SIZES.len()]
    };
    let mut body = vec![0u8; size];
    // A different stretch of the pattern for every request.
    fill_pattern(((conn * MAX_PER_CONN + i) as u64) << 20, &mut body);
    (id, method, body)
}

async fn drive(addr: SocketAddr, conn: usize, faults_done: Arc<AtomicBool>) -> Tally {
    let mut t = Tally::default();
    let mut c: Option<Raw> = None;
    let mut i = 0;
    // The previous exchange on the current connection, for the messages.
    let mut prev = String::from("none");
    // Whether that exchange got a non-`2xx`.
    let mut prev_failed = false;
    while i < MIN_PER_CONN || (i < MAX_PER_CONN && !faults_done.load(Ordering::SeqCst)) {
        let (id, method, body) = request(conn, i);
        i += 1;
        t.sent += 1;
        tokio::time::sleep(PACE).await;
        let mut sum = Checksum::default();
        sum.update(&body);
        let expected_sum = format!("{:016x}", sum.0);
        let mut req =
            format!("{method} /soak/{id} HTTP/1.1\r\nHost: test.local\r\nx-test-id: {id}\r\n");
        if method != "GET" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(&body);
        let mut reused = c.take();
        let (mut raw, res) = loop {
            // A kept-alive connection the gateway closed after a failure (without
            // `Connection: close`): the request is sent again on a new one, once,
            // as an HTTP client does when a reused connection was closed under it.
            let was_reused = reused.is_some();
            let mut raw = match reused.take() {
                Some(raw) => raw,
                None => match Raw::connect(addr, Duration::from_secs(10)).await {
                    Ok(raw) => raw,
                    Err(e) => break (None, Err(format!("connect: {e}"))),
                },
            };
            let read = if raw.send(&bytes, Duration::from_secs(10)).await {
                raw.read(method).await
            } else {
                Read::Closed
            };
            match read {
                Read::Response(res) => break (Some(raw), Ok(res)),
                Read::Closed if was_reused && prev_failed => {
                    t.silent_closes += 1;
                    prev_failed = false;
                }
                other => break (Some(raw), Err(format!("{other:?}"))),
            }
        };
        let res = match res {
            Ok(res) => res,
            Err(e) => {
                t.lost.push(format!(
                    "{id} ({method}): {e}; previous on the connection: {prev}"
                ));
                continue;
            }
        };
        let Some(raw) = raw.take() else { continue };
        t.answered += 1;
        prev = format!(
            "{method} {} {:?} connection {:?}",
            res.status,
            res.cause(),
            res.head.get("connection")
        );
        prev_failed = !(200..300).contains(&res.status);
        if (200..300).contains(&res.status) {
            if res.head.get("x-test-id") == Some(id.as_str())
                && res.head.get("x-body-sum") == Some(expected_sum.as_str())
                && res.head.get("x-body-len") == Some(body.len().to_string().as_str())
            {
                t.ok += 1;
                let origin = res.head.get("x-origin").unwrap_or("?").to_owned();
                *t.by_origin.entry(origin).or_default() += 1;
            } else {
                t.mixed.push(format!(
                    "{id} ({method}, {} bytes, sum {expected_sum}) got {}",
                    body.len(),
                    res.head.text()
                ));
            }
        } else {
            let cause = res.cause().unwrap_or("none");
            *t.failures
                .entry(format!("{method} {} {cause}", res.status))
                .or_default() += 1;
            if !matches!(res.status, 502..=504) || !CAUSES.contains(&cause) {
                t.bad.push(format!("{id} ({method}): {}", res.dump()));
            }
        }
        let closing = res
            .head
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if !closing {
            c = Some(raw);
        }
    }
    t
}

/// Asserts that a reload was accepted.
async fn reload(p: &Proc, urls: &[String], version: usize) {
    p.rewrite("", &config(urls, version));
    match p.reload().await {
        Read::Response(res) if res.status == 200 => {}
        Read::Response(res) => panic!("reload {version}: {}", res.dump()),
        other => panic!("reload {version}: {other:?}"),
    }
}

/// Kills origin `idx`, and starts it again on its port after [`DOWN`].
async fn kill_restart(idx: usize, origins: &mut [Option<EchoOrigin>], shares: &[EchoShared]) {
    let o = origins[idx].take().expect("a running origin");
    let addr = o.addr;
    o.kill().await;
    tokio::time::sleep(DOWN).await;
    origins[idx] = Some(EchoOrigin::start(addr, NAMES[idx], &shares[idx]).await);
}

/// Holds an origin's answers for [`PAUSE`], as SIGSTOP then SIGCONT would.
async fn pause(share: &EchoShared) {
    share.paused.store(true, Ordering::SeqCst);
    tokio::time::sleep(PAUSE).await;
    share.paused.store(false, Ordering::SeqCst);
}

/// The fault schedule; returns the faults injected and the reloads done.
async fn inject(
    p: &Proc,
    urls: &[String],
    origins: &mut [Option<EchoOrigin>],
    shares: &[EchoShared],
) -> (Vec<String>, usize) {
    let mut faults = Vec::new();
    let mut reloads = 0;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (step, what) in [
        "kill a", "reload", "pause b", "kill c", "reload", "pause a", "kill b", "reload",
    ]
    .into_iter()
    .enumerate()
    {
        match what {
            "kill a" => kill_restart(0, origins, shares).await,
            "kill b" => kill_restart(1, origins, shares).await,
            "kill c" => kill_restart(2, origins, shares).await,
            "pause a" => pause(&shares[0]).await,
            "pause b" => pause(&shares[1]).await,
            _ => {
                reloads += 1;
                reload(p, urls, reloads).await;
            }
        }
        if what != "reload" {
            faults.push(format!("{what} at {:?}", start.elapsed()));
        }
        if step % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    (faults, reloads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_integrity() {
    let _serial = serial().await;
    let started = Instant::now();
    let common = EchoShared::default();
    let shares: Vec<EchoShared> = NAMES
        .iter()
        .map(|_| EchoShared {
            paused: Arc::default(),
            seen: common.seen.clone(),
        })
        .collect();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut origins = Vec::new();
    for (name, share) in NAMES.iter().zip(&shares) {
        origins.push(Some(EchoOrigin::start(any, name, share).await));
    }
    let urls: Vec<String> = origins.iter().flatten().map(EchoOrigin::url).collect();
    let p = Proc::run_with_token("", &config(&urls, 0)).await;

    let faults_done = Arc::new(AtomicBool::new(false));
    let drivers: Vec<_> = (0..CONNS)
        .map(|conn| tokio::spawn(drive(p.gw.addr, conn, faults_done.clone())))
        .collect();
    let ((faults, reloads), tallies) = tokio::join!(
        async {
            let r = inject(&p, &urls, &mut origins, &shares).await;
            faults_done.store(true, Ordering::SeqCst);
            r
        },
        async {
            let mut all = Vec::new();
            for d in drivers {
                all.push(d.await.expect("a driver task"));
            }
            all
        }
    );
    let mut t = Tally::default();
    for one in tallies {
        t.merge(one);
    }
    p.assert_alive("the soak");

    // Non-idempotent requests that reached an origin more than once.
    let seen = common.seen.lock().expect("seen").clone();
    let mut posts: HashMap<&str, usize> = HashMap::new();
    for (_, method, id) in &seen {
        if method == "POST" {
            *posts.entry(id.as_str()).or_default() += 1;
        }
    }
    let mut twice: Vec<(&str, usize)> = posts.into_iter().filter(|(_, n)| *n > 1).collect();
    twice.sort();

    // What the retries did (a GET fails only when none could be made).
    let scrape = p.gw.scrape().await;
    let retries: BTreeMap<String, f64> = scrape
        .series("portcullis_upstream_retries_total")
        .into_iter()
        .map(|s| {
            (
                format!(
                    "{}/{}",
                    s.labels.get("outcome").map_or("", String::as_str),
                    s.labels.get("reason").map_or("", String::as_str)
                ),
                s.value,
            )
        })
        .collect();
    eprintln!("soak_with_integrity: retries by outcome/reason {retries:?}");
    eprintln!(
        "soak_with_integrity: sent {} / answered {} (2xx {}) / lost {} / mixed {} / bad failures {}; \
         connections closed silently after a failure {}; failures by cause {:?}; 2xx by origin {:?}; origins saw {} requests, POSTs twice {}; \
         faults injected {} {:?}; reloads {reloads}; {:?}",
        t.sent,
        t.answered,
        t.ok,
        t.lost.len(),
        t.mixed.len(),
        t.bad.len(),
        t.silent_closes,
        t.failures,
        t.by_origin,
        seen.len(),
        twice.len(),
        faults.len(),
        faults,
        started.elapsed()
    );
    assert_eq!(t.answered + t.lost.len(), t.sent);
    assert!(
        t.lost.is_empty(),
        "requests without a response: {:#?}",
        t.lost
    );
    assert!(
        t.mixed.is_empty(),
        "responses to another request: {:#?}",
        t.mixed
    );
    assert!(t.bad.is_empty(), "wrong failures: {:#?}", t.bad);
    assert!(
        twice.is_empty(),
        "POSTs that reached origins twice: {twice:?}"
    );
    assert!(
        t.ok * 10 >= t.sent * 9,
        "fewer than 90% of the requests succeeded: {:?}",
        t.failures
    );
    assert_eq!(reloads, 3);
}
