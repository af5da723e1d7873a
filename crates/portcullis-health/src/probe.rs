//! One active probe over a fresh connection.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::config::HealthCheckConfig;

/// `User-Agent` of every probe.
pub const USER_AGENT_VALUE: &str = concat!("portcullis-health/", env!("CARGO_PKG_VERSION"));

/// Bytes of an unexpected response's body kept in the failure detail.
pub const BODY_PREFIX_LIMIT: usize = 128;

/// Longest failure detail kept, in bytes.
const DETAIL_LIMIT: usize = 256;

/// The outcome of one [`probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// The endpoint answered with an expected status.
    Ok {
        /// The response status.
        status: u16,
        /// Time from the start of the connect to the response head.
        duration: Duration,
    },
    /// The probe failed.
    Failed {
        /// Why, as a fixed kind (also the metric label).
        kind: FailureKind,
        /// Bounded human-readable detail: the I/O error, or the status and the first
        /// bytes of the body. Header values are never included.
        detail: String,
        /// Time from the start of the connect to the failure.
        duration: Duration,
    },
}

/// Why a probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The connection was refused.
    Refused,
    /// The TCP connect did not finish within `connect_timeout`.
    ConnectTimeout,
    /// The probe did not finish within `timeout`.
    Timeout,
    /// The endpoint answered with an unexpected status.
    Status(u16),
    /// The endpoint broke HTTP/1.1 (bad response, connection closed early).
    Protocol,
    /// Anything else (other I/O errors, an invalid probe config).
    Other,
}

/// Probes `addr` once over a **new** TCP connection (never a pooled one).
///
/// Sends `method path` over HTTP/1.1 with `Host: host`,
/// `User-Agent: portcullis-health/<version>`, `Connection: close` and the configured
/// headers, then reads the status. On an unexpected status it reads at most
/// [`BODY_PREFIX_LIMIT`] bytes of the body into the failure detail. The connect is
/// bounded by `connect_timeout` and the whole probe by `timeout`. Dropping the
/// future closes the connection.
pub async fn probe(addr: SocketAddr, host: &str, config: &HealthCheckConfig) -> ProbeResult {
    let start = Instant::now();
    let deadline = start + config.timeout;
    let outcome = run(addr, host, config, start, deadline).await;
    let duration = start.elapsed();
    match outcome {
        Ok(status) => ProbeResult::Ok { status, duration },
        Err((kind, detail)) => ProbeResult::Failed {
            kind,
            detail: truncate(detail, DETAIL_LIMIT),
            duration,
        },
    }
}

type Failure = (FailureKind, String);

async fn run(
    addr: SocketAddr,
    host: &str,
    config: &HealthCheckConfig,
    start: Instant,
    deadline: Instant,
) -> Result<u16, Failure> {
    let request = build_request(host, config)?;

    let connect_deadline = (start + config.connect_timeout).min(deadline);
    let stream = match timeout_at(connect_deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err((FailureKind::Refused, format!("connection refused: {e}")));
        }
        Ok(Err(e)) => return Err((FailureKind::Other, format!("connect failed: {e}"))),
        Err(_) if connect_deadline < deadline => {
            return Err((
                FailureKind::ConnectTimeout,
                format!(
                    "connect timed out after {}",
                    humantime::format_duration(config.connect_timeout)
                ),
            ));
        }
        Err(_) => return Err(timed_out(config)),
    };
    let _ = stream.set_nodelay(true);

    match timeout_at(deadline, exchange(stream, request, &config.expected_status)).await {
        Ok(result) => result,
        Err(_) => Err(timed_out(config)),
    }
}

fn timed_out(config: &HealthCheckConfig) -> Failure {
    (
        FailureKind::Timeout,
        format!(
            "no answer within {}",
            humantime::format_duration(config.timeout)
        ),
    )
}

