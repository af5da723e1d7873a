//! R9 authentication through the binary: API keys (header and query), HTTP Basic
//! (bcrypt and argon2), JWT (HS256, RS256, JWKS rotation), with credentials
//! stripped and the identity forwarded in a header the client cannot spoof.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::support::{Action, Gateway, Origin, Record, Response, exchange, ok, response, service};

const RSA1_KEY: &[u8] = include_bytes!("data/rsa1.key");
const RSA1_PUB: &[u8] = include_bytes!("data/rsa1.pub.pem");
const RSA2_KEY: &[u8] = include_bytes!("data/rsa2.key");

/// The hex SHA-256 of `key`, as `[auth.*] keys` store it.
pub(crate) fn sha256_hex(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// A gateway with `policies` (TOML) and one route `/` to `origin` through the
/// `auth = "policy"` filter.
async fn gateway(origin: &Origin, policies: &str, policy: &str) -> Gateway {
    let rest = format!(
        "{}{policies}\n\n[[routes]]\npath = \"/\"\nservice = \"svc\"\n\n\
         [[routes.filters]]\nauth = \"{policy}\"\n",
        service("svc", &origin.url())
    );
    Gateway::run("", &rest).await
}

/// An origin that answers 200 `ok`.
async fn origin() -> Origin {
    Origin::start(|_| Action::Respond(ok("ok"))).await
}

/// `GET target` with these extra header lines (each ending in CRLF).
async fn get_with(gw: &Gateway, target: &str, extra: &str) -> Response {
    let req = format!("GET {target} HTTP/1.1\r\nHost: test.local\r\n{extra}\r\n");
    exchange(gw, req.as_bytes()).await
}

/// Asserts a gateway rejection: status, cause, exact JSON body (the request
/// carried `x-request-id: rid`) and `WWW-Authenticate`.
fn assert_rejected(res: &Response, status: u16, cause: &str, rid: &str, challenge: Option<&str>) {
    assert_eq!(res.status, status, "{}", res.dump());
    assert_eq!(
        res.head.get_all("portcullis-error"),
        [cause],
        "{}",
        res.dump()
    );
    assert_eq!(
        res.body.text(),
        format!(r#"{{"error":"{cause}","status":{status},"request_id":"{rid}","service":"svc"}}"#),
        "{}",
        res.dump()
    );
    let want: Vec<&str> = challenge.into_iter().collect();
    assert_eq!(res.head.get_all("www-authenticate"), want, "{}", res.dump());
}

/// Sends `req` until the answer has status `want` (the gateway may need a moment,
/// e.g. for a JWKS fetch); panics after 10 s with the last answer.
async fn until_status(gw: &Gateway, target: &str, extra: &str, want: u16) -> Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res = get_with(gw, target, extra).await;
        if res.status == want {
            return res;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still no {want} for {target}: {}\n{}",
            res.dump(),
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn no_credentials(rec: &Record, header: &str) {
    assert!(
        !rec.head.has(header),
        "{} reached the origin:\n{}",
        header,
        rec.head.text()
    );
}

// --- API keys -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_in_a_header() {
    let origin = origin().await;
    let policies = format!(
        "[auth.partners]\ntype = \"api_key\"\nheader = \"x-api-key\"\n\
         keys = [ {{ identity = \"acme\", sha256 = \"{}\" }}, {{ identity = \"globex\", sha256 = \"{}\" }} ]\n\
         identity_header = \"x-portcullis-identity\"\n",
        sha256_hex("k-acme-123"),
        sha256_hex("k-globex-456"),
    );
    let gw = gateway(&origin, &policies, "partners").await;

    // Success: the key is stripped, the identity forwarded, the client's own
    // identity headers dropped.
    let res = get_with(
        &gw,
        "/a?x=1",
        "x-api-key: k-acme-123\r\nX-Portcullis-Identity: admin\r\nx-portcullis-identity: root\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    assert_eq!(rec.head.start, "GET /a?x=1 HTTP/1.1");
    no_credentials(&rec, "x-api-key");
    assert_eq!(
        rec.head.get_all("x-portcullis-identity"),
        ["acme"],
        "{}",
        rec.head.text()
    );
    assert!(
        !rec.head.text().contains("k-acme-123"),
        "{}",
        rec.head.text()
    );

    let res = get_with(&gw, "/b", "X-Api-Key: k-globex-456\r\n").await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.wait_records(2).await.remove(1);
    no_credentials(&rec, "x-api-key");
    assert_eq!(
        rec.head.get_all("x-portcullis-identity"),
        ["globex"],
        "{}",
        rec.head.text()
    );

    let res = get_with(&gw, "/c", "x-request-id: rid-k1\r\n").await;
    assert_rejected(
        &res,
        401,
        "missing_credentials",
        "rid-k1",
        Some(r#"ApiKey header="x-api-key""#),
    );

    let res = get_with(
        &gw,
        "/c",
        "x-request-id: rid-k2\r\nx-api-key: k-acme-124\r\n",
    )
    .await;
    assert_rejected(&res, 403, "bad_credentials", "rid-k2", None);

    // The right key twice is still refused: which one would count?
    let res = get_with(
        &gw,
        "/c",
        "x-request-id: rid-k3\r\nx-api-key: k-acme-123\r\nx-api-key: k-acme-123\r\n",
    )
    .await;
    assert_rejected(&res, 403, "bad_credentials", "rid-k3", None);

    // Another Authorization scheme is no API key.
    let res = get_with(
        &gw,
        "/c",
        "x-request-id: rid-k4\r\nAuthorization: Bearer k-acme-123\r\n",
    )
    .await;
    assert_rejected(
        &res,
        401,
        "missing_credentials",
        "rid-k4",
        Some(r#"ApiKey header="x-api-key""#),
    );

    assert_eq!(
        origin.records().len(),
        2,
        "rejected requests reached the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_kept_when_the_policy_says_so() {
    let origin = origin().await;
    let policies = format!(
        "[auth.keep]\ntype = \"api_key\"\nheader = \"x-api-key\"\n\
         keys = [ {{ identity = \"acme\", sha256 = \"{}\" }} ]\nkeep_credentials = true\n",
        sha256_hex("k-keep"),
    );
    let gw = gateway(&origin, &policies, "keep").await;
    let res = get_with(&gw, "/k", "x-api-key: k-keep\r\n").await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    assert_eq!(
        rec.head.get_all("x-api-key"),
        ["k-keep"],
        "{}",
        rec.head.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_in_the_query_is_removed_and_other_parameters_kept_in_order() {
    let origin = origin().await;
    let policies = format!(
        "[auth.q]\ntype = \"api_key\"\nquery = \"api_key\"\n\
         keys = [ {{ identity = \"acme\", sha256 = \"{}\" }} ]\nidentity_header = \"x-id\"\n",
        sha256_hex("qk-1"),
    );
    let gw = gateway(&origin, &policies, "q").await;
    let cases = [
        ("/q/x?a=1&api_key=qk-1&b=%20&c&a=2", "/q/x?a=1&b=%20&c&a=2"),
        ("/q/x?api_key=qk-1", "/q/x"),
        ("/q/x?api_key=qk-1&z=9", "/q/x?z=9"),
        ("/q//x%2F?z=9&api_key=qk-1", "/q//x%2F?z=9"),
    ];
    for (i, (target, want)) in cases.iter().enumerate() {
        let res = get_with(&gw, target, "").await;
        assert_eq!(res.status, 200, "{target}: {}", res.dump());
        let rec = origin.wait_records(i + 1).await.remove(i);
        assert_eq!(rec.head.start, format!("GET {want} HTTP/1.1"), "{target}");
        assert_eq!(rec.head.get_all("x-id"), ["acme"], "{}", rec.head.text());
    }

    let res = get_with(&gw, "/q/x?a=1", "x-request-id: rid-q1\r\n").await;
    assert_rejected(
        &res,
        401,
        "missing_credentials",
        "rid-q1",
        Some(r#"ApiKey query="api_key""#),
    );
    let res = get_with(&gw, "/q/x?api_key=qk-2", "x-request-id: rid-q2\r\n").await;
    assert_rejected(&res, 403, "bad_credentials", "rid-q2", None);
    assert_eq!(origin.records().len(), cases.len());
}

// --- HTTP Basic -----------------------------------------------------------------

fn basic(user: &str, password: &str) -> String {
    format!(
        "Authorization: Basic {}\r\n",
        STANDARD.encode(format!("{user}:{password}"))
    )
}

fn argon2_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let salt = SaltString::from_b64("ZTJlLXNhbHQtZTJlLXNhbHQ").unwrap();
    // Small parameters: the gateway under test is a debug build.
    let params = argon2::Params::new(64, 1, 1, None).unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_with_bcrypt_and_argon2_hashes() {
    let origin = origin().await;
    let alice = bcrypt::hash("alice-pw", 4).unwrap();
    let bob = argon2_hash("bob-pw");
    assert!(bob.starts_with("$argon2id$"), "{bob}");
    let policies = format!(
        "[auth.staff]\ntype = \"basic\"\nrealm = \"staff\"\n\
         users = [ {{ name = \"alice\", hash = \"{alice}\" }}, {{ name = \"bob\", hash = \"{bob}\" }} ]\n\
         identity_header = \"x-user\"\n"
    );
    let gw = gateway(&origin, &policies, "staff").await;

    for (i, (user, password)) in [
        ("alice", "alice-pw"),
        ("bob", "bob-pw"),
        ("alice", "alice-pw"),
    ]
    .into_iter()
    .enumerate()
    {
        let res = get_with(
            &gw,
            "/staff",
            &format!("{}x-user: mallory\r\n", basic(user, password)),
        )
        .await;
        assert_eq!(res.status, 200, "{user}: {}", res.dump());
        let rec = origin.wait_records(i + 1).await.remove(i);
        no_credentials(&rec, "authorization");
        assert_eq!(rec.head.get_all("x-user"), [user], "{}", rec.head.text());
    }

    let res = get_with(&gw, "/staff", "x-request-id: rid-b1\r\n").await;
    assert_rejected(
        &res,
        401,
        "missing_credentials",
        "rid-b1",
        Some(r#"Basic realm="staff""#),
    );
    let res = get_with(
        &gw,
        "/staff",
        "x-request-id: rid-b2\r\nAuthorization: Bearer abc\r\n",
    )
    .await;
    assert_rejected(
        &res,
        401,
        "missing_credentials",
        "rid-b2",
        Some(r#"Basic realm="staff""#),
    );
    let res = get_with(
        &gw,
        "/staff",
        &format!("x-request-id: rid-b3\r\n{}", basic("alice", "bob-pw")),
    )
    .await;
    assert_rejected(&res, 403, "bad_credentials", "rid-b3", None);
    let res = get_with(
        &gw,
        "/staff",
        &format!("x-request-id: rid-b4\r\n{}", basic("bob", "alice-pw")),
    )
    .await;
    assert_rejected(&res, 403, "bad_credentials", "rid-b4", None);
    let res = get_with(
        &gw,
        "/staff",
        &format!("x-request-id: rid-b5\r\n{}", basic("carol", "alice-pw")),
    )
    .await;
    assert_rejected(&res, 403, "bad_credentials", "rid-b5", None);
    let res = get_with(
        &gw,
        "/staff",
        "x-request-id: rid-b6\r\nAuthorization: Basic %%%not-base64\r\n",
    )
    .await;
    assert_rejected(&res, 403, "bad_credentials", "rid-b6", None);
    assert_eq!(origin.records().len(), 3);
}

// --- JWT ------------------------------------------------------------------------

const HS_SECRET: &str = "e2e-hs256-secret-0123456789abcdef";
const ISSUER: &str = "https://issuer.test";

fn claims(sub: &str, aud: Value, exp_offset: i64) -> Value {
    let now = i64::try_from(get_current_timestamp()).unwrap();
    json!({ "sub": sub, "iss": ISSUER, "aud": aud, "exp": now + exp_offset })
}

fn hs256(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn rs256(private_pem: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(private_pem).unwrap(),
    )
    .unwrap()
}

/// A token with `alg: none` and no signature.
fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_hs256_checks_signature_expiry_issuer_and_audience() {
    let origin = origin().await;
    let policies = format!(
        "[auth.tokens]\ntype = \"jwt\"\nissuer = \"{ISSUER}\"\naudience = [\"api\"]\n\
         identity_header = \"x-user\"\nkeys = [ {{ alg = \"HS256\", secret = \"{HS_SECRET}\" }} ]\n"
    );
    let gw = gateway(&origin, &policies, "tokens").await;
    let secret = HS_SECRET.as_bytes();

    let good = hs256(secret, None, &claims("user-1", json!("api"), 600));
    let res = get_with(&gw, "/j", &format!("{}X-User: admin\r\n", bearer(&good))).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    no_credentials(&rec, "authorization");
    assert_eq!(
        rec.head.get_all("x-user"),
        ["user-1"],
        "{}",
        rec.head.text()
    );

    // An audience list naming ours passes too.
    let listed = hs256(
        secret,
        None,
        &claims("user-2", json!(["billing", "api"]), 600),
    );
    let res = get_with(&gw, "/j", &bearer(&listed)).await;
    assert_eq!(res.status, 200, "{}", res.dump());

    // Expired by less than the leeway (30 s by default): still valid.
    let lenient = hs256(secret, None, &claims("user-3", json!("api"), -10));
    let res = get_with(&gw, "/j", &bearer(&lenient)).await;
    assert_eq!(res.status, 200, "{}", res.dump());

    let res = get_with(&gw, "/j", "x-request-id: rid-j0\r\n").await;
    assert_rejected(
        &res,
        401,
        "missing_credentials",
        "rid-j0",
        Some(r#"Bearer realm="portcullis""#),
    );

    let now = i64::try_from(get_current_timestamp()).unwrap();
    let mut no_exp = claims("user-1", json!("api"), 600);
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut not_yet = claims("user-1", json!("api"), 7200);
    not_yet["nbf"] = json!(now + 3600);
    let mut other_issuer = claims("user-1", json!("api"), 600);
    other_issuer["iss"] = json!("https://evil.test");
    let refused = [
        (
            "expired",
            hs256(secret, None, &claims("user-1", json!("api"), -3600)),
        ),
        (
            "wrong audience",
            hs256(secret, None, &claims("user-1", json!("billing"), 600)),
        ),
        ("wrong issuer", hs256(secret, None, &other_issuer)),
        ("no exp", hs256(secret, None, &no_exp)),
        ("not yet valid", hs256(secret, None, &not_yet)),
        ("alg none", unsigned(&claims("user-1", json!("api"), 600))),
        (
            "other secret",
            hs256(
                b"another-secret-0123456789abcdef-xx",
                None,
                &claims("user-1", json!("api"), 600),
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (i, (what, token)) in refused.iter().enumerate() {
        let rid = format!("rid-j{}", i + 1);
        let res = get_with(
            &gw,
            "/j",
            &format!("x-request-id: {rid}\r\n{}", bearer(token)),
        )
        .await;
        assert_eq!(res.status, 403, "{what}: {}", res.dump());
        assert_rejected(&res, 403, "bad_credentials", &rid, None);
    }
    assert_eq!(origin.records().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_rs256_refuses_algorithm_confusion() {
    let origin = origin().await;
    let pem_file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/e2e/data/rsa1.pub.pem"
    );
    let policies = format!(
        "[auth.rsa]\ntype = \"jwt\"\nkeys = [ {{ kid = \"k1\", alg = \"RS256\", pem_file = {pem_file:?} }} ]\n"
    );
    let gw = gateway(&origin, &policies, "rsa").await;
    let c = claims("svc-1", json!("any"), 600);

    let res = get_with(&gw, "/r", &bearer(&rs256(RSA1_KEY, "k1", &c))).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    no_credentials(&rec, "authorization");

    let refused = [
        ("signed by another RSA key", rs256(RSA2_KEY, "k1", &c)),
        // HS256 "signed" with the RS256 public key as the HMAC secret.
        (
            "HS256 with the public key, kid k1",
            hs256(RSA1_PUB, Some("k1"), &c),
        ),
        (
            "HS256 with the public key, no kid",
            hs256(RSA1_PUB, None, &c),
        ),
        ("alg none, kid k1", {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#);
            format!("{header}.{}.", URL_SAFE_NO_PAD.encode(c.to_string()))
        }),
    ];
    for (i, (what, token)) in refused.iter().enumerate() {
        let rid = format!("rid-r{i}");
        let res = get_with(
            &gw,
            "/r",
            &format!("x-request-id: {rid}\r\n{}", bearer(token)),
        )
        .await;
        assert_eq!(res.status, 403, "{what}: {}", res.dump());
        assert_rejected(&res, 403, "bad_credentials", &rid, None);
    }
    assert_eq!(origin.records().len(), 1);
}

/// A JWKS document with the RSA public keys of these private keys.
fn jwks_doc(keys: &[(&[u8], &str)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(pem, kid)| {
            let key = EncodingKey::from_rsa_pem(pem).unwrap();
            let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
            jwk.common.key_id = Some((*kid).to_owned());
            serde_json::to_value(jwk).unwrap()
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_keys_from_a_rotating_jwks() {
    let doc = Arc::new(Mutex::new(jwks_doc(&[(RSA1_KEY, "k1")])));
    let served = doc.clone();
    let jwks = Origin::start(move |_| {
        let body = served.lock().unwrap().clone();
        Action::Respond(response(
            "200 OK",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        ))
    })
    .await;
    let origin = origin().await;
    let policies = format!(
        "[auth.jwks]\ntype = \"jwt\"\njwks_url = \"{}/.well-known/jwks.json\"\n\
         jwks_refresh = \"200ms\"\nidentity_header = \"x-user\"\n",
        jwks.url()
    );
    let gw = gateway(&origin, &policies, "jwks").await;
    let t1 = rs256(RSA1_KEY, "k1", &claims("old-key-user", json!("any"), 600));
    let t2 = rs256(RSA2_KEY, "k2", &claims("new-key-user", json!("any"), 600));

    // Until the first fetch the answer may be 503 auth_unavailable.
    until_status(&gw, "/w", &bearer(&t1), 200).await;
    let res = get_with(&gw, "/w", &bearer(&t2)).await;
    assert_eq!(
        res.status,
        403,
        "a kid the JWKS does not have: {}",
        res.dump()
    );
    assert_eq!(res.cause(), Some("bad_credentials"), "{}", res.dump());
    let jwks_requests = jwks.records();
    assert!(
        jwks_requests
            .iter()
            .all(|r| r.head.start == "GET /.well-known/jwks.json HTTP/1.1"),
        "{jwks_requests:#?}"
    );

    // Rotate: k2 replaces k1.
    *doc.lock().unwrap() = jwks_doc(&[(RSA2_KEY, "k2")]);
    until_status(&gw, "/w", &format!("{}x-user: spoof\r\n", bearer(&t2)), 200).await;
    let res = get_with(&gw, "/w", &bearer(&t1)).await;
    assert_eq!(
        res.status,
        403,
        "the rotated-out key still works: {}",
        res.dump()
    );

    let records = origin.records();
    assert_eq!(records.len(), 2, "{records:#?}");
    for rec in &records {
        no_credentials(rec, "authorization");
    }
    assert_eq!(records[0].head.get_all("x-user"), ["old-key-user"]);
    assert_eq!(records[1].head.get_all("x-user"), ["new-key-user"]);
}

/// A client's copy of an identity header is removed on every route, not only on
/// routes whose auth policy sets it: a route without auth to the same service
/// must not be a way to spoof the identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_header_cannot_be_spoofed_through_a_route_without_auth() {
    let origin = origin().await;
    let rest = format!(
        "{}[auth.keys]\ntype = \"api_key\"\nheader = \"x-api-key\"\n\
         identity_header = \"x-portcullis-identity\"\n\
         keys = [ {{ identity = \"acme\", sha256 = \"{}\" }} ]\n\n\
         [[routes]]\npath = \"/private/\"\nservice = \"svc\"\n\
         [[routes.filters]]\nauth = \"keys\"\n\n\
         [[routes]]\npath = \"/public/\"\nservice = \"svc\"\n",
        service("svc", &origin.url()),
        sha256_hex("k-1"),
    );
    let gw = Gateway::run("", &rest).await;

    let res = get_with(
        &gw,
        "/public/x",
        "X-Portcullis-Identity: admin\r\nx-portcullis-identity: root\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let res = get_with(
        &gw,
        "/private/x",
        "x-api-key: k-1\r\nx-portcullis-identity: admin\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());

    let records = origin.records();
    assert_eq!(records.len(), 2);
    let public = &records[0];
    assert_eq!(public.head.start, "GET /public/x HTTP/1.1");
    assert!(
        public.head.get_all("x-portcullis-identity").is_empty(),
        "{}",
        public.head.text()
    );
    assert_eq!(
        records[1].head.get_all("x-portcullis-identity"),
        ["acme"],
        "{}",
        records[1].head.text()
    );
}
