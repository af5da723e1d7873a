//! An axum app that uses single Portcullis layers without the gateway: API-key
//! authentication on `/api`, request ids and JSON access logs on everything, and
//! Prometheus metrics served at `/metrics`.
//!
//! ```sh
//! cargo run -p example-auth-metrics          # listens on 127.0.0.1:3000 (ADDR overrides)
//! curl -i http://127.0.0.1:3000/api/whoami                        # 401 missing_credentials
//! curl -i -H 'x-api-key: demo-key-acme' http://127.0.0.1:3000/api/whoami   # 200 "hello acme"
//! curl -s http://127.0.0.1:3000/metrics | grep portcullis_
//! ```

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use portcullis_accesslog::{AccessLogLayer, RequestIdLayer};
use portcullis_auth::{ApiKeys, AuthLayer};
use portcullis_core::{Identity, MatchedRoute, PeerAddr, ServiceName};
use portcullis_metrics::{Exporter, InFlightLayer, MetricsLayer};
use tower::ServiceBuilder;

/// Copies axum's `ConnectInfo` into the `PeerAddr` extension the access log reads.
async fn peer_addr(mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        req.extensions_mut().insert(PeerAddr(addr));
    }
    next.run(req).await
}

/// Names the route template and service on the request (for the auth metrics and
/// the in-flight gauge) and on the response (for the global metrics and access
/// log), as the gateway's router does, so everything is labelled by template
/// rather than by raw path.
async fn label(template: &'static str, mut req: Request, next: Next) -> Response {
    let route = MatchedRoute {
        name: template.into(),
        template: template.into(),
    };
    let service = ServiceName::new("example");
    req.extensions_mut().insert(route.clone());
    req.extensions_mut().insert(service.clone());
    let mut res = next.run(req).await;
    res.extensions_mut().insert(route);
    res.extensions_mut().insert(service);
    res
}

async fn whoami(Extension(id): Extension<Identity>) -> String {
    format!("hello {}\n", id.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().json().flatten_event(true).init();
    // The recorder must be installed before the metrics layer sees a request.
    let exporter = Exporter::install()?;
    let _upkeep = exporter.spawn_upkeep(std::time::Duration::from_secs(5));

    // Keys are stored hashed; `key` hashes a plain key for the demo.
    let keys = ApiKeys::header(axum::http::HeaderName::from_static("x-api-key"))
        .key("acme", "demo-key-acme");
    let api = Router::new()
        .route("/api/whoami", get(whoami))
        .layer(InFlightLayer::new())
        .layer(AuthLayer::api_key(keys))
        .layer(middleware::from_fn(|req, next| {
            label("/api/whoami", req, next)
        }));

    let app = Router::new()
        .merge(api)
        .route("/metrics", get(move || async move { exporter.render() }))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(peer_addr))
                .layer(RequestIdLayer::new())
                .layer(AccessLogLayer::new().redact_headers(["x-api-key"])?)
                .layer(MetricsLayer::new()),
        );

    let addr: SocketAddr = std::env::var("ADDR")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000)));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
