//! Composition: the global edge stack around the route table, and each route's
//! filter chain in front of the proxy.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::ops::Range;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use portcullis_accesslog::{AccessLog, AccessLogLayer, RequestId, RequestIdLayer};
use portcullis_auth::AuthLayer;
use portcullis_body::{
    BodyLimitLayer, BodyTimeout, BodyTimeoutLayer, FramingGuard, FramingGuardLayer,
    LengthRequiredLayer, TimedBody,
};
use portcullis_forwarded::{Forwarded, ForwardedLayer, TrustedProxies, Via, ViaLayer};
use portcullis_headers::{HeaderRules, RequestHeaders, RequestHeadersLayer, ResponseHeadersLayer};
use portcullis_hop::{HopByHop, HopByHopLayer};
use portcullis_metrics::{InFlightLayer, Metrics, MetricsLayer, ServerTiming, ServerTimingLayer};
use portcullis_proxy::{Proxy, ProxyClient, Upstream};
use portcullis_ratelimit::RateLimitLayer;
use portcullis_registry::Snapshot;
use portcullis_router::{HeaderPredicate, RouteSpec, Router};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt as _};

use crate::config::{Config, FilterConfig, RouteConfig};
use crate::server::ListenerLimits;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body every route sees: the client's, counted by the access log and
/// bounded in time.
pub type RouteRequestBody = TimedBody<portcullis_accesslog::RequestBody<Incoming>>;

/// The response body every route returns, boxed: each route's chain differs.
pub type RouteResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// One route's filter chain and proxy, boxed at the router's boundary.
pub type RouteService =
    BoxCloneSyncService<Request<RouteRequestBody>, Response<RouteResponseBody>, Infallible>;

/// The whole request path of the gateway, outermost layer first.
pub type Stack = RequestId<
    ServerTiming<
        AccessLog<
            Metrics<
                FramingGuard<BodyTimeout<HopByHop<Forwarded<Via<RequestHeaders<DynamicRouter>>>>>>,
            >,
        >,
    >,
>;

/// Where a mistake found while turning config into routes is, and what it is.
pub(crate) type Spanned = (Range<usize>, String);

/// The route table: the static routes of the config file, plus the services
/// registered through the admin API, swapped atomically on every change.
///
/// Requests load the table once when they reach the router and keep it: a swap
/// never changes the route a request in flight is on.
#[derive(Clone)]
pub struct Routes {
    /// The static part (config, clients, auth policies) and its current table;
    /// replaced whole by a config reload.
    current: Arc<ArcSwap<RoutesInner>>,
    /// Registered services' health checkers and balancers: kept across reloads.
    services: Arc<crate::services::Services>,
    /// Serializes rebuilds and reloads; holds what the registered part of the
    /// table was last built from.
    fingerprint: Arc<std::sync::Mutex<Option<u64>>>,
}

struct RoutesInner {
    config: Config,
    client: ProxyClient,
    /// The static services' proxies, by name (round robin over their endpoints).
    proxies: HashMap<String, Proxy>,
    /// The auth policies, by name.
    auth: BTreeMap<String, AuthLayer>,
    /// The layer over every rate limit, with the config it was built from (a
    /// reload keeps it, and the limits' counts, when that did not change).
    limits: Limits,
    table: ArcSwap<Router<RouteService>>,
}

/// Whether building `policy` reads files (JWT keys in PEM files).
fn reads_files(policy: &portcullis_auth::AuthConfig) -> bool {
    match policy {
        portcullis_auth::AuthConfig::Jwt(jwt) => jwt.keys.iter().any(|k| k.pem_file.is_some()),
        _ => false,
    }
}

/// The layer over every rate limit, with the config it was built from.
type Limits = Option<(portcullis_ratelimit::RateLimitConfig, RateLimitLayer)>;

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("routes", &self.current.load().table.load().len())
            .finish_non_exhaustive()
    }
}

