//! The layers behind real sockets: axum's server, and a hyper HTTP/1 server
//! whose connection reads go through a `HeadInspector`, as the gateway's
//! listener does it.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use portcullis_body::{BodyLimitLayer, FramingGuard, HeadInspector};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::{ServiceExt, service_fn};

const WAIT: Duration = Duration::from_secs(10);

/// Writes `parts` in order and reads the answer until the server closes.
async fn exchange(addr: std::net::SocketAddr, parts: &[&[u8]]) -> String {
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    for part in parts {
        stream.write_all(part).await.unwrap();
        stream.flush().await.unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn chunked_body_over_the_limit_gets_413_from_axum() {
    let app = Router::new()
        .route(
            "/upload",
            post(|body: Bytes| async move { format!("got {}", body.len()) }),
        )
        .layer(BodyLimitLayer::new(16));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // 20 bytes in two chunks, no last chunk: the server must answer anyway.
    let answer = exchange(
        addr,
        &[
            b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"a\r\n0123456789\r\n",
            b"a\r\n0123456789\r\n",
        ],
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\r\nportcullis-error: body_too_large\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(
        answer.ends_with(
            r#"{"error":"body_too_large","status":413,"request_id":null,"service":null}"#
        ),
        "{answer}"
    );

    // Within the limit, chunked, the handler gets it all.
    let answer = exchange(
        addr,
        &[b"POST /upload HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
            a\r\n0123456789\r\n6\r\n012345\r\n0\r\n\r\n"],
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("got 16"), "{answer}");
    server.abort();
}

/// A client connection whose reads are shown to a `HeadInspector` first.
struct Inspected {
    io: TcpStream,
    inspector: Arc<Mutex<HeadInspector>>,
}

impl AsyncRead for Inspected {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        this.inspector.lock().unwrap().feed(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Inspected {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, b)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// An HTTP/1 server: framing guard over a handler that answers with the body
/// length. With `inspect`, each request carries its raw-head verdict.
async fn serve(inspect: bool) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (io, _) = listener.accept().await.unwrap();
            let inspector = Arc::new(Mutex::new(HeadInspector::new(64 * 1024)));
            let io = Inspected {
                io,
                inspector: Arc::clone(&inspector),
            };
            let guard = FramingGuard::new(service_fn(|req: Request<Incoming>| async move {
                let n = req.into_body().collect().await?.to_bytes().len();
                Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(format!("len={n}")))))
            }));
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let verdict = inspector.lock().unwrap().next_verdict();
                if let (true, Some(verdict)) = (inspect, verdict) {
                    req.extensions_mut().insert(verdict);
                }
                guard.clone().oneshot(req)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc),
            );
        }
    });
    addr
}

const CL_AND_TE: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\
    Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

#[tokio::test]
async fn hyper_hides_content_length_with_transfer_encoding() {
    // Without the inspector, the guard cannot see the Content-Length hyper dropped.
    let answer = exchange(
        serve(false).await,
        &[
            CL_AND_TE,
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        ],
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}

#[tokio::test]
async fn inspector_verdict_makes_the_guard_refuse() {
    let addr = serve(true).await;
    let answer = exchange(addr, &[CL_AND_TE]).await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\r\nportcullis-error: bad_framing\r\n"),
        "{answer}"
    );
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");

    let answer = exchange(
        addr,
        &[b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n3\r\nabc\r\n0\r\n\r\n"],
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\r\nportcullis-error: bad_framing\r\n"),
        "{answer}"
    );
}

#[tokio::test]
async fn pipelined_good_requests_all_pass() {
    let addr = serve(true).await;
    let answer = exchange(
        addr,
        &[b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
            POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n0\r\nX-T: 1\r\n\r\n\
            GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{answer}");
    let order: Vec<Option<usize>> = ["len=3", "len=4", "len=0"]
        .iter()
        .map(|l| answer.find(l))
        .collect();
    assert!(
        order.iter().all(Option::is_some) && order.is_sorted(),
        "{answer}"
    );
}
