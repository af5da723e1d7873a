//! R13 retries through the binary: a route's `retry` filter sends idempotent
//! requests without a body again on the failures it lists; a request with a body
//! or a non-idempotent method that reached an upstream is never sent twice.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::{Action, Gateway, Origin, exchange, get, ok, response};

/// A service over `endpoints` (in this order), a route `/retry/` with `filters`
/// (TOML `[[routes.filters]]` tables) and a plain route `/plain/`. Passive
/// ejection is off: these tests count what a failing endpoint keeps receiving.
async fn gateway(endpoints: &[&Origin], filters: &str) -> Gateway {
    let urls = endpoints
        .iter()
        .map(|o| format!("\"{}\"", o.url()))
        .collect::<Vec<_>>()
        .join(", ");
    let rest = format!(
        "[[services]]\nname = \"svc\"\nendpoints = [{urls}]\n\
         passive_health = {{ max_ejected_percent = 0 }}\n\n\
         [[routes]]\npath = \"/plain/\"\nservice = \"svc\"\n\n\
         [[routes]]\npath = \"/retry/\"\nservice = \"svc\"\n\n{filters}\n"
    );
    Gateway::run("", &rest).await
}

/// Requests of `method` that `origin` received.
fn count(origin: &Origin, method: &str) -> usize {
    origin
        .records()
        .iter()
        .filter(|r| r.head.method() == method)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_of_idempotent_requests_are_retried_and_posts_never_twice() {
    let bad = Origin::start(|_| {
        Action::Respond(response(
            "503 Service Unavailable",
            &[("x-from", "bad")],
            b"down",
        ))
    })
    .await;
    let good = Origin::start(|_| Action::Respond(ok("good"))).await;
    let gw = gateway(
        &[&bad, &good],
        "[[routes.filters]]\nretry = { on = [\"gateway_error\"], attempts = 1 }\n",
    )
    .await;

    // Round robin sends every other GET to the failing endpoint first: each is
    // answered by the good one, and the client never sees the 503.
    for i in 0..8 {
        let res = exchange(&gw, &get(&format!("/retry/get-{i}"))).await;
        assert_eq!(res.status, 200, "GET {i}: {}", res.dump());
        assert_eq!(res.body.data, b"good", "GET {i}: {}", res.dump());
        assert!(res.head.get("x-from").is_none(), "{}", res.dump());
    }
    assert_eq!(count(&good, "GET"), 8);
    assert!(
        count(&bad, "GET") >= 3,
        "bad saw {} GETs",
        count(&bad, "GET")
    );

    // DELETE is idempotent too.
    for i in 0..2 {
        let req = format!("DELETE /retry/del-{i} HTTP/1.1\r\nHost: t.local\r\n\r\n");
        let res = exchange(&gw, req.as_bytes()).await;
        assert_eq!(res.status, 200, "DELETE {i}: {}", res.dump());
    }

    // POSTs, with and without a body, reach an upstream once: round robin
    // alternates, so some go to the failing endpoint, and its 503 goes back to
    // the client as the upstream sent it.
    let mut answered = 0;
    let mut refused = 0;
    for i in 0..8 {
        let req = if i < 2 {
            format!(
                "POST /retry/post-{i} HTTP/1.1\r\nHost: t.local\r\nContent-Length: 5\r\n\r\nhello"
            )
        } else {
            format!("POST /retry/post-{i} HTTP/1.1\r\nHost: t.local\r\nContent-Length: 0\r\n\r\n")
        };
        let res = exchange(&gw, req.as_bytes()).await;
        match res.status {
            200 => answered += 1,
            503 => {
                assert_eq!(res.head.get("x-from"), Some("bad"), "{}", res.dump());
                assert_eq!(res.body.data, b"down");
                refused += 1;
            }
            other => panic!("POST {i}: unexpected {other}: {}", res.dump()),
        }
    }
    let bodyless_to_bad = bad
        .records()
        .iter()
        .filter(|r| r.head.method() == "POST" && r.head.get("content-length") == Some("0"))
        .count();
    assert!(
        bodyless_to_bad >= 2,
        "round robin sent {bodyless_to_bad} bodyless POSTs to bad"
    );
    assert_eq!(count(&good, "POST"), answered);
    assert_eq!(count(&bad, "POST"), refused);
    assert_eq!(count(&good, "POST") + count(&bad, "POST"), 8);

    // The route without the filter passes the 503 through.
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(exchange(&gw, &get(&format!("/plain/{i}"))).await.status);
        }
        v
    };
    assert!(statuses.contains(&503), "{statuses:?}");

    // Retries are counted by outcome and reason.
    let scrape = gw
        .scrape_until(
            "portcullis_upstream_retries_total",
            &[("outcome", "retried"), ("reason", "status")],
            5.0,
        )
        .await;
    assert_eq!(
        scrape.value(
            "portcullis_upstream_retries_total",
            &[("outcome", "retried"), ("reason", "status")]
        ),
        bad.records()
            .iter()
            .filter(|r| r.head.target().starts_with("/retry/") && r.head.method() != "POST")
            .count() as f64,
        "{}",
        scrape.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_try_is_retried_within_its_own_timeout() {
    let stuck = Origin::start(|_| Action::Hang).await;
    let good = Origin::start(|_| Action::Respond(ok("good"))).await;
    let gw = gateway(
        &[&stuck, &good],
        "[[routes.filters]]\ntimeout = \"1s\"\n\
         [[routes.filters]]\nretry = { on = [\"timeout\"] }\n",
    )
    .await;
    for i in 0..4 {
        let started = Instant::now();
        let res = exchange(&gw, &get(&format!("/retry/t-{i}"))).await;
        assert_eq!(res.status, 200, "GET {i}: {}", res.dump());
        assert_eq!(res.body.data, b"good");
        // One timed-out try at most, then the good endpoint.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "GET {i} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(count(&good, "GET"), 4);
    assert!(count(&stuck, "GET") >= 1);

    // A POST that timed out on the stuck endpoint is not sent again: 504.
    let mut timed_out = 0;
    for i in 0..4 {
        let req =
            format!("POST /retry/p-{i} HTTP/1.1\r\nHost: t.local\r\nContent-Length: 0\r\n\r\n");
        let res = exchange(&gw, req.as_bytes()).await;
        match res.status {
            200 => {}
            504 => {
                assert_eq!(res.cause(), Some("upstream_timeout"), "{}", res.dump());
                timed_out += 1;
            }
            other => panic!("POST {i}: unexpected {other}: {}", res.dump()),
        }
    }
    assert!(
        timed_out >= 1,
        "round robin sent no POST to the stuck endpoint"
    );
    stuck
        .wait_until("the POSTs", |o| count(o, "POST") >= timed_out)
        .await;
    assert_eq!(count(&stuck, "POST"), timed_out);
    assert_eq!(count(&good, "POST"), 4 - timed_out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_is_retried_only_when_the_route_lists_reset() {
    let closer = Origin::start(|_| Action::Close).await;
    let good = Origin::start(|_| Action::Respond(ok("good"))).await;
    let gw = gateway(
        &[&closer, &good],
        "[[routes.filters]]\nretry = { on = [\"reset\", \"5xx\"], attempts = 2 }\n",
    )
    .await;
    for i in 0..4 {
        let res = exchange(&gw, &get(&format!("/retry/r-{i}"))).await;
        assert_eq!(res.status, 200, "GET {i}: {}", res.dump());
    }
    // Without the filter, the closed connection is a 502.
    let mut causes = Vec::new();
    for i in 0..4 {
        let res = exchange(&gw, &get(&format!("/plain/r-{i}"))).await;
        if res.status != 200 {
            assert_eq!(res.status, 502, "{}", res.dump());
            causes.push(res.cause().map(str::to_owned));
        }
    }
    assert_eq!(causes, vec![Some("upstream_unreachable".to_owned()); 2]);
}
