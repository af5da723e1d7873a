use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use portcullis_core::{Cause, MatchedRoute, ServiceName};
use tower::{ServiceExt, service_fn, util::ServiceFn};

use crate::*;

type EchoFn = fn(Request<()>) -> Ready<Result<Response<Full<Bytes>>, Infallible>>;
type Echo = ServiceFn<EchoFn>;

/// Answers `"<route name> <uri>"` and reports the request extensions in headers.
fn echo(req: Request<()>) -> Ready<Result<Response<Full<Bytes>>, Infallible>> {
    let ext = req.extensions();
    let name = ext
        .get::<MatchedRoute>()
        .map_or("-".to_owned(), |r| r.name.to_string());
    let mut res = Response::new(Full::new(Bytes::from(format!("{name} {}", req.uri()))));
    let h = res.headers_mut();
    if let Some(r) = ext.get::<MatchedRoute>() {
        h.insert("x-template", r.template.parse().unwrap());
    }
    if let Some(s) = ext.get::<ServiceName>() {
        h.insert("x-service", s.0.parse().unwrap());
    }
    if let Some(p) = ext.get::<PathParams>() {
        let list: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
        h.insert("x-params", list.join(";").parse().unwrap());
    }
    ready(Ok(res))
}

fn svc() -> Echo {
    service_fn(echo as EchoFn)
}

fn router(specs: Vec<RouteSpec>) -> Router<Echo> {
    specs
        .into_iter()
        .fold(Router::builder(), |b, s| b.route(s, svc()))
        .build()
        .unwrap()
}

fn spec(name: &str, path: &str) -> RouteSpec {
    RouteSpec::new(name, path).unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    extensions: http::Extensions,
}

async fn send_req(router: &Router<Echo>, req: Request<()>) -> Answer {
    let res = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
        extensions: parts.extensions,
    }
}

async fn send(router: &Router<Echo>, method: &str, host: &str, uri: &str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .body(())
        .unwrap();
    send_req(router, req).await
}

/// The name of the route that answered `GET uri` on `host`.
async fn winner(router: &Router<Echo>, host: &str, uri: &str) -> String {
    let a = send(router, "GET", host, uri).await;
    match a.status {
        StatusCode::OK => a.body.split(' ').next().unwrap().to_owned(),
        other => other.as_str().to_owned(),
    }
}

#[tokio::test]
async fn exact_beats_template_beats_prefix() {
    let r = router(vec![
        spec("prefix", "/d/"),
        spec("template", "/d/{id}"),
        spec("exact", "/d/new"),
        spec("catchall", "/d/{id}/{*rest}"),
    ]);
    assert_eq!(winner(&r, "h", "/d/new").await, "exact");
    assert_eq!(winner(&r, "h", "/d/7").await, "template");
    assert_eq!(winner(&r, "h", "/d/7/x/y").await, "catchall");
    assert_eq!(winner(&r, "h", "/d/").await, "prefix");
    assert_eq!(winner(&r, "h", "/d").await, "prefix");
    assert_eq!(winner(&r, "h", "/e").await, "404");
}

#[tokio::test]
async fn static_segments_beat_params_in_templates() {
    let r = router(vec![
        spec("param", "/u/{id}/keys"),
        spec("static", "/u/me/{what}"),
        spec("g-static", "/g/me/{what}"),
        spec("g-rest", "/g/{*rest}"),
    ]);
    assert_eq!(winner(&r, "h", "/u/me/keys").await, "static");
    assert_eq!(winner(&r, "h", "/u/7/keys").await, "param");
    assert_eq!(winner(&r, "h", "/u/7/other").await, "404");
    assert_eq!(winner(&r, "h", "/g/me/x").await, "g-static");
    assert_eq!(winner(&r, "h", "/g/7/x").await, "g-rest");
    assert_eq!(winner(&r, "h", "/g/me").await, "g-rest");
}

#[tokio::test]
async fn longer_prefix_wins_at_segment_boundaries() {
    let r = router(vec![
        spec("root", "/"),
        spec("v1", "/v1/"),
        spec("v1-admin", "/v1/admin/"),
    ]);
    assert_eq!(winner(&r, "h", "/v1/admin/users").await, "v1-admin");
    assert_eq!(winner(&r, "h", "/v1/admin").await, "v1-admin");
    assert_eq!(winner(&r, "h", "/v1/adminx").await, "v1");
    assert_eq!(winner(&r, "h", "/v1").await, "v1");
    assert_eq!(winner(&r, "h", "/v10/x").await, "root");
    assert_eq!(winner(&r, "h", "/").await, "root");
}

