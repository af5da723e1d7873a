//! Serde configuration of active and passive health checks.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Active health check of a service's endpoints (the admin API's `"health"` object).
///
/// ```json
/// { "path": "/healthz", "interval": "5s", "timeout": "1s",
///   "expected_status": [200], "headers": { "X-Forwarded-Proto": "https" } }
/// ```
///
/// Every field has a default; durations are human strings (`"500ms"`, `"5s"`).
/// Build checkers only from a config whose [`validate`](Self::validate) passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Origin-form path (and query) probed. Default: `/healthz`.
    pub path: String,
    /// HTTP method of the probe. Default: `GET`.
    pub method: String,
    /// Time between two probes of one endpoint. Default: 5s.
    #[serde(with = "duration_str")]
    pub interval: Duration,
    /// Random spread added to or taken from each interval, so probes of many
    /// endpoints do not line up. Default: 10% of `interval` (when absent).
    #[serde(with = "opt_duration_str", skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Duration>,
    /// Bound on the whole probe: connect, send, response head and the error-body
    /// prefix. Default: 1s.
    #[serde(with = "duration_str")]
    pub timeout: Duration,
    /// Bound on the TCP connect alone (the probe still ends by `timeout`). Default: 1s.
    #[serde(with = "duration_str")]
    pub connect_timeout: Duration,
    /// Statuses that count as a pass. Default: `[200]`.
    pub expected_status: Vec<u16>,
    /// Extra request headers; they replace the probe's `Host` and `User-Agent` when
    /// they name them. A Rails app behind TLS needs `X-Forwarded-Proto: https`.
    /// Default: none.
    pub headers: BTreeMap<String, String>,
    /// Consecutive passes that bring an unhealthy endpoint back. Default: 2.
    pub rise: u32,
    /// Consecutive failures that take a healthy endpoint out. Default: 3.
    pub fall: u32,
}

/// Passive health checking from live traffic (per service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealthConfig {
    /// Consecutive connect errors or 5xx responses that eject an endpoint. Default: 5.
    pub consecutive_failures: u32,
    /// Ejection time of a first ejection; it doubles on each repeat. Default: 30s.
    #[serde(with = "duration_str")]
    pub base_ejection_time: Duration,
    /// Cap on the doubled ejection time. Default: 5m.
    #[serde(with = "duration_str")]
    pub max_ejection_time: Duration,
    /// Never eject more than this share (percent) of a service's endpoints,
    /// counting those out of rotation for failing their active checks. Default: 50.
    pub max_ejected_percent: u8,
}

// === impl HealthCheckConfig ===

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: "/healthz".to_owned(),
            method: "GET".to_owned(),
            interval: Duration::from_secs(5),
            jitter: None,
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            expected_status: vec![200],
            headers: BTreeMap::new(),
            rise: 2,
            fall: 3,
        }
    }
}

/// Headers the probe owns: connection management and framing.
const FORBIDDEN_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

impl HealthCheckConfig {
    /// The jitter in effect: the configured one, or 10% of the interval.
    pub fn effective_jitter(&self) -> Duration {
        self.jitter.unwrap_or(self.interval / 10)
    }

