//! Graceful shutdown under load: twenty requests are in flight (each on its own
//! connection, the origin answering after 500 ms) when the gateway gets SIGTERM.
//! Every one completes with `200`, a new connection is refused once the
//! shutdown started, and the process exits 0 within `shutdown_timeout`.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::{Action, Origin, ok};
use crate::util::{Proc, Raw, Read, get, routes, serial};

/// Requests in flight when SIGTERM arrives.
const IN_FLIGHT: usize = 20;

/// The origin's delay before each answer.
const ORIGIN_DELAY: Duration = Duration::from_millis(500);

/// `[server] shutdown_timeout`.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load() {
    let _serial = serial().await;
    let origin =
        Origin::start(|_| Action::Delay(ORIGIN_DELAY, Box::new(Action::Respond(ok("finished")))))
            .await;
    let mut p = Proc::run(
        &format!("shutdown_timeout = \"{}s\"", SHUTDOWN_TIMEOUT.as_secs()),
        &routes(&origin),
    )
    .await;
    let mut clients = Vec::new();
    for i in 0..IN_FLIGHT {
        let mut c = Raw::connect(p.gw.addr, Duration::from_secs(15))
            .await
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert!(
            c.send(&get(&format!("/inflight/{i}")), Duration::from_secs(5))
                .await,
            "request {i} could not be written"
        );
        clients.push(c);
    }
    // Every request is in flight once the origin has it (and it holds each for
    // ORIGIN_DELAY).
    origin.wait_records(IN_FLIGHT).await;
    let sigterm = Instant::now();
    p.gw.terminate().await;
    // Give the gateway a moment to stop accepting, still well within the
    // origin's delay.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = match Raw::connect(p.gw.addr, Duration::from_secs(2)).await {
        Err(e) => format!("refused ({e})"),
        Ok(mut c) => {
            if c.send(&get("/late"), Duration::from_secs(2)).await {
                match c.read("GET").await {
                    Read::Response(res) => format!("answered {}", res.status),
                    Read::Closed => "accepted, then closed unanswered".to_owned(),
                    other => format!("accepted, then {other:?}"),
                }
            } else {
                "accepted, then closed before the request was written".to_owned()
            }
        }
    };

    let mut outcomes = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let outcome = match c.read("GET").await {
            Read::Response(res) => {
                if res.status == 200 && res.body.text() == "finished" && res.body.complete {
                    Ok(sigterm.elapsed())
                } else {
                    Err(format!("request {i}: {}", res.dump()))
                }
            }
            other => Err(format!("request {i}: {other:?}")),
        };
        outcomes.push(outcome);
    }
    let status =
        p.gw.wait_exit(SHUTDOWN_TIMEOUT + Duration::from_secs(5))
            .await;
    let exited = sigterm.elapsed();
    let completed = outcomes.iter().filter(|o| o.is_ok()).count();
    let last = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .max()
        .copied()
        .unwrap_or_default();
    let lost: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    eprintln!(
        "graceful_shutdown_under_load: {IN_FLIGHT} in flight at SIGTERM; completed with 200 {completed}, lost {}; \
         last answer {last:?} after SIGTERM; a new connection after it: {late}; exit {status:?} after {exited:?} \
         (shutdown_timeout {SHUTDOWN_TIMEOUT:?})",
        lost.len()
    );
    assert!(lost.is_empty(), "in-flight requests lost: {lost:#?}");
    assert!(
        late.starts_with("refused") || late.starts_with("accepted, then closed"),
        "a connection opened after SIGTERM was {late}"
    );
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        p.gw.logs()
    );
    assert!(
        exited < SHUTDOWN_TIMEOUT,
        "exited {exited:?} after SIGTERM, not within {SHUTDOWN_TIMEOUT:?}"
    );
}
