use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{EXPECT, HOST, HeaderValue, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use portcullis_core::{
    Cause, ConnectionSlot, ErrorContext, ErrorResponse, SelectedEndpoint, UpstreamDuration,
};
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service;

use crate::balance::{Balance, Outcome, Picked};
use crate::body::ProxyBody;
use crate::connector::CappedConnector;
use crate::error::{BoxError, ConfigError, UpstreamTimedOut, classify};
use crate::retry::{Conditions, Failure, RetryBudget, RetryPolicy};
use crate::{ProxyConfig, tunnel};

type ClientBody = UnsyncBoxBody<Bytes, BoxError>;

/// The pooled upstream client shared by every [`Proxy`] of a gateway.
///
/// Cloning is cheap; clones share the pool and the per-upstream connection caps.
#[derive(Clone, Debug)]
pub struct ProxyClient {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    client: Client<CappedConnector, ClientBody>,
    config: ProxyConfig,
    /// The in-flight cap's semaphores, when [`ProxyConfig::max_requests_per_upstream`] is set.
    in_flight: Option<crate::caps::PerUpstream>,
}

impl ClientInner {
    /// A slot of `upstream`'s in-flight cap: `Ok(None)` without a cap, `Err` when
    /// it is full.
    fn in_flight(
        &self,
        upstream: &Upstream,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ()> {
        match &self.in_flight {
            None => Ok(None),
            Some(caps) => caps
                .get(upstream.authority.as_str())
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| ()),
        }
    }
}

/// An upstream to forward to: `http://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    id: Arc<str>,
}

/// The reverse-proxy [`Service`]: forwards each request to one of its upstreams
/// (round robin) and streams the response back.
///
/// See the [crate docs](crate) for what it guarantees.
#[derive(Clone, Debug)]
pub struct Proxy {
    client: ProxyClient,
    upstreams: Arc<[Upstream]>,
    balance: Arc<dyn Balance>,
    budget: RetryBudget,
    timeouts: Timeouts,
    retry: Conditions,
}

/// The balancer of [`Proxy::new`]: each upstream in turn.
#[derive(Debug)]
struct RoundRobin {
    upstreams: Arc<[Upstream]>,
    next: AtomicUsize,
}

impl Balance for RoundRobin {
    fn pick(&self) -> Option<Picked> {
        let n = self.upstreams.len();
        if n == 0 {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
        self.upstreams.get(i).cloned().map(Picked::new)
    }

    fn may_pick_another(&self) -> bool {
        self.upstreams.len() > 1
    }
}

/// Per-proxy overrides of the client's timeouts (a route's own timeouts).
#[derive(Clone, Copy, Debug, Default)]
struct Timeouts {
    connect: Option<Duration>,
    response_header: Option<Duration>,
    request: Option<Duration>,
}

/// The future of [`Proxy::call`]. Dropping it cancels the upstream request: the
/// upstream connection is closed, not returned to the pool.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>,
}

// === impl ProxyClient ===

impl ProxyClient {
    /// A client with these settings. Fails when the settings are invalid.
    pub fn new(config: ProxyConfig) -> Result<Self, Vec<ConfigError>> {
        config.validate()?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        // A route may set its own (see `CONNECT_TIMEOUT`).
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_keepalive(Some(std::time::Duration::from_secs(60)));
        http.enforce_http(true);
        let connector = CappedConnector::new(
            http,
            config.max_connections_per_upstream,
            config.connection_wait_timeout,
        );
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_upstream)
            .http1_max_buf_size(config.max_response_header_bytes)
            // The client's Host (or ours, per config) is set explicitly in `call`.
            .set_host(false)
            .build(connector);
        let in_flight = (config.max_requests_per_upstream > 0)
            .then(|| crate::caps::PerUpstream::new(config.max_requests_per_upstream));
        Ok(Self {
            inner: Arc::new(ClientInner {
                client,
                config,
                in_flight,
            }),
        })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ProxyConfig {
        &self.inner.config
    }
}

// === impl Upstream ===

impl Upstream {
    /// Parses `http://host[:port]` (a trailing `/` is allowed; no path, query or
    /// user info).
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let bad = |reason| ConfigError::BadUpstream {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| bad("missing scheme"))?;
        if scheme != Scheme::HTTP {
            return Err(bad("only http:// upstreams are supported"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("missing host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user info is not allowed"));
        }
        if authority.host().is_empty() {
            return Err(bad("missing host"));
        }
        if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
            return Err(bad("a path or query is not allowed"));
        }
        let id = Arc::from(authority.as_str());
        Ok(Self {
            scheme,
            authority,
            id,
        })
    }

    /// The upstream's authority (`host:port`), used as its id in logs.
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }
}

