//! The TOML configuration file, its defaults and its validation (`portcullis check`).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use portcullis_accesslog::AccessLogConfig;
use portcullis_auth::AuthConfig;
use portcullis_headers::HeaderRulesConfig;
use portcullis_proxy::{ProxyConfig, Upstream, duration_str};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The whole configuration file.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listener, limits and timeouts.
    pub server: ServerConfig,
    /// The upstream client.
    pub proxy: ProxyConfig,
    /// Static services and their endpoints.
    pub services: Vec<ServiceConfig>,
    /// Routes from requests to services.
    pub routes: Vec<RouteConfig>,
    /// Named authentication policies, referred to by routes' `auth` filters.
    pub auth: BTreeMap<String, Spanned<AuthConfig>>,
    /// The access log.
    pub access_log: AccessLogConfig,
    /// Prometheus metrics on the admin listener.
    pub metrics: MetricsConfig,
    /// Services registered through the admin API.
    pub registry: RegistryConfig,
    /// Named filter chains that registered services refer to by name
    /// (`"filters": "<name>"` in their registration).
    pub filter_sets: BTreeMap<String, Vec<Spanned<FilterConfig>>>,
    /// `[rate_limit]`: what every rate limit shares (key cap, sweep, store).
    pub rate_limit: RateLimitSettings,
    /// `[[rate_limits]]`: named limits that routes' `rate_limit` filters use.
    /// A limit used by several routes counts their requests together.
    pub rate_limits: Vec<Spanned<portcullis_ratelimit::LimitConfig>>,
}

/// `[rate_limit]`: settings shared by every `[[rate_limits]]` limit.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Most keys tracked in memory per limit; new keys past it share one
    /// overflow key. Default: 100000.
    pub max_keys: usize,
    /// How often idle keys are swept from memory. Default: 60s.
    #[serde(with = "duration_str")]
    pub sweep_interval: Duration,
    /// Where the limits' state lives: `{ kind = "local" }` (default) or
    /// `{ kind = "redis", url = "redis://…", on_failure = "fail_open", … }` for
    /// limits shared by a fleet of gateways.
    pub store: Option<Spanned<portcullis_ratelimit::StoreConfig>>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        let d = portcullis_ratelimit::RateLimitConfig::new();
        Self {
            max_keys: d.max_keys,
            sweep_interval: d.sweep_interval,
            store: None,
        }
    }
}

/// One limit name or several, in a route's `rate_limit` filter.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum LimitNames {
    /// `rate_limit = "per_ip"`.
    One(String),
    /// `rate_limit = ["per_ip", "per_user"]`.
    Many(Vec<String>),
}

impl LimitNames {
    /// The names, in order.
    pub fn names(&self) -> &[String] {
        match self {
            LimitNames::One(n) => std::slice::from_ref(n),
            LimitNames::Many(v) => v,
        }
    }
}

impl Config {
    /// The rate-limit settings with `limits` (every route's layer is a selection
    /// of one layer over all `[[rate_limits]]`, so they share state and store).
    pub fn rate_limit_config<'a>(
        &self,
        limits: impl IntoIterator<Item = &'a portcullis_ratelimit::LimitConfig>,
    ) -> portcullis_ratelimit::RateLimitConfig {
        let s = &self.rate_limit;
        let mut c = portcullis_ratelimit::RateLimitConfig::new()
            .max_keys(s.max_keys)
            .sweep_interval(s.sweep_interval)
            .store(
                s.store
                    .as_ref()
                    .map(|st| st.get_ref().clone())
                    .unwrap_or_default(),
            );
        for l in limits {
            c = c.limit(l.clone());
        }
        c
    }
}

/// `[registry]`: what registrations may point at, and where they are kept.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Accept link-local upstreams (169.254.0.0/16, fe80::/10) and the cloud
    /// metadata address. Default: false.
    pub allow_link_local: bool,
    /// Accept the gateway's own listeners as upstreams. Default: false.
    pub allow_self: bool,
    /// Share registrations with a fleet of gateways through this Redis
    /// (`redis://host:port/db`) instead of the state folder's file. Default: none.
    pub redis: Option<Spanned<String>>,
    /// Prefix of every Redis key and of the change channel. Default: `portcullis:`.
    pub redis_prefix: String,
    /// Bound on every Redis call. Default: 500ms.
    #[serde(with = "duration_str")]
    pub redis_timeout: Duration,
    /// Full reload from Redis at this period, besides change notices. Default: 10s.
    #[serde(with = "duration_str")]
    pub redis_resync: Duration,
    /// Tokens that may register only one service (its endpoints, heartbeats and
    /// deregistration), by service name; at least 16 characters each. Default: none.
    pub service_tokens: BTreeMap<String, portcullis_auth::Secret>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            allow_link_local: false,
            allow_self: false,
            redis: None,
            redis_prefix: "portcullis:".to_owned(),
            redis_timeout: Duration::from_millis(500),
            redis_resync: Duration::from_secs(10),
            service_tokens: BTreeMap::new(),
        }
    }
}

