//! `Auth` on its allow path (API key, JWT HS256, JWT RS256) against the same
//! service without the layer, on a realistic request. The JWT groups measure the
//! full verification (`with_layer`, cache off) and the same token repeated with
//! the verified-token cache on (`cached`).
//!
//! Run: `cargo bench -p portcullis-auth -- --warm-up-time 1 --measurement-time 3`.
// criterion's macros define undocumented pub fns; set-up checks may panic.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderName, Request, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use portcullis_auth::{ApiKeys, AuthLayer, JwtAlgorithm, JwtAuth, JwtKey};
use tower::{Layer, Service, service_fn};

const RSA1_KEY: &[u8] = include_bytes!("../tests/data/rsa1.key");
const RSA1_PUB: &[u8] = include_bytes!("../tests/data/rsa1.pub.pem");
const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn ok(_req: Request<()>) -> Ready<Result<Response<()>, Infallible>> {
    ready(Ok(Response::new(())))
}

/// A browser-like request with one credential header.
fn request(name: &'static str, value: &str) -> Request<()> {
    Request::get("/api/v1/droplets?page=2&per_page=20")
        .header("host", "api.example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .header("accept", "application/json, text/plain, */*")
        .header("accept-language", "en-GB,en;q=0.5")
        .header("accept-encoding", "gzip, deflate, br")
        .header("x-request-id", "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f")
        .header(name, value)
        .body(())
        .expect("static request")
}

fn bench_allow(
    c: &mut Criterion,
    name: &str,
    layers: Vec<(&str, AuthLayer)>,
    make: &dyn Fn() -> Request<()>,
) {
    let mut group = c.benchmark_group(name);
    let mut bare = service_fn(ok);
    group.bench_function("without_layer", |b| {
        b.iter_batched(
            make,
            |req| black_box(bare.call(req).now_or_never()),
            BatchSize::SmallInput,
        )
    });
    for (id, layer) in layers {
        let mut layered = layer.layer(service_fn(ok));
        // The layer must really allow: check once, outside the measurement.
        let res = layered
            .call(make())
            .now_or_never()
            .expect("ready")
            .expect("infallible");
        assert_eq!(res.status(), 200);
        group.bench_function(id, |b| {
            b.iter_batched(
                make,
                |req| black_box(layered.call(req).now_or_never()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some("k1".to_owned());
    let claims = serde_json::json!({
        "sub": "svc-billing",
        "iss": "https://issuer.example",
        "aud": "api",
        "iat": get_current_timestamp(),
        "exp": get_current_timestamp() + 3600,
        "scope": "droplets:read droplets:write",
    });
    encode(&header, &claims, key).expect("token")
}

fn benches(c: &mut Criterion) {
    let keys = ApiKeys::header(HeaderName::from_static("x-api-key"))
        .key("acme", "ak_live_6f1c2d3e4b5a4c7d8e9f0a1b2c3d4e5f")
        .key("globex", "ak_live_0a1b2c3d4e5f6f1c2d3e4b5a4c7d8e9f")
        .key("initech", "ak_live_4c7d8e9f0a1b2c3d4e5f6f1c2d3e4b5a");
    bench_allow(
        c,
        "api_key_allow",
        vec![("with_layer", AuthLayer::api_key(keys))],
        &|| request("x-api-key", "ak_live_4c7d8e9f0a1b2c3d4e5f6f1c2d3e4b5a"),
    );

    let jwt = || {
        JwtAuth::new()
            .issuer("https://issuer.example")
            .audience("api")
    };
    // Every request verified, or the repeated token served from the cache.
    let uncached_and_cached = |key: JwtKey| {
        vec![
            (
                "with_layer",
                AuthLayer::jwt(jwt().key(key.clone()).cache(0, Duration::ZERO)),
            ),
            (
                "cached",
                AuthLayer::jwt(jwt().key(key).cache(4096, Duration::from_secs(60))),
            ),
        ]
    };
    let hs = format!(
        "Bearer {}",
        token(Algorithm::HS256, &EncodingKey::from_secret(HS_SECRET))
    );
    bench_allow(
        c,
        "jwt_hs256_allow",
        uncached_and_cached(JwtKey::hs256(HS_SECRET).kid("k1")),
        &|| request("authorization", &hs),
    );

    let rs_key = EncodingKey::from_rsa_pem(RSA1_KEY).expect("test key");
    let rs = format!("Bearer {}", token(Algorithm::RS256, &rs_key));
    let rs_pub = JwtKey::from_pem(JwtAlgorithm::Rs256, RSA1_PUB)
        .expect("test key")
        .kid("k1");
    bench_allow(c, "jwt_rs256_allow", uncached_and_cached(rs_pub), &|| {
        request("authorization", &rs)
    });
}

criterion_group!(auth, benches);
criterion_main!(auth);
