//! Validation of registrations: names, specs, upstream URLs and the upstream policy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::StatusCode;

use crate::model::{
    EndpointSpec, HealthSpec, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_LEN, MAX_METADATA_VALUE_LEN,
    MAX_TTL, MAX_WEIGHT, MIN_TTL, RouteSpec, ServiceSpec,
};

/// The longest service name or endpoint id, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The most routes one service may register.
pub const MAX_ROUTES_PER_SERVICE: usize = 64;
/// The most methods one route may list.
pub const MAX_METHODS_PER_ROUTE: usize = 16;
/// The most endpoints one service may register.
pub const MAX_ENDPOINTS_PER_SERVICE: usize = 1024;
/// The most services the registry holds.
pub const MAX_SERVICES: usize = 4096;
/// The longest route path, strip prefix, host or URL, in bytes.
pub const MAX_STRING_LEN: usize = 1024;
/// The most probe headers a health check may set.
pub const MAX_HEALTH_HEADERS: usize = 32;

const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);
const METADATA_HOSTS: &[&str] = &["metadata.google.internal", "metadata.goog", "metadata"];

/// Why a registration was refused. Each maps to a stable cause string ([`as_str`]) and a
/// status ([`status`]) for the admin API's R6 error body.
///
/// [`as_str`]: RegistrationError::as_str
/// [`status`]: RegistrationError::status
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// 400 `invalid_registration`: a malformed name, spec or URL.
    #[error("invalid registration: {0}")]
    Invalid(String),
    /// 409 `route_conflict`: another service already owns the route.
    #[error("route conflict: {message}")]
    RouteConflict {
        /// What conflicts.
        message: String,
        /// The service that owns the route.
        owner: String,
    },
    /// 403 `forbidden_upstream`: the upstream is refused by policy (link-local,
    /// cloud metadata, the gateway's own listener).
    #[error("forbidden upstream: {0}")]
    ForbiddenUpstream(String),
    /// 404 `service_not_found`: an endpoint was registered for an unknown service.
    #[error("service not found: {0}")]
    ServiceNotFound(String),
}

/// What upstreams the registry accepts (R12).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The gateway's own listener addresses (proxy, admin): never an upstream unless
    /// `allow_self`. Default: none.
    pub own_addrs: Vec<SocketAddr>,
    /// Accept link-local upstreams (169.254.0.0/16, fe80::/10) and the cloud metadata
    /// address (169.254.169.254, fd00:ec2::254). Default: false.
    pub allow_link_local: bool,
    /// Accept the gateway's own listeners as upstreams. Default: false.
    pub allow_self: bool,
}

/// A syntactically valid upstream URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// The host, without brackets, lower-cased.
    pub host: String,
    /// The host as an IP address, when it is one.
    pub ip: Option<IpAddr>,
    /// The port.
    pub port: u16,
}

// === impl RegistrationError ===

