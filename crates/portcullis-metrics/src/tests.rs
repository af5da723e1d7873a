//! Unit tests of both layers, against an in-memory recorder.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use portcullis_core::{Cause, ErrorResponse, MatchedRoute, ServiceName, UpstreamDuration};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;

// --- an in-memory recorder -------------------------------------------------

/// Records into maps keyed `name{k=v,k=v}`, labels in emission order.
#[derive(Debug, Default, Clone)]
struct TestRecorder {
    store: Arc<Mutex<Store>>,
}

#[derive(Debug, Default)]
struct Store {
    counters: BTreeMap<String, Arc<AtomicU64>>,
    gauges: BTreeMap<String, Arc<AtomicU64>>,
    histograms: BTreeMap<String, Arc<Samples>>,
    described: Vec<(String, Option<Unit>)>,
}

#[derive(Debug, Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn render_key(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        let mut store = self.store.lock().unwrap();
        store.described.push((key.as_str().to_owned(), unit));
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, d: SharedString) {
        self.describe_counter(key, unit, d);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, d: SharedString) {
        self.describe_counter(key, unit, d);
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut store = self.store.lock().unwrap();
        Counter::from_arc(store.counters.entry(render_key(key)).or_default().clone())
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut store = self.store.lock().unwrap();
        Gauge::from_arc(store.gauges.entry(render_key(key)).or_default().clone())
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut store = self.store.lock().unwrap();
        Histogram::from_arc(store.histograms.entry(render_key(key)).or_default().clone())
    }
}

impl TestRecorder {
    fn counter(&self, key: &str) -> u64 {
        let store = self.store.lock().unwrap();
        store
            .counters
            .get(key)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    fn gauge(&self, key: &str) -> Option<f64> {
        let store = self.store.lock().unwrap();
        let bits = store.gauges.get(key)?.load(Ordering::SeqCst);
        Some(f64::from_bits(bits))
    }

    fn samples(&self, key: &str) -> Vec<f64> {
        let store = self.store.lock().unwrap();
        store
            .histograms
            .get(key)
            .map(|h| h.0.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// Every counter and histogram series whose name is `name`.
    fn series(&self, name: &str) -> Vec<String> {
        let store = self.store.lock().unwrap();
        let prefix = format!("{name}{{");
        store
            .counters
            .keys()
            .chain(store.histograms.keys())
            .chain(store.gauges.keys())
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect()
    }
}

// --- helpers ---------------------------------------------------------------

const DROPLETS_OK: &str = "portcullis_http_requests_total{service=droplets,route=/droplets/{id},method=GET,status_class=2xx}";

fn droplets(mut res: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    res.extensions_mut().insert(MatchedRoute {
        name: Arc::from("droplets"),
        template: Arc::from("/droplets/{id}"),
    });
    res.extensions_mut().insert(ServiceName::new("droplets"));
    res
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).body(Empty::new()).unwrap()
}

/// A body that yields the given data frames, then optional trailers.
#[derive(Debug)]
struct Frames {
    data: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.data.pop_front() {
            Some(data) => Some(Ok(Frame::data(data))),
            None => self.trailers.take().map(|t| Ok(Frame::trailers(t))),
        };
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty() && self.trailers.is_none()
    }
}

// --- MetricsLayer ----------------------------------------------------------

#[tokio::test]
async fn counts_by_route_template_at_end_of_body() {
    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let svc = MetricsLayer::new().layer(service_fn(|_req: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(droplets(Response::new(Full::from("hi"))))
    }));

    for path in ["/droplets/1", "/droplets/22"] {
        let res = svc.clone().oneshot(get(path)).await.unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hi");
    }

    assert_eq!(recorder.counter(DROPLETS_OK), 2);
    assert_eq!(
        recorder.series(HTTP_REQUESTS_TOTAL),
        vec![DROPLETS_OK.to_owned()]
    );
    let durations = recorder.samples(
        "portcullis_http_request_duration_seconds{service=droplets,route=/droplets/{id},method=GET,status_class=2xx}",
    );
    assert_eq!(durations.len(), 2);
    // No cause, no upstream duration: nothing else recorded.
    assert!(recorder.series(HTTP_REJECTIONS_TOTAL).is_empty());
    assert!(recorder.series(UPSTREAM_ERRORS_TOTAL).is_empty());
    assert!(
        recorder
            .series(UPSTREAM_REQUEST_DURATION_SECONDS)
            .is_empty()
    );
}

