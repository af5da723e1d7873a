use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use portcullis_core::ServiceName;

use crate::ConfigError;
use crate::ambiguous::{canonical_ipv6, dot_segments};

/// The longest host name the router compares (RFC 1035 allows 253 characters).
pub(crate) const MAX_HOST_LEN: usize = 255;

/// A condition on a request header, for [`RouteSpec::header`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderPredicate {
    /// The header is present, with any value (even empty).
    Present,
    /// One of the header's values equals this one, byte for byte (case-sensitive,
    /// no trimming, no list splitting).
    Equals(HeaderValue),
}

/// One route: what a request must look like to match, and how its path is edited.
///
/// Built with a fallible builder; every method checks its input and names the
/// route in the [`ConfigError`]. See the [crate docs](crate) for path kinds,
/// matching order and path editing.
///
/// ```
/// use portcullis_router::{HeaderPredicate, RouteSpec};
/// # fn main() -> Result<(), portcullis_router::ConfigError> {
/// let spec = RouteSpec::new("droplets", "/v1/droplets/{id}")?
///     .host("*.example.com")?
///     .methods(["GET", "DELETE"])?
///     .header("x-tenant", HeaderPredicate::Present)?
///     .service("droplets")
///     .strip_prefix("/v1")?;
/// assert_eq!(spec.path(), "/v1/droplets/{id}");
/// assert_eq!(spec.host_pattern(), Some("*.example.com"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub(crate) name: Arc<str>,
    pub(crate) path: Arc<str>,
    pub(crate) kind: PathKind,
    pub(crate) host: HostPattern,
    host_raw: Option<Box<str>>,
    pub(crate) methods: Option<Box<[Method]>>,
    /// Sorted by name.
    pub(crate) headers: Vec<(HeaderName, HeaderPredicate)>,
    pub(crate) service: Option<ServiceName>,
    pub(crate) edit: PathEdit,
}

/// What kind of path a route has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathKind {
    /// The whole path must be equal.
    Exact,
    /// The path ends in `/`; it matches any path under it and itself without the slash.
    Prefix,
    /// A matchit template; the parameter names in template order.
    Template(Arc<[Arc<str>]>),
}

/// Which hosts a route answers for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum HostPattern {
    /// Every host (no `host` configured).
    Any,
    /// One host, lower-cased.
    Exact(Box<str>),
    /// Subdomains of a domain: the lower-cased suffix with its leading dot (`.example.com`).
    Wildcard(Box<str>),
}

/// How a route edits the request path before calling its service.
#[derive(Debug, Clone, Default)]
pub(crate) enum PathEdit {
    /// The path is left alone.
    #[default]
    None,
    /// Remove this prefix (no trailing slash) at a segment boundary.
    Strip(Box<str>),
    /// Replace the route's prefix (with its trailing slash) by this one.
    Prefix(Box<str>),
    /// Replace the whole path by this template over the route's captures.
    Template(Box<[RewritePart]>),
}

/// A piece of a rewrite target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RewritePart {
    /// Copied as is.
    Literal(Box<str>),
    /// The raw value of the route's parameter with this index.
    Param(usize),
}

// === impl HeaderPredicate ===

impl HeaderPredicate {
    /// `Equals` for a static value.
    pub fn equals_static(value: &'static str) -> Self {
        Self::Equals(HeaderValue::from_static(value))
    }

    pub(crate) fn holds(&self, name: &HeaderName, headers: &HeaderMap) -> bool {
        match self {
            Self::Present => headers.contains_key(name),
            Self::Equals(want) => headers.get_all(name).iter().any(|v| v == want),
        }
    }
}

// === impl RouteSpec ===

impl RouteSpec {
    /// A route named `name` for `path`: an exact path (`/healthz`), a prefix
    /// ending in `/` (`/v1/`), or a template with matchit 0.8 syntax
    /// (`/droplets/{id}`, `/files/{*rest}`).
    ///
    /// The route answers for every host, every method and any headers until told
    /// otherwise.
    pub fn new(name: impl Into<Arc<str>>, path: &str) -> Result<Self, ConfigError> {
        let name: Arc<str> = name.into();
        if name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        let invalid = |reason| ConfigError::InvalidPath {
            route: name.clone(),
            path: path.to_owned(),
            reason,
        };
        if !path.starts_with('/') {
            return Err(invalid("must start with /"));
        }
        if let Some(reason) = path_chars_problem(path) {
            return Err(invalid(reason));
        }
        let kind = if path.contains(['{', '}']) {
            PathKind::Template(template_params(path).map_err(invalid)?)
        } else if path.ends_with('/') {
            PathKind::Prefix
        } else {
            PathKind::Exact
        };
        Ok(Self {
            name,
            path: path.into(),
            kind,
            host: HostPattern::Any,
            host_raw: None,
            methods: None,
            headers: Vec::new(),
            service: None,
            edit: PathEdit::None,
        })
    }