impl RoutesInner {
    /// The static part of a validated config. Auth policies with a JWKS URL
    /// start their refresh tasks, so this runs inside the runtime.
    fn new(
        config: &Config,
        previous: Option<&RoutesInner>,
        services: &crate::services::Services,
        resolved: &crate::services::Resolved,
    ) -> anyhow::Result<Self> {
        // A reload keeps what did not change: the pool (warm connections, the
        // per-upstream caps), the static services' health (in `services`), and
        // the auth policies (a JWKS key set already fetched, the verification
        // caches) — except those that read key files, which a reload is the way
        // to re-read.
        let kept_client = previous
            .filter(|p| p.config.proxy == config.proxy)
            .map(|p| p.client.clone());
        let client = match &kept_client {
            Some(c) => c.clone(),
            None => ProxyClient::new(config.proxy.clone())
                .map_err(|errs| anyhow!("invalid [proxy] settings: {errs:?}"))?,
        };
        let mut proxies = HashMap::new();
        for svc in &config.services {
            let name = svc.name.get_ref();
            for e in &svc.endpoints {
                Upstream::parse(e.get_ref()).with_context(|| format!("service {name}"))?;
            }
            // Each endpoint is known by its URL; one listed twice weighs 2.
            let mut endpoints: Vec<(&str, u32)> = Vec::new();
            for e in &svc.endpoints {
                match endpoints.iter_mut().find(|(url, _)| url == e.get_ref()) {
                    Some((_, w)) => *w += 1,
                    None => endpoints.push((e.get_ref(), 1)),
                }
            }
            let passive = svc
                .passive_health
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_default();
            let balance = services.apply(
                name,
                svc.health.as_ref().map(|h| h.get_ref()),
                &passive,
                svc.balancer,
                endpoints
                    .iter()
                    .map(|(url, weight)| crate::services::EndpointRef {
                        id: url,
                        url,
                        weight: *weight,
                    }),
                resolved,
            );
            let proxy = match balance {
                Some(balance) => Proxy::balanced(client.clone(), balance)
                    .retry_budget(services.budget(name, config.proxy.retry_budget_percent)),
                None => {
                    let upstreams = svc
                        .endpoints
                        .iter()
                        .map(|e| Upstream::parse(e.get_ref()))
                        .collect::<Result<Vec<_>, _>>()
                        .with_context(|| format!("service {name}"))?;
                    Proxy::new(client.clone(), upstreams)
                }
            };
            proxies.insert(name.clone(), proxy);
        }
        let mut auth = BTreeMap::new();
        for (name, policy) in &config.auth {
            let kept = previous
                .filter(|p| {
                    p.config.auth.get(name).map(|old| old.get_ref()) == Some(policy.get_ref())
                        && !reads_files(policy.get_ref())
                })
                .and_then(|p| p.auth.get(name));
            let layer = match kept {
                Some(layer) => layer.clone(),
                None => AuthLayer::from_config(policy.get_ref())
                    .with_context(|| format!("auth policy {name:?}"))?,
            };
            auth.insert(name.clone(), layer);
        }
        // One layer over every limit; each route takes a selection of it.
        let rc = config.rate_limit_config(config.rate_limits.iter().map(|l| l.get_ref()));
        let kept = previous
            .and_then(|p| p.limits.as_ref())
            .filter(|(old, _)| *old == rc)
            .map(|(_, layer)| layer.clone());
        let limits = match kept {
            Some(layer) => Some((rc, layer)),
            None if config.rate_limits.is_empty() => None,
            None => {
                let layer = RateLimitLayer::from_config(&rc).context("rate limits")?;
                Some((rc, layer))
            }
        };
        Ok(RoutesInner {
            config: config.clone(),
            client,
            proxies,
            auth,
            limits,
            table: ArcSwap::from_pointee(Router::builder().build().map_err(|e| anyhow!("{e:?}"))?),
        })
    }
}

