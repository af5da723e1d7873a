//! R1: when the client goes away mid-response, the upstream exchange is dropped
//! (its connection closed, never reused dirty).

use std::time::Duration;

use crate::support::{Action, Client, DripEnd, Origin, get, proxy_to};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_closes_the_upstream_connection() {
    let origin = Origin::start(|r| {
        if r.head.target() == "/after" {
            Action::Respond(crate::support::ok("fresh"))
        } else {
            Action::Drip {
                head: b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n".to_vec(),
                chunk: vec![b'd'; 1024],
                every: Duration::from_millis(20),
                // About 100 s: far longer than the test waits.
                count: 5000,
            }
        }
    })
    .await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(&get("/drip")).await;
    let head = c.head().await;
    assert_eq!(head.status(), 200, "{}", head.text());
    // Some body arrives, so the response is really streaming.
    let some = c.r.read_exact_vec(2048).await.expect("first body bytes");
    assert!(some.iter().all(|&b| b == b'd'));
    assert!(
        origin.drips().is_empty(),
        "the drip ended early: {:?}",
        origin.drips()
    );
    drop(c);
    origin
        .wait_until("the origin to see its connection closed", |o| {
            !o.drips().is_empty()
        })
        .await;
    assert!(
        matches!(origin.drips()[..], [DripEnd::PeerGone(_)]),
        "{:?}",
        origin.drips()
    );
    // The next request is served, on another upstream connection than the
    // abandoned one.
    let res = crate::support::exchange(&gw, &get("/after")).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "fresh");
    let recs = origin.wait_records(2).await;
    assert_ne!(
        recs[1].conn, recs[0].conn,
        "the abandoned upstream connection was reused"
    );
}