impl RegistrationError {
    /// The stable cause: `invalid_registration`, `route_conflict`, `forbidden_upstream`
    /// or `service_not_found`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            RegistrationError::Invalid(_) => "invalid_registration",
            RegistrationError::RouteConflict { .. } => "route_conflict",
            RegistrationError::ForbiddenUpstream(_) => "forbidden_upstream",
            RegistrationError::ServiceNotFound(_) => "service_not_found",
        }
    }

    /// The status the admin API answers with.
    pub const fn status(&self) -> StatusCode {
        match self {
            RegistrationError::Invalid(_) => StatusCode::BAD_REQUEST,
            RegistrationError::RouteConflict { .. } => StatusCode::CONFLICT,
            RegistrationError::ForbiddenUpstream(_) => StatusCode::FORBIDDEN,
            RegistrationError::ServiceNotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    /// The human-readable message, without the cause.
    pub fn message(&self) -> &str {
        match self {
            RegistrationError::Invalid(m)
            | RegistrationError::ForbiddenUpstream(m)
            | RegistrationError::ServiceNotFound(m) => m,
            RegistrationError::RouteConflict { message, .. } => message,
        }
    }
}

fn invalid(msg: impl Into<String>) -> RegistrationError {
    RegistrationError::Invalid(msg.into())
}

/// Checks a service name or endpoint id: `[A-Za-z0-9._-]`, 1..=64 bytes.
pub fn validate_name(kind: &str, name: &str) -> Result<(), RegistrationError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid(format!(
            "{kind} must be 1 to {MAX_NAME_LEN} bytes long, got {}",
            name.len()
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(format!(
            "{kind} may contain only A-Z, a-z, 0-9, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Checks a service spec's own shape (routes, health); conflicts are the registry's job.
pub fn validate_service_spec(spec: &ServiceSpec) -> Result<(), RegistrationError> {
    if spec.routes.is_empty() {
        return Err(invalid("routes must not be empty"));
    }
    if spec.routes.len() > MAX_ROUTES_PER_SERVICE {
        return Err(invalid(format!(
            "at most {MAX_ROUTES_PER_SERVICE} routes per service, got {}",
            spec.routes.len()
        )));
    }
    for (i, route) in spec.routes.iter().enumerate() {
        validate_route(route).map_err(|e| invalid(format!("routes[{i}]: {}", e.message())))?;
    }
    for (i, a) in spec.routes.iter().enumerate() {
        if spec.routes.iter().skip(i + 1).any(|b| routes_overlap(a, b)) {
            return Err(invalid(format!(
                "routes[{i}]: the service lists the same route twice ({})",
                describe_route(a)
            )));
        }
    }
    if let Some(health) = &spec.health {
        validate_health(health)?;
    }
    Ok(())
}

fn validate_route(route: &RouteSpec) -> Result<(), RegistrationError> {
    check_path("path", &route.path)?;
    if let Some(prefix) = &route.strip_prefix {
        check_path("strip_prefix", prefix)?;
    }
    if let Some(host) = &route.host {
        let ok = !host.is_empty()
            && host.len() <= 253
            && host.strip_prefix("*.").unwrap_or(host).bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !ok {
            return Err(invalid(format!("host {host:?} is not a valid host name")));
        }
    }
    if let Some(methods) = &route.methods {
        if methods.is_empty() || methods.len() > MAX_METHODS_PER_ROUTE {
            return Err(invalid(format!(
                "methods must list 1 to {MAX_METHODS_PER_ROUTE} methods, or be absent for all"
            )));
        }
        for m in methods {
            if m.is_empty() || m.len() > 32 || http::Method::from_bytes(m.as_bytes()).is_err() {
                return Err(invalid(format!("method {m:?} is not a valid method")));
            }
        }
    }
    Ok(())
}

fn check_path(key: &str, path: &str) -> Result<(), RegistrationError> {
    if !path.starts_with('/') || path.len() > MAX_STRING_LEN {
        return Err(invalid(format!(
            "{key} must start with '/' and be at most {MAX_STRING_LEN} bytes"
        )));
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(invalid(format!(
            "{key} must not contain spaces or control characters"
        )));
    }
    Ok(())
}

/// Checks a health check's settings (path, interval, timeout, statuses, method,
/// headers, rise and fall), as a registration's or a static service's.
pub fn validate_health(h: &HealthSpec) -> Result<(), RegistrationError> {
    check_path("health.path", &h.path)?;
    if h.interval < std::time::Duration::from_millis(100) || h.interval > MAX_TTL {
        return Err(invalid("health.interval must be between 100ms and 1h"));
    }
    if h.timeout.is_zero() || h.timeout > h.interval {
        return Err(invalid(
            "health.timeout must be more than 0 and at most health.interval",
        ));
    }
    if h.expected_status.is_empty()
        || h.expected_status.len() > 32
        || h.expected_status.iter().any(|s| !(100..=599).contains(s))
    {
        return Err(invalid(
            "health.expected_status must list 1 to 32 statuses in 100..=599",
        ));
    }
    if let Some(m) = &h.method {
        let ok = http::Method::from_bytes(m.as_bytes())
            .is_ok_and(|m| m != http::Method::CONNECT && m.as_str().len() <= 32);
        if !ok {
            return Err(invalid(format!(
                "health.method {m:?} is not a method a probe can use"
            )));
        }
    }
    for (key, v) in [("health.rise", h.rise), ("health.fall", h.fall)] {
        if v.is_some_and(|v| !(1..=100).contains(&v)) {
            return Err(invalid(format!("{key} must be between 1 and 100")));
        }
    }
    if h.headers.len() > MAX_HEALTH_HEADERS {
        return Err(invalid(format!(
            "health.headers may set at most {MAX_HEALTH_HEADERS} headers"
        )));
    }
    for (name, value) in &h.headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(value).is_err()
        {
            return Err(invalid(format!(
                "health.headers: {name:?} is not a valid header"
            )));
        }
    }
    Ok(())
}

/// Whether two routes would match the same requests: same host (case-insensitive, or
/// both absent), same path, and overlapping methods (absent = all).
pub(crate) fn routes_overlap(a: &RouteSpec, b: &RouteSpec) -> bool {
    let same_host = match (&a.host, &b.host) {
        (None, None) => true,
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => false,
    };
    if !same_host || a.path != b.path {
        return false;
    }
    match (&a.methods, &b.methods) {
        (Some(x), Some(y)) => x.iter().any(|m| y.contains(m)),
        _ => true,
    }
}

pub(crate) fn describe_route(r: &RouteSpec) -> String {
    let methods = r
        .methods
        .as_ref()
        .map_or_else(|| "*".to_owned(), |m| m.join(","));
    format!("{} {}{}", methods, r.host.as_deref().unwrap_or("*"), r.path)
}

/// Checks an endpoint spec's bounds and URL syntax, without the policy.
pub fn validate_endpoint_spec(spec: &EndpointSpec) -> Result<Upstream, RegistrationError> {
    if spec.ttl < MIN_TTL || spec.ttl > MAX_TTL {
        return Err(invalid(format!(
            "ttl must be between 1s and 1h, got {}",
            humantime::format_duration(spec.ttl)
        )));
    }
    if spec.weight == 0 || spec.weight > MAX_WEIGHT {
        return Err(invalid(format!(
            "weight must be between 1 and {MAX_WEIGHT}, got {}",
            spec.weight
        )));
    }
    if spec.metadata.len() > MAX_METADATA_ENTRIES {
        return Err(invalid(format!(
            "metadata may hold at most {MAX_METADATA_ENTRIES} entries, got {}",
            spec.metadata.len()
        )));
    }
    for (k, v) in &spec.metadata {
        if k.is_empty() || k.len() > MAX_METADATA_KEY_LEN {
            return Err(invalid(format!(
                "metadata keys must be 1 to {MAX_METADATA_KEY_LEN} bytes"
            )));
        }
        if v.len() > MAX_METADATA_VALUE_LEN {
            return Err(invalid(format!(
                "metadata value of {k:?} is longer than {MAX_METADATA_VALUE_LEN} bytes"
            )));
        }
    }
    parse_upstream(&spec.url)
}

/// Parses an upstream URL: `http` or `https`, a host and an explicit port, and no
/// user info, path (other than `/`), query or fragment.
pub fn parse_upstream(url: &str) -> Result<Upstream, RegistrationError> {
    if url.len() > MAX_STRING_LEN {
        return Err(invalid(format!(
            "url is longer than {MAX_STRING_LEN} bytes"
        )));
    }
    if url.contains('#') {
        return Err(invalid("url must not have a fragment"));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|_| invalid(format!("url {url:?} is not a valid URL")))?;
    let scheme = match uri.scheme_str() {
        Some("http") => http::uri::Scheme::HTTP,
        Some("https") => http::uri::Scheme::HTTPS,
        Some(other) => {
            return Err(invalid(format!(
                "url scheme must be http or https, got {other:?}"
            )));
        }
        None => return Err(invalid("url must be absolute: http(s)://host:port")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("url must have a host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("url must not contain user info"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid(
            "url must not have a path or query: only scheme, host and port",
        ));
    }
    let port = authority
        .port_u16()
        .ok_or_else(|| invalid("url must have an explicit port"))?;
    let raw_host = authority.host();
    let bare = raw_host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(raw_host);
    let host = bare.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(invalid("url must have a host"));
    }
    let ip = host.parse::<IpAddr>().ok();
    if ip.is_none() && looks_numeric(&host) {
        // inet_aton and WHATWG URL parsers read "2852039166", "0xa9.254.0.1" or
        // "169.254.43518" as IPv4 addresses: refuse them rather than guess.
        return Err(invalid(format!(
            "host {host:?} is a non-canonical numeric address; write it as a.b.c.d"
        )));
    }
    if let Some(ip) = ip {
        let v4 = match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        };
        if ip.is_unspecified() || ip.is_multicast() || v4.is_some_and(|v| v.is_broadcast()) {
            return Err(invalid(format!("{ip} is not a unicast address")));
        }
    }
    Ok(Upstream {
        scheme,
        host,
        ip,
        port,
    })
}

fn looks_numeric(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || last
                .strip_prefix("0x")
                .or_else(|| last.strip_prefix("0X"))
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())))
}

