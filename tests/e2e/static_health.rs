//! Health of static `[[services]]` (R13): an active check keeps traffic off an
//! endpoint whose probes fail, and passive ejection takes a dead endpoint out of
//! the rotation, so requests that cannot be retried stop failing on it.

use std::time::Duration;

use crate::registration::{checked_origin, until_status};
use crate::support::{Client, Gateway, exchange, get, named_origin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_service_with_a_health_check_skips_failing_endpoints() {
    let good = checked_origin("good", 200).await;
    let bad = checked_origin("bad", 500).await;
    let gw = Gateway::run(
        "",
        &format!(
            "[[services]]\nname = \"app\"\nendpoints = [{:?}, {:?}]\n\
             health = {{ path = \"/healthz\", interval = \"200ms\", timeout = \"200ms\" }}\n\n\
             [[routes]]\npath = \"/\"\nservice = \"app\"\n",
            good.url(),
            bad.url()
        ),
    )
    .await;
    let res = until_status(&gw, "/x", 200, Duration::from_secs(3)).await;
    assert_eq!(res.status, 200, "{}\n{}", res.dump(), gw.logs());
    // Both endpoints are probed...
    bad.wait_until("a probe", |o| {
        o.records()
            .iter()
            .any(|r| r.head.start.starts_with("GET /healthz "))
    })
    .await;
    // ...and only the passing one takes traffic.
    for _ in 0..10 {
        let res = exchange(&gw, &get("/x")).await;
        assert_eq!(
            (res.status, res.body.text().as_str()),
            (200, "good"),
            "{}",
            res.dump()
        );
    }
    assert!(
        bad.records()
            .iter()
            .all(|r| r.head.start.starts_with("GET /healthz ")),
        "traffic reached the failing endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_static_endpoint_is_ejected_and_posts_stop_failing() {
    let live = named_origin("live").await;
    let (_refusing, dead_port) = crate::support::refusing_port();
    let gw = Gateway::run(
        "",
        &format!(
            "[[services]]\nname = \"app\"\nendpoints = [{:?}, \"http://127.0.0.1:{dead_port}\"]\n\n\
             [[routes]]\npath = \"/\"\nservice = \"app\"\n",
            live.url()
        ),
    )
    .await;
    // GETs are retried on the other endpoint when the connection is refused;
    // each refusal counts against the dead endpoint (5 in a row eject it).
    for i in 0..12 {
        let res = exchange(&gw, &get(&format!("/get/{i}"))).await;
        assert_eq!(res.status, 200, "{}", res.dump());
    }
    // A POST with a body is never retried: before the ejection every other one
    // would fail with 502 (round robin over two endpoints); now none does.
    let mut c = Client::connect(gw.addr).await;
    for i in 0..10 {
        c.send(
            format!("POST /post/{i} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
                .as_bytes(),
        )
        .await;
        let res = c.response().await;
        assert_eq!(
            (res.status, res.body.text().as_str()),
            (200, "live"),
            "{}\n{}",
            res.dump(),
            gw.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_endpoint_named_by_host_name_is_probed() {
    let good = checked_origin("good", 200).await;
    let gw = Gateway::run(
        "",
        &format!(
            "[[services]]\nname = \"app\"\nendpoints = [\"http://localhost:{}\"]\n\
             health = {{ path = \"/healthz\", interval = \"200ms\", timeout = \"200ms\" }}\n\n\
             [[routes]]\npath = \"/\"\nservice = \"app\"\n",
            good.addr.port()
        ),
    )
    .await;
    // With an active check an endpoint takes traffic only once a probe passed:
    // the name was resolved for the probe.
    let res = until_status(&gw, "/x", 200, Duration::from_secs(3)).await;
    assert_eq!(res.status, 200, "{}\n{}", res.dump(), gw.logs());
    assert_eq!(res.body.text(), "good");
    assert!(
        good.records()
            .iter()
            .any(|r| r.head.start.starts_with("GET /healthz ")),
        "no probe reached the origin"
    );
}
