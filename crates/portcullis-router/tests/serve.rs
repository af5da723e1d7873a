//! The router served by axum on a real socket, hit with raw HTTP/1.1 requests.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use axum::extract::Request;
use axum::routing::get;
use portcullis_router::{PathParams, RouteSpec, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// Sends `head` on a fresh connection and reads the whole answer.
async fn exchange(addr: std::net::SocketAddr, head: &str) -> String {
    let mut conn = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(WAIT, conn.read_to_end(&mut out))
        .await
        .expect("response timed out")
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn routes_and_rejects_over_a_real_socket() {
    // The origin echoes the path it got and the captured id.
    let origin = axum::Router::new().route(
        "/droplets/{id}",
        get(|req: Request| async move {
            let id = req
                .extensions()
                .get::<PathParams>()
                .and_then(|p| p.get("id"))
                .unwrap_or("?")
                .to_owned();
            format!("{} id={id}", req.uri())
        }),
    );
    let router = Router::builder()
        .route(
            RouteSpec::new("droplets", "/v1/droplets/{id}")
                .unwrap()
                .host("api.example.com")
                .unwrap()
                .service("droplets")
                .strip_prefix("/v1")
                .unwrap(),
            origin,
        )
        .build()
        .unwrap();
    let app = axum::Router::new().fallback_service(router);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let routed = exchange(
        addr,
        "GET /v1/droplets/a%2Fb?x=1 HTTP/1.1\r\nHost: API.example.com:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(routed.starts_with("HTTP/1.1 200 OK\r\n"), "{routed}");
    assert!(
        routed.ends_with("\r\n\r\n/droplets/a%2Fb?x=1 id=a%2Fb"),
        "{routed}"
    );

    let missing = exchange(
        addr,
        "GET /v1/droplets/7 HTTP/1.1\r\nHost: www.example.com\r\nx-request-id: r-1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );
    assert!(
        missing.contains("\r\nportcullis-error: no_route\r\n"),
        "{missing}"
    );
    assert!(
        missing.ends_with(r#"{"error":"no_route","status":404,"request_id":"r-1","service":null}"#),
        "{missing}"
    );

    server.abort();
}