#[tokio::test]
async fn exact_host_beats_wildcard_beats_none() {
    let r = router(vec![
        spec("any", "/"),
        spec("wild", "/").host("*.example.com").unwrap(),
        spec("wild-deep", "/").host("*.eu.example.com").unwrap(),
        spec("exact", "/").host("api.example.com").unwrap(),
    ]);
    assert_eq!(winner(&r, "api.example.com", "/").await, "exact");
    assert_eq!(winner(&r, "API.Example.COM:8443", "/").await, "exact");
    assert_eq!(winner(&r, "api.example.com.", "/").await, "exact");
    assert_eq!(winner(&r, "www.example.com", "/").await, "wild");
    assert_eq!(winner(&r, "a.b.example.com", "/").await, "wild");
    assert_eq!(winner(&r, "a.eu.example.com", "/").await, "wild-deep");
    assert_eq!(winner(&r, "example.com", "/").await, "any");
    assert_eq!(winner(&r, "badexample.com", "/").await, "any");
    assert_eq!(winner(&r, "[::1]:80", "/").await, "any");
}

#[tokio::test]
async fn uri_authority_beats_host_header() {
    let r = router(vec![
        spec("any", "/"),
        spec("exact", "/").host("api.example.com").unwrap(),
        spec("v6", "/").host("[::1]").unwrap(),
    ]);
    // Absolute-form (and HTTP/2 :authority) carry the host in the URI.
    assert_eq!(
        winner(&r, "other", "http://u@Api.Example.com:80/").await,
        "exact"
    );
    assert_eq!(winner(&r, "api.example.com", "http://other/").await, "any");
    assert_eq!(winner(&r, "[::1]:8080", "/").await, "v6");
    // A host longer than 255 bytes is malformed.
    let long = format!("{}.example.com", "a".repeat(300));
    assert_eq!(winner(&r, &long, "/").await, "400");
}

#[tokio::test]
async fn falls_through_to_less_specific_hosts() {
    let r = router(vec![
        spec("api-a", "/a").host("api.example.com").unwrap(),
        spec("wild-b", "/b").host("*.example.com").unwrap(),
        spec("any-c", "/c"),
        spec("api-get", "/m")
            .host("api.example.com")
            .unwrap()
            .methods(["GET"])
            .unwrap(),
        spec("any-m", "/m"),
    ]);
    assert_eq!(winner(&r, "api.example.com", "/a").await, "api-a");
    assert_eq!(winner(&r, "api.example.com", "/b").await, "wild-b");
    assert_eq!(winner(&r, "api.example.com", "/c").await, "any-c");
    assert_eq!(winner(&r, "www.example.com", "/a").await, "404");
    // A method the exact host's route refuses falls through too.
    let a = send(&r, "POST", "api.example.com", "/m").await;
    assert_eq!(a.body, "any-m /m");
}

#[tokio::test]
async fn method_sets_come_before_any_method() {
    let r = router(vec![
        spec("any", "/x"),
        spec("read", "/x").methods(["GET", "HEAD"]).unwrap(),
        spec("write", "/x").methods(["post", "PUT"]).unwrap(),
    ]);
    assert_eq!(send(&r, "GET", "h", "/x").await.body, "read /x");
    assert_eq!(send(&r, "HEAD", "h", "/x").await.body, "read /x");
    assert_eq!(send(&r, "POST", "h", "/x").await.body, "write /x");
    assert_eq!(send(&r, "DELETE", "h", "/x").await.body, "any /x");
}

#[tokio::test]
async fn header_predicates_more_first_and_exact_bytes() {
    let r = router(vec![
        spec("plain", "/x").methods(["GET"]).unwrap(),
        spec("beta", "/x")
            .methods(["GET"])
            .unwrap()
            .header("x-beta", HeaderPredicate::Present)
            .unwrap(),
        spec("beta-eu", "/x")
            .methods(["GET"])
            .unwrap()
            .header("x-beta", HeaderPredicate::Present)
            .unwrap()
            .header("X-Region", HeaderPredicate::equals_static("eu"))
            .unwrap(),
        spec("only-v2", "/y")
            .header("x-version", HeaderPredicate::equals_static("2"))
            .unwrap(),
    ]);
    let with = |hs: &[(&str, &str)], uri: &str| {
        let mut b = Request::get(uri).header("host", "h");
        for (k, v) in hs {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    };
    let name = |a: Answer| a.body.split(' ').next().unwrap().to_owned();
    assert_eq!(name(send_req(&r, with(&[], "/x")).await), "plain");
    assert_eq!(
        name(send_req(&r, with(&[("x-beta", "")], "/x")).await),
        "beta"
    );
    assert_eq!(
        name(send_req(&r, with(&[("x-beta", "1"), ("x-region", "eu")], "/x")).await),
        "beta-eu"
    );
    assert_eq!(
        name(send_req(&r, with(&[("x-beta", "1"), ("x-region", "EU")], "/x")).await),
        "beta"
    );
    // Any of several values may be the equal one.
    assert_eq!(
        name(send_req(&r, with(&[("x-version", "1"), ("x-version", "2")], "/y")).await),
        "only-v2"
    );
    // Failing header predicates are a 404, not a 405.
    let a = send_req(&r, with(&[("x-version", "2 ")], "/y")).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.headers["portcullis-error"], "no_route");
}