// === impl Proxy ===

impl Proxy {
    /// A proxy to these upstreams, balanced round robin.
    ///
    /// Retries as for [`Proxy::balanced`].
    pub fn new(client: ProxyClient, upstreams: Vec<Upstream>) -> Self {
        let upstreams: Arc<[Upstream]> = upstreams.into();
        let balance = Arc::new(RoundRobin {
            upstreams: upstreams.clone(),
            next: AtomicUsize::new(0),
        });
        let mut proxy = Self::balanced(client, balance);
        proxy.upstreams = upstreams;
        proxy
    }

    /// A proxy whose upstream `balance` picks for each request, and hears how each
    /// exchange ended.
    ///
    /// A request without a body whose upstream cannot be connected to is sent to
    /// another pick, at most `retries` times and within the retry budget
    /// (`retry_budget_percent` of requests), see [`ProxyConfig`]; more failures are
    /// retried as a [`RetryPolicy`] set with [`Proxy::retry`] allows.
    pub fn balanced(client: ProxyClient, balance: Arc<dyn Balance>) -> Self {
        let budget = RetryBudget::new(client.inner.config.retry_budget_percent);
        Self {
            budget,
            client,
            upstreams: Arc::from(Vec::new()),
            balance,
            timeouts: Timeouts::default(),
            retry: Conditions::default(),
        }
    }

    /// Shares `budget` with other proxies (those of one service across rebuilds).
    #[must_use]
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Retries the failures `policy` lists, where that is safe (see
    /// [`RetryPolicy`]). Clones share the balancer and the retry budget.
    #[must_use]
    pub fn retry(mut self, policy: &RetryPolicy) -> Self {
        self.retry = Conditions::new(policy);
        self
    }

    /// Overrides the client's `response_header_timeout` for requests through this
    /// proxy (a route's own timeout). Clones share the round-robin position.
    #[must_use]
    pub fn response_header_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.response_header = Some(timeout);
        self
    }

    /// Overrides the client's `connect_timeout` for connections opened for
    /// requests through this proxy (pooled connections are reused whatever
    /// timeout opened them).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.connect = Some(timeout);
        self
    }

    /// Overrides the client's `request_timeout` (zero turns it off) for requests
    /// through this proxy.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.request = Some(timeout);
        self
    }

    /// The upstreams.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    fn pick(&self) -> Option<Picked> {
        self.budget.deposit();
        self.balance.pick()
    }
}

impl<B> Service<Request<B>> for Proxy
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        let upstream = self.pick();
        let client = self.client.clone();
        let retry = Retry {
            balance: self.balance.clone(),
            budget: self.budget.clone(),
            conditions: self.retry,
        };
        ResponseFuture {
            inner: Box::pin(forward(client, upstream, retry, self.timeouts, req)),
        }
    }
}

