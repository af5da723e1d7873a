//! Unit tests of both layers, driven by `service_fn` and an axum `Router`, with a
//! subscriber that captures the JSON lines.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use portcullis_core::{
    Cause, ErrorResponse, MatchedRoute, PeerAddr, SelectedEndpoint, ServiceName, UpstreamDuration,
};
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// Captures everything a JSON `fmt` subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    /// Installs a JSON subscriber at `level` for this thread.
    fn install(&self, level: Level) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(level)
            .with_writer(self.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The `fields` of every access line.
    fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .inspect(|v| {
                assert_eq!(v["target"], "portcullis::access");
                assert_eq!(v["level"], "INFO");
            })
            .map(|v| v["fields"].clone())
            .collect()
    }

    fn one_line(&self) -> Value {
        let mut lines = self.lines();
        assert_eq!(lines.len(), 1, "{}", self.text());
        lines.remove(0)
    }
}

/// A body of given frames, with an error after them when `fail` is set.
struct Frames {
    frames: VecDeque<Frame<Bytes>>,
    fail: bool,
}

impl Frames {
    fn new(frames: impl IntoIterator<Item = Frame<Bytes>>) -> Self {
        Self {
            frames: frames.into_iter().collect(),
            fail: false,
        }
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.frames.pop_front() {
            Some(f) => Poll::Ready(Some(Ok(f))),
            None if self.fail => {
                self.fail = false;
                Poll::Ready(Some(Err(io::Error::other("upstream reset"))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && !self.fail
    }
}

fn data(s: &'static str) -> Frame<Bytes> {
    Frame::data(Bytes::from_static(s.as_bytes()))
}

fn ok_body(body: &'static str) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(body.as_bytes())))
}

const CANARIES: [&str; 4] = ["CANARY123", "CANARY-AUTH", "CANARY-COOKIE", "CANARY-KEY"];

#[tokio::test(start_paused = true)]
async fn writes_every_field_and_never_a_secret() {
    let capture = Capture::default();
    let _guard = capture.install(Level::INFO);
    let layer = AccessLogLayer::new()
        .log_request_headers([
            "x-tenant",
            "Authorization",
            "cookie",
            "x-api-key",
            "x-absent",
        ])
        .unwrap()
        .redact_headers(["x-api-key"])
        .unwrap()
        .redact_query_params(["api_key", "token"])
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(layer)
        .service_fn(|req: Request<RequestBody<Full<Bytes>>>| async move {
            assert_eq!(req.body().size_hint().exact(), Some(5));
            assert!(req.headers()["authorization"].is_sensitive());
            assert!(req.headers()["x-api-key"].is_sensitive());
            assert!(!req.headers()["x-tenant"].is_sensitive());
            let body = req.into_body().collect().await?.to_bytes();
            assert_eq!(&body[..], b"hello");
            tokio::time::sleep(Duration::from_millis(30)).await;
            let mut res = ok_body("world!!");
            let ext = res.extensions_mut();
            ext.insert(MatchedRoute {
                name: "items".into(),
                template: "/items/{id}".into(),
            });
            ext.insert(ServiceName::new("billing"));
            ext.insert(SelectedEndpoint {
                id: "10.0.0.5:8080".into(),
            });
            ext.insert(UpstreamDuration(Duration::from_millis(12)));
            res.headers_mut()
                .append("set-cookie", "a=CANARY-COOKIE".parse().unwrap());
            Ok::<_, Infallible>(res)
        });
    let mut req = Request::post("/items/7?api_key=CANARY123&x=1")
        .header("x-request-id", "req-1")
        .header(
            "user-agent",
            http::HeaderValue::from_bytes(b"curl/8.5\t\xff").unwrap(),
        )
        .header("authorization", "Bearer CANARY-AUTH")
        .header("cookie", "session=CANARY-COOKIE")
        .header("x-api-key", "CANARY-KEY")
        .header("x-tenant", "acme")
        .header("x-tenant", "be\"ta")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    req.extensions_mut()
        .insert(PeerAddr("192.0.2.7:51234".parse().unwrap()));

    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "req-1");
    assert!(res.headers()["set-cookie"].is_sensitive());
    assert_eq!(res.body().size_hint().exact(), Some(7));
    assert!(
        capture.lines().is_empty(),
        "no line before the body is sent"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"world!!");

    let mut f = capture.one_line();
    let duration = f["duration_ms"].as_f64().unwrap();
    assert!((30.0..31.0).contains(&duration), "{duration}");
    f.as_object_mut().unwrap().remove("duration_ms");
    assert_eq!(
        f,
        json!({
            "message": "request",
            "request_id": "req-1",
            "peer_addr": "192.0.2.7:51234",
            "method": "POST",
            "path": "/items/7?api_key=[redacted]&x=1",
            "route": "/items/{id}",
            "route_name": "items",
            "service": "billing",
            "endpoint": "10.0.0.5:8080",
            "status": 200,
            "cause": "",
            "fault": "",
            "bytes_in": 5,
            "bytes_out": 7,
            "upstream_ms": 12.0,
            "user_agent": "curl/8.5\\u{9}\\xff",
            "http_version": "HTTP/1.1",
            "headers": "{\"x-tenant\":\"acme, be\\\"ta\",\"authorization\":\"[redacted]\",\
                        \"cookie\":\"[redacted]\",\"x-api-key\":\"[redacted]\"}",
        })
    );
    let headers: Value = serde_json::from_str(f["headers"].as_str().unwrap()).unwrap();
    assert_eq!(headers["x-tenant"], "acme, be\"ta");
    let all = capture.text();
    for canary in CANARIES {
        assert!(!all.contains(canary), "{canary} leaked: {all}");
    }
}

#[tokio::test]
async fn causes_tell_who_answered() {
    let capture = Capture::default();
    let _guard = capture.install(Level::INFO);
    let cases = [
        (Cause::UpstreamTimeout, 504, "upstream"),
        (Cause::NoHealthyEndpoint, 503, "upstream"),
        (Cause::RateLimited, 429, "client"),
        (Cause::NoRoute, 404, "client"),
        (Cause::Overloaded, 503, "gateway"),
    ];
    for (cause, status, _) in cases {
        let svc = ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .layer(AccessLogLayer::new())
            .service_fn(
                move |mut req: Request<RequestBody<Empty<Bytes>>>| async move {
                    req.extensions_mut().insert(ServiceName::new("api"));
                    let mut res = ErrorResponse::for_request(cause, &req).build();
                    res.extensions_mut().insert(ServiceName::new("api"));
                    Ok::<_, Infallible>(res)
                },
            );
        let req = Request::get("/x").body(Empty::<Bytes>::new()).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), status);
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["request_id"], id.as_str(), "the error echoes the id");
        assert_eq!(body["service"], "api");
    }
    // A service's own 500: no cause, no fault.
    let svc = AccessLog::new(service_fn(
        |_req: Request<RequestBody<Empty<Bytes>>>| async {
            let mut res = ok_body("oops");
            *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            Ok::<_, Infallible>(res)
        },
    ));
    let res = svc
        .oneshot(Request::new(Empty::<Bytes>::new()))
        .await
        .unwrap();
    res.into_body().collect().await.unwrap();

