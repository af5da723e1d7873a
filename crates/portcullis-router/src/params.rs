use std::ops::Range;
use std::sync::Arc;

use http::uri::PathAndQuery;

/// The path parameters a template route captured, in template order, as raw
/// bytes of the request path (not percent-decoded).
///
/// A request extension, put there by the [`Router`](crate::Router) only when the
/// matched template has parameters. The values come from the path the client
/// sent, before any `strip_prefix` or `rewrite`.
///
/// ```
/// # use portcullis_router::PathParams;
/// fn droplet_id<B>(req: &http::Request<B>) -> Option<&str> {
///     req.extensions().get::<PathParams>()?.get("id")
/// }
/// ```
#[derive(Debug, Clone)]
pub struct PathParams {
    names: Arc<[Arc<str>]>,
    path: PathAndQuery,
    /// Byte ranges of `path`, one per name.
    spans: Vec<Range<usize>>,
}

// === impl PathParams ===

impl PathParams {
    pub(crate) fn new(
        names: Arc<[Arc<str>]>,
        path: PathAndQuery,
        spans: Vec<Range<usize>>,
    ) -> Self {
        Self { names, path, spans }
    }

    /// The raw value of the parameter `name` (`{name}` or `{*name}` in the template).
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.names.iter().position(|n| &**n == name)?;
        let span = self.spans.get(i)?.clone();
        self.path.as_str().get(span)
    }

    /// `(name, raw value)` pairs in template order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.names
            .iter()
            .zip(&self.spans)
            .filter_map(|(n, s)| Some((&**n, self.path.as_str().get(s.clone())?)))
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no parameters (never, for one the router inserted).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}