async fn forward<B>(
    client: ProxyClient,
    picked: Option<Picked>,
    retry: Retry,
    timeouts: Timeouts,
    mut req: Request<B>,
) -> Result<Response<ProxyBody>, Infallible>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let Some(mut picked) = picked else {
        return Ok(error(
            ErrorResponse::for_request(Cause::NoHealthyEndpoint, &req).retry_after(1),
            None,
        ));
    };
    // A reverse proxy does not open tunnels to arbitrary hosts.
    if req.method() == http::Method::CONNECT {
        return Ok(error(
            ErrorResponse::for_request(Cause::MethodNotAllowed, &req),
            None,
        ));
    }
    let upstream = picked.upstream.clone();
    let config = &client.inner.config;
    let start = Instant::now();
    let err_ctx = ErrorContext::of(&req);
    let endpoint = SelectedEndpoint {
        id: upstream.id.clone(),
    };

    // Hop-by-hop removal upstream of us leaves `Upgrade` only on real upgrades.
    let client_upgrade = if req.headers().contains_key(UPGRADE) && req.version() == Version::HTTP_11
    {
        Some(hyper::upgrade::on(&mut req))
    } else {
        None
    };

    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    // Host: the upstream's when configured; else the request target's authority
    // when it has one (absolute-form, or HTTP/2's :authority), which RFC 9112
    // §3.2.2 says replaces any Host sent beside it; else the client's Host; and
    // a request that lost its Host (a client may name it in `Connection`) gets
    // the upstream's.
    let host = if config.set_upstream_host {
        Some(upstream.authority.as_str())
    } else if let Some(authority) = parts.uri.authority() {
        authority.as_str().rsplit('@').next()
    } else if parts.headers.contains_key(HOST) {
        None
    } else {
        Some(upstream.authority.as_str())
    };
    if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        parts.headers.insert(HOST, v);
    }
    let uri = Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(pq);
    parts.uri = match uri.build() {
        Ok(u) => u,
        Err(_) => {
            return Ok(error(
                err_ctx_with(&err_ctx, Cause::BadRequest),
                Some(endpoint),
            ));
        }
    };
    parts.version = Version::HTTP_11;
    // The gateway answers `Expect: 100-continue` itself (hyper does when the body
    // is first polled); the upstream gets the body without waiting.
    parts.headers.remove(EXPECT);
    // An upgraded connection keeps its listener slot for the tunnel's life.
    let slot = client_upgrade
        .as_ref()
        .and_then(|_| parts.extensions.remove::<ConnectionSlot>());
    parts.extensions = http::Extensions::new();
    // A request with no body can be sent again to another endpoint when the first
    // could not be connected to (it was provably never written), and, when the
    // route's policy says so and its method is idempotent, after a failure the
    // policy lists (R13). A request with a body is never sent twice.
    let replayable = client_upgrade.is_none() && body.is_end_stream();
    let max_retries = retry.conditions.attempts.unwrap_or(config.retries);
    let idempotent = crate::retry::idempotent(&parts.method);
    // The copy a retry needs is kept only when one may happen: another upstream
    // to try after a connect failure, or a policy that retries a sent request.
    let may_retry = replayable
        && max_retries > 0
        && (retry.balance.may_pick_another() || idempotent && retry.conditions.after_sent());
    let again = may_retry.then(|| parts.clone());
    let body = body.map_err(Into::into).boxed_unsync();
    let mut upstream_req = Request::from_parts(parts, body);
    let mut upstream = upstream;
    let mut endpoint = endpoint;
    let mut attempts = 0u32;

    let Ok(mut in_flight) = client.inner.in_flight(&upstream) else {
        return Ok(error(
            err_ctx_with(&err_ctx, Cause::UpstreamOverloaded),
            Some(endpoint),
        ));
    };
    let request_timeout = timeouts.request.unwrap_or(config.request_timeout);
    let overall = (!request_timeout.is_zero()).then(|| start + request_timeout);
    let header_timeout = timeouts
        .response_header
        .unwrap_or(config.response_header_timeout);
    let mut header_deadline = {
        let d = start + header_timeout;
        overall.map_or(d, |o| o.min(d))
    };
    let res = loop {
        let request = client.inner.client.request(upstream_req);
        let sent = match timeouts.connect {
            None => tokio::time::timeout_at(header_deadline, request).await,
            Some(d) => {
                tokio::time::timeout_at(
                    header_deadline,
                    crate::connector::CONNECT_TIMEOUT.scope(d, request),
                )
                .await
            }
        };
        let Some(parts) = &again else {
            break sent;
        };
        let failure = match &sent {
            Ok(Ok(res)) if retry.conditions.retries_status(res.status()) => {
                Failure::Status(res.status())
            }
            Ok(Ok(_)) => break sent,
            Ok(Err(e)) if classify(e) == Cause::UpstreamOverloaded => Failure::Overloaded,
            Ok(Err(e)) if e.is_connect() => Failure::Connect,
            Ok(Err(e)) if classify(e) == Cause::UpstreamUnreachable => Failure::Reset,
            Ok(Err(_)) => break sent,
            Err(_) => Failure::Timeout,
        };
        if !retry.conditions.allows(failure, idempotent) || attempts >= max_retries {
            break sent;
        }
        // A try needs time left: each its own response-header timeout when the
        // policy retries timeouts, else what is left of the first one's.
        let now = Instant::now();
        let next_deadline = if retry.conditions.per_try_timeout() {
            let d = now + header_timeout;
            overall.map_or(d, |o| o.min(d))
        } else {
            header_deadline
        };
        if next_deadline <= now {
            break sent;
        }
        let reason = failure.reason();
        // The failure is reported first, so that the balancer's next pick
        // already counts it (a penalty, a passive-health failure).
        picked.report(match failure {
            Failure::Connect => Outcome::ConnectError,
            Failure::Overloaded => Outcome::Overloaded,
            Failure::Timeout => Outcome::Timeout,
            Failure::Status(_) | Failure::Reset => Outcome::ServerError,
        });
        // An endpoint that refused the connection is not tried again at once:
        // with nothing else to pick, the failure stands.
        let next = pick_other(&*retry.balance, &upstream).filter(|n| {
            !matches!(failure, Failure::Connect | Failure::Overloaded) || n.upstream != upstream
        });
        let Some(next) = next else {
            metrics::counter!(UPSTREAM_RETRIES_TOTAL, "outcome" => "no_endpoint", "reason" => reason).increment(1);
            break sent;
        };
        // The next endpoint's in-flight cap counts the retry too (the same
        // upstream keeps the slot this request holds).
        let next_in_flight = if next.upstream.authority == upstream.authority {
            None
        } else {
            match client.inner.in_flight(&next.upstream) {
                Ok(p) => Some(p),
                Err(()) => {
                    metrics::counter!(UPSTREAM_RETRIES_TOTAL, "outcome" => "overloaded", "reason" => reason).increment(1);
                    break sent;
                }
            }
        };
        // A connection that could not be made did no work on the upstream: its
        // retry adds no load there, so it is bounded by the attempts only (as
        // nginx's `proxy_next_upstream error`). Every other retry spends budget.
        if failure != Failure::Connect && !retry.budget.withdraw() {
            metrics::counter!(UPSTREAM_RETRIES_TOTAL, "outcome" => "budget_exhausted", "reason" => reason).increment(1);
            break sent;
        }
        metrics::counter!(UPSTREAM_RETRIES_TOTAL, "outcome" => "retried", "reason" => reason)
            .increment(1);
        match &sent {
            Ok(Ok(res)) => {
                tracing::debug!(status = res.status().as_u16(), endpoint = %upstream.id, next = %next.upstream.id, "retrying on another endpoint")
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %DisplayChain(e), endpoint = %upstream.id, next = %next.upstream.id, "retrying on another endpoint")
            }
            Err(_) => {
                tracing::debug!(error = "response headers timed out", endpoint = %upstream.id, next = %next.upstream.id, "retrying on another endpoint")
            }
        }
        // The failed try's response (if any) is dropped here, unread: nothing of
        // it reached the client, and its connection is closed, not pooled.
        drop(sent);
        if let Some(p) = next_in_flight {
            in_flight = p;
        }
        attempts += 1;
        header_deadline = next_deadline;
        picked = next;
        upstream = picked.upstream.clone();
        endpoint = SelectedEndpoint {
            id: upstream.id.clone(),
        };
        let mut p = parts.clone();
        let Some(uri) = retarget(&p.uri, &upstream) else {
            return Ok(error(
                err_ctx_with(&err_ctx, Cause::BadRequest),
                Some(endpoint),
            ));
        };
        p.uri = uri;
        if config.set_upstream_host {
            if let Ok(v) = HeaderValue::from_str(upstream.authority.as_str()) {
                p.headers.insert(HOST, v);
            }
        }
        upstream_req = Request::from_parts(p, empty_body());
    };
    let res = match res {
        Ok(Ok(res)) => {
            picked.report(if res.status().is_server_error() {
                Outcome::ServerError
            } else {
                Outcome::Success
            });
            res
        }
        Ok(Err(e)) => {
            let cause = classify(&e);
            picked.report(match cause {
                Cause::UpstreamUnreachable => Outcome::ConnectError,
                Cause::UpstreamOverloaded => Outcome::Overloaded,
                Cause::UpstreamTimeout => Outcome::Timeout,
                _ => Outcome::ServerError,
            });
            tracing::debug!(error = %DisplayChain(&e), cause = cause.as_str(), endpoint = %upstream.id, "upstream request failed");
            return Ok(unread_body_closes(
                timed(error(err_ctx_with(&err_ctx, cause), Some(endpoint)), start),
                replayable,
            ));
        }
        Err(_) => {
            picked.report(Outcome::Timeout);
            let e = UpstreamTimedOut::new("response headers");
            tracing::debug!(error = %e, endpoint = %upstream.id, "upstream request failed");
            return Ok(unread_body_closes(
                timed(
                    error(
                        err_ctx_with(&err_ctx, Cause::UpstreamTimeout),
                        Some(endpoint),
                    ),
                    start,
                ),
                replayable,
            ));
        }
    };

    let (mut parts, body) = res.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let mut tmp = Response::from_parts(parts, ());
            let upstream_upgrade = hyper::upgrade::on(&mut tmp);
            let (p, ()) = tmp.into_parts();
            parts = p;
            tokio::spawn(tunnel::run(
                client_upgrade,
                upstream_upgrade,
                config.tunnel_idle_timeout,
                slot,
            ));
        } else {
            // A 101 to a request that did not ask for it cannot be relayed.
            tracing::debug!(endpoint = %upstream.id, "upstream switched protocols unasked");
            return Ok(error(
                err_ctx_with(&err_ctx, Cause::UpstreamInvalidResponse),
                Some(endpoint),
            ));
        }
    }
    let deadline = overall.map(|o| Box::pin(tokio::time::sleep_until(o)));
    // The gateway speaks its own protocol version to the client, whatever the
    // upstream's (an HTTP/1.0 origin must not turn keep-alive off for the client).
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    parts.extensions.insert(endpoint);
    parts.extensions.insert(UpstreamDuration(start.elapsed()));
    Ok(Response::from_parts(
        parts,
        ProxyBody::upstream(body, deadline, config.body_idle_timeout, in_flight),
    ))
}

