//! The compiled route table: host buckets, then exact paths, templates and
//! prefixes per bucket, then route groups in precedence order.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method};
use portcullis_core::{MatchedRoute, ServiceName};

use crate::ConfigError;
use crate::spec::{HeaderPredicate, HostPattern, PathEdit, PathKind, RouteSpec};

/// Indexes into [`Table::routes`], in the order they are tried.
type Group = Box<[usize]>;

/// A route ready to serve.
pub(crate) struct Route<S> {
    pub(crate) matched: MatchedRoute,
    pub(crate) service_name: Option<ServiceName>,
    pub(crate) kind: PathKind,
    methods: Option<Box<[Method]>>,
    headers: Box<[(HeaderName, HeaderPredicate)]>,
    pub(crate) edit: PathEdit,
    pub(crate) service: S,
}

/// Every route of one host pattern.
#[derive(Default)]
struct Bucket {
    exact: HashMap<Box<str>, Group>,
    templates: matchit::Router<Group>,
    /// Sorted by length, longest first; each ends in `/`.
    prefixes: Box<[(Box<str>, Group)]>,
    empty: bool,
}

pub(crate) struct Table<S> {
    pub(crate) routes: Box<[Route<S>]>,
    /// Host keys are bytes: the router checks a request's host as bytes and
    /// never needs it as text.
    exact_hosts: HashMap<Box<[u8]>, Bucket>,
    /// Suffixes with their leading dot, longest first.
    wildcard_hosts: Box<[(Box<[u8]>, Bucket)]>,
    any_host: Bucket,
}

/// A path-matching group and the captures of its template, for the visitor.
pub(crate) type Captures<'a, 'k, 'v> = Option<&'a matchit::Params<'k, 'v>>;

// === impl Route ===

impl<S> Route<S> {
    pub(crate) fn method_ok(&self, method: &Method) -> bool {
        self.methods
            .as_deref()
            .is_none_or(|set| set.iter().any(|m| m == method))
    }

    pub(crate) fn headers_ok(&self, headers: &HeaderMap) -> bool {
        self.headers.iter().all(|(n, p)| p.holds(n, headers))
    }

    pub(crate) fn methods(&self) -> Option<&[Method]> {
        self.methods.as_deref()
    }

    pub(crate) fn params(&self) -> Option<&Arc<[Arc<str>]>> {
        match &self.kind {
            PathKind::Template(p) if !p.is_empty() => Some(p),
            _ => None,
        }
    }
}

// === impl Bucket ===