#[tokio::test]
async fn no_route_is_the_gateway_404() {
    let r = router(vec![spec("a", "/a")]);
    let req = Request::get("/b")
        .header("host", "h")
        .header("x-request-id", "req-9")
        .body(())
        .unwrap();
    let a = send_req(&r, req).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.headers["portcullis-error"], "no_route");
    assert_eq!(a.headers["x-request-id"], "req-9");
    assert_eq!(a.extensions.get::<Cause>(), Some(&Cause::NoRoute));
    assert!(a.extensions.get::<MatchedRoute>().is_none());
    assert_eq!(
        a.body,
        r#"{"error":"no_route","status":404,"request_id":"req-9","service":null}"#
    );
    // An empty table answers 404 to everything.
    let empty = Router::<Echo>::builder().build().unwrap();
    assert!(empty.is_empty());
    assert_eq!(winner(&empty, "h", "/").await, "404");
}

#[tokio::test]
async fn method_not_allowed_lists_allow_sorted() {
    let r = router(vec![
        spec("read", "/x").methods(["GET"]).unwrap(),
        spec("write", "/x")
            .methods(["PUT", "POST", "GET"])
            .unwrap()
            .header("x-a", HeaderPredicate::Present)
            .unwrap(),
        spec("other-path", "/y").methods(["DELETE"]).unwrap(),
        spec("other-host", "/x")
            .host("api.example.com")
            .unwrap()
            .methods(["PATCH"])
            .unwrap(),
    ]);
    let a = send(&r, "DELETE", "h", "/x").await;
    assert_eq!(a.status, 405);
    assert_eq!(a.headers["allow"], "GET, POST, PUT");
    assert_eq!(a.headers["portcullis-error"], "method_not_allowed");
    assert_eq!(a.extensions.get::<Cause>(), Some(&Cause::MethodNotAllowed));
    // The exact host's route adds its methods; the host fell through to the rest.
    let a = send(&r, "DELETE", "api.example.com", "/x").await;
    assert_eq!(a.headers["allow"], "GET, PATCH, POST, PUT");
    // A path no route has is a 404.
    assert_eq!(send(&r, "DELETE", "h", "/z").await.status, 404);
}

#[tokio::test]
async fn strip_prefix_on_raw_bytes_keeps_query() {
    let r = router(vec![
        spec("v1", "/v1/").strip_prefix("/v1").unwrap(),
        spec("v2", "/v2/{*rest}").strip_prefix("/v2/").unwrap(),
    ]);
    for (uri, want) in [
        ("/v1/x", "/x"),
        ("/v1", "/"),
        ("/v1?a=1&b=%2F", "/?a=1&b=%2F"),
        ("/v1/a%2Fb//c/../d?q=..", "/a%2Fb//c/../d?q=.."),
        ("/v1/?", "/?"),
        ("http://h:81/v1/x?y", "http://h:81/x?y"),
    ] {
        let a = send(&r, "GET", "h", uri).await;
        assert_eq!(a.body, format!("v1 {want}"), "{uri}");
    }
    let a = send(&r, "GET", "h", "/v2/a/../b").await;
    assert_eq!(a.body, "v2 /a/../b");
    assert_eq!(a.headers["x-params"], "rest=a/../b");
    assert_eq!(a.headers["x-template"], "/v2/{*rest}");
}

#[test]
fn strip_only_at_segment_boundaries() {
    use crate::spec::strip_at_boundary;
    assert_eq!(strip_at_boundary("/v1/x", "/v1"), Some("/x"));
    assert_eq!(strip_at_boundary("/v1", "/v1"), Some(""));
    assert_eq!(strip_at_boundary("/v10/x", "/v1"), None);
    assert_eq!(strip_at_boundary("/V1/x", "/v1"), None);
}

#[tokio::test]
async fn strip_prefix_leaves_other_paths_alone() {
    let r = router(vec![spec("all", "/").strip_prefix("/v1").unwrap()]);
    assert_eq!(send(&r, "GET", "h", "/v10/x").await.body, "all /v10/x");
    assert_eq!(send(&r, "GET", "h", "/v1/x").await.body, "all /x");
}

