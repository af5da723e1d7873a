//! Building a limit's key from a request.
//!
//! A key is never stored as the raw request data: its parts are written, tagged and
//! length-prefixed, into a hasher. Locally that is a per-process random SipHash
//! (64 bits, so memory per key is fixed and clients cannot aim for collisions);
//! for Redis a truncated SHA-256, the same on every gateway.

use std::hash::Hasher;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, Request};
use portcullis_core::{ClientAddr, Identity, MatchedRoute, PeerAddr};

use crate::KeyPart;

/// Where key bytes go.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl<H: Hasher> Sink for H {
    fn put(&mut self, bytes: &[u8]) {
        self.write(bytes);
    }
}

#[derive(Debug, Clone)]
enum Part {
    ClientIp,
    Identity,
    Route,
    Header(HeaderName),
}

/// A limit's key, compiled from its [`KeyPart`]s.
#[derive(Debug, Clone)]
pub(crate) struct KeySpec {
    parts: Box<[Part]>,
}

/// What keys are made of, read once per request.
#[derive(Debug)]
pub(crate) struct KeyInput<'a> {
    ip: Option<IpAddr>,
    identity: Option<&'a str>,
    route: Option<&'a str>,
    headers: &'a HeaderMap,
}

// === impl KeySpec ===

impl KeySpec {
    /// Compiles validated parts (header names already checked).
    pub(crate) fn new(parts: &[KeyPart]) -> Self {
        let parts = parts
            .iter()
            .filter_map(|part| {
                Some(match part {
                    KeyPart::ClientIp => Part::ClientIp,
                    KeyPart::Identity => Part::Identity,
                    KeyPart::Route => Part::Route,
                    KeyPart::Header(name) => {
                        Part::Header(HeaderName::from_bytes(name.as_bytes()).ok()?)
                    }
                })
            })
            .collect();
        Self { parts }
    }

    /// Whether the key reads the client IP.
    pub(crate) fn uses_client_ip(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::ClientIp))
    }

    /// Writes the key of `input` into `sink`.
    pub(crate) fn write(&self, input: &KeyInput<'_>, sink: &mut impl Sink) {
        for part in self.parts.iter() {
            match part {
                Part::ClientIp => match input.ip {
                    Some(IpAddr::V4(ip)) => tagged(sink, b'4', &ip.octets()),
                    // One host usually holds a whole /64: keyed per /128, it
                    // would have 2^64 quotas.
                    Some(IpAddr::V6(ip)) => tagged(sink, b'6', &ip.octets()[..8]),
                    None => tagged(sink, b'?', b""),
                },
                Part::Identity => match input.identity {
                    Some(id) => tagged(sink, b'i', id.as_bytes()),
                    None => tagged(sink, b'a', b""),
                },
                Part::Route => match input.route {
                    Some(route) => tagged(sink, b'r', route.as_bytes()),
                    None => tagged(sink, b'u', b""),
                },
                Part::Header(name) => {
                    let value = input.headers.get(name).map_or(&b""[..], |v| v.as_bytes());
                    tagged(sink, b'h', value);
                }
            }
        }
    }
}

fn tagged(sink: &mut impl Sink, tag: u8, bytes: &[u8]) {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    sink.put(&[tag]);
    sink.put(&len.to_le_bytes());
    sink.put(bytes);
}

// === impl KeyInput ===

impl<'a> KeyInput<'a> {
    /// Reads the parts of `req`; the client IP only when `with_ip`: the
    /// [`ClientAddr`] a forwarding layer decided, else the TCP peer — never a
    /// header.
    pub(crate) fn of<B>(req: &'a Request<B>, with_ip: bool) -> Self {
        let ip = || {
            let ext = req.extensions();
            ext.get::<ClientAddr>()
                .map(|c| c.0)
                .or_else(|| ext.get::<PeerAddr>().map(|p| p.0.ip()))
                .map(|ip| ip.to_canonical())
        };
        Self {
            ip: if with_ip { ip() } else { None },
            identity: req.extensions().get::<Identity>().map(|i| &*i.0),
            route: req.extensions().get::<MatchedRoute>().map(|r| &*r.template),
            headers: req.headers(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::Arc;

    use portcullis_core::PeerAddr;

    use super::*;

    #[test]
    fn parts_are_unambiguous() {
        // Identity "a" + header "" must differ from identity "" + header "a".
        let spec = KeySpec::new(&[KeyPart::Identity, KeyPart::Header("x-k".into())]);
        let mut a = Vec::new();
        let mut req = Request::new(());
        req.extensions_mut().insert(Identity(Arc::from("a")));
        spec.write(&KeyInput::of(&req, false), &mut VecSink(&mut a));
        let mut b = Vec::new();
        let mut req = Request::builder().header("x-k", "a").body(()).unwrap();
        req.extensions_mut().insert(Identity(Arc::from("")));
        spec.write(&KeyInput::of(&req, false), &mut VecSink(&mut b));
        assert_ne!(a, b);
        // Absent identity is its own ("anonymous") value, not the empty identity.
        let mut c = Vec::new();
        let req = Request::builder().header("x-k", "a").body(()).unwrap();
        spec.write(&KeyInput::of(&req, false), &mut VecSink(&mut c));
        assert_ne!(b, c);
    }

    #[test]
    fn client_ip_is_the_client_addr_else_the_peer_never_a_header() {
        let spec = KeySpec::new(&[KeyPart::ClientIp]);
        let state = RandomState::new();
        let key = |xff: &str| {
            let mut req = Request::builder()
                .header("x-forwarded-for", xff)
                .body(())
                .unwrap();
            req.extensions_mut()
                .insert(PeerAddr("192.0.2.1:5000".parse().unwrap()));
            let mut h = state.build_hasher();
            spec.write(&KeyInput::of(&req, true), &mut h);
            h.finish()
        };
        assert_eq!(key("1.1.1.1"), key("2.2.2.2"));
        // What a forwarding layer decided wins over the peer.
        let with_client = |client: &str| {
            let mut req = Request::new(());
            req.extensions_mut()
                .insert(PeerAddr("192.0.2.1:5000".parse().unwrap()));
            req.extensions_mut()
                .insert(ClientAddr(client.parse().unwrap()));
            let mut h = state.build_hasher();
            spec.write(&KeyInput::of(&req, true), &mut h);
            h.finish()
        };
        assert_ne!(with_client("198.51.100.1"), key("1.1.1.1"));
        assert_ne!(with_client("198.51.100.1"), with_client("198.51.100.2"));
    }

    struct VecSink<'a>(&'a mut Vec<u8>);
    impl Sink for VecSink<'_> {
        fn put(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }
}
