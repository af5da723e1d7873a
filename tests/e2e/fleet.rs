//! R12 for a fleet: two gateways sharing registrations through one real
//! `redis-server` see each other's changes within a second, and keep serving
//! while Redis is down.

use std::time::Duration;

use serde_json::json;

use crate::support::gateway::EnvChange;
use crate::support::redis::Redis;
use crate::support::{Client, Gateway, Response, TempDir, exchange, get, named_origin};

const TOKEN: &str = "fleet-token";

async fn gateway(redis: &Redis) -> Gateway {
    let dir = TempDir::new();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nstate_dir = {:?}\n\n\
         [registry]\nredis = {:?}\nredis_resync = \"1s\"\n",
        dir.0.join("state").display().to_string(),
        redis.url(),
    );
    Gateway::run_file_with_env(
        dir,
        &text,
        &[EnvChange::Set("PORTCULLIS_ADMIN_TOKEN", TOKEN)],
    )
    .await
}

async fn api(gw: &Gateway, method: &str, path: &str, body: Option<&str>) -> Response {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin.local\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n"
    );
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

async fn until_status(gw: &Gateway, target: &str, want: u16, within: Duration) -> Response {
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
async fn two_gateways_share_registrations_and_survive_a_redis_outage() {
    let mut redis = Redis::start().await;
    let origin = named_origin("shared").await;
    let a = gateway(&redis).await;
    let b = gateway(&redis).await;

    let svc = json!({ "routes": [ { "path": "/shared/" } ] }).to_string();
    let res = api(&a, "PUT", "/api/v1/services/shared", Some(&svc)).await;
    assert_eq!(res.status, 201, "{}\n{}", res.dump(), a.logs());
    let ep = json!({ "url": origin.url(), "ttl": "1h" }).to_string();
    let res = api(&a, "PUT", "/api/v1/services/shared/endpoints/e1", Some(&ep)).await;
    assert_eq!(res.status, 201, "{}", res.dump());

    // Registered on A, served by B within a second.
    let res = until_status(&b, "/shared/x", 200, Duration::from_secs(1)).await;
    assert_eq!(res.status, 200, "{}\n{}", res.dump(), b.logs());
    assert_eq!(res.body.text(), "shared");

    // Redis down: both keep serving the last known table; changes are refused
    // with 503 and readiness says the store is unreachable.
    redis.stop().await;
    for gw in [&a, &b] {
        let res = exchange(gw, &get("/shared/y")).await;
        assert_eq!(res.status, 200, "{}", res.dump());
    }
    let ep2 = json!({ "url": origin.url(), "ttl": "1h" }).to_string();
    let res = api(
        &a,
        "PUT",
        "/api/v1/services/shared/endpoints/e2",
        Some(&ep2),
    )
    .await;
    assert_eq!(res.status, 503, "{}", res.dump());
    assert_eq!(res.cause(), Some("store_unavailable"), "{}", res.dump());
    let res = api(&a, "GET", "/readyz", None).await;
    assert_eq!(
        res.json()["registry_store"],
        "unreachable",
        "{}",
        res.dump()
    );

    // Redis back (empty: no persistence): the next change on A is stored whole
    // and B picks it up.
    redis.restart().await;
    let svc2 = json!({ "routes": [ { "path": "/second/" } ] }).to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res = api(&a, "PUT", "/api/v1/services/second", Some(&svc2)).await;
        if res.status == 201 || res.status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "store still unavailable: {}",
            res.dump()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = api(&a, "PUT", "/api/v1/services/second/endpoints/e1", Some(&ep)).await;
    assert_eq!(res.status, 201, "{}", res.dump());
    let res = until_status(&b, "/second/z", 200, Duration::from_secs(3)).await;
    assert_eq!(res.status, 200, "{}\n{}", res.dump(), b.logs());
    let res = exchange(&b, &get("/shared/z")).await;
    assert_eq!(res.status, 200, "{}", res.dump());
}
