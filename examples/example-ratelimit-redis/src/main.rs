//! An axum app whose `/api` routes share one per-client-IP limit through Redis, so
//! that every instance of the app counts against the same quota: 5 requests per
//! minute, 5 at once.
//!
//! ```sh
//! redis-server --port 6379 &                          # or any Redis, Valkey, Dragonfly
//! cargo run -p example-ratelimit-redis                # REDIS_URL and ADDR override
//! for i in 1 2 3 4 5 6; do curl -si http://127.0.0.1:3000/api/hello | head -1; done
//! ```
//!
//! The sixth request is `429 Too Many Requests` with `Retry-After`; every answer
//! carries `RateLimit-Policy` and `RateLimit`. Run two instances on two ports: they
//! share the quota. Stop Redis: each instance falls back to its share of the quota
//! (`fleet_size = 2`: 2 at once, one every 24 s) after one 50 ms timeout, and
//! uses Redis again once it is back.
//!
//! `cargo run -p example-ratelimit-redis -- --self-test` sends the requests itself
//! (through the router, no listener) and prints what each got.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use portcullis_core::PeerAddr;
use portcullis_ratelimit::{
    FailurePolicy, KeyPart, LimitConfig, RateLimitConfig, RateLimitLayer, RedisConfig, StoreConfig,
};
use tower::ServiceExt;

/// Copies axum's `ConnectInfo` into the `PeerAddr` extension the limit keys on.
async fn peer_addr(mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        req.extensions_mut().insert(PeerAddr(addr));
    }
    next.run(req).await
}

fn app(redis_url: &str) -> Result<Router, portcullis_ratelimit::ConfigError> {
    let redis = RedisConfig::new(redis_url)
        .timeout(Duration::from_millis(50))
        .on_failure(FailurePolicy::FailOpen)
        .fleet_size(2);
    let config = RateLimitConfig::new()
        .limit(LimitConfig::new("per_ip", 5, Duration::from_secs(60)).key([KeyPart::ClientIp]))
        .store(StoreConfig::Redis(redis));
    let limit = RateLimitLayer::from_config(&config)?;
    let api = Router::new()
        .route("/api/hello", get(|| async { "hello\n" }))
        .layer(limit);
    Ok(api.layer(middleware::from_fn(peer_addr)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let app = app(&redis_url)?;
    if std::env::args().any(|a| a == "--self-test") {
        for i in 1..=6 {
            let mut req = Request::get("/api/hello").body(Body::empty())?;
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40000))));
            let res = app.clone().oneshot(req).await?;
            let header = |name: &str| {
                res.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            eprintln!(
                "request {i}: {} ratelimit: {} retry-after: {}",
                res.status(),
                header("ratelimit"),
                header("retry-after")
            );
        }
        return Ok(());
    }
    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("listening on http://{addr}/api/hello (Redis at {redis_url})");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
