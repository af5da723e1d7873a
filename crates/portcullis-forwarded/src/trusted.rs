//! [`TrustedProxies`] and [`client_ip`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::Request;
use ipnet::{IpNet, Ipv4Net};
use portcullis_core::PeerAddr;

use crate::ConfigError;
use crate::headers::{X_FORWARDED_FOR, trim_ows};

/// The proxies whose forwarding headers are believed: a list of CIDRs.
///
/// A request whose TCP peer ([`PeerAddr`]) is in the list has its
/// `X-Forwarded-For` chain extended; any other peer's is replaced. IPv4-mapped
/// IPv6 addresses (`::ffff:10.0.0.1`) are treated as the IPv4 address they carry,
/// both as peers and in the list. Cheap to clone. Default: none.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
}

// === impl TrustedProxies ===

impl TrustedProxies {
    /// No trusted proxies: every peer is a client. This is the safe default.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses CIDRs (`"10.0.0.0/8"`, `"::1/128"`) and bare addresses (`"127.0.0.1"`,
    /// one host). Surrounding whitespace is ignored.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidTrustedProxy`] with the first entry that is neither.
    ///
    /// ```
    /// use portcullis_forwarded::TrustedProxies;
    ///
    /// let trusted = TrustedProxies::parse(["10.0.0.0/8", "::1", "192.168.1.7"])?;
    /// assert!(trusted.contains("10.20.30.40".parse()?));
    /// assert!(trusted.contains("::ffff:10.0.0.1".parse()?));
    /// assert!(!trusted.contains("192.168.1.8".parse()?));
    /// assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse<I>(cidrs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let nets = cidrs
            .into_iter()
            .map(|cidr| parse_net(cidr.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { nets: nets.into() })
    }

    /// Whether `ip` is in one of the trusted networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for net in self.nets.iter() {
            list.entry(&format_args!("{net}"));
        }
        list.finish()
    }
}

fn parse_net(input: &str) -> Result<IpNet, ConfigError> {
    let trimmed = input.trim();
    let net = if trimmed.contains('/') {
        trimmed.parse::<IpNet>().ok()
    } else {
        trimmed.parse::<IpAddr>().ok().map(IpNet::from)
    };
    match net {
        Some(net) => Ok(canonical_net(net.trunc())),
        None => Err(ConfigError::InvalidTrustedProxy {
            value: input.to_owned(),
        }),
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it maps,
/// because peers are compared in their canonical form.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(prefix)) =
            (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            if let Ok(v4) = Ipv4Net::new(v4, prefix) {
                return IpNet::V4(v4);
            }
        }
    }
    net
}

/// The address a rate limiter should key on: the rightmost address of the
/// `X-Forwarded-For` chain plus the TCP peer that is not a trusted proxy.
///
/// Walks from the peer ([`PeerAddr`]) leftwards through every `X-Forwarded-For`
/// line, skipping trusted proxies, and returns the first untrusted address. When
/// every address is trusted, returns the leftmost one; when an entry does not parse
/// as an address (`unknown`, garbage), returns the trusted address that
/// forwarded it, since nothing left of it can be believed. Returns `None` when the
/// request has no [`PeerAddr`]. IPv4-mapped IPv6 addresses come back as IPv4.
///
/// It gives the same answer before and after [`Forwarded`](crate::Forwarded) has
/// run. The RFC 7239 `Forwarded` header is not read.
///
/// ```
/// use http::Request;
/// use portcullis_core::PeerAddr;
/// use portcullis_forwarded::{TrustedProxies, client_ip};
///
/// let trusted = TrustedProxies::parse(["10.0.0.0/8"])?;
/// let req = Request::get("/")
///     .header("x-forwarded-for", "203.0.113.9, 198.51.100.4, 10.0.0.3")
///     .extension(PeerAddr("10.0.0.2:41000".parse()?))
///     .body(())?;
/// assert_eq!(client_ip(&req, &trusted), Some("198.51.100.4".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn client_ip<B>(req: &Request<B>, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = req.extensions().get::<PeerAddr>()?.0.ip().to_canonical();
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let mut nearest = peer;
    let lines = req.headers().get_all(X_FORWARDED_FOR).into_iter().rev();
    for element in lines.flat_map(|line| line.as_bytes().rsplit(|&b| b == b',')) {
        let element = trim_ows(element);
        if element.is_empty() {
            continue;
        }
        let Some(ip) = parse_node(element) else {
            return Some(nearest);
        };
        if !trusted.contains(ip) {
            return Some(ip);
        }
        nearest = ip;
    }
    Some(nearest)
}

