//! [`AccessLogConfig`]: the serde form of [`AccessLogLayer`](crate::AccessLogLayer).

use http::HeaderName;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Most entries of `log_request_headers`.
pub(crate) const MAX_LOGGED_HEADERS: usize = 32;
/// Most entries of `redact_headers` and of `redact_query_params`.
pub(crate) const MAX_REDACTED: usize = 64;
/// Longest query parameter name to redact, in bytes.
pub(crate) const MAX_QUERY_PARAM_LEN: usize = 128;

/// Access log settings, as read from the `[accesslog]` table of the gateway config.
///
/// ```
/// use portcullis_accesslog::{AccessLogConfig, AccessLogLayer};
/// let config: AccessLogConfig = serde_json::from_str(
///     r#"{"redact_headers": ["x-api-key"], "redact_query_params": ["api_key"],
///         "log_request_headers": ["x-tenant", "x-api-key"]}"#,
/// )?;
/// assert!(config.enabled);
/// assert!(config.validate().is_ok());
/// let layer = AccessLogLayer::from_config(&config)?;
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Whether access lines are written at all. The subscriber's filter for the
    /// `portcullis::access` target at INFO must let them through too.
    /// Default: true.
    pub enabled: bool,
    /// Request headers whose values are always logged as `[redacted]`, on top of
    /// `Authorization`, `Cookie`, `Set-Cookie` and `Proxy-Authorization` (API-key
    /// headers such as `x-api-key`). Case-insensitive; at most 64.
    /// Default: [].
    pub redact_headers: Vec<String>,
    /// Query parameters whose values are logged as `[redacted]`. Names are
    /// case-sensitive and compared with the raw name as sent, and with its
    /// percent-decoded form. At most 64, each 1 to 128 bytes.
    /// Default: [].
    pub redact_query_params: Vec<String>,
    /// Request headers written in the `headers` field of each line (sensitive
    /// ones as `[redacted]`). Case-insensitive; at most 32.
    /// Default: [] (no `headers` field).
    pub log_request_headers: Vec<String>,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            redact_headers: Vec::new(),
            redact_query_params: Vec::new(),
            log_request_headers: Vec::new(),
        }
    }
}

// === impl AccessLogConfig ===

impl AccessLogConfig {
    /// Checks every field and reports all mistakes.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        if let Err(e) = header_names(
            "accesslog.redact_headers",
            &self.redact_headers,
            MAX_REDACTED,
        ) {
            errors.extend(e);
        }
        if let Err(e) = header_names(
            "accesslog.log_request_headers",
            &self.log_request_headers,
            MAX_LOGGED_HEADERS,
        ) {
            errors.extend(e);
        }
        if let Err(e) = query_params("accesslog.redact_query_params", &self.redact_query_params) {
            errors.extend(e);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Parses a list of header names (lower-cased), reporting every bad entry.
pub(crate) fn header_names<N: AsRef<str>>(
    key: &'static str,
    names: &[N],
    max: usize,
) -> Result<Vec<HeaderName>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    if names.len() > max {
        errors.push(ConfigError::TooMany {
            key,
            max,
            value: names.len(),
        });
    }
    let mut out = Vec::with_capacity(names.len().min(max));
    for (i, name) in names.iter().enumerate() {
        match HeaderName::from_bytes(name.as_ref().as_bytes()) {
            Ok(h) => out.push(h),
            Err(_) => errors.push(ConfigError::InvalidHeaderName {
                key: format!("{key}[{i}]"),
                value: name.as_ref().to_owned(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Parses a list of query parameter names, reporting every bad entry.
pub(crate) fn query_params<N: AsRef<str>>(
    key: &'static str,
    names: &[N],
) -> Result<Vec<Box<[u8]>>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    if names.len() > MAX_REDACTED {
        errors.push(ConfigError::TooMany {
            key,
            max: MAX_REDACTED,
            value: names.len(),
        });
    }
    let mut out = Vec::with_capacity(names.len().min(MAX_REDACTED));
    for (i, name) in names.iter().enumerate() {
        let name = name.as_ref();
        let ok = (1..=MAX_QUERY_PARAM_LEN).contains(&name.len())
            && !name
                .chars()
                .any(|c| matches!(c, '&' | '=' | '#' | '?') || c.is_whitespace() || c.is_control());
        if ok {
            out.push(name.as_bytes().into());
        } else {
            errors.push(ConfigError::InvalidQueryParam {
                key: format!("{key}[{i}]"),
                value: name.to_owned(),
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let c: AccessLogConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, AccessLogConfig::default());
        assert!(c.enabled);
        assert!(c.redact_headers.is_empty() && c.log_request_headers.is_empty());
        assert!(c.validate().is_ok());
        let err = serde_json::from_str::<AccessLogConfig>(r#"{"redact_header": []}"#);
        assert!(err.unwrap_err().to_string().contains("unknown field"));
    }

    #[test]
    fn validate_reports_every_mistake() {
        let c = AccessLogConfig {
            enabled: true,
            redact_headers: vec!["x-api-key".into(), "bad header".into()],
            redact_query_params: vec!["".into(), "a=b".into(), "token".into()],
            log_request_headers: (0..33).map(|i| format!("x-h{i}")).collect(),
        };
        let errors = c.validate().unwrap_err();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "accesslog.redact_headers[1] must be a header name, got \"bad header\"",
                "accesslog.log_request_headers may hold at most 32 entries, got 33",
                "accesslog.redact_query_params[0] must be a query parameter name of 1 to 128 \
                 bytes without '&', '=', '#', '?', whitespace or control characters, got \"\"",
                "accesslog.redact_query_params[1] must be a query parameter name of 1 to 128 \
                 bytes without '&', '=', '#', '?', whitespace or control characters, got \"a=b\"",
            ]
        );
    }
}
