//! The admin API (R12, DESIGN "Contracts"); see [`AdminApi`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use portcullis_core::{Cause, ErrorResponse, PORTCULLIS_ERROR};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::model::{EndpointSpec, RouteSpec, ServiceSpec};
use crate::registry::{
    EndpointChange, Registry, ServiceChange, ServiceEntry, Snapshot, now_unix_ms,
};
use crate::store::StateStore;
use crate::validate::{RegistrationError, describe_route, routes_overlap};

#[cfg(test)]
mod tests;

/// The largest accepted request body: 64 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The deepest accepted JSON nesting of a request body.
pub const MAX_JSON_DEPTH: usize = 16;

/// The OpenAPI document describing this API, served at `/api/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

const X_REQUEST_ID: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 200;
const CHALLENGE: &str = "Bearer realm=\"portcullis-admin\"";

/// What the reload hook returns: `Ok` when the new config is live, or every reason it
/// was refused (the old config stays).
pub type ReloadFuture = Pin<Box<dyn Future<Output = Result<(), Vec<String>>> + Send>>;
/// The reload hook ([`AdminApi::reload`]).
pub type ReloadHook = Arc<dyn Fn() -> ReloadFuture + Send + Sync>;
/// The effective route table as JSON ([`AdminApi::routes_view`]).
pub type RoutesView = Arc<dyn Fn() -> Value + Send + Sync>;

/// The health of one endpoint (`service`, `id`) as JSON, for
/// `GET /api/v1/services/{service}`; `None` when nothing is known.
pub type EndpointHealthView = Arc<dyn Fn(&str, &str) -> Option<Value> + Send + Sync>;
/// The wall clock in UNIX milliseconds ([`AdminApi::clock`]).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A bearer token for the admin API. Its `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct AdminToken(String);

/// The parts of an [`AdminApi`] that come from the gateway's config and change on a
/// reload: per-service tokens, reserved routes, filter-set names. Clones share them.
#[derive(Clone, Default)]
pub struct AdminRules {
    inner: Arc<arc_swap::ArcSwap<Rules>>,
}

#[derive(Default)]
struct Rules {
    service_tokens: Vec<(String, AdminToken)>,
    reserved: Vec<ReservedRoute>,
    filter_sets: Option<Vec<String>>,
}

impl AdminRules {
    /// Replaces all three at once (see [`AdminApi::service_tokens`],
    /// [`AdminApi::reserved_routes`], [`AdminApi::filter_sets`]).
    pub fn replace(
        &self,
        service_tokens: HashMap<String, AdminToken>,
        reserved: Vec<ReservedRoute>,
        filter_sets: Option<Vec<String>>,
    ) {
        self.inner.store(Arc::new(Rules {
            service_tokens: sorted_tokens(service_tokens),
            reserved,
            filter_sets,
        }));
    }

    fn current(&self) -> Arc<Rules> {
        self.inner.load_full()
    }

    fn update(&self, f: impl Fn(&mut Rules)) {
        self.inner.rcu(|old| {
            let mut r = Rules {
                service_tokens: old.service_tokens.clone(),
                reserved: old.reserved.clone(),
                filter_sets: old.filter_sets.clone(),
            };
            f(&mut r);
            r
        });
    }
}

impl fmt::Debug for AdminRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.current();
        f.debug_struct("AdminRules")
            .field("service_tokens", &r.service_tokens.len())
            .field("reserved", &r.reserved)
            .field("filter_sets", &r.filter_sets)
            .finish()
    }
}

fn sorted_tokens(tokens: HashMap<String, AdminToken>) -> Vec<(String, AdminToken)> {
    let mut tokens: Vec<_> = tokens.into_iter().collect();
    tokens.sort_by(|a, b| a.0.cmp(&b.0));
    tokens
}

/// A route of a service from the static config: registrations may not take it, nor the
/// service's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedRoute {
    /// The `Host` matched; any host when `None`.
    pub host: Option<String>,
    /// The path (exact, prefix or template), as in [`RouteSpec::path`].
    pub path: String,
    /// The methods matched; all when `None`.
    pub methods: Option<Vec<String>>,
    /// The static service that owns the route.
    pub owner: String,
}

