//! `forwarded`: `client_ip` and the `Forwarded` + `Via` layers of
//! `portcullis-forwarded` (stacked as in the gateway: `Forwarded<Via<_>>`) on
//! requests with fuzzed `X-Forwarded-*`, `Forwarded`, `Via` and `Host` headers
//! and a fuzzed peer.
//!
//! Input: byte 0 = flags (bits 0-2 the peer: none, untrusted IPv4, trusted IPv4,
//! IPv4-mapped trusted, trusted IPv6, untrusted IPv6, or taken from the input;
//! bit 3 RFC 7239 `Forwarded` on; bit 4 TLS; bit 5 a `LocalAddr`; bit 6 trust
//! nobody; bit 7 HTTP/2 rather than HTTP/1.1), then 16 bytes of address when
//! the peer comes from the input, then a line with the request target (empty:
//! `/`), then `name:value` lines. Invalid targets or header lines are skipped.
//!
//! Checks:
//! - `client_ip` gives the same answer before and after the layer (documented)
//!   and the layer's `ClientAddr` extension is that answer;
//! - `X-Forwarded-For`, `-Proto`, `-Host`, `-Port` and `Forwarded` are exactly
//!   what the crate docs' table says, for trusted and untrusted peers;
//! - the `Forwarded` element the gateway adds parses as RFC 7239 (tokens or
//!   quoted-strings) and carries the peer, the protocol and the host byte for
//!   byte;
//! - `Via` gets exactly one element, on the last line, in request and response;
//! - every other header is unchanged and no header moves.
#![no_main]

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::sync::OnceLock;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, Uri, Version};
use libfuzzer_sys::fuzz_target;
use portcullis_core::{ClientAddr, LocalAddr, PeerAddr, Tls};
use portcullis_forwarded::{Forwarded, ForwardedLayer, TrustedProxies, ViaLayer, client_ip};
use portcullis_fuzz::{Input, poll_now};
use tower_layer::Layer;
use tower_service::Service;

const FORWARDING: [&str; 6] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "via",
];

fn trusted_list() -> &'static TrustedProxies {
    static T: OnceLock<TrustedProxies> = OnceLock::new();
    T.get_or_init(|| {
        TrustedProxies::parse(["10.0.0.0/8", "2001:db8::/32", "::ffff:192.168.0.0/112"])
            .unwrap_or_else(|e| panic!("trusted proxies: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let peer: Option<IpAddr> = match flags & 7 {
        0 => None,
        1 => Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
        2 => Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        3 => Some(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped())),
        4 => Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
        5 => Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb9, 0, 0, 0, 0, 0, 5))),
        n => {
            let mut b = [0u8; 16];
            for x in &mut b {
                *x = input.byte();
            }
            if n == 6 {
                Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            } else {
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            }
        }
    };
    let rfc7239 = flags & 8 != 0;
    let tls = flags & 16 != 0;
    let local = flags & 32 != 0;
    let trusted = if flags & 64 != 0 {
        TrustedProxies::none()
    } else {
        trusted_list().clone()
    };
    let version = if flags & 128 != 0 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };

    let target = input.field(b'\n');
    let uri = if target.is_empty() {
        Uri::from_static("/")
    } else {
        match Uri::try_from(target) {
            Ok(uri) => uri,
            Err(_) => return,
        }
    };
    let mut headers = HeaderMap::new();
    while !input.is_empty() {
        let line = input.field(b'\n');
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        let (name, value) = line.split_at(colon);
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.get(1..).unwrap_or_default()),
        ) else {
            return;
        };
        headers.append(name, value);
    }

    let mut req = Request::new(());
    *req.uri_mut() = uri.clone();
    *req.version_mut() = version;
    *req.headers_mut() = headers.clone();
    if let Some(ip) = peer {
        req.extensions_mut()
            .insert(PeerAddr(SocketAddr::new(ip, 50000)));
    }
    if tls {
        req.extensions_mut().insert(Tls);
    }
    if local {
        req.extensions_mut()
            .insert(LocalAddr(SocketAddr::from(([127, 0, 0, 1], 8443))));
    }
    let ip_before = client_ip(&req, &trusted);

    let seen = Rc::new(RefCell::new(None));
    let inner = ViaLayer::default().layer(Echo {
        seen: Rc::clone(&seen),
    });
    let mut svc: Forwarded<_> = ForwardedLayer::new(trusted.clone())
        .rfc7239(rfc7239)
        .layer(inner);
    let Some(Ok(res)) = poll_now(svc.call(req), 4) else {
        panic!("forwarded service did not answer at once");
    };
    let Some(after) = seen.borrow_mut().take() else {
        panic!("the inner service was not called");
    };

    // client_ip: same before and after, and in the extensions.
    assert_eq!(
        after.extensions().get::<ClientAddr>().map(|c| c.0),
        ip_before,
        "ClientAddr differs from client_ip"
    );
    assert_eq!(
        client_ip(&after, &trusted),
        ip_before,
        "client_ip changed after the layer"
    );
    if let Some(ip) = ip_before {
        assert_eq!(ip, ip.to_canonical(), "client_ip returned a mapped address");
    }

    check_headers(
        &headers,
        after.headers(),
        &uri,
        peer,
        &trusted,
        Opts {
            rfc7239,
            tls,
            local,
        },
    );
    check_via(&headers, after.headers(), version);
    let res_via: Vec<_> = res.headers().get_all(header::VIA).iter().collect();
    assert_eq!(res_via, ["1.1 portcullis"], "response Via");
});