/// `[metrics]`: Prometheus metrics served at `GET /metrics` on the admin listener.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Record and serve metrics. Default: true.
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[server]`: the client-facing listener.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the proxy listener. Default: 127.0.0.1:8080.
    pub listen: Spanned<String>,
    /// Address of the admin listener (`/healthz`, `/readyz`). Default: 127.0.0.1:9090.
    pub admin_listen: Spanned<String>,
    /// Folder for state (registrations, the generated admin token). Default: portcullis-state.
    pub state_dir: String,
    /// Client connections served at once; more wait `connection_wait`, then are
    /// closed. Default: 10000.
    pub max_connections: usize,
    /// How long an accepted connection beyond `max_connections` may wait. Default: 100ms.
    #[serde(with = "duration_str")]
    pub connection_wait: Duration,
    /// Time allowed to receive a request's header section: the first request's
    /// from the connection's start, later ones' from their first byte (slowloris).
    /// Default: 10s.
    #[serde(with = "duration_str")]
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection is kept between two requests (an
    /// HTTP/2 one with no stream open gets a GOAWAY). Default: 60s.
    #[serde(with = "duration_str")]
    pub keepalive_timeout: Duration,
    /// How long a write to a client may stay blocked because it does not read
    /// (slow reader); past it the connection is closed and its upstream let go.
    /// Default: 60s.
    #[serde(with = "duration_str")]
    pub send_timeout: Duration,
    /// Largest request header section in bytes (431 beyond). Default: 32KiB.
    #[serde(with = "crate::size")]
    pub max_header_bytes: u64,
    /// Most request header fields (431 beyond). Default: 100.
    pub max_headers: usize,
    /// Longest request target in bytes (414 beyond). Default: 8KiB.
    #[serde(with = "crate::size")]
    pub max_uri_bytes: u64,
    /// Longest silence between two pieces of a request body (408 `client_timeout`
    /// past it). Default: 60s.
    #[serde(with = "duration_str")]
    pub client_body_timeout: Duration,
    /// Slowest average upload accepted once `client_body_min_rate_after` has
    /// passed since the body started, in bytes per second (408 below it); 0 turns
    /// it off. Default: 500B.
    #[serde(with = "crate::size")]
    pub client_body_min_rate: u64,
    /// When the minimum upload rate starts to apply. Default: 20s.
    #[serde(with = "duration_str")]
    pub client_body_min_rate_after: Duration,
    /// Largest request body for routes that set none (413 beyond). Default: 1GiB.
    #[serde(with = "crate::size")]
    pub max_body: u64,
    /// Requests served on one client connection: HTTP/1.1's last response says
    /// `Connection: close`, HTTP/2 gets a GOAWAY. 0 = no limit. Default: 1000.
    pub max_requests_per_connection: u64,
    /// Age of a client connection after which it is closed: HTTP/1.1 after its
    /// current response, HTTP/2 by a GOAWAY. "0s" = no limit. Default: 1h.
    #[serde(with = "duration_str")]
    pub max_connection_lifetime: Duration,
    /// Serve HTTP/2 with prior knowledge (h2c) beside HTTP/1.1. Default: true.
    pub http2: bool,
    /// How long in-flight requests may run after SIGTERM before the gateway exits
    /// (and after a reload's hand-over, once idle connections had their
    /// keep-alive timeout to end). Default: 30s.
    #[serde(with = "duration_str")]
    pub shutdown_timeout: Duration,
    /// Name put in `Via` headers. Default: portcullis.
    pub via: String,
    /// Peers whose X-Forwarded-* headers are trusted, as CIDRs. Default: none.
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Also send the RFC 7239 `Forwarded` header. Default: false.
    pub forwarded_header: bool,
    /// Add `Server-Timing: gateway;dur=…, upstream;dur=…` to every response: the
    /// gateway's and the upstream's share of the time to the response head.
    /// Default: true.
    pub server_timing: bool,
}

/// The largest `server.max_connections` (far beyond what one process's file
/// handles allow; keeps the connection pool's arithmetic small).
pub const MAX_CONNECTIONS: usize = 10_000_000;

/// `[[services]]`: a named set of upstream endpoints.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Unique name.
    pub name: Spanned<String>,
    /// Endpoint URLs (`http://host:port`).
    pub endpoints: Vec<Spanned<String>>,
    /// How requests are spread over the endpoints: `round_robin`, `weighted`
    /// (every endpoint weighs 1 here) or `least_request`. Default: `round_robin`.
    #[serde(default)]
    pub balancer: portcullis_registry::Balancer,
    /// An active health check, as for registered services (`{ path, interval,
    /// timeout, expected_status, headers, method, rise, fall }`). Default: none
    /// (passive ejection of failing endpoints only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Spanned<portcullis_registry::HealthSpec>>,
    /// Passive ejection from live traffic (Envoy's outlier detection):
    /// `{ consecutive_failures = 5, base_ejection_time = "30s", max_ejection_time
    /// = "5m", max_ejected_percent = 50 }`; `max_ejected_percent = 0` turns it
    /// off. Default: those values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_health: Option<Spanned<portcullis_health::PassiveHealthConfig>>,
}

