//! R18: on SIGTERM the gateway drains in-flight requests, then exits 0.

use std::time::Duration;

use crate::support::{Action, Client, Origin, get, ok, proxy_to};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_in_flight_request_then_exits_zero() {
    let origin = Origin::start(|_| {
        Action::Delay(
            Duration::from_secs(1),
            Box::new(Action::Respond(ok("finished"))),
        )
    })
    .await;
    let mut gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(&get("/slow")).await;
    // The request is in flight once the origin has it.
    origin.wait_records(1).await;
    gw.terminate().await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}\nlogs:\n{}", res.dump(), gw.logs());
    assert_eq!(res.body.text(), "finished");
    assert!(res.body.complete);
    let status = gw.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        gw.logs()
    );
    assert!(
        gw.logs().contains("shutting down"),
        "no shutdown log line:\n{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_do_not_hold_up_shutdown() {
    // The drain deadline is 30 s by default; the wait below is shorter, so an idle
    // connection kept open until the deadline fails the test.
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let mut gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(&get("/once")).await;
    assert_eq!(c.response().await.status, 200);
    gw.terminate().await;
    assert!(c.closed().await, "the idle connection was not closed");
    let status = gw.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        gw.logs()
    );
}
