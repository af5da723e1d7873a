//! What a request's access line is made of, captured lazily, and the event itself.

use std::fmt::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{HeaderName, USER_AGENT};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use portcullis_core::{
    Cause, MatchedRoute, PeerAddr, SelectedEndpoint, ServiceName, UpstreamDuration,
};
use tokio::time::Instant;

use crate::display::{
    Budget, DisplayText, REDACTED, RedactedPath, Text, write_escaped, write_json_escaped,
};
use crate::layer::Settings;

/// The target of access lines.
pub(crate) const TARGET: &str = "portcullis::access";

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest `path` logged, in bytes of the request target.
pub(crate) const MAX_PATH: usize = 2048;
/// Longest `user_agent` logged, in bytes.
pub(crate) const MAX_USER_AGENT: usize = 256;
/// Longest `request_id` logged, in bytes (as `portcullis-core` echoes).
const MAX_REQUEST_ID: usize = 200;
/// Longest `method` logged, in bytes.
const MAX_METHOD: usize = 64;
/// Longest value of one logged header (all its values joined), in bytes.
pub(crate) const MAX_HEADER_VALUE: usize = 256;
/// Most values of one logged header.
pub(crate) const MAX_HEADER_VALUES: usize = 8;
/// Longest `error` logged, in bytes.
const MAX_ERROR: usize = 512;

/// What the access line needs from the request, captured before it is handed on.
///
/// Shared with [`RequestBody`](crate::RequestBody), which adds to `bytes_in`.
pub(crate) struct RequestInfo {
    settings: Arc<Settings>,
    start: Instant,
    bytes_in: AtomicU64,
    method: Method,
    uri: Uri,
    version: Version,
    peer: Option<SocketAddr>,
    request_id: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    /// Values of the logged headers: index into `settings.logged`, and the value,
    /// or `None` when it is redacted (the value is never even copied).
    headers: Vec<(usize, Option<HeaderValue>)>,
}

/// What the access line needs from the response head.
pub(crate) struct ResponseInfo {
    status: StatusCode,
    /// Whether no body is sent for this response (HEAD, 1xx, 204, 304): a body that
    /// was never read to its end is then no abort.
    bodiless: bool,
    route: Option<MatchedRoute>,
    service: Option<ServiceName>,
    endpoint: Option<SelectedEndpoint>,
    cause: Option<Cause>,
    upstream: Option<Duration>,
}

/// How a request ended.
pub(crate) enum Outcome<'a> {
    /// The response body was sent to its end.
    Complete,
    /// The response body was dropped before its end.
    Aborted,
    /// The response body failed.
    BodyError(&'a dyn fmt::Display),
    /// The inner service returned an error instead of a response.
    ServiceError(&'a dyn fmt::Display),
    /// The response future was dropped before the response head.
    Cancelled,
}

// === impl RequestInfo ===

impl RequestInfo {
    pub(crate) fn capture<B>(settings: &Arc<Settings>, req: &Request<B>) -> Self {
        let h = req.headers();
        let mut headers = Vec::new();
        for (i, (name, redacted)) in settings.logged.iter().enumerate() {
            if *redacted {
                if h.contains_key(name) {
                    headers.push((i, None));
                }
            } else {
                for v in h.get_all(name).iter().take(MAX_HEADER_VALUES) {
                    headers.push((i, Some(v.clone())));
                }
            }
        }
        Self {
            settings: settings.clone(),
            start: Instant::now(),
            bytes_in: AtomicU64::new(0),
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            peer: req.extensions().get::<PeerAddr>().map(|p| p.0),
            request_id: h.get(X_REQUEST_ID).cloned(),
            user_agent: h.get(USER_AGENT).cloned(),
            headers,
        }
    }

    pub(crate) fn add_bytes_in(&self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        // A counter only: no other memory depends on it.
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }
}

impl fmt::Debug for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Logged header values stay out of `Debug`.
        f.debug_struct("RequestInfo")
            .field("method", &self.method)
            .field("start", &self.start)
            .field("bytes_in", &self.bytes_in)
            .finish_non_exhaustive()
    }
}

// === impl ResponseInfo ===

impl ResponseInfo {
    pub(crate) fn capture<B>(req: &RequestInfo, res: &Response<B>) -> Self {
        let status = res.status();
        let ext = res.extensions();
        Self {
            status,
            bodiless: req.method == Method::HEAD
                || status.is_informational()
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED,
            route: ext.get::<MatchedRoute>().cloned(),
            service: ext.get::<ServiceName>().cloned(),
            endpoint: ext.get::<SelectedEndpoint>().cloned(),
            cause: ext.get::<Cause>().copied(),
            upstream: ext.get::<UpstreamDuration>().map(|d| d.0),
        }
    }

