//! Access lines of a running gateway: its JSON log lines with
//! `"target":"portcullis::access"` and `"message":"request"`.

use std::time::Duration;

use serde_json::Value;

use super::gateway::Gateway;
use super::wire::IO_TIMEOUT;

impl Gateway {
    /// The access lines logged so far, parsed, in order.
    pub(crate) fn access_lines(&self) -> Vec<Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "portcullis::access" && v["message"] == "request")
            .collect()
    }

    /// Waits (up to [`IO_TIMEOUT`]) for at least `n` access lines; panics with the
    /// logs otherwise. Lines are written when a response body ends, which may be a
    /// moment after the client read it.
    pub(crate) async fn wait_access_lines(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        loop {
            let lines = self.access_lines();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting for {n} access line(s), got {}:\n{}",
                lines.len(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