/// Checks a parsed upstream against the policy: link-local, metadata and own listeners.
pub fn check_policy(up: &Upstream, policy: &Policy) -> Result<(), RegistrationError> {
    if !policy.allow_link_local {
        if let Some(ip) = up.ip {
            let v4 = match ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(v6) => v6.to_ipv4_mapped(),
            };
            if v4 == Some(METADATA_V4) || ip == IpAddr::V6(METADATA_V6) {
                return Err(RegistrationError::ForbiddenUpstream(format!(
                    "{ip} is the cloud metadata address"
                )));
            }
            let link_local = match (v4, ip) {
                (Some(v4), _) => v4.is_link_local(),
                (None, IpAddr::V6(v6)) => (v6.segments()[0] & 0xffc0) == 0xfe80,
                (None, IpAddr::V4(_)) => false,
            };
            if link_local {
                return Err(RegistrationError::ForbiddenUpstream(format!(
                    "{ip} is a link-local address"
                )));
            }
        } else if METADATA_HOSTS.contains(&up.host.as_str()) {
            return Err(RegistrationError::ForbiddenUpstream(format!(
                "{} is the cloud metadata host",
                up.host
            )));
        }
    }
    if !policy.allow_self && policy.own_addrs.iter().any(|own| is_self(up, own)) {
        return Err(RegistrationError::ForbiddenUpstream(format!(
            "{}:{} is one of the gateway's own listeners",
            up.host, up.port
        )));
    }
    Ok(())
}

