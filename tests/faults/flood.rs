//! Connection flood: the proxy listener held at `[server] max_connections` and
//! pushed beyond it. Excess connections get the documented 503 `overloaded` (or
//! a close), the admin listener's `/healthz` keeps answering within 100 ms, and
//! the gateway neither spins nor grows its memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::support::{Action, Client, Origin, ok};
use crate::util::{Proc, Raw, Read, get, get_once, median_max, routes, serial};

/// `[server] max_connections` of the gateway under test.
const CAP: usize = 200;

/// `[server] connection_wait`: excess connections are shed one per wait.
const CONNECTION_WAIT: Duration = Duration::from_millis(20);

/// Connections opened at once beyond the cap, for the 503 check.
const EXCESS: usize = 60;

/// The admin listener must answer within this while the proxy listener is full.
const HEALTHZ_BOUND: Duration = Duration::from_millis(100);

/// Stated bound on the gateway's CPU use, idle and flooded, as a share of a core.
const MAX_CPU_SHARE: f64 = 0.20;

/// Stated bound on the gateway's resident memory growth, flooded vs idle.
const MAX_RSS_GROWTH_KIB: u64 = 16 * 1024;

/// How one excess connection was answered.
fn excess_verdict(read: &Read) -> Result<&'static str, String> {
    match read {
        Read::Response(res) => {
            let json = serde_json::from_slice::<serde_json::Value>(&res.body.data);
            let good = res.status == 503
                && res.cause() == Some("overloaded")
                && res.head.get("retry-after") == Some("1")
                && res
                    .head
                    .get("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                && json.is_ok_and(|j| j["error"] == "overloaded" && j["status"] == 503);
            if good {
                Ok("503")
            } else {
                Err(format!("not the documented 503: {}", res.dump()))
            }
        }
        Read::Closed => Ok("close"),
        Read::Silent => Err("neither answered nor closed".to_owned()),
        Read::Broken(why) => Err(why.clone()),
    }
}