#[tokio::test]
async fn rewrite_templates_and_prefixes_on_raw_bytes() {
    let r = router(vec![
        spec("droplet", "/droplets/{id}")
            .rewrite("/internal/droplets/{id}")
            .unwrap(),
        spec("files", "/files/{*rest}")
            .rewrite("/static/{rest}")
            .unwrap(),
        spec("swap", "/s/{a}/{b}").rewrite("/s/{b}/{*a}").unwrap(),
        spec("v1", "/v1/").rewrite("/new/").unwrap(),
        spec("root", "/old/").rewrite("/").unwrap(),
        spec("exact", "/ping").rewrite("/healthz").unwrap(),
    ]);
    for (uri, want) in [
        (
            "/droplets/a%2Fb?x=1",
            "droplet /internal/droplets/a%2Fb?x=1",
        ),
        ("/files/x//y/../z?q", "files /static/x//y/../z?q"),
        ("/s/1/2", "swap /s/2/1"),
        ("/v1/a%2Fb?q=%3F", "v1 /new/a%2Fb?q=%3F"),
        ("/v1", "v1 /new"),
        ("/v1/", "v1 /new/"),
        ("/old/x", "root /x"),
        ("/old", "root /"),
        ("/ping?full", "exact /healthz?full"),
        ("https://h/ping", "exact https://h/healthz"),
    ] {
        assert_eq!(send(&r, "GET", "h", uri).await.body, want, "{uri}");
    }
    // Captures are the bytes the client sent, before the rewrite.
    let a = send(&r, "GET", "h", "/droplets/a%2Fb").await;
    assert_eq!(a.headers["x-params"], "id=a%2Fb");
}

#[tokio::test]
async fn template_and_service_in_request_and_response_extensions() {
    let r = router(vec![
        spec("droplet", "/droplets/{id}").service("droplets"),
        spec("health", "/healthz"),
    ]);
    let a = send(&r, "GET", "h", "/droplets/7").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["x-template"], "/droplets/{id}");
    assert_eq!(a.headers["x-service"], "droplets");
    assert_eq!(a.headers["x-params"], "id=7");
    assert_eq!(
        a.extensions.get::<MatchedRoute>(),
        Some(&MatchedRoute {
            name: "droplet".into(),
            template: "/droplets/{id}".into()
        })
    );
    assert_eq!(
        a.extensions.get::<ServiceName>(),
        Some(&ServiceName::new("droplets"))
    );
    // No service name, no params: neither extension.
    let a = send(&r, "GET", "h", "/healthz").await;
    assert_eq!(a.headers["x-template"], "/healthz");
    assert!(a.headers.get("x-service").is_none());
    assert!(a.headers.get("x-params").is_none());
    assert!(a.extensions.get::<ServiceName>().is_none());
}

#[tokio::test]
async fn response_extensions_set_by_the_service_are_kept() {
    let inner = service_fn(|_req: Request<()>| async {
        let mut res = Response::new(Full::new(Bytes::new()));
        res.extensions_mut().insert(ServiceName::new("from-inner"));
        Ok::<_, Infallible>(res)
    });
    let r = Router::builder()
        .route(spec("r", "/").service("from-route"), inner)
        .build()
        .unwrap();
    let res = r
        .oneshot(Request::get("/").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        res.extensions().get::<ServiceName>(),
        Some(&ServiceName::new("from-inner"))
    );
    assert_eq!(
        res.extensions()
            .get::<MatchedRoute>()
            .unwrap()
            .name
            .as_ref(),
        "r"
    );
}

#[test]
fn build_reports_every_problem() {
    let errors = Router::builder()
        .try_route(RouteSpec::new("bad-path", "/a/{id"), svc())
        .try_route(spec("bad-host", "/").host("a:80"), svc())
        .route(spec("a", "/x").methods(["GET", "POST"]).unwrap(), svc())
        .route(spec("b", "/x").methods(["POST"]).unwrap(), svc())
        .route(spec("c", "/x"), svc())
        .route(
            spec("d", "/x")
                .host("h")
                .unwrap()
                .methods(["POST"])
                .unwrap(),
            svc(),
        )
        .route(spec("e", "/t/{id}"), svc())
        .route(spec("f", "/t/{name}"), svc())
        .route(spec("g", "/t/{name}").host("h").unwrap(), svc())
        .build()
        .unwrap_err();
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            r#"route "bad-path": invalid path "/a/{id": parameters need a name between balanced braces"#,
            r#"route "bad-host": invalid host "a:80": must not include a port"#,
            r#"route "b": duplicates route "a" (same host, path "/x", methods and headers)"#,
            r#"route "f": template "/t/{name}" conflicts with "/t/{id}" of route "e""#,
        ]
    );
}