    let lines = capture.lines();
    assert_eq!(lines.len(), cases.len() + 1);
    for (line, (cause, status, fault)) in lines.iter().zip(cases) {
        assert_eq!(line["status"], status);
        assert_eq!(line["cause"], cause.as_str());
        assert_eq!(line["fault"], fault);
        assert_eq!(line["service"], "api");
        assert_eq!(line["route"], "unmatched");
        assert_eq!(line["route_name"], "");
        assert_eq!(line["endpoint"], "");
        assert_eq!(line["bytes_out"], cause_body_len(cause));
        assert!(line.get("upstream_ms").is_none());
        assert!(line.get("aborted").is_none());
        assert!(line.get("headers").is_none());
    }
    let last = &lines[cases.len()];
    assert_eq!(
        (&last["status"], &last["cause"], &last["fault"]),
        (&json!(500), &json!(""), &json!(""))
    );
}

fn cause_body_len(cause: Cause) -> usize {
    let res = ErrorResponse::new(cause)
        .request_id("0".repeat(36))
        .service("api");
    res.json().len()
}

#[tokio::test]
async fn aborted_when_the_body_is_dropped_early() {
    let capture = Capture::default();
    let _guard = capture.install(Level::INFO);
    let svc = AccessLog::new(service_fn(
        |_req: Request<RequestBody<Empty<Bytes>>>| async {
            Ok::<_, Infallible>(Response::new(Frames::new([data("abc"), data("defg")])))
        },
    ));
    let res = svc
        .oneshot(Request::new(Empty::<Bytes>::new()))
        .await
        .unwrap();
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.data_ref().unwrap(), "abc");
    assert!(capture.lines().is_empty());
    drop(body);
    let line = capture.one_line();
    assert_eq!(line["aborted"], true);
    assert_eq!(line["bytes_out"], 3);
    assert_eq!(line["status"], 200);
    assert!(line.get("error").is_none());
}

