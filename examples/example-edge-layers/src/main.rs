//! An axum app that puts Portcullis edge layers in front of its own handlers:
//! framing guard, hop-by-hop removal, forwarding headers and `Via`, and a body
//! limit with `Content-Length` required on uploads.
//!
//! ```sh
//! cargo run -p example-edge-layers            # listens on 127.0.0.1:3000 (ADDR overrides)
//! curl -i http://127.0.0.1:3000/whoami
//! curl -i -X POST --data-binary @big.file http://127.0.0.1:3000/upload   # 413 past 1 MiB
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use portcullis_body::{BodyLimitLayer, FramingGuardLayer, LengthRequiredLayer};
use portcullis_core::PeerAddr;
use portcullis_forwarded::{ForwardedLayer, TrustedProxies, ViaLayer};
use portcullis_hop::HopByHopLayer;
use tower::ServiceBuilder;

/// Copies axum's `ConnectInfo` into the `PeerAddr` extension the layers read.
async fn peer_addr(mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        req.extensions_mut().insert(PeerAddr(addr));
    }
    next.run(req).await
}

/// Echoes the forwarding headers the layers set.
async fn whoami(headers: HeaderMap) -> String {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    format!(
        "x-forwarded-for: {}\nx-forwarded-proto: {}\nvia: {}\n",
        get("x-forwarded-for"),
        get("x-forwarded-proto"),
        get("via")
    )
}

/// Counts the bytes of an upload (the body limit stops it at 1 MiB).
async fn upload(body: axum::body::Bytes) -> String {
    format!("received {} bytes\n", body.len())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let trusted = TrustedProxies::parse(["10.0.0.0/8"])?;
    let uploads = Router::new().route("/upload", post(upload)).layer(
        ServiceBuilder::new()
            .layer(LengthRequiredLayer::new())
            .layer(BodyLimitLayer::new(1024 * 1024)),
    );
    let app = Router::new()
        .route("/whoami", get(whoami))
        .merge(uploads)
        .layer(
            // Outermost first: peer address, framing guard, hop-by-hop, forwarded, Via.
            ServiceBuilder::new()
                .layer(middleware::from_fn(peer_addr))
                .layer(FramingGuardLayer::new())
                .layer(HopByHopLayer::new())
                .layer(ForwardedLayer::new(trusted))
                .layer(ViaLayer::default()),
        );
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
