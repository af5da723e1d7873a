//! `router`: route matching and path editing of `portcullis-router` on a fixed
//! table (exact, prefix, template and catch-all paths; exact, wildcard and IPv6
//! hosts; methods; a header predicate; `strip_prefix`; template and prefix
//! rewrites) with a fuzzed method, host and raw request target.
//!
//! Input: byte 0 = flags (bits 0-3 the method, 9 and up: the custom method on
//! the third line; bit 4 the host goes into an absolute-form URI, else into
//! `Host`; bit 5 adds `x-admin: 1`; bit 6 no host at all, HTTP/1.0), then
//! `\n`-separated lines: host, request target, custom method. Inputs that `http`
//! cannot turn into a request are skipped.
//!
//! Checks:
//! - nothing panics, and the same request gets the same answer twice;
//! - a host outside the documented grammar gets a 400, and a 400 without a
//!   matched route and without dot segments has such a host;
//! - a request with dot segments (`.`/`..`, dots possibly `%2e`) that is not
//!   refused gets the same status and route as its path after RFC 3986 dot
//!   removal (an independent implementation here);
//! - an unedited route forwards the URI unchanged; an edited one keeps the
//!   query, never starts the path with `//` (as written or once dots are
//!   removed), strips exactly its prefix, and,
//!   when the raw path has a `..`, stays under its target's fixed prefix once
//!   dots are removed.
#![no_main]

use std::convert::Infallible;
use std::net::Ipv6Addr;
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Empty;
use libfuzzer_sys::fuzz_target;
use portcullis_core::MatchedRoute;
use portcullis_fuzz::{Input, poll_now};
use portcullis_router::{HeaderPredicate, PathParams, RouteSpec, Router};
use tower_service::Service;

/// The fixed prefix each editing route's output must stay under, by route name.
const EDITS: [(&str, Edit); 6] = [
    ("v1", Edit::Strip("/v1")),
    ("s", Edit::Strip("/s")),
    ("droplet", Edit::Fixed("/internal/droplets/")),
    ("files", Edit::Fixed("/static/")),
    ("old", Edit::Fixed("/new/")),
    ("legacy", Edit::Fixed("/modern")),
];

#[derive(Clone, Copy)]
enum Edit {
    Strip(&'static str),
    Fixed(&'static str),
}

fn router() -> &'static Router<Echo> {
    static R: OnceLock<Router<Echo>> = OnceLock::new();
    R.get_or_init(|| {
        let specs = || -> Result<Vec<RouteSpec>, portcullis_router::ConfigError> {
            Ok(vec![
                RouteSpec::new("health", "/healthz")?
                    .host("api.example.com")?
                    .methods(["GET"])?,
                RouteSpec::new("v1", "/v1/")?
                    .service("api")
                    .strip_prefix("/v1")?,
                RouteSpec::new("droplet", "/v1/droplets/{id}")?
                    .methods(["GET", "DELETE"])?
                    .rewrite("/internal/droplets/{id}")?,
                RouteSpec::new("files", "/files/{*rest}")?.rewrite("/static/{rest}")?,
                RouteSpec::new("public", "/public/")?,
                RouteSpec::new("admin", "/admin/")?.header("x-admin", HeaderPredicate::Present)?,
                RouteSpec::new("wild", "/")?.host("*.example.com")?,
                RouteSpec::new("ip6", "/ip6")?.host("[::1]")?,
                RouteSpec::new("old", "/old/")?.rewrite("/new/")?,
                RouteSpec::new("s", "/s/")?.strip_prefix("/s")?,
                RouteSpec::new("legacy", "/legacy")?.rewrite("/modern")?,
                RouteSpec::new("submit", "/submit")?.methods(["POST", "PUT"])?,
                RouteSpec::new("user-keys", "/u/{id}/keys")?,
                RouteSpec::new("me", "/u/me/{what}")?.methods(["GET"])?,
            ])
        };
        let specs = specs().unwrap_or_else(|e| panic!("route spec: {e}"));
        specs
            .into_iter()
            .fold(Router::builder(), |b, spec| b.route(spec, Echo))
            .build()
            .unwrap_or_else(|e| panic!("route table: {e:?}"))
    })
}

const METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::DELETE,
    Method::HEAD,
    Method::PUT,
    Method::OPTIONS,
    Method::PATCH,
    Method::CONNECT,
    Method::TRACE,
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let host = input.field(b'\n');
    let target = input.field(b'\n');
    let custom = input.rest();
    let method = match METHODS.get(usize::from(flags & 15)) {
        Some(m) => m.clone(),
        None => match Method::from_bytes(custom) {
            Ok(m) => m,
            Err(_) => return,
        },
    };
    let absolute = flags & 16 != 0;
    let admin = flags & 32 != 0;
    let no_host = flags & 64 != 0;