#[tokio::test]
async fn body_errors_and_trailers() {
    let capture = Capture::default();
    let _guard = capture.install(Level::INFO);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let sent = trailers.clone();
    let svc = AccessLog::new(service_fn(
        move |_req: Request<RequestBody<Empty<Bytes>>>| {
            let trailers = sent.clone();
            async move {
                Ok::<_, Infallible>(Response::new(Frames::new([
                    data("ab"),
                    data("cde"),
                    Frame::trailers(trailers),
                ])))
            }
        },
    ));
    let res = svc
        .clone()
        .oneshot(Request::new(Empty::<Bytes>::new()))
        .await
        .unwrap();
    let collected = res.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers(), Some(&trailers));
    assert_eq!(&collected.to_bytes()[..], b"abcde");

    let failing = AccessLog::new(service_fn(
        |_req: Request<RequestBody<Empty<Bytes>>>| async {
            let mut body = Frames::new([data("xy")]);
            body.fail = true;
            Ok::<_, Infallible>(Response::new(body))
        },
    ));
    let res = failing
        .oneshot(Request::new(Empty::<Bytes>::new()))
        .await
        .unwrap();
    let err = res.into_body().collect().await.unwrap_err();
    assert_eq!(err.to_string(), "upstream reset");

    let lines = capture.lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["bytes_out"], 5);
    assert!(lines[0].get("aborted").is_none());
    assert_eq!(lines[1]["bytes_out"], 2);
    assert_eq!(lines[1]["aborted"], true);
    assert_eq!(lines[1]["error"], "upstream reset");
}

#[tokio::test]
async fn bodiless_responses_are_not_aborted() {
    let capture = Capture::default();
    let _guard = capture.install(Level::INFO);
    let svc = AccessLog::new(service_fn(
        |req: Request<RequestBody<Empty<Bytes>>>| async move {
            // HEAD gets a body hyper will never send; GET an empty one.
            let body = if req.method() == http::Method::HEAD {
                "ignored"
            } else {
                ""
            };
            Ok::<_, Infallible>(ok_body(body))
        },
    ));
    for method in ["HEAD", "GET"] {
        let req = Request::builder()
            .method(method)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        drop(res); // as hyper does with a body it need not poll
    }
    let lines = capture.lines();
    assert_eq!(lines.len(), 2);
    for (line, method) in lines.iter().zip(["HEAD", "GET"]) {
        assert_eq!(line["method"], method);
        assert!(line.get("aborted").is_none(), "{line}");
        assert_eq!(line["bytes_out"], 0);
    }
}

