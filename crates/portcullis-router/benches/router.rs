//! Route matching among 50 routes (exact, template, prefix; an exact host, a
//! wildcard host and no host) on the allow paths and the 404 path, against
//! calling the inner service directly.
//!
//! Run: `cargo bench -p portcullis-router -- --warm-up-time 1 --measurement-time 3`.
// criterion's macros define undocumented pub fns; set-up checks may panic.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::Empty;
use portcullis_router::{RouteSpec, Router};
use tower::{Service, service_fn, util::ServiceFn};

type OkFn = fn(Request<()>) -> Ready<Result<Response<Empty<Bytes>>, Infallible>>;

fn ok(_req: Request<()>) -> Ready<Result<Response<Empty<Bytes>>, Infallible>> {
    ready(Ok(Response::new(Empty::new())))
}

fn table() -> Router<ServiceFn<OkFn>> {
    let svc = || service_fn(ok as OkFn);
    let mut b = Router::builder();
    for i in 0..8 {
        let api = |s: RouteSpec| s.host("api.example.com").unwrap();
        b = b
            .route(
                api(RouteSpec::new(format!("status{i}"), &format!("/api/v1/status{i}")).unwrap()),
                svc(),
            )
            .route(
                api(RouteSpec::new(format!("res{i}"), &format!("/api/v1/res{i}/{{id}}")).unwrap())
                    .methods(["GET", "PUT"])
                    .unwrap()
                    .service("resources"),
                svc(),
            )
            .route(
                api(RouteSpec::new(format!("v{i}"), &format!("/api/v{}/", i + 2)).unwrap()),
                svc(),
            )
            .route(
                RouteSpec::new(format!("wild{i}"), &format!("/tenant{i}/{{id}}/items"))
                    .unwrap()
                    .host("*.example.com")
                    .unwrap(),
                svc(),
            )
            .route(
                RouteSpec::new(format!("page{i}"), &format!("/page{i}")).unwrap(),
                svc(),
            )
            .route(
                RouteSpec::new(format!("static{i}"), &format!("/static{i}/{{*rest}}")).unwrap(),
                svc(),
            );
    }
    b.route(
        RouteSpec::new("app", "/app/")
            .unwrap()
            .strip_prefix("/app")
            .unwrap(),
        svc(),
    )
    .route(RouteSpec::new("health", "/healthz").unwrap(), svc())
    .build()
    .expect("bench routes are valid")
}

fn request(uri: &'static str) -> Request<()> {
    Request::get(uri)
        .header("host", "api.example.com")
        .header("user-agent", "curl/8.5.0")
        .header("accept", "application/json")
        .header("x-request-id", "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f")
        .body(())
        .expect("static request")
}

fn matching(c: &mut Criterion) {
    let mut router = table();
    assert_eq!(router.len(), 50);
    // Check every path once, outside the measurement.
    for (uri, status) in [
        ("/api/v1/status7", 200),
        ("/api/v1/res7/12345", 200),
        ("/app/v3/x/y?q=1", 200),
        ("/static3/css/site.css", 200),
        ("/nothing/here", 404),
    ] {
        let res = router.call(request(uri)).now_or_never().unwrap().unwrap();
        assert_eq!(res.status(), status, "{uri}");
    }

    let mut g = c.benchmark_group("router");
    let mut inner = service_fn(ok as OkFn);
    g.bench_function("baseline_inner_only", |b| {
        b.iter_batched(
            || request("/api/v1/res7/12345"),
            |req| black_box(inner.call(req).now_or_never()),
            BatchSize::SmallInput,
        )
    });
    for (name, uri) in [
        ("allow_exact", "/api/v1/status7"),
        ("allow_template", "/api/v1/res7/12345"),
        ("allow_catchall_any_host", "/static3/css/site.css"),
        ("allow_prefix_strip", "/app/v3/x/y?q=1"),
        ("reject_404", "/nothing/here"),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || request(uri),
                |req| black_box(router.call(req).now_or_never()),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
