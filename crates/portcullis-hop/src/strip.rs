//! The header rules: which headers are hop-by-hop, and how they are removed.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};

/// `Keep-Alive` (RFC 9112 appendix C.2.2), not among `http`'s constants.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection`, a non-standard header that old clients still send.
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that are always hop-by-hop, whatever `Connection` says.
///
/// `Trailer` is not among them although DESIGN.md's R2 lists it: RFC 9110 §6.6.2
/// makes it end-to-end metadata, and hyper writes trailer fields only when the
/// message declares them in `Trailer`, so removing it would drop every trailer
/// (R1: "Trailers pass").
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Returns `true` when `req` asks for a real HTTP/1.1 protocol upgrade.
///
/// That is: the request is HTTP/1.1, has an `Upgrade` header, and one of its
/// `Connection` headers lists the `upgrade` option (in any case). This is the rule
/// [`HopByHop`](crate::HopByHop) uses to decide whether `Upgrade` may pass; a
/// reverse proxy can use it to decide whether to tunnel the connection.
///
/// ```
/// use http::Request;
/// use portcullis_hop::is_upgrade_request;
///
/// let req = Request::get("/chat")
///     .header("connection", "keep-alive, Upgrade")
///     .header("upgrade", "websocket")
///     .body(())?;
/// assert!(is_upgrade_request(&req));
///
/// let req = Request::get("/chat").header("upgrade", "websocket").body(())?;
/// assert!(!is_upgrade_request(&req));
/// # Ok::<(), http::Error>(())
/// ```
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_options(req.headers()).any(|option| option == header::UPGRADE)
        && !upgrades_to_h2c(req.headers())
}

/// Whether `Upgrade` names `h2c`: HTTP/2 over cleartext is the gateway's own
/// business (prior knowledge on its listener); tunnelled to an upstream, it would
/// carry requests past routing, auth and limits ("h2c smuggling"). Such a request
/// is forwarded as a plain one, its `Upgrade` removed.
fn upgrades_to_h2c(headers: &HeaderMap) -> bool {
    list_elements(headers, &header::UPGRADE).any(|token| {
        token
            .split(|&b| b == b'/')
            .next()
            .is_some_and(|protocol| protocol.eq_ignore_ascii_case(b"h2c"))
    })
}

/// Strips the hop-by-hop headers of a request before it is forwarded.
///
/// Returns whether the request is a real upgrade request, which the response side
/// needs to know.
pub(crate) fn strip_request<B>(req: &mut Request<B>) -> bool {
    let upgrade = is_upgrade_request(req);
    let te_trailers = te_lists_trailers(req.headers());
    strip(req.headers_mut(), upgrade, te_trailers);
    upgrade
}

/// Strips the hop-by-hop headers of a response before it is returned.
///
/// `upgrade_request` is what [`strip_request`] returned for the matching request.
pub(crate) fn strip_response<B>(res: &mut Response<B>, upgrade_request: bool) {
    let keep_upgrade = upgrade_request && res.status() == StatusCode::SWITCHING_PROTOCOLS;
    strip(res.headers_mut(), keep_upgrade, false);
}

/// The header names listed by every `Connection` header of `headers`, lowercased.
///
/// Elements are split on `,` and trimmed of optional whitespace; empty elements and
/// elements that are not valid header names are skipped.
fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    list_elements(headers, &header::CONNECTION)
        .filter_map(|element| HeaderName::from_bytes(element).ok())
}

/// The headers `Connection` names that are not removed anyway: the usual options
/// (`keep-alive`, `close`, `upgrade`) are skipped, which saves an allocation per
/// message on the hot path (`keep-alive` is not a standard `HeaderName`).
fn named_headers(headers: &HeaderMap) -> Vec<HeaderName> {
    list_elements(headers, &header::CONNECTION)
        .filter(|element| {
            !(element.eq_ignore_ascii_case(b"keep-alive")
                || element.eq_ignore_ascii_case(b"close")
                || element.eq_ignore_ascii_case(b"upgrade"))
        })
        .filter_map(|element| HeaderName::from_bytes(element).ok())
        .collect()
}

/// Whether a `TE` header lists the `trailers` option.
fn te_lists_trailers(headers: &HeaderMap) -> bool {
    list_elements(headers, &header::TE).any(|element| {
        // `trailers` takes no parameters, but be lenient about `trailers;q=1`.
        let coding = element.split(|&b| b == b';').next().unwrap_or_default();
        trim_ows(coding).eq_ignore_ascii_case(b"trailers")
    })
}

/// The non-empty, trimmed elements of a comma-separated list header, over all its lines.
fn list_elements<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