impl Routes {
    /// The static table of a validated config. Auth policies with a JWKS URL start
    /// their refresh tasks, so this runs inside the runtime.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        Self::with_resolved(config, &HashMap::new())
    }

    /// As [`Routes::new`], with the static endpoints' host names resolved (see
    /// [`crate::registry::resolve_urls`]) so that their health checks can probe
    /// them.
    pub fn with_resolved(
        config: &Config,
        resolved: &crate::services::Resolved,
    ) -> anyhow::Result<Self> {
        let services = Arc::new(crate::services::Services::default());
        let inner = RoutesInner::new(config, None, &services, resolved)?;
        let table = inner.build(&services, None)?;
        inner.table.store(Arc::new(table));
        Ok(Self {
            current: Arc::new(ArcSwap::from_pointee(inner)),
            services,
            fingerprint: Arc::new(std::sync::Mutex::new(None)),
        })
    }

    /// The router service that reads the current table.
    pub fn router(&self) -> DynamicRouter {
        DynamicRouter {
            routes: self.current.clone(),
        }
    }

    /// A registered endpoint's health, for the admin API.
    pub fn endpoint_health(&self, service: &str, endpoint: &str) -> Option<serde_json::Value> {
        self.services.health_json(service, endpoint)
    }

    /// The static routes, for `GET /api/v1/routes`.
    pub fn static_routes_json(&self) -> Vec<serde_json::Value> {
        self.current
            .load()
            .config
            .routes
            .iter()
            .map(|r| {
                serde_json::json!({
                    "service": r.service.get_ref(),
                    "host": r.host.as_ref().map(|h| h.get_ref()),
                    "path": r.path.get_ref(),
                    "methods": r.methods.as_ref().map(|m| m.get_ref()),
                    "strip_prefix": r.strip_prefix.as_ref().map(|p| p.get_ref()),
                    "source": "config",
                })
            })
            .collect()
    }

    /// Names of the static services: registrations may not take them.
    pub fn static_services(&self) -> Vec<String> {
        self.current
            .load()
            .config
            .services
            .iter()
            .map(|s| s.name.get_ref().clone())
            .collect()
    }

    /// Rebuilds the table from the static routes and `snapshot`'s services and
    /// swaps it in. On failure the old table keeps serving.
    ///
    /// A change that leaves every service's routes, settings and live endpoints as
    /// they were (a heartbeat renewing a lease) keeps the current table.
    /// `resolved` holds the addresses of endpoint host names (see
    /// [`crate::registry::resolve`]), for health probes.
    pub fn rebuild(
        &self,
        snapshot: &Snapshot,
        now_ms: u64,
        resolved: &crate::services::Resolved,
    ) -> anyhow::Result<()> {
        let fp = fingerprint(snapshot, now_ms);
        let mut last = match self.fingerprint.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *last == Some(fp) {
            return Ok(());
        }
        let inner = self.current.load();
        let table = inner.build(&self.services, Some((snapshot, now_ms, resolved)))?;
        inner.table.store(Arc::new(table));
        *last = Some(fp);
        Ok(())
    }

    /// Replaces the static part with `config`'s (services, routes, filters, auth
    /// policies, filter sets, proxy settings) and the table with one built from it
    /// and `snapshot`, at once. Requests in flight finish on the routes they
    /// started on; new ones take the new table. On failure nothing changes.
    pub fn reload(
        &self,
        config: &Config,
        registry: &portcullis_registry::Registry,
        resolved: &crate::services::Resolved,
    ) -> anyhow::Result<()> {
        let mut last = match self.fingerprint.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The registry as it is now, under the lock rebuilds take too: a change
        // that came in meanwhile is in it (or rebuilt after it).
        let snapshot = registry.snapshot();
        let now_ms = portcullis_registry::now_unix_ms();
        let snapshot = &snapshot;
        let inner = RoutesInner::new(config, Some(&self.current.load()), &self.services, resolved)?;
        let table = inner.build(&self.services, Some((snapshot, now_ms, resolved)))?;
        inner.table.store(Arc::new(table));
        self.current.store(Arc::new(inner));
        *last = Some(fingerprint(snapshot, now_ms));
        Ok(())
    }
}

