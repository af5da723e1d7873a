//! R8 per-route filters through the binary: their order, the deny list, response
//! headers on forwarded and gateway answers, body limit and timeout.

use std::time::Duration;

use crate::support::{Action, Gateway, Origin, exchange, ok, response, service};

/// A gateway with one route `/` to `origin` whose filter chain is `filters` (TOML
/// `[[routes.filters]]` tables), after `extra` top-level TOML.
async fn gateway(origin: &Origin, extra: &str, filters: &str) -> Gateway {
    let rest = format!(
        "{extra}\n{}[[routes]]\npath = \"/\"\nservice = \"svc\"\n\n{filters}\n",
        service("svc", &origin.url())
    );
    Gateway::run("", &rest).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_header_filters_act_in_order() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = gateway(
        &origin,
        "",
        "[[routes.filters]]\nrequest_headers = { set = { \"x-a\" = \"from-filter-1\" } }\n\
         [[routes.filters]]\nrequest_headers = { rename = { \"x-a\" = \"x-b\" } }\n",
    )
    .await;
    let res = exchange(
        &gw,
        b"GET /h HTTP/1.1\r\nHost: test.local\r\nx-a: from-client\r\nx-b: old\r\nx-b: older\r\nx-keep: yes\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    // Filter 1 replaced the client's x-a; filter 2 saw it and moved it to x-b,
    // replacing the client's x-b fields.
    assert_eq!(
        rec.head.get_all("x-a"),
        Vec::<&str>::new(),
        "{}",
        rec.head.text()
    );
    assert_eq!(
        rec.head.get_all("x-b"),
        ["from-filter-1"],
        "{}",
        rec.head.text()
    );
    assert_eq!(rec.head.get_all("x-keep"), ["yes"], "{}", rec.head.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_headers_never_reach_the_upstream_wherever_the_filter_stands() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = gateway(
        &origin,
        "",
        "[[routes.filters]]\ndeny_headers = [\"x-internal-token\", \"x-debug\"]\n\
         [[routes.filters]]\nrequest_headers = { set = { \"x-internal-token\" = \"set-by-filter\" }, add = { \"x-debug\" = \"1\", \"x-added\" = \"yes\" } }\n",
    )
    .await;
    let res = exchange(
        &gw,
        b"GET /d HTTP/1.1\r\nHost: test.local\r\nX-Internal-Token: client-secret\r\nx-debug: on\r\nx-debug: again\r\nx-other: kept\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    let head = rec.head.text();
    assert!(!rec.head.has("x-internal-token"), "{head}");
    assert!(!rec.head.has("x-debug"), "{head}");
    assert!(
        !head.contains("client-secret") && !head.contains("set-by-filter"),
        "{head}"
    );
    assert_eq!(rec.head.get_all("x-other"), ["kept"], "{head}");
    assert_eq!(rec.head.get_all("x-added"), ["yes"], "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_apply_to_forwarded_answers_and_auth_rejections() {
    let origin = Origin::start(|_| {
        Action::Respond(response(
            "200 OK",
            &[
                ("Server", "origin/1.0"),
                ("X-Served-By", "origin"),
                ("X-Up", "1"),
            ],
            b"fine",
        ))
    })
    .await;
    let key_hash = crate::auth::sha256_hex("k-response-headers");
    let gw = gateway(
        &origin,
        &format!(
            "[auth.keys]\ntype = \"api_key\"\nheader = \"x-api-key\"\n\
             keys = [ {{ identity = \"acme\", sha256 = \"{key_hash}\" }} ]\n"
        ),
        "[[routes.filters]]\nauth = \"keys\"\n\
         [[routes.filters]]\nresponse_headers = { remove = [\"server\"], set = { \"x-served-by\" = \"edge\" }, add = { \"x-edge\" = \"1\" } }\n",
    )
    .await;

    let res = exchange(
        &gw,
        b"GET /r HTTP/1.1\r\nHost: test.local\r\nx-api-key: k-response-headers\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "fine");
    assert_eq!(res.head.get_all("x-served-by"), ["edge"], "{}", res.dump());
    assert_eq!(res.head.get_all("x-edge"), ["1"], "{}", res.dump());
    assert_eq!(res.head.get_all("x-up"), ["1"], "{}", res.dump());
    assert!(!res.head.has("server"), "{}", res.dump());

    // The gateway's own answer from a before filter passes the after filters too.
    let res = exchange(&gw, b"GET /r HTTP/1.1\r\nHost: test.local\r\n\r\n").await;
    assert_eq!(res.status, 401, "{}", res.dump());
    assert_eq!(res.cause(), Some("missing_credentials"), "{}", res.dump());
    assert_eq!(res.head.get_all("x-served-by"), ["edge"], "{}", res.dump());
    assert_eq!(res.head.get_all("x-edge"), ["1"], "{}", res.dump());
    assert_eq!(origin.records().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_filter_refuses_a_large_declared_length_before_the_upstream() {
    let origin = Origin::start(|r| Action::Respond(ok(&format!("got {}", r.body.len)))).await;
    let gw = gateway(&origin, "", "[[routes.filters]]\nbody_limit = \"1KiB\"\n").await;
    // The head alone: the answer comes from Content-Length, before any body byte.
    let res = exchange(
        &gw,
        b"POST /up HTTP/1.1\r\nHost: test.local\r\nContent-Length: 1025\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 413, "{}", res.dump());
    assert_eq!(res.cause(), Some("body_too_large"), "{}", res.dump());
    assert_eq!(res.json()["error"], "body_too_large", "{}", res.dump());
    origin.assert_untouched().await;

    // At the limit it passes, byte for byte.
    let mut req = b"POST /up HTTP/1.1\r\nHost: test.local\r\nContent-Length: 1024\r\n\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'x', 1024));
    let res = exchange(&gw, &req).await;
    assert_eq!(
        (res.status, res.body.text().as_str()),
        (200, "got 1024"),
        "{}",
        res.dump()
    );
    let rec = origin.only_record().await;
    assert_eq!(rec.body.data, vec![b'x'; 1024]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_filter_gives_504_upstream_timeout() {
    let origin = Origin::start(|_| {
        Action::Delay(
            Duration::from_secs(5),
            Box::new(Action::Respond(ok("late"))),
        )
    })
    .await;
    let gw = gateway(&origin, "", "[[routes.filters]]\ntimeout = \"300ms\"\n").await;
    let res = exchange(
        &gw,
        b"GET /slow HTTP/1.1\r\nHost: test.local\r\nx-request-id: rid-slow\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 504, "{}", res.dump());
    assert_eq!(res.cause(), Some("upstream_timeout"), "{}", res.dump());
    assert_eq!(
        res.body.text(),
        format!(
            r#"{{"error":"upstream_timeout","status":504,"request_id":"rid-slow","service":"svc","endpoint":"{}"}}"#,
            origin.addr
        )
    );
    // It did reach the upstream: the time ran out waiting for its answer.
    origin.wait_records(1).await;
}
