//! Helpers shared by the fault tests: the gateway with its process id (for
//! `/proc` readings of memory and CPU), a raw connection whose waits are short and
//! whose writes tolerate a gateway that hangs up, and a one-at-a-time lock.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::Command;
use tokio::sync::{Mutex, MutexGuard};

use crate::support::gateway::BIN;
use crate::support::wire::{Reader, is_cut};
use crate::support::{Gateway, Origin, Response, TempDir};

/// The fault tests measure memory, CPU and latency of one gateway at a time, on
/// a 2-core machine: each holds this lock for its whole run, so that two floods
/// never share the cores.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Takes the one-test-at-a-time lock (tokio's mutex does not poison, so a failed
/// test does not fail the next ones).
pub(crate) async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// `[[services]]` `svc` on `origin` and a catch-all route to it.
pub(crate) fn routes(origin: &Origin) -> String {
    routes_to(&origin.url())
}

/// `[[services]]` `svc` on the endpoint `url` and a catch-all route to it.
pub(crate) fn routes_to(url: &str) -> String {
    format!(
        "[[services]]\nname = \"svc\"\nendpoints = [\"{url}\"]\n\n[[routes]]\npath = \"/\"\nservice = \"svc\"\n"
    )
}

/// A gateway (`portcullis run --config`) whose process id is known: it is started
/// through `sh -c 'echo $$ > PIDFILE; exec portcullis …'`, so the shell's pid is
/// the gateway's.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) gw: Gateway,
    pub(crate) pid: u32,
    /// The `state_dir` of its config, kept for [`Proc::rewrite`].
    state_dir: String,
}

impl Proc {
    /// As `Gateway::run`: a `[server]` section listening on port 0 (admin too),
    /// then `server_extra`, then `rest`.
    pub(crate) async fn run(server_extra: &str, rest: &str) -> Self {
        Self::run_with_env(server_extra, rest, &[]).await
    }

    /// As [`Proc::run`], with these variables set in the gateway's environment
    /// (for example `PORTCULLIS_ADMIN_TOKEN`, see [`Proc::run_with_token`]).
    pub(crate) async fn run_with_env(server_extra: &str, rest: &str, env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new();
        let state_dir = dir.0.join("state").display().to_string();
        let text = config_text(&state_dir, server_extra, rest);
        let config = dir.write("portcullis.toml", &text);
        let pidfile = dir.0.join("portcullis.pid");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"echo $$ > "$0" && exec "$1" run --config "$2""#)
            .arg(&pidfile)
            .arg(BIN)
            .arg(&config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let gw = Gateway::start_command(cmd, &format!("run with {text:?}"), Some(dir)).await;
        // The gateway logged that it listens, so the shell wrote the file first.
        let pid = std::fs::read_to_string(&pidfile)
            .expect("read the pid file")
            .trim()
            .parse()
            .expect("a pid");
        Self { gw, pid, state_dir }
    }

    /// As [`Proc::run`], the admin API enabled with [`ADMIN_TOKEN`].
    pub(crate) async fn run_with_token(server_extra: &str, rest: &str) -> Self {
        Self::run_with_env(
            server_extra,
            rest,
            &[("PORTCULLIS_ADMIN_TOKEN", ADMIN_TOKEN)],
        )
        .await
    }

    /// Rewrites the config file as [`Proc::run`] wrote it (same `[server]`
    /// section and state folder), with this `server_extra` and `rest`; a reload
    /// then reads it.
    pub(crate) fn rewrite(&self, server_extra: &str, rest: &str) {
        self.gw
            .rewrite_config(&config_text(&self.state_dir, server_extra, rest));
    }

    /// `POST /api/v1/reload` on the admin listener with [`ADMIN_TOKEN`], on a
    /// fresh connection; the response, or what went wrong.
    pub(crate) async fn reload(&self) -> Read {
        let mut c = match Raw::connect(self.gw.admin_addr(), Duration::from_secs(10)).await {
            Ok(c) => c,
            Err(e) => return Read::Broken(format!("connect to the admin listener: {e}")),
        };
        let req = format!(
            "POST /api/v1/reload HTTP/1.1\r\nHost: admin.local\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        if !c.send(req.as_bytes(), Duration::from_secs(10)).await {
            return Read::Broken("the reload request could not be written".to_owned());
        }
        c.read("POST").await
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.pid))
            .unwrap_or_else(|e| panic!("read /proc/{}/{name}: {e}", self.pid))
    }

    /// Whether the process still runs (exists and is not a zombie).
    pub(crate) fn alive(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => stat_fields(&stat).first().is_some_and(|s| *s != "Z"),
            Err(_) => false,
        }
    }

    /// Resident set size now (`VmRSS`), in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        status_kib(&self.proc_file("status"), "VmRSS:")
    }

    /// User plus system CPU time so far, in clock ticks.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        let stat = self.proc_file("stat");
        let fields = stat_fields(&stat);
        // Fields 14 and 15 of stat(5); `fields` starts at field 3 (state).
        let tick = |i: usize| -> u64 {
            fields
                .get(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("field {} of /proc/PID/stat: {stat}", i + 3))
        };
        tick(11) + tick(12)
    }

    /// The share of one core the gateway used over the next `window`.
    pub(crate) async fn cpu_share(&self, window: Duration) -> f64 {
        let before = self.cpu_ticks();
        let start = tokio::time::Instant::now();
        tokio::time::sleep(window).await;
        let ticks = self.cpu_ticks().saturating_sub(before);
        ticks as f64 / clock_ticks_per_second() / start.elapsed().as_secs_f64()
    }

    /// Panics (with the gateway's last log lines) unless the process runs.
    pub(crate) fn assert_alive(&self, after: &str) {
        if !self.alive() {
            let logs = self.gw.logs();
            let tail: Vec<&str> = logs.lines().rev().take(40).collect();
            panic!(
                "the gateway died after {after}; last log lines (newest first):\n{}",
                tail.join("\n")
            );
        }
    }
}

