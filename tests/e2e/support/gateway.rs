//! The `portcullis` binary as a child process: started on port 0, its address read
//! from its JSON log, its stderr drained, killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the gateway may take to start listening (the machine is shared).
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty temporary folder, removed by [`TempDir`]'s drop.
#[derive(Debug)]
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        let n = DIRS.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("portcullis-e2e-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    /// Writes `text` to `name` inside the folder; returns the file's path.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that refuses connections for as long as the returned socket lives: bound
/// but not listening, so no other test can take it meanwhile.
pub(crate) fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let port = socket.local_addr().expect("addr").port();
    (socket, port)
}

/// A running gateway.
#[derive(Debug)]
pub(crate) struct Gateway {
    child: Child,
    pid: u32,
    /// The proxy listener's address.
    pub(crate) addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: Option<TempDir>,
}

impl Gateway {
    /// `portcullis proxy --listen 127.0.0.1:0 --upstream U... EXTRA...`.
    pub(crate) async fn proxy(upstreams: &[&str], extra: &[&str]) -> Self {
        let mut args = vec!["proxy", "--listen", "127.0.0.1:0"];
        for u in upstreams {
            args.extend(["--upstream", u]);
        }
        args.extend(extra);
        Self::start(&args, None).await
    }

    /// `portcullis run --config FILE`, the file being a `[server]` section (listen
    /// on port 0, admin on port 0 — its address is in the log,
    /// [`Gateway::admin_addr`] — state in a temp folder, then `server_extra`),
    /// followed by `rest`.
    pub(crate) async fn run(server_extra: &str, rest: &str) -> Self {
        // Port 0, not a port found free a moment ago: another test could take
        // that one in between, and the gateway would fail to start.
        Self::run_with_admin("127.0.0.1:0", server_extra, rest).await
    }

    /// As [`Gateway::run`], with this `admin_listen`.
    pub(crate) async fn run_with_admin(admin: &str, server_extra: &str, rest: &str) -> Self {
        let dir = TempDir::new();
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"{admin}\"\nstate_dir = {:?}\n{server_extra}\n\n{rest}\n",
            dir.0.join("state").display().to_string(),
        );
        let path = dir.write("portcullis.toml", &text);
        let path = path.to_str().expect("utf-8 temp path").to_owned();
        Self::start(&["run", "--config", &path], Some(dir)).await
    }

    async fn start(args: &[&str], dir: Option<TempDir>) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        Self::start_command(cmd, &format!("{args:?}"), dir).await
    }

    /// Everything the gateway logged so far.
    pub(crate) fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// The JSON log lines whose `message` is `message`, once there are at least
    /// `n` of them (the log is read in the background: a line logged before a
    /// response may arrive after it). Panics after a few seconds.
    pub(crate) async fn wait_log(&self, message: &str, n: usize) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<serde_json::Value> = self
                .logs()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["message"] == message)
                .collect();
            if found.len() >= n {
                return found;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{} of {n} {message:?} log lines after 10 s:\n{}",
                    found.len(),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Peak resident set size (`VmHWM`) in KiB.
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(Path::new("/proc").join(self.pid.to_string()).join("status"))
                .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Sends SIGTERM to this gateway (and nothing else).
    pub(crate) async fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
    }

    /// Sends SIGHUP to this gateway (and nothing else): reload the config file.
    pub(crate) async fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -HUP {} failed", self.pid);
    }

    /// Replaces the config file the gateway was started from (`run --config`)
    /// with `text`, for a reload.
    pub(crate) fn rewrite_config(&self, text: &str) {
        let dir = self
            ._dir
            .as_ref()
            .expect("a gateway started from a config file");
        dir.write("portcullis.toml", text);
    }

    /// Sends SIGKILL to this gateway (and nothing else): no drain, no flush.
    pub(crate) async fn kill_hard(&self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -KILL {} failed", self.pid);
    }

    /// Waits for the process to exit.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for portcullis"),
            Err(_) => panic!(
                "portcullis did not exit within {timeout:?}:\n{}",
                self.logs()
            ),
        }
    }
}

/// A child environment change for [`Gateway::run_file_with_env`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum EnvChange<'a> {
    /// Set the variable to this value.
    Set(&'a str, &'a str),
    /// Remove the variable.
    Remove(&'a str),
}

impl Gateway {
    /// `portcullis run --config FILE`, FILE being exactly `text` written in `dir`
    /// (which the gateway keeps until dropped), with the child's environment
    /// changed by `env`.
    pub(crate) async fn run_file_with_env(dir: TempDir, text: &str, env: &[EnvChange<'_>]) -> Self {
        let path = dir.write("portcullis.toml", text);
        let path = path.to_str().expect("utf-8 temp path").to_owned();
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--config", &path]);
        for change in env {
            match *change {
                EnvChange::Set(k, v) => {
                    cmd.env(k, v);
                }
                EnvChange::Remove(k) => {
                    cmd.env_remove(k);
                }
            }
        }
        Self::start_command(cmd, &format!("run --config {path}"), Some(dir)).await
    }

    /// Spawns `cmd` (logging at info, stdin and stdout null, stderr drained) and
    /// waits for its "proxy listening" log line. `what` names it in panics.
    pub(crate) async fn start_command(mut cmd: Command, what: &str, dir: Option<TempDir>) -> Self {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn portcullis");
        let pid = child.id().expect("child pid");
        let stderr = child.stderr.take().expect("stderr piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = logs.clone();
        // Keeps draining stderr for the child's whole life, so it never blocks on a
        // full pipe.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("logs").push(line.clone());
                let _ = tx.send(line);
            }
        });
        let found = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = rx.recv().await {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v["message"] == "proxy listening" {
                    return v["addr"]
                        .as_str()
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                }
            }
            None
        })
        .await;
        let logs_now = logs.lock().expect("logs").join("\n");
        let addr = match found {
            Ok(Some(addr)) => addr,
            Ok(None) => panic!("portcullis {what} exited before listening:\n{logs_now}"),
            Err(_) => {
                panic!("portcullis {what} did not log \"proxy listening\" in time:\n{logs_now}")
            }
        };
        Self {
            child,
            pid,
            addr,
            logs,
            _dir: dir,
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
    }
}