#[test]
fn header_predicates_distinguish_duplicates() {
    let built = Router::builder()
        .route(spec("a", "/x"), svc())
        .route(
            spec("b", "/x")
                .header("x-a", HeaderPredicate::Present)
                .unwrap(),
            svc(),
        )
        .route(spec("c", "/x").methods(["GET"]).unwrap(), svc())
        .build();
    assert_eq!(built.map(|r| r.len()).unwrap(), 3);
    let errors = Router::builder()
        .route(
            spec("a", "/x")
                .header("x-a", HeaderPredicate::Present)
                .unwrap(),
            svc(),
        )
        .route(
            spec("b", "/x")
                .header("X-A", HeaderPredicate::Present)
                .unwrap(),
            svc(),
        )
        .build()
        .unwrap_err();
    assert!(
        matches!(&errors[..], [ConfigError::DuplicateRoute { route, other, .. }] if &**route == "b" && &**other == "a")
    );
}

/// A service that is not ready at first, then fails its readiness check.
#[derive(Clone)]
struct Flaky {
    polls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl tower::Service<Request<()>> for Flaky {
    type Response = Response<Full<Bytes>>;
    type Error = &'static str;
    type Future = Ready<Result<Self::Response, &'static str>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.polls.fetch_add(1, SeqCst) == 0 {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(Err("inner not ready"))
        }
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        ready(Ok(Response::new(Full::new(Bytes::new()))))
    }
}

