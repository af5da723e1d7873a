use std::task::{Context, Poll};

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, Request, Response, Version};
use portcullis_core::{Cause, ErrorResponse};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::raw::{RawHeadVerdict, is_ctl, parse_digits};

/// Rejects requests with ambiguous framing or malformed headers (R4).
///
/// See the [crate docs](crate#framing-guard) for the exact rules.
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct FramingGuardLayer {
    _priv: (),
}

/// The service of [`FramingGuardLayer`].
#[derive(Debug, Clone)]
pub struct FramingGuard<S> {
    inner: S,
}

// === impl FramingGuardLayer ===

impl FramingGuardLayer {
    /// The framing guard. It has no knobs.
    pub fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for FramingGuardLayer {
    type Service = FramingGuard<S>;

    fn layer(&self, inner: S) -> FramingGuard<S> {
        FramingGuard::new(inner)
    }
}

// === impl FramingGuard ===

impl<S> FramingGuard<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// A [`FramingGuardLayer`].
    pub fn layer() -> FramingGuardLayer {
        FramingGuardLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for FramingGuard<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match check(&req) {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err((cause, reason)) => {
                tracing::debug!(cause = %cause, reason, "rejected request framing");
                ResponseFuture::rejected(ErrorResponse::for_request(cause, &req).build())
            }
        }
    }
}

type Rejection = (Cause, &'static str);

fn check<B>(req: &Request<B>) -> Result<(), Rejection> {
    if let Some(RawHeadVerdict::Bad { cause, reason }) = req.extensions().get::<RawHeadVerdict>() {
        return Err((*cause, reason));
    }
    let headers = req.headers();
    let version = req.version();
    // The request target's form (RFC 9112 §3.2): authority-form belongs to
    // CONNECT alone (`GET host:80` would otherwise be forwarded as `GET /` with
    // its Host replaced), and an absolute target names http or https.
    let uri = req.uri();
    if let Some(scheme) = uri.scheme_str() {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err((
                Cause::BadRequest,
                "request target scheme is not http or https",
            ));
        }
    } else if uri.authority().is_some() && req.method() != http::Method::CONNECT {
        return Err((Cause::BadRequest, "authority-form target without CONNECT"));
    }
    // `http` refuses these bytes in a `HeaderValue`; checked again in case a
    // lenient parser or an unchecked constructor put them there.
    if headers
        .values()
        .any(|v| v.as_bytes().iter().any(|&b| is_ctl(b)))
    {
        return Err((Cause::BadRequest, "control byte in header value"));
    }
    match count(headers, &HOST) {
        (0, _) if version == Version::HTTP_11 => return Err((Cause::BadRequest, "missing host")),
        (2.., _) => return Err((Cause::BadRequest, "duplicate host")),
        _ => {}
    }
    let (lengths, length) = count(headers, &CONTENT_LENGTH);
    let (codings, coding) = count(headers, &TRANSFER_ENCODING);
    if codings > 0 {
        if version == Version::HTTP_2 || version == Version::HTTP_3 {
            return Err((Cause::BadFraming, "transfer-encoding on http/2"));
        }
        if version == Version::HTTP_10 || version == Version::HTTP_09 {
            return Err((Cause::BadFraming, "transfer-encoding on http/1.0"));
        }
        if lengths > 0 {
            return Err((Cause::BadFraming, "content-length with transfer-encoding"));
        }
        let chunked = coding.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        if codings > 1 || !chunked {
            return Err((Cause::BadFraming, "transfer-encoding other than chunked"));
        }
    }
    if let Some(length) = length {
        // Even equal duplicates are refused (RFC 9110 §8.6 allows folding them):
        // a peer that takes the first and one that takes the last value would
        // disagree about where the body ends if they ever differed after a
        // rewrite, and no honest client sends two.
        if lengths > 1 || length.as_bytes().contains(&b',') {
            return Err((Cause::BadFraming, "duplicate content-length"));
        }
        if parse_digits(length.as_bytes()).is_none() {
            return Err((Cause::BadFraming, "invalid content-length"));
        }
    }
    Ok(())
}