impl RoutesInner {
    fn build(
        &self,
        services: &crate::services::Services,
        registered: Option<(&Snapshot, u64, &crate::services::Resolved)>,
    ) -> anyhow::Result<Router<RouteService>> {
        let config = &self.config;
        let mut router = Router::builder();
        let auth: BTreeMap<&str, AuthLayer> = self
            .auth
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        for r in &config.routes {
            let proxy = self
                .proxies
                .get(r.service.get_ref())
                .cloned()
                .ok_or_else(|| {
                    anyhow!("route refers to unknown service {:?}", r.service.get_ref())
                })?;
            let spec =
                route_spec(r).map_err(|errs| anyhow!("route {:?}: {errs:?}", r.path.get_ref()))?;
            let chain = route_chain(r, proxy, &auth, &self.limits, config.server.max_body)?;
            router = router.route(spec, chain);
        }
        if let Some((snapshot, now, resolved)) = registered {
            for (name, entry) in snapshot.services() {
                if self.proxies.contains_key(name) {
                    // The config file wins on a name clash (logged at restore).
                    continue;
                }
                let proxy = match services.apply(
                    name,
                    entry.spec.health.as_ref(),
                    &portcullis_health::PassiveHealthConfig::default(),
                    entry.spec.balancer,
                    snapshot.live_endpoints(name, now).map(|(id, ep)| {
                        crate::services::EndpointRef {
                            id,
                            url: &ep.spec.url,
                            weight: ep.spec.weight,
                        }
                    }),
                    resolved,
                ) {
                    Some(balance) => Proxy::balanced(self.client.clone(), balance)
                        .retry_budget(services.budget(name, config.proxy.retry_budget_percent)),
                    None => Proxy::new(self.client.clone(), Vec::new()),
                };
                // The service's filter set from the config, as if its routes
                // listed those filters. A set that is gone (the config changed)
                // takes the service's routes out rather than serve them unfiltered.
                let filters = match &entry.spec.filters {
                    None => Vec::new(),
                    Some(set) => match config.filter_sets.get(set) {
                        Some(f) => f.clone(),
                        None => {
                            tracing::error!(service = %name, filter_set = %set, "registered service names an unknown filter set; its routes are not served");
                            continue;
                        }
                    },
                };
                for r in &entry.spec.routes {
                    let spec = registered_route_spec(name, r)
                        .map_err(|e| anyhow!("service {name:?}: {e}"))?;
                    let chain = if filters.is_empty() {
                        registered_chain(proxy.clone(), config.server.max_body)
                    } else {
                        let rc = registered_route_config(name, r, filters.clone());
                        route_chain(
                            &rc,
                            proxy.clone(),
                            &auth,
                            &self.limits,
                            config.server.max_body,
                        )?
                    };
                    router = router.route(spec, chain);
                }
            }
        }
        let table = router
            .build()
            .map_err(|errs| anyhow!("routes: {}", join(&errs)))?;
        // Only once the table is good: a refused one leaves the services be.
        if let Some((snapshot, _, _)) = registered {
            services.retain(&|name| {
                self.proxies.contains_key(name) || snapshot.service(name).is_some()
            });
        }
        Ok(table)
    }
}

/// What the registered part of a table depends on: each service's spec and its
/// live endpoints' ids, URLs and weights (not their leases).
fn fingerprint(snapshot: &Snapshot, now: u64) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (name, entry) in snapshot.services() {
        name.hash(&mut h);
        format!("{:?}", entry.spec).hash(&mut h);
        for (id, ep) in snapshot.live_endpoints(name, now) {
            id.hash(&mut h);
            ep.spec.url.hash(&mut h);
            ep.spec.weight.hash(&mut h);
        }
    }
    h.finish()
}