/// One excess connection: connect, optionally send a request, read the answer.
async fn excess(addr: std::net::SocketAddr, send_first: bool, wait: Duration) -> Read {
    let mut c = match Raw::connect(addr, wait).await {
        Ok(c) => c,
        Err(e) => return Read::Broken(format!("connect: {e}")),
    };
    if send_first && !c.send(&get("/excess"), wait).await {
        return Read::Closed;
    }
    c.read("GET").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood() {
    let _serial = serial().await;
    let origin = Origin::start(|_| Action::Respond(ok("fine"))).await;
    let p = Proc::run(
        &format!(
            "max_connections = {CAP}\nconnection_wait = \"{}ms\"\nheader_timeout = \"60s\"",
            CONNECTION_WAIT.as_millis()
        ),
        &routes(&origin),
    )
    .await;
    let admin = p.gw.admin_addr();
    for i in 0..20 {
        match get_once(p.gw.addr, &format!("/warm/{i}"), Duration::from_secs(5)).await {
            Read::Response(res) if res.status == 200 => {}
            other => panic!("warm-up request {i}: {other:?}"),
        }
    }
    // The warm-up connections' slots come back once the gateway sees them close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle = p.rss_kib();
    let cpu_idle = p.cpu_share(Duration::from_secs(1)).await;

    // Fill every slot with a keep-alive connection that got its answer (so the
    // gateway has surely accepted it), and hold them.
    let mut holders = Vec::with_capacity(CAP);
    for chunk in 0..CAP.div_ceil(50) {
        let n = 50.min(CAP - chunk * 50);
        let batch = futures_util::future::join_all((0..n).map(|j| {
            let addr = p.gw.addr;
            async move {
                let mut c = Client::connect(addr).await;
                c.send(&get(&format!("/hold/{chunk}/{j}"))).await;
                let res = c.response().await;
                assert_eq!(res.status, 200, "holder {chunk}/{j}: {}", res.dump());
                c
            }
        }))
        .await;
        holders.extend(batch);
    }

    // Beyond the cap: half the clients send a request first, half only listen.
    let wait = Duration::from_secs(10) + CONNECTION_WAIT * u32::try_from(EXCESS).unwrap_or(1000);
    let started = Instant::now();
    let answers =
        futures_util::future::join_all((0..EXCESS).map(|i| excess(p.gw.addr, i % 2 == 0, wait)))
            .await;
    let shed_in = started.elapsed();
    let mut shed_503 = 0;
    let mut shed_close = 0;
    let mut wrong = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        match excess_verdict(a) {
            Ok("503") => shed_503 += 1,
            Ok(_) if i % 2 == 0 => shed_close += 1,
            // A client that sent nothing reads the whole best-effort answer.
            Ok(_) => wrong.push(format!("silent excess #{i}: closed without the 503")),
            Err(why) => wrong.push(format!("excess #{i}: {why}")),
        }
    }
    assert!(wrong.is_empty(), "excess connections: {wrong:#?}");

    // Keep flooding (below the shed rate, so the backlog stays short) while the
    // admin listener, CPU and memory are measured.
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        let addr = p.gw.addr;
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let send_first = i % 2 == 0;
                tasks.push(tokio::spawn(async move {
                    (
                        send_first,
                        excess(addr, send_first, Duration::from_secs(10)).await,
                    )
                }));
                i += 1;
                tokio::time::sleep(CONNECTION_WAIT + Duration::from_millis(5)).await;
            }
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.expect("flood connection task"));
            }
            results
        })
    };
    let mut healthz = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let mut c = Client::connect(admin).await;
        c.send(b"GET /healthz HTTP/1.1\r\nHost: admin.local\r\nConnection: close\r\n\r\n")
            .await;
        let res = c.response().await;
        let took = t.elapsed();
        assert_eq!(res.status, 200, "/healthz under flood: {}", res.dump());
        assert_eq!(res.body.text(), r#"{"status":"ok"}"#, "{}", res.dump());
        healthz.push(took);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_flooded = p.cpu_share(Duration::from_secs(1)).await;
    let rss_flooded = p.rss_kib();
    // The proxy listener is still full: a normal request is shed.
    let during = excess(p.gw.addr, true, Duration::from_secs(10)).await;
    stop.store(true, Ordering::SeqCst);
    let flood_results = tokio::time::timeout(Duration::from_secs(30), flooder)
        .await
        .expect("the flood connections ended")
        .expect("flooder task");
    p.assert_alive("the flood");
    let mut flood_503 = 0;
    let mut flood_wrong = Vec::new();
    for (i, (send_first, r)) in flood_results.iter().enumerate() {
        match excess_verdict(r) {
            Ok("503") => flood_503 += 1,
            Ok(_) if *send_first => {}
            Ok(_) => flood_wrong.push(format!("silent flood #{i}: closed without the 503")),
            Err(why) => flood_wrong.push(format!("flood #{i}: {why}")),
        }
    }

    // Release the slots: normal service resumes.
    drop(holders);
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let r = get_once(p.gw.addr, "/after", Duration::from_secs(5)).await;
        match &r {
            Read::Response(res) if res.status == 200 => break r,
            _ if Instant::now() > deadline => break r,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };

    let (hz_median, hz_max) = median_max(&healthz);
    eprintln!(
        "flood: cap {CAP} held; {EXCESS} excess answered in {shed_in:?} ({shed_503} × 503 overloaded, {shed_close} × close); \
         {} more while measuring ({flood_503} × 503); /healthz under flood median {hz_median:?}, max {hz_max:?} \
         (bound {HEALTHZ_BOUND:?}); CPU idle {:.1}%, flooded {:.1}% of a core (bound {:.0}%); \
         RSS idle {rss_idle} KiB, flooded {rss_flooded} KiB",
        flood_results.len(),
        cpu_idle * 100.0,
        cpu_flooded * 100.0,
        MAX_CPU_SHARE * 100.0
    );
    assert!(
        flood_wrong.is_empty(),
        "flood connections: {flood_wrong:#?}"
    );
    let during = excess_verdict(&during);
    assert!(during.is_ok(), "a request at the cap: {during:?}");
    assert!(
        hz_max < HEALTHZ_BOUND,
        "/healthz took up to {hz_max:?} under flood (all: {healthz:?})"
    );
    assert!(
        cpu_idle < MAX_CPU_SHARE && cpu_flooded < MAX_CPU_SHARE,
        "CPU idle {cpu_idle:.3}, flooded {cpu_flooded:.3} of a core"
    );
    assert!(
        rss_flooded.saturating_sub(rss_idle) < MAX_RSS_GROWTH_KIB,
        "RSS grew from {rss_idle} KiB to {rss_flooded} KiB under flood"
    );
    match after {
        Read::Response(res) if res.status == 200 => {}
        other => panic!("after the flood, a normal request got {other:?}"),
    }
}