#[tokio::test]
async fn service_errors_and_cancelled_requests() {
    let capture = Capture::default();
    let _guard = capture.install(Level::INFO);
    let failing = AccessLog::new(service_fn(
        |_req: Request<RequestBody<Empty<Bytes>>>| async {
            Err::<Response<Empty<Bytes>>, _>(io::Error::other("connect\nrefused"))
        },
    ));
    let err = failing
        .oneshot(Request::new(Empty::<Bytes>::new()))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "connect\nrefused");

    let mut pending = AccessLog::new(service_fn(|_req: Request<RequestBody<Empty<Bytes>>>| {
        std::future::pending::<Result<Response<Empty<Bytes>>, Infallible>>()
    }));
    let fut = pending.call(Request::new(Empty::<Bytes>::new()));
    assert_eq!(capture.lines().len(), 1, "only the failed request so far");
    drop(fut);

    let lines = capture.lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status"], 0);
    assert_eq!(lines[0]["error"], "connect\\u{a}refused");
    assert_eq!(lines[0]["fault"], "gateway");
    assert!(lines[0].get("aborted").is_none());
    assert_eq!(lines[1]["status"], 0);
    assert_eq!(lines[1]["aborted"], true);
    assert_eq!(lines[1]["fault"], "");
}

#[tokio::test]
async fn nothing_is_captured_when_disabled() {
    async fn run(layer: AccessLogLayer) {
        let svc = ServiceBuilder::new().layer(layer).service_fn(
            |req: Request<RequestBody<Full<Bytes>>>| async move {
                assert_eq!(
                    format!("{:?}", req.body()),
                    "RequestBody { counting: false, .. }"
                );
                // Sensitive headers are marked all the same.
                assert!(req.headers()["authorization"].is_sensitive());
                Ok::<_, Infallible>(ok_body("x"))
            },
        );
        let req = Request::post("/")
            .header("authorization", "Bearer t")
            .body(Full::new(Bytes::from_static(b"abc")))
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(
            format!("{:?}", res.body()),
            "ResponseBody { pending: None, .. }"
        );
        res.into_body().collect().await.unwrap();
    }
    let capture = Capture::default();
    {
        let _guard = capture.install(Level::WARN);
        run(AccessLogLayer::new()).await;
    }
    {
        let _guard = capture.install(Level::INFO);
        run(AccessLogLayer::disabled()).await;
        let config: AccessLogConfig = serde_json::from_str(r#"{"enabled": false}"#).unwrap();
        run(AccessLogLayer::from_config(&config).unwrap()).await;
    }
    assert_eq!(capture.text(), "");
}

#[tokio::test]
async fn one_line_per_request() {
    let capture = Capture::default();
    let _guard = capture.install(Level::INFO);
    let svc = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(AccessLogLayer::new())
        .service_fn(|_req: Request<RequestBody<Empty<Bytes>>>| async {
            Ok::<_, Infallible>(ok_body("hi"))
        });
    let mut ids = Vec::new();
    for i in 0..3 {
        let req = Request::get(format!("/n/{i}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        ids.push(res.headers()["x-request-id"].to_str().unwrap().to_owned());
        res.into_body().collect().await.unwrap();
    }
    let lines = capture.lines();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["path"], format!("/n/{i}"));
        assert_eq!(line["request_id"], ids[i].as_str());
        assert_eq!(line["peer_addr"], "");
        assert_eq!(line["user_agent"], "");
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2]);
}

