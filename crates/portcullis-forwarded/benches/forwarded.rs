//! `Forwarded` and `Via` against the same service without them, on a realistic request.
//!
//! Run: `cargo bench -p portcullis-forwarded -- --warm-up-time 1 --measurement-time 2`.
// criterion's macros define undocumented pub fns; set-up checks may panic.
#![allow(missing_docs, clippy::expect_used)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response};
use portcullis_core::PeerAddr;
use portcullis_forwarded::{Forwarded, ForwardedLayer, TrustedProxies, Via};
use tower::{Layer, Service, service_fn};

fn ok(_req: Request<()>) -> Ready<Result<Response<()>, Infallible>> {
    let mut res = Response::new(());
    let h = res.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("content-length", HeaderValue::from_static("512"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    ready(Ok(res))
}

/// A request from `peer`, carrying a (spoofed or relayed) `X-Forwarded-For`.
fn request(peer: SocketAddr) -> Request<()> {
    let mut req = Request::get("/api/v1/droplets?page=2&per_page=20")
        .header("host", "api.example.com")
        .header("user-agent", "curl/8.5.0")
        .header("accept", "application/json")
        .header("accept-encoding", "gzip, deflate, br")
        .header("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x")
        .header("x-request-id", "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f")
        .header("x-forwarded-for", "6.6.6.6, 10.1.2.3")
        .header("x-forwarded-proto", "https")
        .body(())
        .expect("static request");
    req.extensions_mut().insert(PeerAddr(peer));
    req
}

fn untrusted() -> Request<()> {
    request(SocketAddr::from(([203, 0, 113, 7], 50_000)))
}

fn trusted() -> Request<()> {
    request(SocketAddr::from(([10, 0, 0, 9], 50_000)))
}

fn run<S>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut svc: S,
    make: fn() -> Request<()>,
) where
    S: Service<Request<()>, Error = Infallible>,
{
    c.bench_function(name, |b| {
        b.iter_batched(
            make,
            |req| black_box(svc.call(req).now_or_never()),
            BatchSize::SmallInput,
        )
    });
}

fn forwarded(c: &mut Criterion) {
    let none = TrustedProxies::none();
    let ten = TrustedProxies::parse(["10.0.0.0/8"]).expect("valid cidr");

    // Check once, outside the measurement, that the headers are really rewritten.
    let inspect = service_fn(|req: Request<()>| {
        let xff = req.headers().get("x-forwarded-for").cloned();
        ready(Ok::<_, Infallible>(xff))
    });
    let xff = Forwarded::new(inspect, none.clone())
        .call(untrusted())
        .now_or_never()
        .expect("ready")
        .expect("infallible");
    assert_eq!(
        xff.as_ref().map(HeaderValue::as_bytes),
        Some(&b"203.0.113.7"[..])
    );

    let mut group = c.benchmark_group("forwarded/untrusted_peer");
    run(&mut group, "without_layer", service_fn(ok), untrusted);
    run(
        &mut group,
        "forwarded",
        Forwarded::new(service_fn(ok), none.clone()),
        untrusted,
    );
    run(
        &mut group,
        "forwarded_rfc7239",
        ForwardedLayer::new(none.clone())
            .rfc7239(true)
            .layer(service_fn(ok)),
        untrusted,
    );
    run(
        &mut group,
        "via",
        Via::new(service_fn(ok), "portcullis"),
        untrusted,
    );
    run(
        &mut group,
        "forwarded_and_via",
        Via::new(Forwarded::new(service_fn(ok), none), "portcullis"),
        untrusted,
    );
    group.finish();

    let mut group = c.benchmark_group("forwarded/trusted_peer");
    run(&mut group, "without_layer", service_fn(ok), trusted);
    run(
        &mut group,
        "forwarded",
        Forwarded::new(service_fn(ok), ten),
        trusted,
    );
    group.finish();
}

criterion_group!(benches, forwarded);
criterion_main!(benches);
