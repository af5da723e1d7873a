//! The metrics layer against the same trivial service without it, with a real
//! Prometheus recorder installed globally.
//!
//! `cargo bench -p portcullis-metrics --all-features -- --warm-up-time 1 --measurement-time 3`

// A bench is not request-path code: failing loudly on set-up errors is right.
#![allow(missing_docs, clippy::expect_used)]

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use portcullis_core::{MatchedRoute, ServiceName};
use tower::{Layer, Service, ServiceExt, service_fn};

fn request() -> Request<Empty<Bytes>> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = http::Uri::from_static("/droplets/1");
    req
}

fn bench(c: &mut Criterion) {
    #[cfg(feature = "exporter")]
    let _exporter = portcullis_metrics::Exporter::install().expect("no other recorder in a bench");

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let route = MatchedRoute {
        name: Arc::from("droplets"),
        template: Arc::from("/droplets/{id}"),
    };
    let service = ServiceName::new("droplets");
    let inner = service_fn(move |_req: Request<Empty<Bytes>>| {
        let (route, service) = (route.clone(), service.clone());
        async move {
            let mut res = Response::new(Full::<Bytes>::from("ok"));
            res.extensions_mut().insert(route);
            res.extensions_mut().insert(service);
            Ok::<_, Infallible>(res)
        }
    });

    let mut group = c.benchmark_group("metrics");
    let mut bare = inner.clone();
    group.bench_function("without layer", |b| {
        b.iter(|| {
            rt.block_on(async {
                let req = request();
                let res = bare
                    .ready()
                    .await
                    .expect("ready")
                    .call(req)
                    .await
                    .expect("infallible");
                black_box(res.into_body().collect().await.expect("infallible"));
            })
        })
    });
    let mut layered = portcullis_metrics::MetricsLayer::new().layer(inner.clone());
    group.bench_function("with MetricsLayer", |b| {
        b.iter(|| {
            rt.block_on(async {
                let req = request();
                let res = layered
                    .ready()
                    .await
                    .expect("ready")
                    .call(req)
                    .await
                    .expect("infallible");
                black_box(res.into_body().collect().await.expect("infallible"));
            })
        })
    });
    let mut in_flight = portcullis_metrics::InFlightLayer::new().layer(inner);
    group.bench_function("with InFlightLayer", |b| {
        b.iter(|| {
            rt.block_on(async {
                let req = request();
                let res = in_flight
                    .ready()
                    .await
                    .expect("ready")
                    .call(req)
                    .await
                    .expect("infallible");
                black_box(res.into_body().collect().await.expect("infallible"));
            })
        })
    });
    group.finish();
    many_label_sets(c, &rt);
}

/// A route and status the inner service of [`many_label_sets`] answers with.
#[derive(Clone)]
struct Answer(MatchedRoute, StatusCode);

/// 50 routes × 10 methods × 6 status classes: 3,000 label sets in turn, more
/// than a small handle cache holds.
fn many_label_sets(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let methods = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "FOO",
    ]
    .map(|m| Method::from_bytes(m.as_bytes()).expect("a method"));
    let statuses =
        [101, 200, 302, 404, 503, 600].map(|s| StatusCode::from_u16(s).expect("a status"));
    let mut answers = Vec::new();
    for route in 0..50 {
        let route = MatchedRoute {
            name: Arc::from(format!("r{route}")),
            template: Arc::from(format!("/r{route}/{{id}}")),
        };
        for method in &methods {
            for status in statuses {
                answers.push((method.clone(), Answer(route.clone(), status)));
            }
        }
    }
    let service = ServiceName::new("droplets");
    let inner = service_fn(move |req: Request<Empty<Bytes>>| {
        let answer = req.extensions().get::<Answer>().cloned();
        let service = service.clone();
        async move {
            let mut res = Response::new(Full::<Bytes>::from("ok"));
            if let Some(Answer(route, status)) = answer {
                *res.status_mut() = status;
                res.extensions_mut().insert(route);
            }
            res.extensions_mut().insert(service);
            Ok::<_, Infallible>(res)
        }
    });
    let mut layered = portcullis_metrics::MetricsLayer::new().layer(inner);
    let mut next = answers.iter().cycle();
    c.bench_function("metrics/with MetricsLayer, 3000 label sets", |b| {
        b.iter(|| {
            let (method, answer) = next.next().expect("a cycle");
            let mut req = request();
            *req.method_mut() = method.clone();
            req.extensions_mut().insert(answer.clone());
            rt.block_on(async {
                let res = layered
                    .ready()
                    .await
                    .expect("ready")
                    .call(req)
                    .await
                    .expect("infallible");
                black_box(res.into_body().collect().await.expect("infallible"));
            })
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