#[tokio::test]
async fn readiness_is_awaited_in_the_future_and_errors_pass_through() {
    let polls = std::sync::Arc::default();
    let mut r = Router::builder()
        .route(
            spec("r", "/"),
            Flaky {
                polls: std::sync::Arc::clone(&polls),
            },
        )
        .build()
        .unwrap();
    // The router is ready before the route's service was asked.
    std::future::poll_fn(|cx| tower::Service::poll_ready(&mut r, cx))
        .await
        .unwrap();
    assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 0);
    let err = r
        .oneshot(Request::get("/").body(()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err, "inner not ready");
    assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn inside_a_plain_axum_router() {
    use axum::body::Body;
    use axum::routing::get;

    let api = axum::Router::new().route(
        "/droplets/{id}",
        get(
            |axum::extract::Path(id): axum::extract::Path<String>| async move {
                format!("droplet {id}")
            },
        ),
    );
    let gateway = Router::builder()
        .route(
            RouteSpec::new("droplets", "/v1/droplets/{id}")
                .unwrap()
                .strip_prefix("/v1")
                .unwrap()
                .service("api"),
            api,
        )
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route("/local", get(|| async { "local" }))
        .fallback_service(gateway);

    let res = app
        .clone()
        .oneshot(Request::get("/v1/droplets/42").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.extensions().get::<MatchedRoute>().map(|m| &*m.template),
        Some("/v1/droplets/{id}")
    );
    assert_eq!(
        &res.into_body().collect().await.unwrap().to_bytes()[..],
        b"droplet 42"
    );

    let res = app
        .clone()
        .oneshot(Request::get("/local").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        &res.into_body().collect().await.unwrap().to_bytes()[..],
        b"local"
    );

    let res = app
        .oneshot(Request::get("/v2/droplets/42").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["portcullis-error"], "no_route");
}

#[test]
fn method_parse_is_exact() {
    // `Method` equality is what `method_ok` relies on: extension methods too.
    let s = spec("r", "/").methods(["PURGE"]).unwrap();
    assert_eq!(
        s.method_set(),
        Some(&[Method::from_bytes(b"PURGE").unwrap()][..])
    );
}

/// Asserts the gateway's own 400 `bad_request`, with the cause in the extensions.
fn assert_bad_request(a: &Answer, what: &str) {
    assert_eq!(a.status, 400, "{what}: {}", a.body);
    assert_eq!(a.headers["portcullis-error"], "bad_request", "{what}");
    assert_eq!(
        a.extensions.get::<Cause>(),
        Some(&Cause::BadRequest),
        "{what}"
    );
    assert_eq!(
        a.body, r#"{"error":"bad_request","status":400,"request_id":null,"service":null}"#,
        "{what}"
    );
}

#[test]
fn dot_segments_are_found_in_every_spelling() {
    use crate::ambiguous::{Dots, dot_segments};
    let one = Some(Dots { dotdot: false });
    let two = Some(Dots { dotdot: true });
    for (path, want) in [
        ("/a/b.c/d", None),
        ("/...", None),
        ("/a..", None),
        ("/%2e%2e%2e", None),
        ("/%2", None),
        ("/%2F..%2F", None),
        ("/a%2e", None),
        ("/.", one),
        ("/a/./b", one),
        ("/a/%2E/", one),
        ("/..", two),
        ("/a/../b", two),
        ("/a/%2e%2e/b", two),
        ("/a/%2E./b", two),
        ("/a/.%2e", two),
        ("/./x/..", two),
    ] {
        assert_eq!(dot_segments(path), want, "{path}");
    }
}

#[test]
fn the_fast_scan_finds_every_segment_start() {
    use crate::ambiguous::may_have_dot_segment;
    // Neighbours of `.`, `%` and `/`, zero, and bytes with the high bit set.
    let filler = [b'-', b'$', b'&', b'0', 0xae, 0xa5, 0xaf, 0xff, 0x00, b'a'];
    for len in 0..26 {
        let plain: Vec<u8> = (0..len).map(|i| filler[i % filler.len()]).collect();
        assert!(!may_have_dot_segment(&plain), "{plain:?}");
        for at in 0..len {
            for needle in [b'.', b'%'] {
                // Not after a slash: only at the very start.
                let mut bytes = plain.clone();
                bytes[at] = needle;
                assert_eq!(may_have_dot_segment(&bytes), at == 0, "{bytes:?}");
                // After a slash, also across word boundaries.
                if at > 0 {
                    bytes[at - 1] = b'/';
                    assert!(may_have_dot_segment(&bytes), "{bytes:?}");
                    // A slash after it does not count.
                    bytes[at - 1] = filler[0];
                    if at + 1 < len {
                        bytes[at + 1] = b'/';
                        assert!(!may_have_dot_segment(&bytes), "{bytes:?}");
                    }
                }
            }
        }
    }
    assert!(!may_have_dot_segment(b"/static3/css/site.css"));
    assert!(!may_have_dot_segment(b"/a%2Fb/c"));
    assert!(may_have_dot_segment(b"/static3/css/.site"));
}

#[test]
fn remove_dot_segments_follows_rfc_3986() {
    use crate::ambiguous::remove_dot_segments;
    for (path, want) in [
        ("/a/b/c/./../../g", "/a/g"),
        ("/./a", "/a"),
        ("/..", "/"),
        ("/../a", "/a"),
        ("/a/..", "/"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/a/./", "/a/"),
        ("/a/b/../../..", "/"),
        ("//a/../b", "//b"),
        ("/a/%2e%2E/b", "/b"),
        ("/a/%2E/b", "/a/b"),
        ("/a%2F../b", "/a%2F../b"),
        ("/a/..%2F../b", "/a/..%2F../b"),
        ("/x//y/../z", "/x//z"),
        ("*", "*"),
    ] {
        assert_eq!(remove_dot_segments(path), want, "{path}");
    }
}

#[tokio::test]
async fn dot_segments_that_change_the_outcome_are_refused() {
    let r = router(vec![
        spec("public", "/public/"),
        spec("admin", "/admin/").service("admin"),
        spec("ro", "/ro/").methods(["GET"]).unwrap(),
    ]);
    for uri in [
        "/public/../admin/secret",
        "/public/%2e%2e/admin/secret",
        "/public/%2E%2E/admin/secret",
        "/public/.%2e/admin/secret",
        "/public/a/../../admin/secret?x=1",
        "/admin/../public/x",
        // Raw: `public`; without dot segments: no route at all.
        "/public/..",
        "http://h/public/../admin/x",
    ] {
        let a = send(&r, "GET", "h", uri).await;
        assert_bad_request(&a, uri);
        assert!(a.extensions.get::<MatchedRoute>().is_none(), "{uri}");
    }
    // The same route either way: the raw path is what is forwarded.
    for uri in [
        "/public/./x",
        "/public/a/../b",
        "/public/a/%2e%2e/b?q=/../admin",
        "/public/x/.",
        "/public/...",
        "/public/..%2F..%2Fadmin",
        "/public/x?path=/../../admin",
    ] {
        let a = send(&r, "GET", "h", uri).await;
        assert_eq!(a.status, 200, "{uri}");
        assert_eq!(a.body, format!("public {uri}"));
    }
    // No route either way: the usual 404.
    let a = send(&r, "GET", "h", "/nope/../nothing").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.headers["portcullis-error"], "no_route");
    // The same 405 either way; a 405 that would be a 404 is ambiguous.
    let a = send(&r, "DELETE", "h", "/ro/a/../b").await;
    assert_eq!(a.status, 405);
    assert_eq!(a.headers["allow"], "GET");
    assert_bad_request(&send(&r, "DELETE", "h", "/ro/..").await, "DELETE /ro/..");
}

#[tokio::test]
async fn dot_segments_through_a_catch_all_pass_untouched() {
    let r = router(vec![spec("all", "/")]);
    for uri in ["//a/../b", "/a/./b/../c", "/%2e%2e/x", "/.."] {
        let a = send(&r, "GET", "h", uri).await;
        assert_eq!(a.body, format!("all {uri}"), "{uri}");
    }
}

#[tokio::test]
async fn path_edits_cannot_climb_out_of_their_target() {
    let r = router(vec![
        spec("all", "/").strip_prefix("/s").unwrap(),
        spec("files", "/files/{*rest}")
            .rewrite("/static/{rest}")
            .unwrap(),
        spec("v1", "/v1/").rewrite("/svc/v1/").unwrap(),
        spec("deep", "/a/{x}/{*rest}")
            .service("deep")
            .rewrite("/t/{rest}")
            .unwrap(),
    ]);
    for uri in [
        "/files/../admin",
        "/files/%2e%2e/admin",
        "/v1/../../admin",
        "/v1/..",
    ] {
        assert_bad_request(&send(&r, "GET", "h", uri).await, uri);
    }
    // The raw and the resolved path both select `deep`, but the rewrite would
    // send `/t/../c/d`, which resolves to `/c/d`.
    let a = send(&r, "GET", "h", "/a/b/../c/d").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.headers["portcullis-error"], "bad_request");
    assert_eq!(
        a.body,
        r#"{"error":"bad_request","status":400,"request_id":null,"service":"deep"}"#
    );
    assert_eq!(
        a.extensions.get::<MatchedRoute>().map(|m| &*m.name),
        Some("deep")
    );
    // A strip that resolves to a network-path reference.
    assert_bad_request(
        &send(&r, "GET", "h", "/s/../..//evil.com/x").await,
        "/s/../..//evil.com/x",
    );
    // Dot segments that stay inside the target pass raw.
    for (uri, want) in [
        ("/files/x/../y", "files /static/x/../y"),
        ("/files/x//y/../z?q", "files /static/x//y/../z?q"),
        ("/v1/a/../b", "v1 /svc/v1/a/../b"),
        ("/a/b/c/d/../e", "deep /t/c/d/../e"),
        ("/s/x/../y", "all /x/../y"),
        ("/s/../x", "all /../x"),
    ] {
        assert_eq!(send(&r, "GET", "h", uri).await.body, want, "{uri}");
    }
}

