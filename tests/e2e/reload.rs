//! R18 config reload through the binary: `POST /api/v1/reload` and SIGHUP
//! re-read the file; a valid one swaps the routes at once (a request in flight
//! finishes on its old route, registrations stay), an invalid one is refused
//! with its reasons and the running config keeps serving.

use std::time::Duration;

use serde_json::json;

use crate::registration::{TOKEN, api, put_endpoint, until_status};
use crate::support::gateway::EnvChange;
use crate::support::{
    Action, Client, Gateway, Origin, TempDir, exchange, get, named_origin, ok, service,
};

fn head(state: &TempDir) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nstate_dir = {:?}\n\n",
        state.0.display().to_string()
    )
}

fn route(path: &str, service: &str) -> String {
    format!("[[routes]]\npath = \"{path}\"\nservice = \"{service}\"\n\n")
}

/// A gateway run from the config `text` (a file it can re-read), with the admin
/// token set.
async fn started(text: &str) -> Gateway {
    Gateway::run_file_with_env(
        TempDir::new(),
        text,
        &[EnvChange::Set("PORTCULLIS_ADMIN_TOKEN", TOKEN)],
    )
    .await
}

async fn reload(gw: &Gateway) -> crate::support::Response {
    api(gw, "POST", "/api/v1/reload", Some(TOKEN), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_routes_keeps_registrations_and_refuses_bad_configs() {
    let one = named_origin("one").await;
    // Answers after a while: a request to it is in flight across a reload.
    let slow = Origin::start(|_| {
        Action::Delay(
            Duration::from_millis(600),
            Box::new(Action::Respond(ok("slow"))),
        )
    })
    .await;
    let registered = named_origin("registered").await;
    let state = TempDir::new();
    let v1 = format!(
        "{}{}{}{}{}",
        head(&state),
        service("one", &one.url()),
        service("slow", &slow.url()),
        route("/a/", "one"),
        route("/slow/", "slow"),
    );
    let gw = started(&v1).await;
    assert_eq!(exchange(&gw, &get("/a/x")).await.body.text(), "one");
    assert_eq!(exchange(&gw, &get("/b/x")).await.status, 404);

    // A registered service, to outlive the reloads.
    let body = json!({ "routes": [ { "path": "/reg/" } ] }).to_string();
    let res = api(&gw, "PUT", "/api/v1/services/reg", Some(TOKEN), Some(&body)).await;
    assert_eq!(res.status, 201, "{}", res.dump());
    let res = put_endpoint(&gw, "reg", "e1", &registered.url(), "1h").await;
    assert_eq!(res.status, 201, "{}", res.dump());
    assert_eq!(
        until_status(&gw, "/reg/x", 200, Duration::from_secs(1))
            .await
            .status,
        200
    );

    // A request in flight on /slow/ when the reload takes /slow/ away.
    let mut in_flight = Client::connect(gw.addr).await;
    in_flight.send(&get("/slow/pending")).await;
    slow.wait_records(1).await;

    // v2: /a/ goes to a new service, /b/ appears, /slow/ is gone.
    let two = named_origin("two").await;
    let v2 = format!(
        "{}{}{}{}{}",
        head(&state),
        service("one", &one.url()),
        service("two", &two.url()),
        route("/a/", "two"),
        route("/b/", "one"),
    );
    gw.rewrite_config(&v2);
    let res = reload(&gw).await;
    assert_eq!(res.status, 200, "{}\n{}", res.dump(), gw.logs());
    assert_eq!(res.json(), json!({ "status": "reloaded" }));
    assert_eq!(exchange(&gw, &get("/a/x")).await.body.text(), "two");
    assert_eq!(exchange(&gw, &get("/b/x")).await.body.text(), "one");
    assert_eq!(exchange(&gw, &get("/slow/x")).await.status, 404);
    assert_eq!(
        exchange(&gw, &get("/reg/x")).await.body.text(),
        "registered"
    );
    let res = in_flight.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "slow");

    // The admin API knows the new static routes: /b/ is reserved now.
    let body = json!({ "routes": [ { "path": "/b/" } ] }).to_string();
    let res = api(
        &gw,
        "PUT",
        "/api/v1/services/thief",
        Some(TOKEN),
        Some(&body),
    )
    .await;
    assert_eq!(res.status, 409, "{}", res.dump());
    let res = api(&gw, "GET", "/api/v1/routes", Some(TOKEN), None).await;
    let paths: Vec<String> = res.json()["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| r["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(paths, ["/a/", "/b/", "/reg/"], "{}", res.dump());

    // An invalid file: refused with its line, the running config keeps serving.
    gw.rewrite_config(&format!("{v2}{}", route("/c/", "nope")));
    let res = reload(&gw).await;
    assert_eq!(res.status, 422, "{}", res.dump());
    assert_eq!(res.cause(), Some("invalid_config"), "{}", res.dump());
    let reasons = res.json()["reasons"].to_string();
    assert!(
        reasons.contains("line ") && reasons.contains("nope"),
        "{reasons}"
    );
    assert_eq!(exchange(&gw, &get("/a/x")).await.body.text(), "two");

    // A change only a restart applies: refused, and it says so.
    gw.rewrite_config(&format!("{v2}[metrics]\nenabled = false\n"));
    let res = reload(&gw).await;
    assert_eq!(res.status, 422, "{}", res.dump());
    assert!(
        res.json()["reasons"]
            .to_string()
            .contains("[metrics] changed"),
        "{}",
        res.dump()
    );

    // SIGHUP reloads too.
    gw.rewrite_config(&format!("{v2}{}", route("/c/", "one")));
    gw.hangup().await;
    let res = until_status(&gw, "/c/x", 200, Duration::from_secs(3)).await;
    assert_eq!(res.status, 200, "{}\n{}", res.dump(), gw.logs());
    assert_eq!(res.body.text(), "one");

    // The counter is bumped after the swap: wait for it.
    let scrape = gw
        .scrape_until("portcullis_config_reloads_total", &[("outcome", "ok")], 2.0)
        .await;
    for (outcome, n) in [("ok", 2.0), ("refused", 2.0)] {
        assert_eq!(
            scrape.value("portcullis_config_reloads_total", &[("outcome", outcome)]),
            n,
            "{}",
            scrape.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_never_ends_a_gateway_without_a_config_file() {
    let origin = named_origin("one").await;
    let gw = Gateway::proxy(&[&origin.url()], &[]).await;
    gw.hangup().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = exchange(&gw, &get("/x")).await;
    assert_eq!(res.status, 200, "{}\n{}", res.dump(), gw.logs());
    assert!(gw.logs().contains("SIGHUP ignored"), "{}", gw.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_drops_a_filter_set_in_use_is_refused() {
    let registered = named_origin("registered").await;
    let state = TempDir::new();
    let with_set = format!(
        "{}[[filter_sets.web]]\nresponse_headers = {{ add = {{ \"x-set\" = \"web\" }} }}\n",
        head(&state)
    );
    let gw = started(&with_set).await;
    let body = json!({ "routes": [ { "path": "/reg/" } ], "filters": "web" }).to_string();
    let res = api(&gw, "PUT", "/api/v1/services/reg", Some(TOKEN), Some(&body)).await;
    assert_eq!(res.status, 201, "{}", res.dump());
    let res = put_endpoint(&gw, "reg", "e1", &registered.url(), "1h").await;
    assert_eq!(res.status, 201, "{}", res.dump());
    let res = until_status(&gw, "/reg/x", 200, Duration::from_secs(1)).await;
    assert_eq!(res.head.get("x-set"), Some("web"), "{}", res.dump());

    gw.rewrite_config(&head(&state));
    let res = reload(&gw).await;
    assert_eq!(res.status, 422, "{}", res.dump());
    assert!(
        res.json()["reasons"]
            .to_string()
            .contains("\\\"web\\\" is used by the registered service \\\"reg\\\""),
        "{}",
        res.dump()
    );
    let res = exchange(&gw, &get("/reg/x")).await;
    assert_eq!(res.head.get("x-set"), Some("web"), "{}", res.dump());
}

/// Every address logged with `message` so far, oldest first.
fn logged_addrs(gw: &Gateway, message: &str) -> Vec<std::net::SocketAddr> {
    gw.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == message)
        .filter_map(|v| v["addr"].as_str().and_then(|a| a.parse().ok()))
        .collect()
}

/// A connection attempt to `addr` is refused (nothing listens there).
async fn refused(addr: std::net::SocketAddr) -> bool {
    match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(Ok(_)) => false,
        Err(_) => panic!("connecting to {addr} timed out"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_moves_listeners_and_old_connections_finish_then_close() {
    let fast = named_origin("fast").await;
    let slow = Origin::start(|_| {
        Action::Delay(
            Duration::from_millis(800),
            Box::new(Action::Respond(ok("slow"))),
        )
    })
    .await;
    let state = TempDir::new();
    let rest = format!(
        "{}{}{}{}",
        service("fast", &fast.url()),
        service("slow", &slow.url()),
        route("/fast/", "fast"),
        route("/slow/", "slow"),
    );
    let v1 = format!("{}{rest}", head(&state));
    let gw = started(&v1).await;
    let old_admin = gw.admin_addr();

    // An idle keep-alive connection, and one with a request in flight.
    let mut idle = Client::connect(gw.addr).await;
    idle.send(&get("/fast/1")).await;
    assert_eq!(idle.response().await.status, 200);
    let mut in_flight = Client::connect(gw.addr).await;
    in_flight.send(&get("/slow/1")).await;
    slow.wait_records(1).await;

    // Both listeners move to other loopback addresses.
    let v2 = v1
        .replace(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.2:0\"\nadmin_listen = \"127.0.0.3:0\"",
        )
        .replacen("\n\n", "\nmax_uri_bytes = 100\n\n", 1);
    assert_ne!(v1, v2);
    gw.rewrite_config(&v2);
    let res = reload(&gw).await;
    assert_eq!(res.status, 200, "{}\n{}", res.dump(), gw.logs());
    gw.wait_log("config reloaded", 1).await;
    let proxies = logged_addrs(&gw, "proxy listening");
    assert_eq!(proxies.len(), 2, "{}", gw.logs());
    let new_addr = proxies[1];
    assert_eq!(new_addr.ip().to_string(), "127.0.0.2");
    let new_admin = gw.admin_addr();
    assert_eq!(new_admin.ip().to_string(), "127.0.0.3", "{}", gw.logs());

    // The request in flight finishes on the old listener's connection, which
    // then says it closes, and does.
    let res = in_flight.response().await;
    assert_eq!((res.status, res.body.text().as_str()), (200, "slow"));
    assert_eq!(res.head.get("connection"), Some("close"), "{}", res.dump());
    assert!(in_flight.closed().await);
    // The idle one serves one more request under the old limits (a long target
    // the new max_uri_bytes would refuse), then closes.
    let long = format!("/fast/{}", "x".repeat(150));
    idle.send(&get(&long)).await;
    let res = idle.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.head.get("connection"), Some("close"), "{}", res.dump());
    assert!(idle.closed().await);

    // New connections: refused at the old addresses, served at the new ones with
    // the new limits.
    assert!(refused(gw.addr).await, "old proxy address still accepts");
    assert!(refused(old_admin).await, "old admin address still accepts");
    let mut c = Client::connect(new_addr).await;
    c.send(&get("/fast/2")).await;
    let res = c.response().await;
    assert_eq!((res.status, res.body.text().as_str()), (200, "fast"));
    assert_eq!(res.head.get("connection"), None);
    c.send(&get(&long)).await;
    let res = c.response().await;
    assert_eq!(res.status, 414, "{}", res.dump());
    assert_eq!(gw.admin_get("/healthz").await.status, 200);

    // The registry knows the gateway's new addresses: a registration pointing
    // at the moved proxy listener is refused as a loop.
    let body = json!({ "routes": [ { "path": "/reg/" } ] }).to_string();
    let res = api(&gw, "PUT", "/api/v1/services/reg", Some(TOKEN), Some(&body)).await;
    assert_eq!(res.status, 201, "{}", res.dump());
    let res = put_endpoint(&gw, "reg", "self", &format!("http://{new_addr}"), "1h").await;
    assert_eq!(res.status, 403, "{}", res.dump());
    assert_eq!(res.cause(), Some("forbidden_upstream"), "{}", res.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_listener_limits_keeps_the_socket_and_refuses_a_bind_failure() {
    let fast = named_origin("fast").await;
    let state = TempDir::new();
    let v1 = format!(
        "{}{}{}",
        head(&state),
        service("fast", &fast.url()),
        route("/fast/", "fast")
    );
    let gw = started(&v1).await;
    let mut old = Client::connect(gw.addr).await;
    old.send(&get("/fast/1")).await;
    assert_eq!(old.response().await.status, 200);

    // A listen address that cannot be bound (taken by another socket): refused
    // with the reason, and nothing changes.
    let taken = std::net::TcpListener::bind("127.0.0.4:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let bad = v1.replacen(
        "listen = \"127.0.0.1:0\"\n",
        &format!("listen = \"{taken_addr}\"\nmax_headers = 5\n"),
        1,
    );
    gw.rewrite_config(&bad);
    let res = reload(&gw).await;
    assert_eq!(res.status, 422, "{}", res.dump());
    let reasons = res.json()["reasons"].to_string();
    assert!(
        reasons.contains("server.listen") && reasons.contains(&taken_addr.to_string()),
        "{reasons}"
    );
    let mut c = Client::connect(gw.addr).await;
    c.send(
        b"GET /fast/2 HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\n\r\n",
    )
    .await;
    assert_eq!(c.response().await.status, 200, "old limits still apply");

    // Same address, new limits: the socket is kept (no "proxy listening" again),
    // new connections get the new limits, the old keep-alive connection keeps its
    // own for its next request and then closes.
    let v2 = v1.replacen(
        "listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.1:0\"\nmax_headers = 5\n",
        1,
    );
    gw.rewrite_config(&v2);
    let res = reload(&gw).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    // "config reloaded" is logged after everything the reload logs: once it is
    // there, a second "proxy listening" would be too.
    gw.wait_log("config reloaded", 1).await;
    assert_eq!(logged_addrs(&gw, "proxy listening"), vec![gw.addr]);
    let many =
        b"GET /fast/3 HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\n\r\n";
    let mut c = Client::connect(gw.addr).await;
    c.send(many).await;
    let res = c.response().await;
    assert_eq!(res.status, 431, "{}", res.dump());
    old.send(many).await;
    let res = old.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.head.get("connection"), Some("close"));
    assert!(old.closed().await);
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_bounds_old_and_new_generations_together() {
    let fast = named_origin("fast").await;
    let state = TempDir::new();
    let v1 = format!(
        "{}{}{}",
        head(&state).replacen(
            "\n\n",
            "\nmax_connections = 3\nconnection_wait = \"50ms\"\n\n",
            1
        ),
        service("fast", &fast.url()),
        route("/fast/", "fast")
    );
    let gw = started(&v1).await;
    // Two keep-alive connections of the first generation stay open (idle).
    let mut old = Vec::new();
    for i in 0..2 {
        let mut c = Client::connect(gw.addr).await;
        c.send(&get(&format!("/fast/old-{i}"))).await;
        assert_eq!(c.response().await.status, 200);
        old.push(c);
    }
    // A reload starts a second generation on the same socket.
    gw.rewrite_config(&v1.replace("connection_wait = \"50ms\"", "connection_wait = \"60ms\""));
    let res = reload(&gw).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    // One slot is left of the listener's three: the first new connection is
    // served, the second shed with 503 overloaded.
    let mut first = Client::connect(gw.addr).await;
    first.send(&get("/fast/new-1")).await;
    assert_eq!(first.response().await.status, 200);
    let mut second = Client::connect(gw.addr).await;
    second.send(&get("/fast/new-2")).await;
    let res = second.response().await;
    assert_eq!(res.status, 503, "{}", res.dump());
    assert_eq!(res.cause(), Some("overloaded"), "{}", res.dump());
    // An old connection ending gives its slot back to the listener.
    drop(old.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let mut c = Client::connect(gw.addr).await;
        c.send(&get("/fast/new-3")).await;
        if c.try_response_to("GET")
            .await
            .is_ok_and(|r| r.status == 200)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slot came back\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_queued_on_a_moved_listener_are_answered_not_reset() {
    let fast = named_origin("fast").await;
    let state = TempDir::new();
    // One connection at a time, and a long wait for a slot: a second client
    // stays queued in the kernel's backlog of the listening socket.
    let v1 = format!(
        "{}{}{}",
        head(&state).replacen(
            "\n\n",
            "\nmax_connections = 1\nconnection_wait = \"30s\"\n\n",
            1
        ),
        service("fast", &fast.url()),
        route("/fast/", "fast")
    );
    let gw = started(&v1).await;
    let mut holder = Client::connect(gw.addr).await;
    holder.send(&get("/fast/holder")).await;
    assert_eq!(holder.response().await.status, 200);
    let mut queued = Client::connect(gw.addr).await;
    queued.send(&get("/fast/queued")).await;

    // The listener moves; its socket closes once the queued connection is taken
    // off it. With no slot free it is shed with the gateway's answer — not reset.
    gw.rewrite_config(&v1.replacen(
        "listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.5:0\"\n",
        1,
    ));
    let res = reload(&gw).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let res = queued
        .try_response_to("GET")
        .await
        .unwrap_or_else(|e| panic!("the queued connection got no answer: {e}\n{}", gw.logs()));
    assert_eq!(res.status, 503, "{}", res.dump());
    assert_eq!(res.cause(), Some("overloaded"), "{}", res.dump());
}
