//! Unit tests of the layer: every scheme, through `Auth` with `oneshot`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use portcullis_core::{Cause, Identity, MatchedRoute};
use serde_json::json;
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::*;

const RSA1_KEY: &[u8] = include_bytes!("../tests/data/rsa1.key");
const RSA1_PUB: &[u8] = include_bytes!("../tests/data/rsa1.pub.pem");
const EC_KEY: &[u8] = include_bytes!("../tests/data/ec.key");
const EC_PUB: &[u8] = include_bytes!("../tests/data/ec.pub.pem");
const ED_KEY: &[u8] = include_bytes!("../tests/data/ed.key");
const ED_PUB: &[u8] = include_bytes!("../tests/data/ed.pub.pem");
const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

const IDENTITY: HeaderName = HeaderName::from_static("x-portcullis-identity");

/// What the inner service received.
#[derive(Debug, Clone)]
struct Seen {
    uri: Uri,
    headers: HeaderMap,
    identity: Option<Identity>,
}

type Res = Response<ResponseBody<Full<Bytes>>>;

fn echo() -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(|req: Request<Empty<Bytes>>| async move {
        let seen = Seen {
            uri: req.uri().clone(),
            headers: req.headers().clone(),
            identity: req.extensions().get::<Identity>().cloned(),
        };
        let mut res = Response::new(Full::new(Bytes::from_static(b"ok")));
        res.extensions_mut().insert(seen);
        Ok::<_, Infallible>(res)
    })
}

async fn send(layer: &AuthLayer, req: Request<Empty<Bytes>>) -> Res {
    layer.layer(echo()).oneshot(req).await.unwrap()
}

fn get(uri: &str) -> http::request::Builder {
    Request::get(uri)
}

fn seen(res: &Res) -> &Seen {
    assert_eq!(res.status(), 200, "{:?}", res.headers());
    res.extensions()
        .get::<Seen>()
        .expect("the inner service answered")
}

fn identity(res: &Res) -> &str {
    seen(res)
        .identity
        .as_ref()
        .map(|i| &*i.0)
        .expect("identity")
}

async fn assert_rejected(res: Res, cause: Cause) {
    assert_eq!(res.status(), cause.status());
    assert_eq!(res.headers()["portcullis-error"], cause.as_str());
    assert_eq!(res.extensions().get::<Cause>(), Some(&cause));
    assert!(res.extensions().get::<Seen>().is_none());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], cause.as_str());
}

// ---- API keys ----

fn api_keys() -> AuthLayer {
    AuthLayer::api_key(
        ApiKeys::header(HeaderName::from_static("x-api-key"))
            .key("acme", "acme-key-1")
            .key("globex", "globex-key-1"),
    )
    .identity_header(IDENTITY)
    .unwrap()
}

#[tokio::test]
async fn api_key_allows_strips_and_forwards_identity() {
    let req = get("/")
        .header("x-api-key", "globex-key-1")
        .header("x-portcullis-identity", "admin")
        .header("x-portcullis-identity", "root")
        .header("x-other", "kept")
        .body(Empty::new())
        .unwrap();
    let res = send(&api_keys(), req).await;
    assert_eq!(identity(&res), "globex");
    let headers = &seen(&res).headers;
    assert!(headers.get("x-api-key").is_none());
    let ids: Vec<&HeaderValue> = headers.get_all(&IDENTITY).iter().collect();
    assert_eq!(ids, ["globex"]);
    assert_eq!(headers["x-other"], "kept");
}

#[tokio::test]
async fn api_key_missing_is_401_with_challenge() {
    let req = get("/")
        .header("x-request-id", "r-7")
        .body(Empty::new())
        .unwrap();
    let res = send(&api_keys(), req).await;
    assert_eq!(
        res.headers()[WWW_AUTHENTICATE],
        r#"ApiKey header="x-api-key""#
    );
    assert_eq!(res.headers()["x-request-id"], "r-7");
    assert_rejected(res, Cause::MissingCredentials).await;
}

#[tokio::test]
async fn api_key_wrong_or_duplicated_is_403() {
    for keys in [&["acme-key-2"][..], &["acme-key-1", "acme-key-1"], &[""]] {
        let mut req = get("/").body(Empty::new()).unwrap();
        for k in keys {
            req.headers_mut()
                .append("x-api-key", HeaderValue::from_static(k));
        }
        let res = send(&api_keys(), req).await;
        assert!(res.headers().get(WWW_AUTHENTICATE).is_none());
        assert_rejected(res, Cause::BadCredentials).await;
    }
}

#[tokio::test]
async fn api_key_kept_when_asked() {
    let layer = api_keys().keep_credentials(true);
    let req = get("/")
        .header("x-api-key", "acme-key-1")
        .body(Empty::new())
        .unwrap();
    let res = send(&layer, req).await;
    assert_eq!(identity(&res), "acme");
    assert_eq!(seen(&res).headers["x-api-key"], "acme-key-1");
}

#[tokio::test]
async fn api_key_from_config_digest() {
    // sha256("test")
    let layer = AuthLayer::api_key(
        ApiKeys::header(HeaderName::from_static("x-api-key"))
            .sha256_hex(
                "tester",
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            )
            .unwrap(),
    );
    let req = get("/")
        .header("x-api-key", "test")
        .body(Empty::new())
        .unwrap();
    assert_eq!(identity(&send(&layer, req).await), "tester");
}

fn query_keys() -> AuthLayer {
    AuthLayer::api_key(ApiKeys::query("api_key").unwrap().key("acme", "k+1/2"))
}

