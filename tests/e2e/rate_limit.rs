//! R10 rate limiting through the binary: exact bursts per client IP with
//! `Retry-After` and `RateLimit` headers, client-supplied `X-Forwarded-For`
//! ignored, and one limit shared by two gateways through a real `redis-server`,
//! with the configured policy while Redis is down.

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::support::redis::Redis;
use crate::support::{Client, Gateway, Origin, Response, named_origin, service};

/// A gateway whose route `/` to `origin` counts requests against the limit
/// `[[rate_limits]]` `limit` (TOML body after `name = "lim"`), with `extra`
/// top-level TOML.
async fn gateway(origin: &Origin, limit: &str, extra: &str) -> Gateway {
    let rest = format!(
        "{extra}\n{}[[rate_limits]]\nname = \"lim\"\n{limit}\n\n\
         [[routes]]\npath = \"/\"\nservice = \"svc\"\n[[routes.filters]]\nrate_limit = \"lim\"\n",
        service("svc", &origin.url())
    );
    Gateway::run("", &rest).await
}

/// `GET target` from the client address `from`, on a fresh connection.
async fn get_from(gw: &Gateway, from: &str, target: &str, extra: &str) -> Response {
    let ip: IpAddr = from.parse().expect("an IP");
    let mut c = Client::connect_from(gw.addr, ip).await;
    let req = format!("GET {target} HTTP/1.1\r\nHost: t.local\r\n{extra}\r\n");
    c.send(req.as_bytes()).await;
    c.response().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_passes_then_429_and_each_client_ip_has_its_own_quota() {
    let origin = named_origin("ok").await;
    let gw = gateway(
        &origin,
        "key = \"client_ip\"\nrate = 3\nper = \"1m\"\nburst = 3",
        "",
    )
    .await;
    for (i, remaining) in [2, 1, 0].into_iter().enumerate() {
        let res = get_from(&gw, "127.0.0.2", &format!("/a/{i}"), "").await;
        assert_eq!(res.status, 200, "{}", res.dump());
        assert_eq!(
            res.head.get("ratelimit-policy"),
            Some("\"lim\";q=3;w=60"),
            "{}",
            res.dump()
        );
        let rl = res.head.get("ratelimit").unwrap_or_default().to_owned();
        assert!(
            rl.starts_with(&format!("\"lim\";r={remaining};t=")),
            "{}",
            res.dump()
        );
    }
    let res = get_from(&gw, "127.0.0.2", "/a/over", "").await;
    assert_eq!(res.status, 429, "{}", res.dump());
    assert_eq!(res.cause(), Some("rate_limited"));
    // 3 per minute: one comes back every 20 s (19 when the requests took over a
    // second, rounded up).
    let retry_after: u64 = res
        .head
        .get("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((19..=20).contains(&retry_after), "{}", res.dump());
    assert_eq!(res.head.get("ratelimit-policy"), Some("\"lim\";q=3;w=60"));
    assert_eq!(res.json()["error"], "rate_limited");
    assert_eq!(
        origin.records().len(),
        3,
        "the 429 never reached the origin"
    );

    // Another client IP has its own quota.
    let res = get_from(&gw, "127.0.0.3", "/b", "").await;
    assert_eq!(res.status, 200, "{}", res.dump());

    // A client rotating X-Forwarded-For (it is not a trusted proxy) is still
    // one key.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let xff = format!("X-Forwarded-For: 198.51.100.{i}\r\n");
        statuses.push(get_from(&gw, "127.0.0.4", "/c", &xff).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);

    // Decisions are counted by route and decision.
    let scrape = gw
        .scrape_until(
            "portcullis_ratelimit_decisions_total",
            &[("decision", "limited")],
            3.0,
        )
        .await;
    assert_eq!(
        scrape.value(
            "portcullis_ratelimit_decisions_total",
            &[("decision", "limited")]
        ),
        3.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.value(
            "portcullis_ratelimit_decisions_total",
            &[("decision", "allowed")]
        ),
        7.0,
        "{}",
        scrape.text
    );
}

/// Sends `n` GETs alternately to `gws`, from one client IP; returns the statuses.
async fn alternate(gws: &[&Gateway], n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for i in 0..n {
        let gw = gws[i % gws.len()];
        let started = Instant::now();
        let res = get_from(gw, "127.0.0.5", &format!("/f/{i}"), "").await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "request {i} took {:?}",
            started.elapsed()
        );
        out.push(res.status);
    }
    out
}

fn redis_store(redis: &Redis, on_failure: &str) -> String {
    format!(
        "[rate_limit]\nstore = {{ kind = \"redis\", url = {:?}, timeout = \"1s\", on_failure = \"{on_failure}\", fleet_size = 2, breaker_cooldown = \"500ms\" }}\n",
        redis.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_limit_through_redis_and_fail_open_when_it_is_down() {
    let mut redis = Redis::start().await;
    let origin = named_origin("ok").await;
    let limit = "key = \"client_ip\"\nrate = 6\nper = \"1m\"\nburst = 6";
    let a = gateway(&origin, limit, &redis_store(&redis, "fail_open")).await;
    let b = gateway(&origin, limit, &redis_store(&redis, "fail_open")).await;

    // The fleet lets through the quota in total, not twice it.
    let statuses = alternate(&[&a, &b], 10).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(statuses[6..], [429, 429, 429, 429], "{statuses:?}");

    // Redis down: each gateway falls back to its share of the quota (6 / 2 =
    // 3 at once), no request hangs.
    redis.stop().await;
    let statuses = alternate(&[&a], 5).await;
    assert_eq!(statuses, [200, 200, 200, 429, 429], "{statuses:?}");
    let scrape = a.scrape().await;
    assert!(
        scrape.value(
            "portcullis_ratelimit_decisions_total",
            &[("decision", "fallback")]
        ) >= 1.0,
        "{}",
        scrape.text
    );

    // Redis back (empty): once each gateway's breaker closed again (a request
    // probes it; until then the local share applies, the documented
    // tolerance), the shared limit is exact again.
    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for gw in [&a, &b] {
        loop {
            let _ = get_from(gw, "127.0.0.7", "/probe", "").await;
            let scrape = gw.scrape().await;
            let state = scrape.value("portcullis_ratelimit_redis_breaker_state", &[]);
            let errors_before = scrape.value("portcullis_ratelimit_redis_errors_total", &[]);
            let _ = get_from(gw, "127.0.0.7", "/probe", "").await;
            let errors_after = gw
                .scrape()
                .await
                .value("portcullis_ratelimit_redis_errors_total", &[]);
            if state == 0.0 && errors_after == errors_before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "breaker not closed:\n{}",
                scrape.text
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let statuses = alternate(&[&a, &b], 10).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(statuses[6..], [429, 429, 429, 429], "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_answers_503_while_redis_is_down() {
    let mut redis = Redis::start().await;
    let origin = named_origin("ok").await;
    let gw = gateway(
        &origin,
        "key = \"route\"\nrate = 100\nper = \"1s\"",
        &redis_store(&redis, "fail_closed"),
    )
    .await;
    assert_eq!(get_from(&gw, "127.0.0.6", "/x", "").await.status, 200);
    redis.stop().await;
    for i in 0..3 {
        let started = Instant::now();
        let res = get_from(&gw, "127.0.0.6", &format!("/down/{i}"), "").await;
        assert_eq!(res.status, 503, "{}", res.dump());
        assert_eq!(
            res.cause(),
            Some("rate_limit_unavailable"),
            "{}",
            res.dump()
        );
        assert_eq!(res.head.get("retry-after"), Some("1"));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = get_from(&gw, "127.0.0.6", "/back", "").await;
        if res.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {}", res.dump());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_client_is_the_key() {
    let origin = named_origin("ok").await;
    let rest = format!(
        "{}[[rate_limits]]\nname = \"lim\"\nrate = 1\nper = \"1m\"\n\n\
         [[routes]]\npath = \"/\"\nservice = \"svc\"\n[[routes.filters]]\nrate_limit = \"lim\"\n",
        service("svc", &origin.url())
    );
    let gw = Gateway::run("trusted_proxies = [\"127.0.0.8/32\"]", &rest).await;
    let xff = |ip: &str| format!("X-Forwarded-For: {ip}\r\n");
    // Two clients behind the proxy: a quota each.
    assert_eq!(
        get_from(&gw, "127.0.0.8", "/", &xff("198.51.100.1"))
            .await
            .status,
        200
    );
    assert_eq!(
        get_from(&gw, "127.0.0.8", "/", &xff("198.51.100.1"))
            .await
            .status,
        429
    );
    assert_eq!(
        get_from(&gw, "127.0.0.8", "/", &xff("198.51.100.2"))
            .await
            .status,
        200
    );
    // The same header from an untrusted peer is not believed: keyed by the peer.
    assert_eq!(
        get_from(&gw, "127.0.0.9", "/", &xff("198.51.100.3"))
            .await
            .status,
        200
    );
    assert_eq!(
        get_from(&gw, "127.0.0.9", "/", &xff("198.51.100.4"))
            .await
            .status,
        429
    );
}
