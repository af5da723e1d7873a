//! Tests of the layer with the local store, on paused tokio time.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use portcullis_core::{Cause, Identity, MatchedRoute, PeerAddr};
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::*;

type Body = Full<Bytes>;

fn echo() -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone {
    service_fn(|_req: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn peer(ip: &str) -> PeerAddr {
    PeerAddr(SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 40000))
}

fn from(ip: &str) -> Request<Empty<Bytes>> {
    let mut req = Request::get("/").body(Empty::new()).unwrap();
    req.extensions_mut().insert(peer(ip));
    req
}

fn layer(config: RateLimitConfig) -> RateLimitLayer {
    RateLimitLayer::from_config(&config).unwrap()
}

/// 6 per minute (one every 10s), burst 3, per client IP.
fn per_ip() -> LimitConfig {
    LimitConfig::new("per_ip", 6, Duration::from_secs(60)).burst(3)
}

async fn send<S>(svc: &S, req: Request<Empty<Bytes>>) -> Response<ResponseBody<Body>>
where
    S: Service<Request<Empty<Bytes>>, Response = Response<ResponseBody<Body>>, Error = Infallible>
        + Clone,
{
    svc.clone().oneshot(req).await.unwrap()
}

fn header<'a, B>(res: &'a Response<B>, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .map_or("<none>", |v| v.to_str().unwrap())
}

#[tokio::test(start_paused = true)]
async fn burst_passes_then_429_with_retry_after_and_exact_headers() {
    let svc = layer(RateLimitConfig::new().limit(per_ip())).layer(echo());
    for (r, t) in [(2, 10), (1, 20), (0, 30)] {
        let res = send(&svc, from("192.0.2.1")).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "ratelimit-policy"), r#""per_ip";q=6;w=60"#);
        assert_eq!(
            header(&res, "ratelimit"),
            format!(r#""per_ip";r={r};t={t}"#)
        );
        assert_eq!(header(&res, "retry-after"), "<none>");
    }
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), "10");
    assert_eq!(header(&res, "portcullis-error"), "rate_limited");
    assert_eq!(header(&res, "ratelimit-policy"), r#""per_ip";q=6;w=60"#);
    assert_eq!(header(&res, "ratelimit"), r#""per_ip";r=0;t=30"#);
    assert_eq!(res.extensions().get::<Cause>(), Some(&Cause::RateLimited));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        br#"{"error":"rate_limited","status":429,"request_id":null,"service":null}"#
    );

    // Just before Retry-After: still refused, with the rest of the wait rounded up.
    tokio::time::advance(Duration::from_millis(9_500)).await;
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), "1");

    // After Retry-After: one passes again, then the next is refused.
    tokio::time::advance(Duration::from_millis(500)).await;
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "ratelimit"), r#""per_ip";r=0;t=30"#);
    assert_eq!(send(&svc, from("192.0.2.1")).await.status(), 429);

    // After a full minute of quiet, the whole burst is back.
    tokio::time::advance(Duration::from_secs(60)).await;
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(header(&res, "ratelimit"), r#""per_ip";r=2;t=10"#);
}

#[tokio::test(start_paused = true)]
async fn clients_do_not_share_quota() {
    let svc = layer(RateLimitConfig::new().limit(per_ip().burst(1))).layer(echo());
    assert_eq!(send(&svc, from("192.0.2.1")).await.status(), 200);
    assert_eq!(send(&svc, from("192.0.2.1")).await.status(), 429);
    assert_eq!(send(&svc, from("192.0.2.2")).await.status(), 200);
    assert_eq!(send(&svc, from("2001:db8::1")).await.status(), 200);
    assert_eq!(send(&svc, from("2001:db8::1")).await.status(), 429);
    // An IPv4-mapped address is the IPv4 client.
    assert_eq!(send(&svc, from("::ffff:192.0.2.2")).await.status(), 429);
}

