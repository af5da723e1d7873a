//! R18: on SIGTERM the gateway drains in-flight requests (HTTP/1.1 and HTTP/2,
//! which gets a GOAWAY), saves its registrations, then exits 0.

use std::time::Duration;

use crate::h2c::{h2_connect, h2_exchange};
use crate::registration::{TOKEN, api, gateway_with, put_endpoint};
use crate::support::{
    Action, Client, Gateway, Origin, TempDir, exchange, get, ok, proxy_to, service,
};

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
    // The client is told the connection closes after it.
    assert_eq!(res.head.get("connection"), Some("close"), "{}", res.dump());
    assert!(c.closed().await);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_goaway_to_http2_clients_and_finishes_their_streams() {
    let origin = Origin::start(|_| {
        Action::Delay(
            Duration::from_millis(800),
            Box::new(Action::Respond(ok("finished"))),
        )
    })
    .await;
    let mut gw = Gateway::run(
        "http2 = true",
        &format!(
            "{}[[routes]]\npath = \"/\"\nservice = \"one\"\n",
            service("one", &origin.url())
        ),
    )
    .await;
    let send = h2_connect(&gw).await;
    let req = http::Request::get(format!("http://{}/slow", gw.addr))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let mut in_flight = send.clone();
    let pending = tokio::spawn(async move { h2_exchange(&mut in_flight, req).await });
    origin.wait_records(1).await;
    gw.terminate().await;
    // The GOAWAY arrives while the first stream is still open: a new stream on
    // the same connection is refused and never reaches the origin.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = send.clone();
    let second = tokio::time::timeout(Duration::from_secs(10), async move {
        again.ready().await?;
        let req = http::Request::get("http://test.local/second")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        again.send_request(req).await
    })
    .await
    .expect("the second stream: timed out");
    assert!(
        second.is_err(),
        "a new stream was served after SIGTERM: {:?}",
        second.map(|r| r.status())
    );
    assert_eq!(origin.records().len(), 1);
    // The stream already open finishes...
    let (parts, body) = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the in-flight stream: timed out")
        .expect("the in-flight stream");
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], b"finished");
    // ...and the GOAWAY closes the connection to new streams.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !send.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the h2 connection was not closed after GOAWAY");
    let status = gw.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_saves_the_registrations_before_exit() {
    let origin = Origin::start(|_| Action::Respond(ok("registered"))).await;
    let state = TempDir::new();
    let mut gw = gateway_with(&state.0, "").await;
    let body = serde_json::json!({ "routes": [ { "path": "/reg/" } ] }).to_string();
    let res = api(&gw, "PUT", "/api/v1/services/reg", Some(TOKEN), Some(&body)).await;
    assert_eq!(res.status, 201, "{}", res.dump());
    let res = put_endpoint(&gw, "reg", "e1", &origin.url(), "1h").await;
    assert_eq!(res.status, 201, "{}", res.dump());
    gw.terminate().await;
    let status = gw.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        gw.logs()
    );
    let saved = gw
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "registrations saved to the state store")
        .unwrap_or_else(|| panic!("no save at exit:\n{}", gw.logs()));
    assert_eq!(saved["services"], 1, "{saved}");

    // A new gateway on the same state serves the registration at once.
    let gw = gateway_with(&state.0, "").await;
    let res = exchange(&gw, &get("/reg/x")).await;
    assert_eq!((res.status, res.body.text().as_str()), (200, "registered"));
}
