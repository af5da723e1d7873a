//! A raw recording origin: records each request's exact head and body, and answers
//! as a handler says, byte for byte.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::wire::{Body, Head, IO_TIMEOUT, Reader, fill_pattern, is_cut};

/// How long the origin keeps an idle keep-alive connection.
const IDLE: Duration = Duration::from_secs(60);

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// Which accepted connection (0-based) it came on.
    pub(crate) conn: usize,
    /// The exact head.
    pub(crate) head: Head,
    /// The body (its `complete` is false until the whole body arrived).
    pub(crate) body: Body,
}

/// What the origin does with a request, once its body was read.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Write these bytes, then wait for the next request on the connection.
    Respond(Vec<u8>),
    /// Write these bytes (garbage, a cut body...), then close the connection.
    RespondClose(Vec<u8>),
    /// Write `head`, then `len` bytes of the pattern, then keep the connection.
    Stream { head: Vec<u8>, len: u64 },
    /// Never answer; close when the peer does.
    Hang,
    /// Close at once.
    Close,
    /// Write the 101 head, then echo every byte back.
    Upgrade(Vec<u8>),
    /// Write `head`, then `chunk` every `every`, `count` times, noting how it ended.
    Drip {
        head: Vec<u8>,
        chunk: Vec<u8>,
        every: Duration,
        count: usize,
    },
    /// Wait, then do the action.
    Delay(Duration, Box<Action>),
}

/// How a drip ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DripEnd {
    /// Every chunk was written.
    Finished,
    /// The peer closed (end of stream seen or a write failed) after this many
    /// body bytes were written.
    PeerGone(u64),
}

type Handler = Arc<dyn Fn(&Record) -> Action + Send + Sync>;

