//! Tests against a real `redis-server`, started per test on a free port.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Empty, Full};
use portcullis_core::PeerAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::{
    FailurePolicy, LimitConfig, RateLimitConfig, RateLimitLayer, RedisConfig, ResponseBody,
    StoreConfig,
};

const START_DEADLINE: Duration = Duration::from_secs(10);
/// Every request of these tests must end within this, whatever Redis does.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// A `redis-server` child process, killed on drop.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = RedisServer { port, child: None };
        server.restart().await;
        server
    }

    /// Starts the server on its port and waits until it answers PING.
    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): it is needed by the Redis store tests; \
                     run scripts/test.sh, which installs Debian's redis-server package"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if self.pings().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {START_DEADLINE:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn pings(&self) -> bool {
        let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_millis(200),
            TcpStream::connect(("127.0.0.1", self.port)),
        )
        .await
        else {
            return false;
        };
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_millis(200), s.read_exact(&mut buf)).await,
                Ok(Ok(_))
            )
            && &buf == b"+PONG\r\n"
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: it keeps its socket but
    /// answers nothing, like a hung or partitioned Redis.
    async fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await
            .expect("kill");
        assert!(status.success());
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain connection, to look at what the store wrote.
    async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

type Body = Full<Bytes>;

fn echo() -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
+ Send {
    service_fn(|_req: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn from(ip: &str) -> Request<Empty<Bytes>> {
    let mut req = Request::get("/").body(Empty::new()).unwrap();
    req.extensions_mut().insert(PeerAddr(SocketAddr::new(
        ip.parse::<IpAddr>().unwrap(),
        40000,
    )));
    req
}

fn config(redis: RedisConfig, limit: LimitConfig) -> RateLimitConfig {
    RateLimitConfig::new()
        .limit(limit)
        .store(StoreConfig::Redis(redis))
}

/// A generous timeout: the machine running the tests may be busy.
fn redis(server: &RedisServer) -> RedisConfig {
    RedisConfig::new(server.url())
        .timeout(Duration::from_millis(500))
        .breaker_cooldown(Duration::from_millis(100))
}

async fn send<S>(svc: &S, req: Request<Empty<Bytes>>) -> Response<ResponseBody<Body>>
where
    S: Service<Request<Empty<Bytes>>, Response = Response<ResponseBody<Body>>, Error = Infallible>
        + Clone,
{
    tokio::time::timeout(REQUEST_DEADLINE, svc.clone().oneshot(req))
        .await
        .expect("a request hung")
        .unwrap()
}

fn header<'a, B>(res: &'a Response<B>, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .map_or("<none>", |v| v.to_str().unwrap())
}

async fn wait_until<F: Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn burst_is_exact_then_429_with_headers_and_hash_tagged_keys() {
    let server = RedisServer::start().await;
    // 3 a minute (one every 20s), burst 3.
    let limit = LimitConfig::new("per_ip", 3, Duration::from_secs(60));
    let svc = RateLimitLayer::from_config(&config(redis(&server), limit))
        .unwrap()
        .layer(echo());
    for (r, t) in [(2, 20), (1, 40), (0, 60)] {
        let res = send(&svc, from("192.0.2.1")).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "ratelimit-policy"), r#""per_ip";q=3;w=60"#);
        assert_eq!(
            header(&res, "ratelimit"),
            format!(r#""per_ip";r={r};t={t}"#)
        );
    }
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), "20");
    assert_eq!(header(&res, "portcullis-error"), "rate_limited");
    assert_eq!(header(&res, "ratelimit"), r#""per_ip";r=0;t=60"#);
    assert_eq!(send(&svc, from("192.0.2.2")).await.status(), 200);

    let mut raw = server.raw().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        let hash = key
            .strip_prefix("portcullis:rl:{per_ip}:")
            .unwrap_or_else(|| panic!("{key}"));
        assert_eq!(hash.len(), 32, "{key}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
        // The key expires when the quota is full again (60s for the first client).
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!((1..=60_000).contains(&ttl), "{key}: {ttl}");
    }
}