    /// Answers only for this host: exact (`api.example.com`) or a wildcard
    /// (`*.example.com`, any subdomain at any depth, not `example.com` itself).
    ///
    /// Compared case-insensitively, without the port; a trailing dot is ignored.
    /// An IPv6 literal (`[::1]`) is compared in canonical form, so `[0::1]`
    /// matches requests for `[::1]`. Default: any host.
    pub fn host(mut self, host: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidHost {
            route: self.name.clone(),
            host: host.to_owned(),
            reason,
        };
        let trimmed = host.strip_suffix('.').unwrap_or(host);
        let (wildcard, name) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if let Some(reason) = host_problem(name) {
            return Err(invalid(reason));
        }
        if wildcard && name.starts_with('[') {
            return Err(invalid("a wildcard needs a domain name"));
        }
        let lower = canonical_ipv6(name).unwrap_or_else(|| name.to_ascii_lowercase());
        self.host = if wildcard {
            HostPattern::Wildcard(format!(".{lower}").into())
        } else {
            HostPattern::Exact(lower.into())
        };
        self.host_raw = Some(host.into());
        Ok(self)
    }

    /// Answers only for these methods. Names are upper-cased (`get` is `GET`);
    /// list `HEAD` explicitly if wanted. Default: every method.
    pub fn methods<I>(mut self, methods: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut set = Vec::new();
        for m in methods {
            let m = m.as_ref();
            let upper = m.to_ascii_uppercase();
            let method =
                Method::from_bytes(upper.as_bytes()).map_err(|_| ConfigError::InvalidMethod {
                    route: self.name.clone(),
                    method: m.to_owned(),
                })?;
            set.push(method);
        }
        if set.is_empty() {
            return Err(ConfigError::EmptyMethods {
                route: self.name.clone(),
            });
        }
        set.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        set.dedup();
        self.methods = Some(set.into());
        Ok(self)
    }

    /// Answers only when the header satisfies the predicate. Several headers
    /// must all hold; one header takes one predicate. Default: no condition.
    pub fn header(
        mut self,
        name: impl AsRef<str>,
        predicate: HeaderPredicate,
    ) -> Result<Self, ConfigError> {
        let raw = name.as_ref();
        let name =
            HeaderName::from_bytes(raw.as_bytes()).map_err(|_| ConfigError::InvalidHeaderName {
                route: self.name.clone(),
                header: raw.to_owned(),
            })?;
        match self
            .headers
            .binary_search_by(|(n, _)| n.as_str().cmp(name.as_str()))
        {
            Ok(_) => Err(ConfigError::DuplicateHeader {
                route: self.name.clone(),
                header: name.as_str().to_owned(),
            }),
            Err(at) => {
                self.headers.insert(at, (name, predicate));
                Ok(self)
            }
        }
    }

    /// Names the service the route sends to: put in the request and response
    /// extensions as [`ServiceName`] and named in error bodies. Default: none.
    pub fn service(mut self, name: impl Into<Arc<str>>) -> Self {
        self.service = Some(ServiceName(name.into()));
        self
    }

