use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::store::{FileStore, StoreError, StoreFuture, StoredState};
use crate::validate::Policy;

const ADMIN: &str = "admin-secret";
const BILLING: &str = "billing-secret";

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        TempDir(std::env::temp_dir().join(format!(
            "portcullis-admin-{tag}-{}-{}-{}",
            std::process::id(),
            now_unix_ms(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store that fails while `fail` is set, else keeps the last state in memory.
#[derive(Debug, Default)]
struct FlakyStore {
    fail: AtomicBool,
    saved: std::sync::Mutex<Option<StoredState>>,
}

impl StateStore for FlakyStore {
    fn load(&self) -> StoreFuture<'_, Option<StoredState>> {
        Box::pin(async { Ok(self.saved.lock().unwrap().clone()) })
    }

    fn save<'a>(&'a self, state: &'a StoredState) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Task);
            }
            *self.saved.lock().unwrap() = Some(state.clone());
            Ok(())
        })
    }
}

struct Harness {
    router: Router,
    registry: Arc<Registry>,
    clock: Arc<AtomicU64>,
    _dir: TempDir,
    store: FileStore,
}

fn harness() -> Harness {
    let dir = TempDir::new("t");
    let store = FileStore::new(&dir.0);
    let registry = Arc::new(Registry::new(Policy {
        own_addrs: vec!["127.0.0.1:9090".parse().unwrap()],
        ..Policy::default()
    }));
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let c = clock.clone();
    let api = AdminApi::new(
        registry.clone(),
        Arc::new(store.clone()),
        AdminToken::new(ADMIN),
    )
    .service_tokens(HashMap::from([(
        "billing".to_owned(),
        AdminToken::new(BILLING),
    )]))
    .reserved_routes(vec![ReservedRoute {
        host: None,
        path: "/static/".to_owned(),
        methods: None,
        owner: "legacy".to_owned(),
    }])
    .clock(Arc::new(move || c.load(Ordering::SeqCst)));
    Harness {
        router: api.router(),
        registry,
        clock,
        _dir: dir,
        store,
    }
}