/// `[[routes]]`: which requests go to which service, through which filters.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name for logs and metrics; defaults to the path.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// Host to match: exact (`api.example.com`) or a wildcard (`*.example.com`),
    /// port ignored, case-insensitive; any host when absent.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// Path: exact (`/healthz`), a prefix when it ends in `/` (`/v1/`), or a
    /// template (`/droplets/{id}`, `/files/{*rest}`). Default: `/`.
    #[serde(default = "default_path")]
    pub path: Spanned<String>,
    /// Methods the route serves; all when absent.
    #[serde(default)]
    pub methods: Option<Spanned<Vec<String>>>,
    /// Header predicates that must all hold: `{ name = "x-canary" }` (present) or
    /// `{ name = "x-canary", value = "1" }` (equal). Default: none.
    #[serde(default)]
    pub headers: Vec<Spanned<HeaderPredicateConfig>>,
    /// The service to forward to.
    pub service: Spanned<String>,
    /// Removes this leading path prefix (at a segment boundary) before forwarding.
    #[serde(default)]
    pub strip_prefix: Option<Spanned<String>>,
    /// Replaces the path before forwarding: a template using the route's captures
    /// (`/internal/{id}`), or for a prefix route the replacement of the prefix.
    #[serde(default)]
    pub rewrite: Option<Spanned<String>>,
    /// Shorthand for a `length_required` filter. Default: false.
    #[serde(default)]
    pub length_required: bool,
    /// Shorthand for a `body_limit` filter; `server.max_body` when absent.
    #[serde(default, with = "opt_size")]
    pub max_body: Option<u64>,
    /// The route's filter chain, in order (see docs/configuration.md).
    #[serde(default)]
    pub filters: Vec<Spanned<FilterConfig>>,
}

/// A header predicate of a route.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct HeaderPredicateConfig {
    /// Header name.
    pub name: String,
    /// Exact value; the header need only be present when absent.
    #[serde(default)]
    pub value: Option<String>,
}

/// One filter of a route's chain: a table with exactly one key.
///
/// Request-side ("before") filters act on the request in the order listed;
/// response-side ("after") filters act on every response of the route in the
/// order listed, including the gateway's own rejections by before filters.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FilterConfig {
    /// Before: authenticate with the named `[auth.<name>]` policy.
    Auth(String),
    /// Before: header operations on the request.
    RequestHeaders(HeaderRulesConfig),
    /// After: header operations on the response.
    ResponseHeaders(HeaderRulesConfig),
    /// Request headers that never reach the upstream, wherever the filter stands
    /// in the chain (applied last, right before forwarding).
    DenyHeaders(Vec<String>),
    /// Before: the largest request body (413 beyond), e.g. `"1MiB"`.
    BodyLimit(#[serde(with = "crate::size")] u64),
    /// Before: answer 411 to request bodies without `Content-Length`.
    LengthRequired(bool),
    /// The wait for the upstream's response headers on this route (504 past it).
    Timeout(#[serde(with = "duration_str")] Duration),
    /// The whole exchange with the upstream on this route, response body included.
    RequestTimeout(#[serde(with = "duration_str")] Duration),
    /// Connecting to an upstream for this route (504 past it); overrides
    /// `[proxy] connect_timeout`.
    ConnectTimeout(#[serde(with = "duration_str")] Duration),
    /// Before: count the request against these `[[rate_limits]]` (in order; the
    /// first listed counts first); 429 `rate_limited` past one.
    RateLimit(LimitNames),
    /// Which failures of idempotent requests without a body are sent again to
    /// another endpoint (`{ on = ["gateway_error", "timeout"], attempts = 2 }`);
    /// connect failures are retried on every route.
    Retry(portcullis_proxy::RetryPolicy),
}

impl FilterConfig {
    /// The filter's key in the config file.
    pub fn kind(&self) -> &'static str {
        match self {
            FilterConfig::Auth(_) => "auth",
            FilterConfig::RequestHeaders(_) => "request_headers",
            FilterConfig::ResponseHeaders(_) => "response_headers",
            FilterConfig::DenyHeaders(_) => "deny_headers",
            FilterConfig::BodyLimit(_) => "body_limit",
            FilterConfig::LengthRequired(_) => "length_required",
            FilterConfig::Timeout(_) => "timeout",
            FilterConfig::RequestTimeout(_) => "request_timeout",
            FilterConfig::ConnectTimeout(_) => "connect_timeout",
            FilterConfig::Retry(_) => "retry",
            FilterConfig::RateLimit(_) => "rate_limit",
        }
    }
}

fn default_path() -> Spanned<String> {
    Spanned::new(0..0, "/".to_owned())
}

mod opt_size {
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => crate::size::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        crate::size::deserialize(d).map(Some)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: Spanned::new(0..0, "127.0.0.1:8080".to_owned()),
            admin_listen: Spanned::new(0..0, "127.0.0.1:9090".to_owned()),
            state_dir: "portcullis-state".to_owned(),
            max_connections: 10_000,
            connection_wait: Duration::from_millis(100),
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body: 1 << 30,
            http2: true,
            shutdown_timeout: Duration::from_secs(30),
            via: "portcullis".to_owned(),
            trusted_proxies: Vec::new(),
            forwarded_header: false,
            server_timing: true,
            max_requests_per_connection: 1000,
            max_connection_lifetime: Duration::from_secs(3600),
            client_body_timeout: Duration::from_secs(60),
            client_body_min_rate: 500,
            client_body_min_rate_after: Duration::from_secs(20),
        }
    }
}