/// A registered route, for the router.
fn registered_route_spec(
    service: &str,
    r: &portcullis_registry::RouteSpec,
) -> Result<RouteSpec, portcullis_router::ConfigError> {
    let mut spec = RouteSpec::new(format!("{service}:{}", r.path), &r.path)?.service(service);
    if let Some(h) = &r.host {
        spec = spec.host(h)?;
    }
    if let Some(m) = &r.methods {
        spec = spec.methods(m.iter())?;
    }
    if let Some(p) = &r.strip_prefix {
        spec = spec.strip_prefix(p)?;
    }
    Ok(spec)
}

/// A registered route as a config route with `filters`, for [`route_chain`].
fn registered_route_config(
    service: &str,
    r: &portcullis_registry::RouteSpec,
    filters: Vec<toml::Spanned<FilterConfig>>,
) -> RouteConfig {
    use toml::Spanned;
    RouteConfig {
        name: None,
        host: None,
        path: Spanned::new(0..0, r.path.clone()),
        methods: None,
        headers: Vec::new(),
        service: Spanned::new(0..0, service.to_owned()),
        strip_prefix: None,
        rewrite: None,
        length_required: false,
        max_body: None,
        filters,
    }
}

/// A registered route's chain: the in-flight gauge, the gateway's body limit and
/// the proxy to the service's live endpoints.
fn registered_chain(proxy: Proxy, max_body: u64) -> RouteService {
    boxed(InFlightLayer::new().layer(BodyLimitLayer::new(max_body).layer(proxy)))
}

/// The router over whichever table is current: each request loads the table once.
#[derive(Clone)]
pub struct DynamicRouter {
    routes: Arc<ArcSwap<RoutesInner>>,
}

impl std::fmt::Debug for DynamicRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicRouter").finish_non_exhaustive()
    }
}

impl Service<Request<RouteRequestBody>> for DynamicRouter {
    type Response = <Router<RouteService> as Service<Request<RouteRequestBody>>>::Response;
    type Error = Infallible;
    type Future = <Router<RouteService> as Service<Request<RouteRequestBody>>>::Future;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        // The router is always ready: each route's service is readied in its future.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RouteRequestBody>) -> Self::Future {
        let mut router = Router::clone(&self.routes.load().table.load());
        router.call(req)
    }
}

/// Builds the stack from a validated config, with its static routes only.
pub fn build(config: &Config) -> anyhow::Result<Stack> {
    let routes = Routes::new(config)?;
    build_with(config, &routes)
}

/// Builds the stack around `routes`.
pub fn build_with(config: &Config, routes: &Routes) -> anyhow::Result<Stack> {
    let router = routes.router();
    let s = &config.server;
    let trusted = TrustedProxies::parse(s.trusted_proxies.iter().map(|c| c.get_ref().as_str()))
        .context("server.trusted_proxies")?;
    let via = ViaLayer::try_new(s.via.clone()).context("server.via")?;
    // Identity headers are the gateway's to set: a client's copy is removed from
    // every request, not only on routes whose auth policy sets the header, so a
    // route without auth to the same service cannot be used to spoof one.
    let identity_headers = RequestHeadersLayer::deny(identity_headers(config))
        .map_err(|e| anyhow!("identity_header: {e}"))?;
    let access_log = if config.access_log.enabled {
        AccessLogLayer::from_config(&access_log_config(config)).context("access_log")?
    } else {
        AccessLogLayer::disabled()
    };
    // Outermost first.
    // - The request id comes first so that every answer, even a framing error,
    //   names it, and every later layer (and the upstream) sees it.
    // - The access log and metrics wrap everything else so that they see every
    //   response, the gateway's own included, with its cause.
    // - The framing guard runs before anything reads headers, so a smuggling
    //   attempt is refused (and the connection closed) before any header is
    //   trusted.
    // - Hop-by-hop removal precedes the forwarding headers so a client cannot make
    //   us drop them through `Connection`.
    // - Via sits innermost so it marks gateway errors from routes and the router
    //   as well as forwarded responses.
    let body_timeout = BodyTimeoutLayer::new(s.client_body_timeout)
        .min_rate(s.client_body_min_rate, s.client_body_min_rate_after);
    let timing = if s.server_timing {
        ServerTimingLayer::new()
    } else {
        ServerTimingLayer::disabled()
    };
    Ok(RequestIdLayer::new().layer(
        timing.layer(
            access_log.layer(
                MetricsLayer::new().layer(
                    FramingGuardLayer::new().layer(
                        body_timeout.layer(
                            HopByHopLayer::new().layer(
                                ForwardedLayer::new(trusted)
                                    .rfc7239(s.forwarded_header)
                                    .layer(via.layer(identity_headers.layer(router))),
                            ),
                        ),
                    ),
                ),
            ),
        ),
    ))
}