    /// Removes `prefix` from the start of the path, only at a segment boundary:
    /// with `/v1`, `/v1/x` becomes `/x`, `/v1` becomes `/`, and `/v10/x` is left
    /// alone. A trailing `/` in `prefix` is ignored. The raw path is edited
    /// (no decoding, no normalisation) and the query is kept.
    ///
    /// `prefix` must be able to apply to the route's paths: a segment-boundary
    /// prefix of an exact or prefix path, or of the literal part of a template
    /// before its first `{` (`/v1` for `/v1/droplets/{id}`), else
    /// [`ConfigError::StripPrefixNotOnPath`]. A prefix longer than that fixed
    /// part (`/v1` on the catch-all `/`) strips only the paths under it; other
    /// paths are left alone. Default: none.
    pub fn strip_prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidStripPrefix {
            route: self.name.clone(),
            prefix: prefix.to_owned(),
            reason,
        };
        if !matches!(self.edit, PathEdit::None) {
            return Err(ConfigError::StripAndRewrite {
                route: self.name.clone(),
            });
        }
        if !prefix.starts_with('/') {
            return Err(invalid("must start with /"));
        }
        if let Some(reason) = path_chars_problem(prefix) {
            return Err(invalid(reason));
        }
        if prefix.contains(['{', '}']) {
            return Err(invalid("must be literal, without parameters"));
        }
        let trimmed = prefix.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(invalid("stripping / would leave nothing"));
        }
        if !strip_can_apply(&self.path, &self.kind, trimmed) {
            return Err(ConfigError::StripPrefixNotOnPath {
                route: self.name.clone(),
                prefix: prefix.to_owned(),
                path: self.path.to_string(),
            });
        }
        self.edit = PathEdit::Strip(trimmed.into());
        Ok(self)
    }

    /// Replaces the path before calling the service. For a template route the
    /// target may use the route's captures (`/internal/droplets/{id}`,
    /// `/static/{rest}`; `{*rest}` works too). For a prefix route the target is a
    /// prefix ending in `/` that replaces the matched prefix (`/v1/` → `/new/`
    /// turns `/v1/x` into `/new/x`). For an exact route it is the new path. The
    /// raw bytes are used and the query is kept. Default: none.
    pub fn rewrite(mut self, target: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidRewrite {
            route: self.name.clone(),
            rewrite: target.to_owned(),
            reason,
        };
        if !matches!(self.edit, PathEdit::None) {
            return Err(ConfigError::StripAndRewrite {
                route: self.name.clone(),
            });
        }
        if !target.starts_with('/') {
            return Err(invalid("must start with /"));
        }
        if let Some(reason) = path_chars_problem(target) {
            return Err(invalid(reason));
        }
        let parts = rewrite_parts(target).map_err(invalid)?;
        let params: &[Arc<str>] = match &self.kind {
            PathKind::Template(params) => params,
            PathKind::Exact | PathKind::Prefix => &[],
        };
        let mut compiled = Vec::with_capacity(parts.len());
        for part in parts {
            compiled.push(match part {
                Part::Literal(s) => RewritePart::Literal(s.into()),
                Part::Param(p) => match params.iter().position(|n| &**n == p) {
                    Some(i) => RewritePart::Param(i),
                    None => {
                        return Err(ConfigError::UnknownParam {
                            route: self.name.clone(),
                            rewrite: target.to_owned(),
                            param: p.to_owned(),
                        });
                    }
                },
            });
        }
        self.edit = match self.kind {
            PathKind::Prefix if !target.ends_with('/') => {
                return Err(invalid("must end in / like the route's prefix"));
            }
            PathKind::Prefix => PathEdit::Prefix(target.into()),
            PathKind::Exact | PathKind::Template(_) => PathEdit::Template(compiled.into()),
        };
        Ok(self)
    }

    /// The route's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path as configured: the template recorded in
    /// [`MatchedRoute`](portcullis_core::MatchedRoute).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The host as configured, if any.
    pub fn host_pattern(&self) -> Option<&str> {
        self.host_raw.as_deref()
    }

    /// The methods the route answers for, sorted; `None` for every method.
    pub fn method_set(&self) -> Option<&[Method]> {
        self.methods.as_deref()
    }

    /// The service name, if any.
    pub fn service_name(&self) -> Option<&str> {
        self.service.as_ref().map(|s| &*s.0)
    }
}

/// `path` with `prefix` removed at a segment boundary, or `None` when `path`
/// does not start with it there. `prefix` has no trailing `/`.
pub(crate) fn strip_at_boundary<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Why `s` cannot be (part of) a request path: bytes outside visible ASCII, or a
/// query or fragment.
fn path_chars_problem(s: &str) -> Option<&'static str> {
    if s.contains(['?', '#']) {
        return Some("must not contain a query or fragment");
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) || PathAndQuery::try_from(s).is_err() {
        return Some("must hold only characters valid in a uri path");
    }
    if dot_segments(s).is_some() {
        return Some("must not contain . or .. segments");
    }
    None
}

/// Whether stripping `prefix` (no trailing `/`) can apply to some path the route
/// matches: it is a segment-boundary prefix of the route's fixed part, or (for
/// prefix and template routes) it extends that fixed part.
fn strip_can_apply(path: &str, kind: &PathKind, prefix: &str) -> bool {
    let fixed = match kind {
        PathKind::Exact | PathKind::Prefix => path,
        PathKind::Template(_) => path.split('{').next().unwrap_or(path),
    };
    match fixed.strip_prefix(prefix) {
        // The whole exact path, or a prefix followed by a segment boundary.
        Some("") => matches!(kind, PathKind::Exact),
        Some(rest) => rest.starts_with('/'),
        None => !matches!(kind, PathKind::Exact) && prefix.starts_with(fixed),
    }
}