    pub(crate) fn bodiless(&self) -> bool {
        self.bodiless
    }
}

impl fmt::Debug for ResponseInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseInfo")
            .field("status", &self.status)
            .field("cause", &self.cause)
            .finish_non_exhaustive()
    }
}

/// Who is at fault for a response the gateway made itself.
fn fault(cause: Cause) -> &'static str {
    if cause.is_upstream() {
        "upstream"
    } else if cause.status().is_client_error() {
        "client"
    } else {
        "gateway"
    }
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "",
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Writes the access line.
pub(crate) fn emit(
    req: &RequestInfo,
    res: Option<&ResponseInfo>,
    bytes_out: u64,
    outcome: Outcome<'_>,
) {
    let duration_ms = millis(req.start.elapsed());
    let cause = res.and_then(|r| r.cause);
    let fault = match (cause, &outcome) {
        (Some(c), _) => fault(c),
        (None, Outcome::ServiceError(_)) => "gateway",
        (None, _) => "",
    };
    let (aborted, error) = match outcome {
        Outcome::Complete => (None, None),
        Outcome::Aborted | Outcome::Cancelled => (Some(true), None),
        Outcome::BodyError(e) => (Some(true), Some(e)),
        Outcome::ServiceError(e) => (None, Some(e)),
    };
    let route = res.and_then(|r| r.route.as_ref());
    let target = match req.uri.path_and_query() {
        Some(pq) => pq.as_str().as_bytes(),
        // Authority-form (CONNECT): there is no path.
        None => req
            .uri
            .authority()
            .map_or(&b""[..], |a| a.as_str().as_bytes()),
    };
    let user_agent = req.user_agent.as_ref().map(|ua| {
        if req.settings.redact_user_agent {
            Text::new(REDACTED.as_bytes(), MAX_USER_AGENT)
        } else {
            Text::new(ua.as_bytes(), MAX_USER_AGENT)
        }
    });
    tracing::info!(
        target: TARGET,
        request_id = %Text::new(req.request_id.as_ref().map_or(&b""[..], HeaderValue::as_bytes), MAX_REQUEST_ID),
        peer_addr = %Peer(req.peer),
        method = %Text::new(req.method.as_str().as_bytes(), MAX_METHOD),
        path = %RedactedPath::new(target, &req.settings.redact_query, MAX_PATH),
        route = route.map_or("unmatched", |r| &*r.template),
        route_name = route.map_or("", |r| &*r.name),
        service = res.and_then(|r| r.service.as_ref()).map_or("", |s| &*s.0),
        endpoint = res.and_then(|r| r.endpoint.as_ref()).map_or("", |e| &*e.id),
        status = res.map_or(0, |r| r.status.as_u16()),
        cause = cause.map_or("", Cause::as_str),
        fault,
        bytes_in = req.bytes_in.load(Ordering::Relaxed),
        bytes_out,
        duration_ms,
        upstream_ms = res.and_then(|r| r.upstream).map(millis),
        user_agent = %user_agent.unwrap_or(Text::new(b"", 0)),
        http_version = version(req.version),
        headers = (!req.settings.logged.is_empty()).then(|| tracing::field::display(Headers(req))),
        aborted,
        error = error.map(|e| tracing::field::display(DisplayText::new(e, MAX_ERROR))),
        "request"
    );
}

/// `peer_addr`: the address, or nothing.
struct Peer(Option<SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => fmt::Display::fmt(&addr, f),
            None => Ok(()),
        }
    }
}

/// `headers`: a JSON object of the logged request headers, in configured order.
/// Repeated headers are joined with `, `; absent ones are left out.
struct Headers<'a>(&'a RequestInfo);

impl fmt::Display for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let logged = &self.0.settings.logged;
        f.write_char('{')?;
        let mut values = self.0.headers.iter().peekable();
        let mut first = true;
        while let Some((i, value)) = values.next() {
            if !first {
                f.write_char(',')?;
            }
            first = false;
            let name = logged.get(*i).map_or("", |(n, _)| n.as_str());
            write!(f, "\"{name}\":\"")?;
            let mut budget = Budget::new(MAX_HEADER_VALUE);
            match value {
                None => f.write_str(REDACTED)?,
                Some(v) => budget.write_with(f, v.as_bytes(), write_json_escaped)?,
            }
            while let Some((_, value)) = values.next_if(|(j, _)| j == i) {
                budget.write_with(f, b", ", write_escaped)?;
                let bytes = value
                    .as_ref()
                    .map_or(REDACTED.as_bytes(), HeaderValue::as_bytes);
                budget.write_with(f, bytes, write_json_escaped)?;
            }
            budget.finish(f)?;
            f.write_char('"')?;
        }
        f.write_char('}')
    }
}