#[tokio::test]
async fn unmatched_paths_share_one_series() {
    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let mut svc = MetricsLayer::new().layer(service_fn(|_req: Request<Empty<Bytes>>| async {
        let mut res = Response::new(Full::<Bytes>::from("nope"));
        *res.status_mut() = StatusCode::NOT_FOUND;
        Ok::<_, Infallible>(res)
    }));

    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..1000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let path = format!("/x{seed:x}/{i}?q={seed}");
        let res = svc.ready().await.unwrap().call(get(&path)).await.unwrap();
        drop(res);
    }

    let key =
        "portcullis_http_requests_total{service=,route=unmatched,method=GET,status_class=4xx}";
    assert_eq!(recorder.series(HTTP_REQUESTS_TOTAL), vec![key.to_owned()]);
    assert_eq!(recorder.counter(key), 1000);
    assert_eq!(recorder.series(HTTP_REQUEST_DURATION_SECONDS).len(), 1);
}

#[tokio::test]
async fn non_standard_method_is_other() {
    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let svc = MetricsLayer::new().layer(service_fn(|_req: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(droplets(Response::new(Full::from(""))))
    }));

    for method in ["FOO", "PURGE", "DELETE"] {
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri("/droplets/1")
            .body(Empty::new())
            .unwrap();
        drop(svc.clone().oneshot(req).await.unwrap());
    }

    let other = "portcullis_http_requests_total{service=droplets,route=/droplets/{id},method=other,status_class=2xx}";
    let delete = "portcullis_http_requests_total{service=droplets,route=/droplets/{id},method=DELETE,status_class=2xx}";
    assert_eq!(recorder.counter(other), 2);
    assert_eq!(recorder.counter(delete), 1);
    assert_eq!(recorder.series(HTTP_REQUESTS_TOTAL).len(), 2);
}

/// What [`answering`] puts on the response: its status, route and service.
#[derive(Debug, Clone)]
struct Answer(StatusCode, MatchedRoute, ServiceName);

/// A service answering with the [`Answer`] in the request extensions.
fn answering() -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    service_fn(|req: Request<Empty<Bytes>>| {
        let answer = req.extensions().get::<Answer>().cloned();
        async move {
            let mut res = Response::new(Full::from(""));
            if let Some(Answer(status, route, service)) = answer {
                *res.status_mut() = status;
                res.extensions_mut().insert(route);
                res.extensions_mut().insert(service);
            }
            Ok(res)
        }
    })
}

const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "FOO",
];
const STATUSES: [u16; 6] = [101, 200, 302, 404, 503, 600];

/// One request of every method and status class to each of `routes` routes of
/// each of `services` services: `services × routes × 60` label sets.
fn every_label_set(services: usize, routes: usize) -> Vec<Request<Empty<Bytes>>> {
    let mut requests = Vec::new();
    for service in 0..services {
        let service = ServiceName::new(format!("s{service}"));
        for route in 0..routes {
            let route = MatchedRoute {
                name: Arc::from(format!("r{route}")),
                template: Arc::from(format!("/r{route}/{{id}}")),
            };
            for method in METHODS {
                for status in STATUSES {
                    let mut req = get("/");
                    *req.method_mut() = Method::from_bytes(method.as_bytes()).unwrap();
                    let status = StatusCode::from_u16(status).unwrap();
                    req.extensions_mut()
                        .insert(Answer(status, route.clone(), service.clone()));
                    requests.push(req);
                }
            }
        }
    }
    requests
}

async fn serve_all<S>(svc: &mut S, requests: Vec<Request<Empty<Bytes>>>)
where
    S: Service<Request<Empty<Bytes>>, Error = Infallible>,
{
    for req in requests {
        drop(svc.ready().await.unwrap().call(req).await.unwrap());
    }
}