    let uri = if absolute && !no_host {
        let mut raw = b"http://".to_vec();
        raw.extend_from_slice(host);
        raw.extend_from_slice(target);
        Uri::try_from(raw)
    } else if target.is_empty() {
        Ok(Uri::from_static("/"))
    } else {
        Uri::try_from(target)
    };
    let Ok(uri) = uri else {
        return;
    };
    let host_header = if absolute || no_host {
        None
    } else {
        match HeaderValue::from_bytes(host) {
            Ok(v) => Some(v),
            Err(_) => return,
        }
    };
    let build = |uri: Uri| {
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = if no_host {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        if let Some(h) = &host_header {
            req.headers_mut().insert(HOST, h.clone());
        }
        if admin {
            req.headers_mut()
                .insert("x-admin", HeaderValue::from_static("1"));
        }
        req
    };

    let first = send(build(uri.clone()));
    let second = send(build(uri.clone()));
    assert_eq!(first, second, "the same request got two answers");

    // The host grammar.
    let raw_host: Option<&[u8]> = match uri.authority() {
        Some(a) => a.as_str().rsplit('@').next().map(str::as_bytes),
        None => host_header.as_ref().map(HeaderValue::as_bytes),
    };
    let host_ok = raw_host.is_none_or(valid_host);
    let path = uri.path();
    let dots = dot_segments(path);
    if !host_ok {
        assert_eq!(
            first.status,
            StatusCode::BAD_REQUEST,
            "malformed host {raw_host:?} accepted"
        );
        return;
    }
    if first.status == StatusCode::BAD_REQUEST && first.route.is_none() {
        assert!(
            dots.is_some(),
            "400 without a route, dot segments or a bad host"
        );
    }

    // Dot segments: the normalised path must select the same outcome.
    if let Some(dotdot) = dots {
        if first.status != StatusCode::BAD_REQUEST {
            let normal = remove_dot_segments(path);
            assert!(
                dot_segments(&normal).is_none(),
                "normalised path {normal:?} has dots"
            );
            if let Some(uri2) = with_path(&uri, &normal) {
                let other = send(build(uri2));
                // The normal form may match the same route and then have its
                // own edit refused (`/s//x` stripped to `//x`): that 400 is
                // about the normal form's edit, not about which route matches.
                let same_route_edit_refused = other.status == StatusCode::BAD_REQUEST
                    && other.route.is_some()
                    && other.route == first.route;
                if !same_route_edit_refused {
                    assert_eq!(
                        (first.status, &first.route),
                        (other.status, &other.route),
                        "{path:?} and its normal form {normal:?} route differently"
                    );
                }
            }
        }
        if let (Some(route), Some(seen)) = (&first.route, &first.seen) {
            if dotdot && first.status == StatusCode::OK {
                check_climb(route, seen.uri.path());
            }
        }
    }

    // Path edits.
    if let (Some(route), Some(seen)) = (&first.route, &first.seen) {
        let edit = EDITS
            .iter()
            .find(|(name, _)| *name == route.as_str())
            .map(|(_, e)| *e);
        match edit {
            None => assert_eq!(seen.uri, uri, "unedited route {route} changed the uri"),
            Some(edit) => {
                assert_eq!(seen.uri.query(), uri.query(), "query changed");
                assert_eq!(seen.uri.authority(), uri.authority(), "authority changed");
                let out = seen.uri.path();
                assert!(!out.starts_with("//"), "edited path {out:?} starts with //");
                // An upstream that removes dot segments must not read `//`
                // either (the fuzz finding in tests/fuzz_regressions.rs).
                let resolved = remove_dot_segments(out);
                assert!(
                    !resolved.starts_with("//"),
                    "edited path {out:?} resolves to {resolved:?}"
                );
                if let Edit::Strip(prefix) = edit {
                    let want = match path.strip_prefix(prefix) {
                        Some("") => "/",
                        Some(rest) if rest.starts_with('/') => rest,
                        _ => path,
                    };
                    assert_eq!(out, want, "strip_prefix {prefix} on {path:?}");
                }
            }
        }
    }
});

