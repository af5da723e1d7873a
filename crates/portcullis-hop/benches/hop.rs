//! `HopByHop` against the same service without it, on realistic requests.
//!
//! Run: `cargo bench -p portcullis-hop -- --warm-up-time 1 --measurement-time 2`.
// criterion's macros define undocumented pub fns; set-up checks may panic.
#![allow(missing_docs, clippy::expect_used)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response};
use portcullis_hop::HopByHop;
use tower::{Service, service_fn};

/// The inner service: answers at once, as a typical origin would, keep-alive included.
fn ok(_req: Request<()>) -> Ready<Result<Response<()>, Infallible>> {
    let mut res = Response::new(());
    let h = res.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("content-length", HeaderValue::from_static("512"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    h.insert(
        "date",
        HeaderValue::from_static("Fri, 27 Nov 2026 12:00:00 GMT"),
    );
    h.insert("connection", HeaderValue::from_static("keep-alive"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    ready(Ok(res))
}

/// A browser-like request: 10 headers, `Connection: keep-alive` among them.
fn keep_alive_request() -> Request<()> {
    Request::get("/api/v1/droplets?page=2&per_page=20")
        .header("host", "api.example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .header("accept", "application/json, text/plain, */*")
        .header("accept-language", "en-GB,en;q=0.5")
        .header("accept-encoding", "gzip, deflate, br")
        .header("connection", "keep-alive")
        .header("referer", "https://app.example.com/droplets")
        .header("cookie", "session=3f2a9c81d7e64b0f; theme=dark")
        .header("x-request-id", "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f")
        .header("cache-control", "no-cache")
        .body(())
        .expect("static request")
}

/// The same request without any hop-by-hop header.
fn plain_request() -> Request<()> {
    let mut req = keep_alive_request();
    req.headers_mut().remove("connection");
    req.headers_mut()
        .insert("sec-fetch-mode", HeaderValue::from_static("cors"));
    req
}

fn bench_request(c: &mut Criterion, name: &str, make: fn() -> Request<()>) {
    let mut group = c.benchmark_group(name);
    let mut bare = service_fn(ok);
    group.bench_function("without_layer", |b| {
        b.iter_batched(
            make,
            |req| black_box(bare.call(req).now_or_never()),
            BatchSize::SmallInput,
        )
    });
    let mut layered = HopByHop::new(service_fn(ok));
    // The layer must really strip: check once, outside the measurement.
    let res = layered
        .call(make())
        .now_or_never()
        .expect("ready")
        .expect("infallible");
    assert!(res.headers().get("connection").is_none());
    assert!(res.headers().get("keep-alive").is_none());
    group.bench_function("with_layer", |b| {
        b.iter_batched(
            make,
            |req| black_box(layered.call(req).now_or_never()),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn hop(c: &mut Criterion) {
    bench_request(c, "hop/keep_alive_request", keep_alive_request);
    bench_request(c, "hop/no_hop_headers", plain_request);
}

criterion_group!(benches, hop);
criterion_main!(benches);
