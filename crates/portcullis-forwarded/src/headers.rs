//! The forwarding-header rules applied by [`Forwarded`](crate::Forwarded).

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};
use http::Request;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use portcullis_core::{LocalAddr, PeerAddr, Tls};

use crate::TrustedProxies;

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// What the gateway itself observed about the hop the request arrived on.
struct Hop {
    /// The TCP peer, canonical (IPv4-mapped IPv6 as IPv4).
    peer: Option<IpAddr>,
    https: bool,
    host: Option<HeaderValue>,
    port: u16,
}

impl Hop {
    fn observe<B>(req: &Request<B>) -> Self {
        let peer = req
            .extensions()
            .get::<PeerAddr>()
            .map(|peer| peer.0.ip().to_canonical());
        let https = req.extensions().get::<Tls>().is_some();
        let host = request_host(req);
        let port = req
            .extensions()
            .get::<LocalAddr>()
            .map(|local| local.0.port())
            .or_else(|| host.as_ref().and_then(port_of))
            .unwrap_or(if https { 443 } else { 80 });
        Self {
            peer,
            https,
            host,
            port,
        }
    }

    fn proto(&self) -> HeaderValue {
        HeaderValue::from_static(if self.https { "https" } else { "http" })
    }
}

/// Sets `X-Forwarded-*` (and `Forwarded` when `rfc7239`) on `req`, as documented on
/// the crate.
pub(crate) fn set_forwarding_headers<B>(
    req: &mut Request<B>,
    trusted: &TrustedProxies,
    rfc7239: bool,
) {
    let hop = Hop::observe(req);
    let headers = req.headers_mut();
    match hop.peer {
        Some(peer) if trusted.contains(peer) => {
            let ip = ip_value(peer);
            set(
                headers,
                X_FORWARDED_FOR,
                appended(headers, &X_FORWARDED_FOR, &ip),
            );
            set_if_absent(headers, X_FORWARDED_PROTO, hop.proto());
            if let Some(host) = &hop.host {
                set_if_absent(headers, X_FORWARDED_HOST, host.clone());
            }
            set_if_absent(headers, X_FORWARDED_PORT, HeaderValue::from(hop.port));
            if rfc7239 {
                let element = forwarded_element(peer, &hop);
                let value = appended(headers, &header::FORWARDED, &element);
                set(headers, header::FORWARDED, value);
            }
        }
        peer => {
            // Nothing an untrusted client says about earlier hops can be believed.
            let mut remove = Vec::new();
            match peer {
                Some(peer) => set(headers, X_FORWARDED_FOR, ip_value(peer)),
                None if headers.contains_key(&X_FORWARDED_FOR) => remove.push(X_FORWARDED_FOR),
                None => {}
            }
            set(headers, X_FORWARDED_PROTO, hop.proto());
            match &hop.host {
                Some(host) => set(headers, X_FORWARDED_HOST, host.clone()),
                None if headers.contains_key(&X_FORWARDED_HOST) => remove.push(X_FORWARDED_HOST),
                None => {}
            }
            set(headers, X_FORWARDED_PORT, HeaderValue::from(hop.port));
            match peer {
                Some(peer) if rfc7239 => {
                    let element = forwarded_element(peer, &hop);
                    set(headers, header::FORWARDED, element);
                }
                _ if headers.contains_key(&header::FORWARDED) => remove.push(header::FORWARDED),
                _ => {}
            }
            // Usually empty (no allocation): only names present are listed.
            if !remove.is_empty() {
                remove_in_order(headers, &remove);
            }
        }
    }
}

/// Replaces every `name` header with `value`, where the first one was, or appends it.
fn set(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    if headers.try_insert(name, value).is_err() {
        // Only a map already holding the maximum number of names gets here.
        tracing::debug!("header map full, forwarding header not set");
    }
}

fn set_if_absent(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    if !headers.contains_key(&name) {
        set(headers, name, value);
    }
}

/// The `Host` of the request: the URI authority (absolute-form, HTTP/2 `:authority`,
/// which take precedence over `Host` per RFC 9112 §3.2.2 and RFC 9113 §8.3.1),
/// without any userinfo, else the `Host` header. `None` when both are absent or empty.
fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    let from_uri = req.uri().authority().and_then(|authority| {
        let host = authority.as_str().rsplit('@').next()?;
        HeaderValue::from_str(host).ok()
    });
    from_uri
        .or_else(|| req.headers().get(header::HOST).cloned())
        .filter(|host| !host.is_empty())
}

/// The explicit port of a `Host` value, if it has a valid one.
fn port_of(host: &HeaderValue) -> Option<u16> {
    host.to_str().ok()?.parse::<Authority>().ok()?.port_u16()
}

/// An IP address as `X-Forwarded-For` writes it: bare, IPv6 without brackets.
fn ip_value(ip: IpAddr) -> HeaderValue {
    use std::io::Write as _;
    // Formatted on the stack: the longest IPv6 text is 45 bytes.
    let mut buf = [0u8; 64];
    let len = {
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        match write!(cursor, "{ip}") {
            Ok(()) => usize::try_from(cursor.position()).unwrap_or(0),
            Err(_) => 0,
        }
    };
    // An IP address's text is ASCII digits, hex letters, `.` and `:`.
    buf.get(..len)
        .and_then(|text| HeaderValue::from_bytes(text).ok())
        .unwrap_or_else(|| HeaderValue::from_static("unknown"))
}