/// Whether `up` names the listener `own`: the same address, or a loopback address
/// (or `localhost`) on the port of a listener bound to loopback or the wildcard address.
fn is_self(up: &Upstream, own: &SocketAddr) -> bool {
    if up.port != own.port() {
        return false;
    }
    let own_ip = own.ip();
    let local_listener = own_ip.is_unspecified() || own_ip.is_loopback();
    match up.ip {
        Some(ip) => {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            };
            ip == own_ip || (own_ip.is_unspecified() && ip.is_loopback())
        }
        None => local_listener && (up.host == "localhost" || up.host.ends_with(".localhost")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, policy: &Policy) -> Result<(), RegistrationError> {
        check_policy(&parse_upstream(url)?, policy)
    }

    fn cause(url: &str, policy: &Policy) -> &'static str {
        match check(url, policy) {
            Ok(()) => "ok",
            Err(e) => e.as_str(),
        }
    }

    #[test]
    fn upstream_syntax() {
        let p = Policy::default();
        assert_eq!(cause("http://10.0.0.5:8080", &p), "ok");
        assert_eq!(cause("https://api.internal:443/", &p), "ok");
        assert_eq!(cause("http://[2001:db8::1]:80", &p), "ok");
        assert_eq!(cause("ftp://10.0.0.5:21", &p), "invalid_registration");
        assert_eq!(
            cause("http://10.0.0.5:8080/api", &p),
            "invalid_registration"
        );
        assert_eq!(
            cause("http://10.0.0.5:8080/?a=1", &p),
            "invalid_registration"
        );
        assert_eq!(
            cause("http://u:p@10.0.0.5:8080", &p),
            "invalid_registration"
        );
        assert_eq!(cause("http://10.0.0.5:8080#x", &p), "invalid_registration");
        assert_eq!(cause("http://10.0.0.5", &p), "invalid_registration");
        assert_eq!(cause("10.0.0.5:8080", &p), "invalid_registration");
        assert_eq!(cause("/just/a/path", &p), "invalid_registration");
        assert_eq!(cause("http://0.0.0.0:80", &p), "invalid_registration");
        assert_eq!(cause("http://2852039166:80", &p), "invalid_registration");
        assert_eq!(
            cause("http://0xa9.0xfe.0xa9.0xfe:80", &p),
            "invalid_registration"
        );
        let err = check("ftp://h:21", &p).unwrap_err();
        assert_eq!(
            err.message(),
            "url scheme must be http or https, got \"ftp\""
        );
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn link_local_and_metadata_are_forbidden_unless_allowed() {
        let p = Policy::default();
        for url in [
            "http://169.254.169.254:80",
            "http://169.254.10.1:8080",
            "http://169.254.169.254.:80",
            "http://[fe80::1]:80",
            "http://[fd00:ec2::254]:80",
            "http://[::ffff:169.254.169.254]:80",
            "http://metadata.google.internal:80",
        ] {
            assert_eq!(cause(url, &p), "forbidden_upstream", "{url}");
        }
        let err = check("http://[fd00:ec2::254]:80", &p).unwrap_err();
        assert_eq!(err.message(), "fd00:ec2::254 is the cloud metadata address");
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        let allowed = Policy {
            allow_link_local: true,
            ..Policy::default()
        };
        assert_eq!(cause("http://169.254.169.254:80", &allowed), "ok");
        assert_eq!(cause("http://[fe80::1]:80", &allowed), "ok");
    }

    #[test]
    fn own_listeners_are_forbidden_loopback_is_not() {
        let p = Policy {
            own_addrs: vec![
                "127.0.0.1:9090".parse().unwrap(),
                "0.0.0.0:8080".parse().unwrap(),
            ],
            ..Policy::default()
        };
        assert_eq!(cause("http://127.0.0.1:9090", &p), "forbidden_upstream");
        assert_eq!(cause("http://localhost:9090", &p), "forbidden_upstream");
        assert_eq!(cause("http://127.0.0.1:8080", &p), "forbidden_upstream");
        assert_eq!(cause("http://[::1]:8080", &p), "forbidden_upstream");
        assert_eq!(cause("http://127.0.0.1:3000", &p), "ok");
        assert_eq!(cause("http://localhost:3000", &p), "ok");
        assert_eq!(cause("http://10.1.1.1:9090", &p), "ok");
        let p = Policy {
            allow_self: true,
            ..p
        };
        assert_eq!(cause("http://127.0.0.1:9090", &p), "ok");
    }

    #[test]
    fn names() {
        assert!(validate_name("service", "billing-v2.eu_1").is_ok());
        assert!(validate_name("service", &"a".repeat(64)).is_ok());
        for bad in ["", "a/b", "a b", "ü", "..%2f", &"a".repeat(65)] {
            let err = validate_name("service", bad).unwrap_err();
            assert_eq!(err.as_str(), "invalid_registration", "{bad}");
        }
    }

    #[test]
    fn endpoint_bounds() {
        let ok = EndpointSpec::new("http://10.0.0.5:8080");
        assert!(validate_endpoint_spec(&ok).is_ok());
        let bad = [
            ok.clone().ttl(std::time::Duration::from_millis(999)),
            ok.clone().ttl(std::time::Duration::from_secs(3601)),
            ok.clone().weight(0),
            ok.clone().weight(1001),
        ];
        for spec in bad {
            assert_eq!(
                validate_endpoint_spec(&spec).unwrap_err().as_str(),
                "invalid_registration"
            );
        }
        let mut meta = ok.clone();
        meta.metadata.insert("k".repeat(65), "v".to_owned());
        assert!(validate_endpoint_spec(&meta).is_err());
        let mut meta = ok.clone();
        meta.metadata.insert("k".to_owned(), "v".repeat(257));
        assert!(validate_endpoint_spec(&meta).is_err());
        let mut meta = ok;
        for i in 0..33 {
            meta.metadata.insert(format!("k{i}"), String::new());
        }
        assert!(validate_endpoint_spec(&meta).is_err());
    }

    #[test]
    fn service_spec_shape() {
        assert!(validate_service_spec(&ServiceSpec::new(vec![RouteSpec::new("/a")])).is_ok());
        assert!(validate_service_spec(&ServiceSpec::new(vec![])).is_err());
        assert!(validate_service_spec(&ServiceSpec::new(vec![RouteSpec::new("a")])).is_err());
        let mut r = RouteSpec::new("/a");
        r.methods = Some(vec!["GE T".to_owned()]);
        assert!(validate_service_spec(&ServiceSpec::new(vec![r])).is_err());
        let dup = ServiceSpec::new(vec![RouteSpec::new("/a"), RouteSpec::new("/a")]);
        let err = validate_service_spec(&dup).unwrap_err();
        assert_eq!(
            err.message(),
            "routes[0]: the service lists the same route twice (* */a)"
        );
        let mut h = ServiceSpec::new(vec![RouteSpec::new("/a")]);
        h.health = Some(HealthSpec {
            expected_status: vec![700],
            ..HealthSpec::default()
        });
        assert!(validate_service_spec(&h).is_err());
        for bad in [
            HealthSpec {
                method: Some("CONNECT".into()),
                ..HealthSpec::default()
            },
            HealthSpec {
                method: Some("G ET".into()),
                ..HealthSpec::default()
            },
            HealthSpec {
                rise: Some(0),
                ..HealthSpec::default()
            },
            HealthSpec {
                fall: Some(101),
                ..HealthSpec::default()
            },
        ] {
            h.health = Some(bad.clone());
            assert!(validate_service_spec(&h).is_err(), "{bad:?}");
        }
        h.health = Some(HealthSpec {
            method: Some("HEAD".into()),
            rise: Some(1),
            fall: Some(100),
            ..HealthSpec::default()
        });
        assert!(validate_service_spec(&h).is_ok());
    }
}
