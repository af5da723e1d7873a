//! Both layers in an axum app served on a real socket, driven by a raw HTTP/1.1
//! request over TCP; the captured JSON line is checked field by field.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use portcullis_accesslog::{AccessLogLayer, RequestIdLayer};
use portcullis_core::{MatchedRoute, PeerAddr};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// What the listener of the gateway does: the TCP peer as a `PeerAddr` extension.
async fn peer_addr(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    req.extensions_mut().insert(PeerAddr(addr));
    next.run(req).await
}

async fn create(body: String) -> (Extension<MatchedRoute>, String) {
    let route = MatchedRoute {
        name: "items".into(),
        template: "/items/{id}".into(),
    };
    (Extension(route), format!("stored {} bytes", body.len()))
}

// The current-thread runtime runs the server on this thread, under the subscriber.
#[tokio::test]
async fn one_line_for_a_real_request() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = Router::new()
        .route("/items/{id}", post(create))
        .layer(
            AccessLogLayer::new()
                .redact_query_params(["api_key"])
                .unwrap()
                .log_request_headers(["authorization", "x-tenant"])
                .unwrap(),
        )
        .layer(RequestIdLayer::new())
        .layer(from_fn(peer_addr));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let mut client = timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let client_addr = client.local_addr().unwrap();
    let request = "POST /items/42?api_key=CANARY123&x=1 HTTP/1.1\r\n\
                   Host: localhost\r\n\
                   User-Agent: raw-test/1.0\r\n\
                   Authorization: Bearer CANARY-AUTH\r\n\
                   X-Tenant: acme\r\n\
                   X-Request-Id: it-1\r\n\
                   Content-Length: 11\r\n\
                   Connection: close\r\n\
                   \r\n\
                   hello world";
    client.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    timeout(Duration::from_secs(5), client.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nx-request-id: it-1\r\n"), "{head}");
    // The body wrapper kept the exact size hint, so hyper still sent a length.
    assert!(head.contains("\r\ncontent-length: 15\r\n"), "{head}");
    assert_eq!(body, "stored 11 bytes");

    let line = timeout(Duration::from_secs(5), async {
        loop {
            if let Some(line) = capture.text().lines().next() {
                return serde_json::from_str::<Value>(line).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(line["target"], "portcullis::access");
    let f = &line["fields"];
    assert_eq!(f["message"], "request");
    assert_eq!(f["request_id"], "it-1");
    assert_eq!(f["peer_addr"], client_addr.to_string());
    assert_eq!(f["method"], "POST");
    assert_eq!(f["path"], "/items/42?api_key=[redacted]&x=1");
    assert_eq!(f["route"], "/items/{id}");
    assert_eq!(f["route_name"], "items");
    assert_eq!(f["service"], "");
    assert_eq!(f["endpoint"], "");
    assert_eq!(f["status"], 200);
    assert_eq!(f["cause"], "");
    assert_eq!(f["fault"], "");
    assert_eq!(f["bytes_in"], 11);
    assert_eq!(f["bytes_out"], 15);
    assert!(f["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(f.get("upstream_ms").is_none());
    assert_eq!(f["user_agent"], "raw-test/1.0");
    assert_eq!(f["http_version"], "HTTP/1.1");
    assert_eq!(
        f["headers"],
        r#"{"authorization":"[redacted]","x-tenant":"acme"}"#
    );
    assert!(f.get("aborted").is_none());
    let all = capture.text();
    assert_eq!(all.lines().count(), 1, "{all}");
    assert!(!all.contains("CANARY"), "{all}");
    server.abort();
}
