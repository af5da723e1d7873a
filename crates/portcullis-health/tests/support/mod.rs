//! A tiny recording origin over real sockets.
// Test-only helper: a failed bind or a poisoned lock should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the origin answers.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// Answer with this raw response and close.
    Raw(&'static str),
    /// Answer the first response while the flag is set, else the second.
    #[allow(dead_code)]
    Switch(Arc<AtomicBool>, &'static str, &'static str),
    /// Read the request and never answer.
    #[allow(dead_code)]
    Silent,
}

/// A listener on 127.0.0.1:0 that counts connections and records request heads.
#[derive(Debug)]
pub(crate) struct Origin {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    /// Starts it.
    pub(crate) async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (a, h) = (accepts.clone(), heads.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let (h, reply) = (h.clone(), reply.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                        match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk))
                            .await
                        {
                            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    h.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf).into_owned());
                    let reply = match reply {
                        Reply::Switch(flag, on, off) => {
                            Reply::Raw(if flag.load(Ordering::SeqCst) { on } else { off })
                        }
                        other => other,
                    };
                    match reply {
                        Reply::Switch(..) => {}
                        Reply::Raw(text) => {
                            let _ = sock.write_all(text.as_bytes()).await;
                            let _ = sock.shutdown().await;
                        }
                        Reply::Silent => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        Self {
            addr,
            accepts,
            heads,
            task,
        }
    }

    /// TCP connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// Request heads received so far.
    #[allow(dead_code)]
    pub(crate) fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A 200 answer.
#[allow(dead_code)]
pub(crate) const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
/// The head of a 500 answer with a 300-byte body.
#[allow(dead_code)]
pub(crate) const FAIL: &str =
    "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 300\r\nconnection: close\r\n\r\n";