/// The admin API token of gateways started with [`Proc::run_with_token`].
pub(crate) const ADMIN_TOKEN: &str = "faults-admin-token";

/// The config file [`Proc::run`] writes: a `[server]` section listening on
/// port 0 (admin too) with this `state_dir`, then `server_extra`, then `rest`.
fn config_text(state_dir: &str, server_extra: &str, rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nstate_dir = {state_dir:?}\n{server_extra}\n\n{rest}\n"
    )
}

/// The fields of a `/proc/PID/stat` line after the command name.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

fn status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/PID/status:\n{status}"))
}

/// `sysconf(_SC_CLK_TCK)` by way of `getconf` (100 on every Linux seen).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// How a read on a [`Raw`] connection ended.
#[derive(Debug)]
pub(crate) enum Read {
    /// A whole response.
    Response(Box<Response>),
    /// End of stream or reset (possibly in the middle of a response).
    Closed,
    /// Nothing within the read timeout.
    Silent,
    /// Bytes that are not an HTTP/1.1 response, or another error.
    Broken(String),
}

/// A raw client connection with a short, chosen read timeout; writes that the
/// gateway refuses (it closed) are reported, not fatal.
#[derive(Debug)]
pub(crate) struct Raw {
    pub(crate) r: Reader<OwnedReadHalf>,
    pub(crate) w: OwnedWriteHalf,
}

impl Raw {
    pub(crate) async fn connect(addr: SocketAddr, read_timeout: Duration) -> io::Result<Self> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        Ok(Self {
            r: Reader::new(r, read_timeout),
            w,
        })
    }

    /// Writes `bytes` within `timeout`; `false` when the gateway closed, reset or
    /// stopped reading.
    pub(crate) async fn send(&mut self, bytes: &[u8], timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.w.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }

    /// Half-closes: the gateway reads end of stream.
    pub(crate) async fn finish(&mut self) {
        let _ = self.w.shutdown().await;
    }

    /// Reads the next response to a request of `method`.
    pub(crate) async fn read(&mut self, method: &str) -> Read {
        let head = match self.r.read_head().await {
            Ok(Some(head)) => head,
            Ok(None) => return Read::Closed,
            Err(e) if is_cut(&e) => return Read::Closed,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Read::Silent,
            Err(e) => return Read::Broken(e.to_string()),
        };
        let status = head.status();
        if !(100..=599).contains(&status) {
            return Read::Broken(format!("not a response head: {:?}", head.text()));
        }
        let framing = head.response_framing(method);
        match self.r.read_body(framing).await {
            Ok(body) => Read::Response(Box::new(Response {
                head,
                status,
                framing,
                body,
            })),
            Err(e) if is_cut(&e) => Read::Closed,
            Err(e) => Read::Broken(format!("reading the body after {:?}: {e}", head.text())),
        }
    }
}

/// `GET target` with a Host header, keep-alive.
pub(crate) fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: test.local\r\n\r\n").into_bytes()
}

/// One GET on a fresh connection; its response, or what went wrong.
pub(crate) async fn get_once(addr: SocketAddr, target: &str, timeout: Duration) -> Read {
    let mut c = match Raw::connect(addr, timeout).await {
        Ok(c) => c,
        Err(e) => return Read::Broken(format!("connect: {e}")),
    };
    if !c.send(&get(target), timeout).await {
        return Read::Broken("the request could not be written".to_owned());
    }
    c.read("GET").await
}

/// Median and maximum of `samples` (which must not be empty).
pub(crate) fn median_max(samples: &[Duration]) -> (Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort();
    let median = s.get(s.len() / 2).copied().unwrap_or_default();
    let max = s.last().copied().unwrap_or_default();
    (median, max)
}