#[tokio::test(start_paused = true)]
async fn untrusted_client_rotating_forwarded_for_stays_one_key() {
    let svc = layer(RateLimitConfig::new().limit(per_ip())).layer(echo());
    let mut statuses = Vec::new();
    for i in 0..5 {
        let mut req = from("192.0.2.9");
        req.headers_mut().insert(
            "x-forwarded-for",
            format!("198.51.100.{i}").parse().unwrap(),
        );
        statuses.push(send(&svc, req).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
}

#[tokio::test(start_paused = true)]
async fn the_client_addr_a_forwarding_layer_set_names_the_client() {
    let svc = layer(RateLimitConfig::new().limit(per_ip().burst(1))).layer(echo());
    // Behind a trusted proxy (10.1.2.3), the forwarding layer named the client.
    let via_proxy = |client: &str| {
        let mut req = from("10.1.2.3");
        req.extensions_mut()
            .insert(portcullis_core::ClientAddr(client.parse().unwrap()));
        // A header alone is never believed.
        req.headers_mut()
            .insert("x-forwarded-for", "1.1.1.1".parse().unwrap());
        req
    };
    assert_eq!(send(&svc, via_proxy("203.0.113.1")).await.status(), 200);
    assert_eq!(send(&svc, via_proxy("203.0.113.1")).await.status(), 429);
    // Another client behind the same proxy has its own quota.
    assert_eq!(send(&svc, via_proxy("203.0.113.2")).await.status(), 200);
}

fn with_identity(mut req: Request<Empty<Bytes>>, id: &str) -> Request<Empty<Bytes>> {
    req.extensions_mut().insert(Identity(Arc::from(id)));
    req
}

#[tokio::test(start_paused = true)]
async fn identity_keys_and_the_anonymous_key() {
    let limit = per_ip().burst(1).key([KeyPart::Identity]);
    let svc = layer(RateLimitConfig::new().limit(limit)).layer(echo());
    // Same identity from two addresses: one key.
    assert_eq!(
        send(&svc, with_identity(from("192.0.2.1"), "acme"))
            .await
            .status(),
        200
    );
    assert_eq!(
        send(&svc, with_identity(from("192.0.2.2"), "acme"))
            .await
            .status(),
        429
    );
    assert_eq!(
        send(&svc, with_identity(from("192.0.2.1"), "globex"))
            .await
            .status(),
        200
    );
    // No identity: one shared "anonymous" key, distinct from any identity.
    assert_eq!(send(&svc, from("192.0.2.3")).await.status(), 200);
    assert_eq!(send(&svc, from("192.0.2.4")).await.status(), 429);
    assert_eq!(
        send(&svc, with_identity(from("192.0.2.4"), "anonymous"))
            .await
            .status(),
        200
    );
}

#[tokio::test(start_paused = true)]
async fn header_keys_absent_counts_as_empty() {
    let limit = per_ip().burst(1).key([KeyPart::Header("x-api-key".into())]);
    let svc = layer(RateLimitConfig::new().limit(limit)).layer(echo());
    let keyed = |k: &str| {
        let mut req = from("192.0.2.1");
        req.headers_mut().insert("x-api-key", k.parse().unwrap());
        req
    };
    assert_eq!(send(&svc, keyed("a")).await.status(), 200);
    assert_eq!(send(&svc, keyed("a")).await.status(), 429);
    assert_eq!(send(&svc, keyed("b")).await.status(), 200);
    assert_eq!(send(&svc, from("192.0.2.1")).await.status(), 200);
    assert_eq!(send(&svc, keyed("")).await.status(), 429);
}

fn on_route(mut req: Request<Empty<Bytes>>, template: &str) -> Request<Empty<Bytes>> {
    req.extensions_mut().insert(MatchedRoute {
        name: Arc::from("r"),
        template: Arc::from(template),
    });
    req
}

#[tokio::test(start_paused = true)]
async fn combined_keys() {
    let limit = per_ip().burst(1).key([KeyPart::Identity, KeyPart::Route]);
    let svc = layer(RateLimitConfig::new().limit(limit)).layer(echo());
    let req = |id: &str, route: &str| on_route(with_identity(from("192.0.2.1"), id), route);
    assert_eq!(send(&svc, req("acme", "/a")).await.status(), 200);
    assert_eq!(send(&svc, req("acme", "/a")).await.status(), 429);
    assert_eq!(send(&svc, req("acme", "/b")).await.status(), 200);
    assert_eq!(send(&svc, req("globex", "/a")).await.status(), 200);
    // No route: one "unmatched" key.
    assert_eq!(
        send(&svc, with_identity(from("192.0.2.1"), "acme"))
            .await
            .status(),
        200
    );
    assert_eq!(
        send(&svc, with_identity(from("192.0.2.1"), "acme"))
            .await
            .status(),
        429
    );
}

#[tokio::test(start_paused = true)]
async fn empty_key_is_one_global_key() {
    let limit = per_ip().burst(2).key([]);
    let svc = layer(RateLimitConfig::new().limit(limit)).layer(echo());
    assert_eq!(send(&svc, from("192.0.2.1")).await.status(), 200);
    assert_eq!(send(&svc, from("192.0.2.2")).await.status(), 200);
    assert_eq!(send(&svc, from("192.0.2.3")).await.status(), 429);
}

#[tokio::test(start_paused = true)]
async fn several_limits_a_refusal_does_not_use_up_the_others() {
    // Per IP: 1 at once. Global: 3 at once.
    let config = RateLimitConfig::new()
        .limit(LimitConfig::new("per_ip", 1, Duration::from_secs(10)))
        .limit(LimitConfig::new("global", 3, Duration::from_secs(30)).key([]));
    let svc = layer(config).layer(echo());
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "ratelimit-policy"),
        r#""per_ip";q=1;w=10, "global";q=3;w=30"#
    );
    assert_eq!(
        header(&res, "ratelimit"),
        r#""per_ip";r=0;t=10, "global";r=2;t=10"#
    );
    // Refused by per_ip: global is not counted (2 left, listed as they are).
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), "10");
    assert_eq!(
        header(&res, "ratelimit"),
        r#""per_ip";r=0;t=10, "global";r=2;t=10"#
    );
    assert_eq!(send(&svc, from("192.0.2.2")).await.status(), 200);
    let res = send(&svc, from("192.0.2.3")).await;
    assert_eq!(res.status(), 200);
    // Most restrictive first.
    assert_eq!(
        header(&res, "ratelimit"),
        r#""global";r=0;t=30, "per_ip";r=0;t=10"#
    );
    let res = send(&svc, from("192.0.2.4")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), "10");
    assert_eq!(
        header(&res, "ratelimit"),
        r#""global";r=0;t=30, "per_ip";r=1;t=0"#
    );
}

