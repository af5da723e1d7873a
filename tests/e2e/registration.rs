//! R12 service registration through the admin API of a running gateway: traffic
//! flows without a restart, leases expire, registrations survive restarts and
//! crashes in the state folder, and bad registrations get clear answers.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::gateway::EnvChange;
use crate::support::{Client, Gateway, Origin, Response, TempDir, exchange, get, named_origin};

pub(crate) const TOKEN: &str = "e2e-admin-token";

/// A gateway with no static routes, its state in `state`, the admin token set.
async fn gateway_with_state(state: &Path) -> Gateway {
    gateway_with(state, "").await
}

/// As [`gateway_with_state`], with `extra` TOML after the `[server]` table.
pub(crate) async fn gateway_with(state: &Path, extra: &str) -> Gateway {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nstate_dir = {:?}\n\n{extra}",
        state.display().to_string()
    );
    Gateway::run_file_with_env(
        TempDir::new(),
        &text,
        &[EnvChange::Set("PORTCULLIS_ADMIN_TOKEN", TOKEN)],
    )
    .await
}

/// One admin call on a fresh connection.
pub(crate) async fn api(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: admin.local\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    match body {
        Some(b) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => req.push_str("\r\n"),
    }
    let mut c = Client::connect(gw.admin_addr()).await;
    c.send(req.as_bytes()).await;
    c.response_to(method).await
}

async fn put_service(gw: &Gateway, name: &str, path: &str) -> Response {
    let body = json!({ "routes": [ { "path": path } ] }).to_string();
    api(
        gw,
        "PUT",
        &format!("/api/v1/services/{name}"),
        Some(TOKEN),
        Some(&body),
    )
    .await
}

pub(crate) async fn put_endpoint(
    gw: &Gateway,
    service: &str,
    id: &str,
    url: &str,
    ttl: &str,
) -> Response {
    let body = json!({ "url": url, "ttl": ttl }).to_string();
    api(
        gw,
        "PUT",
        &format!("/api/v1/services/{service}/endpoints/{id}"),
        Some(TOKEN),
        Some(&body),
    )
    .await
}