#[tokio::test]
async fn default_cache_holds_50_routes_with_every_method_and_class() {
    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let layer = MetricsLayer::new();
    let mut svc = layer.layer(answering());

    // Twice each, with the same route and service `Arc`s, as from a router.
    let requests = every_label_set(1, 50);
    let again: Vec<_> = requests
        .iter()
        .map(|req| {
            let mut copy = get("/");
            *copy.method_mut() = req.method().clone();
            copy.extensions_mut()
                .insert(req.extensions().get::<Answer>().unwrap().clone());
            copy
        })
        .collect();
    serve_all(&mut svc, requests).await;
    serve_all(&mut svc, again).await;

    let cache = layer.shared().http_cache();
    assert_eq!(cache.len(), 3000);
    assert_eq!(cache.evicted(), 0, "no eviction below the default capacity");
    assert_eq!(recorder.series(HTTP_REQUESTS_TOTAL).len(), 3000);
    let key = "portcullis_http_requests_total{service=s0,route=/r49/{id},method=other,status_class=other}";
    assert_eq!(recorder.counter(key), 2);
}

#[tokio::test]
async fn cache_capacity_is_respected_and_evicts_in_batches() {
    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let layer = MetricsLayer::new().cache_capacity(1000);
    let mut svc = layer.layer(answering());
    let cache = layer.shared().http_cache();

    for req in every_label_set(1, 50) {
        drop(svc.ready().await.unwrap().call(req).await.unwrap());
        assert!(cache.len() <= 1000, "{} cached", cache.len());
    }
    // 3000 label sets, 62 evicted per overflow: never emptied.
    assert!(cache.len() > 1000 - 62, "{} cached", cache.len());
    assert!(cache.evicted() >= 2000, "{} evicted", cache.evicted());
    assert_eq!(cache.evicted() % 62, 0, "{} evicted", cache.evicted());
    // Eviction costs handles, not counts.
    assert_eq!(recorder.series(HTTP_REQUESTS_TOTAL).len(), 3000);
    let key =
        "portcullis_http_requests_total{service=s0,route=/r0/{id},method=GET,status_class=1xx}";
    assert_eq!(recorder.counter(key), 1);
}

#[tokio::test]
async fn default_cache_capacity_is_respected() {
    // No recorder: handles are no-ops, only the cache is under test.
    let layer = MetricsLayer::new();
    let mut svc = layer.layer(answering());
    // 6 services × 50 routes × 60 = 18,000 label sets, past 16,384.
    serve_all(&mut svc, every_label_set(6, 50)).await;
    let cache = layer.shared().http_cache();
    assert!(cache.len() <= 16_384, "{} cached", cache.len());
    assert!(cache.len() > 16_384 - 1024, "{} cached", cache.len());
    assert_eq!(cache.len() + cache.evicted(), 18_000);
}

#[tokio::test]
async fn upstream_error_is_counted_with_its_cause() {
    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let svc = MetricsLayer::new().layer(service_fn(|req: Request<Empty<Bytes>>| async move {
        let mut res = ErrorResponse::for_request(Cause::UpstreamTimeout, &req).build();
        res.extensions_mut().insert(ServiceName::new("billing"));
        res.extensions_mut()
            .insert(UpstreamDuration(Duration::from_millis(250)));
        Ok::<_, Infallible>(res)
    }));

    let res = svc.oneshot(get("/invoices/9")).await.unwrap();
    assert_eq!(res.status(), 504);
    assert_eq!(res.headers()["portcullis-error"], "upstream_timeout");
    res.into_body().collect().await.unwrap();

    assert_eq!(
        recorder
            .counter("portcullis_upstream_errors_total{service=billing,cause=upstream_timeout}"),
        1
    );
    assert_eq!(recorder.series(UPSTREAM_ERRORS_TOTAL).len(), 1);
    assert_eq!(
        recorder.samples("portcullis_upstream_request_duration_seconds{service=billing}"),
        vec![0.25]
    );
    assert!(recorder.series(HTTP_REJECTIONS_TOTAL).is_empty());
    assert_eq!(
        recorder.counter("portcullis_http_requests_total{service=billing,route=unmatched,method=GET,status_class=5xx}"),
        1
    );
}

