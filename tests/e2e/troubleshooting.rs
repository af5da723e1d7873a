//! R6 troubleshooting through the binary: `Server-Timing` splits each response's
//! time between the gateway and the upstream.

use std::time::Duration;

use crate::support::{Action, Gateway, Origin, exchange, get, ok, service};

/// `(gateway ms, upstream ms)` from a `Server-Timing` value.
fn timings(value: &str) -> (f64, Option<f64>) {
    let mut gateway = None;
    let mut upstream = None;
    for item in value.split(',') {
        let mut parts = item.trim().split(';');
        let name = parts.next().unwrap_or_default();
        let dur = parts
            .find_map(|p| p.strip_prefix("dur="))
            .and_then(|d| d.parse::<f64>().ok());
        match name {
            "gateway" => gateway = dur,
            "upstream" => upstream = dur,
            _ => {}
        }
    }
    (gateway.expect("a gateway duration"), upstream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_timing_splits_gateway_and_upstream_time() {
    let origin = Origin::start(|_| {
        Action::Delay(
            Duration::from_millis(150),
            Box::new(Action::Respond(ok("slow"))),
        )
    })
    .await;
    let rest = format!(
        "{}[[routes]]\npath = \"/\"\nservice = \"svc\"\n",
        service("svc", &origin.url())
    );
    let gw = Gateway::run("", &rest).await;
    let res = exchange(&gw, &get("/x")).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let value = res
        .head
        .get("server-timing")
        .expect("Server-Timing")
        .to_owned();
    let (gateway, upstream) = timings(&value);
    let upstream = upstream.expect("an upstream duration");
    // The origin took 150 ms: that is the upstream's share, not the gateway's.
    assert!(upstream >= 150.0, "{value}");
    assert!(gateway < upstream, "{value}");

    // A gateway's own answer has only the gateway's share.
    let gw404 = Gateway::run("", "").await;
    let res = exchange(&gw404, &get("/nothing")).await;
    assert_eq!(res.status, 404);
    let value = res
        .head
        .get("server-timing")
        .expect("Server-Timing")
        .to_owned();
    assert_eq!(timings(&value).1, None, "{value}");

    // Off by configuration.
    let quiet = Gateway::run("server_timing = false", &rest).await;
    let res = exchange(&quiet, &get("/x")).await;
    assert_eq!(res.status, 200);
    assert!(res.head.get("server-timing").is_none(), "{}", res.dump());
}