/// An origin that never answers: it reads each connection until the gateway
/// closes it, and tells how many are open and when each one ended.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) addr: SocketAddr,
    state: std::sync::Arc<std::sync::Mutex<SinkState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct SinkState {
    accepted: usize,
    /// Bytes read on each connection that ended, and when it ended.
    ended: Vec<(u64, tokio::time::Instant)>,
}

impl Sink {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sink");
        let addr = listener.local_addr().expect("sink addr");
        let state = std::sync::Arc::new(std::sync::Mutex::new(SinkState::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                st.lock().expect("sink").accepted += 1;
                let st = st.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut total = 0u64;
                    // Bounded: no test here runs for ten minutes.
                    let _ = tokio::time::timeout(Duration::from_secs(600), async {
                        while let Ok(n) = stream.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            total += n as u64;
                        }
                    })
                    .await;
                    st.lock()
                        .expect("sink")
                        .ended
                        .push((total, tokio::time::Instant::now()));
                });
            }
        });
        Self { addr, state, task }
    }

    /// `http://ADDR`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.state.lock().expect("sink").accepted
    }

    /// Connections the gateway closed so far: bytes read on each, and when.
    pub(crate) fn ended(&self) -> Vec<(u64, tokio::time::Instant)> {
        self.state.lock().expect("sink").ended.clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What every [`EchoOrigin`] of a test shares across kills and restarts: the
/// pause switch and the log of requests received.
#[derive(Debug, Clone, Default)]
pub(crate) struct EchoShared {
    /// While set, every origin delays its answers (as if stopped with SIGSTOP).
    pub(crate) paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// `(origin name, method, x-test-id)` of every whole request received.
    pub(crate) seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
}

/// An origin that answers every request with `200`, echoing in headers the
/// request's `x-test-id` (`x-test-id`), the FNV-1a checksum and length of its
/// body (`x-body-sum`, `x-body-len`) and its own name (`x-origin`). Unlike the
/// e2e `Origin` it can listen on a chosen port, so that a killed one can be
/// restarted where the gateway expects it.
#[derive(Debug)]
pub(crate) struct EchoOrigin {
    pub(crate) addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

/// The longest an [`EchoOrigin`] holds an answer while paused.
const MAX_PAUSE: Duration = Duration::from_secs(5);

impl EchoOrigin {
    /// Starts `name` on `addr` (port 0 for any), sharing `shared`.
    pub(crate) async fn start(addr: SocketAddr, name: &str, shared: &EchoShared) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind echo origin {name} on {addr}: {e}"));
        let addr = listener.local_addr().expect("echo origin addr");
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tasks, shared, name) = (conns.clone(), shared.clone(), name.to_owned());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let task = tokio::spawn(echo_serve(stream, name.clone(), shared.clone()));
                let mut tasks = tasks.lock().expect("echo tasks");
                tasks.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
                tasks.push(task);
            }
        });
        Self {
            addr,
            accept,
            conns,
        }
    }

    /// `http://ADDR`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Dies like a killed process: the port refuses connections and every open
    /// connection is closed, mid-request or idle. Returns once the sockets are.
    pub(crate) async fn kill(&self) {
        self.accept.abort();
        let conns = std::mem::take(&mut *self.conns.lock().expect("echo tasks"));
        for t in &conns {
            t.abort();
        }
        // Aborted tasks drop their sockets when the runtime next polls them.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !(self.accept.is_finished() && conns.iter().all(|t| t.is_finished())) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "echo origin tasks did not end"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for EchoOrigin {
    fn drop(&mut self) {
        self.accept.abort();
        for t in self.conns.lock().expect("echo tasks").iter() {
            t.abort();
        }
    }
}

async fn echo_serve(stream: TcpStream, name: String, shared: EchoShared) {
    use std::sync::atomic::Ordering;
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = Reader::new(r, Duration::from_secs(60));
    loop {
        let Ok(Some(head)) = r.read_head().await else {
            return;
        };
        let body = match r.read_body(head.request_framing()).await {
            Ok(b) if b.complete => b,
            _ => return,
        };
        let id = head.get("x-test-id").unwrap_or("").to_owned();
        shared.seen.lock().expect("seen").push((
            name.clone(),
            head.method().to_owned(),
            id.clone(),
        ));
        let start = tokio::time::Instant::now();
        while shared.paused.load(Ordering::SeqCst) && start.elapsed() < MAX_PAUSE {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let res = crate::support::response(
            "200 OK",
            &[
                ("x-test-id", &id),
                ("x-body-sum", &format!("{:016x}", body.sum.0)),
                ("x-body-len", &body.len.to_string()),
                ("x-origin", &name),
            ],
            b"ok",
        );
        if w.write_all(&res).await.is_err() {
            return;
        }
    }
}