impl Bucket {
    fn find<T, F>(&self, path: &str, visit: &mut F) -> ControlFlow<T>
    where
        F: FnMut(&[usize], Captures<'_, '_, '_>) -> ControlFlow<T>,
    {
        if self.empty {
            return ControlFlow::Continue(());
        }
        if let Some(group) = self.exact.get(path) {
            visit(group, None)?;
        }
        if let Ok(m) = self.templates.at(path) {
            visit(m.value, Some(&m.params))?;
        }
        for (prefix, group) in &self.prefixes {
            if path.starts_with(&**prefix) || prefix.strip_suffix('/') == Some(path) {
                visit(group, None)?;
            }
        }
        ControlFlow::Continue(())
    }
}

// === impl Table ===

impl<S> Table<S> {
    /// Calls `visit` with every group whose host and path match, most specific
    /// first, until it breaks. `host` is a key from
    /// [`host_key`](crate::ambiguous::host_key): lower-case, without port.
    pub(crate) fn find<T, F>(&self, host: Option<&[u8]>, path: &str, mut visit: F) -> Option<T>
    where
        F: FnMut(&[usize], Captures<'_, '_, '_>) -> ControlFlow<T>,
    {
        if let Some(host) = host {
            if let Some(bucket) = self.exact_hosts.get(host) {
                if let ControlFlow::Break(t) = bucket.find(path, &mut visit) {
                    return Some(t);
                }
            }
            for (suffix, bucket) in &self.wildcard_hosts {
                if host.len() > suffix.len() && host.ends_with(suffix) {
                    if let ControlFlow::Break(t) = bucket.find(path, &mut visit) {
                        return Some(t);
                    }
                }
            }
        }
        match self.any_host.find(path, &mut visit) {
            ControlFlow::Break(t) => Some(t),
            ControlFlow::Continue(()) => None,
        }
    }

    /// Compiles the routes, reporting every mistake.
    pub(crate) fn build(specs: Vec<(RouteSpec, S)>) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();

        // Group routes by host pattern and path, keeping first-seen order.
        let mut group_of: HashMap<(HostPattern, Arc<str>), usize> = HashMap::new();
        let mut groups: Vec<(HostPattern, Arc<str>, PathKind, Vec<usize>)> = Vec::new();
        for (i, (spec, _)) in specs.iter().enumerate() {
            let key = (spec.host.clone(), spec.path.clone());
            match group_of.get(&key) {
                Some(&g) => {
                    if let Some(group) = groups.get_mut(g) {
                        group.3.push(i);
                    }
                }
                None => {
                    group_of.insert(key, groups.len());
                    groups.push((
                        spec.host.clone(),
                        spec.path.clone(),
                        spec.kind.clone(),
                        vec![i],
                    ));
                }
            }
        }

        // Duplicates, then precedence order inside each group: routes with a
        // method set first, then more header predicates, then configuration order.
        for (_, path, _, members) in &mut groups {
            for (n, &a) in members.iter().enumerate() {
                for &b in members.iter().take(n) {
                    if let (Some((sa, _)), Some((sb, _))) = (specs.get(a), specs.get(b)) {
                        if duplicates(sa, sb) {
                            errors.push(ConfigError::DuplicateRoute {
                                route: sa.name.clone(),
                                other: sb.name.clone(),
                                path: path.to_string(),
                            });
                        }
                    }
                }
            }
            members.sort_by_key(|&i| {
                specs
                    .get(i)
                    .map(|(s, _)| (s.methods.is_none(), usize::MAX - s.headers.len()))
            });
        }

        // Distribute groups into host buckets.
        let mut exact_hosts: HashMap<Box<str>, BucketBuilder> = HashMap::new();
        let mut wildcard_hosts: HashMap<Box<str>, BucketBuilder> = HashMap::new();
        let mut any_host = BucketBuilder::default();
        for (host, path, kind, members) in groups {
            let bucket = match host {
                HostPattern::Any => &mut any_host,
                HostPattern::Exact(h) => exact_hosts.entry(h).or_default(),
                HostPattern::Wildcard(h) => wildcard_hosts.entry(h).or_default(),
            };
            let first = members
                .first()
                .and_then(|&i| specs.get(i))
                .map(|(s, _)| s.name.clone())
                .unwrap_or_default();
            bucket.add(path, kind, members.into(), first, &mut errors);
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        let mut wildcard_hosts: Vec<(Box<[u8]>, Bucket)> = wildcard_hosts
            .into_iter()
            .map(|(h, b)| (h.into_boxed_bytes(), b.finish()))
            .collect();
        wildcard_hosts.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let routes = specs
            .into_iter()
            .map(|(spec, service)| Route {
                matched: MatchedRoute {
                    name: spec.name,
                    template: spec.path,
                },
                service_name: spec.service,
                kind: spec.kind,
                methods: spec.methods,
                headers: spec.headers.into(),
                edit: spec.edit,
                service,
            })
            .collect();
        Ok(Self {
            routes,
            exact_hosts: exact_hosts
                .into_iter()
                .map(|(h, b)| (h.into_boxed_bytes(), b.finish()))
                .collect(),
            wildcard_hosts: wildcard_hosts.into(),
            any_host: any_host.finish(),
        })
    }
}

/// Whether `a` and `b` (same host and path) could match the same request with
/// neither more specific: the same header predicates and either both for every
/// method or with method sets that share a method. A route with a method set is
/// more specific than one without, so that pair is not a duplicate.
fn duplicates(a: &RouteSpec, b: &RouteSpec) -> bool {
    if a.headers != b.headers {
        return false;
    }
    match (&a.methods, &b.methods) {
        (None, None) => true,
        (Some(ma), Some(mb)) => ma.iter().any(|m| mb.contains(m)),
        _ => false,
    }
}

#[derive(Default)]
struct BucketBuilder {
    exact: HashMap<Box<str>, Group>,
    templates: matchit::Router<Group>,
    /// Template → the name of its first route, to name the other side of a conflict.
    template_names: HashMap<Arc<str>, Arc<str>>,
    prefixes: Vec<(Box<str>, Group)>,
}

impl BucketBuilder {
    fn add(
        &mut self,
        path: Arc<str>,
        kind: PathKind,
        group: Group,
        name: Arc<str>,
        errors: &mut Vec<ConfigError>,
    ) {
        match kind {
            PathKind::Exact => {
                self.exact.insert((*path).into(), group);
            }
            PathKind::Prefix => self.prefixes.push(((*path).into(), group)),
            PathKind::Template(_) => match self.templates.insert(&*path, group) {
                Ok(()) => {
                    self.template_names.insert(path, name);
                }
                Err(e) => {
                    let other_path = match e {
                        matchit::InsertError::Conflict { with } => with,
                        other => other.to_string(),
                    };
                    errors.push(ConfigError::Conflict {
                        route: name,
                        path: path.to_string(),
                        other: self
                            .template_names
                            .get(other_path.as_str())
                            .cloned()
                            .unwrap_or_else(|| "?".into()),
                        other_path,
                    });
                }
            },
        }
    }

    fn finish(mut self) -> Bucket {
        self.prefixes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let empty =
            self.exact.is_empty() && self.template_names.is_empty() && self.prefixes.is_empty();
        Bucket {
            exact: self.exact,
            templates: self.templates,
            prefixes: self.prefixes.into(),
            empty,
        }
    }
}