#[tokio::test]
async fn two_gateways_share_one_quota() {
    let server = RedisServer::start().await;
    let limit = LimitConfig::new("shared", 5, Duration::from_secs(60));
    let config = config(redis(&server), limit);
    // Two layers built apart: two gateways of a fleet.
    let a = RateLimitLayer::from_config(&config).unwrap().layer(echo());
    let b = RateLimitLayer::from_config(&config).unwrap().layer(echo());
    let mut allowed = 0;
    for i in 0..10 {
        let svc = if i % 2 == 0 { &a } else { &b };
        if send(svc, from("192.0.2.1")).await.status() == 200 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);
}

#[tokio::test]
async fn redis_stopped_fail_open_uses_the_local_share_and_nothing_hangs() {
    let mut server = RedisServer::start().await;
    // Burst 4 across a fleet of 2: the fallback allows 2 per client.
    let limit = LimitConfig::new("per_ip", 4, Duration::from_secs(60));
    let redis = RedisConfig::new(server.url())
        .timeout(Duration::from_millis(200))
        .breaker_cooldown(Duration::from_secs(30))
        .fleet_size(2);
    let svc = RateLimitLayer::from_config(&config(redis, limit))
        .unwrap()
        .layer(echo());
    assert_eq!(send(&svc, from("192.0.2.1")).await.status(), 200);
    server.stop().await;

    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let res = send(&svc, from("192.0.2.9")).await;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    // One timeout (500ms) at most, then the breaker skips Redis.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let res = send(&svc, from("192.0.2.9")).await;
    // The fallback's quota: 2 per 60s, one every 30s.
    assert_eq!(header(&res, "retry-after"), "30");
    assert_eq!(header(&res, "ratelimit-policy"), r#""per_ip";q=4;w=60"#);
}

#[tokio::test]
async fn hung_redis_costs_one_timeout_then_the_breaker_skips_it() {
    let server = RedisServer::start().await;
    let limit = LimitConfig::new("per_ip", 4, Duration::from_secs(60));
    // A long timeout: were every request to wait for it, 50 would take 50s.
    let redis = RedisConfig::new(server.url())
        .timeout(Duration::from_secs(1))
        .breaker_cooldown(Duration::from_secs(30));
    let layer = RateLimitLayer::from_config(&config(redis, limit)).unwrap();
    let svc = layer.layer(echo());
    assert_eq!(send(&svc, from("192.0.2.1")).await.status(), 200);
    server.signal("-STOP").await;

    let started = Instant::now();
    let statuses: Vec<u16> = [
        send(&svc, from("192.0.2.9")).await.status().as_u16(),
        send(&svc, from("192.0.2.9")).await.status().as_u16(),
    ]
    .into();
    let first_two = started.elapsed();
    // fleet_size 1: the fallback has the whole quota.
    assert_eq!(statuses, [200, 200]);
    // Many more requests while the breaker is open: none waits for Redis.
    let started = Instant::now();
    for _ in 0..50 {
        send(&svc, from("192.0.2.10")).await;
    }
    let next_fifty = started.elapsed();
    server.signal("-CONT").await;
    // One timeout (1s), then nothing waits: far from 2 × 1s and 50 × 1s.
    assert!(first_two < Duration::from_secs(5), "{first_two:?}");
    assert!(next_fifty < Duration::from_secs(10), "{next_fifty:?}");
}

#[tokio::test]
async fn redis_stopped_fail_closed_is_503_then_recovers_on_restart() {
    let mut server = RedisServer::start().await;
    let limit = LimitConfig::new("per_ip", 2, Duration::from_secs(60));
    let redis = redis(&server).on_failure(FailurePolicy::FailClosed);
    let svc = RateLimitLayer::from_config(&config(redis, limit))
        .unwrap()
        .layer(echo());
    assert_eq!(send(&svc, from("192.0.2.1")).await.status(), 200);
    server.stop().await;

    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(res.status(), 503);
    assert_eq!(header(&res, "portcullis-error"), "rate_limit_unavailable");
    assert_eq!(header(&res, "retry-after"), "1");
    assert_eq!(header(&res, "ratelimit-policy"), r#""per_ip";q=2;w=60"#);
    assert_eq!(header(&res, "ratelimit"), "<none>");
    // Skipped by the open breaker: still 503, without waiting for a timeout
    // (a refused connection fails fast anyway; the breaker keeps it off Redis).
    let started = Instant::now();
    assert_eq!(send(&svc, from("192.0.2.1")).await.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    server.restart().await;
    wait_until(
        "the limit uses Redis again",
        Duration::from_secs(10),
        || async { send(&svc, from("192.0.2.3")).await.status() == 200 },
    )
    .await;
    // The restarted Redis is empty; the quota counts there again, exactly.
    let statuses: Vec<u16> = [
        send(&svc, from("192.0.2.4")).await.status().as_u16(),
        send(&svc, from("192.0.2.4")).await.status().as_u16(),
        send(&svc, from("192.0.2.4")).await.status().as_u16(),
    ]
    .into();
    assert_eq!(statuses, [200, 200, 429]);
}

#[tokio::test]
async fn several_limits_count_a_request_only_when_all_allow_it() {
    let server = RedisServer::start().await;
    let config = RateLimitConfig::new()
        .limit(LimitConfig::new("per_ip", 1, Duration::from_secs(10)))
        .limit(LimitConfig::new("global", 3, Duration::from_secs(30)).key([]))
        .store(StoreConfig::Redis(redis(&server)));
    let svc = RateLimitLayer::from_config(&config).unwrap().layer(echo());
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(
        header(&res, "ratelimit"),
        r#""per_ip";r=0;t=10, "global";r=2;t=10"#
    );
    // Refused by per_ip: global is not counted (still 2 left), and says so.
    for _ in 0..5 {
        let res = send(&svc, from("192.0.2.1")).await;
        assert_eq!(res.status(), 429);
        assert_eq!(
            header(&res, "ratelimit"),
            r#""per_ip";r=0;t=10, "global";r=2;t=10"#
        );
    }
    assert_eq!(send(&svc, from("192.0.2.2")).await.status(), 200);
    assert_eq!(send(&svc, from("192.0.2.3")).await.status(), 200);
    assert_eq!(send(&svc, from("192.0.2.4")).await.status(), 429);
}

/// Redis decision latency on loopback: `cargo test -p portcullis-ratelimit
/// --features redis --release -- --ignored redis_latency --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn redis_latency() {
    let server = RedisServer::start().await;
    let limit = LimitConfig::new("bench", 1_000_000, Duration::from_secs(1));
    let mut svc = RateLimitLayer::from_config(&config(redis(&server), limit))
        .unwrap()
        .layer(echo());
    for _ in 0..1_000 {
        svc.ready()
            .await
            .unwrap()
            .call(from("192.0.2.1"))
            .await
            .unwrap();
    }
    let mut samples = Vec::with_capacity(10_000);
    for i in 0..10_000u32 {
        let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
        let mut req = from("192.0.2.1");
        req.extensions_mut()
            .insert(PeerAddr(SocketAddr::new(ip, 1)));
        let started = Instant::now();
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        samples.push(started.elapsed());
        assert_eq!(res.status(), 200);
    }
    samples.sort();
    let p = |q: usize| samples[samples.len() * q / 100];
    #[allow(clippy::print_stdout)]
    {
        println!(
            "redis decision over 10000 calls: p50 {:?}, p99 {:?}, max {:?}",
            p(50),
            p(99),
            samples[samples.len() - 1]
        );
    }
}