fn req(method: &str, uri: &str, token: Option<&str>, body: Option<&str>) -> Request {
    let mut b = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("x-request-id", "rid-1");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    match body {
        Some(body) => b
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

async fn call(router: &Router, req: Request) -> (StatusCode, HeaderMap, Value) {
    let res = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (parts.status, parts.headers, value)
}

fn assert_error((status, headers, body): &(StatusCode, HeaderMap, Value), want: u16, cause: &str) {
    assert_eq!(status.as_u16(), want, "{body}");
    assert_eq!(headers["portcullis-error"], cause);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["error"], cause);
    assert_eq!(body["status"], want);
    assert_eq!(body["request_id"], "rid-1");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

const SVC: &str = r#"{"routes":[{"path":"/droplets/{id}","methods":["GET"]}]}"#;
const EP: &str = r#"{"url":"http://10.0.0.5:8080","ttl":"30s","weight":2,"metadata":{"zone":"a"}}"#;

async fn put_svc(h: &Harness, name: &str, body: &str) -> (StatusCode, HeaderMap, Value) {
    let uri = format!("/api/v1/services/{name}");
    call(&h.router, req("PUT", &uri, Some(ADMIN), Some(body))).await
}

#[tokio::test]
async fn no_token_is_401_with_challenge() {
    let h = harness();
    for (method, uri) in [
        ("GET", "/api/v1/services"),
        ("GET", "/api/v1/routes"),
        ("GET", "/api/v1/services/x"),
        ("POST", "/api/v1/reload"),
    ] {
        let r = call(&h.router, req(method, uri, None, None)).await;
        assert_error(&r, 401, "missing_credentials");
        assert_eq!(r.1["www-authenticate"], "Bearer realm=\"portcullis-admin\"");
    }
    let mut malformed = req("GET", "/api/v1/services", None, None);
    malformed
        .headers_mut()
        .insert("authorization", HeaderValue::from_static("Basic YTpi"));
    let r = call(&h.router, malformed).await;
    assert_error(&r, 401, "missing_credentials");
}

#[tokio::test]
async fn wrong_token_is_403() {
    let h = harness();
    let r = call(
        &h.router,
        req("GET", "/api/v1/services", Some("nope"), None),
    )
    .await;
    assert_error(&r, 403, "bad_credentials");
    assert!(r.1.get("www-authenticate").is_none());
}

#[tokio::test]
async fn service_token_is_limited_to_its_service() {
    let h = harness();
    let r = call(
        &h.router,
        req("PUT", "/api/v1/services/billing", Some(BILLING), Some(SVC)),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED);
    let uri = "/api/v1/services/billing/endpoints/b1";
    let r = call(&h.router, req("PUT", uri, Some(BILLING), Some(EP))).await;
    assert_eq!(r.0, StatusCode::CREATED);

    let other = r#"{"routes":[{"path":"/other"}]}"#;
    let r = call(
        &h.router,
        req("PUT", "/api/v1/services/other", Some(BILLING), Some(other)),
    )
    .await;
    assert_error(&r, 403, "bad_credentials");
    let r = call(
        &h.router,
        req("GET", "/api/v1/services", Some(BILLING), None),
    )
    .await;
    assert_error(&r, 403, "bad_credentials");
    assert!(h.registry.snapshot().service("other").is_none());
}

#[tokio::test]
async fn put_service_201_then_200() {
    let h = harness();
    let r = put_svc(&h, "droplets", SVC).await;
    assert_eq!(r.0, StatusCode::CREATED);
    assert_eq!(r.2["name"], "droplets");
    assert_eq!(r.2["routes"][0]["path"], "/droplets/{id}");
    assert_eq!(r.2["balancer"], "round_robin");
    assert_eq!(r.2["endpoints"], json!([]));
    let r = put_svc(
        &h,
        "droplets",
        r#"{"routes":[{"path":"/d/"}],"balancer":"weighted"}"#,
    )
    .await;
    assert_eq!(r.0, StatusCode::OK);
    assert_eq!(r.2["balancer"], "weighted");
}

#[tokio::test]
async fn endpoint_register_heartbeat_get_delete() {
    let h = harness();
    put_svc(&h, "droplets", SVC).await;
    let uri = "/api/v1/services/droplets/endpoints/d1";
    let r = call(&h.router, req("PUT", uri, Some(ADMIN), Some(EP))).await;
    assert_eq!(r.0, StatusCode::CREATED);
    assert_eq!(r.2["lease_expires_at_ms"], 1_030_000);
    assert_eq!(r.2["lease_expires_in_ms"], 30_000);

    h.clock.store(1_010_000, Ordering::SeqCst);
    let r = call(&h.router, req("PUT", uri, Some(ADMIN), Some(EP))).await;
    assert_eq!(r.0, StatusCode::OK);
    assert_eq!(r.2["lease_expires_at_ms"], 1_040_000);

    h.clock.store(1_015_000, Ordering::SeqCst);
    let r = call(
        &h.router,
        req("GET", "/api/v1/services/droplets", Some(ADMIN), None),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK);
    assert_eq!(
        r.2["endpoints"],
        json!([{
            "id": "d1", "url": "http://10.0.0.5:8080", "ttl": "30s", "weight": 2,
            "metadata": {"zone": "a"}, "lease_expires_in_ms": 25_000,
            "lease_expires_at_ms": 1_040_000
        }])
    );
    let r = call(&h.router, req("GET", "/api/v1/services", Some(ADMIN), None)).await;
    assert_eq!(r.2["services"][0]["name"], "droplets");
    let r = call(&h.router, req("GET", "/api/v1/routes", Some(ADMIN), None)).await;
    assert_eq!(r.2["routes"][0]["service"], "droplets");
    assert_eq!(r.2["routes"][0]["path"], "/droplets/{id}");

    let r = call(&h.router, req("DELETE", uri, Some(ADMIN), None)).await;
    assert_eq!(r.0, StatusCode::NO_CONTENT);
    let r = call(&h.router, req("DELETE", uri, Some(ADMIN), None)).await;
    assert_error(&r, 404, "endpoint_not_found");
    assert_eq!(r.2["service"], "droplets");

    let svc = "/api/v1/services/droplets";
    let r = call(&h.router, req("DELETE", svc, Some(ADMIN), None)).await;
    assert_eq!(r.0, StatusCode::NO_CONTENT);
    let r = call(&h.router, req("DELETE", svc, Some(ADMIN), None)).await;
    assert_error(&r, 404, "service_not_found");
    let r = call(&h.router, req("GET", svc, Some(ADMIN), None)).await;
    assert_error(&r, 404, "service_not_found");
}

#[tokio::test]
async fn forbidden_upstreams_are_403() {
    let h = harness();
    put_svc(&h, "droplets", SVC).await;
    for url in [
        "http://169.254.10.1:8080",
        "http://169.254.169.254:80",
        "http://127.0.0.1:9090",
    ] {
        let body = format!(r#"{{"url":"{url}"}}"#);
        let r = call(
            &h.router,
            req(
                "PUT",
                "/api/v1/services/droplets/endpoints/e",
                Some(ADMIN),
                Some(&body),
            ),
        )
        .await;
        assert_error(&r, 403, "forbidden_upstream");
        assert_eq!(r.2["service"], "droplets");
    }
    assert!(
        h.registry
            .snapshot()
            .service("droplets")
            .unwrap()
            .endpoints
            .is_empty()
    );
}

#[tokio::test]
async fn route_conflicts_are_409() {
    let h = harness();
    put_svc(&h, "droplets", SVC).await;
    let r = put_svc(&h, "thief", SVC).await;
    assert_error(&r, 409, "route_conflict");
    assert_eq!(r.2["owner"], "droplets");

    let r = put_svc(
        &h,
        "thief",
        r#"{"routes":[{"path":"/static/","methods":["GET"]}]}"#,
    )
    .await;
    assert_error(&r, 409, "route_conflict");
    assert_eq!(r.2["owner"], "legacy");
    assert_eq!(
        r.2["message"],
        "route GET */static/ overlaps * */static/ of static service \"legacy\""
    );
    let r = put_svc(&h, "legacy", r#"{"routes":[{"path":"/elsewhere"}]}"#).await;
    assert_error(&r, 409, "route_conflict");
    assert!(h.registry.snapshot().service("thief").is_none());
    assert!(h.registry.snapshot().service("legacy").is_none());
}

#[tokio::test]
async fn bad_bodies_are_ours() {
    let h = harness();
    let big = format!(
        r#"{{"routes":[{{"path":"/{}"}}]}}"#,
        "a".repeat(MAX_BODY_BYTES)
    );
    let r = put_svc(&h, "a", &big).await;
    assert_error(&r, 413, "payload_too_large");

    let deep = format!("{}{}", "[".repeat(17), "]".repeat(17));
    let r = put_svc(&h, "a", &deep).await;
    assert_error(&r, 400, "invalid_registration");
    assert_eq!(r.2["message"], "the JSON body nests deeper than 16 levels");
    // Brackets inside strings do not count.
    assert!(depth_within(br#"{"a":"[[[[[[[[[[[[[[[[[[[["}"#, 2));

    let r = put_svc(&h, "a", r#"{"routes": ["#).await;
    assert_error(&r, 400, "invalid_registration");
    assert!(
        r.2["message"]
            .as_str()
            .unwrap()
            .starts_with("the JSON body is invalid: ")
    );

    let r = put_svc(&h, "a", r#"{"routes":[{"path":"/a"}],"extra":1}"#).await;
    assert_error(&r, 400, "invalid_registration");

    let mut wrong_type = req("PUT", "/api/v1/services/a", Some(ADMIN), Some(SVC));
    wrong_type
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    let r = call(&h.router, wrong_type).await;
    assert_error(&r, 400, "invalid_registration");

    let r = put_svc(&h, "a", r#"{"routes":[]}"#).await;
    assert_error(&r, 400, "invalid_registration");
    assert!(h.registry.snapshot().services().is_empty());
}

#[tokio::test]
async fn unknown_paths_and_methods_are_ours() {
    let h = harness();
    let r = call(&h.router, req("GET", "/api/v1/nope", Some(ADMIN), None)).await;
    assert_error(&r, 404, "no_route");
    let r = call(
        &h.router,
        req("PATCH", "/api/v1/services/x", Some(ADMIN), None),
    )
    .await;
    assert_error(&r, 405, "method_not_allowed");
    let r = call(
        &h.router,
        req("GET", "/api/v1/services/%FF", Some(ADMIN), None),
    )
    .await;
    assert_error(&r, 400, "invalid_registration");
}

#[tokio::test]
async fn store_failure_is_503_and_rolls_back() {
    let store = Arc::new(FlakyStore::default());
    let registry = Arc::new(Registry::default());
    let router = AdminApi::new(registry.clone(), store.clone(), AdminToken::new(ADMIN)).router();
    let put = |uri: &str, body: &str| req("PUT", uri, Some(ADMIN), Some(body));
    let r = call(&router, put("/api/v1/services/a", SVC)).await;
    assert_eq!(r.0, StatusCode::CREATED);

    store.fail.store(true, Ordering::SeqCst);
    let r = call(&router, put("/api/v1/services/a/endpoints/e", EP)).await;
    assert_error(&r, 503, "store_unavailable");
    assert!(
        registry
            .snapshot()
            .service("a")
            .unwrap()
            .endpoints
            .is_empty()
    );
    let r = call(
        &router,
        put("/api/v1/services/b", r#"{"routes":[{"path":"/b"}]}"#),
    )
    .await;
    assert_error(&r, 503, "store_unavailable");
    assert!(registry.snapshot().service("b").is_none());
    let r = call(
        &router,
        req("DELETE", "/api/v1/services/a", Some(ADMIN), None),
    )
    .await;
    assert_error(&r, 503, "store_unavailable");
    assert!(registry.snapshot().service("a").is_some());

    store.fail.store(false, Ordering::SeqCst);
    let saved = store.load().await.unwrap().unwrap();
    assert_eq!(saved.services.keys().collect::<Vec<_>>(), ["a"]);
}

#[tokio::test]
async fn registration_is_on_disk_after_201() {
    let h = harness();
    put_svc(&h, "droplets", SVC).await;
    let uri = "/api/v1/services/droplets/endpoints/d1";
    let r = call(&h.router, req("PUT", uri, Some(ADMIN), Some(EP))).await;
    assert_eq!(r.0, StatusCode::CREATED);
    let reopened = FileStore::new(h.store.dir());
    let stored = reopened.load().await.unwrap().unwrap();
    let ep = &stored.services["droplets"].endpoints["d1"];
    assert_eq!(ep.spec.url, "http://10.0.0.5:8080");
    assert_eq!(ep.lease_expires, 1_030_000);
}

#[tokio::test]
async fn reload_hook() {
    let h = harness();
    let r = call(&h.router, req("POST", "/api/v1/reload", Some(ADMIN), None)).await;
    assert_error(&r, 501, "reload_unavailable");

    let ok = Arc::new(AtomicBool::new(true));
    let flag = ok.clone();
    let hook: ReloadHook = Arc::new(move || {
        let ok = flag.load(Ordering::SeqCst);
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err(vec!["line 3: bad".to_owned()])
            }
        })
    });
    let router = AdminApi::new(
        h.registry.clone(),
        Arc::new(FlakyStore::default()),
        AdminToken::new(ADMIN),
    )
    .reload(hook)
    .routes_view(Arc::new(|| json!({"routes": ["static"]})))
    .router();
    let r = call(&router, req("POST", "/api/v1/reload", Some(ADMIN), None)).await;
    assert_eq!((r.0, r.2), (StatusCode::OK, json!({"status": "reloaded"})));
    ok.store(false, Ordering::SeqCst);
    let r = call(&router, req("POST", "/api/v1/reload", Some(ADMIN), None)).await;
    assert_error(&r, 422, "invalid_config");
    assert_eq!(r.2["reasons"], json!(["line 3: bad"]));
    let r = call(&router, req("GET", "/api/v1/routes", Some(ADMIN), None)).await;
    assert_eq!(r.2, json!({"routes": ["static"]}));
}

#[test]
fn the_openapi_document_in_docs_is_the_served_one() {
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let text = std::fs::read_to_string(docs).unwrap();
    assert!(
        text == OPENAPI_JSON,
        "docs/openapi.json differs from crates/portcullis-registry/openapi.json: copy it over"
    );
}

#[tokio::test]
async fn openapi_needs_no_token_and_covers_every_route() {
    let h = harness();
    let r = call(&h.router, req("GET", "/api/v1/openapi.json", None, None)).await;
    assert_eq!(r.0, StatusCode::OK);
    assert_eq!(r.1["content-type"], "application/json");
    assert_eq!(r.2["openapi"], "3.1.0");

    let doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    let verbs = ["get", "put", "post", "delete", "patch", "head", "options"];
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (key, _) in item.as_object().unwrap() {
            if verbs.contains(&key.as_str()) {
                documented.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    let served: BTreeSet<_> = ROUTES
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(served, documented);
    assert!(doc["components"]["securitySchemes"]["bearerAuth"].is_object());
    for schema in ["ServiceSpec", "EndpointSpec", "Service", "Error"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    // Every served route answers something other than no_route.
    for (method, path, _) in ROUTES {
        let uri = path.replace("{service}", "s").replace("{id}", "i");
        let r = call(&h.router, req(method, &uri, None, None)).await;
        assert_ne!(r.0, StatusCode::NOT_FOUND, "{method} {uri}");
    }
}

#[test]
fn token_debug_is_redacted() {
    let t = AdminToken::new("hunter2");
    assert_eq!(format!("{t:?}"), "AdminToken([redacted])");
    let api = AdminApi::new(
        Arc::new(Registry::default()),
        Arc::new(FlakyStore::default()),
        t,
    );
    assert!(!format!("{api:?}").contains("hunter2"));
}