/// Every `identity_header` of the auth policies.
pub(crate) fn identity_headers(config: &Config) -> Vec<String> {
    use portcullis_auth::AuthConfig;
    let mut out: Vec<String> = Vec::new();
    for policy in config.auth.values() {
        let h = match policy.get_ref() {
            AuthConfig::ApiKey(c) => &c.identity_header,
            AuthConfig::Basic(c) => &c.identity_header,
            AuthConfig::Jwt(c) => &c.identity_header,
        };
        if let Some(h) = h {
            if !out.iter().any(|x| x.eq_ignore_ascii_case(h)) {
                out.push(h.to_ascii_lowercase());
            }
        }
    }
    out
}

/// The access log settings, with every API-key policy's header and query
/// parameter added to what is redacted: a key is a credential wherever it is
/// sent, whether or not the operator repeated it in `[access_log]`.
pub(crate) fn access_log_config(config: &Config) -> portcullis_accesslog::AccessLogConfig {
    let mut c = config.access_log.clone();
    for policy in config.auth.values() {
        if let portcullis_auth::AuthConfig::ApiKey(k) = policy.get_ref() {
            if let Some(h) = &k.header {
                if !c.redact_headers.iter().any(|x| x.eq_ignore_ascii_case(h)) {
                    c.redact_headers.push(h.clone());
                }
            }
            if let Some(q) = &k.query {
                if !c.redact_query_params.contains(q) {
                    c.redact_query_params.push(q.clone());
                }
            }
        }
    }
    c
}

fn join<E: std::fmt::Display>(errs: &[E]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The router's view of a route: its host, path, methods and header predicates,
/// and its path edits. Each mistake comes with the span of the key at fault.
pub(crate) fn route_spec(r: &RouteConfig) -> Result<RouteSpec, Vec<Spanned>> {
    let path = r.path.get_ref();
    let name = r
        .name
        .as_ref()
        .map_or(path.as_str(), |n| n.get_ref().as_str());
    let mut errs = Vec::new();
    let mut spec = match RouteSpec::new(name, path) {
        Ok(s) => s,
        Err(e) => return Err(vec![(r.path.span(), e.to_string())]),
    };
    spec = spec.service(r.service.get_ref().as_str());
    macro_rules! step {
        ($span:expr, $call:expr) => {
            match $call {
                Ok(s) => spec = s,
                Err(e) => {
                    errs.push(($span, e.to_string()));
                    return Err(errs);
                }
            }
        };
    }
    if let Some(h) = &r.host {
        step!(h.span(), spec.clone().host(h.get_ref()));
    }
    if let Some(m) = &r.methods {
        step!(m.span(), spec.clone().methods(m.get_ref().iter()));
    }
    for h in &r.headers {
        let p = h.get_ref();
        let pred = match &p.value {
            None => HeaderPredicate::Present,
            Some(v) => match http::HeaderValue::from_str(v) {
                Ok(v) => HeaderPredicate::Equals(v),
                Err(_) => {
                    errs.push((
                        h.span(),
                        format!("header predicate {:?}: invalid value", p.name),
                    ));
                    continue;
                }
            },
        };
        step!(h.span(), spec.clone().header(p.name.as_str(), pred));
    }
    if let Some(p) = &r.strip_prefix {
        step!(p.span(), spec.clone().strip_prefix(p.get_ref()));
    }
    if let Some(p) = &r.rewrite {
        step!(p.span(), spec.clone().rewrite(p.get_ref()));
    }
    if errs.is_empty() { Ok(spec) } else { Err(errs) }
}

/// Boxes a route's service, boxing its response body too.
fn boxed<S, B>(svc: S) -> RouteService
where
    S: Service<Request<RouteRequestBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxCloneSyncService::new(svc.map_response(box_response as fn(Response<B>) -> _))
}

