//! `FramingGuard` against the same service without it (allow and reject paths), and
//! `HeadInspector::feed` on a typical head and on a pipelined stream.
//!
//! Run: `cargo bench -p portcullis-body -- --warm-up-time 1 --measurement-time 2`.
// criterion's macros define undocumented pub fns; set-up checks may panic.
#![allow(missing_docs, clippy::expect_used)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Empty;
use portcullis_body::{FramingGuard, HeadInspector, RawHeadVerdict};
use tower::{Service, service_fn};

fn ok(_req: Request<()>) -> Ready<Result<Response<Empty<Bytes>>, Infallible>> {
    let mut res = Response::new(Empty::new());
    let h = res.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("content-length", HeaderValue::from_static("0"));
    ready(Ok(res))
}

fn base(method: &str, uri: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "api.example.com")
        .header("user-agent", "curl/8.5.0")
        .header("accept", "application/json")
        .header("accept-encoding", "gzip, deflate, br")
        .header("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x")
        .header("x-request-id", "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f")
}

fn good_get() -> Request<()> {
    base("GET", "/api/v1/droplets?page=2")
        .header("cache-control", "no-cache")
        .header("cookie", "session=3f2a9c81d7e64b0f")
        .body(())
        .expect("static request")
}

/// The classic smuggling attempt: both `Content-Length` and `Transfer-Encoding`.
fn cl_te() -> Request<()> {
    base("POST", "/api/v1/droplets")
        .header("content-type", "application/json")
        .header("content-length", "42")
        .header("transfer-encoding", "chunked")
        .body(())
        .expect("static request")
}

fn framing(c: &mut Criterion) {
    // Check both paths once, outside the measurement.
    let mut guard = FramingGuard::new(service_fn(ok));
    let status = |res: Option<Result<Response<_>, Infallible>>| {
        res.expect("ready").expect("infallible").status()
    };
    assert_eq!(
        status(guard.call(good_get()).now_or_never()),
        StatusCode::OK
    );
    assert_eq!(
        status(guard.call(cl_te()).now_or_never()),
        StatusCode::BAD_REQUEST
    );

    for (name, make) in [
        ("framing/good_get", good_get as fn() -> Request<()>),
        ("framing/cl_te_reject", cl_te),
    ] {
        let mut group = c.benchmark_group(name);
        let mut bare = service_fn(ok);
        group.bench_function("without_layer", |b| {
            b.iter_batched(
                make,
                |req| black_box(bare.call(req).now_or_never()),
                BatchSize::SmallInput,
            )
        });
        let mut guard = FramingGuard::new(service_fn(ok));
        group.bench_function("with_layer", |b| {
            b.iter_batched(
                make,
                |req| black_box(guard.call(req).now_or_never()),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

/// A typical browser request head, about 400 bytes.
const HEAD: &[u8] = b"GET /api/v1/droplets?page=2&per_page=20 HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
Referer: https://app.example.com/droplets\r\n\
Cookie: session=3f2a9c81d7e64b0f; theme=dark\r\n\
X-Request-Id: 6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f\r\n\r\n";

/// Ten pipelined POSTs, each with a small chunked body (with an extension and a trailer).
fn pipelined() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..10 {
        out.extend_from_slice(
            format!(
                "POST /api/v1/events/{i} HTTP/1.1\r\n\
                 Host: api.example.com\r\n\
                 User-Agent: curl/8.5.0\r\n\
                 Content-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\n\
                 X-Request-Id: req-{i}\r\n\r\n\
                 c;ext=1\r\n{{\"event\":{i:2}}}\r\n\
                 6\r\n,\"x\":1\r\n\
                 0\r\nx-checksum: {i}\r\n\r\n"
            )
            .as_bytes(),
        );
    }
    out
}

fn inspect(input: &[u8]) -> usize {
    let mut inspector = HeadInspector::new(16 * 1024);
    inspector.feed(input);
    let mut n = 0;
    while let Some(v) = inspector.next_verdict() {
        n += usize::from(v == RawHeadVerdict::Ok);
    }
    n
}

fn head_inspector(c: &mut Criterion) {
    assert!(
        (380..=420).contains(&HEAD.len()),
        "head is {} bytes",
        HEAD.len()
    );
    assert_eq!(inspect(HEAD), 1);
    let stream = pipelined();
    assert_eq!(inspect(&stream), 10);

    let mut group = c.benchmark_group("head_inspector");
    group.throughput(Throughput::Bytes(HEAD.len() as u64));
    group.bench_function("one_400_byte_head", |b| b.iter(|| inspect(black_box(HEAD))));
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("ten_pipelined_chunked", |b| {
        b.iter(|| inspect(black_box(&stream)))
    });
    group.finish();
}

criterion_group!(benches, framing, head_inspector);
criterion_main!(benches);