/// Why `host` (without `*.` and trailing dot) is not a host name or IP literal.
fn host_problem(host: &str) -> Option<&'static str> {
    if host.is_empty() {
        return Some("must not be empty");
    }
    if host.len() > MAX_HOST_LEN {
        return Some("longer than 255 characters");
    }
    if host.starts_with('[') {
        return canonical_ipv6(host)
            .is_none()
            .then_some("an ip literal must be [an IPv6 address]");
    }
    if host.contains(':') {
        return Some("must not include a port");
    }
    if host.contains('*') {
        return Some("a wildcard must be a leading *. label");
    }
    if host.split('.').any(str::is_empty) {
        return Some("has an empty label");
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Some("may hold only letters, digits, '-', '_' and '.'");
    }
    None
}

/// The parameter names of a template, checked by matchit itself.
fn template_params(path: &str) -> Result<Arc<[Arc<str>]>, &'static str> {
    let mut probe = matchit::Router::new();
    if let Err(e) = probe.insert(path, ()) {
        return Err(match e {
            matchit::InsertError::InvalidParamSegment => {
                "only one parameter is allowed per path segment"
            }
            matchit::InsertError::InvalidCatchAll => "a catch-all parameter must come last",
            _ => "parameters need a name between balanced braces",
        });
    }
    let mut names: Vec<Arc<str>> = Vec::new();
    for part in rewrite_parts(path)? {
        if let Part::Param(name) = part {
            if names.iter().any(|n| &**n == name) {
                return Err("a parameter name is used twice");
            }
            names.push(name.into());
        }
    }
    Ok(names.into())
}