/// One RFC 7239 element for this hop: `for=...;proto=...;host=...`.
fn forwarded_element(peer: IpAddr, hop: &Hop) -> HeaderValue {
    let mut out = BytesMut::with_capacity(64);
    out.put_slice(b"for=");
    match peer {
        IpAddr::V4(v4) => out.put_slice(v4.to_string().as_bytes()),
        IpAddr::V6(v6) => {
            out.put_slice(b"\"[");
            out.put_slice(v6.to_string().as_bytes());
            out.put_slice(b"]\"");
        }
    }
    out.put_slice(b";proto=");
    out.put_slice(if hop.https { b"https" } else { b"http" });
    if let Some(host) = &hop.host {
        out.put_slice(b";host=");
        put_token_or_quoted(&mut out, host.as_bytes());
    }
    // All bytes come from header values or the ASCII written above.
    HeaderValue::from_maybe_shared(out.freeze())
        .unwrap_or_else(|_| HeaderValue::from_static("for=unknown"))
}

/// Writes `value` as a token when it is one, else as a quoted-string (RFC 9110 §5.6.4).
fn put_token_or_quoted(out: &mut BytesMut, value: &[u8]) {
    if !value.is_empty() && value.iter().copied().all(is_tchar) {
        out.put_slice(value);
        return;
    }
    out.put_u8(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.put_u8(b'\\');
        }
        out.put_u8(b);
    }
    out.put_u8(b'"');
}

/// `tchar` of RFC 9110 §5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Every `name` line of `headers` joined with `, `, then `new`. Empty lines are
/// skipped, so the result never starts with a comma.
pub(crate) fn appended(headers: &HeaderMap, name: &HeaderName, new: &HeaderValue) -> HeaderValue {
    let mut out = BytesMut::new();
    for line in headers.get_all(name) {
        let line = trim_ows(line.as_bytes());
        if !line.is_empty() {
            out.put_slice(line);
            out.put_slice(b", ");
        }
    }
    if out.is_empty() {
        return new.clone();
    }
    out.put_slice(new.as_bytes());
    // Header-value bytes joined by ", " are header-value bytes.
    HeaderValue::from_maybe_shared(out.freeze()).unwrap_or_else(|_| new.clone())
}

/// Trims optional whitespace (spaces and horizontal tabs).
pub(crate) fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Removes every header named in `names`, keeping the order of the others.
///
/// `HeaderMap::remove` moves the last header into the gap it leaves; rebuilding keeps
/// what is forwarded in the order the client sent it. Does nothing when none is present.
fn remove_in_order(headers: &mut HeaderMap, names: &[HeaderName]) {
    if !names.iter().any(|name| headers.contains_key(name)) {
        return;
    }
    let old = std::mem::take(headers);
    headers.reserve(old.keys_len());
    let mut current: Option<HeaderName> = None;
    for (name, value) in old {
        if let Some(name) = name {
            current = Some(name);
        }
        match &current {
            Some(name) if !names.contains(name) => {
                headers.append(name.clone(), value);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_joins_lines_and_skips_empty_ones() {
        let mut headers = HeaderMap::new();
        let new = HeaderValue::from_static("10.0.0.1");
        assert_eq!(appended(&headers, &X_FORWARDED_FOR, &new), "10.0.0.1");
        headers.append(
            &X_FORWARDED_FOR,
            HeaderValue::from_static(" 1.1.1.1, 2.2.2.2 "),
        );
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static(""));
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("3.3.3.3"));
        assert_eq!(
            appended(&headers, &X_FORWARDED_FOR, &new),
            "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1"
        );
    }

    #[test]
    fn host_ports() {
        let port = |s: &'static str| port_of(&HeaderValue::from_static(s));
        assert_eq!(port("example.com:8443"), Some(8443));
        assert_eq!(port("[2001:db8::1]:8080"), Some(8080));
        assert_eq!(port("[2001:db8::1]"), None);
        assert_eq!(port("example.com"), None);
        assert_eq!(port("example.com:99999"), None);
        assert_eq!(port("example.com:x"), None);
    }

    #[test]
    fn token_or_quoted() {
        let quoted = |s: &[u8]| {
            let mut out = BytesMut::new();
            put_token_or_quoted(&mut out, s);
            out
        };
        assert_eq!(&quoted(b"example.com")[..], b"example.com");
        assert_eq!(&quoted(b"example.com:8080")[..], b"\"example.com:8080\"");
        assert_eq!(&quoted(b"a\"b\\c")[..], b"\"a\\\"b\\\\c\"");
        assert_eq!(&quoted(b"")[..], b"\"\"");
    }

    #[test]
    fn remove_in_order_keeps_the_rest_in_place() {
        let mut headers = HeaderMap::new();
        for (name, value) in [("a", "1"), ("forwarded", "x"), ("b", "2"), ("c", "3")] {
            headers.append(name, HeaderValue::from_static(value));
        }
        remove_in_order(&mut headers, &[header::FORWARDED]);
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }
}