/// How many `name` lines there are (counting stops at 2), and the first one.
fn count<'a>(
    headers: &'a HeaderMap,
    name: &http::HeaderName,
) -> (usize, Option<&'a http::HeaderValue>) {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    let n = match (first, values.next()) {
        (None, _) => 0,
        (Some(_), None) => 1,
        (Some(_), Some(_)) => 2,
    };
    (n, first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http_body_util::{BodyExt, Empty};
    use portcullis_core::PORTCULLIS_ERROR;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    async fn send(
        req: Request<Empty<bytes::Bytes>>,
    ) -> Response<ResponseBody<Empty<bytes::Bytes>>> {
        let inner = service_fn(|_req: Request<Empty<bytes::Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Empty::new()))
        });
        FramingGuard::new(inner).oneshot(req).await.unwrap()
    }

    fn req() -> http::request::Builder {
        Request::post("/").header(HOST, "example.com")
    }

    #[tokio::test]
    async fn target_forms_are_checked() {
        let with = |method: &str, target: &str| {
            Request::builder()
                .method(method)
                .uri(target)
                .header(HOST, "example.com")
                .body(Empty::new())
                .unwrap()
        };
        for (method, target) in [
            ("GET", "example.com:80"),
            ("POST", "smuggled:8080"),
            ("GET", "ftp://example.com/x"),
            ("GET", "gopher://example.com/"),
        ] {
            let res = send(with(method, target)).await;
            assert_eq!(res.status(), 400, "{method} {target}");
            assert_eq!(res.headers()[PORTCULLIS_ERROR], "bad_request");
        }
        for (method, target) in [
            ("GET", "/x"),
            ("GET", "http://example.com/x"),
            ("GET", "HTTPS://example.com/x"),
            ("CONNECT", "example.com:443"),
            ("OPTIONS", "*"),
        ] {
            assert_eq!(
                send(with(method, target)).await.status(),
                200,
                "{method} {target}"
            );
        }
    }

    async fn assert_rejected(req: Request<Empty<bytes::Bytes>>, cause: &str) {
        let res = send(req).await;
        assert_eq!(res.status(), 400);
        assert_eq!(res.headers()[PORTCULLIS_ERROR], cause);
        assert_eq!(res.headers()[http::header::CONNECTION], "close");
        let want = if cause == "bad_framing" {
            Cause::BadFraming
        } else {
            Cause::BadRequest
        };
        assert_eq!(res.extensions().get::<Cause>(), Some(&want));
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &body[..],
            format!(r#"{{"error":"{cause}","status":400,"request_id":null,"service":null}}"#)
                .as_bytes()
        );
    }

    #[tokio::test]
    async fn passes_plain_requests() {
        let ok = [
            req().body(Empty::new()).unwrap(),
            req()
                .header(CONTENT_LENGTH, "0")
                .body(Empty::new())
                .unwrap(),
            req()
                .header(CONTENT_LENGTH, "1234567890123456789")
                .body(Empty::new())
                .unwrap(),
            req()
                .header(TRANSFER_ENCODING, "Chunked")
                .body(Empty::new())
                .unwrap(),
            Request::get("/")
                .version(Version::HTTP_10)
                .body(Empty::new())
                .unwrap(),
            Request::get("https://a/")
                .version(Version::HTTP_2)
                .body(Empty::new())
                .unwrap(),
            req()
                .header("x-tab", "a\tb")
                .header("x-obs", HeaderValue::from_bytes(b"caf\xe9").unwrap())
                .body(Empty::new())
                .unwrap(),
        ];
        for r in ok {
            let dbg = format!("{r:?}");
            let res = send(r).await;
            assert_eq!(res.status(), 200, "{dbg}");
            assert!(res.headers().get(PORTCULLIS_ERROR).is_none());
        }
    }

    #[tokio::test]
    async fn rejects_bad_hosts() {
        assert_rejected(Request::get("/").body(Empty::new()).unwrap(), "bad_request").await;
        let r = req()
            .header(HOST, "other.example")
            .body(Empty::new())
            .unwrap();
        assert_rejected(r, "bad_request").await;
    }

    #[test]
    fn control_bytes_are_refused_by_http_itself() {
        // The guard's own control-byte check is defence in depth: safe `http`
        // code cannot build such a value, and the raw inspector sees the bytes.
        for bytes in [&b"a\x00b"[..], b"a\x1fb", b"a\x7f", b"a\rb", b"a\nb"] {
            assert!(HeaderValue::from_bytes(bytes).is_err());
            assert!(bytes.iter().any(|&b| is_ctl(b)));
        }
        assert!(!b"a\tb \xff~".iter().any(|&b| is_ctl(b)));
    }

    #[tokio::test]
    async fn rejects_ambiguous_framing() {
        let bad = [
            req()
                .header(CONTENT_LENGTH, "5")
                .header(TRANSFER_ENCODING, "chunked"),
            req()
                .header(TRANSFER_ENCODING, "chunked")
                .header(CONTENT_LENGTH, "5"),
            req()
                .header(CONTENT_LENGTH, "5")
                .header(CONTENT_LENGTH, "5"),
            req().header(CONTENT_LENGTH, "5, 5"),
            req().header(CONTENT_LENGTH, "+5"),
            req().header(CONTENT_LENGTH, ""),
            req().header(CONTENT_LENGTH, "12345678901234567890"),
            req().header(TRANSFER_ENCODING, "chunked, chunked"),
            req().header(TRANSFER_ENCODING, "gzip, chunked"),
            req()
                .header(TRANSFER_ENCODING, "chunked")
                .header(TRANSFER_ENCODING, "chunked"),
            req()
                .header(TRANSFER_ENCODING, "chunked")
                .version(Version::HTTP_10),
            req()
                .header(TRANSFER_ENCODING, "chunked")
                .version(Version::HTTP_2),
        ];
        for r in bad {
            assert_rejected(r.body(Empty::new()).unwrap(), "bad_framing").await;
        }
    }

    #[tokio::test]
    async fn rejects_a_bad_raw_verdict() {
        let mut r = req().body(Empty::new()).unwrap();
        r.extensions_mut().insert(RawHeadVerdict::Bad {
            cause: Cause::BadFraming,
            reason: "content-length with transfer-encoding",
        });
        assert_rejected(r, "bad_framing").await;
        let mut r = req().body(Empty::new()).unwrap();
        r.extensions_mut().insert(RawHeadVerdict::Bad {
            cause: Cause::BadRequest,
            reason: "obsolete line folding",
        });
        assert_rejected(r, "bad_request").await;
        let mut r = req().body(Empty::new()).unwrap();
        r.extensions_mut().insert(RawHeadVerdict::Ok);
        assert_eq!(send(r).await.status(), 200);
    }

    #[tokio::test]
    async fn echoes_the_request_id() {
        let r = req()
            .header(CONTENT_LENGTH, "1")
            .header(TRANSFER_ENCODING, "chunked")
            .header("x-request-id", "req-7")
            .body(Empty::new())
            .unwrap();
        let res = send(r).await;
        assert_eq!(res.headers()["x-request-id"], "req-7");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &body[..],
            br#"{"error":"bad_framing","status":400,"request_id":"req-7","service":null}"#
        );
    }
}