fn build_request(host: &str, config: &HealthCheckConfig) -> Result<Request<Empty<Bytes>>, Failure> {
    let invalid = |what: &str| (FailureKind::Other, format!("invalid health check {what}"));
    let method = Method::from_bytes(config.method.as_bytes()).map_err(|_| invalid("method"))?;
    let mut request = Request::builder()
        .method(method)
        .uri(config.path.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|_| invalid("path"))?;
    let headers = request.headers_mut();
    headers.insert(
        HOST,
        HeaderValue::from_str(host).map_err(|_| invalid("host"))?,
    );
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    for (name, value) in &config.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("header name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid("header value"))?;
        headers.insert(name, value);
    }
    // Set last: a probe never keeps its connection.
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    Ok(request)
}

/// Aborts the connection task when the probe ends or is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange(
    stream: TcpStream,
    request: Request<Empty<Bytes>>,
    expected: &[u16],
) -> Result<u16, Failure> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(protocol)?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        // The error, if any, also surfaces through `send_request`.
        let _ = conn.await;
    }));
    let response = sender.send_request(request).await.map_err(protocol)?;
    let status = response.status().as_u16();
    if expected.contains(&status) {
        return Ok(status);
    }
    let mut body = response.into_body();
    let mut prefix: Vec<u8> = Vec::with_capacity(BODY_PREFIX_LIMIT);
    while prefix.len() < BODY_PREFIX_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = BODY_PREFIX_LIMIT.saturating_sub(prefix.len());
                    prefix.extend(data.iter().take(room));
                }
            }
            // A broken or finished body still leaves a useful status.
            Some(Err(_)) | None => break,
        }
    }
    let text = sanitize(&String::from_utf8_lossy(&prefix));
    let detail = if text.is_empty() {
        format!("status {status}")
    } else {
        format!("status {status}: {text}")
    };
    Err((FailureKind::Status(status), detail))
}

fn protocol(e: hyper::Error) -> Failure {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    (FailureKind::Protocol, detail)
}

/// Replaces control characters so an upstream cannot forge log lines.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        text.truncate(end);
    }
    text
}

// === impl ProbeResult ===

impl ProbeResult {
    /// Whether the probe passed.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok { .. })
    }

    /// How long the probe took.
    pub fn duration(&self) -> Duration {
        match self {
            Self::Ok { duration, .. } | Self::Failed { duration, .. } => *duration,
        }
    }

    /// The metric label: `ok` or the failure kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ok { .. } => "ok",
            Self::Failed { kind, .. } => kind.as_str(),
        }
    }
}

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok { status, .. } => write!(f, "status {status}"),
            Self::Failed { kind, detail, .. } => write!(f, "{}: {detail}", kind.as_str()),
        }
    }
}

// === impl FailureKind ===

impl FailureKind {
    /// A fixed snake_case name (the `result` metric label).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::Timeout => "timeout",
            Self::Status(_) => "status",
            Self::Protocol => "protocol",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(code) => write!(f, "status {code}"),
            other => f.write_str(other.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        let s = "é".repeat(200);
        let t = truncate(s, 5);
        assert_eq!(t, "éé");
        assert_eq!(truncate("short".into(), 10), "short");
    }

    #[test]
    fn sanitize_strips_control_characters() {
        assert_eq!(sanitize("boom\r\nfake line\t"), "boom  fake line");
    }

    #[test]
    fn request_has_probe_headers_and_overrides() {
        let mut cfg = HealthCheckConfig::default();
        cfg.headers
            .insert("X-Forwarded-Proto".into(), "https".into());
        let req = build_request("app.internal:8080", &cfg).unwrap();
        assert_eq!(req.uri(), "/healthz");
        assert_eq!(req.headers()["host"], "app.internal:8080");
        assert_eq!(req.headers()["user-agent"], USER_AGENT_VALUE);
        assert_eq!(req.headers()["connection"], "close");
        assert_eq!(req.headers()["x-forwarded-proto"], "https");
        assert!(USER_AGENT_VALUE.starts_with("portcullis-health/0."));
    }

    #[test]
    fn invalid_host_is_a_failure_not_a_panic() {
        let err = build_request("bad\nhost", &HealthCheckConfig::default()).unwrap_err();
        assert_eq!(err.0, FailureKind::Other);
    }
}