/// One mistake in a config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Mistake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.reason),
            _ => f.write_str(&self.reason),
        }
    }
}

/// Parses and validates a config text; returns every mistake found.
pub fn parse(text: &str) -> Result<Config, Vec<Mistake>> {
    let config: Config = match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            let (line, column) = e
                .span()
                .map(|s| line_col(text, s.start))
                .map_or((None, None), |(l, c)| (Some(l), Some(c)));
            return Err(vec![Mistake {
                line,
                column,
                reason: e.message().trim().to_owned(),
            }]);
        }
    };
    let mut mistakes = config.validate(text);
    // In file order; mistakes without a position (defaults) come first.
    mistakes.sort_by_key(|m| (m.line, m.column));
    if mistakes.is_empty() {
        Ok(config)
    } else {
        Err(mistakes)
    }
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> anyhow::Result<Result<Config, Vec<Mistake>>> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    Ok(parse(&text))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Config {
    /// Semantic checks that TOML types cannot express. `text` locates mistakes.
    pub fn validate(&self, text: &str) -> Vec<Mistake> {
        let mut out = Vec::new();
        let mut at = |span: Range<usize>, reason: String| {
            let (line, column) = if span.is_empty() && span.start == 0 {
                (None, None)
            } else {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            };
            out.push(Mistake {
                line,
                column,
                reason,
            });
        };
        let s = &self.server;
        for (key, v) in [
            ("server.listen", &s.listen),
            ("server.admin_listen", &s.admin_listen),
        ] {
            if v.get_ref().parse::<SocketAddr>().is_err() {
                at(
                    v.span(),
                    format!(
                        "{key} must be an address like 127.0.0.1:8080, got {:?}",
                        v.get_ref()
                    ),
                );
            }
        }
        if s.listen.get_ref() == s.admin_listen.get_ref() && !s.listen.get_ref().ends_with(":0") {
            at(
                s.admin_listen.span(),
                format!(
                    "server.admin_listen must differ from server.listen ({})",
                    s.listen.get_ref()
                ),
            );
        }
        if s.max_connections == 0 || s.max_connections > MAX_CONNECTIONS {
            at(
                0..0,
                format!("server.max_connections must be between 1 and {MAX_CONNECTIONS}"),
            );
        }
        if s.client_body_timeout.is_zero() {
            at(
                0..0,
                "server.client_body_timeout must be greater than 0s".into(),
            );
        }
        if s.send_timeout.is_zero() {
            at(0..0, "server.send_timeout must be greater than 0s".into());
        }
        if s.keepalive_timeout.is_zero() {
            at(
                0..0,
                "server.keepalive_timeout must be greater than 0s".into(),
            );
        }
        if s.header_timeout.is_zero() {
            at(0..0, "server.header_timeout must be greater than 0s".into());
        }
        if s.max_header_bytes < 1024 || s.max_header_bytes > 1 << 20 {
            at(
                0..0,
                format!(
                    "server.max_header_bytes must be between 1KiB and 1MiB, got {}",
                    s.max_header_bytes
                ),
            );
        }
        if s.max_headers == 0 || s.max_headers > 1000 {
            at(
                0..0,
                format!(
                    "server.max_headers must be between 1 and 1000, got {}",
                    s.max_headers
                ),
            );
        }
        if s.max_uri_bytes < 64 || s.max_uri_bytes > 1 << 20 {
            at(
                0..0,
                format!(
                    "server.max_uri_bytes must be between 64 and 1MiB, got {}",
                    s.max_uri_bytes
                ),
            );
        }
        if portcullis_forwarded::ViaLayer::try_new(s.via.clone()).is_err() {
            at(
                0..0,
                format!("server.via must be a token or host[:port], got {:?}", s.via),
            );
        }
        for cidr in &s.trusted_proxies {
            if let Err(e) = portcullis_forwarded::TrustedProxies::parse([cidr.get_ref()]) {
                at(cidr.span(), format!("server.trusted_proxies: {e}"));
            }
        }
        if let Err(errs) = self.proxy.validate() {
            for e in errs {
                at(0..0, e.to_string());
            }
        }
        let mut names = HashSet::new();
        for svc in &self.services {
            let name = svc.name.get_ref();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                at(
                    svc.name.span(),
                    format!("service name must be letters, digits, '-', '_' or '.', got {name:?}"),
                );
            }
            if !names.insert(name.clone()) {
                at(
                    svc.name.span(),
                    format!("service {name:?} is defined twice"),
                );
            }
            if svc.endpoints.is_empty() {
                at(
                    svc.name.span(),
                    format!("service {name:?} has no endpoints"),
                );
            }
            for ep in &svc.endpoints {
                if let Err(e) = Upstream::parse(ep.get_ref()) {
                    at(ep.span(), e.to_string());
                }
            }
            if let Some(h) = &svc.health {
                if let Err(e) = portcullis_registry::validate_health(h.get_ref()) {
                    at(h.span(), format!("service {name:?}: {e}"));
                }
            }
            if let Some(p) = &svc.passive_health {
                if let Err(errs) = p.get_ref().validate() {
                    for e in errs {
                        at(p.span(), format!("service {name:?}: {e}"));
                    }
                }
            }
        }
        for (name, policy) in &self.auth {
            if let Err(errs) = policy.get_ref().validate() {
                for e in errs {
                    at(policy.span(), format!("auth.{name}: {e}"));
                }
            } else if let Err(e) = load_auth_keys(policy.get_ref()) {
                at(policy.span(), format!("auth.{name}: {e}"));
            }
            // Stripping a header that frames the message, after the framing
            // guard has checked it, would change how the upstream reads the body.
            if let AuthConfig::ApiKey(k) = policy.get_ref() {
                const FRAMING: &[&str] = &[
                    "connection",
                    "content-length",
                    "host",
                    "keep-alive",
                    "proxy-connection",
                    "te",
                    "trailer",
                    "transfer-encoding",
                    "upgrade",
                ];
                if let Some(h) = &k.header {
                    if !k.keep_credentials && FRAMING.iter().any(|f| h.eq_ignore_ascii_case(f)) {
                        at(
                            policy.span(),
                            format!(
                                "auth.{name}: header {h:?} frames the message; it can carry a key only with keep_credentials = true"
                            ),
                        );
                    }
                }
            }
        }
        if let Some(url) = &self.registry.redis {
            let u = url.get_ref();
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) || u.len() <= 8 {
                at(
                    url.span(),
                    format!("registry.redis must be a redis:// URL, got {u:?}"),
                );
            }
        }
        for (service, token) in &self.registry.service_tokens {
            if token.expose().trim().len() < 16 {
                at(
                    0..0,
                    format!("registry.service_tokens.{service} must be at least 16 characters"),
                );
            }
        }
        if self.registry.redis_timeout.is_zero() || self.registry.redis_resync.is_zero() {
            at(
                0..0,
                "registry.redis_timeout and registry.redis_resync must be greater than 0s".into(),
            );
        }
        // What the gateway builds: the operator's list plus every API-key header
        // and query parameter.
        if let Err(errs) = crate::gateway::access_log_config(self).validate() {
            for e in errs {
                at(0..0, e.to_string());
            }
        }
        // Every route goes through the router's own builder, so a config that
        // passes here builds; conflicts between routes are found the same way.
        let mut specs = Vec::new();
        let identity_headers = crate::gateway::identity_headers(self);
        for r in &self.routes {
            if !names.contains(r.service.get_ref()) {
                at(
                    r.service.span(),
                    format!("route refers to unknown service {:?}", r.service.get_ref()),
                );
            }
            match crate::gateway::route_spec(r) {
                Ok(spec) => specs.push((spec, r.path.span())),
                Err(errs) => {
                    for (span, reason) in errs {
                        at(span, reason);
                    }
                }
            }
            if r.max_body == Some(0) {
                at(
                    r.path.span(),
                    "route max_body must be greater than 0".into(),
                );
            }
            self.check_filters(
                &r.filters,
                &format!("route {:?}", r.path.get_ref()),
                r.path.span(),
                &identity_headers,
                &mut at,
            );
        }
        let mut limit_names = HashSet::new();
        for l in &self.rate_limits {
            let limit = l.get_ref();
            if !limit_names.insert(limit.name.as_str()) {
                at(
                    l.span(),
                    format!("rate limit {:?} is defined twice", limit.name),
                );
            }
            // With the store (some checks depend on it); the settings' own
            // mistakes are reported once, below.
            let settings_only = self
                .rate_limit_config([])
                .validate()
                .err()
                .unwrap_or_default();
            if let Err(errs) = self.rate_limit_config([limit]).validate() {
                for e in errs.iter().filter(|e| !settings_only.contains(e)) {
                    at(l.span(), format!("rate limit {:?}: {e}", limit.name));
                }
            }
        }
        if let Err(errs) = self.rate_limit_config([]).validate() {
            let span = self.rate_limit.store.as_ref().map_or(0..0, Spanned::span);
            for e in errs {
                at(span.clone(), format!("rate_limit: {e}"));
            }
        }
        for (name, filters) in &self.filter_sets {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                at(
                    filters.first().map_or(0..0, Spanned::span),
                    format!(
                        "filter set name must be letters, digits, '-', '_' or '.', got {name:?}"
                    ),
                );
            }
            self.check_filters(
                filters,
                &format!("filter set {name:?}"),
                filters.first().map_or(0..0, Spanned::span),
                &identity_headers,
                &mut at,
            );
        }
        // Conflicts between routes: on failure, find where each one appears by
        // building the table one route at a time (only on the error path).
        let build = |specs: &[(portcullis_router::RouteSpec, Range<usize>)]| {
            specs
                .iter()
                .fold(portcullis_router::Router::<()>::builder(), |b, (s, _)| {
                    b.route(s.clone(), ())
                })
                .build()
                .map(drop)
        };
        if build(&specs).is_err() {
            let mut reported = 0;
            for i in 0..specs.len() {
                if let Err(errs) = build(&specs[..=i]) {
                    for e in errs.iter().skip(reported) {
                        at(specs[i].1.clone(), e.to_string());
                    }
                    reported = errs.len();
                }
            }
        }
        out
    }
}

