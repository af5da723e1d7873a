//! R11/R13 under load, through the binary: an origin killed mid-traffic is
//! ejected within the thresholds while every request is answered through the
//! retry policy; power of two choices does not favour an endpoint that fails
//! fast; the registry's and health checker's metrics count what happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::registration::{TOKEN, api, gateway_with, put_endpoint, until_status};
use crate::support::{Action, Client, Gateway, Origin, TempDir, exchange, get, ok, response};

/// `PUT /api/v1/services/{name}` with this body; asserts 201.
async fn put_service_json(gw: &Gateway, name: &str, body: serde_json::Value) {
    let res = api(
        gw,
        "PUT",
        &format!("/api/v1/services/{name}"),
        Some(TOKEN),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.dump());
}

/// The health object of `endpoint` in `GET /api/v1/services/{service}`.
async fn health_of(gw: &Gateway, service: &str, endpoint: &str) -> serde_json::Value {
    let res = api(
        gw,
        "GET",
        &format!("/api/v1/services/{service}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let eps = res.json()["endpoints"].clone();
    eps.as_array()
        .and_then(|a| a.iter().find(|e| e["id"] == endpoint))
        .map(|e| e["health"].clone())
        .unwrap_or_else(|| panic!("no endpoint {endpoint} in {eps}"))
}

/// Waits (up to `within`) until `endpoint`'s `available` is `want`; returns when.
async fn until_available(
    gw: &Gateway,
    service: &str,
    endpoint: &str,
    want: bool,
    within: Duration,
) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        let h = health_of(gw, service, endpoint).await;
        if h["available"] == want {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{endpoint} not available={want} within {within:?}: {h}\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_killed_under_load_is_ejected_and_no_request_fails() {
    // Answers take a while, so that requests are in flight when it dies.
    let doomed = Origin::start(|r| {
        if r.head.target() == "/healthz" {
            Action::Respond(ok("up"))
        } else {
            Action::Delay(
                Duration::from_millis(20),
                Box::new(Action::Respond(ok("doomed"))),
            )
        }
    })
    .await;
    let survivor = Origin::start(|_| Action::Respond(ok("survivor"))).await;
    let state = TempDir::new();
    let gw = gateway_with(
        &state.0,
        "[[filter_sets.web]]\nretry = { on = [\"reset\", \"gateway_error\"] }\n",
    )
    .await;
    put_service_json(
        &gw,
        "web",
        json!({
            "routes": [ { "path": "/web/" } ],
            "health": { "path": "/healthz", "interval": "100ms", "timeout": "100ms",
                        "fall": 2, "rise": 1 },
            "filters": "web"
        }),
    )
    .await;
    for (id, o) in [("doomed", &doomed), ("survivor", &survivor)] {
        let res = put_endpoint(&gw, "web", id, &o.url(), "1h").await;
        assert_eq!(res.status, 201, "{}", res.dump());
    }
    for id in ["doomed", "survivor"] {
        until_available(&gw, "web", id, true, Duration::from_secs(3)).await;
    }

    // Four clients on keep-alive connections, each sending GETs back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (stop, answered, addr) = (stop.clone(), answered.clone(), gw.addr);
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut conn = Client::connect(addr).await;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let req = format!("GET /web/c{c}-{i} HTTP/1.1\r\nHost: t.local\r\n\r\n");
                conn.send(req.as_bytes()).await;
                let res = conn.response().await;
                if res.status != 200 {
                    failures.push(res.dump());
                }
                answered.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            failures
        }));
    }
    // Traffic reaches both, then one dies mid-traffic.
    doomed
        .wait_until("traffic", |o| o.records().len() >= 20)
        .await;
    let before_kill = answered.load(Ordering::Relaxed);
    doomed.kill().await;
    let killed = Instant::now();

    // Ejected within the thresholds: passively (connect errors) or by two failed
    // probes 100 ms apart, whichever comes first.
    let ejected = until_available(&gw, "web", "doomed", false, Duration::from_secs(2)).await;
    let took = ejected - killed;
    // (Measured by polling the admin API, on a machine running other tests.)
    assert!(took < Duration::from_millis(1500), "ejected after {took:?}");

    // Traffic goes on for a while after the ejection.
    let after = answered.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.load(Ordering::Relaxed) < after + 100 {
        assert!(
            Instant::now() < deadline,
            "traffic stalled after the ejection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.expect("client task"));
    }
    let total = answered.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed (kill after {before_kill}): {:#?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(total >= before_kill + 100, "only {total} requests");

    // Once ejected, the dead endpoint is not tried any more: no retries grow.
    let scrape = gw.scrape().await;
    let retried = scrape.value(
        "portcullis_upstream_retries_total",
        &[("outcome", "retried")],
    );
    for i in 0..20 {
        let res = exchange(&gw, &get(&format!("/web/after-{i}"))).await;
        assert_eq!(res.status, 200, "{}", res.dump());
        assert_eq!(res.body.text(), "survivor");
    }
    let scrape = gw.scrape().await;
    assert_eq!(
        scrape.value(
            "portcullis_upstream_retries_total",
            &[("outcome", "retried")]
        ),
        retried,
        "{}",
        scrape.text
    );
    // The health gauge and the probe counters say what happened.
    assert_eq!(
        scrape.value(
            "portcullis_endpoint_healthy",
            &[("service", "web"), ("endpoint", "doomed")]
        ),
        0.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.value(
            "portcullis_endpoint_healthy",
            &[("service", "web"), ("endpoint", "survivor")]
        ),
        1.0,
        "{}",
        scrape.text
    );
    assert!(
        scrape.value(
            "portcullis_health_probes_total",
            &[("service", "web"), ("result", "ok")]
        ) >= 2.0,
        "{}",
        scrape.text
    );
    let failed_probes: f64 = scrape
        .series("portcullis_health_probes_total")
        .into_iter()
        .filter(|s| s.labels.get("result").is_some_and(|r| r != "ok"))
        .map(|s| s.value)
        .sum();
    let ejections = scrape.value("portcullis_endpoint_ejections_total", &[("service", "web")]);
    assert!(
        failed_probes >= 1.0 || ejections >= 1.0,
        "neither a failed probe nor an ejection counted:\n{}",
        scrape.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_does_not_favour_an_endpoint_that_fails_fast() {
    // Four requests in five fail at once (never five in a row, so passive checks
    // never eject it); the healthy one takes 10 ms per answer.
    let n = Arc::new(AtomicUsize::new(0));
    let flaky = Origin::start(move |_| {
        if n.fetch_add(1, Ordering::Relaxed) % 5 == 4 {
            Action::Respond(ok("flaky"))
        } else {
            Action::Respond(response("500 Internal Server Error", &[], b"oops"))
        }
    })
    .await;
    let steady = Origin::start(|_| {
        Action::Delay(
            Duration::from_millis(10),
            Box::new(Action::Respond(ok("steady"))),
        )
    })
    .await;
    let state = TempDir::new();
    let gw = gateway_with(&state.0, "").await;
    put_service_json(
        &gw,
        "p2c",
        json!({ "routes": [ { "path": "/p2c/" } ], "balancer": "least_request" }),
    )
    .await;
    for (id, o) in [("flaky", &flaky), ("steady", &steady)] {
        let res = put_endpoint(&gw, "p2c", id, &o.url(), "1h").await;
        assert_eq!(res.status, 201, "{}", res.dump());
    }
    let res = until_status(&gw, "/p2c/warm", 200, Duration::from_secs(2)).await;
    assert_eq!(res.status, 200, "{}", res.dump());

    // Four concurrent clients: the fast failures keep the flaky endpoint's
    // in-flight count at zero, which alone would win every comparison.
    let mut clients = Vec::new();
    for c in 0..4 {
        let addr = gw.addr;
        clients.push(tokio::spawn(async move {
            let mut conn = Client::connect(addr).await;
            for i in 0..40 {
                let req = format!("GET /p2c/c{c}-{i} HTTP/1.1\r\nHost: t.local\r\n\r\n");
                conn.send(req.as_bytes()).await;
                let res = conn.response().await;
                assert!(res.status == 200 || res.status == 500, "{}", res.dump());
            }
        }));
    }
    for c in clients {
        c.await.expect("client task");
    }
    let to_flaky = flaky.records().len();
    let to_steady = steady.records().len();
    assert!(
        to_flaky * 5 < to_steady,
        "flaky got {to_flaky} requests, steady {to_steady}"
    );
}
