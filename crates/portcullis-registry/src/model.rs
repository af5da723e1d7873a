//! The registration payloads of the admin API (DESIGN "Contracts").

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The body of `PUT /api/v1/services/{service}`: a service's routes, health check and balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// The routes that lead to this service. At least one.
    pub routes: Vec<RouteSpec>,
    /// The active health check; none when absent. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    /// How requests are spread over the endpoints. Default: `round_robin`.
    #[serde(default)]
    pub balancer: Balancer,
    /// The name of a filter set of the gateway's config (`[[filter_sets.<name>]]`:
    /// auth, header rewrites, limits, timeouts) that every route of the service
    /// goes through. Default: none (no filters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<String>,
}

/// One route of a service, as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The `Host` to match (case-insensitive); any host when absent. Default: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Exact path, prefix (ends in `/`) or template (`/droplets/{id}`).
    pub path: String,
    /// The methods to match; all when absent. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// A prefix removed from the path before forwarding. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
}

/// The active health check of a service, as registered (plain data; the health crate
/// interprets it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSpec {
    /// The path probed. Default: `/healthz`.
    pub path: String,
    /// Time between probes. Default: 5s.
    #[serde(with = "duration_str")]
    pub interval: Duration,
    /// How long one probe may take. Default: 1s.
    #[serde(with = "duration_str")]
    pub timeout: Duration,
    /// The statuses that count as healthy. Default: `[200]`.
    pub expected_status: Vec<u16>,
    /// Headers sent with each probe. Default: none.
    pub headers: BTreeMap<String, String>,
    /// The probe's method. Default: `GET`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Consecutive passes that bring an unhealthy endpoint back, 1..=100. Default: 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    /// Consecutive failures that take a healthy endpoint out, 1..=100. Default: 3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
}

/// The balancing algorithm of a service (R13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Balancer {
    /// Each available endpoint in turn. The default.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin: exact shares of `weight` over a cycle.
    Weighted,
    /// Power of two choices on in-flight requests, with an error penalty.
    LeastRequest,
}

/// The body of `PUT /api/v1/services/{service}/endpoints/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// The upstream's origin: `http(s)://host:port`, nothing else.
    pub url: String,
    /// The lease: the endpoint is removed when not renewed within it.
    /// Between 1s and 1h. Default: 30s.
    #[serde(default = "default_ttl", with = "duration_str")]
    pub ttl: Duration,
    /// The weight for the `weighted` balancer, 1..=1000. Default: 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Free-form labels: at most 32 entries, keys ≤ 64 bytes, values ≤ 256 bytes.
    /// Default: empty.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// The default endpoint lease: 30s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// The shortest accepted endpoint lease: 1s.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// The longest accepted endpoint lease: 1h.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// The largest accepted endpoint weight.
pub const MAX_WEIGHT: u32 = 1000;
/// The most metadata entries an endpoint may carry.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// The longest metadata key, in bytes.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// The longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_LEN: usize = 256;

fn default_ttl() -> Duration {
    DEFAULT_TTL
}

fn default_weight() -> u32 {
    1
}

// === impl HealthSpec ===

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            path: "/healthz".to_owned(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            expected_status: vec![200],
            headers: BTreeMap::new(),
            method: None,
            rise: None,
            fall: None,
        }
    }
}

// === impl EndpointSpec ===

impl EndpointSpec {
    /// An endpoint at `url` with the default lease, weight and no metadata.
    pub fn new(url: impl Into<String>) -> Self {
        EndpointSpec {
            url: url.into(),
            ttl: DEFAULT_TTL,
            weight: 1,
            metadata: BTreeMap::new(),
        }
    }

    /// Sets the lease.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the weight.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

// === impl RouteSpec ===

impl RouteSpec {
    /// A route on `path`, any host, all methods.
    pub fn new(path: impl Into<String>) -> Self {
        RouteSpec {
            host: None,
            path: path.into(),
            methods: None,
            strip_prefix: None,
        }
    }
}

// === impl ServiceSpec ===

impl ServiceSpec {
    /// A service with these routes, no health check and round robin.
    pub fn new(routes: Vec<RouteSpec>) -> Self {
        ServiceSpec {
            routes,
            health: None,
            balancer: Balancer::RoundRobin,
            filters: None,
        }
    }
}

// === impl Balancer ===

impl Balancer {
    /// The snake_case name, as in the JSON payload.
    pub const fn as_str(self) -> &'static str {
        match self {
            Balancer::RoundRobin => "round_robin",
            Balancer::Weighted => "weighted",
            Balancer::LeastRequest => "least_request",
        }
    }
}

