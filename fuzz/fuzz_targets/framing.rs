//! `framing`: the raw request-head inspector and the framing guard of
//! `portcullis-body`, on the bytes a client sends.
//!
//! Input: byte 0 picks the inspector's head limit (high bit set: a small limit,
//! 16 to 524 bytes, to reach the overflow paths; else the gateway's default
//! 32 KiB + 8 KiB + 4 KiB), byte 1 picks how the stream is split into reads,
//! the rest is the client's byte stream.
//!
//! Checks:
//! - the verdicts do not depend on how the stream is split into reads (one
//!   read, reads of varying sizes, one byte per read);
//! - at most one `Bad` verdict, always the last, and the inspector is then
//!   passthrough; an overflow is reported as `HeadersTooLarge`;
//! - differential against httparse (hyper's parser): when the inspector calls
//!   the first head `Ok`, httparse's view of it has unambiguous framing (at
//!   most one `Content-Length` of 1-19 digits, at most one `Transfer-Encoding`
//!   and only `chunked`, never both, no `Transfer-Encoding` on HTTP/1.0);
//! - the `FramingGuard` layer on that request, built with `http` types and
//!   carrying the verdict as the listener attaches it, rejects every `Bad`
//!   verdict with its cause, and whatever it lets through obeys its rules.
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Request, Response, Version};
use http_body_util::Empty;
use libfuzzer_sys::fuzz_target;
use portcullis_body::{FramingGuard, HeadInspector, RawHeadVerdict};
use portcullis_core::{Cause, PORTCULLIS_ERROR};
use portcullis_fuzz::poll_now;
use tower_service::Service;

/// The gateway's default: `max_header_bytes + max_uri_bytes + 4096`.
const DEFAULT_HEAD_LIMIT: usize = 32 * 1024 + 8 * 1024 + 4096;

fuzz_target!(|data: &[u8]| {
    let [limit_sel, split_sel, stream @ ..] = data else {
        return;
    };
    let limit = if limit_sel & 0x80 != 0 {
        16 + usize::from(limit_sel & 0x7f) * 4
    } else {
        DEFAULT_HEAD_LIMIT
    };

    let whole = run(limit, stream, |_| stream.len());
    let varied = run(limit, stream, |i| {
        1 + (usize::from(*split_sel) * (i + 1) * 7 + i) % (usize::from(*split_sel % 61) + 1)
    });
    let bytewise = run(limit, stream, |_| 1);
    assert_eq!(whole, varied, "verdicts depend on the read split");
    assert_eq!(
        whole, bytewise,
        "verdicts depend on the read split (one byte per read)"
    );

    let Outcome {
        verdicts,
        passthrough,
        overflowed,
    } = whole;
    let bads = verdicts
        .iter()
        .filter(|v| matches!(v, RawHeadVerdict::Bad { .. }))
        .count();
    assert!(bads <= 1, "more than one bad verdict: {verdicts:?}");
    if let Some(RawHeadVerdict::Bad { .. }) = verdicts.iter().find(|v| **v != RawHeadVerdict::Ok) {
        assert!(
            matches!(verdicts.last(), Some(RawHeadVerdict::Bad { .. })),
            "a verdict after a bad one: {verdicts:?}"
        );
        assert!(passthrough, "still inspecting after a bad head");
    }
    if overflowed {
        assert!(passthrough);
        assert!(
            matches!(
                verdicts.last(),
                Some(RawHeadVerdict::Bad {
                    cause: Cause::HeadersTooLarge,
                    ..
                })
            ),
            "overflow without a HeadersTooLarge verdict: {verdicts:?}"
        );
    }

    check_first_head(stream, verdicts.first());
});

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    verdicts: Vec<RawHeadVerdict>,
    passthrough: bool,
    overflowed: bool,
}

/// Feeds `stream` in reads of `size(i)` bytes, taking the verdicts after each
/// read as the listener does.
fn run(limit: usize, stream: &[u8], size: impl Fn(usize) -> usize) -> Outcome {
    let mut inspector = HeadInspector::new(limit);
    let mut verdicts = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = size(i).clamp(1, rest.len());
        let (read, tail) = rest.split_at(n);
        inspector.feed(read);
        while let Some(v) = inspector.next_verdict() {
            verdicts.push(v);
        }
        rest = tail;
        i += 1;
    }
    Outcome {
        verdicts,
        passthrough: inspector.is_passthrough(),
        overflowed: inspector.head_overflowed(),
    }
}