#[tokio::test]
async fn gateway_rejection_is_counted_by_route_and_cause() {
    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let svc = MetricsLayer::new().layer(service_fn(|req: Request<Empty<Bytes>>| async move {
        let res = ErrorResponse::for_request(Cause::BadCredentials, &req).build();
        let mut res = res.map(|b| b.boxed());
        res.extensions_mut().insert(MatchedRoute {
            name: Arc::from("admin"),
            template: Arc::from("/admin/{rest}"),
        });
        Ok::<_, Infallible>(res)
    }));

    let res = svc.oneshot(get("/admin/secret")).await.unwrap();
    assert_eq!(res.status(), 403);
    drop(res);

    assert_eq!(
        recorder.series(HTTP_REJECTIONS_TOTAL),
        vec![
            "portcullis_http_rejections_total{route=/admin/{rest},cause=bad_credentials}"
                .to_owned()
        ]
    );
    assert_eq!(
        recorder
            .counter("portcullis_http_rejections_total{route=/admin/{rest},cause=bad_credentials}"),
        1
    );
    assert!(recorder.series(UPSTREAM_ERRORS_TOTAL).is_empty());
}

#[tokio::test]
async fn inner_error_counts_a_5xx_with_cause_internal() {
    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let svc = MetricsLayer::new().layer(service_fn(|_req: Request<Empty<Bytes>>| async {
        Err::<Response<Empty<Bytes>>, _>("boom")
    }));

    let req = Request::post("/x").body(Empty::new()).unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(err, "boom");

    assert_eq!(
        recorder.counter(
            "portcullis_http_requests_total{service=,route=unmatched,method=POST,status_class=5xx}"
        ),
        1
    );
    assert_eq!(
        recorder.counter("portcullis_http_rejections_total{route=unmatched,cause=internal}"),
        1
    );
}

#[tokio::test]
async fn records_once_at_end_of_stream_with_the_whole_duration() {
    tokio::time::pause();
    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let svc = MetricsLayer::new().layer(service_fn(|_req: Request<Empty<Bytes>>| async {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let body = Frames {
            data: VecDeque::from([Bytes::from("a"), Bytes::from("b")]),
            trailers: Some(trailers),
        };
        let mut res = Response::new(body);
        res.extensions_mut().insert(ServiceName::new("droplets"));
        Ok::<_, Infallible>(res)
    }));

    let key = "portcullis_http_requests_total{service=droplets,route=unmatched,method=GET,status_class=2xx}";
    let res = svc.oneshot(get("/stream")).await.unwrap();
    assert_eq!(recorder.counter(key), 0, "not at head time");
    let mut body = res.into_body();
    assert!(!body.is_end_stream());

    tokio::time::advance(Duration::from_secs(2)).await;
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "a");
    assert_eq!(recorder.counter(key), 0, "not after the first frame");

    tokio::time::advance(Duration::from_secs(1)).await;
    let second = body.frame().await.unwrap().unwrap();
    assert_eq!(second.into_data().unwrap(), "b");
    let trailers = body
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_trailers()
        .unwrap();
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(recorder.counter(key), 1);
    assert!(body.is_end_stream());
    assert!(body.frame().await.is_none());
    drop(body);

    assert_eq!(recorder.counter(key), 1, "recorded once");
    let durations = recorder.samples(
        "portcullis_http_request_duration_seconds{service=droplets,route=unmatched,method=GET,status_class=2xx}",
    );
    assert_eq!(durations, vec![3.0]);
}

#[tokio::test]
async fn records_once_when_the_body_is_dropped_early() {
    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let svc = MetricsLayer::new().layer(service_fn(|_req: Request<Empty<Bytes>>| async {
        let body = Frames {
            data: VecDeque::from([Bytes::from("a"), Bytes::from("b")]),
            trailers: None,
        };
        Ok::<_, Infallible>(Response::new(body))
    }));

    let key =
        "portcullis_http_requests_total{service=,route=unmatched,method=GET,status_class=2xx}";
    let res = svc.oneshot(get("/stream")).await.unwrap();
    let mut body = res.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(recorder.counter(key), 0);
    drop(body);
    assert_eq!(recorder.counter(key), 1);
}