enum Part<'a> {
    Literal(&'a str),
    Param(&'a str),
}

/// Splits `{name}` and `{*name}` from literal text. `{{` and `}}` are not
/// supported outside matchit: a path byte never is a brace in practice.
fn rewrite_parts(s: &str) -> Result<Vec<Part<'_>>, &'static str> {
    let mut parts = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                parts.push(Part::Literal(rest));
                break;
            }
            Some(at) => {
                let (lit, tail) = rest.split_at(at);
                if !lit.is_empty() {
                    parts.push(Part::Literal(lit));
                }
                let inner = tail
                    .strip_prefix('{')
                    .ok_or("unbalanced braces: } without {")?;
                let end = inner.find('}').ok_or("unbalanced braces: { without }")?;
                let (name, after) = inner.split_at(end);
                let name = name.strip_prefix('*').unwrap_or(name);
                if name.is_empty() || name.contains(['{', '*', '/']) {
                    return Err("parameters need a name between balanced braces");
                }
                parts.push(Part::Param(name));
                rest = after.get(1..).unwrap_or_default();
            }
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_reason(path: &str) -> String {
        match RouteSpec::new("r", path) {
            Err(e) => e.to_string(),
            Ok(s) => panic!("{path} accepted as {:?}", s.kind),
        }
    }

    #[test]
    fn path_kinds() {
        let kind = |p| RouteSpec::new("r", p).unwrap().kind;
        assert_eq!(kind("/healthz"), PathKind::Exact);
        assert_eq!(kind("/"), PathKind::Prefix);
        assert_eq!(kind("/v1/"), PathKind::Prefix);
        match kind("/a/{id}/b/{*rest}") {
            PathKind::Template(p) => assert_eq!(&*p, &["id".into(), "rest".into()] as &[Arc<str>]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_paths_say_why() {
        assert_eq!(
            path_reason("v1"),
            r#"route "r": invalid path "v1": must start with /"#
        );
        assert!(path_reason("/a/{id").contains("balanced braces"));
        assert!(path_reason("/a/id}").contains("braces"));
        assert!(path_reason("/a/{*rest}/b").contains("catch-all parameter must come last"));
        assert!(path_reason("/a/{x}{y}").contains("one parameter is allowed per path segment"));
        assert!(path_reason("/a/{}").contains("need a name"));
        assert!(path_reason("/a/{x}/{x}").contains("used twice"));
        assert!(path_reason("/a b").contains("valid in a uri path"));
        assert!(path_reason("/a<b").contains("valid in a uri path"));
        assert!(path_reason("/a?b").contains("query"));
        assert_eq!(RouteSpec::new("", "/").unwrap_err(), ConfigError::EmptyName);
    }

    #[test]
    fn hosts() {
        let host = |h| RouteSpec::new("r", "/").unwrap().host(h).map(|s| s.host);
        assert_eq!(
            host("API.Example.com"),
            Ok(HostPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            host("api.example.com."),
            Ok(HostPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            host("*.Example.com"),
            Ok(HostPattern::Wildcard(".example.com".into()))
        );
        assert_eq!(host("[::1]"), Ok(HostPattern::Exact("[::1]".into())));
        assert_eq!(host("[0:0::0001]"), Ok(HostPattern::Exact("[::1]".into())));
        for bad in [
            "",
            "a:80",
            "a.*.com",
            "*",
            "*.",
            "a..b",
            "a b",
            "[zz]",
            "*.[::1]",
            "[1::2::3]",
            "[::1]:80",
        ] {
            assert!(
                matches!(host(bad), Err(ConfigError::InvalidHost { .. })),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn methods_and_headers() {
        let s = RouteSpec::new("r", "/")
            .unwrap()
            .methods(["post", "GET", "get"])
            .unwrap();
        assert_eq!(s.method_set(), Some(&[Method::GET, Method::POST][..]));
        let e = RouteSpec::new("r", "/")
            .unwrap()
            .methods(["G E T"])
            .unwrap_err();
        assert_eq!(e.to_string(), r#"route "r": invalid method "G E T""#);
        let e = RouteSpec::new("r", "/")
            .unwrap()
            .methods(Vec::<&str>::new())
            .unwrap_err();
        assert_eq!(e, ConfigError::EmptyMethods { route: "r".into() });
        let e = RouteSpec::new("r", "/")
            .unwrap()
            .header("X-A", HeaderPredicate::Present)
            .unwrap()
            .header("x-a", HeaderPredicate::equals_static("1"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"route "r": header "x-a" has more than one predicate"#
        );
        assert!(matches!(
            RouteSpec::new("r", "/")
                .unwrap()
                .header("bad header", HeaderPredicate::Present),
            Err(ConfigError::InvalidHeaderName { .. })
        ));
    }

    #[test]
    fn strip_prefix_checks() {
        let s = RouteSpec::new("r", "/v1/")
            .unwrap()
            .strip_prefix("/v1/")
            .unwrap();
        assert!(matches!(&s.edit, PathEdit::Strip(p) if &**p == "/v1"));
        let s = RouteSpec::new("r", "/v1/d/{id}")
            .unwrap()
            .strip_prefix("/v1")
            .unwrap();
        assert!(matches!(&s.edit, PathEdit::Strip(p) if &**p == "/v1"));
        for (path, prefix) in [
            ("/v1/", "/"),
            ("/v1/", "v1"),
            ("/v1/", "/v{n}"),
            ("/v1/", "/v1?"),
        ] {
            assert!(
                matches!(
                    RouteSpec::new("r", path).unwrap().strip_prefix(prefix),
                    Err(ConfigError::InvalidStripPrefix { .. })
                ),
                "{path} {prefix}"
            );
        }
        let e = RouteSpec::new("r", "/v1/")
            .unwrap()
            .strip_prefix("/v1")
            .unwrap()
            .rewrite("/x/")
            .unwrap_err();
        assert_eq!(e, ConfigError::StripAndRewrite { route: "r".into() });
    }

    #[test]
    fn rewrite_checks() {
        let s = RouteSpec::new("r", "/d/{id}/f/{*rest}")
            .unwrap()
            .rewrite("/i/{rest}/{id}")
            .unwrap();
        match &s.edit {
            PathEdit::Template(parts) => assert_eq!(
                &parts[..],
                &[
                    RewritePart::Literal("/i/".into()),
                    RewritePart::Param(1),
                    RewritePart::Literal("/".into()),
                    RewritePart::Param(0),
                ]
            ),
            other => panic!("{other:?}"),
        }
        let e = RouteSpec::new("r", "/d/{id}")
            .unwrap()
            .rewrite("/i/{name}")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"route "r": rewrite "/i/{name}" uses parameter "name", which the path does not capture"#
        );
        assert!(matches!(
            RouteSpec::new("r", "/v1/").unwrap().rewrite("/new"),
            Err(ConfigError::InvalidRewrite { .. })
        ));
        assert!(matches!(
            RouteSpec::new("r", "/v1/").unwrap().rewrite("/new/{x}/"),
            Err(ConfigError::UnknownParam { .. })
        ));
        assert!(matches!(
            RouteSpec::new("r", "/d/{id}").unwrap().rewrite("/i/{id"),
            Err(ConfigError::InvalidRewrite { .. })
        ));
    }
}