impl Config {
    /// Checks one filter chain (a route's or a filter set's): known auth policies,
    /// valid header rules that leave identity headers alone, sensible limits, one
    /// auth filter at most.
    fn check_filters(
        &self,
        filters: &[Spanned<FilterConfig>],
        owner: &str,
        owner_span: Range<usize>,
        identity_headers: &[String],
        at: &mut dyn FnMut(Range<usize>, String),
    ) {
        let auths = filters
            .iter()
            .filter(|f| matches!(f.get_ref(), FilterConfig::Auth(_)))
            .count();
        if auths > 1 {
            at(
                owner_span,
                format!("{owner} has {auths} auth filters; one route takes one auth policy"),
            );
        }
        let mut auth_before = false;
        let mut used_limits: Vec<String> = Vec::new();
        for f in filters {
            let kind = f.get_ref().kind();
            let mut bad = |reason: String| at(f.span(), format!("filter {kind}: {reason}"));
            match f.get_ref() {
                FilterConfig::Auth(name) if !self.auth.contains_key(name) => {
                    bad(format!("unknown auth policy {name:?} (no [auth.{name}])"));
                }
                FilterConfig::RequestHeaders(rules) | FilterConfig::ResponseHeaders(rules) => {
                    if let Err(errs) = portcullis_headers::HeaderRules::from_config(rules) {
                        for e in errs {
                            bad(e.to_string());
                        }
                    }
                    if matches!(f.get_ref(), FilterConfig::RequestHeaders(_)) {
                        let targets = rules
                            .rename
                            .values()
                            .chain(rules.set.keys())
                            .chain(rules.add.keys());
                        for t in targets {
                            if identity_headers.iter().any(|i| i.eq_ignore_ascii_case(t)) {
                                bad(format!(
                                    "{t:?} is an identity header: only the auth filter sets it"
                                ));
                            }
                        }
                    }
                }
                FilterConfig::DenyHeaders(names) => {
                    if names.is_empty() {
                        bad("lists no header".into());
                    }
                    if let Err(e) = portcullis_headers::RequestHeadersLayer::deny(names) {
                        bad(e.to_string());
                    }
                }
                FilterConfig::BodyLimit(0) => bad("must be greater than 0".into()),
                FilterConfig::Timeout(d) | FilterConfig::ConnectTimeout(d) if d.is_zero() => {
                    bad("must be greater than 0s".into());
                }
                FilterConfig::RateLimit(names) => {
                    let names = names.names();
                    if names.is_empty() {
                        bad("lists no limit".into());
                    }
                    for (i, n) in names.iter().enumerate() {
                        let Some(limit) = self.rate_limits.iter().find(|l| &l.get_ref().name == n)
                        else {
                            bad(format!("unknown limit {n:?} (no [[rate_limits]] named so)"));
                            continue;
                        };
                        if names[..i].contains(n) || used_limits.contains(n) {
                            bad(format!("names limit {n:?} twice"));
                        }
                        let by_identity = limit
                            .get_ref()
                            .key
                            .contains(&portcullis_ratelimit::KeyPart::Identity);
                        if by_identity && !auth_before {
                            bad(format!(
                                "limit {n:?} is keyed by identity but no auth filter comes before it: every request would share one \"anonymous\" key"
                            ));
                        }
                    }
                    used_limits.extend(names.iter().cloned());
                }
                FilterConfig::Retry(p) => {
                    if let Some(n) = p.attempts.filter(|n| *n > portcullis_proxy::MAX_RETRIES) {
                        bad(format!(
                            "attempts = {n} is more than {}",
                            portcullis_proxy::MAX_RETRIES
                        ));
                    }
                    if p.on.is_empty() {
                        bad(
                            "lists no condition in `on` (connect failures are always retried)"
                                .into(),
                        );
                    }
                }
                _ => {}
            }
            auth_before |= matches!(f.get_ref(), FilterConfig::Auth(_));
        }
    }
}