struct Opts {
    rfc7239: bool,
    tls: bool,
    local: bool,
}

fn all<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
    h.get_all(name).iter().map(HeaderValue::as_bytes).collect()
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

/// Every line of `name`, trimmed, blank ones dropped, joined with `, `, then `new`.
fn appended(before: &HeaderMap, name: &str, new: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in all(before, name) {
        let line = trim(line);
        if !line.is_empty() {
            out.extend_from_slice(line);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(new);
    out
}

fn check_headers(
    before: &HeaderMap,
    after: &HeaderMap,
    uri: &Uri,
    peer: Option<IpAddr>,
    trusted: &TrustedProxies,
    o: Opts,
) {
    let peer = peer.map(|ip| ip.to_canonical());
    let host: Option<Vec<u8>> = match uri.authority() {
        Some(a) => a
            .as_str()
            .rsplit('@')
            .next()
            .filter(|h| HeaderValue::from_str(h).is_ok())
            .map(|h| h.as_bytes().to_vec()),
        None => None,
    }
    .or_else(|| before.get(header::HOST).map(|h| h.as_bytes().to_vec()))
    .filter(|h| !h.is_empty());
    let proto: &[u8] = if o.tls { b"https" } else { b"http" };
    let port = if o.local {
        8443
    } else {
        host.as_deref()
            .and_then(|h| HeaderValue::from_bytes(h).ok())
            .and_then(|h| h.to_str().ok().map(str::to_owned))
            .and_then(|h| h.parse::<Authority>().ok())
            .and_then(|a| a.port_u16())
            .unwrap_or(if o.tls { 443 } else { 80 })
    };
    let port = port.to_string();

    match peer {
        Some(ip) if trusted.contains(ip) => {
            let text = ip.to_string();
            let xff = appended(before, "x-forwarded-for", text.as_bytes());
            assert_eq!(all(after, "x-forwarded-for"), [&xff[..]], "XFF (trusted)");
            let kept_or = |name: &str, value: &[u8]| {
                if before.contains_key(name) {
                    assert_eq!(
                        all(after, name),
                        all(before, name),
                        "{name} (trusted, kept)"
                    );
                } else {
                    assert_eq!(all(after, name), [value], "{name} (trusted, set)");
                }
            };
            kept_or("x-forwarded-proto", proto);
            match &host {
                Some(h) => kept_or("x-forwarded-host", h),
                None => assert_eq!(
                    all(after, "x-forwarded-host"),
                    all(before, "x-forwarded-host")
                ),
            }
            kept_or("x-forwarded-port", port.as_bytes());
            let fwd = all(after, "forwarded");
            if o.rfc7239 {
                let [value] = fwd[..] else {
                    panic!("Forwarded (trusted): {fwd:?}");
                };
                let prefix = appended(before, "forwarded", b"");
                let element = value
                    .strip_prefix(&prefix[..])
                    .unwrap_or_else(|| panic!("Forwarded lost earlier elements: {value:?}"));
                check_element(element, ip, proto, host.as_deref());
            } else {
                assert_eq!(
                    fwd,
                    all(before, "forwarded"),
                    "Forwarded passes (trusted, off)"
                );
            }
        }
        peer => {
            match peer {
                Some(ip) => {
                    let text = ip.to_string();
                    assert_eq!(all(after, "x-forwarded-for"), [text.as_bytes()], "XFF");
                }
                None => assert!(all(after, "x-forwarded-for").is_empty(), "XFF without peer"),
            }
            assert_eq!(
                all(after, "x-forwarded-proto"),
                [proto],
                "X-Forwarded-Proto"
            );
            match &host {
                Some(h) => assert_eq!(all(after, "x-forwarded-host"), [&h[..]], "X-Forwarded-Host"),
                None => assert!(all(after, "x-forwarded-host").is_empty()),
            }
            assert_eq!(
                all(after, "x-forwarded-port"),
                [port.as_bytes()],
                "X-Forwarded-Port"
            );
            let fwd = all(after, "forwarded");
            match peer {
                Some(ip) if o.rfc7239 => {
                    let [value] = fwd[..] else {
                        panic!("Forwarded (untrusted): {fwd:?}");
                    };
                    check_element(value, ip, proto, host.as_deref());
                }
                _ => assert!(fwd.is_empty(), "Forwarded from an untrusted peer kept"),
            }
        }
    }

    // Other headers: same values, same order; no header moved.
    let others = |m: &HeaderMap| -> Vec<(HeaderName, HeaderValue)> {
        m.iter()
            .filter(|(n, _)| !FORWARDING.contains(&n.as_str()))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    };
    assert_eq!(others(before), others(after), "other headers changed");
    let order_before: Vec<&HeaderName> = before.keys().filter(|n| after.contains_key(*n)).collect();
    let order_after: Vec<&HeaderName> = after.keys().filter(|n| before.contains_key(*n)).collect();
    assert_eq!(order_before, order_after, "a header moved");
}

/// Parses one RFC 7239 element (`pair *( ";" pair )`, values token or
/// quoted-string) and checks its `for`, `proto` and `host`.
fn check_element(element: &[u8], peer: IpAddr, proto: &[u8], host: Option<&[u8]>) {
    let pairs = parse_element(element)
        .unwrap_or_else(|| panic!("Forwarded element does not parse: {element:?}"));
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_slice())
    };
    let want_for = match peer {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    assert_eq!(get("for"), Some(want_for.as_bytes()), "for=");
    assert_eq!(get("proto"), Some(proto), "proto=");
    assert_eq!(get("host"), host, "host=");
    assert_eq!(pairs.len(), 2 + usize::from(host.is_some()), "extra pairs");
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_element(mut s: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut pairs = Vec::new();
    loop {
        let eq = s.iter().position(|&b| b == b'=')?;
        let (name, rest) = s.split_at(eq);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return None;
        }
        let mut rest = rest.get(1..)?;
        let mut value = Vec::new();
        if let Some(q) = rest.strip_prefix(b"\"") {
            let mut i = 0;
            loop {
                match q.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        let c = *q.get(i + 1)?;
                        if c != b'\t' && (c < 0x20 || c == 0x7f) {
                            return None;
                        }
                        value.push(c);
                        i += 2;
                    }
                    &c if c == b'\t' || c == b' ' || (0x21..=0x7e).contains(&c) || c >= 0x80 => {
                        value.push(c);
                        i += 1;
                    }
                    _ => return None,
                }
            }
            rest = q.get(i + 1..)?;
        } else {
            let end = rest
                .iter()
                .position(|&b| !is_tchar(b))
                .unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            value.extend_from_slice(rest.get(..end)?);
            rest = rest.get(end..)?;
        }
        pairs.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value));
        match rest.split_first() {
            None => return Some(pairs),
            Some((b';', tail)) => s = tail,
            Some(_) => return None,
        }
    }
}

fn check_via(before: &HeaderMap, after: &HeaderMap, version: Version) {
    let ours: &[u8] = if version == Version::HTTP_2 {
        b"2 portcullis"
    } else {
        b"1.1 portcullis"
    };
    let b = all(before, "via");
    let a = all(after, "via");
    match b.split_last() {
        None => assert_eq!(a, [ours], "Via added"),
        Some((last, earlier)) => {
            assert_eq!(a.len(), b.len(), "Via lines");
            assert_eq!(
                a.get(..earlier.len()),
                Some(earlier),
                "earlier Via lines changed"
            );
            let mut want = trim(last).to_vec();
            if !want.is_empty() {
                want.extend_from_slice(b", ");
            }
            want.extend_from_slice(ours);
            assert_eq!(a.last().copied(), Some(&want[..]), "last Via line");
        }
    }
}

/// The inner service: keeps the request it gets.
struct Echo {
    seen: Rc<RefCell<Option<Request<()>>>>,
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
        *self.seen.borrow_mut() = Some(req);
        std::future::ready(Ok(Response::new(())))
    }
}
