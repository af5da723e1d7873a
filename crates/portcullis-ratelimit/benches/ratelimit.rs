//! Local rate-limit decisions with 10,000 active keys, against the same service
//! without the layer.
//!
//! `cargo bench -p portcullis-ratelimit --bench ratelimit -- --warm-up-time 1 --measurement-time 4`
// criterion's macros define undocumented pub fns; set-up checks may panic.
#![allow(missing_docs, clippy::unwrap_used, clippy::panic)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Empty;
use portcullis_core::PeerAddr;
use portcullis_ratelimit::{LimitConfig, RateLimitConfig, RateLimitLayer};
use tower::{Layer, Service, service_fn};

const KEYS: u32 = 10_000;

fn request(i: u32) -> Request<Empty<Bytes>> {
    let ip = IpAddr::from((0x0a00_0000 + (i % KEYS)).to_be_bytes());
    let mut req = Request::get("/droplets/1")
        .header("user-agent", "bench/1.0")
        .header("accept", "*/*")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(PeerAddr(SocketAddr::new(ip, 40000)));
    req
}

/// Polls a future that is ready at once (every future here is).
fn now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the bench services are always ready"),
    }
}

fn inner() -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Empty<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Empty<Bytes>>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Empty::new()))
    })
}

fn layer(rate: u32, per: Duration) -> RateLimitLayer {
    let limit = LimitConfig::new("per_ip", rate, per);
    RateLimitLayer::from_config(&RateLimitConfig::new().limit(limit)).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit");

    let mut plain = inner();
    let mut i = 0u32;
    group.bench_function("baseline (no layer)", |b| {
        b.iter_batched(
            || {
                i = i.wrapping_add(1);
                request(i)
            },
            |req| black_box(now(plain.call(req))),
            BatchSize::SmallInput,
        )
    });

    // Allow path: a quota no key exhausts, 10,000 keys active.
    let mut allowing = layer(1_000_000_000, Duration::from_secs(1)).layer(inner());
    for k in 0..KEYS {
        now(allowing.call(request(k))).unwrap();
    }
    let mut i = 0u32;
    group.bench_function("allow, 10k keys", |b| {
        b.iter_batched(
            || {
                i = i.wrapping_add(1);
                request(i)
            },
            |req| {
                let res = now(allowing.call(req)).unwrap();
                debug_assert_eq!(res.status(), 200);
                black_box(res)
            },
            BatchSize::SmallInput,
        )
    });

    // Reject path: 1 an hour, every key already used.
    let mut refusing = layer(1, Duration::from_secs(3600)).layer(inner());
    for k in 0..KEYS {
        now(refusing.call(request(k))).unwrap();
    }
    let mut i = 0u32;
    group.bench_function("reject, 10k keys", |b| {
        b.iter_batched(
            || {
                i = i.wrapping_add(1);
                request(i)
            },
            |req| {
                let res = now(refusing.call(req)).unwrap();
                debug_assert_eq!(res.status(), 429);
                black_box(res)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