/// The admin API: an axum router over a [`Registry`] and a [`StateStore`], mounted by the
/// gateway on its admin listener. Build it, then serve [`AdminApi::router`].
///
/// # Routes
///
/// | method and path | answers |
/// | --- | --- |
/// | `GET /api/v1/openapi.json` | 200, the OpenAPI document (no token needed) |
/// | `GET /api/v1/services` | 200 `{"services": [Service]}` |
/// | `GET /api/v1/services/{service}` | 200 Service, 404 `service_not_found` |
/// | `PUT /api/v1/services/{service}` | 201 created / 200 replaced, the stored Service |
/// | `DELETE /api/v1/services/{service}` | 204, 404 `service_not_found` |
/// | `PUT /api/v1/services/{service}/endpoints/{id}` | 201 registered / 200 renewed (the heartbeat) |
/// | `DELETE /api/v1/services/{service}/endpoints/{id}` | 204, 404 |
/// | `GET /api/v1/routes` | 200, the effective route table |
/// | `POST /api/v1/reload` | 200 `{"status":"reloaded"}`, 422 `invalid_config`, 501 `reload_unavailable` |
///
/// # Authentication
///
/// Every route but `openapi.json` needs `Authorization: Bearer <token>`, GETs too. No
/// or a malformed header: 401 `missing_credentials` with
/// `WWW-Authenticate: Bearer realm="portcullis-admin"`. A token that matches neither the
/// admin token nor a service token: 403 `bad_credentials`. Tokens are compared in
/// constant time. A service token ([`AdminApi::service_tokens`]) may only `PUT`/`DELETE`
/// its own service and its endpoints; anything else is 403 `bad_credentials`.
///
/// # Ordering
///
/// Mutations run one at a time (a tokio mutex): check the token, validate, apply to the
/// [`Registry`], then `store.save(registry.to_stored())`; the answer is sent only after
/// the save returned `Ok`, so save order is apply order and a 2xx means durable. When
/// the save fails, the registry is restored to its state before the change and the
/// answer is 503 `store_unavailable`. The save has no timeout of its own: a store that
/// can hang must bound its own i/o.
///
/// # Limits and defaults
///
/// | what | bound |
/// | --- | --- |
/// | request body | ≤ [`MAX_BODY_BYTES`] (64 KiB), else 413 `payload_too_large` |
/// | JSON nesting | ≤ [`MAX_JSON_DEPTH`] (16), else 400 `invalid_registration` |
/// | content type | `application/json`, else 400 `invalid_registration` |
/// | clock | [`now_unix_ms`] |
/// | routes view | the registry's routes |
///
/// Errors have the R6 shape `{"error", "status", "request_id", "service"}` plus a
/// `"message"` (and `"owner"` for `route_conflict`, `"reasons"` for a failed reload) and
/// a `portcullis-error` header. Each change is logged at `info` (`service`, `endpoint`,
/// `kind`); the token never is.
#[derive(Clone)]
pub struct AdminApi {
    registry: Arc<Registry>,
    store: Arc<dyn StateStore>,
    token: AdminToken,
    rules: AdminRules,
    reload: Option<ReloadHook>,
    routes_view: Option<RoutesView>,
    endpoint_health: Option<EndpointHealthView>,
    clock: Clock,
    write: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    OpenApi,
    ListServices,
    GetService,
    PutService,
    DeleteService,
    PutEndpoint,
    DeleteEndpoint,
    Routes,
    Reload,
}

