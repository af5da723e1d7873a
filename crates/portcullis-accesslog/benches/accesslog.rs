//! The request id and access log layers around a trivial service, against the same
//! service without them: with access lines written (JSON into `io::sink`), with a
//! subscriber that wants them but formats nothing, and with the subscriber filtering
//! them out.
//!
//! Run: `cargo bench -p portcullis-accesslog -- --warm-up-time 1 --measurement-time 3`.
// criterion's macros define undocumented pub fns; set-up checks may panic.
#![allow(missing_docs, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use portcullis_accesslog::{AccessLogLayer, RequestIdLayer};
use portcullis_core::{MatchedRoute, ServiceName};
use tower::{Service, ServiceBuilder, service_fn};
use tracing::Level;

/// The inner service: answers at once with a small JSON body, as the router would.
fn ok<B>(_req: Request<B>) -> Ready<Result<Response<Full<Bytes>>, Infallible>> {
    let mut res = Response::new(Full::new(Bytes::from_static(br#"{"id":7,"ok":true}"#)));
    res.headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    res.extensions_mut().insert(MatchedRoute {
        name: "droplets".into(),
        template: "/droplets/{id}".into(),
    });
    res.extensions_mut().insert(ServiceName::new("compute"));
    ready(Ok(res))
}

/// A browser-like request with a query and no request id.
fn request() -> Request<Full<Bytes>> {
    Request::get("/droplets/7?page=2&api_key=abc123")
        .header("host", "api.example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .header("accept", "application/json")
        .header("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig")
        .header("x-tenant", "acme")
        .body(Full::new(Bytes::new()))
        .expect("static request")
}

/// Calls the service and sends the whole response body, as hyper would.
fn drive<S, B>(svc: &mut S, req: Request<Full<Bytes>>) -> usize
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: Body,
{
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(res)) = pin!(svc.call(req)).poll(&mut cx) else {
        panic!("the service answers at once");
    };
    let mut body = pin!(res.into_body());
    let mut n = 0;
    while let Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) {
        n += frame.data_ref().map_or(0, Buf::remaining);
    }
    n
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("accesslog");
    let enabled = tracing_subscriber::fmt()
        .json()
        .with_max_level(Level::INFO)
        .with_writer(std::io::sink)
        .finish();
    let disabled = tracing_subscriber::fmt()
        .json()
        .with_max_level(Level::WARN)
        .with_writer(std::io::sink)
        .finish();
    let layer = AccessLogLayer::new()
        .redact_query_params(["api_key"])
        .expect("valid")
        .log_request_headers(["x-tenant", "authorization"])
        .expect("valid");

    let mut bare = service_fn(ok);
    group.bench_function("without_layers", |b| {
        b.iter_batched(
            request,
            |req| black_box(drive(&mut bare, req)),
            BatchSize::SmallInput,
        )
    });
    let mut layered = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(layer.clone())
        .service_fn(ok);
    tracing::subscriber::with_default(enabled, || {
        group.bench_function("layers_logging_enabled", |b| {
            b.iter_batched(
                request,
                |req| black_box(drive(&mut layered, req)),
                BatchSize::SmallInput,
            )
        });
    });
    // Wants every event but formats nothing: the layers' own cost when enabled.
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        group.bench_function("layers_enabled_null_subscriber", |b| {
            b.iter_batched(
                request,
                |req| black_box(drive(&mut layered, req)),
                BatchSize::SmallInput,
            )
        });
    });
    tracing::subscriber::with_default(disabled, || {
        group.bench_function("layers_logging_filtered_out", |b| {
            b.iter_batched(
                request,
                |req| black_box(drive(&mut layered, req)),
                BatchSize::SmallInput,
            )
        });
    });
    let mut request_id_only = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .service_fn(ok);
    group.bench_function("request_id_only_generating", |b| {
        b.iter_batched(
            request,
            |req| black_box(drive(&mut request_id_only, req)),
            BatchSize::SmallInput,
        )
    });
    let mut access_only = ServiceBuilder::new().layer(layer).service_fn(ok);
    let disabled = tracing_subscriber::fmt()
        .with_max_level(Level::WARN)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(disabled, || {
        group.bench_function("access_log_only_filtered_out", |b| {
            b.iter_batched(
                request,
                |req| black_box(drive(&mut access_only, req)),
                BatchSize::SmallInput,
            )
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
