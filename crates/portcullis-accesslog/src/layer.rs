//! [`AccessLogLayer`]: builds [`AccessLog`] services.

use std::sync::Arc;

use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, SET_COOKIE, USER_AGENT};
use http::{HeaderMap, HeaderName};
use tower_layer::Layer;

use crate::config::{self, MAX_LOGGED_HEADERS, MAX_REDACTED};
use crate::{AccessLog, AccessLogConfig, ConfigError};

/// Headers whose values are never logged, whatever the configuration says.
const ALWAYS_REDACTED: [HeaderName; 4] = [AUTHORIZATION, COOKIE, SET_COOKIE, PROXY_AUTHORIZATION];

/// Writes one access line per request, at INFO on the `portcullis::access` target.
///
/// See the [crate docs](crate) for the fields, when the line is written, and what
/// is redacted.
#[derive(Debug, Clone)]
#[must_use]
pub struct AccessLogLayer {
    settings: Arc<Settings>,
}

/// The validated configuration shared by every clone of the layer and its services.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) enabled: bool,
    /// Configured headers redacted on top of [`ALWAYS_REDACTED`].
    redact_headers: Vec<HeaderName>,
    /// Headers logged in the `headers` field, each with whether it is redacted.
    pub(crate) logged: Vec<(HeaderName, bool)>,
    /// Query parameter names whose values are redacted.
    pub(crate) redact_query: Vec<Box<[u8]>>,
    /// Whether `user_agent` is logged as `[redacted]`.
    pub(crate) redact_user_agent: bool,
}

// === impl AccessLogLayer ===

impl AccessLogLayer {
    /// A layer that logs every request, redacting only the always-sensitive
    /// headers, with no `headers` field and no query redaction.
    pub fn new() -> Self {
        Self {
            settings: Arc::new(Settings {
                enabled: true,
                redact_headers: Vec::new(),
                logged: Vec::new(),
                redact_query: Vec::new(),
                redact_user_agent: false,
            }),
        }
    }

    /// A layer that writes nothing (its services still mark sensitive headers).
    pub fn disabled() -> Self {
        let mut layer = Self::new();
        Arc::make_mut(&mut layer.settings).enabled = false;
        layer
    }

    /// A layer built from validated configuration; the first mistake is returned.
    pub fn from_config(config: &AccessLogConfig) -> Result<Self, ConfigError> {
        let layer = if config.enabled {
            Self::new()
        } else {
            Self::disabled()
        };
        layer
            .redact_headers(&config.redact_headers)?
            .redact_query_params(&config.redact_query_params)?
            .log_request_headers(&config.log_request_headers)
    }

    /// Headers whose values are logged as `[redacted]`, on top of `Authorization`,
    /// `Cookie`, `Set-Cookie` and `Proxy-Authorization`. Replaces the previous list.
    /// Case-insensitive; at most 64. Default: none.
    pub fn redact_headers<I>(mut self, names: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let names: Vec<I::Item> = names.into_iter().collect();
        let parsed = config::header_names("accesslog.redact_headers", &names, MAX_REDACTED)
            .map_err(first)?;
        let settings = Arc::make_mut(&mut self.settings);
        settings.redact_headers = parsed;
        settings.refresh();
        Ok(self)
    }

    /// Query parameters whose values are logged as `[redacted]`
    /// (`?api_key=abc&x=1` is logged `?api_key=[redacted]&x=1`). Replaces the
    /// previous list. Case-sensitive, compared with the raw name and with its
    /// percent-decoded form; at most 64. Default: none.
    pub fn redact_query_params<I>(mut self, names: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let names: Vec<I::Item> = names.into_iter().collect();
        let parsed =
            config::query_params("accesslog.redact_query_params", &names).map_err(first)?;
        Arc::make_mut(&mut self.settings).redact_query = parsed;
        Ok(self)
    }

    /// Request headers written in the `headers` field, in this order. Replaces the
    /// previous list. Case-insensitive; at most 32. Default: none, and no `headers`
    /// field.
    pub fn log_request_headers<I>(mut self, names: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let names: Vec<I::Item> = names.into_iter().collect();
        let parsed =
            config::header_names("accesslog.log_request_headers", &names, MAX_LOGGED_HEADERS)
                .map_err(first)?;
        let settings = Arc::make_mut(&mut self.settings);
        settings.logged = parsed.into_iter().map(|n| (n, false)).collect();
        settings.refresh();
        Ok(self)
    }
}

fn first(mut errors: Vec<ConfigError>) -> ConfigError {
    // The parsers return `Err` only with at least one error.
    errors.swap_remove(0)
}

impl Default for AccessLogLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog::from_parts(inner, self.settings.clone())
    }
}

// === impl Settings ===

impl Settings {
    /// Recomputes what depends on the redaction list.
    fn refresh(&mut self) {
        let extra = &self.redact_headers;
        for (name, redacted) in &mut self.logged {
            *redacted = ALWAYS_REDACTED.contains(name) || extra.contains(name);
        }
        self.redact_user_agent = self.redact_headers.contains(&USER_AGENT);
    }

    fn is_redacted(&self, name: &HeaderName) -> bool {
        ALWAYS_REDACTED.contains(name) || self.redact_headers.contains(name)
    }

    /// Marks the values of redacted headers as sensitive, so that `Debug` output
    /// hides them and HTTP/2 never indexes them.
    pub(crate) fn mark_sensitive(&self, headers: &mut HeaderMap) {
        for (name, value) in headers.iter_mut() {
            if !value.is_sensitive() && self.is_redacted(name) {
                value.set_sensitive(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_validate_and_mark() {
        let layer = AccessLogLayer::new()
            .log_request_headers(["X-Tenant", "Authorization", "x-api-key"])
            .unwrap()
            .redact_headers(["X-API-Key"])
            .unwrap();
        let logged: Vec<(&str, bool)> = layer
            .settings
            .logged
            .iter()
            .map(|(n, r)| (n.as_str(), *r))
            .collect();
        assert_eq!(
            logged,
            [
                ("x-tenant", false),
                ("authorization", true),
                ("x-api-key", true)
            ]
        );
        assert_eq!(
            AccessLogLayer::new()
                .redact_headers(["ok", "not ok"])
                .unwrap_err()
                .to_string(),
            "accesslog.redact_headers[1] must be a header name, got \"not ok\""
        );
        assert!(AccessLogLayer::new().redact_query_params(["a&b"]).is_err());

        let mut headers = HeaderMap::new();
        headers.append("authorization", "Bearer a".parse().unwrap());
        headers.append("authorization", "Bearer b".parse().unwrap());
        headers.append("x-api-key", "k".parse().unwrap());
        headers.append("x-tenant", "t".parse().unwrap());
        layer.settings.mark_sensitive(&mut headers);
        let flags: Vec<(&str, bool)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.is_sensitive()))
            .collect();
        assert_eq!(
            flags,
            [
                ("authorization", true),
                ("authorization", true),
                ("x-api-key", true),
                ("x-tenant", false)
            ]
        );
    }
}
