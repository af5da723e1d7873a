//! Signature verification does not depend on jsonwebtoken's process-wide crypto
//! provider: when feature unification enables both `rust_crypto` and
//! `aws_lc_rs`, the provider jsonwebtoken picks by itself panics on every call,
//! and any crate in the process may install another one.
//!
//! Its own test binary: the provider is installed once per process, first.
#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;

use http::{Request, Response, header::AUTHORIZATION};
use http_body_util::Empty;
use jsonwebtoken::crypto::{CryptoProvider, rust_crypto};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use portcullis_auth::{AuthLayer, JwtAlgorithm, JwtAuth, JwtKey};
use serde_json::json;
use tower::{Layer, ServiceExt, service_fn};

const RSA1_KEY: &[u8] = include_bytes!("data/rsa1.key");
const RSA1_PUB: &[u8] = include_bytes!("data/rsa1.pub.pem");
const ED_KEY: &[u8] = include_bytes!("data/ed.key");
const ED_PUB: &[u8] = include_bytes!("data/ed.pub.pem");
const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn verification_ignores_the_process_wide_crypto_provider() {
    // Signs like RustCrypto (the test mints tokens with it) but panics on every
    // verification, as the provider of a build with both features does.
    let provider: &'static CryptoProvider = Box::leak(Box::new(CryptoProvider {
        signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
        verifier_factory: |_, _| panic!("the process-wide provider verified a token"),
        jwk_utils: rust_crypto::DEFAULT_PROVIDER.jwk_utils.clone(),
    }));
    assert!(provider.install_default().is_ok(), "installed first");
    let hs = EncodingKey::from_secret(HS_SECRET);
    let probe = encode(&Header::default(), &json!({ "exp": 1 }), &hs).unwrap();
    let (input, sig) = probe.rsplit_once('.').unwrap();
    let global = std::panic::catch_unwind(|| {
        jsonwebtoken::crypto::verify(
            sig,
            input.as_bytes(),
            &jsonwebtoken::DecodingKey::from_secret(HS_SECRET),
            Algorithm::HS256,
        )
    });
    assert!(global.is_err(), "the global path panics");

    let auth = JwtAuth::new()
        .key(JwtKey::hs256(HS_SECRET))
        .key(JwtKey::from_pem(JwtAlgorithm::Rs256, RSA1_PUB).unwrap())
        .key(JwtKey::from_pem(JwtAlgorithm::EdDsa, ED_PUB).unwrap())
        .cache(0, std::time::Duration::ZERO);
    let svc = AuthLayer::jwt(auth).layer(service_fn(|_req: Request<Empty<&[u8]>>| async {
        Ok::<_, Infallible>(Response::new(Empty::<&[u8]>::new()))
    }));
    let claims = json!({ "sub": "svc-a", "exp": get_current_timestamp() + 600 });
    let tokens = [
        (Algorithm::HS256, hs.clone()),
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA1_KEY).unwrap(),
        ),
        (Algorithm::EdDSA, EncodingKey::from_ed_pem(ED_KEY).unwrap()),
    ];
    for (alg, key) in tokens {
        let token = encode(&Header::new(alg), &claims, &key).unwrap();
        let req = Request::get("/")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Empty::new())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200, "{alg:?}");
        // A wrong signature is still refused.
        let forged = format!("{token}x");
        let req = Request::get("/")
            .header(AUTHORIZATION, format!("Bearer {forged}"))
            .body(Empty::new())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 403, "{alg:?}");
        assert_eq!(res.headers()["portcullis-error"], "bad_credentials");
    }
}