/// Sends `GET target` until the status is `want`, for at most `within`.
pub(crate) async fn until_status(
    gw: &Gateway,
    target: &str,
    want: u16,
    within: Duration,
) -> Response {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let res = exchange(gw, &get(target)).await;
        if res.status == want || tokio::time::Instant::now() >= deadline {
            return res;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_service_takes_traffic_at_once_and_leaves_on_deregistration() {
    let origin = named_origin("droplets").await;
    let state = TempDir::new();
    let gw = gateway_with_state(&state.0).await;

    assert_eq!(exchange(&gw, &get("/droplets/7")).await.status, 404);
    let res = put_service(&gw, "droplets", "/droplets/{id}").await;
    assert_eq!(res.status, 201, "{}", res.dump());
    let res = put_endpoint(&gw, "droplets", "e1", &origin.url(), "30s").await;
    assert_eq!(res.status, 201, "{}", res.dump());

    let res = until_status(&gw, "/droplets/7", 200, Duration::from_secs(1)).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "droplets");
    assert_eq!(
        origin.only_record().await.head.start,
        "GET /droplets/7 HTTP/1.1"
    );

    // A repeated PUT is the heartbeat: 200, not 201.
    let res = put_endpoint(&gw, "droplets", "e1", &origin.url(), "30s").await;
    assert_eq!(res.status, 200, "{}", res.dump());

    let res = api(
        &gw,
        "DELETE",
        "/api/v1/services/droplets/endpoints/e1",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(res.status, 204, "{}", res.dump());
    let res = until_status(&gw, "/droplets/7", 503, Duration::from_secs(1)).await;
    assert_eq!(res.cause(), Some("no_healthy_endpoint"), "{}", res.dump());

    let res = api(
        &gw,
        "DELETE",
        "/api/v1/services/droplets",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(res.status, 204, "{}", res.dump());
    let res = until_status(&gw, "/droplets/7", 404, Duration::from_secs(1)).await;
    assert_eq!(res.cause(), Some("no_route"), "{}", res.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_without_heartbeats_is_gone_after_its_ttl() {
    let kept = named_origin("kept").await;
    let lapsed = named_origin("lapsed").await;
    let state = TempDir::new();
    let gw = gateway_with_state(&state.0).await;
    assert_eq!(put_service(&gw, "kept", "/kept/").await.status, 201);
    assert_eq!(put_service(&gw, "lapsed", "/lapsed/").await.status, 201);
    assert_eq!(
        put_endpoint(&gw, "kept", "k", &kept.url(), "2s")
            .await
            .status,
        201
    );
    assert_eq!(
        put_endpoint(&gw, "lapsed", "l", &lapsed.url(), "1s")
            .await
            .status,
        201
    );
    assert_eq!(
        until_status(&gw, "/lapsed/x", 200, Duration::from_secs(1))
            .await
            .status,
        200
    );

    // Heartbeats keep `kept` alive past its TTL; `lapsed` gets none.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < deadline {
        assert_eq!(
            put_endpoint(&gw, "kept", "k", &kept.url(), "2s")
                .await
                .status,
            200
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let res = exchange(&gw, &get("/lapsed/x")).await;
    assert_eq!(res.status, 503, "{}", res.dump());
    assert_eq!(res.cause(), Some("no_healthy_endpoint"));
    let res = exchange(&gw, &get("/kept/x")).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let res = api(&gw, "GET", "/api/v1/services/lapsed", Some(TOKEN), None).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.json()["endpoints"], json!([]), "{}", res.dump());

    // Registrations count once each (heartbeats do not); the lapse is counted.
    let scrape = gw.scrape().await;
    for (service, kind) in [
        ("kept", "service"),
        ("kept", "endpoint"),
        ("lapsed", "service"),
        ("lapsed", "endpoint"),
    ] {
        assert_eq!(
            scrape.value(
                "portcullis_registrations_total",
                &[("service", service), ("kind", kind)]
            ),
            1.0,
            "{service} {kind}:\n{}",
            scrape.text
        );
    }
    assert_eq!(
        scrape.value("portcullis_lease_expiries_total", &[("service", "lapsed")]),
        1.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.value("portcullis_lease_expiries_total", &[("service", "kept")]),
        0.0,
        "{}",
        scrape.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_survive_a_restart_and_a_kill() {
    let origin = named_origin("svc").await;
    let state = TempDir::new();
    let mut gw = gateway_with_state(&state.0).await;
    assert_eq!(put_service(&gw, "svc", "/svc/").await.status, 201);
    assert_eq!(
        put_endpoint(&gw, "svc", "a", &origin.url(), "1h")
            .await
            .status,
        201
    );
    gw.terminate().await;
    gw.wait_exit(Duration::from_secs(10)).await;

    // Restart: back and serving without registering again.
    let mut gw = gateway_with_state(&state.0).await;
    let res = until_status(&gw, "/svc/x", 200, Duration::from_secs(1)).await;
    assert_eq!(res.status, 200, "{}\n{}", res.dump(), gw.logs());

    // A burst of registrations, then SIGKILL: every acknowledged one is kept.
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let id = format!("ep{i}");
        let res = put_endpoint(&gw, "svc", &id, &origin.url(), "1h").await;
        assert_eq!(res.status, 201, "{}", res.dump());
        acknowledged.push(id);
    }
    gw.kill_hard().await;
    gw.wait_exit(Duration::from_secs(10)).await;
    let gw = gateway_with_state(&state.0).await;
    let res = api(&gw, "GET", "/api/v1/services/svc", Some(TOKEN), None).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let text = res.body.text();
    for id in &acknowledged {
        assert!(
            text.contains(&format!("\"{id}\"")),
            "{id} lost after SIGKILL: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_is_moved_aside_and_the_gateway_starts_empty() {
    let state = TempDir::new();
    std::fs::write(state.0.join("registry.json"), b"{ not json").expect("write");
    let gw = gateway_with_state(&state.0).await;
    let logs = gw.logs();
    assert!(logs.contains("registry.json"), "{logs}");
    assert!(logs.contains("corrupt"), "{logs}");
    let moved: Vec<_> = std::fs::read_dir(&state.0)
        .expect("read state dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("registry.json.corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    let res = api(&gw, "GET", "/api/v1/services", Some(TOKEN), None).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert!(!res.body.text().contains("\"routes\""), "{}", res.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_get_clear_answers() {
    let origin = named_origin("a").await;
    let state = TempDir::new();
    let gw = gateway_with_state(&state.0).await;

    let res = api(&gw, "GET", "/api/v1/services", None, None).await;
    assert_eq!(res.status, 401, "{}", res.dump());
    assert_eq!(res.cause(), Some("missing_credentials"));
    assert!(
        !res.head.get_all("www-authenticate").is_empty(),
        "{}",
        res.dump()
    );
    let res = api(&gw, "GET", "/api/v1/services", Some("wrong"), None).await;
    assert_eq!(res.status, 403, "{}", res.dump());
    assert_eq!(res.cause(), Some("bad_credentials"));

    assert_eq!(put_service(&gw, "a", "/a/").await.status, 201);
    for url in [
        "http://169.254.169.254:80",
        "http://169.254.10.1:8080",
        "http://[fe80::1]:8080",
    ] {
        let res = put_endpoint(&gw, "a", "x", url, "30s").await;
        assert_eq!(res.status, 403, "{url}: {}", res.dump());
        assert_eq!(res.cause(), Some("forbidden_upstream"), "{url}");
    }
    // The gateway's own proxy listener.
    let own = format!("http://{}", gw.addr);
    let res = put_endpoint(&gw, "a", "x", &own, "30s").await;
    assert_eq!(res.status, 403, "{}", res.dump());
    assert_eq!(res.cause(), Some("forbidden_upstream"));
    let res = put_endpoint(&gw, "a", "x", "ftp://127.0.0.1:21", "30s").await;
    assert_eq!(res.status, 400, "{}", res.dump());

    // Another service may not take a route that is already served.
    let res = put_service(&gw, "b", "/a/").await;
    assert_eq!(res.status, 409, "{}", res.dump());
    assert_eq!(res.cause(), Some("route_conflict"));

    // None of it reached an origin, and the valid endpoint still works.
    assert_eq!(
        put_endpoint(&gw, "a", "ok", &origin.url(), "30s")
            .await
            .status,
        201
    );
    assert_eq!(
        until_status(&gw, "/a/x", 200, Duration::from_secs(1))
            .await
            .status,
        200
    );
}

/// An origin answering `/healthz` with `health` and everything else with `name`.
pub(crate) async fn checked_origin(name: &'static str, health: u16) -> crate::support::Origin {
    crate::support::Origin::start(move |rec| {
        if rec.head.start.starts_with("GET /healthz ") {
            let line = if health == 200 {
                "200 OK"
            } else {
                "500 Internal Server Error"
            };
            crate::support::Action::Respond(crate::support::response(line, &[], b"probe"))
        } else {
            crate::support::Action::Respond(crate::support::ok(name))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_probes_use_fresh_connections_and_keep_traffic_off_failing_endpoints() {
    let good = checked_origin("good", 200).await;
    let bad = checked_origin("bad", 500).await;
    let state = TempDir::new();
    let gw = gateway_with_state(&state.0).await;
    let body = json!({
        "routes": [ { "path": "/app/" } ],
        "health": { "path": "/healthz", "interval": "200ms", "timeout": "200ms",
                    "expected_status": [200], "headers": { "X-Forwarded-Proto": "https" } }
    })
    .to_string();
    let res = api(&gw, "PUT", "/api/v1/services/app", Some(TOKEN), Some(&body)).await;
    assert_eq!(res.status, 201, "{}", res.dump());
    assert_eq!(
        put_endpoint(&gw, "app", "good", &good.url(), "1h")
            .await
            .status,
        201
    );
    assert_eq!(
        put_endpoint(&gw, "app", "bad", &bad.url(), "1h")
            .await
            .status,
        201
    );

    // Probes: a new connection each, our User-Agent, the override header.
    good.wait_until("three probes", |o| {
        o.records()
            .iter()
            .filter(|r| r.head.start.starts_with("GET /healthz "))
            .count()
            >= 3
    })
    .await;
    let probes: Vec<_> = good
        .records()
        .into_iter()
        .filter(|r| r.head.start.starts_with("GET /healthz "))
        .collect();
    let conns: std::collections::BTreeSet<usize> = probes.iter().map(|r| r.conn).collect();
    assert_eq!(conns.len(), probes.len(), "a probe reused a connection");
    for p in &probes {
        let ua = p.head.get_all("user-agent");
        assert_eq!(ua.len(), 1, "{}", p.head.text());
        assert!(ua[0].starts_with("portcullis-health/"), "{}", p.head.text());
        assert_eq!(
            p.head.get_all("x-forwarded-proto"),
            ["https"],
            "{}",
            p.head.text()
        );
    }

    // Traffic goes only to the endpoint whose probes pass.
    let res = until_status(&gw, "/app/x", 200, Duration::from_secs(2)).await;
    assert_eq!(res.status, 200, "{}\n{}", res.dump(), gw.logs());
    for _ in 0..10 {
        let res = exchange(&gw, &get("/app/x")).await;
        assert_eq!(
            (res.status, res.body.text()),
            (200, "good".to_owned()),
            "{}",
            res.dump()
        );
    }
    assert!(
        bad.records()
            .iter()
            .all(|r| r.head.start.starts_with("GET /healthz ")),
        "traffic reached the failing endpoint"
    );

    // The admin API shows each endpoint's health, with the failing probe's error.
    let res = api(&gw, "GET", "/api/v1/services/app", Some(TOKEN), None).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let eps = res.json()["endpoints"].clone();
    let find = |id: &str| {
        eps.as_array()
            .and_then(|a| a.iter().find(|e| e["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no endpoint {id}: {eps}"))
    };
    assert_eq!(find("good")["health"]["state"], "healthy", "{eps}");
    assert_eq!(find("good")["health"]["available"], true, "{eps}");
    let bad_health = find("bad")["health"].clone();
    assert_ne!(bad_health["state"], "healthy", "{eps}");
    assert_eq!(bad_health["available"], false, "{eps}");
    assert!(
        bad_health["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{eps}"
    );

    // With no endpoint passing, 503 no_healthy_endpoint with Retry-After.
    let res = api(
        &gw,
        "DELETE",
        "/api/v1/services/app/endpoints/good",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(res.status, 204, "{}", res.dump());
    let res = until_status(&gw, "/app/x", 503, Duration::from_secs(2)).await;
    assert_eq!(res.cause(), Some("no_healthy_endpoint"), "{}", res.dump());
    assert_eq!(res.head.get_all("retry-after"), ["1"], "{}", res.dump());

    // A removed endpoint's prober is stopped: no probe reaches it any more
    // (probes run every 200 ms; one already under way may still land).
    let probes = |o: &Origin| {
        o.records()
            .iter()
            .filter(|r| r.head.start.starts_with("GET /healthz "))
            .count()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_delete = probes(&good);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        probes(&good),
        after_delete,
        "the removed endpoint is still probed"
    );
    // The endpoint still registered keeps being probed.
    let bad_before = probes(&bad);
    bad.wait_until("more probes", |o| probes(o) > bad_before)
        .await;
}

/// A request without a body whose endpoint refuses the connection is sent to
/// another endpoint (it was never written); a POST with a body never is: it gets
/// 502, and no POST reaches an origin twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_retried_only_for_requests_that_can_be_sent_again() {
    let live = named_origin("live").await;
    let (_refusing, dead_port) = crate::support::refusing_port();
    let state = TempDir::new();
    let gw = gateway_with_state(&state.0).await;
    assert_eq!(put_service(&gw, "svc", "/svc/").await.status, 201);
    assert_eq!(
        put_endpoint(&gw, "svc", "live", &live.url(), "1h")
            .await
            .status,
        201
    );
    let dead = format!("http://127.0.0.1:{dead_port}");
    assert_eq!(
        put_endpoint(&gw, "svc", "dead", &dead, "1h").await.status,
        201
    );
    assert_eq!(
        until_status(&gw, "/svc/warm", 200, Duration::from_secs(1))
            .await
            .status,
        200
    );

    // Round robin sends every other request to the dead endpoint: GETs still
    // all succeed.
    for i in 0..12 {
        let res = exchange(&gw, &get(&format!("/svc/get-{i}"))).await;
        assert_eq!(res.status, 200, "GET {i}: {}", res.dump());
    }

    // The retries are counted.
    let scrape = gw
        .scrape_until(
            "portcullis_upstream_retries_total",
            &[("outcome", "retried")],
            1.0,
        )
        .await;
    assert!(
        scrape.value(
            "portcullis_upstream_retries_total",
            &[("outcome", "retried")]
        ) >= 1.0,
        "{}",
        scrape.text
    );

    // POSTs with a body: either answered by the live origin or refused with 502;
    // never sent twice.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let req = format!(
            "POST /svc/post-{i} HTTP/1.1\r\nHost: t.local\r\nContent-Length: 5\r\n\r\nhello"
        );
        let res = exchange(&gw, req.as_bytes()).await;
        assert!(
            res.status == 200 || res.status == 502,
            "POST {i}: {}",
            res.dump()
        );
        if res.status == 502 {
            assert_eq!(res.cause(), Some("upstream_unreachable"), "{}", res.dump());
        }
        statuses.push(res.status);
    }
    let records = live.records();
    for (i, status) in statuses.iter().enumerate() {
        let line = format!("POST /svc/post-{i} HTTP/1.1");
        let seen = records.iter().filter(|r| r.head.start == line).count();
        let want = usize::from(*status == 200);
        assert_eq!(
            seen, want,
            "POST {i} reached the origin {seen} times, answered {status}"
        );
    }
}

/// A registered service names a filter set of the config: its routes go through
/// those filters (here API-key auth); an unknown set is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_services_use_named_filter_sets() {
    let origin = named_origin("secured").await;
    let state = TempDir::new();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nstate_dir = {:?}\n\n\
         [auth.keys]\ntype = \"api_key\"\nheader = \"x-api-key\"\nidentity_header = \"x-identity\"\n\
         keys = [ {{ identity = \"acme\", sha256 = \"{}\" }} ]\n\n\
         [[filter_sets.protected]]\nauth = \"keys\"\n\
         [[filter_sets.protected]]\nresponse_headers = {{ add = {{ \"x-filtered\" = \"yes\" }} }}\n",
        state.0.display().to_string(),
        crate::auth::sha256_hex("k-1"),
    );
    let gw = Gateway::run_file_with_env(
        TempDir::new(),
        &text,
        &[EnvChange::Set("PORTCULLIS_ADMIN_TOKEN", TOKEN)],
    )
    .await;

    let bad = json!({ "routes": [ { "path": "/s/" } ], "filters": "nope" }).to_string();
    let res = api(&gw, "PUT", "/api/v1/services/s", Some(TOKEN), Some(&bad)).await;
    assert_eq!(res.status, 400, "{}", res.dump());
    assert_eq!(res.cause(), Some("invalid_registration"), "{}", res.dump());

    let body = json!({ "routes": [ { "path": "/s/" } ], "filters": "protected" }).to_string();
    let res = api(&gw, "PUT", "/api/v1/services/s", Some(TOKEN), Some(&body)).await;
    assert_eq!(res.status, 201, "{}", res.dump());
    assert_eq!(
        put_endpoint(&gw, "s", "e", &origin.url(), "1h")
            .await
            .status,
        201
    );

    let res = until_status(&gw, "/s/x", 401, Duration::from_secs(1)).await;
    assert_eq!(res.status, 401, "{}", res.dump());
    assert_eq!(res.cause(), Some("missing_credentials"));
    assert_eq!(res.head.get_all("x-filtered"), ["yes"], "{}", res.dump());
    let req = "GET /s/x HTTP/1.1\r\nHost: t.local\r\nx-api-key: k-1\r\n\r\n";
    let res = exchange(&gw, req.as_bytes()).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    assert_eq!(
        rec.head.get_all("x-identity"),
        ["acme"],
        "{}",
        rec.head.text()
    );
    assert!(
        rec.head.get_all("x-api-key").is_empty(),
        "{}",
        rec.head.text()
    );
}

/// A service token registers its own service's endpoints, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_token_may_only_register_its_service() {
    let origin = named_origin("own").await;
    let state = TempDir::new();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nstate_dir = {:?}\n\n\
         [registry]\nservice_tokens = {{ own = \"own-service-token-123\" }}\n",
        state.0.display().to_string(),
    );
    let gw = Gateway::run_file_with_env(
        TempDir::new(),
        &text,
        &[EnvChange::Set("PORTCULLIS_ADMIN_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(put_service(&gw, "own", "/own/").await.status, 201);
    assert_eq!(put_service(&gw, "other", "/other/").await.status, 201);
    let ep = json!({ "url": origin.url(), "ttl": "1h" }).to_string();
    let own = "own-service-token-123";
    let res = api(
        &gw,
        "PUT",
        "/api/v1/services/own/endpoints/e",
        Some(own),
        Some(&ep),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.dump());
    let res = api(
        &gw,
        "PUT",
        "/api/v1/services/other/endpoints/e",
        Some(own),
        Some(&ep),
    )
    .await;
    assert_eq!(res.status, 403, "{}", res.dump());
    assert_eq!(res.cause(), Some("bad_credentials"), "{}", res.dump());
    let res = api(&gw, "DELETE", "/api/v1/services/other", Some(own), None).await;
    assert_eq!(res.status, 403, "{}", res.dump());
    assert_eq!(
        until_status(&gw, "/own/x", 200, Duration::from_secs(1))
            .await
            .status,
        200
    );
}
