//! R14 metrics through the binary: `/metrics` on the admin listener, counters that
//! move by exactly the requests sent, template labels, one `unmatched` series for
//! any number of unknown paths, upstream errors by cause, auth decisions.
//!
//! The recorder is per process, so each test has its own gateway.

use crate::support::{Action, Client, Gateway, Origin, exchange, get, ok, refusing_port, service};

const REQUESTS: &str = "portcullis_http_requests_total";

/// A gateway (admin on port 0) with `/droplets/{id}` and the routes in `extra`.
async fn gateway(origin: &Origin, extra: &str) -> Gateway {
    let rest = format!(
        "{}[[routes]]\nname = \"droplets\"\npath = \"/droplets/{{id}}\"\nservice = \"svc\"\n\n{extra}\n",
        service("svc", &origin.url())
    );
    Gateway::run_with_metrics("", &rest).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_on_the_admin_listener() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = gateway(&origin, "").await;
    for path in ["/healthz", "/readyz"] {
        let res = gw.admin_get(path).await;
        assert_eq!(res.status, 200, "{path}: {}", res.dump());
    }
    let res = gw.admin_get("/metrics").await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert!(
        res.head
            .get("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "{}",
        res.head.text()
    );
    // The admin listener is not the proxy: its requests are not counted.
    let s = gw.scrape().await;
    assert_eq!(s.value(REQUESTS, &[]), 0.0, "{}", s.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_exactly_the_requests_sent_under_the_template_label() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = gateway(&origin, "").await;
    let labels = [
        ("service", "svc"),
        ("route", "/droplets/{id}"),
        ("method", "GET"),
        ("status_class", "2xx"),
    ];
    // A first request creates the series.
    exchange(&gw, &get("/droplets/0")).await;
    let before = gw.scrape_until(REQUESTS, &labels, 1.0).await;
    let start = before.value(REQUESTS, &labels);
    assert_eq!(start, 1.0, "{}", before.text);

    let mut c = Client::connect(gw.addr).await;
    for i in 0..5 {
        c.send(&get(&format!("/droplets/1?n={i}"))).await;
        assert_eq!(c.response().await.status, 200);
        c.send(&get("/droplets/2")).await;
        assert_eq!(c.response().await.status, 200);
    }
    let after = gw.scrape_until(REQUESTS, &labels, start + 10.0).await;
    assert_eq!(
        after.value(REQUESTS, &labels),
        start + 10.0,
        "{}",
        after.text
    );

    // One series for the template, no raw path anywhere.
    let series = after.series(REQUESTS);
    assert_eq!(series.len(), 1, "{series:#?}");
    assert_eq!(
        series[0]
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [
            ("method", "GET"),
            ("route", "/droplets/{id}"),
            ("service", "svc"),
            ("status_class", "2xx"),
        ]
    );
    for raw in ["/droplets/1", "/droplets/2", "/droplets/0"] {
        assert!(
            !after.text.contains(&format!("\"{raw}\"")),
            "raw path {raw} as a label:\n{}",
            after.text
        );
    }
    // Nothing in flight any more.
    assert_eq!(
        after.value("portcullis_http_requests_in_flight", &[("service", "svc")]),
        0.0,
        "{}",
        after.text
    );
    // The request duration histogram counted them too.
    let histogram = "portcullis_http_request_duration_seconds_count";
    let after = gw.scrape_until(histogram, &labels, 11.0).await;
    assert_eq!(after.value(histogram, &labels), 11.0, "{}", after.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_paths_share_one_series() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = gateway(&origin, "").await;
    exchange(&gw, &get("/droplets/1")).await;
    let unmatched = [("route", "unmatched")];
    let before = gw
        .scrape_until(REQUESTS, &[("route", "/droplets/{id}")], 1.0)
        .await;
    let series_before = before.series(REQUESTS).len();
    assert_eq!(before.value(REQUESTS, &unmatched), 0.0, "{}", before.text);

    // 1,000 distinct unknown paths on one connection; a cheap LCG makes them.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut c = Client::connect(gw.addr).await;
    let mut paths = Vec::new();
    for i in 0..1000 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let path = format!("/zz-{i}-{:016x}/{}", x, x >> 40);
        c.send(&get(&path)).await;
        let res = c.response().await;
        assert_eq!(res.status, 404, "{path}: {}", res.dump());
        paths.push(path);
    }
    let after = gw.scrape_until(REQUESTS, &unmatched, 1000.0).await;
    assert_eq!(after.value(REQUESTS, &unmatched), 1000.0, "{}", after.text);
    let series_after = after.series(REQUESTS);
    assert_eq!(series_after.len(), series_before + 1, "{series_after:#?}");
    let new: Vec<_> = series_after
        .iter()
        .filter(|s| s.labels.get("route").is_some_and(|r| r == "unmatched"))
        .collect();
    assert_eq!(new.len(), 1, "{series_after:#?}");
    assert_eq!(new[0].labels.get("service").map(String::as_str), Some(""));
    assert_eq!(
        new[0].labels.get("status_class").map(String::as_str),
        Some("4xx")
    );
    // Rejections: one series, by cause.
    let rejections = after.series("portcullis_http_rejections_total");
    assert_eq!(rejections.len(), 1, "{rejections:#?}");
    assert_eq!(
        after.value(
            "portcullis_http_rejections_total",
            &[("route", "unmatched"), ("cause", "no_route")]
        ),
        1000.0
    );
    for p in paths.iter().step_by(50) {
        assert!(!after.text.contains(p.as_str()), "{p} in /metrics");
    }
    // The scrape stays small: no per-path state.
    assert!(after.text.len() < 64 * 1024, "{} bytes", after.text.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_are_counted_by_service_and_cause() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let (_reserved, port) = refusing_port();
    let gw = gateway(
        &origin,
        &format!(
            "{}[[routes]]\npath = \"/dead\"\nservice = \"dead\"\n",
            service("dead", &format!("http://127.0.0.1:{port}"))
        ),
    )
    .await;
    let errors = "portcullis_upstream_errors_total";
    let before = gw.scrape().await;
    assert_eq!(before.value(errors, &[]), 0.0, "{}", before.text);

    let res = exchange(&gw, &get("/dead")).await;
    assert_eq!(res.status, 502, "{}", res.dump());
    assert_eq!(res.cause(), Some("upstream_unreachable"), "{}", res.dump());

    let labels = [("service", "dead"), ("cause", "upstream_unreachable")];
    let after = gw.scrape_until(errors, &labels, 1.0).await;
    assert_eq!(after.value(errors, &labels), 1.0, "{}", after.text);
    assert_eq!(after.series(errors).len(), 1, "{}", after.text);
    assert_eq!(
        after.value(
            REQUESTS,
            &[
                ("service", "dead"),
                ("route", "/dead"),
                ("status_class", "5xx")
            ]
        ),
        1.0,
        "{}",
        after.text
    );
    // An upstream failure is not a rejection by the gateway.
    assert_eq!(
        after.value("portcullis_http_rejections_total", &[]),
        0.0,
        "{}",
        after.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_decisions_are_counted() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let extra = format!(
        "[[routes]]\npath = \"/secure/{{*rest}}\"\nservice = \"svc\"\n\n\
         [[routes.filters]]\nauth = \"keys\"\n\n\
         [auth.keys]\ntype = \"api_key\"\nheader = \"x-api-key\"\n\
         keys = [ {{ identity = \"acme\", sha256 = \"{}\" }} ]\n",
        crate::auth::sha256_hex("metrics-key")
    );
    let gw = gateway(&origin, &extra).await;
    let decisions = "portcullis_auth_decisions_total";
    let send = |key: Option<&str>| {
        let key = key.map_or(String::new(), |k| format!("x-api-key: {k}\r\n"));
        format!("GET /secure/a/b HTTP/1.1\r\nHost: test.local\r\n{key}\r\n").into_bytes()
    };
    assert_eq!(exchange(&gw, &send(None)).await.status, 401);
    assert_eq!(exchange(&gw, &send(Some("wrong"))).await.status, 403);
    assert_eq!(exchange(&gw, &send(Some("wrong-too"))).await.status, 403);
    for _ in 0..3 {
        assert_eq!(exchange(&gw, &send(Some("metrics-key"))).await.status, 200);
    }
    let base = [("route", "/secure/{*rest}"), ("scheme", "api_key")];
    let with = |d: &'static str| {
        let mut l = base.to_vec();
        l.push(("decision", d));
        l
    };
    let after = gw
        .scrape_until(REQUESTS, &[("route", "/secure/{*rest}")], 6.0)
        .await;
    assert_eq!(
        after.value(decisions, &with("missing")),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.value(decisions, &with("denied")),
        2.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.value(decisions, &with("allowed")),
        3.0,
        "{}",
        after.text
    );
    assert_eq!(after.value(decisions, &[]), 6.0, "{}", after.text);
    assert_eq!(
        after.value(
            "portcullis_http_rejections_total",
            &[("route", "/secure/{*rest}"), ("cause", "bad_credentials")]
        ),
        2.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.value(
            REQUESTS,
            &[("route", "/secure/{*rest}"), ("status_class", "4xx")]
        ),
        3.0,
        "{}",
        after.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_share_the_other_label() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = gateway(&origin, "").await;
    let mut c = Client::connect(gw.addr).await;
    for i in 0..50 {
        c.send(format!("X-METHOD-{i} /droplets/1 HTTP/1.1\r\nHost: test.local\r\n\r\n").as_bytes())
            .await;
        assert_eq!(c.response().await.status, 200);
    }
    let other = [("method", "other"), ("route", "/droplets/{id}")];
    let after = gw.scrape_until(REQUESTS, &other, 50.0).await;
    assert_eq!(after.value(REQUESTS, &other), 50.0, "{}", after.text);
    assert_eq!(after.series(REQUESTS).len(), 1, "{}", after.text);
    assert!(!after.text.contains("X-METHOD-"), "{}", after.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeouts_are_counted_apart() {
    let origin = Origin::start(|_| Action::Hang).await;
    let gw = gateway(
        &origin,
        "[[routes]]\npath = \"/slow\"\nservice = \"svc\"\n\n[[routes.filters]]\ntimeout = \"200ms\"\n",
    )
    .await;
    let res = exchange(&gw, &get("/slow")).await;
    assert_eq!(res.status, 504, "{}", res.dump());
    let errors = "portcullis_upstream_errors_total";
    let labels = [("service", "svc"), ("cause", "upstream_timeout")];
    let after = gw.scrape_until(errors, &labels, 1.0).await;
    assert_eq!(after.value(errors, &labels), 1.0, "{}", after.text);
    assert_eq!(after.value(errors, &[]), 1.0, "{}", after.text);
}