fn box_response<B>(res: Response<B>) -> Response<RouteResponseBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    res.map(|b| b.map_err(Into::into).boxed_unsync())
}

/// A route's chain, outermost first: the in-flight gauge; the after filters (in
/// list order, each wrapping the ones before it, so the first listed acts first
/// on the response and every response of the route passes them all); the before
/// filters in list order; the deny list; the body limit; the proxy.
fn route_chain(
    r: &RouteConfig,
    proxy: Proxy,
    auth: &BTreeMap<&str, AuthLayer>,
    limits: &Limits,
    default_max_body: u64,
) -> anyhow::Result<RouteService> {
    let mut proxy = proxy;
    let mut deny = Vec::new();
    let mut limit: Option<u64> = r.max_body;
    for f in &r.filters {
        match f.get_ref() {
            FilterConfig::Timeout(d) => proxy = proxy.response_header_timeout(*d),
            FilterConfig::RequestTimeout(d) => proxy = proxy.request_timeout(*d),
            FilterConfig::ConnectTimeout(d) => proxy = proxy.connect_timeout(*d),
            FilterConfig::Retry(policy) => proxy = proxy.retry(policy),
            FilterConfig::DenyHeaders(names) => deny.extend(names.iter().cloned()),
            FilterConfig::BodyLimit(max) => limit = Some(limit.map_or(*max, |l| l.min(*max))),
            _ => {}
        }
    }
    // The body limit sits right in front of the proxy, wherever its filter stands:
    // it must see the body stream the proxy reads, and answers 413 when the
    // proxy's upload fails on it. The deny list goes last on the request,
    // whatever filters did before it (an empty list costs nothing).
    let limit = limit.unwrap_or(default_max_body);
    let deny = RequestHeadersLayer::deny(&deny).map_err(|e| anyhow!("deny_headers: {e}"))?;
    let base = deny.layer(BodyLimitLayer::new(limit).layer(proxy));

    // The wrapping filters, outermost first: after filters (the first listed is
    // the innermost of them, so it acts first on the response; they wrap the
    // before filters so every response of the route passes them), then before
    // filters in list order (the first listed acts first on the request), then
    // the `length_required` shorthand.
    let mut steps: Vec<Step> = Vec::new();
    for f in r.filters.iter().rev() {
        if let FilterConfig::ResponseHeaders(rules) = f.get_ref() {
            let rules = HeaderRules::from_config(rules)
                .map_err(|e| anyhow!("response_headers: {}", join(&e)))?;
            steps.push(Step::Response(ResponseHeadersLayer::new(rules)));
        }
    }
    let mut limited = false;
    for f in &r.filters {
        match f.get_ref() {
            FilterConfig::Auth(name) => {
                let layer = auth
                    .get(name.as_str())
                    .ok_or_else(|| anyhow!("unknown auth policy {name:?}"))?;
                steps.push(Step::Auth(layer.clone()));
            }
            FilterConfig::RequestHeaders(rules) => {
                let rules = HeaderRules::from_config(rules)
                    .map_err(|e| anyhow!("request_headers: {}", join(&e)))?;
                steps.push(Step::Request(RequestHeadersLayer::new(rules)));
            }
            FilterConfig::LengthRequired(true) => steps.push(Step::LengthRequired),
            // Every rate limit of the route in one layer, where the first
            // `rate_limit` filter stands: a request is counted by all of them or
            // by none.
            FilterConfig::RateLimit(_) if !limited => {
                limited = true;
                let names: Vec<&str> = r
                    .filters
                    .iter()
                    .filter_map(|f| match f.get_ref() {
                        FilterConfig::RateLimit(n) => Some(n.names()),
                        _ => None,
                    })
                    .flatten()
                    .map(String::as_str)
                    .collect();
                let (_, all) = limits
                    .as_ref()
                    .ok_or_else(|| anyhow!("rate_limit filter without [[rate_limits]]"))?;
                let layer = all.select(&names).context("rate_limit filter")?;
                steps.push(Step::RateLimit(layer));
            }
            _ => {}
        }
    }
    if r.length_required {
        steps.push(Step::LengthRequired);
    }
    // Box once per wrapping filter (none for a route without any): the innermost
    // wraps the typed base, the outermost also takes the in-flight gauge.
    let Some((innermost, rest)) = steps.split_last() else {
        return Ok(boxed(InFlightLayer::new().layer(base)));
    };
    let mut svc = innermost.wrap(base, rest.is_empty());
    for (i, step) in rest.iter().enumerate().rev() {
        svc = step.wrap(svc, i == 0);
    }
    Ok(svc)
}

