//! R18: `portcullis check` reports each mistake with its line, and exits 1.

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

use crate::support::TempDir;
use crate::support::gateway::BIN;

async fn check(text: &str) -> (Output, String) {
    let dir = TempDir::new();
    let path = dir.write("portcullis.toml", text);
    let path = path.to_str().expect("utf-8 temp path").to_owned();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new(BIN)
            .args(["check", "--config", &path])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("portcullis check timed out")
    .expect("run portcullis check");
    (out, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mistakes_are_both_reported_with_lines() {
    let text = "\
[server]
listen = \"not an address\"

[[services]]
name = \"api\"
endpoints = [\"http://127.0.0.1:8081\"]

[[routes]]
path = \"/\"
service = \"nope\"
";
    let (out, path) = check(text).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let located: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{path}:")))
        .collect();
    let at = |line: u32| {
        located
            .iter()
            .find(|l| {
                let rest = &l[path.len() + 1..];
                let mut parts = rest.splitn(3, ':');
                parts.next() == Some(&line.to_string())
                    && parts.next().is_some_and(|c| c.parse::<u32>().is_ok())
            })
            .unwrap_or_else(|| panic!("no `{path}:{line}:COL: reason` line in stderr:\n{stderr}"))
            .to_string()
    };
    let listen = at(2);
    assert!(listen.contains("server.listen"), "{listen}");
    let route = at(10);
    assert!(route.contains("nope"), "{route}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_file_passes() {
    let text = "\
[server]
listen = \"127.0.0.1:8080\"

[[services]]
name = \"api\"
endpoints = [\"http://127.0.0.1:8081\"]

[[routes]]
path = \"/api/\"
service = \"api\"
max_body = \"1MiB\"
";
    let (out, _) = check(text).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_error_is_located() {
    let (out, path) =
        check("[server]\nlisten = \"127.0.0.1:8080\"\nheader_timeout = \"ten\"\n").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains(&format!("{path}:3:")), "stderr:\n{stderr}");
}
