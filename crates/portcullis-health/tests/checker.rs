//! `HealthChecker` over real sockets: first pass, passive return, task removal.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portcullis_health::{
    HealthCheckConfig, HealthChecker, HealthState, Outcome, PassiveHealthConfig,
};
use support::{OK, Origin, Reply};

fn fast() -> HealthCheckConfig {
    HealthCheckConfig {
        interval: Duration::from_millis(50),
        jitter: Some(Duration::from_millis(5)),
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        ..HealthCheckConfig::default()
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(3), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test]
async fn new_endpoint_takes_no_traffic_until_first_pass() {
    // A slow interval: only the immediate first probe runs during the test.
    let cfg = HealthCheckConfig {
        interval: Duration::from_secs(60),
        jitter: None,
        ..fast()
    };
    let origin = Origin::start(Reply::Raw(OK)).await;
    let checker = HealthChecker::new("svc", Some(cfg), PassiveHealthConfig::default()).unwrap();
    let status = checker.add("e0", origin.addr, "svc.internal");
    assert!(!status.is_available(), "unknown until a probe passes");
    assert_eq!(status.state(), HealthState::Unknown);
    wait_until("first pass", || status.is_available()).await;
    assert_eq!(status.state(), HealthState::Healthy);
    assert_eq!(origin.accepted(), 1);
}

#[tokio::test]
async fn failing_endpoint_turns_unhealthy_with_its_error_kept() {
    let origin = Origin::start(Reply::Raw(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\nconnection: close\r\n\r\nboot!",
    ))
    .await;
    let checker = HealthChecker::new("svc", Some(fast()), PassiveHealthConfig::default()).unwrap();
    let status = checker.add("e0", origin.addr, "h");
    wait_until("fall", || status.state() == HealthState::Unhealthy).await;
    assert!(!status.is_available());
    assert_eq!(
        status.last_error().as_deref(),
        Some("status: status 503: boot!")
    );
    let snapshot = checker.snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(&*snapshot[0].0, "e0");
    assert_eq!(snapshot[0].1.state, HealthState::Unhealthy);
}

#[tokio::test]
async fn endpoint_falls_and_rises_with_the_origin() {
    let up = Arc::new(AtomicBool::new(true));
    let origin = Origin::start(Reply::Switch(
        up.clone(),
        OK,
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops",
    ))
    .await;
    let checker = HealthChecker::new("svc", Some(fast()), PassiveHealthConfig::default()).unwrap();
    let status = checker.add("e0", origin.addr, "h");
    wait_until("healthy", || status.is_available()).await;
    up.store(false, Ordering::SeqCst);
    wait_until("unhealthy", || status.state() == HealthState::Unhealthy).await;
    assert!(!status.is_available());
    assert_eq!(
        status.last_error().as_deref(),
        Some("status: status 500: oops")
    );
    up.store(true, Ordering::SeqCst);
    wait_until("healthy again", || status.is_available()).await;
    assert_eq!(status.state(), HealthState::Healthy);
    // The error stays visible for the admin API after recovery.
    assert_eq!(
        status.last_error().as_deref(),
        Some("status: status 500: oops")
    );
}

#[tokio::test]
async fn ejected_endpoint_with_active_checks_returns_after_time_and_a_pass() {
    let origin = Origin::start(Reply::Raw(OK)).await;
    let passive = PassiveHealthConfig {
        consecutive_failures: 2,
        base_ejection_time: Duration::from_millis(200),
        max_ejected_percent: 100,
        ..PassiveHealthConfig::default()
    };
    let checker = HealthChecker::new("svc", Some(fast()), passive).unwrap();
    let status = checker.add("e0", origin.addr, "h");
    wait_until("first pass", || status.is_available()).await;
    assert!(!checker.record("e0", Outcome::ConnectError));
    assert!(checker.record("e0", Outcome::ServerError));
    assert!(!status.is_available());
    assert!(status.is_ejected());
    let before = origin.accepted();
    wait_until("return", || status.is_available()).await;
    assert!(!status.is_ejected());
    assert!(origin.accepted() > before, "a probe ran before the return");
}

#[tokio::test]
async fn removing_an_endpoint_stops_its_probes() {
    let origin = Origin::start(Reply::Raw(OK)).await;
    let checker = HealthChecker::new("svc", Some(fast()), PassiveHealthConfig::default()).unwrap();
    checker.add("e0", origin.addr, "h");
    wait_until("two probes", || origin.accepted() >= 2).await;
    assert!(checker.remove("e0"));
    // Let an in-flight connect land, then no more may come.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = origin.accepted();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origin.accepted(), after, "no connection after removal");
}

#[tokio::test]
async fn dropping_the_checker_stops_all_probes() {
    let origin = Origin::start(Reply::Raw(OK)).await;
    let checker = HealthChecker::new("svc", Some(fast()), PassiveHealthConfig::default()).unwrap();
    checker.add("e0", origin.addr, "h");
    checker.add("e1", origin.addr, "h");
    wait_until("probes", || origin.accepted() >= 4).await;
    drop(checker);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = origin.accepted();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origin.accepted(), after, "no connection after drop");
}

#[tokio::test]
async fn a_host_name_is_looked_up_again_for_each_probe() {
    // Added with a stale address (nothing listens there) under a name that now
    // resolves to the origin: the probe follows the name.
    let origin = Origin::start(Reply::Raw(OK)).await;
    let stale = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let checker = HealthChecker::new("svc", Some(fast()), PassiveHealthConfig::default()).unwrap();
    let host = format!("localhost:{}", origin.addr.port());
    let status = checker.add("e0", stale, host);
    wait_until("healthy through the name", || status.is_available()).await;
    assert!(origin.accepted() > 0);
}
