//! `hop`: the hop-by-hop stripper of `portcullis-hop` (`HopByHop` service) on a
//! request and its response with fuzzed headers.
//!
//! Input: byte 0 picks the request version (bits 0-1: HTTP/1.1, 1.0, 2, 1.1)
//! and the response status (bit 2: 101, else 200); then `name:value` lines
//! (`\n`-separated) for the request, an empty line, and lines for the
//! response. An input with a line that is not a valid header is skipped.
//!
//! Checks, on both the request the inner service receives and the response
//! the caller receives:
//! - no `Connection`, `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
//!   `Proxy-Authorization`, `Transfer-Encoding`, `Upgrade` or `TE` survives,
//!   and no header any `Connection` line names, except: a real upgrade request
//!   (HTTP/1.1, `Upgrade`, `Connection: upgrade`, no `h2c` in `Upgrade`)
//!   keeps `Upgrade` as sent and gets exactly `Connection: upgrade` (its
//!   response too, when it is a 101), and a request whose `TE` lists
//!   `trailers` keeps exactly `TE: trailers`;
//! - every other header is kept, values and order unchanged;
//! - stripping twice changes nothing more.
#![no_main]

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{Input, poll_now};
use portcullis_hop::{HopByHop, is_upgrade_request};
use tower_service::Service;

const ALWAYS_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let version = match flags & 3 {
        1 => Version::HTTP_10,
        2 => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let status = if flags & 4 != 0 {
        StatusCode::SWITCHING_PROTOCOLS
    } else {
        StatusCode::OK
    };
    let Some(req_headers) = header_lines(&mut input) else {
        return;
    };
    let Some(res_headers) = header_lines(&mut input) else {
        return;
    };

    let mut req = Request::new(());
    *req.version_mut() = version;
    *req.headers_mut() = req_headers.clone();
    // The documented rule, computed here rather than taken from the crate.
    let upgrade = version == Version::HTTP_11
        && req_headers.contains_key(header::UPGRADE)
        && elements(&req_headers, "connection")
            .iter()
            .any(|e| e == b"upgrade")
        // h2c is never tunnelled ("h2c smuggling"): forwarded as a plain request.
        && !elements(&req_headers, "upgrade")
            .iter()
            .any(|e| e.split(|&b| b == b'/').next() == Some(&b"h2c"[..]));
    assert_eq!(
        upgrade,
        is_upgrade_request(&req),
        "is_upgrade_request disagrees"
    );
    let te_trailers = lists(&req_headers, "te", "trailers");

    let seen = Rc::new(RefCell::new(None));
    let inner = Echo {
        seen: Rc::clone(&seen),
        status,
        headers: res_headers.clone(),
    };
    let mut svc = HopByHop::new(inner);
    let Some(Ok(res)) = poll_now(svc.call(req), 4) else {
        panic!("hop-by-hop service did not answer at once");
    };
    let Some(forwarded) = seen.borrow_mut().take() else {
        panic!("the inner service was not called");
    };

    check(&req_headers, &forwarded, upgrade, te_trailers, "request");
    let keep_upgrade = upgrade && status == StatusCode::SWITCHING_PROTOCOLS;
    check(&res_headers, res.headers(), keep_upgrade, false, "response");

    // Idempotent: the forwarded request, stripped again, is unchanged.
    let mut again = Request::new(());
    *again.version_mut() = version;
    *again.headers_mut() = forwarded.clone();
    let seen2 = Rc::new(RefCell::new(None));
    let mut svc = HopByHop::new(Echo {
        seen: Rc::clone(&seen2),
        status,
        headers: HeaderMap::new(),
    });
    let _ = poll_now(svc.call(again), 4);
    let twice = seen2.borrow_mut().take();
    assert_eq!(
        twice.as_ref(),
        Some(&forwarded),
        "stripping twice changed the request"
    );
});

/// `name:value` lines up to an empty line or the end; `None` if one is invalid.
fn header_lines(input: &mut Input<'_>) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    while !input.is_empty() {
        let line = input.field(b'\n');
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        let name = HeaderName::from_bytes(name).ok()?;
        let value = HeaderValue::from_bytes(value.get(1..).unwrap_or_default()).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

/// The trimmed, non-empty elements of every `name` line, lowercased.
fn elements(headers: &HeaderMap, name: &str) -> Vec<Vec<u8>> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|e| trim(e).to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect()
}

/// Whether a list header has `element` (parameters after `;` ignored).
fn lists(headers: &HeaderMap, name: &str, element: &str) -> bool {
    elements(headers, name).iter().any(|e| {
        let token = e.split(|&b| b == b';').next().unwrap_or_default();
        trim(token) == element.as_bytes()
    })
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Checks `after` against `before` as described in the module docs.
fn check(before: &HeaderMap, after: &HeaderMap, keep_upgrade: bool, te_trailers: bool, what: &str) {
    let named = elements(before, "connection");
    let is_hop = |name: &HeaderName| {
        ALWAYS_HOP.contains(&name.as_str()) || named.iter().any(|n| n == name.as_str().as_bytes())
    };
    // The headers kept on purpose.
    let kept = |name: &HeaderName| {
        (keep_upgrade && (name == header::UPGRADE || name == header::CONNECTION))
            || (te_trailers && name == header::TE)
    };

    for name in after.keys() {
        assert!(
            !is_hop(name) || kept(name),
            "{what}: hop-by-hop header {name} survived"
        );
    }
    if keep_upgrade {
        let connection: Vec<_> = after.get_all(header::CONNECTION).iter().collect();
        assert_eq!(
            connection,
            ["upgrade"],
            "{what}: upgrade without Connection: upgrade"
        );
        let up_before: Vec<_> = before.get_all(header::UPGRADE).iter().collect();
        let up_after: Vec<_> = after.get_all(header::UPGRADE).iter().collect();
        assert_eq!(up_before, up_after, "{what}: Upgrade changed");
    }
    if te_trailers {
        let te: Vec<_> = after.get_all(header::TE).iter().collect();
        assert_eq!(te, ["trailers"], "{what}: TE is not exactly trailers");
    }

    // Everything else is kept, in order.
    let others = |map: &HeaderMap| -> Vec<(HeaderName, HeaderValue)> {
        map.iter()
            .filter(|(name, _)| !is_hop(name))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    };
    let kept_after: Vec<_> = after
        .iter()
        .filter(|(name, _)| !kept(name))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    assert_eq!(
        others(before),
        kept_after,
        "{what}: end-to-end headers changed"
    );
}

/// The inner service: records the request headers and answers with `headers`.
struct Echo {
    seen: Rc<RefCell<Option<HeaderMap>>>,
    status: StatusCode,
    headers: HeaderMap,
}

impl Service<Request<()>> for Echo {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        *self.seen.borrow_mut() = Some(req.headers().clone());
        let mut res = Response::new(());
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers.clone();
        std::future::ready(Ok(res))
    }
}
