//! The admin listener of a running gateway: its address (from the log), plain GETs,
//! and `/metrics` scraped and parsed into samples.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::client::{Client, Response};
use super::gateway::Gateway;
use super::wire::IO_TIMEOUT;

impl Gateway {
    /// `portcullis run` with the admin listener on port 0; its address is read back
    /// from the "admin listening" log line with [`Gateway::admin_addr`].
    pub(crate) async fn run_with_metrics(server_extra: &str, rest: &str) -> Self {
        Self::run_with_admin("127.0.0.1:0", server_extra, rest).await
    }

    /// The admin listener's address, from the last "admin listening" log line
    /// (logged before "proxy listening", so it is there once the gateway started;
    /// logged again when a reload moves it).
    pub(crate) fn admin_addr(&self) -> SocketAddr {
        self.logs()
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "admin listening")
            .and_then(|v| v["addr"].as_str().and_then(|a| a.parse().ok()))
            .unwrap_or_else(|| panic!("no \"admin listening\" log line:\n{}", self.logs()))
    }

    /// `GET path` on the admin listener, on a fresh connection.
    pub(crate) async fn admin_get(&self, path: &str) -> Response {
        let mut c = Client::connect(self.admin_addr()).await;
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: admin.local\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        c.response().await
    }

    /// `GET /metrics`, parsed.
    pub(crate) async fn scrape(&self) -> Scrape {
        let res = self.admin_get("/metrics").await;
        assert_eq!(res.status, 200, "GET /metrics: {}", res.dump());
        Scrape::parse(&res.body.text())
    }

    /// Scrapes until `name{labels}` (summed over matching series) reaches `at_least`
    /// or [`IO_TIMEOUT`] passes; returns the last scrape either way, so the caller
    /// asserts the exact value. Metrics are recorded when a response body ends,
    /// which may be a moment after the client read it.
    pub(crate) async fn scrape_until(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        at_least: f64,
    ) -> Scrape {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        loop {
            let s = self.scrape().await;
            if s.value(name, labels) >= at_least || tokio::time::Instant::now() >= deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone)]
pub(crate) struct Scrape {
    pub(crate) samples: Vec<Sample>,
    pub(crate) text: String,
}

impl Scrape {
    /// Parses the Prometheus text exposition format (comments skipped). Panics on a
    /// line it cannot read: the exporter must write valid text.
    pub(crate) fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| parse_line(l).unwrap_or_else(|| panic!("bad metrics line {l:?}")))
            .collect();
        Self {
            samples,
            text: text.to_owned(),
        }
    }

    /// Every series of `name`.
    pub(crate) fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The sum of the series of `name` whose labels include every pair of
    /// `labels`; 0 when there is none.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name)
            .into_iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|s| s.value)
            .sum()
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            r = r.trim_start_matches([',', ' ']);
            if let Some(after) = r.strip_prefix('}') {
                break after;
            }
            let eq = r.find('=')?;
            let key = r[..eq].trim().to_owned();
            r = r[eq + 1..].strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.insert(key, value);
            r = &r[end + 1..];
        }
    } else {
        rest
    };
    let mut parts = rest.split_whitespace();
    let value = match parts.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

#[test]
fn parses_prometheus_lines() {
    let s = Scrape::parse(
        "# HELP x y\n# TYPE x counter\nx 3\na_total{route=\"/d/{id}\",m=\"q\\\"\\\\\"} 2\nh_bucket{le=\"+Inf\"} 1.5\n",
    );
    assert_eq!(s.value("x", &[]), 3.0);
    assert_eq!(
        s.value("a_total", &[("route", "/d/{id}"), ("m", "q\"\\")]),
        2.0
    );
    assert_eq!(s.value("h_bucket", &[("le", "+Inf")]), 1.5);
    assert_eq!(s.value("a_total", &[("route", "/d/1")]), 0.0);
}