/// Durations as human strings (`"30s"`, `"500ms"`, `"5m"`).
pub(crate) mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| D::Error::custom(format_args!("invalid duration {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE_EXAMPLE: &str = r#"{ "routes": [ { "host": "api.example.com",
                  "path": "/droplets/{id}",
                  "methods": ["GET", "POST"],
                  "strip_prefix": "/v1" } ],
    "health": { "path": "/healthz", "interval": "5s", "timeout": "1s",
                "expected_status": [200], "headers": { "X-Forwarded-Proto": "https" } },
    "balancer": "round_robin" }"#;

    const ENDPOINT_EXAMPLE: &str =
        r#"{ "url": "http://10.0.0.5:8080", "ttl": "30s", "weight": 1, "metadata": {} }"#;

    #[test]
    fn service_contract_example_round_trips() {
        let spec: ServiceSpec = serde_json::from_str(SERVICE_EXAMPLE).unwrap();
        assert_eq!(spec.routes.len(), 1);
        assert_eq!(spec.routes[0].host.as_deref(), Some("api.example.com"));
        assert_eq!(spec.routes[0].path, "/droplets/{id}");
        assert_eq!(
            spec.routes[0].methods,
            Some(vec!["GET".to_owned(), "POST".to_owned()])
        );
        assert_eq!(spec.routes[0].strip_prefix.as_deref(), Some("/v1"));
        let health = spec.health.as_ref().unwrap();
        assert_eq!(health.interval, Duration::from_secs(5));
        assert_eq!(health.timeout, Duration::from_secs(1));
        assert_eq!(health.expected_status, vec![200]);
        assert_eq!(health.headers["X-Forwarded-Proto"], "https");
        assert_eq!(spec.balancer, Balancer::RoundRobin);

        let original: serde_json::Value = serde_json::from_str(SERVICE_EXAMPLE).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), original);
    }

    #[test]
    fn endpoint_contract_example_round_trips() {
        let spec: EndpointSpec = serde_json::from_str(ENDPOINT_EXAMPLE).unwrap();
        assert_eq!(spec.url, "http://10.0.0.5:8080");
        assert_eq!(spec.ttl, Duration::from_secs(30));
        assert_eq!(spec.weight, 1);
        assert!(spec.metadata.is_empty());
        let original: serde_json::Value = serde_json::from_str(ENDPOINT_EXAMPLE).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), original);
    }

    #[test]
    fn defaults_apply() {
        let spec: EndpointSpec = serde_json::from_str(r#"{"url":"http://a:1"}"#).unwrap();
        assert_eq!(spec, EndpointSpec::new("http://a:1"));
        let svc: ServiceSpec = serde_json::from_str(r#"{"routes":[{"path":"/"}]}"#).unwrap();
        assert_eq!(svc, ServiceSpec::new(vec![RouteSpec::new("/")]));
        let svc: ServiceSpec =
            serde_json::from_str(r#"{"routes":[],"health":{},"balancer":"least_request"}"#)
                .unwrap();
        assert_eq!(svc.health, Some(HealthSpec::default()));
        assert_eq!(svc.balancer, Balancer::LeastRequest);
        let ms: EndpointSpec =
            serde_json::from_str(r#"{"url":"http://a:1","ttl":"1500ms"}"#).unwrap();
        assert_eq!(ms.ttl, Duration::from_millis(1500));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(serde_json::from_str::<EndpointSpec>(r#"{"url":"x","colour":1}"#).is_err());
        assert!(
            serde_json::from_str::<ServiceSpec>(r#"{"routes":[],"balancer":"random"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<ServiceSpec>(r#"{"routes":[],"health":{"pth":"/"}}"#).is_err()
        );
        let err = serde_json::from_str::<EndpointSpec>(r#"{"url":"x","ttl":"soon"}"#).unwrap_err();
        assert!(
            err.to_string().contains("invalid duration \"soon\""),
            "{err}"
        );
    }
}