#[tokio::test]
async fn body_size_hint_and_end_pass_through() {
    let svc = MetricsLayer::new().layer(service_fn(|_req: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("hello")))
    }));
    let body = svc.clone().oneshot(get("/")).await.unwrap().into_body();
    assert_eq!(body.size_hint().exact(), Some(5));
    assert!(!body.is_end_stream());

    let svc = MetricsLayer::new().layer(service_fn(|_req: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    }));
    let body = svc.oneshot(get("/")).await.unwrap().into_body();
    assert_eq!(body.size_hint().exact(), Some(0));
    assert!(body.is_end_stream());
    let hint = Frames {
        data: VecDeque::new(),
        trailers: None,
    }
    .size_hint();
    assert_eq!(hint.upper(), SizeHint::default().upper());
}

// --- InFlightLayer ---------------------------------------------------------

const BILLING_IN_FLIGHT: &str = "portcullis_http_requests_in_flight{service=billing}";

fn billing(path: &str) -> Request<Empty<Bytes>> {
    let mut req = get(path);
    req.extensions_mut().insert(ServiceName::new("billing"));
    req
}

#[tokio::test]
async fn in_flight_until_the_body_is_consumed_or_dropped() {
    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let seen = recorder.clone();
    let svc = InFlightLayer::new().layer(service_fn(move |req: Request<Empty<Bytes>>| {
        // Inside the handler the request is in flight.
        let key = match req.extensions().get::<ServiceName>() {
            Some(_) => BILLING_IN_FLIGHT,
            None => "portcullis_http_requests_in_flight{service=}",
        };
        let during = seen.gauge(key);
        async move {
            assert_eq!(during, Some(1.0));
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("invoice")))
        }
    }));

    let res = svc.clone().oneshot(billing("/invoices/1")).await.unwrap();
    assert_eq!(
        recorder.gauge(BILLING_IN_FLIGHT),
        Some(1.0),
        "body not yet sent"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"invoice");
    assert_eq!(recorder.gauge(BILLING_IN_FLIGHT), Some(0.0));

    let res = svc.clone().oneshot(billing("/invoices/2")).await.unwrap();
    assert_eq!(recorder.gauge(BILLING_IN_FLIGHT), Some(1.0));
    drop(res);
    assert_eq!(recorder.gauge(BILLING_IN_FLIGHT), Some(0.0));

    // Without a ServiceName the label is empty.
    drop(svc.oneshot(get("/")).await.unwrap());
    assert_eq!(
        recorder.gauge("portcullis_http_requests_in_flight{service=}"),
        Some(0.0)
    );
}

#[tokio::test]
async fn in_flight_ends_when_the_inner_service_fails_or_the_future_is_dropped() {
    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);

    let failing = InFlightLayer::new().layer(service_fn(|_req: Request<Empty<Bytes>>| async {
        Err::<Response<Empty<Bytes>>, _>("boom")
    }));
    assert_eq!(failing.oneshot(billing("/")).await.unwrap_err(), "boom");
    assert_eq!(recorder.gauge(BILLING_IN_FLIGHT), Some(0.0));

    let mut stuck = InFlightLayer::new().layer(service_fn(|_req: Request<Empty<Bytes>>| {
        std::future::pending::<Result<Response<Empty<Bytes>>, Infallible>>()
    }));
    let fut = stuck.ready().await.unwrap().call(billing("/"));
    assert_eq!(recorder.gauge(BILLING_IN_FLIGHT), Some(1.0));
    drop(fut);
    assert_eq!(recorder.gauge(BILLING_IN_FLIGHT), Some(0.0));
}

// --- describe --------------------------------------------------------------