#[tokio::test(start_paused = true)]
async fn flood_of_distinct_keys_stays_within_the_cap() {
    let config = RateLimitConfig::new()
        .limit(per_ip().burst(1))
        .max_keys(1_000)
        .sweep_interval(Duration::from_secs(600));
    let layer = layer(config);
    let mut svc = layer.layer(echo());
    let mut allowed = 0;
    for i in 0..100_000u32 {
        let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
        let mut req = Request::get("/").body(Empty::new()).unwrap();
        req.extensions_mut()
            .insert(PeerAddr(SocketAddr::new(ip, 1)));
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        if res.status() == 200 {
            allowed += 1;
        }
    }
    assert_eq!(layer.tracked_keys("per_ip"), Some(1_000));
    assert_eq!(layer.overflowed_keys("per_ip"), Some(99_000));
    // 1000 tracked keys plus the 64 overflow states, each with a burst of 1
    // (99,000 new keys spread over them by hash).
    assert_eq!(allowed, 1_064);
    // A tracked client keeps its own state despite the flood.
    assert_eq!(send(&svc, from("10.0.0.0")).await.status(), 429);

    // Once their quota is full again, a sweep forgets them all.
    tokio::time::advance(Duration::from_secs(30)).await;
    layer.sweep();
    assert_eq!(layer.tracked_keys("per_ip"), Some(0));
    assert_eq!(send(&svc, from("10.9.9.9")).await.status(), 200);
    assert_eq!(layer.tracked_keys("per_ip"), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_request_after_the_sweep_interval_sweeps() {
    let config = RateLimitConfig::new()
        .limit(per_ip())
        .sweep_interval(Duration::from_secs(60));
    let layer = layer(config);
    let svc = layer.layer(echo());
    for i in 0..10 {
        send(&svc, from(&format!("192.0.2.{i}"))).await;
    }
    assert_eq!(layer.tracked_keys("per_ip"), Some(10));
    tokio::time::advance(Duration::from_secs(61)).await;
    send(&svc, from("192.0.2.200")).await;
    // That request started a sweep on the blocking pool, off its own path.
    let mut tracked = layer.tracked_keys("per_ip");
    for _ in 0..2000 {
        if tracked == Some(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        tokio::task::yield_now().await;
        tracked = layer.tracked_keys("per_ip");
    }
    assert_eq!(tracked, Some(1));
}

#[tokio::test(start_paused = true)]
async fn upstream_headers_are_kept_and_ours_appended() {
    let inner = service_fn(|_req: Request<Empty<Bytes>>| async {
        let mut res = Response::new(Full::new(Bytes::new()));
        res.headers_mut()
            .insert("ratelimit", r#""upstream";r=5;t=1"#.parse().unwrap());
        Ok::<_, Infallible>(res)
    });
    let svc = layer(RateLimitConfig::new().limit(per_ip())).layer(inner);
    let res = svc.oneshot(from("192.0.2.1")).await.unwrap();
    let values: Vec<_> = res.headers().get_all("ratelimit").iter().collect();
    assert_eq!(values, [r#""upstream";r=5;t=1"#, r#""per_ip";r=2;t=10"#]);
}

#[tokio::test(start_paused = true)]
async fn no_limits_no_headers() {
    let svc = layer(RateLimitConfig::new()).layer(echo());
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("ratelimit-policy").is_none());
}

#[tokio::test(start_paused = true)]
async fn no_peer_address_is_one_unknown_key() {
    let svc = layer(RateLimitConfig::new().limit(per_ip().burst(1))).layer(echo());
    let bare = || Request::get("/").body(Empty::new()).unwrap();
    assert_eq!(send(&svc, bare()).await.status(), 200);
    assert_eq!(send(&svc, bare()).await.status(), 429);
    assert_eq!(send(&svc, from("192.0.2.1")).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn in_an_axum_router() {
    use axum::Router;
    use axum::routing::get;

    let app = Router::new()
        .route("/limited", get(|| async { "hi" }))
        .layer(RateLimitLayer::new(per_ip().burst(2)).unwrap())
        .route("/free", get(|| async { "free" }));
    let get = |path: &str, ip: &str| {
        Request::get(path)
            .extension(peer(ip))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.clone()
            .oneshot(get("/limited", "192.0.2.1"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.clone()
            .oneshot(get("/limited", "192.0.2.1"))
            .await
            .unwrap()
            .status(),
        200
    );
    let res = app
        .clone()
        .oneshot(get("/limited", "192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), "10");
    let res = app
        .clone()
        .oneshot(get("/free", "192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("ratelimit").is_none());
    assert_eq!(
        app.oneshot(get("/limited", "192.0.2.2"))
            .await
            .unwrap()
            .status(),
        200
    );
}

// ---- metrics ----

#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);

impl ::metrics::Recorder for Recorded {
    fn describe_counter(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn register_counter(
        &self,
        key: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        self.0
            .lock()
            .unwrap()
            .push(format!("{}{{{}}}", key.name(), labels.join(",")));
        ::metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &::metrics::Key, _: &::metrics::Metadata<'_>) -> ::metrics::Gauge {
        ::metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Histogram {
        ::metrics::Histogram::noop()
    }
}

#[test]
fn decisions_and_overflow_are_counted() {
    let recorded = Recorded::default();
    let config = RateLimitConfig::new().limit(per_ip().burst(1)).max_keys(1);
    let mut svc = layer(config).layer(echo());
    ::metrics::with_local_recorder(&recorded, || {
        drop(svc.call(on_route(from("192.0.2.1"), "/droplets/{id}")));
        drop(svc.call(from("192.0.2.1")));
        drop(svc.call(from("192.0.2.2")));
    });
    assert_eq!(
        *recorded.0.lock().unwrap(),
        [
            "portcullis_ratelimit_decisions_total{route=/droplets/{id},decision=allowed}",
            "portcullis_ratelimit_decisions_total{route=unmatched,decision=limited}",
            "portcullis_ratelimit_overflow_total{limit=per_ip}",
            "portcullis_ratelimit_decisions_total{route=unmatched,decision=allowed}",
        ]
    );
}

// ---- configuration ----

#[test]
fn config_from_toml() {
    let config: RateLimitConfig = toml::from_str(
        r#"
        max_keys = 5000
        sweep_interval = "30s"

        [[limits]]
        name = "per_ip"
        rate = 100
        per = "1m"
        burst = 20

        [[limits]]
        name = "per_tenant"
        key = ["identity", { header = "x-tenant" }, "route"]
        rate = 10

        [[limits]]
        name = "global"
        key = []
        rate = 1000

        [[limits]]
        name = "by_key"
        key = { header = "x-api-key" }
        rate = 5

        [store]
        kind = "redis"
        url = "redis://:secret@127.0.0.1:6379/"
        on_failure = "fail_closed"
        fleet_size = 3
        "#,
    )
    .unwrap();
    assert_eq!(config.max_keys, 5000);
    assert_eq!(config.sweep_interval, Duration::from_secs(30));
    assert_eq!(config.limits[0].key, [KeyPart::ClientIp]);
    assert_eq!(config.limits[0].per, Duration::from_secs(60));
    assert_eq!(config.limits[0].effective_burst(), 20);
    assert_eq!(
        config.limits[1].key,
        [
            KeyPart::Identity,
            KeyPart::Header("x-tenant".into()),
            KeyPart::Route
        ]
    );
    assert_eq!(config.limits[1].per, Duration::from_secs(1));
    assert_eq!(config.limits[1].effective_burst(), 10);
    assert_eq!(config.limits[2].key, []);
    assert_eq!(config.limits[3].key, [KeyPart::Header("x-api-key".into())]);
    let StoreConfig::Redis(redis) = &config.store else {
        panic!("not redis: {:?}", config.store);
    };
    assert_eq!(redis.on_failure, FailurePolicy::FailClosed);
    assert_eq!(redis.fleet_size, 3);
    assert_eq!(redis.timeout, Duration::from_millis(50));
    assert_eq!(redis.breaker_cooldown, Duration::from_secs(1));
    assert_eq!(redis.key_prefix, "portcullis:rl:");
    assert!(!format!("{redis:?}").contains("secret"), "{redis:?}");

    // Round trip.
    let text = toml::to_string(&config).unwrap();
    let again: RateLimitConfig = toml::from_str(&text).unwrap();
    assert_eq!(again, config);

    let defaults: RateLimitConfig = toml::from_str("").unwrap();
    assert_eq!(defaults, RateLimitConfig::default());
    assert_eq!(defaults.max_keys, 100_000);
    assert_eq!(defaults.sweep_interval, Duration::from_secs(60));
    assert_eq!(defaults.store, StoreConfig::Local);
}

#[test]
fn config_serde_errors() {
    let err = |text: &str| {
        toml::from_str::<RateLimitConfig>(text)
            .unwrap_err()
            .to_string()
    };
    let e = err("[[limits]]\nname = \"a\"\nrate = 1\nkey = \"cookie\"");
    assert!(e.contains("unknown variant `cookie`"), "{e}");
    let e = err("[[limits]]\nname = \"a\"\nrate = 1\nkey = [\"client_ip\", { query = \"k\" }]");
    assert!(e.contains("unknown variant `query`"), "{e}");
    let e = err("[[limits]]\nname = \"a\"\nrate = -1");
    assert!(e.contains("invalid value: integer `-1`"), "{e}");
    let e = err("[[limits]]\nname = \"a\"\nrate = 1\nper = \"soon\"");
    assert!(e.contains("invalid duration \"soon\""), "{e}");
    let e = err("max_key = 1");
    assert!(e.contains("unknown field `max_key`"), "{e}");
    let e = err("[store]\nkind = \"memcached\"");
    assert!(e.contains("unknown variant `memcached`"), "{e}");
    let e = err("[store]\nkind = \"redis\"\nurl = \"redis://x/\"\ntimeout_ms = 5");
    assert!(e.contains("unknown field `timeout_ms`"), "{e}");
}

#[test]
fn validate_reports_every_mistake() {
    let config = RateLimitConfig {
        limits: vec![
            LimitConfig::new("ok", 10, Duration::from_secs(1)),
            LimitConfig::new("zero", 0, Duration::ZERO).burst(0),
            LimitConfig::new("ok", 1, Duration::from_secs(1))
                .key([KeyPart::Header("bad header".into())]),
            LimitConfig::new("bad name!", 1, Duration::from_secs(1)),
            LimitConfig::new("fast", u32::MAX, Duration::from_nanos(10)),
            LimitConfig::new("long", 1, Duration::from_secs(63_115_200)),
            LimitConfig::new("huge", 1, Duration::from_secs(3600)).burst(1_000_000),
        ],
        max_keys: 0,
        sweep_interval: Duration::ZERO,
        store: StoreConfig::Redis(
            RedisConfig::new("http://:pw@host/")
                .timeout(Duration::ZERO)
                .fleet_size(0),
        ),
    };
    let errors: Vec<String> = config
        .validate()
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut expected = vec![
        "ratelimit.limits[zero].rate must be > 0, got 0".to_owned(),
        "ratelimit.limits[zero].per must be > 0, got 0s".to_owned(),
        "ratelimit.limits[zero].burst must be > 0, got 0".to_owned(),
        "ratelimit.limits[ok].key has an invalid header name \"bad header\"".to_owned(),
        "ratelimit.limits: the name \"ok\" is used twice".to_owned(),
        "ratelimit.limits[3].name must be 1 to 64 ASCII letters, digits, '_', '-' or '.', got \"bad name!\"".to_owned(),
        "ratelimit.limits[fast].rate is too high for its period (under 1ns per request), got 4294967295".to_owned(),
        "ratelimit.limits[long].per must be at most 365days, got 2years".to_owned(),
        "ratelimit.limits[huge].burst is too large for the rate (over ten years to refill), got 1000000".to_owned(),
        "ratelimit.max_keys must be > 0, got 0".to_owned(),
        "ratelimit.sweep_interval must be > 0, got 0s".to_owned(),
    ];
    // The URL message comes from the Redis client with the feature, from a scheme
    // check without it; either way the password is hidden.
    let url_error = errors
        .iter()
        .find(|e| e.starts_with("ratelimit.store.url is not a valid Redis URL"))
        .cloned()
        .unwrap_or_default();
    assert!(
        url_error.ends_with("got \"http://***@host/\""),
        "{url_error}"
    );
    assert!(!url_error.contains("pw"), "{url_error}");
    expected.push(url_error);
    expected.push("ratelimit.store.timeout must be > 0, got 0s".to_owned());
    expected.push("ratelimit.store.fleet_size must be > 0, got 0".to_owned());
    if !cfg!(feature = "redis") {
        expected.push(
            "ratelimit.store.kind = \"redis\" needs portcullis-ratelimit's `redis` feature"
                .to_owned(),
        );
    }
    assert_eq!(errors, expected);

    let first = RateLimitLayer::from_config(&config).unwrap_err();
    assert_eq!(first.to_string(), expected[0]);
    assert!(RateLimitConfig::new().limit(per_ip()).validate().is_ok());
}

#[tokio::test(start_paused = true)]
async fn selected_layers_share_their_limits_state() {
    let base = layer(
        RateLimitConfig::new()
            .limit(LimitConfig::new("per_ip", 2, Duration::from_secs(10)))
            .limit(LimitConfig::new("global", 100, Duration::from_secs(10)).key([])),
    );
    let only_ip = base.select(&["per_ip"]).unwrap().layer(echo());
    let both = base.select(&["global", "per_ip"]).unwrap().layer(echo());
    // Two through one route use up the quota the other route sees.
    assert_eq!(send(&only_ip, from("192.0.2.1")).await.status(), 200);
    assert_eq!(send(&only_ip, from("192.0.2.1")).await.status(), 200);
    let res = send(&both, from("192.0.2.1")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(
        header(&res, "ratelimit-policy"),
        r#""global";q=100;w=10, "per_ip";q=2;w=10"#
    );
    // The refused request was not counted by `global` either.
    let res = send(&both, from("192.0.2.2")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "ratelimit"),
        r#""per_ip";r=1;t=5, "global";r=99;t=1"#
    );
    assert!(matches!(
        base.select(&["nope"]),
        Err(ConfigError::UnknownLimit { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn the_policy_quota_is_scaled_to_whole_second_windows() {
    let svc = layer(RateLimitConfig::new().limit(LimitConfig::new(
        "fast",
        1,
        Duration::from_millis(100),
    )))
    .layer(echo());
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(header(&res, "ratelimit-policy"), r#""fast";q=10;w=1"#);
    let svc = layer(RateLimitConfig::new().limit(LimitConfig::new(
        "odd",
        3,
        Duration::from_millis(1500),
    )))
    .layer(echo());
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(header(&res, "ratelimit-policy"), r#""odd";q=4;w=2"#);
}

#[tokio::test(start_paused = true)]
async fn ipv6_clients_are_keyed_by_their_slash_64() {
    let svc = layer(RateLimitConfig::new().limit(per_ip().burst(1))).layer(echo());
    assert_eq!(send(&svc, from("2001:db8:1:2::1")).await.status(), 200);
    // Another address of the same /64: the same client.
    assert_eq!(send(&svc, from("2001:db8:1:2::ffff")).await.status(), 429);
    // Another /64: another client.
    assert_eq!(send(&svc, from("2001:db8:1:3::1")).await.status(), 200);
}

#[test]
fn redis_limits_are_checked_against_the_store() {
    let config = RateLimitConfig::new()
        .limit(LimitConfig::new("fast", 2_000_000, Duration::from_secs(1)))
        .limit(LimitConfig::new(
            "slow",
            1,
            Duration::from_secs(86_400 * 365),
        ))
        .store(StoreConfig::Redis(RedisConfig {
            fleet_size: 2,
            ..RedisConfig::new("redis://127.0.0.1:1/")
        }));
    let errors = config.validate().unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, ConfigError::RateTooHighForRedis { name, .. } if name == "fast")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, ConfigError::FleetShareTooLong { name, .. } if name == "slow")),
        "{errors:?}"
    );
}