/// Trims optional whitespace (spaces and horizontal tabs, RFC 9110 section 5.6.3).
fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Removes the hop-by-hop headers of `headers`, keeping the order of the others.
///
/// - `keep_upgrade`: keep `Upgrade` as is and send `Connection: upgrade` (only that
///   option) in place of the original `Connection` headers.
/// - `te_trailers`: keep exactly one `TE: trailers` in place of the original `TE`.
fn strip(headers: &mut HeaderMap, keep_upgrade: bool, te_trailers: bool) {
    let named = named_headers(headers);
    let is_hop = |name: &HeaderName| HOP_BY_HOP.contains(name) || named.contains(name);
    if !keep_upgrade && !headers.keys().any(is_hop) {
        return;
    }

    // Fast path: when every hop-by-hop header comes after all the others (servers
    // usually send `Connection` last), removing them in place moves no other
    // header, so the order is kept without rebuilding the map.
    if !keep_upgrade && !te_trailers {
        let first_hop = headers.keys().position(is_hop);
        if let Some(first) = first_hop {
            if headers.keys().skip(first).all(is_hop) {
                // Remove from the end: each removal takes the last entry, so
                // nothing moves. (Maps are small; `last` walks the keys.)
                while let Some(name) = headers.keys().last().filter(|n| is_hop(n)).cloned() {
                    tracing::debug!(header = %name, "stripped hop-by-hop header");
                    headers.remove(&name);
                }
                return;
            }
        }
    }

    // `HeaderMap::remove` swaps the last header into the hole it leaves, which would
    // reorder the headers we forward. Rebuild the map instead, in its original order.
    let old = std::mem::take(headers);
    headers.reserve(old.keys_len());
    let mut current: Option<HeaderName> = None;
    let mut connection_sent = false;
    let mut te_sent = false;
    for (name, value) in old {
        if let Some(name) = name {
            current = Some(name);
        }
        // Only the first value of each name carries the name; `current` is set by it.
        let Some(name) = current.as_ref() else {
            continue;
        };
        if keep_upgrade && name == header::UPGRADE {
            headers.append(name.clone(), value);
        } else if keep_upgrade && name == header::CONNECTION {
            if !connection_sent {
                headers.append(header::CONNECTION, HeaderValue::from_static("upgrade"));
                connection_sent = true;
            }
        } else if te_trailers && name == header::TE {
            if !te_sent {
                headers.append(header::TE, HeaderValue::from_static("trailers"));
                te_sent = true;
            }
        } else if is_hop(name) {
            tracing::debug!(header = %name, "stripped hop-by-hop header");
        } else {
            headers.append(name.clone(), value);
        }
    }
    if keep_upgrade && !connection_sent {
        headers.append(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(headers: &HeaderMap) -> Vec<&str> {
        headers.keys().map(HeaderName::as_str).collect()
    }

    #[test]
    fn trim_ows_trims_spaces_and_tabs_only() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }

    #[test]
    fn connection_options_handle_case_whitespace_and_empty_elements() {
        let mut headers = HeaderMap::new();
        headers.append("connection", HeaderValue::from_static("close,,  X-Foo ,"));
        headers.append(
            "connection",
            HeaderValue::from_static("\tKeep-Alive, bad name"),
        );
        let options: Vec<HeaderName> = connection_options(&headers).collect();
        assert_eq!(options, ["close", "x-foo", "keep-alive"]);
    }

    #[test]
    fn strip_keeps_order_of_other_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("a", HeaderValue::from_static("1"));
        headers.insert("connection", HeaderValue::from_static("x-foo"));
        headers.insert("b", HeaderValue::from_static("2"));
        headers.insert("x-foo", HeaderValue::from_static("3"));
        headers.insert("c", HeaderValue::from_static("4"));
        headers.append("b", HeaderValue::from_static("5"));
        strip(&mut headers, false, false);
        assert_eq!(names(&headers), ["a", "b", "c"]);
        let b: Vec<_> = headers.get_all("b").iter().collect();
        assert_eq!(b, ["2", "5"]);
    }

    #[test]
    fn strip_without_hop_headers_changes_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert("z", HeaderValue::from_static("1"));
        headers.insert("a", HeaderValue::from_static("2"));
        let before = headers.clone();
        strip(&mut headers, false, false);
        assert_eq!(headers, before);
    }

    #[test]
    fn te_trailers_detection() {
        let mut headers = HeaderMap::new();
        headers.insert("te", HeaderValue::from_static("gzip;q=0.5, Trailers"));
        assert!(te_lists_trailers(&headers));
        headers.insert("te", HeaderValue::from_static("gzip, trailersx"));
        assert!(!te_lists_trailers(&headers));
    }

    #[test]
    fn upgrade_needs_http11_upgrade_header_and_connection_option() {
        let upgrade = |version, connection: Option<&str>, upgrade: Option<&str>| {
            let mut req = Request::builder().version(version);
            if let Some(c) = connection {
                req = req.header("connection", c);
            }
            if let Some(u) = upgrade {
                req = req.header("upgrade", u);
            }
            is_upgrade_request(&req.body(()).unwrap())
        };
        assert!(upgrade(
            Version::HTTP_11,
            Some("UPGRADE"),
            Some("websocket")
        ));
        assert!(upgrade(
            Version::HTTP_11,
            Some(" keep-alive ,upgrade"),
            Some("foo/2")
        ));
        // h2c is never tunnelled: forwarded as a plain request.
        for h2c in ["h2c", "H2C", "websocket, h2c", "h2c/1"] {
            assert!(
                !upgrade(Version::HTTP_11, Some("upgrade, http2-settings"), Some(h2c)),
                "{h2c}"
            );
        }
        assert!(!upgrade(
            Version::HTTP_10,
            Some("upgrade"),
            Some("websocket")
        ));
        assert!(!upgrade(
            Version::HTTP_2,
            Some("upgrade"),
            Some("websocket")
        ));
        assert!(!upgrade(
            Version::HTTP_11,
            Some("keep-alive"),
            Some("websocket")
        ));
        assert!(!upgrade(Version::HTTP_11, Some("upgrade"), None));
        assert!(!upgrade(Version::HTTP_11, None, Some("websocket")));
    }
}