#[derive(Default)]
struct State {
    records: Mutex<Vec<Record>>,
    connections: AtomicUsize,
    drips: Mutex<Vec<DripEnd>>,
    /// Every connection's task, so that [`Origin::kill`] can end them.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// A running origin; stops accepting when dropped.
pub(crate) struct Origin {
    pub(crate) addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Origin {
    /// Starts an origin on 127.0.0.1:0 answering with `handler`.
    pub(crate) async fn start(handler: impl Fn(&Record) -> Action + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(State::default());
        let handler: Handler = Arc::new(handler);
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = st.connections.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(serve(stream, conn, st.clone(), handler.clone()));
                let mut tasks = st.tasks.lock().expect("tasks");
                tasks.retain(|t| !t.is_finished());
                tasks.push(task.abort_handle());
            }
        });
        Self { addr, state, task }
    }

    /// `http://ADDR`, for `--upstream` and `endpoints`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Dies like a killed process: stops accepting (the port refuses connections)
    /// and closes every open connection, mid-request or idle in a pool.
    pub(crate) async fn kill(&self) {
        self.task.abort();
        let tasks = std::mem::take(&mut *self.state.tasks.lock().expect("tasks"));
        for t in &tasks {
            t.abort();
        }
        // Aborted tasks drop their sockets when the runtime next polls them.
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        while !(self.task.is_finished() && tasks.iter().all(|t| t.is_finished())) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "origin tasks did not end"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Requests received so far (heads; bodies as far as read).
    pub(crate) fn records(&self) -> Vec<Record> {
        self.state.records.lock().expect("records").clone()
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Drips that ended so far.
    pub(crate) fn drips(&self) -> Vec<DripEnd> {
        self.state.drips.lock().expect("drips").clone()
    }

    /// Waits (up to [`IO_TIMEOUT`]) until `cond` holds; panics otherwise.
    pub(crate) async fn wait_until(&self, what: &str, cond: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        while !cond(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "origin: gave up waiting for {what}; records: {:#?}",
                self.records()
                    .iter()
                    .map(|r| r.head.text())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for `n` request heads.
    pub(crate) async fn wait_records(&self, n: usize) -> Vec<Record> {
        self.wait_until(&format!("{n} request(s)"), |o| o.records().len() >= n)
            .await;
        self.records()
    }

    /// The one request received; panics unless exactly one came.
    pub(crate) async fn only_record(&self) -> Record {
        let mut records = self.wait_records(1).await;
        // A complete answer went back, so its request was recorded first; a second
        // request would have had to come before it.
        assert_eq!(records.len(), 1, "expected one request, got {records:#?}");
        records.remove(0)
    }

    /// Asserts that nothing reached the origin, after a short settle so that a
    /// request forwarded just now would have been seen.
    pub(crate) async fn assert_untouched(&self) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            self.connections(),
            0,
            "the origin was connected to; records: {:#?}",
            self.records()
        );
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, conn: usize, state: Arc<State>, handler: Handler) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = Reader::new(r, IDLE);
    loop {
        let head = match r.read_head().await {
            Ok(Some(h)) => h,
            Ok(None) | Err(_) => return,
        };
        let idx = {
            let mut records = state.records.lock().expect("records");
            records.push(Record {
                conn,
                head: head.clone(),
                body: Body::default(),
            });
            records.len() - 1
        };
        let body = match r.read_body(head.request_framing()).await {
            Ok(b) => b,
            Err(_) => return,
        };
        let complete = body.complete;
        let record = {
            let mut records = state.records.lock().expect("records");
            records[idx].body = body;
            records[idx].clone()
        };
        if !complete {
            return;
        }
        let mut action = handler(&record);
        while let Action::Delay(d, next) = action {
            tokio::time::sleep(d).await;
            action = *next;
        }
        match action {
            Action::Respond(bytes) => {
                if w.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Action::RespondClose(bytes) => {
                let _ = w.write_all(&bytes).await;
                let _ = w.shutdown().await;
                return;
            }
            Action::Stream { head, len } => {
                if stream_pattern(&mut w, &head, len).await.is_err() {
                    return;
                }
            }
            Action::Hang => {
                // Read (and discard) until the peer closes, for at most a minute.
                let _ = tokio::time::timeout(IDLE, async {
                    while let Ok(n) = r.fill().await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
                return;
            }
            Action::Close => return,
            Action::Upgrade(head) => {
                let _ = echo(r, w, &head).await;
                return;
            }
            Action::Drip {
                head,
                chunk,
                every,
                count,
            } => {
                let end = drip(&mut r, &mut w, &head, &chunk, every, count).await;
                state.drips.lock().expect("drips").push(end);
                return;
            }
            Action::Delay(..) => unreachable!("delays are unwrapped above"),
        }
    }
}

async fn stream_pattern(w: &mut OwnedWriteHalf, head: &[u8], len: u64) -> std::io::Result<()> {
    w.write_all(head).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        fill_pattern(off, &mut buf[..n]);
        tokio::time::timeout(IO_TIMEOUT, w.write_all(&buf[..n]))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        off += n as u64;
    }
    Ok(())
}

async fn echo(r: Reader<OwnedReadHalf>, mut w: OwnedWriteHalf, head: &[u8]) -> std::io::Result<()> {
    w.write_all(head).await?;
    let (mut r, rest) = r.into_inner();
    w.write_all(&rest).await?;
    let mut r = Reader::new(&mut r, IDLE);
    loop {
        if r.fill().await? == 0 {
            return Ok(());
        }
        let data = r.buffered().to_vec();
        r.read_n(data.len() as u64, &mut |_| {}).await?;
        w.write_all(&data).await?;
    }
}

async fn drip(
    r: &mut Reader<OwnedReadHalf>,
    w: &mut OwnedWriteHalf,
    head: &[u8],
    chunk: &[u8],
    every: Duration,
    count: usize,
) -> DripEnd {
    if w.write_all(head).await.is_err() {
        return DripEnd::PeerGone(0);
    }
    let mut written = 0u64;
    let mut sent = 0;
    while sent < count {
        tokio::select! {
            got = r.fill() => match got {
                Ok(0) => return DripEnd::PeerGone(written),
                Err(e) if is_cut(&e) => return DripEnd::PeerGone(written),
                // Pipelined bytes or a read timeout: keep dripping.
                Ok(_) | Err(_) => {}
            },
            () = tokio::time::sleep(every) => {
                if w.write_all(chunk).await.is_err() {
                    return DripEnd::PeerGone(written);
                }
                written += chunk.len() as u64;
                sent += 1;
            }
        }
    }
    DripEnd::Finished
}

/// A response head plus body with a correct `Content-Length`.
pub(crate) fn response(status_line: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status_line}\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// `200 OK` with this body.
pub(crate) fn ok(body: &str) -> Vec<u8> {
    response("200 OK", &[], body.as_bytes())
}