#[tokio::test]
async fn edits_that_start_with_a_double_slash_are_refused() {
    let r = router(vec![
        spec("s", "/s/").strip_prefix("/s").unwrap(),
        spec("v1", "/v1/").rewrite("/").unwrap(),
        spec("t", "/t/{*rest}").rewrite("/{rest}").unwrap(),
        spec("all", "/"),
    ]);
    for uri in ["/s//evil.com/x", "/v1//evil.com", "/t//evil.com/x?q"] {
        let a = send(&r, "GET", "h", uri).await;
        assert_eq!(a.status, 400, "{uri}");
        assert_eq!(a.headers["portcullis-error"], "bad_request", "{uri}");
        assert!(a.extensions.get::<MatchedRoute>().is_some(), "{uri}");
    }
    // Unedited raw paths pass as sent; single slashes after an edit too.
    for (uri, want) in [
        ("//evil.com/x", "all //evil.com/x"),
        ("/s/x//y", "s /x//y"),
        ("/t/a", "t /a"),
    ] {
        assert_eq!(send(&r, "GET", "h", uri).await.body, want, "{uri}");
    }
}

#[test]
fn hosts_are_parsed_strictly() {
    use crate::ambiguous::host_key;
    let key = |raw: &str| {
        let mut buf = [0u8; 255];
        host_key(raw.as_bytes(), &mut buf).map(|k| String::from_utf8(k.to_vec()).unwrap())
    };
    for (raw, want) in [
        ("api.example.com", "api.example.com"),
        ("API.example.com:8443", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("api.example.com.:80", "api.example.com"),
        ("10.0.0.1:65535", "10.0.0.1"),
        ("Under_Score-1", "under_score-1"),
        ("[::1]", "[::1]"),
        ("[0::1]:80", "[::1]"),
        ("[0:0:0:0:0:0:0:1]", "[::1]"),
        ("[::FFFF:10.0.0.1]", "[::ffff:10.0.0.1]"),
        ("[2001:DB8::A]", "[2001:db8::a]"),
    ] {
        assert_eq!(key(raw).as_deref(), Some(want), "{raw}");
    }
    let long = "a".repeat(256);
    for raw in [
        "",
        ".",
        ":80",
        "api.example.com:@evil.com",
        "api.example.com:80:90",
        "api.example.com:",
        "api.example.com:123456",
        "api.example.com:8a",
        "a b",
        "a/b",
        "a@b",
        "exa%6dple.com",
        "caf\u{e9}.example",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[::1]:80:90",
        "[zz::1]",
        "[1::2::3]",
        "[v1.x]",
        "[fe80::1%25eth0]",
        "[ ::1]",
        &long,
    ] {
        assert_eq!(key(raw), None, "{raw:?}");
    }
}

#[tokio::test]
async fn malformed_hosts_are_refused() {
    let r = router(vec![
        spec("any", "/"),
        spec("api", "/").host("api.example.com").unwrap(),
    ]);
    for host in [
        "api.example.com:@evil.com",
        "api.example.com:80:90",
        "api.example.com:",
        "api.example.com x",
        "",
        "[::1",
    ] {
        assert_bad_request(&send(&r, "GET", host, "/").await, host);
    }
    let req = Request::get("/")
        .header(
            "host",
            http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        )
        .body(())
        .unwrap();
    assert_bad_request(&send_req(&r, req).await, "non-ascii host");
    // Checked even when no route names a host: the proxy forwards the Host.
    let plain = router(vec![spec("any", "/")]);
    assert_bad_request(&send(&plain, "GET", "a:80:90", "/").await, "plain a:80:90");
    // Well-formed hosts route as before; no host at all (HTTP/1.0) too.
    assert_eq!(winner(&r, "API.example.com.:8080", "/").await, "api");
    assert_eq!(winner(&r, "10.0.0.1:80", "/").await, "any");
    let bare = Request::get("/")
        .version(http::Version::HTTP_10)
        .body(())
        .unwrap();
    assert_eq!(send_req(&r, bare).await.body, "any /");
}

#[tokio::test]
async fn ipv6_hosts_are_compared_canonically() {
    let r = router(vec![
        spec("any", "/"),
        spec("loop", "/").host("[0:0::1]").unwrap(),
        spec("mapped", "/").host("[::FFFF:10.0.0.1]").unwrap(),
    ]);
    assert_eq!(winner(&r, "[::1]", "/").await, "loop");
    assert_eq!(winner(&r, "[0000::0001]:8443", "/").await, "loop");
    assert_eq!(winner(&r, "[::ffff:a00:1]", "/").await, "mapped");
    assert_eq!(winner(&r, "[::2]", "/").await, "any");
    assert_eq!(winner(&r, "other", "http://[0::1]:80/").await, "loop");
    assert_eq!(
        spec("r", "/").host("[0:0::1]").unwrap().host_pattern(),
        Some("[0:0::1]")
    );
}

#[test]
fn strip_prefix_must_be_able_to_apply() {
    let err = |path: &str, prefix: &str| spec("r", path).strip_prefix(prefix).err();
    assert_eq!(
        err("/api/", "/v1").map(|e| e.to_string()).as_deref(),
        Some(r#"route "r": strip_prefix "/v1" can never apply to its path "/api/""#)
    );
    assert_eq!(
        err("/v10/x", "/v1/"),
        Some(ConfigError::StripPrefixNotOnPath {
            route: "r".into(),
            prefix: "/v1/".into(),
            path: "/v10/x".into(),
        })
    );
    for (path, prefix) in [
        ("/v10/", "/v1"),
        ("/v1/x", "/v1/x/y"),
        ("/v1/d/{id}", "/v2"),
        ("/v1/d/{id}", "/v1/e"),
    ] {
        assert!(
            matches!(
                err(path, prefix),
                Some(ConfigError::StripPrefixNotOnPath { .. })
            ),
            "{path} {prefix}"
        );
    }
    for (path, prefix) in [
        ("/", "/v1"),
        ("/v1/", "/v1"),
        ("/v1/", "/v1/x"),
        ("/ping", "/ping"),
        ("/v1/x", "/v1"),
        ("/v1/d/{id}", "/v1"),
        ("/v1/d/{id}", "/v1/d"),
        ("/{tenant}/x", "/acme"),
    ] {
        assert_eq!(err(path, prefix), None, "{path} {prefix}");
    }
}

#[test]
fn dot_segments_in_configured_paths_are_refused() {
    assert!(matches!(
        RouteSpec::new("r", "/a/../b"),
        Err(ConfigError::InvalidPath { reason, .. }) if reason.contains(". or ..")
    ));
    assert!(matches!(
        RouteSpec::new("r", "/a/%2e/{id}"),
        Err(ConfigError::InvalidPath { .. })
    ));
    assert!(matches!(
        spec("r", "/f/{*rest}").rewrite("/s/../{rest}"),
        Err(ConfigError::InvalidRewrite { .. })
    ));
    assert!(matches!(
        spec("r", "/").strip_prefix("/a/.."),
        Err(ConfigError::InvalidStripPrefix { .. })
    ));
    // Dots inside a segment are fine.
    assert!(RouteSpec::new("r", "/v1.2/file..txt").is_ok());
}
