//! A raw client: writes exact bytes, reads and parses exact responses.

use std::io;
use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::wire::{Body, Framing, Head, IO_TIMEOUT, Reader, is_cut};

/// A response as the client read it.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) head: Head,
    pub(crate) status: u16,
    pub(crate) framing: Framing,
    pub(crate) body: Body,
}

impl Response {
    /// The `portcullis-error` header.
    pub(crate) fn cause(&self) -> Option<&str> {
        self.head.get("portcullis-error")
    }

    /// The body parsed as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body.data)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body.text()))
    }

    /// Head and (start of) body, for assertion messages.
    pub(crate) fn dump(&self) -> String {
        let body = self.body.text();
        let body = body.get(..body.len().min(600)).unwrap_or("<binary>");
        format!("{}{}", self.head.text(), body)
    }
}

/// One client connection to the gateway.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) r: Reader<OwnedReadHalf>,
    pub(crate) w: OwnedWriteHalf,
}

impl Client {
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect: timed out")
            .expect("connect to the gateway");
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        Self {
            r: Reader::new(r, IO_TIMEOUT),
            w,
        }
    }

    /// Connects from `local` (any 127.0.0.0/8 address works on loopback), so
    /// that the gateway sees another client IP.
    pub(crate) async fn connect_from(addr: SocketAddr, local: std::net::IpAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(local, 0))
            .expect("bind the client's address");
        let stream = tokio::time::timeout(IO_TIMEOUT, socket.connect(addr))
            .await
            .expect("connect: timed out")
            .expect("connect to the gateway");
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        Self {
            r: Reader::new(r, IO_TIMEOUT),
            w,
        }
    }

    /// Writes exact bytes.
    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(IO_TIMEOUT, self.w.write_all(bytes))
            .await
            .expect("send: timed out")
            .expect("send to the gateway");
    }

    /// Reads the response to a request of `method`.
    pub(crate) async fn try_response_to(&mut self, method: &str) -> io::Result<Response> {
        let head = self.r.read_head().await?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            )
        })?;
        let framing = head.response_framing(method);
        let status = head.status();
        let body = self.r.read_body(framing).await?;
        Ok(Response {
            head,
            status,
            framing,
            body,
        })
    }

    /// Reads the response to a request of `method`; panics on timeout or if the
    /// connection closed before a head.
    pub(crate) async fn response_to(&mut self, method: &str) -> Response {
        self.try_response_to(method)
            .await
            .unwrap_or_else(|e| panic!("reading the response: {e}"))
    }

    /// Reads the response to a GET (or any request but HEAD).
    pub(crate) async fn response(&mut self) -> Response {
        self.response_to("GET").await
    }

    /// Reads only a response head (for 101 and streamed bodies).
    pub(crate) async fn head(&mut self) -> Head {
        self.r
            .read_head()
            .await
            .unwrap_or_else(|e| panic!("reading a response head: {e}"))
            .expect("connection closed before a response head")
    }

    /// Whether the gateway closed the connection: end of stream or reset within the
    /// timeout. Panics if bytes arrive instead.
    pub(crate) async fn closed(&mut self) -> bool {
        if !self.r.buffered().is_empty() {
            panic!(
                "unexpected bytes after the response: {:?}",
                String::from_utf8_lossy(self.r.buffered())
            );
        }
        match self.r.fill().await {
            Ok(0) => true,
            Ok(_) => panic!(
                "unexpected bytes after the response: {:?}",
                String::from_utf8_lossy(self.r.buffered())
            ),
            Err(e) if is_cut(&e) => true,
            Err(e) => panic!("waiting for the connection to close: {e}"),
        }
    }
}

/// `GET target` with a Host header and nothing else.
pub(crate) fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: test.local\r\n\r\n").into_bytes()
}