/// One wrapping filter of a route's chain.
enum Step {
    Auth(AuthLayer),
    Request(RequestHeadersLayer),
    Response(ResponseHeadersLayer),
    RateLimit(RateLimitLayer),
    LengthRequired,
}

impl Step {
    /// Wraps `svc` in this filter (and, when `outermost`, in the in-flight
    /// gauge), boxed.
    fn wrap<S, B>(&self, svc: S, outermost: bool) -> RouteService
    where
        S: Service<Request<RouteRequestBody>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        fn finish<T, B2>(svc: T, outermost: bool) -> RouteService
        where
            T: Service<Request<RouteRequestBody>, Response = Response<B2>, Error = Infallible>
                + Clone
                + Send
                + Sync
                + 'static,
            T::Future: Send + 'static,
            B2: Body<Data = Bytes> + Send + 'static,
            B2::Error: Into<BoxError>,
        {
            if outermost {
                boxed(InFlightLayer::new().layer(svc))
            } else {
                boxed(svc)
            }
        }
        match self {
            Step::Auth(l) => finish(l.layer(svc), outermost),
            Step::Request(l) => finish(l.layer(svc), outermost),
            Step::Response(l) => finish(l.layer(svc), outermost),
            Step::RateLimit(l) => finish(l.layer(svc), outermost),
            Step::LengthRequired => finish(LengthRequiredLayer::new().layer(svc), outermost),
        }
    }
}

/// The listener limits of a config.
pub fn limits(config: &Config) -> ListenerLimits {
    let s = &config.server;
    ListenerLimits {
        max_connections: s.max_connections,
        connection_wait: s.connection_wait,
        header_timeout: s.header_timeout,
        keepalive_timeout: s.keepalive_timeout,
        send_timeout: s.send_timeout,
        max_header_bytes: usize::try_from(s.max_header_bytes).unwrap_or(usize::MAX),
        max_headers: s.max_headers,
        max_uri_bytes: usize::try_from(s.max_uri_bytes).unwrap_or(usize::MAX),
        http2: s.http2,
        shutdown_timeout: s.shutdown_timeout,
        max_requests_per_connection: s.max_requests_per_connection,
        max_connection_lifetime: s.max_connection_lifetime,
    }
}