/// Sends a request with these `x-request-id` values through `layer`; returns the id
/// the inner service saw and the one on the response.
async fn ids_through(layer: RequestIdLayer, sent: &[&str]) -> (String, String) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |req: Request<()>| {
            let values: Vec<String> = req
                .headers()
                .get_all(X_REQUEST_ID)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            record.lock().unwrap().extend(values);
            async {
                let mut res = Response::new(());
                res.headers_mut()
                    .insert(X_REQUEST_ID, "from-upstream".parse().unwrap());
                Ok::<_, Infallible>(res)
            }
        });
    let mut req = Request::new(());
    for v in sent {
        req.headers_mut().append(
            X_REQUEST_ID,
            http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    let res = svc.oneshot(req).await.unwrap();
    let on_response: Vec<_> = res.headers().get_all(X_REQUEST_ID).iter().collect();
    assert_eq!(on_response.len(), 1);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    (seen[0].clone(), on_response[0].to_str().unwrap().to_owned())
}

fn assert_generated(id: &str) {
    let uuid = uuid::Uuid::parse_str(id).unwrap();
    assert_eq!(uuid.get_version_num(), 7);
    assert_eq!(uuid.hyphenated().to_string(), id, "hyphenated lower case");
}

#[tokio::test]
async fn request_ids_kept_replaced_or_generated() {
    let max = "a".repeat(128);
    for valid in ["req-1", "A.b_c:d-9", max.as_str()] {
        let (seen, echoed) = ids_through(RequestIdLayer::new(), &[valid]).await;
        assert_eq!((seen.as_str(), echoed.as_str()), (valid, valid));
    }
    let too_long = "a".repeat(129);
    let invalid: [&[&str]; 6] = [
        &[],
        &[""],
        &["has space"],
        &[too_long.as_str()],
        &["semi;colon"],
        &["one", "two"],
    ];
    for sent in invalid {
        let (seen, echoed) = ids_through(RequestIdLayer::new(), sent).await;
        assert_generated(&seen);
        assert_eq!(seen, echoed, "sent {sent:?}");
    }
    let (seen, echoed) = ids_through(RequestIdLayer::always_generate(), &["req-1"]).await;
    assert_generated(&seen);
    assert_eq!(seen, echoed);
    assert!(!is_valid_request_id("é".as_bytes()));
}

#[test]
fn generated_ids_are_unique_v7_and_time_ordered() {
    let ids: Vec<String> = (0..2000)
        .map(|_| request_id::generate().to_str().unwrap().to_owned())
        .collect();
    for id in &ids {
        assert_generated(id);
    }
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    // The first 48 bits are the Unix time in milliseconds.
    let unix_secs = |id: &str| {
        let (secs, _) = uuid::Uuid::parse_str(id)
            .unwrap()
            .get_timestamp()
            .unwrap()
            .to_unix();
        secs
    };
    assert!(unix_secs(&ids[0]) <= unix_secs(&ids[ids.len() - 1]));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(unix_secs(&ids[0])) < 60);
}

#[tokio::test]
async fn both_layers_in_an_axum_router() {
    use axum::routing::post;
    use axum::{Extension, Router};

    let capture = Capture::default();
    let _guard = capture.install(Level::INFO);
    async fn handler(headers: HeaderMap, body: String) -> (Extension<MatchedRoute>, String) {
        let route = MatchedRoute {
            name: "items".into(),
            template: "/items/{id}".into(),
        };
        let id = headers["x-request-id"].to_str().unwrap_or_default();
        (Extension(route), format!("{id} {}", body.len()))
    }
    let app = Router::new()
        .route("/items/{id}", post(handler))
        .layer(
            AccessLogLayer::new()
                .redact_query_params(["token"])
                .unwrap(),
        )
        .layer(RequestIdLayer::new());
    let req = Request::post("/items/9?token=CANARY123")
        .header("x-request-id", "bad id")
        .body(axum::body::Body::from("0123456789"))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_generated(&id);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("{id} 10"));
    let line = capture.one_line();
    assert_eq!(line["request_id"], id.as_str());
    assert_eq!(line["path"], "/items/9?token=[redacted]");
    assert_eq!(line["route"], "/items/{id}");
    assert_eq!(line["bytes_in"], 10);
    assert_eq!(line["bytes_out"], body.len());
    assert!(!capture.text().contains("CANARY"));
}