/// `..` in the raw path: the edited path, without dots, stays in its target.
fn check_climb(route: &str, out: &str) {
    let Some((_, edit)) = EDITS.iter().find(|(name, _)| *name == route) else {
        return;
    };
    let fixed = match edit {
        Edit::Strip(_) => "/",
        Edit::Fixed(f) => f,
    };
    let normal = remove_dot_segments(out);
    assert!(
        normal.starts_with(fixed) || fixed.strip_suffix('/') == Some(&*normal),
        "route {route}: {out:?} climbs out of {fixed:?} ({normal:?})"
    );
    assert!(
        !normal.starts_with("//"),
        "route {route}: {out:?} resolves to {normal:?}"
    );
}

#[derive(Debug, PartialEq)]
struct Outcome {
    status: StatusCode,
    route: Option<String>,
    seen: Option<Seen>,
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    uri: Uri,
    params: Vec<(String, String)>,
}

fn send(req: Request<Empty<Bytes>>) -> Outcome {
    let mut svc = router().clone();
    let Some(Ok(res)) = poll_now(svc.call(req), 4) else {
        panic!("router did not answer at once");
    };
    Outcome {
        status: res.status(),
        route: res
            .extensions()
            .get::<MatchedRoute>()
            .map(|r| r.name.to_string()),
        seen: res.extensions().get::<Seen>().cloned(),
    }
}

fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let mut pq = path.to_owned();
    if let Some(q) = uri.query() {
        pq.push('?');
        pq.push_str(q);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// The documented host grammar: a reg-name (letters, digits, `-`, `.`, `_`; 1
/// to 255 bytes without a trailing dot) or a bracketed IPv6 literal, then
/// optionally `:` and one to five digits.
fn valid_host(raw: &[u8]) -> bool {
    let (name, port) = if raw.first() == Some(&b'[') {
        let Some(end) = raw.iter().position(|&b| b == b']') else {
            return false;
        };
        let (lit, port) = raw.split_at(end + 1);
        let inner = lit.get(1..end).unwrap_or_default();
        let ok = inner
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            && std::str::from_utf8(inner)
                .ok()
                .and_then(|s| s.parse::<Ipv6Addr>().ok())
                .is_some();
        if !ok {
            return false;
        }
        (None, port)
    } else {
        let end = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
        let (name, port) = raw.split_at(end);
        (Some(name), port)
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', d)) => (1..=5).contains(&d.len()) && d.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    let name_ok = name.is_none_or(|n| {
        let n = n.strip_suffix(b".").unwrap_or(n);
        (1..=255).contains(&n.len())
            && n.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    });
    port_ok && name_ok
}

/// Whether a segment is `.` (1) or `..` (2), any dot possibly `%2e`/`%2E`.
fn dots_in(segment: &str) -> Option<u8> {
    let decoded = segment.replace("%2e", ".").replace("%2E", ".");
    match decoded.as_str() {
        "." => Some(1),
        ".." => Some(2),
        _ => None,
    }
}

/// `Some(has a ..)` when `path` has a dot segment.
fn dot_segments(path: &str) -> Option<bool> {
    let kinds: Vec<u8> = path.split('/').filter_map(dots_in).collect();
    (!kinds.is_empty()).then(|| kinds.contains(&2))
}

/// RFC 3986 §5.2.4 on an absolute path, over a list of segments.
fn remove_dot_segments(path: &str) -> String {
    let Some(rest) = path.strip_prefix('/') else {
        return path.to_owned();
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match dots_in(seg) {
            Some(1) => {}
            Some(_) => {
                out.pop();
            }
            None => {
                out.push(seg);
                continue;
            }
        }
        if last {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

/// Every route's service: answers 200 with what it received.
#[derive(Clone, Copy)]
struct Echo;

impl Service<Request<Empty<Bytes>>> for Echo {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Empty<Bytes>>) -> Self::Future {
        let params = req
            .extensions()
            .get::<PathParams>()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let seen = Seen {
            uri: req.uri().clone(),
            params,
        };
        let mut res = Response::new(Empty::new());
        res.extensions_mut().insert(seen);
        std::future::ready(Ok(res))
    }
}