#[test]
fn describe_registers_every_name_with_its_unit() {
    let recorder = TestRecorder::default();
    ::metrics::with_local_recorder(&recorder, describe);
    let described = recorder.store.lock().unwrap().described.clone();
    let names = [
        HTTP_REQUESTS_TOTAL,
        HTTP_REQUEST_DURATION_SECONDS,
        HTTP_REQUESTS_IN_FLIGHT,
        HTTP_REJECTIONS_TOTAL,
        UPSTREAM_REQUEST_DURATION_SECONDS,
        UPSTREAM_ERRORS_TOTAL,
        AUTH_DECISIONS_TOTAL,
        RATELIMIT_DECISIONS_TOTAL,
        UPSTREAM_RETRIES_TOTAL,
        ENDPOINT_HEALTHY,
    ];
    assert_eq!(described.len(), names.len());
    for name in names {
        assert!(name.starts_with("portcullis_"));
        let unit = described
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, u)| *u)
            .unwrap();
        let expected = if name.ends_with("_seconds") {
            Unit::Seconds
        } else {
            Unit::Count
        };
        assert_eq!(unit, Some(expected), "{name}");
    }
}

// --- inside a plain axum Router ---------------------------------------------

#[tokio::test]
async fn in_an_axum_router() {
    use axum::{Router, body::Body, response::IntoResponse, routing::get as route_get};

    let recorder = TestRecorder::default();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    async fn droplet() -> axum::response::Response {
        let mut res = "a droplet".into_response();
        res.extensions_mut().insert(MatchedRoute {
            name: Arc::from("droplets"),
            template: Arc::from("/droplets/{id}"),
        });
        res.extensions_mut().insert(ServiceName::new("droplets"));
        res
    }
    let app = Router::new()
        .route("/droplets/{id}", route_get(droplet))
        .route_layer(InFlightLayer::new())
        .layer(MetricsLayer::new());

    for path in ["/droplets/1", "/droplets/2", "/droplets/1/extra"] {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        res.into_body().collect().await.unwrap();
    }

    assert_eq!(recorder.counter(DROPLETS_OK), 2);
    assert_eq!(
        recorder.counter(
            "portcullis_http_requests_total{service=,route=unmatched,method=GET,status_class=4xx}"
        ),
        1
    );
    assert_eq!(recorder.series(HTTP_REQUESTS_TOTAL).len(), 2);
    assert_eq!(
        recorder.gauge("portcullis_http_requests_in_flight{service=}"),
        Some(0.0)
    );
}

#[cfg(feature = "exporter")]
#[tokio::test]
async fn exporter_renders_prometheus_text() {
    use axum::{Router, body::Body, response::IntoResponse, routing::get as route_get};

    let (exporter, recorder) = Exporter::build_local().unwrap();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    async fn droplet() -> axum::response::Response {
        let mut res = "a droplet".into_response();
        res.extensions_mut().insert(MatchedRoute {
            name: Arc::from("droplets"),
            template: Arc::from("/droplets/{id}"),
        });
        res.extensions_mut().insert(ServiceName::new("droplets"));
        res.extensions_mut()
            .insert(UpstreamDuration(Duration::from_millis(3)));
        res
    }
    let app = Router::new()
        .route("/droplets/{id}", route_get(droplet))
        .layer(MetricsLayer::new());
    for path in ["/droplets/1", "/droplets/2", "/droplets/3"] {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        res.into_body().collect().await.unwrap();
    }
    exporter.run_upkeep();

    let text = exporter.render();
    let value = |series: &str| -> Option<f64> {
        text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
    };
    let labels = r#"service="droplets",route="/droplets/{id}",method="GET",status_class="2xx""#;
    assert_eq!(
        value(&format!("portcullis_http_requests_total{{{labels}}}")),
        Some(3.0)
    );
    assert_eq!(
        value(&format!(
            "portcullis_http_request_duration_seconds_count{{{labels}}}"
        )),
        Some(3.0)
    );
    assert_eq!(
        value(&format!(
            "portcullis_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}}"
        )),
        Some(3.0)
    );
    // The upstream's 3ms land in the 5ms bucket, not the 2.5ms one.
    let upstream = r#"portcullis_upstream_request_duration_seconds_bucket{service="droplets",le="#;
    assert_eq!(value(&format!("{upstream}\"0.0025\"}}")), Some(0.0));
    assert_eq!(value(&format!("{upstream}\"0.005\"}}")), Some(3.0));
    assert!(text.contains("# HELP portcullis_http_requests_total Requests answered"));
    assert!(text.contains("# TYPE portcullis_http_request_duration_seconds histogram"));
}