fn err_ctx_with(ctx: &ErrorContext, cause: Cause) -> ErrorResponse {
    let e = ctx.error(cause);
    if cause == Cause::UpstreamOverloaded {
        e.retry_after(1)
    } else {
        e
    }
}

/// What a request needs to be retried.
struct Retry {
    balance: Arc<dyn Balance>,
    budget: RetryBudget,
    conditions: Conditions,
}

/// The next pick, preferring an upstream other than `failed` (one more pick is
/// tried when the first is the same; with one upstream, it is retried).
fn pick_other(balance: &dyn Balance, failed: &Upstream) -> Option<Picked> {
    let first = balance.pick()?;
    if first.upstream != *failed {
        return Some(first);
    }
    match balance.pick() {
        Some(second) if second.upstream != *failed => Some(second),
        _ => Some(first),
    }
}

/// The same path and query on another upstream.
fn retarget(uri: &Uri, upstream: &Upstream) -> Option<Uri> {
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(pq)
        .build()
        .ok()
}

/// Counter of retries, by `outcome` — `retried`, `budget_exhausted` (the retry
/// budget said no), `no_endpoint` (nothing else to pick) — and `reason`:
/// `connect_failure`, `status`, `timeout`, `reset`.
pub const UPSTREAM_RETRIES_TOTAL: &str = "portcullis_upstream_retries_total";