/// Every route the router serves: the router is built from it and the OpenAPI test
/// checks it against `openapi.json` (the crate's copy of `docs/openapi.json`), so
/// they cannot drift.
const ROUTES: &[(&str, &str, Op)] = &[
    ("GET", "/api/v1/openapi.json", Op::OpenApi),
    ("GET", "/api/v1/services", Op::ListServices),
    ("GET", "/api/v1/services/{service}", Op::GetService),
    ("PUT", "/api/v1/services/{service}", Op::PutService),
    ("DELETE", "/api/v1/services/{service}", Op::DeleteService),
    (
        "PUT",
        "/api/v1/services/{service}/endpoints/{id}",
        Op::PutEndpoint,
    ),
    (
        "DELETE",
        "/api/v1/services/{service}/endpoints/{id}",
        Op::DeleteEndpoint,
    ),
    ("GET", "/api/v1/routes", Op::Routes),
    ("POST", "/api/v1/reload", Op::Reload),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Principal {
    Admin,
    Service(String),
}

/// An error answer, rendered in the R6 shape plus `message`.
#[derive(Debug)]
struct ApiError {
    kind: Kind,
    message: String,
    service: Option<String>,
    owner: Option<String>,
    reasons: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Core(Cause),
    Own(&'static str, StatusCode),
}

type ApiResult = Result<Response, ApiError>;

// === impl AdminToken ===

impl AdminToken {
    /// A token with this secret value.
    pub fn new(secret: impl Into<String>) -> Self {
        AdminToken(secret.into())
    }

    /// Whether `presented` is this token, compared in constant time (for equal lengths).
    fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

// === impl ReservedRoute ===

impl ReservedRoute {
    fn as_route_spec(&self) -> RouteSpec {
        RouteSpec {
            host: self.host.clone(),
            path: self.path.clone(),
            methods: self.methods.clone(),
            strip_prefix: None,
        }
    }
}

// === impl AdminApi ===

impl fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminApi")
            .field("registry", &self.registry)
            .field("store", &self.store)
            .field("token", &self.token)
            .field("rules", &self.rules)
            .field("reload", &self.reload.is_some())
            .field("routes_view", &self.routes_view.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminApi {
    /// An admin API over `registry`, saving every change to `store`, guarded by `token`.
    pub fn new(registry: Arc<Registry>, store: Arc<dyn StateStore>, token: AdminToken) -> Self {
        AdminApi {
            registry,
            store,
            token,
            rules: AdminRules::default(),
            reload: None,
            routes_view: None,
            endpoint_health: None,
            clock: Arc::new(now_unix_ms),
            write: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Per-service tokens, by service name: each may only `PUT`/`DELETE` that service and
    /// register, heartbeat and deregister its endpoints. Default: none.
    #[must_use]
    pub fn service_tokens(self, tokens: HashMap<String, AdminToken>) -> Self {
        self.rules
            .update(|r| r.service_tokens = sorted_tokens(tokens.clone()));
        self
    }

    /// The routes of static config services: a registration that overlaps one, or takes
    /// a static service's name, is 409 `route_conflict`. Default: none.
    #[must_use]
    pub fn reserved_routes(self, routes: Vec<ReservedRoute>) -> Self {
        self.rules.update(|r| r.reserved = routes.clone());
        self
    }

    /// The filter sets a service may name in its `filters` field; any other name
    /// is 400 `invalid_registration`. Default: any name is accepted (the embedder
    /// checks).
    #[must_use]
    pub fn filter_sets(self, names: Vec<String>) -> Self {
        self.rules.update(|r| r.filter_sets = Some(names.clone()));
        self
    }

    /// The handle that replaces the service tokens, reserved routes and filter
    /// sets of this API (and of every router made from it) at once, for a config
    /// reload: requests already past their checks finish with the old ones.
    pub fn rules(&self) -> AdminRules {
        self.rules.clone()
    }

    /// The lock every change of the registry takes, shared with whatever else
    /// changes it and saves (a lease-expiry task, a resync from a shared store),
    /// so that a change and its save are never interleaved with another.
    /// Default: a lock of this API's own.
    #[must_use]
    pub fn write_lock(mut self, lock: Arc<tokio::sync::Mutex<()>>) -> Self {
        self.write = lock;
        self
    }

    /// The hook `POST /api/v1/reload` runs. Default: none (501).
    #[must_use]
    pub fn reload(mut self, hook: ReloadHook) -> Self {
        self.reload = Some(hook);
        self
    }

    /// What `GET /api/v1/routes` answers (the effective table, static routes included).
    /// Default: the registry's routes, `{"routes": [{service, host, path, methods,
    /// strip_prefix}]}`.
    #[must_use]
    pub fn routes_view(mut self, view: RoutesView) -> Self {
        self.routes_view = Some(view);
        self
    }

    /// Where `GET /api/v1/services/{service}` finds each endpoint's health (added as
    /// its `health` field). Default: none (no `health` field).
    #[must_use]
    pub fn endpoint_health(mut self, view: EndpointHealthView) -> Self {
        self.endpoint_health = Some(view);
        self
    }

    /// The clock leases are computed with, in UNIX ms. Default: [`now_unix_ms`].
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The axum router serving the routes listed on [`AdminApi`], with JSON error
    /// answers for unknown paths (404 `no_route`) and methods (405 `method_not_allowed`).
    pub fn router(&self) -> Router {
        let mut router: Router<Arc<AdminApi>> = Router::new();
        for &(method, path, op) in ROUTES {
            let filter = match method {
                "GET" => MethodFilter::GET,
                "PUT" => MethodFilter::PUT,
                "DELETE" => MethodFilter::DELETE,
                "POST" => MethodFilter::POST,
                _ => continue,
            };
            let route: MethodRouter<Arc<AdminApi>> = match op {
                Op::OpenApi => on(filter, openapi),
                Op::ListServices => on(filter, list_services),
                Op::GetService => on(filter, get_service),
                Op::PutService => on(filter, put_service),
                Op::DeleteService => on(filter, delete_service),
                Op::PutEndpoint => on(filter, put_endpoint),
                Op::DeleteEndpoint => on(filter, delete_endpoint),
                Op::Routes => on(filter, routes),
                Op::Reload => on(filter, reload),
            };
            router = router.route(path, route);
        }
        router
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(Arc::new(self.clone()))
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Who presents the request's bearer token: 401 without one, 403 when it is unknown.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let presented = bearer(headers).ok_or_else(|| {
            ApiError::core(
                Cause::MissingCredentials,
                "an Authorization: Bearer token is required",
            )
        })?;
        // Check every token, so the time taken does not tell which one matched.
        let mut found = self.token.matches(presented).then_some(Principal::Admin);
        let rules = self.rules.current();
        for (service, token) in &rules.service_tokens {
            if token.matches(presented) && found.is_none() {
                found = Some(Principal::Service(service.clone()));
            }
        }
        found.ok_or_else(|| ApiError::core(Cause::BadCredentials, "the token is not valid"))
    }

    /// Whether `principal` may do this: the admin always; a service token only on its
    /// own service's mutations (`service` is `Some` only for those).
    fn authorize(principal: &Principal, service: Option<&str>) -> Result<(), ApiError> {
        match (principal, service) {
            (Principal::Admin, _) => Ok(()),
            (Principal::Service(own), Some(target)) if own == target => Ok(()),
            (Principal::Service(own), _) => Err(ApiError::core(
                Cause::BadCredentials,
                format!("this token may only change service {own:?} and its endpoints"),
            )),
        }
    }

    /// Saves the registry after a change; on failure restores `before` and answers 503.
    async fn persist(&self, before: crate::store::StoredState) -> Result<(), ApiError> {
        let stored = self.registry.to_stored();
        match self.store.save(&stored).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.registry.restore(before, self.now());
                tracing::warn!(error = %e, "registry change not saved, rolled back");
                Err(ApiError::own(
                    "store_unavailable",
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the change was not saved and was undone: {e}"),
                ))
            }
        }
    }

    fn check_reserved(&self, name: &str, spec: &ServiceSpec) -> Result<(), ApiError> {
        let rules = self.rules.current();
        if let (Some(set), Some(known)) = (&spec.filters, &rules.filter_sets) {
            if !known.iter().any(|k| k == set) {
                return Err(ApiError::invalid(format!(
                    "filters: no filter set {set:?} in the gateway's config (known: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        }
        if let Some(r) = rules.reserved.iter().find(|r| r.owner == name) {
            return Err(ApiError::conflict(
                format!("service name {name:?} belongs to a static config service"),
                &r.owner,
            ));
        }
        for mine in &spec.routes {
            for reserved in &rules.reserved {
                let theirs = reserved.as_route_spec();
                if routes_overlap(mine, &theirs) {
                    return Err(ApiError::conflict(
                        format!(
                            "route {} overlaps {} of static service {:?}",
                            describe_route(mine),
                            describe_route(&theirs),
                            reserved.owner
                        ),
                        &reserved.owner,
                    ));
                }
            }
        }
        Ok(())
    }

    fn default_routes(&self) -> Value {
        let snapshot = self.registry.snapshot();
        let routes: Vec<Value> = snapshot
            .services()
            .iter()
            .flat_map(|(name, entry)| {
                entry.spec.routes.iter().map(move |r| {
                    json!({
                        "service": name,
                        "host": r.host,
                        "path": r.path,
                        "methods": r.methods,
                        "strip_prefix": r.strip_prefix,
                    })
                })
            })
            .collect();
        json!({ "routes": routes })
    }
}

// === impl ApiError ===

impl ApiError {
    fn core(cause: Cause, message: impl Into<String>) -> Self {
        ApiError {
            kind: Kind::Core(cause),
            message: message.into(),
            service: None,
            owner: None,
            reasons: None,
        }
    }

    fn own(cause: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            kind: Kind::Own(cause, status),
            message: message.into(),
            service: None,
            owner: None,
            reasons: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        ApiError::own("invalid_registration", StatusCode::BAD_REQUEST, message)
    }

    fn conflict(message: String, owner: &str) -> Self {
        let mut e = ApiError::own("route_conflict", StatusCode::CONFLICT, message);
        e.owner = Some(owner.to_owned());
        e
    }

    fn service_not_found(service: &str) -> Self {
        ApiError::own(
            "service_not_found",
            StatusCode::NOT_FOUND,
            format!("no service {service:?}"),
        )
    }

    fn for_service(mut self, service: &str) -> Self {
        self.service = Some(service.to_owned());
        self
    }

    fn render(self, request_id: Option<&str>) -> Response {
        let (cause, status) = match self.kind {
            Kind::Core(c) => (c.as_str(), c.status()),
            Kind::Own(c, s) => (c, s),
        };
        let mut body = Map::new();
        body.insert("error".into(), Value::from(cause));
        body.insert("status".into(), Value::from(status.as_u16()));
        body.insert("request_id".into(), Value::from(request_id));
        body.insert("service".into(), Value::from(self.service.clone()));
        body.insert("message".into(), Value::from(self.message));
        if let Some(owner) = self.owner {
            body.insert("owner".into(), Value::from(owner));
        }
        if let Some(reasons) = self.reasons {
            body.insert("reasons".into(), Value::from(reasons));
        }
        let json = Value::Object(body).to_string();
        match self.kind {
            Kind::Core(c) => {
                let mut e = ErrorResponse::new(c);
                if let Some(id) = request_id {
                    e = e.request_id(id);
                }
                if let Some(service) = self.service {
                    e = e.service(service);
                }
                if c == Cause::MissingCredentials {
                    e = e.www_authenticate(HeaderValue::from_static(CHALLENGE));
                }
                let (parts, _) = e.build().into_parts();
                Response::from_parts(parts, Body::from(json))
            }
            Kind::Own(cause, status) => {
                let mut res = Response::new(Body::from(json));
                *res.status_mut() = status;
                let h = res.headers_mut();
                h.insert(PORTCULLIS_ERROR, HeaderValue::from_static(cause));
                h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if let Some(id) = request_id.and_then(|v| HeaderValue::from_str(v).ok()) {
                    h.insert(X_REQUEST_ID, id);
                }
                res
            }
        }
    }
}

impl From<RegistrationError> for ApiError {
    fn from(e: RegistrationError) -> Self {
        let cause = e.as_str();
        let status = e.status();
        match e {
            RegistrationError::RouteConflict { message, owner } => {
                ApiError::conflict(message, &owner)
            }
            other => ApiError::own(cause, status, other.message()),
        }
    }
}

// === request helpers ===

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_REQUEST_ID_LEN)
        .map(str::to_owned)
}

/// The token of a single, well-formed `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let value = all.next()?;
    if all.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    let well_formed = scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_graphic());
    well_formed.then_some(token.as_bytes())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether `bytes` nest arrays and objects at most `max` deep (strings skipped).
fn depth_within(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Reads and parses a JSON body under the size, type and depth bounds.
async fn read_json<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, ApiError> {
    let too_large = || {
        ApiError::own(
            "payload_too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    if !is_json(headers) {
        return Err(ApiError::invalid(
            "the body must be JSON, sent with Content-Type: application/json",
        ));
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let bytes: Bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(e) => {
            return Err(ApiError::invalid(format!(
                "the body could not be read: {e}"
            )));
        }
    };
    if !depth_within(&bytes, MAX_JSON_DEPTH) {
        return Err(ApiError::invalid(format!(
            "the JSON body nests deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("the JSON body is invalid: {e}")))
}

fn path_error(e: &PathRejection) -> ApiError {
    ApiError::invalid(format!("invalid path: {}", e.body_text()))
}

fn json_response(status: StatusCode, value: Value) -> Response {
    let mut res = (status, axum::Json(value)).into_response();
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn endpoint_json(id: &str, endpoint: &crate::registry::Endpoint, now: u64) -> Value {
    let mut v = serde_json::to_value(&endpoint.spec).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("id".into(), Value::from(id));
        map.insert(
            "lease_expires_in_ms".into(),
            Value::from(endpoint.lease_expires.saturating_sub(now)),
        );
        map.insert(
            "lease_expires_at_ms".into(),
            Value::from(endpoint.lease_expires),
        );
    }
    v
}

fn service_json(name: &str, entry: &ServiceEntry, now: u64) -> Value {
    let mut v = serde_json::to_value(&entry.spec).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("name".into(), Value::from(name));
        let endpoints: Vec<Value> = entry
            .endpoints
            .iter()
            .map(|(id, e)| endpoint_json(id, e, now))
            .collect();
        map.insert("endpoints".into(), Value::from(endpoints));
    }
    v
}

impl AdminApi {
    /// Adds each endpoint's `health`, when a view is configured.
    fn with_health(&self, service: &str, mut v: Value) -> Value {
        let Some(view) = &self.endpoint_health else {
            return v;
        };
        if let Some(Value::Array(eps)) = v.get_mut("endpoints") {
            for ep in eps {
                let id = ep.get("id").and_then(Value::as_str).map(str::to_owned);
                if let (Some(id), Value::Object(map)) = (id, ep) {
                    if let Some(h) = view(service, &id) {
                        map.insert("health".into(), h);
                    }
                }
            }
        }
        v
    }
}

fn snapshot_service(snapshot: &Snapshot, name: &str, now: u64) -> Option<Value> {
    snapshot.service(name).map(|e| service_json(name, e, now))
}

/// Runs a handler body and renders its error with the request's id.
async fn answer<F: Future<Output = ApiResult>>(request_id: Option<String>, f: F) -> Response {
    match f.await {
        Ok(res) => res,
        Err(e) => e.render(request_id.as_deref()),
    }
}

// === handlers ===

async fn openapi() -> Response {
    let mut res = OPENAPI_JSON.into_response();
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

async fn not_found(req: Request) -> Response {
    ApiError::core(Cause::NoRoute, "no such admin route")
        .render(request_id(req.headers()).as_deref())
}

async fn method_not_allowed(req: Request) -> Response {
    ApiError::core(
        Cause::MethodNotAllowed,
        format!("method {} is not allowed here", req.method()),
    )
    .render(request_id(req.headers()).as_deref())
}

async fn list_services(State(api): State<Arc<AdminApi>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    answer(request_id(&parts.headers), async move {
        let principal = api.authenticate(&parts.headers)?;
        AdminApi::authorize(&principal, None)?;
        let now = api.now();
        let snapshot = api.registry.snapshot();
        let services: Vec<Value> = snapshot
            .services()
            .iter()
            .map(|(name, entry)| service_json(name, entry, now))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            json!({ "services": services }),
        ))
    })
    .await
}

async fn get_service(
    State(api): State<Arc<AdminApi>>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let (parts, _body) = req.into_parts();
    answer(request_id(&parts.headers), async move {
        let principal = api.authenticate(&parts.headers)?;
        let Path(service) = path.map_err(|e| path_error(&e))?;
        AdminApi::authorize(&principal, None)?;
        let snapshot = api.registry.snapshot();
        let value = snapshot_service(&snapshot, &service, api.now())
            .map(|v| api.with_health(&service, v))
            .ok_or_else(|| ApiError::service_not_found(&service).for_service(&service))?;
        Ok(json_response(StatusCode::OK, value))
    })
    .await
}

async fn put_service(
    State(api): State<Arc<AdminApi>>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    answer(request_id(&parts.headers), async move {
        let principal = api.authenticate(&parts.headers)?;
        let Path(service) = path.map_err(|e| path_error(&e))?;
        AdminApi::authorize(&principal, Some(&service))?;
        let tag = |e: ApiError| e.for_service(&service);
        let spec: ServiceSpec = read_json(&parts.headers, body).await.map_err(tag)?;
        api.check_reserved(&service, &spec).map_err(tag)?;

        let _write = api.write.lock().await;
        let before = api.registry.to_stored();
        let change = api
            .registry
            .put_service(&service, spec)
            .map_err(|e| tag(e.into()))?;
        api.persist(before).await.map_err(tag)?;
        let (status, kind) = match change {
            ServiceChange::Created => (StatusCode::CREATED, "service_created"),
            ServiceChange::Replaced => (StatusCode::OK, "service_replaced"),
        };
        tracing::info!(service = %service, kind, "admin registry change");
        let value = snapshot_service(&api.registry.snapshot(), &service, api.now())
            .ok_or_else(|| ApiError::service_not_found(&service).for_service(&service))?;
        Ok(json_response(status, value))
    })
    .await
}

async fn delete_service(
    State(api): State<Arc<AdminApi>>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let (parts, _body) = req.into_parts();
    answer(request_id(&parts.headers), async move {
        let principal = api.authenticate(&parts.headers)?;
        let Path(service) = path.map_err(|e| path_error(&e))?;
        AdminApi::authorize(&principal, Some(&service))?;
        let _write = api.write.lock().await;
        let before = api.registry.to_stored();
        if api.registry.delete_service(&service).is_none() {
            return Err(ApiError::service_not_found(&service).for_service(&service));
        }
        api.persist(before)
            .await
            .map_err(|e| e.for_service(&service))?;
        tracing::info!(service = %service, kind = "service_deleted", "admin registry change");
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

async fn put_endpoint(
    State(api): State<Arc<AdminApi>>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    answer(request_id(&parts.headers), async move {
        let principal = api.authenticate(&parts.headers)?;
        let Path((service, id)) = path.map_err(|e| path_error(&e))?;
        AdminApi::authorize(&principal, Some(&service))?;
        let tag = |e: ApiError| e.for_service(&service);
        let spec: EndpointSpec = read_json(&parts.headers, body).await.map_err(tag)?;

        let _write = api.write.lock().await;
        let before = api.registry.to_stored();
        let now = api.now();
        let put = api
            .registry
            .put_endpoint(&service, &id, spec, now)
            .map_err(|e| tag(e.into()))?;
        api.persist(before).await.map_err(tag)?;
        let (status, kind) = match put.change {
            EndpointChange::Created => (StatusCode::CREATED, "endpoint_registered"),
            EndpointChange::Renewed => (StatusCode::OK, "endpoint_renewed"),
        };
        tracing::info!(service = %service, endpoint = %id, kind, "admin registry change");
        Ok(json_response(
            status,
            endpoint_json(&id, &put.endpoint, now),
        ))
    })
    .await
}

async fn delete_endpoint(
    State(api): State<Arc<AdminApi>>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Response {
    let (parts, _body) = req.into_parts();
    answer(request_id(&parts.headers), async move {
        let principal = api.authenticate(&parts.headers)?;
        let Path((service, id)) = path.map_err(|e| path_error(&e))?;
        AdminApi::authorize(&principal, Some(&service))?;
        let _write = api.write.lock().await;
        let before = api.registry.to_stored();
        if api.registry.delete_endpoint(&service, &id).is_none() {
            let e = if api.registry.snapshot().service(&service).is_none() {
                ApiError::service_not_found(&service)
            } else {
                ApiError::own(
                    "endpoint_not_found",
                    StatusCode::NOT_FOUND,
                    format!("service {service:?} has no endpoint {id:?}"),
                )
            };
            return Err(e.for_service(&service));
        }
        api.persist(before)
            .await
            .map_err(|e| e.for_service(&service))?;
        tracing::info!(
            service = %service, endpoint = %id, kind = "endpoint_deregistered",
            "admin registry change"
        );
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

async fn routes(State(api): State<Arc<AdminApi>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    answer(request_id(&parts.headers), async move {
        let principal = api.authenticate(&parts.headers)?;
        AdminApi::authorize(&principal, None)?;
        let value = match &api.routes_view {
            Some(view) => view(),
            None => api.default_routes(),
        };
        Ok(json_response(StatusCode::OK, value))
    })
    .await
}

async fn reload(State(api): State<Arc<AdminApi>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    answer(request_id(&parts.headers), async move {
        let principal = api.authenticate(&parts.headers)?;
        AdminApi::authorize(&principal, None)?;
        let Some(hook) = &api.reload else {
            return Err(ApiError::own(
                "reload_unavailable",
                StatusCode::NOT_IMPLEMENTED,
                "this gateway has no reload hook",
            ));
        };
        match hook().await {
            Ok(()) => {
                tracing::info!(kind = "config_reloaded", "admin reload");
                Ok(json_response(
                    StatusCode::OK,
                    json!({ "status": "reloaded" }),
                ))
            }
            Err(reasons) => {
                tracing::warn!(reasons = reasons.len(), "admin reload refused");
                let mut e = ApiError::own(
                    "invalid_config",
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "the new config was refused, the old one stays: {}",
                        reasons.join("; ")
                    ),
                );
                e.reasons = Some(reasons);
                Err(e)
            }
        }
    })
    .await
}