#[tokio::test]
async fn query_key_is_removed_and_other_params_kept_in_order() {
    let req = get("http://api.example.com/v1/a%2Fb;x?z=1&api_key=k%2B1%2f2&&a=%2F&api_keyx=2")
        .body(Empty::new())
        .unwrap();
    let res = send(&query_keys(), req).await;
    assert_eq!(identity(&res), "acme");
    assert_eq!(
        seen(&res).uri.to_string(),
        "http://api.example.com/v1/a%2Fb;x?z=1&&a=%2F&api_keyx=2"
    );

    let req = get("/p?api_key=k%2B1%2F2").body(Empty::new()).unwrap();
    let res = send(&query_keys(), req).await;
    assert_eq!(seen(&res).uri, "/p");

    let layer = query_keys().keep_credentials(true);
    let req = get("/p?api_key=k%2B1%2F2&b=1").body(Empty::new()).unwrap();
    let res = send(&layer, req).await;
    assert_eq!(seen(&res).uri, "/p?api_key=k%2B1%2F2&b=1");
}

#[tokio::test]
async fn query_key_missing_wrong_or_repeated() {
    let res = send(&query_keys(), get("/p?a=1").body(Empty::new()).unwrap()).await;
    assert_eq!(res.headers()[WWW_AUTHENTICATE], r#"ApiKey query="api_key""#);
    assert_rejected(res, Cause::MissingCredentials).await;
    for uri in ["/p?api_key=nope", "/p?api_key=k%2B1%2F2&api_key=k%2B1%2F2"] {
        let res = send(&query_keys(), get(uri).body(Empty::new()).unwrap()).await;
        assert_rejected(res, Cause::BadCredentials).await;
    }
}

#[tokio::test]
async fn query_key_names_are_compared_percent_decoded() {
    // A second key parameter spelled differently is still a second key: an
    // upstream decoding `api%5Fkey` would otherwise read the unchecked one.
    for uri in [
        "/p?api_key=k%2B1%2F2&api%5Fkey=other",
        "/p?api%5fkey=other&api_key=k%2B1%2F2",
        "/p?api%5Fkey=k%2B1%2F2&%61pi_key=k%2B1%2F2",
    ] {
        let res = send(&query_keys(), get(uri).body(Empty::new()).unwrap()).await;
        assert_rejected(res, Cause::BadCredentials).await;
    }
    // An encoded name is the key parameter, and is removed like it.
    let req = get("/p?x=1&api%5Fkey=k%2B1%2F2&y=2")
        .body(Empty::new())
        .unwrap();
    let res = send(&query_keys(), req).await;
    assert_eq!(identity(&res), "acme");
    assert_eq!(seen(&res).uri, "/p?x=1&y=2");
}

// ---- metrics ----

#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);

impl ::metrics::Recorder for Recorded {
    fn describe_counter(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn register_counter(
        &self,
        key: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        self.0
            .lock()
            .unwrap()
            .push(format!("{}{{{}}}", key.name(), labels.join(",")));
        ::metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &::metrics::Key, _: &::metrics::Metadata<'_>) -> ::metrics::Gauge {
        ::metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Histogram {
        ::metrics::Histogram::noop()
    }
}

#[test]
fn decisions_are_counted_by_route_scheme_and_decision() {
    let recorded = Recorded::default();
    let mut svc = api_keys().layer(echo());
    ::metrics::with_local_recorder(&recorded, || {
        let mut req = get("/")
            .header("x-api-key", "acme-key-1")
            .body(Empty::new())
            .unwrap();
        req.extensions_mut().insert(MatchedRoute {
            name: Arc::from("r"),
            template: Arc::from("/droplets/{id}"),
        });
        drop(svc.call(req));
        drop(svc.call(get("/").body(Empty::new()).unwrap()));
        drop(
            svc.call(
                get("/")
                    .header("x-api-key", "x")
                    .body(Empty::new())
                    .unwrap(),
            ),
        );
    });
    assert_eq!(
        *recorded.0.lock().unwrap(),
        [
            "portcullis_auth_decisions_total{route=/droplets/{id},scheme=api_key,decision=allowed}",
            "portcullis_auth_decisions_total{route=unmatched,scheme=api_key,decision=missing}",
            "portcullis_auth_decisions_total{route=unmatched,scheme=api_key,decision=denied}",
        ]
    );
}

// ---- HTTP Basic ----

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash_with_salt(password, 4, [7u8; 16])
        .unwrap()
        .to_string()
}

fn argon2_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(64, 1, 1, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap();
    argon
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn basic_users() -> BasicUsers {
    BasicUsers::new("staff")
        .unwrap()
        .user("alice", &bcrypt_hash("alice-pw"))
        .unwrap()
        .user("bob", &argon2_hash("bob-pw"))
        .unwrap()
}

fn basic(user_pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(user_pass))
}

#[tokio::test]
async fn basic_allows_bcrypt_and_argon2_users() {
    let layer = AuthLayer::basic(basic_users())
        .identity_header(IDENTITY)
        .unwrap();
    for (creds, who) in [("alice:alice-pw", "alice"), ("bob:bob-pw", "bob")] {
        let req = get("/")
            .header(AUTHORIZATION, basic(creds))
            .header(&IDENTITY, "mallory")
            .body(Empty::new())
            .unwrap();
        let res = send(&layer, req).await;
        assert_eq!(identity(&res), who);
        assert!(seen(&res).headers.get(AUTHORIZATION).is_none());
        assert_eq!(seen(&res).headers[&IDENTITY], who);
    }
}

#[tokio::test]
async fn basic_missing_is_401_with_realm() {
    let layer = AuthLayer::basic(basic_users());
    for req in [
        get("/").body(Empty::new()).unwrap(),
        get("/")
            .header(AUTHORIZATION, "Bearer abc")
            .body(Empty::new())
            .unwrap(),
    ] {
        let res = send(&layer, req).await;
        assert_eq!(res.headers()[WWW_AUTHENTICATE], r#"Basic realm="staff""#);
        assert_rejected(res, Cause::MissingCredentials).await;
    }
}

#[tokio::test]
async fn basic_wrong_unknown_or_malformed_is_403() {
    let layer = AuthLayer::basic(basic_users());
    for value in [
        basic("alice:bob-pw"),
        basic("carol:alice-pw"),
        basic("alice"),
        "Basic !!!notbase64".to_owned(),
        format!("Basic {}", STANDARD.encode(b"\xff\xfe:pw")),
    ] {
        let req = get("/")
            .header(AUTHORIZATION, value)
            .body(Empty::new())
            .unwrap();
        assert_rejected(send(&layer, req).await, Cause::BadCredentials).await;
    }
}

#[tokio::test]
async fn basic_caches_successes_only() {
    let scheme = basic_users().build();
    let req = |creds: &str| {
        get("/")
            .header(AUTHORIZATION, basic(creds))
            .body(())
            .unwrap()
    };
    let first = scheme.check(&req("alice:alice-pw"));
    let shared::Outcome::Later(check) = first else {
        panic!("first verification must run off the worker: {first:?}");
    };
    assert!(matches!(check.await.unwrap(), shared::Decision::Allow(id) if &*id == "alice"));
    let again = scheme.check(&req("alice:alice-pw"));
    assert!(
        matches!(again, shared::Outcome::Now(shared::Decision::Allow(ref id)) if &**id == "alice")
    );
    // Failures are not cached.
    for _ in 0..2 {
        let wrong = scheme.check(&req("alice:nope"));
        assert!(matches!(wrong, shared::Outcome::Later(_)), "{wrong:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn basic_cache_entries_expire_and_are_bounded() {
    let users = basic_users().cache(2, Duration::from_secs(60));
    let scheme = users.build();
    let inner = scheme.inner_for_tests();
    inner.remember_for_tests([1; 32], "a");
    tokio::time::advance(Duration::from_secs(1)).await;
    inner.remember_for_tests([2; 32], "b");
    inner.remember_for_tests([3; 32], "c");
    assert!(inner.cached_for_tests(&[1; 32]).is_none(), "oldest evicted");
    assert_eq!(inner.cached_for_tests(&[2; 32]).as_deref(), Some("b"));
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(inner.cached_for_tests(&[3; 32]).is_none(), "expired");
}

#[tokio::test]
async fn basic_sheds_with_503_when_no_slot_is_free() {
    let users = basic_users()
        .max_verifications(1)
        .verification_wait(Duration::from_millis(20));
    let layer = AuthLayer::basic(users);
    let shared = layer.shared();
    let shared::Scheme::Basic(scheme) = &shared.scheme else {
        unreachable!()
    };
    let _held = scheme.inner_for_tests().permits_for_tests();
    let req = get("/")
        .header(AUTHORIZATION, basic("alice:alice-pw"))
        .body(Empty::new())
        .unwrap();
    let res = send(&layer, req).await;
    assert_eq!(res.headers()[RETRY_AFTER], "1");
    assert_rejected(res, Cause::Overloaded).await;
}

#[tokio::test]
async fn basic_in_an_axum_router() {
    use axum::{Extension, Router, body::Body, routing::get as route_get};
    async fn whoami(Extension(id): Extension<Identity>, headers: axum::http::HeaderMap) -> String {
        format!("{} {}", id.0, headers.contains_key(AUTHORIZATION))
    }
    let app = Router::new()
        .route("/me", route_get(whoami))
        .layer(AuthLayer::basic(basic_users()));
    let req = Request::get("/me")
        .header(AUTHORIZATION, basic("bob:bob-pw"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        &res.into_body().collect().await.unwrap().to_bytes()[..],
        b"bob false"
    );
    let res = app
        .oneshot(Request::get("/me").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[WWW_AUTHENTICATE], r#"Basic realm="staff""#);
}

// ---- JWT ----

fn now() -> u64 {
    get_current_timestamp()
}

fn claims() -> serde_json::Value {
    json!({ "sub": "svc-a", "exp": now() + 600, "iss": "https://issuer.example", "aud": "api" })
}

fn hs256_token(claims: &serde_json::Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(HS_SECRET),
    )
    .unwrap()
}

fn jwt() -> JwtAuth {
    JwtAuth::new()
        .issuer("https://issuer.example")
        .audience("api")
        .key(JwtKey::hs256(HS_SECRET).kid("h"))
        .key(
            JwtKey::from_pem(JwtAlgorithm::Rs256, RSA1_PUB)
                .unwrap()
                .kid("k1"),
        )
        .key(JwtKey::from_pem(JwtAlgorithm::Es256, EC_PUB).unwrap())
        .key(JwtKey::from_pem(JwtAlgorithm::EdDsa, ED_PUB).unwrap())
}

fn bearer(token: &str) -> Request<Empty<Bytes>> {
    get("/")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::new())
        .unwrap()
}

async fn jwt_denied(layer: &AuthLayer, token: &str) {
    assert_rejected(send(layer, bearer(token)).await, Cause::BadCredentials).await;
}

#[tokio::test]
async fn jwt_hs256_allows_and_strips() {
    let layer = AuthLayer::jwt(jwt()).identity_header(IDENTITY).unwrap();
    let res = send(&layer, bearer(&hs256_token(&claims()))).await;
    assert_eq!(identity(&res), "svc-a");
    assert!(seen(&res).headers.get(AUTHORIZATION).is_none());
    assert_eq!(seen(&res).headers[&IDENTITY], "svc-a");
}

#[tokio::test]
async fn jwt_rs256_es256_and_eddsa_allow() {
    let layer = AuthLayer::jwt(jwt());
    let mut rs = Header::new(jsonwebtoken::Algorithm::RS256);
    rs.kid = Some("k1".to_owned());
    let cases = [
        (rs, EncodingKey::from_rsa_pem(RSA1_KEY).unwrap()),
        (
            Header::new(jsonwebtoken::Algorithm::ES256),
            EncodingKey::from_ec_pem(EC_KEY).unwrap(),
        ),
        (
            Header::new(jsonwebtoken::Algorithm::EdDSA),
            EncodingKey::from_ed_pem(ED_KEY).unwrap(),
        ),
    ];
    for (header, key) in cases {
        let alg = header.alg;
        let token = encode(&header, &claims(), &key).unwrap();
        let res = send(&layer, bearer(&token)).await;
        assert_eq!(res.status(), 200, "{alg:?}");
        assert_eq!(identity(&res), "svc-a");
    }
}

#[tokio::test]
async fn jwt_missing_is_401_with_bearer_realm() {
    let layer = AuthLayer::jwt(jwt().realm("tokens").unwrap());
    let res = send(&layer, get("/").body(Empty::new()).unwrap()).await;
    assert_eq!(res.headers()[WWW_AUTHENTICATE], r#"Bearer realm="tokens""#);
    assert_rejected(res, Cause::MissingCredentials).await;
}

#[tokio::test]
async fn jwt_expiry_uses_the_leeway() {
    let layer = AuthLayer::jwt(jwt().leeway(Duration::from_secs(30)));
    let mut c = claims();
    c["exp"] = json!(now() - 120);
    jwt_denied(&layer, &hs256_token(&c)).await;
    c["exp"] = json!(now() - 10);
    assert_eq!(
        identity(&send(&layer, bearer(&hs256_token(&c))).await),
        "svc-a"
    );
    // exp is required.
    c.as_object_mut().unwrap().remove("exp");
    jwt_denied(&layer, &hs256_token(&c)).await;
}

#[tokio::test]
async fn jwt_not_before_is_checked() {
    let layer = AuthLayer::jwt(jwt());
    let mut c = claims();
    c["nbf"] = json!(now() + 300);
    jwt_denied(&layer, &hs256_token(&c)).await;
    c["nbf"] = json!(now() + 5);
    assert_eq!(send(&layer, bearer(&hs256_token(&c))).await.status(), 200);
}

#[tokio::test]
async fn jwt_audience_is_checked() {
    let layer = AuthLayer::jwt(jwt());
    let mut c = claims();
    c["aud"] = json!("other");
    jwt_denied(&layer, &hs256_token(&c)).await;
    c.as_object_mut().unwrap().remove("aud");
    jwt_denied(&layer, &hs256_token(&c)).await;
    c["aud"] = json!(["other", "api"]);
    assert_eq!(send(&layer, bearer(&hs256_token(&c))).await.status(), 200);
    // Without a configured audience, `aud` is not checked.
    let layer = AuthLayer::jwt(JwtAuth::new().key(JwtKey::hs256(HS_SECRET)));
    c["aud"] = json!("other");
    assert_eq!(send(&layer, bearer(&hs256_token(&c))).await.status(), 200);
}

#[tokio::test]
async fn jwt_issuer_is_checked() {
    let layer = AuthLayer::jwt(jwt());
    let mut c = claims();
    c["iss"] = json!("https://evil.example");
    jwt_denied(&layer, &hs256_token(&c)).await;
    c.as_object_mut().unwrap().remove("iss");
    jwt_denied(&layer, &hs256_token(&c)).await;
}

#[tokio::test]
async fn jwt_alg_none_is_refused() {
    let layer = AuthLayer::jwt(jwt());
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        jwt_denied(&layer, &token).await;
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"h"}"#);
    jwt_denied(&layer, &format!("{header}.{payload}.")).await;
}

#[tokio::test]
async fn jwt_hs256_signed_with_the_rsa_public_key_is_refused() {
    // Only an RS256 key: the classic confusion attack.
    let layer = AuthLayer::jwt(
        JwtAuth::new().key(
            JwtKey::from_pem(JwtAlgorithm::Rs256, RSA1_PUB)
                .unwrap()
                .kid("k1"),
        ),
    );
    let forged_key = EncodingKey::from_secret(RSA1_PUB);
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    jwt_denied(&layer, &encode(&header, &claims(), &forged_key).unwrap()).await;
    header.kid = Some("k1".to_owned());
    jwt_denied(&layer, &encode(&header, &claims(), &forged_key).unwrap()).await;
}

#[tokio::test]
async fn jwt_wrong_key_unknown_kid_and_garbage_are_403() {
    let layer = AuthLayer::jwt(jwt());
    let other = EncodingKey::from_secret(b"another-secret-another-secret-xx");
    jwt_denied(
        &layer,
        &encode(&Header::default(), &claims(), &other).unwrap(),
    )
    .await;
    let header = Header {
        kid: Some("nope".to_owned()),
        ..Header::default()
    };
    jwt_denied(
        &layer,
        &encode(&header, &claims(), &EncodingKey::from_secret(HS_SECRET)).unwrap(),
    )
    .await;
    for garbage in ["abc", "a.b.c", "..", "eyJhbGciOiJIUzI1NiJ9.e30.sig"] {
        jwt_denied(&layer, garbage).await;
    }
}

#[tokio::test]
async fn jwt_identity_claim_is_configurable_and_required() {
    let layer = AuthLayer::jwt(
        JwtAuth::new()
            .key(JwtKey::hs256(HS_SECRET))
            .identity_claim("email"),
    );
    let mut c = claims();
    jwt_denied(&layer, &hs256_token(&c)).await;
    c["email"] = json!("a@example.com");
    assert_eq!(
        identity(&send(&layer, bearer(&hs256_token(&c))).await),
        "a@example.com"
    );
    c["email"] = json!(42);
    jwt_denied(&layer, &hs256_token(&c)).await;
}

#[tokio::test]
async fn jwt_identity_that_cannot_be_a_header_is_refused_when_forwarded() {
    let layer = AuthLayer::jwt(JwtAuth::new().key(JwtKey::hs256(HS_SECRET)))
        .identity_header(IDENTITY)
        .unwrap();
    let mut c = claims();
    c["sub"] = json!("line\nbreak");
    jwt_denied(&layer, &hs256_token(&c)).await;
}

#[tokio::test]
async fn jwt_keys_sharing_a_kid_across_algorithms_are_all_tried() {
    // A JWKS rotating algorithms publishes one `kid` for keys of two algorithms;
    // the key of the other algorithm comes first.
    let scheme = JwtAuth::new()
        .key(JwtKey::hs256(HS_SECRET).kid("k"))
        .key(
            JwtKey::from_pem(JwtAlgorithm::Es256, EC_PUB)
                .unwrap()
                .kid("k"),
        )
        .key(
            JwtKey::from_pem(JwtAlgorithm::Rs256, RSA1_PUB)
                .unwrap()
                .kid("k"),
        )
        .cache(0, Duration::ZERO)
        .build();
    let token = |alg, key: &EncodingKey| {
        let mut header = Header::new(alg);
        header.kid = Some("k".to_owned());
        encode(&header, &claims(), key).unwrap()
    };
    let rsa = EncodingKey::from_rsa_pem(RSA1_KEY).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_KEY).unwrap();
    let hs = EncodingKey::from_secret(HS_SECRET);
    use jsonwebtoken::Algorithm::{ES256, HS256, RS256};
    assert_eq!(
        jwt_check(&scheme, &token(RS256, &rsa)).as_deref(),
        Ok("svc-a")
    );
    assert_eq!(
        jwt_check(&scheme, &token(ES256, &ec)).as_deref(),
        Ok("svc-a")
    );
    assert_eq!(
        jwt_check(&scheme, &token(HS256, &hs)).as_deref(),
        Ok("svc-a")
    );
    // Only the key of the token's algorithm was tried: one verification each.
    assert_eq!(scheme.verifications_for_tests(), 3);
    // Still never a key of another algorithm: HS256 "signed" with the RSA
    // public key, and EdDSA with no key of that `kid`.
    let forged = token(HS256, &EncodingKey::from_secret(RSA1_PUB));
    assert_eq!(
        jwt_check(&scheme, &forged),
        Err(r#"Deny("bad signature")"#.to_owned())
    );
    let ed = token(
        jsonwebtoken::Algorithm::EdDSA,
        &EncodingKey::from_ed_pem(ED_KEY).unwrap(),
    );
    assert_eq!(
        jwt_check(&scheme, &ed),
        Err(r#"Deny("algorithm does not match the key")"#.to_owned())
    );
    assert_eq!(scheme.verifications_for_tests(), 4);
    let other_secret = EncodingKey::from_secret(b"another-secret-another-secret-xx");
    assert_eq!(
        jwt_check(&scheme, &token(HS256, &other_secret)),
        Err(r#"Deny("bad signature")"#.to_owned())
    );
}

// ---- configuration ----

const GATEWAY_TOML: &str = r#"
[auth.partners]
type = "api_key"
header = "x-api-key"
keys = [ { identity = "acme", sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" } ]
identity_header = "x-portcullis-identity"
keep_credentials = false

[auth.staff]
type = "basic"
realm = "staff"
users = [ { name = "alice", hash = "ARGON" }, { name = "bob", hash = "BCRYPT" } ]

[auth.tokens]
type = "jwt"
issuer = "https://issuer.example"
audience = ["api"]
leeway = "30s"
identity_claim = "sub"
keys = [ { kid = "k1", alg = "RS256", pem_file = "PEMFILE" }, { kid = "h", alg = "HS256", secret = "0123456789abcdef0123456789abcdef" }, { alg = "ES256", pem = """ECPEM""" } ]
"#;

#[derive(serde::Deserialize)]
struct Gateway {
    auth: std::collections::BTreeMap<String, AuthConfig>,
}

fn gateway_toml() -> String {
    let pem_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rsa1.pub.pem");
    GATEWAY_TOML
        .replace("ARGON", &argon2_hash("pw"))
        .replace("BCRYPT", &bcrypt_hash("pw"))
        .replace("PEMFILE", pem_file)
        .replace("ECPEM", std::str::from_utf8(EC_PUB).unwrap())
}

#[tokio::test]
async fn gateway_toml_parses_validates_and_builds() {
    let gw: Gateway = toml::from_str(&gateway_toml()).unwrap();
    assert_eq!(gw.auth.len(), 3);
    for (name, config) in &gw.auth {
        config
            .validate()
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let _layer = AuthLayer::from_config(config).unwrap();
    }
    let AuthConfig::Jwt(jwt) = &gw.auth["tokens"] else {
        panic!("tokens is jwt")
    };
    assert_eq!(jwt.leeway, Duration::from_secs(30));
    assert_eq!(jwt.jwks_refresh, Duration::from_secs(300));
    assert_eq!(jwt.jwks_timeout, Duration::from_secs(2));
    let AuthConfig::Basic(basic) = &gw.auth["staff"] else {
        panic!("staff is basic")
    };
    assert_eq!(basic.cache_entries, 1024);
    // Built from config, the layer works.
    let layer = AuthLayer::from_config(&gw.auth["partners"]).unwrap();
    let req = get("/")
        .header("x-api-key", "test")
        .body(Empty::new())
        .unwrap();
    assert_eq!(seen(&send(&layer, req).await).headers[&IDENTITY], "acme");
}

#[test]
fn unknown_keys_are_refused_in_every_section() {
    for toml_text in [
        "type = \"api_key\"\nheader = \"x\"\nheadr = \"y\"",
        "type = \"basic\"\nrelm = \"x\"",
        "type = \"jwt\"\nissuer = \"x\"\naudiences = [\"a\"]",
        "type = \"jwt\"\nkeys = [ { alg = \"HS256\", secrett = \"x\" } ]",
        "type = \"oauth\"",
    ] {
        let err = toml::from_str::<AuthConfig>(toml_text).expect_err(toml_text);
        assert!(err.to_string().contains("unknown"), "{toml_text}: {err}");
    }
}

#[test]
fn validate_reports_every_mistake() {
    let config: AuthConfig = toml::from_str(
        r#"
        type = "api_key"
        header = "x-api-key"
        query = "api_key"
        keys = [ { identity = "", sha256 = "abc" }, { identity = "ok", sha256 = "zz" } ]
        identity_header = "bad header"
        "#,
    )
    .unwrap();
    let errors = config.validate().unwrap_err();
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "header: set exactly one of `header` and `query`",
            "keys[0].identity must not be empty, got \"\"",
            "keys[0].sha256 must be 64 hex digits (the SHA-256 of the key), got \"[redacted]\"",
            "keys[1].sha256 must be 64 hex digits (the SHA-256 of the key), got \"[redacted]\"",
            "identity_header is not a valid header name, got \"bad header\"",
        ]
    );

    let config: AuthConfig = toml::from_str(
        r#"
        type = "jwt"
        identity_claim = ""
        jwks_refresh = "10ms"
        keys = [ { alg = "HS256", secret = "short" }, { kid = "a", alg = "RS256" }, { kid = "a", alg = "ES256", pem = "nope" } ]
        "#,
    )
    .unwrap();
    let messages: Vec<String> = config
        .validate()
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(messages.len(), 6, "{messages:#?}");
    assert_eq!(messages[0], "identity_claim must not be empty, got \"\"");
    assert_eq!(
        messages[1],
        "keys[0].secret must be at least 32 bytes long, got \"[redacted]\""
    );
    assert!(
        messages[2].starts_with("keys[1]: an RS256 key takes exactly one of"),
        "{}",
        messages[2]
    );
    assert_eq!(
        messages[3],
        "keys[2].kid is used by an earlier key, got \"a\""
    );
    assert!(
        messages[4].starts_with("keys[2].pem: not a valid ES256 public key in PEM form"),
        "{}",
        messages[4]
    );
    assert_eq!(
        messages[5],
        "jwks_refresh must be at least 100ms, got \"10ms\""
    );
}

#[test]
fn pem_files_and_pems_are_checked() {
    let config: AuthConfig = toml::from_str(
        "type = \"jwt\"\nkeys = [ { alg = \"RS256\", pem_file = \"/nonexistent/k.pem\" } ]",
    )
    .unwrap();
    let err = AuthLayer::from_config(&config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "keys[0].pem_file: cannot read /nonexistent/k.pem"
    );
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("No such file"), "{source}");
    // An EC key where an RSA key is expected.
    let err = JwtKey::from_pem(JwtAlgorithm::Rs256, EC_PUB).unwrap_err();
    assert!(
        matches!(err, ConfigError::BadPem { alg: "RS256", .. }),
        "{err}"
    );
    assert!(JwtKey::from_pem(JwtAlgorithm::Hs256, RSA1_PUB).is_err());
}

#[test]
fn jwks_urls_are_plain_http() {
    let config: AuthConfig =
        toml::from_str("type = \"jwt\"\njwks_url = \"https://idp.example/jwks.json\"").unwrap();
    let messages: Vec<String> = config
        .validate()
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        messages[0].contains("https, which is not supported yet: TLS to JWKS arrives with R16"),
        "{messages:?}"
    );
    #[cfg(not(feature = "jwks"))]
    assert_eq!(
        messages[1],
        "jwks_url needs the `jwks` feature of portcullis-auth"
    );
}

#[test]
fn secrets_are_redacted() {
    let entry = ApiKeyEntry {
        identity: "acme".to_owned(),
        sha256: Secret::new("topsecret"),
    };
    assert!(!format!("{entry:?}").contains("topsecret"));
    assert_eq!(
        serde_json::to_string(&entry).unwrap(),
        r#"{"identity":"acme","sha256":"[redacted]"}"#
    );
    let key: JwtKeyConfig = toml::from_str("alg = \"HS256\"\nsecret = \"topsecret\"").unwrap();
    assert_eq!(key.secret.as_ref().map(Secret::expose), Some("topsecret"));
    assert!(!format!("{key:?}").contains("topsecret"));
    let layer = AuthLayer::jwt(JwtAuth::new().key(JwtKey::hs256("topsecret")));
    assert!(!format!("{layer:?}").contains("topsecret"));
    let users = BasicUsers::new("r")
        .unwrap()
        .user("u", &bcrypt_hash("pw"))
        .unwrap();
    assert!(!format!("{users:?}").contains("$2b$"));
}

#[tokio::test]
async fn jwt_crit_headers_and_tampered_payloads_are_refused() {
    let layer = AuthLayer::jwt(jwt());
    let sign = |header: &str, payload: &str| {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let key = EncodingKey::from_secret(HS_SECRET);
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
                .unwrap();
        format!("{input}.{sig}")
    };
    let claims = claims().to_string();
    // The hand-made token is valid without `crit`: the test can fail.
    let plain = sign(r#"{"alg":"HS256","kid":"h"}"#, &claims);
    assert_eq!(send(&layer, bearer(&plain)).await.status(), 200);
    jwt_denied(
        &layer,
        &sign(
            r#"{"alg":"HS256","kid":"h","crit":["b64"],"b64":false}"#,
            &claims,
        ),
    )
    .await;
    let (input, sig) = plain.rsplit_once('.').unwrap();
    let (header, _) = input.split_once('.').unwrap();
    let mut other = claims_value_with_sub("admin");
    other["exp"] = json!(now() + 600);
    let forged = format!(
        "{header}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(other.to_string())
    );
    jwt_denied(&layer, &forged).await;
}

fn claims_value_with_sub(sub: &str) -> serde_json::Value {
    let mut c = claims();
    c["sub"] = json!(sub);
    c
}

// ---- JWT verified-token cache ----

fn rs256_token(claims: &serde_json::Value) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("k1".to_owned());
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(RSA1_KEY).unwrap(),
    )
    .unwrap()
}

/// The identity `scheme` allows `token` as, or the denial.
fn jwt_check(scheme: &jwt::JwtScheme, token: &str) -> Result<String, String> {
    match scheme.check(&bearer(token)) {
        shared::Decision::Allow(id) => Ok(id.to_string()),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test]
async fn jwt_cache_serves_a_repeated_rs256_token() {
    let scheme = jwt().build();
    let token = rs256_token(&claims());
    for _ in 0..3 {
        assert_eq!(jwt_check(&scheme, &token).as_deref(), Ok("svc-a"));
        assert_eq!(scheme.verifications_for_tests(), 1, "one verification");
    }
    assert_eq!(scheme.cached_for_tests(), 1);
    // Another token is another entry, even with the same claims.
    let hs = hs256_token(&claims());
    assert_eq!(jwt_check(&scheme, &hs).as_deref(), Ok("svc-a"));
    assert_eq!(jwt_check(&scheme, &hs).as_deref(), Ok("svc-a"));
    assert_eq!(scheme.verifications_for_tests(), 2);

    // Through the layer, the cached answer is the same: identity, header stripped.
    let layer = AuthLayer::jwt(jwt()).identity_header(IDENTITY).unwrap();
    for _ in 0..2 {
        let res = send(&layer, bearer(&token)).await;
        assert_eq!(res.status(), 200);
        assert_eq!(seen(&res).headers[&IDENTITY], "svc-a");
        assert!(seen(&res).headers.get(AUTHORIZATION).is_none());
    }
}

#[tokio::test]
async fn jwt_cache_keeps_only_successes() {
    let scheme = jwt().build();
    let mut forged = rs256_token(&claims());
    forged.push('A');
    let wrong_aud = rs256_token(
        &json!({ "sub": "x", "exp": now() + 600, "iss": "https://issuer.example", "aud": "web" }),
    );
    for (i, token) in [&forged, &forged, &wrong_aud, &wrong_aud]
        .into_iter()
        .enumerate()
    {
        assert!(jwt_check(&scheme, token).is_err());
        assert_eq!(scheme.verifications_for_tests(), i + 1);
    }
    assert_eq!(scheme.cached_for_tests(), 0);
}

#[tokio::test(start_paused = true)]
async fn jwt_cache_entry_ends_with_the_token_exp_or_the_ttl() {
    let scheme = jwt()
        .leeway(Duration::ZERO)
        .cache(16, Duration::from_secs(60))
        .build();
    // exp is read from the system clock at insert: 9 to 10 s from now.
    let mut c = claims();
    c["exp"] = json!(now() + 10);
    let soon = rs256_token(&c);
    let late = rs256_token(&claims());
    assert!(jwt_check(&scheme, &soon).is_ok());
    assert!(jwt_check(&scheme, &late).is_ok());
    assert_eq!(scheme.verifications_for_tests(), 2);

    tokio::time::advance(Duration::from_secs(8)).await;
    assert!(jwt_check(&scheme, &soon).is_ok());
    assert_eq!(scheme.verifications_for_tests(), 2, "still cached");
    tokio::time::advance(Duration::from_secs(2)).await;
    // Past exp: not served from the cache. The system clock did not move, so
    // the full check passes again, which the count shows.
    assert!(jwt_check(&scheme, &soon).is_ok());
    assert_eq!(scheme.verifications_for_tests(), 3, "re-verified after exp");

    tokio::time::advance(Duration::from_secs(49)).await;
    assert!(jwt_check(&scheme, &late).is_ok());
    assert_eq!(scheme.verifications_for_tests(), 3, "within the ttl");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(jwt_check(&scheme, &late).is_ok());
    assert_eq!(
        scheme.verifications_for_tests(),
        4,
        "re-verified after the ttl"
    );
}

#[tokio::test(start_paused = true)]
async fn jwt_cache_is_bounded() {
    let scheme = jwt().cache(2, Duration::from_secs(60)).build();
    let tokens: Vec<String> = ["a", "b", "c"]
        .into_iter()
        .map(|sub| hs256_token(&claims_value_with_sub(sub)))
        .collect();
    for token in &tokens {
        assert!(jwt_check(&scheme, token).is_ok());
        // Distinct insert instants: "a" is the closest to its end.
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(scheme.cached_for_tests(), 2);
    assert_eq!(scheme.verifications_for_tests(), 3);
    assert_eq!(jwt_check(&scheme, &tokens[1]).as_deref(), Ok("b"));
    assert_eq!(jwt_check(&scheme, &tokens[2]).as_deref(), Ok("c"));
    assert_eq!(scheme.verifications_for_tests(), 3, "b and c cached");
    assert_eq!(jwt_check(&scheme, &tokens[0]).as_deref(), Ok("a"));
    assert_eq!(scheme.verifications_for_tests(), 4, "a was evicted");
    assert_eq!(scheme.cached_for_tests(), 2);
}

#[tokio::test]
async fn jwt_cache_disabled_with_zero_entries() {
    let scheme = jwt().cache(0, Duration::from_secs(60)).build();
    let token = rs256_token(&claims());
    for i in 1..=3 {
        assert_eq!(jwt_check(&scheme, &token).as_deref(), Ok("svc-a"));
        assert_eq!(scheme.verifications_for_tests(), i);
    }
    assert_eq!(scheme.cached_for_tests(), 0);
}

#[test]
fn jwt_cache_config_defaults_and_validation() {
    let c: JwtConfig = toml::from_str("").unwrap();
    assert_eq!(c.cache_entries, 4096);
    assert_eq!(c.cache_ttl, Duration::from_secs(60));
    for (toml_text, ok) in [
        ("cache_ttl = \"0s\"", false),
        ("cache_ttl = \"2h\"", false),
        ("cache_ttl = \"1h\"", true),
        ("cache_entries = 0\ncache_ttl = \"0s\"", true),
    ] {
        let text = format!("type = \"jwt\"\njwks_url = \"http://idp/jwks\"\n{toml_text}");
        let config: AuthConfig = toml::from_str(&text).unwrap();
        let messages: Vec<String> = config
            .validate()
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .filter(|m| m.starts_with("cache"))
            .collect();
        if ok {
            assert!(messages.is_empty(), "{toml_text}: {messages:?}");
        } else {
            let value = if toml_text.contains("2h") { "2h" } else { "0s" };
            assert_eq!(
                messages,
                [format!(
                    "cache_ttl must be above 0 and at most 1h (or set cache_entries = 0), got \"{value}\""
                )],
                "{toml_text}"
            );
        }
    }
}

#[cfg(feature = "jwks")]
#[tokio::test]
async fn jwt_cache_drops_tokens_of_a_removed_jwks_key() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::{Router, extract::State, routing::get as route_get};
    use jsonwebtoken::jwk::Jwk;

    type Origin = Arc<(Mutex<String>, AtomicUsize)>;
    async fn serve(State(origin): State<Origin>) -> String {
        origin.1.fetch_add(1, Ordering::SeqCst);
        origin.0.lock().unwrap().clone()
    }
    let doc = |kids: &[&str]| {
        let keys: Vec<_> = kids
            .iter()
            .map(|kid| {
                let key = EncodingKey::from_rsa_pem(RSA1_KEY).unwrap();
                let mut jwk = Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256).unwrap();
                jwk.common.key_id = Some((*kid).to_owned());
                jwk
            })
            .collect();
        json!({ "keys": keys }).to_string()
    };
    let origin: Origin = Arc::new((Mutex::new(doc(&["k1", "k2"])), AtomicUsize::new(0)));
    let app = Router::new()
        .route("/jwks.json", route_get(serve))
        .with_state(origin.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let refreshes = || async {
        let seen = origin.1.load(Ordering::SeqCst);
        // The fetch after the next one starts: the next one was installed.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while origin.1.load(Ordering::SeqCst) < seen + 2 {
            assert!(tokio::time::Instant::now() < deadline, "no refresh");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    let scheme = JwtAuth::new()
        .jwks(&url, Duration::from_millis(100), Duration::from_secs(2))
        .unwrap()
        .build();
    refreshes().await;
    // The same RSA key under kid k2 (static keys have no k2).
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("k2".to_owned());
    let token = encode(
        &header,
        &claims(),
        &EncodingKey::from_rsa_pem(RSA1_KEY).unwrap(),
    )
    .unwrap();
    assert_eq!(jwt_check(&scheme, &token).as_deref(), Ok("svc-a"));
    assert_eq!(jwt_check(&scheme, &token).as_deref(), Ok("svc-a"));
    assert_eq!(scheme.verifications_for_tests(), 1);

    // Refreshes that bring the same document keep the entry.
    refreshes().await;
    assert_eq!(jwt_check(&scheme, &token).as_deref(), Ok("svc-a"));
    assert_eq!(scheme.verifications_for_tests(), 1, "unchanged set: cached");

    // k2 removed: the entry is not served, and the token is refused.
    *origin.0.lock().unwrap() = doc(&["k1"]);
    refreshes().await;
    assert_eq!(
        jwt_check(&scheme, &token),
        Err("Deny(\"unknown key id\")".to_owned())
    );
    assert_eq!(scheme.cached_for_tests(), 0, "the stale entry was dropped");
}

// ---- identity header and claim checks ----

/// Every header the identity must never be written to.
const RESERVED: [&str; 20] = [
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "authorization",
    "cookie",
    "x-request-id",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "via",
    "expect",
];

#[test]
fn identity_header_refuses_framing_hop_by_hop_and_credential_headers() {
    let layers = || {
        [
            api_keys(),
            AuthLayer::basic(basic_users()),
            AuthLayer::jwt(JwtAuth::new().key(JwtKey::hs256(HS_SECRET))),
        ]
    };
    for name in RESERVED {
        for layer in layers() {
            let err = layer
                .identity_header(HeaderName::from_static(name))
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "identity_header must not be a framing, hop-by-hop, credential, \
                     request-id or forwarding header, got {name:?}"
                )
            );
        }
        // Whatever the case in the configuration.
        for config in [
            format!(
                "type = \"api_key\"\nheader = \"x-api-key\"\nidentity_header = \"{}\"\n\
                 keys = [ {{ identity = \"a\", sha256 = \"{}\" }} ]",
                name.to_uppercase(),
                "0".repeat(64)
            ),
            format!(
                "type = \"jwt\"\nidentity_header = \"{name}\"\n\
                 keys = [ {{ alg = \"HS256\", secret = \"{}\" }} ]",
                "s".repeat(32)
            ),
        ] {
            let config: AuthConfig = toml::from_str(&config).unwrap();
            let errors = config.validate().unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                matches!(&errors[0], ConfigError::Invalid { key, .. } if key == "identity_header"),
                "{errors:?}"
            );
            assert!(AuthLayer::from_config(&config).is_err());
        }
    }
    // The API key's own header, from the builder and from configuration.
    let keys = ApiKeys::header(HeaderName::from_static("x-api-key")).key("acme", "k");
    let err = AuthLayer::api_key(keys)
        .identity_header(HeaderName::from_static("x-api-key"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "identity_header must differ from the key header, got \"x-api-key\""
    );
    let config: AuthConfig = toml::from_str(&format!(
        "type = \"api_key\"\nheader = \"X-Api-Key\"\nidentity_header = \"x-api-key\"\n\
         keys = [ {{ identity = \"a\", sha256 = \"{}\" }} ]",
        "0".repeat(64)
    ))
    .unwrap();
    let err = AuthLayer::from_config(&config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "identity_header must differ from the key header, got \"x-api-key\""
    );
    // Ordinary headers are fine.
    for layer in layers() {
        let _layer = layer
            .identity_header(HeaderName::from_static("x-user"))
            .unwrap();
    }
}

#[test]
fn jwt_identity_claim_must_not_be_a_numeric_claim() {
    for claim in ["exp", "nbf", "iat"] {
        let config: AuthConfig = toml::from_str(&format!(
            "type = \"jwt\"\nidentity_claim = \"{claim}\"\n\
             keys = [ {{ alg = \"HS256\", secret = \"{}\" }} ]",
            "s".repeat(32)
        ))
        .unwrap();
        let messages: Vec<String> = config
            .validate()
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            messages,
            [format!(
                "identity_claim must not be a numeric registered claim (exp, nbf, iat): \
                 the identity is a string, got {claim:?}"
            )]
        );
        assert!(AuthLayer::from_config(&config).is_err());
    }
    for claim in ["sub", "email", "jti", "iss"] {
        let config: AuthConfig = toml::from_str(&format!(
            "type = \"jwt\"\nidentity_claim = \"{claim}\"\n\
             keys = [ {{ alg = \"HS256\", secret = \"{}\" }} ]",
            "s".repeat(32)
        ))
        .unwrap();
        config.validate().unwrap();
    }
}