/// Builds an auth policy once without its JWKS URL (no background fetch, no
/// network), so that unreadable or malformed key files and hashes are reported
/// by `check`.
fn load_auth_keys(policy: &AuthConfig) -> Result<(), portcullis_auth::ConfigError> {
    let mut offline = policy.clone();
    if let AuthConfig::Jwt(jwt) = &mut offline {
        if jwt.jwks_url.take().is_some() && jwt.keys.is_empty() {
            return Ok(());
        }
    }
    portcullis_auth::AuthLayer::from_config(&offline).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert!(parse("").is_ok());
    }

    #[test]
    fn reports_every_semantic_mistake_with_lines() {
        let text = "[server]\nlisten = \"nope\"\n\n[[services]]\nname = \"a\"\nendpoints = [\"ftp://x\"]\n\n[[routes]]\npath = \"/\"\nservice = \"b\"\n";
        let errs = parse(text).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(errs[0].line, Some(2));
        assert_eq!(errs[1].line, Some(6));
        assert!(
            errs[1].reason.contains("only http://"),
            "{}",
            errs[1].reason
        );
        assert_eq!(errs[2].line, Some(10));
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../examples/gateway.toml");
        let config = parse(text).unwrap_or_else(|m| panic!("{m:?}"));
        assert_eq!(config.routes.len(), 3);
        assert_eq!(config.auth.len(), 2);
    }

    #[test]
    fn route_and_filter_mistakes_are_reported_at_their_lines() {
        let text = "\
[[services]]
name = \"a\"
endpoints = [\"http://127.0.0.1:1\"]

[[routes]]
path = \"/y/{id}\"
service = \"a\"
[[routes.filters]]
auth = \"nope\"

[[routes]]
path = \"/y/{name}\"
service = \"a\"
[[routes.filters]]
deny_headers = [\"bad header\"]

[[routes]]
path = \"/z\"
service = \"a\"
methods = []
";
        let errs = parse(text).unwrap_err();
        let lines: Vec<_> = errs.iter().map(|m| m.line).collect();
        assert_eq!(lines, [Some(8), Some(12), Some(14), Some(20)], "{errs:?}");
        assert!(errs[0].reason.contains("unknown auth policy"), "{errs:?}");
        assert!(errs[1].reason.contains("conflicts"), "{errs:?}");
        assert!(errs[2].reason.contains("deny_headers"), "{errs:?}");
        assert!(errs[3].reason.contains("method list is empty"), "{errs:?}");
    }

    #[test]
    fn identity_headers_are_only_set_by_auth_and_one_auth_per_route() {
        let text = "\
[auth.k]
type = \"api_key\"
header = \"x-api-key\"
identity_header = \"x-identity\"
keys = [ { identity = \"a\", sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\" } ]

[[services]]
name = \"a\"
endpoints = [\"http://127.0.0.1:1\"]

[[routes]]
path = \"/\"
service = \"a\"
[[routes.filters]]
auth = \"k\"
[[routes.filters]]
auth = \"k\"
[[routes.filters]]
request_headers = { rename = { \"x-user\" = \"X-Identity\" } }
";
        let errs = parse(text).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].line, Some(12), "{errs:?}");
        assert!(errs[0].reason.contains("2 auth filters"), "{errs:?}");
        assert_eq!(errs[1].line, Some(18), "{errs:?}");
        assert!(errs[1].reason.contains("identity header"), "{errs:?}");
    }

    #[test]
    fn retry_policies_are_checked() {
        let text = "\
[[services]]
name = \"a\"
endpoints = [\"http://127.0.0.1:1\"]

[[routes]]
path = \"/a\"
service = \"a\"
[[routes.filters]]
retry = { on = [\"gateway_error\"], attempts = 11 }
[[routes.filters]]
retry = { on = [] }
";
        let errs = parse(text).unwrap_err();
        let lines: Vec<_> = errs.iter().map(|m| m.line).collect();
        assert_eq!(lines, [Some(8), Some(10)], "{errs:?}");
        assert!(
            errs[0].reason.contains("attempts = 11 is more than 10"),
            "{errs:?}"
        );
        assert!(errs[1].reason.contains("lists no condition"), "{errs:?}");
        let errs = parse(&text.replace("on = []", "on = [\"teapot\"]")).unwrap_err();
        assert_eq!(errs[0].line, Some(11), "{errs:?}");
        assert!(
            errs[0].reason.contains("unknown variant `teapot`"),
            "{errs:?}"
        );
        let ok = "[[services]]\nname = \"a\"\nendpoints = [\"http://127.0.0.1:1\"]\n[[routes]]\nservice = \"a\"\n[[routes.filters]]\nretry = { on = [\"5xx\", \"timeout\", \"reset\", \"connect_failure\"] }\n";
        assert!(parse(ok).is_ok());
    }

    #[test]
    fn rate_limit_mistakes_are_reported_at_their_lines() {
        let text = "\
[rate_limit]
store = { kind = \"redis\", url = \"http://not-redis\" }

[[rate_limits]]
name = \"zero\"
rate = 0

[[rate_limits]]
name = \"ok\"
rate = 5

[[services]]
name = \"a\"
endpoints = [\"http://127.0.0.1:1\"]

[[routes]]
service = \"a\"
[[routes.filters]]
rate_limit = [\"ok\", \"nope\"]
";
        let errs = parse(text).unwrap_err();
        let lines: Vec<_> = errs.iter().map(|m| m.line).collect();
        assert_eq!(lines, [Some(2), Some(4), Some(18)], "{errs:?}");
        assert!(errs[0].reason.contains("not a valid Redis URL"), "{errs:?}");
        assert!(errs[1].reason.contains("\"zero\""), "{errs:?}");
        assert!(
            errs[2].reason.contains("unknown limit \"nope\""),
            "{errs:?}"
        );
        // A static service's health settings are checked, each at its line.
        let errs = parse(
            "[[services]]\nname = \"a\"\nendpoints = [\"http://127.0.0.1:1\"]\n\
             health = { interval = \"10ms\" }\n\
             passive_health = { max_ejected_percent = 101 }\n\
             [[routes]]\nservice = \"a\"\n",
        )
        .unwrap_err();
        let lines: Vec<_> = errs.iter().map(|m| m.line).collect();
        assert_eq!(lines, [Some(4), Some(5)], "{errs:?}");
        assert!(errs[0].reason.contains("health.interval"), "{errs:?}");
        assert!(errs[1].reason.contains("101"), "{errs:?}");
        // An identity-keyed limit needs an auth filter before it.
        let errs = parse(
            "[auth.k]\ntype = \"api_key\"\nheader = \"x-k\"\nkeys = [ { identity = \"a\", sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\" } ]\n\
             [[rate_limits]]\nname = \"per_user\"\nkey = \"identity\"\nrate = 5\n\
             [[services]]\nname = \"a\"\nendpoints = [\"http://127.0.0.1:1\"]\n\
             [[routes]]\nservice = \"a\"\n[[routes.filters]]\nrate_limit = \"per_user\"\n\
             [[routes.filters]]\nauth = \"k\"\n",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].reason.contains("keyed by identity"), "{errs:?}");
        // A negative rate and an unknown key kind are syntax errors, located.
        let errs = parse("[[rate_limits]]\nname = \"n\"\nrate = -1\n").unwrap_err();
        assert_eq!(errs[0].line, Some(3), "{errs:?}");
        let errs =
            parse("[[rate_limits]]\nname = \"n\"\nrate = 1\nkey = \"cookie\"\n").unwrap_err();
        assert!(errs[0].reason.contains("cookie"), "{errs:?}");
        assert!(errs[0].line.is_some(), "{errs:?}");
    }

    #[test]
    fn unknown_filters_are_named() {
        let text = "[[services]]\nname = \"a\"\nendpoints = [\"http://127.0.0.1:1\"]\n[[routes]]\nservice = \"a\"\n[[routes.filters]]\ncompress = true\n";
        let errs = parse(text).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, Some(7), "{errs:?}");
        assert!(
            errs[0].reason.contains("unknown variant `compress`"),
            "{errs:?}"
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let errs = parse("[server]\nheader_timeout = \"ten\"\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, Some(2));
        assert!(
            errs[0].reason.contains("invalid duration"),
            "{}",
            errs[0].reason
        );
        let errs = parse("[server]\nbogus = 1\n").unwrap_err();
        assert_eq!(errs[0].line, Some(2));
    }
}