/// Parses one `X-Forwarded-For` element: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`,
/// or either with a port.
fn parse_node(element: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(element).ok()?;
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            let inner = text.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<IpAddr>().ok()
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_accepts_cidrs_and_bare_addresses() {
        let trusted = TrustedProxies::parse([" 10.0.0.0/8", "::1/128", "127.0.0.1"]).unwrap();
        assert!(trusted.contains(ip("10.255.0.1")));
        assert!(trusted.contains(ip("::1")));
        assert!(trusted.contains(ip("127.0.0.1")));
        assert!(!trusted.contains(ip("127.0.0.2")));
        assert!(!trusted.contains(ip("11.0.0.1")));
        assert!(!trusted.contains(ip("::2")));
        assert_eq!(
            format!("{trusted:?}"),
            r#"[10.0.0.0/8, ::1/128, 127.0.0.1/32]"#
        );
    }

    #[test]
    fn parse_reports_the_offending_value() {
        for bad in ["10.0.0.0/33", "", "example.com", "10.0.0.0/8/1", "::1/129"] {
            let err = TrustedProxies::parse(["10.0.0.0/8", bad]).unwrap_err();
            assert_eq!(
                err,
                ConfigError::InvalidTrustedProxy {
                    value: bad.to_owned()
                }
            );
        }
        let err = TrustedProxies::parse(["nope"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"forwarded.trusted_proxies must hold IP addresses or CIDRs, got "nope""#
        );
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_networks_and_back() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        assert!(trusted.contains(ip("::ffff:10.1.2.3")));
        assert!(!trusted.contains(ip("::ffff:11.1.2.3")));
        let mapped = TrustedProxies::parse(["::ffff:192.168.0.0/112"]).unwrap();
        assert!(mapped.contains(ip("192.168.4.5")));
        assert!(!mapped.contains(ip("192.169.4.5")));
    }

    #[test]
    fn none_trusts_nobody() {
        assert!(TrustedProxies::none().is_empty());
        assert!(!TrustedProxies::none().contains(ip("127.0.0.1")));
    }

    fn request(xff: &[&str], peer: Option<&str>) -> Request<()> {
        let mut req = Request::get("/");
        for line in xff {
            req = req.header("x-forwarded-for", *line);
        }
        if let Some(peer) = peer {
            req = req.extension(PeerAddr(peer.parse().unwrap()));
        }
        req.body(()).unwrap()
    }

    #[test]
    fn client_ip_is_the_rightmost_untrusted_address() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8", "2001:db8::/32"]).unwrap();
        let cases: [(&[&str], Option<&str>, Option<&str>); 9] = [
            // Untrusted peer: the peer, whatever the client claims.
            (&["1.1.1.1"], Some("203.0.113.1:5"), Some("203.0.113.1")),
            // Trusted peer: walk left over trusted hops, across lines.
            (
                &["198.51.100.1, 203.0.113.7", " 10.0.0.5 ,"],
                Some("10.0.0.1:5"),
                Some("203.0.113.7"),
            ),
            // IPv6 and bracketed or ported forms.
            (
                &["[2001:db9::1]:443, 2001:db8::3"],
                Some("[2001:db8::2]:5"),
                Some("2001:db9::1"),
            ),
            (&["192.0.2.1:8080"], Some("10.0.0.1:5"), Some("192.0.2.1")),
            // All trusted: the leftmost.
            (
                &["10.0.0.9, 10.0.0.8"],
                Some("10.0.0.1:5"),
                Some("10.0.0.9"),
            ),
            (&[], Some("10.0.0.1:5"), Some("10.0.0.1")),
            // Garbage: the trusted hop that forwarded it.
            (
                &["198.51.100.1, unknown, 10.0.0.7"],
                Some("10.0.0.1:5"),
                Some("10.0.0.7"),
            ),
            // Mapped peer counts as IPv4.
            (
                &["192.0.2.9"],
                Some("[::ffff:10.0.0.1]:5"),
                Some("192.0.2.9"),
            ),
            // No peer: unknown.
            (&["192.0.2.9"], None, None),
        ];
        for (xff, peer, want) in cases {
            let got = client_ip(&request(xff, peer), &trusted);
            assert_eq!(got, want.map(ip), "{xff:?} via {peer:?}");
        }
    }
}