fn empty_body() -> ClientBody {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A failed exchange whose request body may not have been read to its end
/// leaves the client connection unusable (the server will not drain it): mark
/// the response [`CloseConnection`](portcullis_core::CloseConnection) so the
/// listener says `Connection: close`, rather than close it under the client's
/// next request.
fn unread_body_closes(mut res: Response<ProxyBody>, bodyless: bool) -> Response<ProxyBody> {
    if !bodyless {
        res.extensions_mut()
            .insert(portcullis_core::CloseConnection);
    }
    res
}

/// Records how long the upstream took before failing.
fn timed(mut res: Response<ProxyBody>, start: Instant) -> Response<ProxyBody> {
    res.extensions_mut()
        .insert(UpstreamDuration(start.elapsed()));
    res
}

fn error(e: ErrorResponse, endpoint: Option<SelectedEndpoint>) -> Response<ProxyBody> {
    let e = match &endpoint {
        Some(ep) => e.endpoint(&*ep.id),
        None => e,
    };
    let res = e.build();
    let (mut parts, body) = res.into_parts();
    if let Some(ep) = endpoint {
        parts.extensions.insert(ep);
    }
    Response::from_parts(parts, ProxyBody::error(body))
}

/// Displays an error with its sources: `a: b: c`.
struct DisplayChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}

// === impl ResponseFuture ===

impl Future for ResponseFuture {
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn parse_accepts_http_authorities() {
        let cases = [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://example.com", "example.com"),
            ("http://[::1]:80/", "[::1]:80"),
        ];
        for (url, authority) in cases {
            let up = Upstream::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(up.authority(), authority, "{url}");
            assert_eq!(up.scheme, Scheme::HTTP, "{url}");
            assert_eq!(&*up.id, authority, "{url}");
        }
    }

