//! JWKS against a real local HTTP server: first fetch, key rotation, keeping the
//! last good key set when the server fails, and the task stopping with the layer.
#![allow(missing_docs, clippy::unwrap_used)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{Router, body::Body, extract::State, http::StatusCode, routing::get};
use http::Request;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use portcullis_auth::{AuthLayer, JwtAuth};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

const RSA1_KEY: &[u8] = include_bytes!("data/rsa1.key");
const RSA2_KEY: &[u8] = include_bytes!("data/rsa2.key");

#[derive(Clone)]
struct Origin {
    answer: Arc<Mutex<(StatusCode, String)>>,
    hits: Arc<AtomicUsize>,
}

impl Origin {
    fn set(&self, status: StatusCode, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn jwks(State(origin): State<Origin>) -> (StatusCode, String) {
    origin.hits.fetch_add(1, Ordering::SeqCst);
    origin.answer.lock().unwrap().clone()
}

async fn start_origin(status: StatusCode, body: String) -> (Origin, String) {
    let origin = Origin {
        answer: Arc::new(Mutex::new((status, body))),
        hits: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route("/jwks.json", get(jwks))
        .with_state(origin.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (origin, format!("http://{addr}/jwks.json"))
}

fn jwk(private_pem: &[u8], kid: &str) -> serde_json::Value {
    let key = EncodingKey::from_rsa_pem(private_pem).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

fn jwks_doc(keys: &[(&[u8], &str)]) -> String {
    let keys: Vec<_> = keys.iter().map(|(pem, kid)| jwk(pem, kid)).collect();
    serde_json::json!({ "keys": keys }).to_string()
}

fn token(private_pem: &[u8], kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let claims = serde_json::json!({ "sub": kid, "exp": get_current_timestamp() + 600 });
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(private_pem).unwrap(),
    )
    .unwrap()
}

/// Status of a request with `token` through the layer, and its `portcullis-error`.
async fn status(layer: &AuthLayer, token: &str) -> (u16, String) {
    let svc = layer.layer(service_fn(|_req: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
    }));
    let req = Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let cause = res
        .headers()
        .get("portcullis-error")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (res.status().as_u16(), cause)
}

/// Polls `check` until it holds, failing after 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rotates_keys_and_keeps_the_last_good_set() {
    let (origin, url) = start_origin(StatusCode::OK, jwks_doc(&[(RSA1_KEY, "k1")])).await;
    let layer = AuthLayer::jwt(
        JwtAuth::new()
            .jwks(&url, Duration::from_millis(200), Duration::from_secs(2))
            .unwrap(),
    );
    let old = token(RSA1_KEY, "k1");
    let new = token(RSA2_KEY, "k2");

    eventually("the first fetch", || async {
        status(&layer, &old).await.0 == 200
    })
    .await;
    assert_eq!(
        status(&layer, &new).await,
        (403, "bad_credentials".to_owned())
    );

    origin.set(
        StatusCode::OK,
        jwks_doc(&[(RSA1_KEY, "k1"), (RSA2_KEY, "k2")]),
    );
    eventually("the rotated key", || async {
        status(&layer, &new).await.0 == 200
    })
    .await;

    origin.set(StatusCode::INTERNAL_SERVER_ERROR, "down".to_owned());
    let hits = origin.hits();
    eventually("two failed fetches", || async { origin.hits() >= hits + 2 }).await;
    assert_eq!(status(&layer, &new).await.0, 200);
    assert_eq!(status(&layer, &old).await.0, 200);

    // Dropping the last clone stops the task: at most the fetch in flight lands.
    drop(layer);
    let hits = origin.hits();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        origin.hits() <= hits + 1,
        "{} > {} + 1",
        origin.hits(),
        hits
    );
}

#[tokio::test]
async fn answers_503_until_the_first_fetch_succeeds() {
    let (origin, url) = start_origin(StatusCode::INTERNAL_SERVER_ERROR, String::new()).await;
    let layer = AuthLayer::jwt(
        JwtAuth::new()
            .jwks(&url, Duration::from_millis(200), Duration::from_secs(2))
            .unwrap(),
    );
    let t = token(RSA1_KEY, "k1");
    eventually("a failed fetch", || async { origin.hits() >= 1 }).await;
    let svc = layer.layer(service_fn(|_req: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
    }));
    let req = Request::get("/")
        .header("authorization", format!("Bearer {t}"))
        .body(Body::empty())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["portcullis-error"], "auth_unavailable");
    assert_eq!(res.headers()["retry-after"], "1");

    origin.set(StatusCode::OK, jwks_doc(&[(RSA1_KEY, "k1")]));
    eventually("the first good fetch", || async {
        status(&layer, &t).await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn an_unknown_kid_triggers_a_fetch() {
    let (origin, url) = start_origin(StatusCode::OK, jwks_doc(&[(RSA1_KEY, "k1")])).await;
    // A refresh interval far longer than the test: only the unknown kid can fetch.
    let layer = AuthLayer::jwt(
        JwtAuth::new()
            .jwks(&url, Duration::from_secs(3600), Duration::from_secs(2))
            .unwrap(),
    );
    eventually("the first fetch", || async {
        status(&layer, &token(RSA1_KEY, "k1")).await.0 == 200
    })
    .await;
    origin.set(
        StatusCode::OK,
        jwks_doc(&[(RSA1_KEY, "k1"), (RSA2_KEY, "k2")]),
    );
    let new = token(RSA2_KEY, "k2");
    assert_eq!(status(&layer, &new).await.0, 403);
    eventually("the on-demand fetch", || async {
        status(&layer, &new).await.0 == 200
    })
    .await;
}

#[test]
fn needs_a_runtime() {
    let err = JwtAuth::new()
        .jwks(
            "http://127.0.0.1:9/jwks.json",
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "jwks_url: fetching keys in the background needs a tokio runtime"
    );
}