/// Compares the inspector's verdict on the first head with httparse's reading
/// of it, then sends it through the framing guard.
fn check_first_head(stream: &[u8], verdict: Option<&RawHeadVerdict>) {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(stream) else {
        return;
    };
    let (Some(method), Some(path), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return;
    };
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };

    if verdict == Some(&RawHeadVerdict::Ok) {
        // The inspector's `Ok` must not hide framing that hyper reads as
        // ambiguous.
        let lengths: Vec<&[u8]> = parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| h.value)
            .collect();
        let codings: Vec<&[u8]> = parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
            .map(|h| h.value)
            .collect();
        assert!(
            lengths.len() <= 1,
            "Ok verdict with {} content-lengths",
            lengths.len()
        );
        assert!(
            codings.len() <= 1,
            "Ok verdict with {} transfer-encodings",
            codings.len()
        );
        assert!(
            lengths.is_empty() || codings.is_empty(),
            "Ok verdict with content-length and transfer-encoding"
        );
        if let Some(value) = lengths.first() {
            let digits = trim(value);
            assert!(
                (1..=19).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit),
                "Ok verdict with content-length {value:?}"
            );
        }
        if let Some(value) = codings.first() {
            assert!(
                trim(value).eq_ignore_ascii_case(b"chunked"),
                "Ok verdict with transfer-encoding {value:?}"
            );
            assert_eq!(
                version,
                Version::HTTP_11,
                "Ok verdict with chunked on HTTP/1.0"
            );
        }
    } else {
        // httparse parsed a complete head, so the inspector has seen all of it.
        assert!(
            verdict.is_some(),
            "httparse parsed a complete first head the inspector gave no verdict on"
        );
    }

    // The request as hyper would hand it to the service.
    let mut builder = Request::builder().method(method).uri(path).version(version);
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return;
        };
        builder = builder.header(name, value);
    }
    let Ok(mut req) = builder.body(Empty::<Bytes>::new()) else {
        return;
    };
    if let Some(v @ RawHeadVerdict::Bad { .. }) = verdict {
        req.extensions_mut().insert(v.clone());
    }
    let snapshot = (
        req.version(),
        req.headers().clone(),
        req.uri().clone(),
        req.method().clone(),
    );
    let mut guard = FramingGuard::new(tower_service_fn());
    let Some(Ok(res)) = poll_now(guard.call(req), 4) else {
        panic!("framing guard did not answer at once");
    };
    let rejected = res.headers().get(PORTCULLIS_ERROR).cloned();
    match verdict {
        Some(RawHeadVerdict::Bad { cause, .. }) => {
            assert_eq!(res.status(), cause.status(), "bad verdict not rejected");
            assert_eq!(
                rejected.as_ref().map(HeaderValue::as_bytes),
                Some(cause.as_str().as_bytes())
            );
        }
        _ if rejected.is_some() => {
            assert_eq!(res.status(), 400);
            assert_eq!(
                res.headers().get(CONNECTION).map(|v| v.as_bytes()),
                Some(&b"close"[..])
            );
        }
        _ => {
            // Passed: the guard's documented rules hold.
            let (version, headers, uri, method) = snapshot;
            if let Some(scheme) = uri.scheme_str() {
                assert!(
                    scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"),
                    "scheme {scheme} passed"
                );
            } else if uri.authority().is_some() {
                assert_eq!(
                    method,
                    http::Method::CONNECT,
                    "authority-form target passed"
                );
            }
            let hosts = headers.get_all(HOST).iter().count();
            assert!(hosts <= 1);
            assert!(hosts == 1 || version != Version::HTTP_11);
            let lengths: Vec<_> = headers.get_all(CONTENT_LENGTH).iter().collect();
            let codings: Vec<_> = headers.get_all(TRANSFER_ENCODING).iter().collect();
            assert!(lengths.len() <= 1 && codings.len() <= 1);
            assert!(lengths.is_empty() || codings.is_empty());
            if let Some(v) = codings.first() {
                assert!(v.as_bytes().eq_ignore_ascii_case(b"chunked"));
                assert_eq!(version, Version::HTTP_11);
            }
            if let Some(v) = lengths.first() {
                let b = v.as_bytes();
                assert!((1..=19).contains(&b.len()) && b.iter().all(u8::is_ascii_digit));
            }
        }
    }
}

/// Optional whitespace (SP, HTAB) trimmed on both sides, as hyper reads a value.
fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The inner service: answers 200 at once.
fn tower_service_fn() -> Ok200 {
    Ok200
}

#[derive(Clone, Copy)]
struct Ok200;

impl Service<Request<Empty<Bytes>>> for Ok200 {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<Empty<Bytes>>) -> Self::Future {
        std::future::ready(Ok(Response::new(Empty::new())))
    }
}
