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
    let gw = Gateway::run_file_with_env(
        TempDir::new(),
        &v1,
        &[EnvChange::Set("PORTCULLIS_ADMIN_TOKEN", TOKEN)],
    )
    .await;
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
    let listen_changed = v2.replace(
        "listen = \"127.0.0.1:0\"\nadmin",
        "listen = \"127.0.0.1:0\"\nmax_connections = 77\nadmin",
    );
    gw.rewrite_config(&listen_changed);
    let res = reload(&gw).await;
    assert_eq!(res.status, 422, "{}", res.dump());
    assert!(
        res.json()["reasons"]
            .to_string()
            .contains("[server] changed"),
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
    let gw = Gateway::run_file_with_env(
        TempDir::new(),
        &with_set,
        &[EnvChange::Set("PORTCULLIS_ADMIN_TOKEN", TOKEN)],
    )
    .await;
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