    /// Checks every field and reports all mistakes at once.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        if !self.path.starts_with('/')
            || http::uri::PathAndQuery::try_from(self.path.as_str()).is_err()
        {
            errors.push(ConfigError::InvalidPath {
                value: self.path.clone(),
            });
        }
        if Method::from_bytes(self.method.as_bytes()).is_err() {
            errors.push(ConfigError::InvalidMethod {
                value: self.method.clone(),
            });
        }
        for (key, value) in [
            ("health.interval", self.interval),
            ("health.timeout", self.timeout),
            ("health.connect_timeout", self.connect_timeout),
        ] {
            if value.is_zero() {
                errors.push(ConfigError::ZeroDuration {
                    key,
                    value: humantime::format_duration(value).to_string(),
                });
            }
        }
        if let Some(jitter) = self.jitter {
            if !self.interval.is_zero() && jitter >= self.interval {
                errors.push(ConfigError::JitterTooLarge {
                    value: humantime::format_duration(jitter).to_string(),
                    interval: humantime::format_duration(self.interval).to_string(),
                });
            }
        }
        for (key, value) in [("health.rise", self.rise), ("health.fall", self.fall)] {
            if value == 0 {
                errors.push(ConfigError::ZeroCount { key, value });
            }
        }
        if self.expected_status.is_empty() {
            errors.push(ConfigError::NoExpectedStatus);
        }
        for &value in &self.expected_status {
            if !(100..=599).contains(&value) {
                errors.push(ConfigError::InvalidStatus { value });
            }
        }
        for (name, value) in &self.headers {
            match HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => errors.push(ConfigError::InvalidHeaderName { name: name.clone() }),
                Ok(parsed) if FORBIDDEN_HEADERS.contains(&parsed.as_str()) => {
                    errors.push(ConfigError::ForbiddenHeader { name: name.clone() });
                }
                Ok(_) => {}
            }
            if HeaderValue::from_str(value).is_err() {
                errors.push(ConfigError::InvalidHeaderValue { name: name.clone() });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

// === impl PassiveHealthConfig ===

impl Default for PassiveHealthConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

impl PassiveHealthConfig {
    /// Checks every field and reports all mistakes at once.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        if self.consecutive_failures == 0 {
            errors.push(ConfigError::ZeroCount {
                key: "passive.consecutive_failures",
                value: 0,
            });
        }
        if self.base_ejection_time.is_zero() {
            errors.push(ConfigError::ZeroDuration {
                key: "passive.base_ejection_time",
                value: "0s".to_owned(),
            });
        }
        if self.max_ejection_time < self.base_ejection_time {
            errors.push(ConfigError::EjectionTimeOrder {
                base: humantime::format_duration(self.base_ejection_time).to_string(),
                max: humantime::format_duration(self.max_ejection_time).to_string(),
            });
        }
        if self.max_ejected_percent > 100 {
            errors.push(ConfigError::InvalidPercent {
                value: self.max_ejected_percent,
            });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*value))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

mod opt_duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => s.collect_str(&humantime::format_duration(*value)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_api_contract_parses_with_defaults() {
        let cfg: HealthCheckConfig = serde_json::from_str(
            r#"{ "path": "/healthz", "interval": "5s", "timeout": "1s",
                 "expected_status": [200], "headers": { "X-Forwarded-Proto": "https" } }"#,
        )
        .unwrap();
        assert_eq!(cfg.interval, Duration::from_secs(5));
        assert_eq!(cfg.timeout, Duration::from_secs(1));
        assert_eq!(cfg.method, "GET");
        assert_eq!(cfg.connect_timeout, Duration::from_secs(1));
        assert_eq!((cfg.rise, cfg.fall), (2, 3));
        assert_eq!(cfg.effective_jitter(), Duration::from_millis(500));
        assert_eq!(cfg.headers["X-Forwarded-Proto"], "https");
        assert_eq!(cfg.validate(), Ok(()));
        let back = serde_json::to_value(&cfg).unwrap();
        assert_eq!(back["interval"], "5s");
    }

    #[test]
    fn unknown_field_and_bad_duration_are_rejected() {
        assert!(serde_json::from_str::<HealthCheckConfig>(r#"{ "pth": "/" }"#).is_err());
        assert!(
            serde_json::from_str::<HealthCheckConfig>(r#"{ "interval": "5 parsecs" }"#).is_err()
        );
        let jit: HealthCheckConfig = serde_json::from_str(r#"{ "jitter": "250ms" }"#).unwrap();
        assert_eq!(jit.effective_jitter(), Duration::from_millis(250));
    }

    #[test]
    fn validate_reports_every_mistake() {
        let mut headers = BTreeMap::new();
        headers.insert("Connection".to_owned(), "keep-alive".to_owned());
        headers.insert("bad name".to_owned(), "x".to_owned());
        let cfg = HealthCheckConfig {
            path: "healthz".into(),
            method: "G T".into(),
            interval: Duration::ZERO,
            rise: 0,
            expected_status: vec![42],
            headers,
            ..HealthCheckConfig::default()
        };
        let errors = cfg.validate().unwrap_err();
        assert_eq!(errors.len(), 7, "{errors:?}");
        assert!(errors.contains(&ConfigError::ForbiddenHeader {
            name: "Connection".into()
        }));
        assert_eq!(
            errors[0].to_string(),
            "health.path must be an origin-form path starting with '/', got \"healthz\""
        );
        let passive = PassiveHealthConfig {
            consecutive_failures: 0,
            max_ejected_percent: 101,
            max_ejection_time: Duration::from_secs(1),
            ..PassiveHealthConfig::default()
        };
        assert_eq!(passive.validate().unwrap_err().len(), 3);
        assert_eq!(PassiveHealthConfig::default().validate(), Ok(()));
    }
}