    #[test]
    fn parse_refuses_anything_else() {
        let cases = [
            ("https://x", "only http:// upstreams are supported"),
            ("ftp://x", "only http:// upstreams are supported"),
            ("http://u:p@x", "user info is not allowed"),
            ("http://x/path", "a path or query is not allowed"),
            ("http://x?q", "a path or query is not allowed"),
            ("not a url", "not a URL"),
        ];
        for (url, want) in cases {
            match Upstream::parse(url) {
                Ok(up) => panic!("{url} was accepted as {up:?}"),
                Err(ConfigError::BadUpstream { url: got, reason }) => {
                    assert_eq!(got, url);
                    assert_eq!(reason, want, "{url}");
                }
                Err(other) => panic!("{url}: unexpected error {other:?}"),
            }
        }
    }

    #[test]
    fn validate_reports_all_zero_durations_at_once() {
        let config = ProxyConfig {
            connect_timeout: Duration::ZERO,
            response_header_timeout: Duration::ZERO,
            pool_idle_timeout: Duration::ZERO,
            connection_wait_timeout: Duration::ZERO,
            tunnel_idle_timeout: Duration::ZERO,
            // Zero means "disabled" here, not a mistake.
            request_timeout: Duration::ZERO,
            ..ProxyConfig::default()
        };
        let keys = |errs: Vec<ConfigError>| {
            errs.into_iter()
                .map(|e| match e {
                    ConfigError::ZeroDuration { key } => key,
                    other => panic!("unexpected error {other:?}"),
                })
                .collect::<Vec<_>>()
        };
        let want = [
            "connect_timeout",
            "response_header_timeout",
            "pool_idle_timeout",
            "connection_wait_timeout",
            "tunnel_idle_timeout",
        ];
        let errs = config
            .validate()
            .expect_err("zero durations must be refused");
        assert_eq!(keys(errs), want);
        // The client refuses the same settings with the same list.
        let errs = ProxyClient::new(config).expect_err("client must validate its config");
        assert_eq!(keys(errs), want);
    }

    #[test]
    fn validate_reports_every_kind_of_mistake() {
        let config = ProxyConfig {
            connect_timeout: Duration::ZERO,
            max_connections_per_upstream: 0,
            max_response_header_bytes: 100,
            ..ProxyConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err(vec![
                ConfigError::ZeroDuration {
                    key: "connect_timeout"
                },
                ConfigError::Zero {
                    key: "max_connections_per_upstream"
                },
                ConfigError::TooSmall {
                    key: "max_response_header_bytes",
                    value: 100,
                    min: 8192
                },
            ])
        );
        assert_eq!(ProxyConfig::default().validate(), Ok(()));
    }

    #[tokio::test]
    async fn no_upstream_is_503_no_healthy_endpoint() {
        use tower::ServiceExt;

        let client = ProxyClient::new(ProxyConfig::default()).expect("default config is valid");
        let proxy = Proxy::new(client, Vec::new());
        let req = Request::get("/")
            .header("x-request-id", "req-1")
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("static request");
        let res = proxy.oneshot(req).await.expect("infallible");
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["portcullis-error"], "no_healthy_endpoint");
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.headers()["x-request-id"], "req-1");
        assert_eq!(
            res.extensions().get::<Cause>(),
            Some(&Cause::NoHealthyEndpoint)
        );
        assert!(res.extensions().get::<SelectedEndpoint>().is_none());
    }

    #[test]
    fn round_robin_visits_every_upstream() {
        let client = ProxyClient::new(ProxyConfig::default()).expect("default config is valid");
        let ups = [
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "http://127.0.0.1:3",
        ]
        .into_iter()
        .map(|u| Upstream::parse(u).expect("valid upstream"))
        .collect::<Vec<_>>();
        let proxy = Proxy::new(client, ups);
        let picked = (0..6)
            .map(|_| {
                proxy
                    .pick()
                    .expect("has upstreams")
                    .upstream
                    .authority()
                    .to_owned()
            })
            .collect::<Vec<_>>();
        assert_eq!(
            picked,
            [
                "127.0.0.1:1",
                "127.0.0.1:2",
                "127.0.0.1:3",
                "127.0.0.1:1",
                "127.0.0.1:2",
                "127.0.0.1:3"
            ]
        );
    }
}
