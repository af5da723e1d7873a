//! [`AuthLayer`]: builds [`Auth`] services.

use std::sync::Arc;

use http::HeaderName;
use tower_layer::Layer;

use crate::shared::{Scheme, Shared};
use crate::{ApiKeys, Auth, AuthConfig, BasicUsers, ConfigError, JwtAuth};

/// Authenticates requests with one scheme: API keys, HTTP Basic or JWT.
///
/// See the [crate docs](crate) for the behaviour, the answers and the ordering.
#[derive(Debug, Clone)]
#[must_use]
pub struct AuthLayer {
    shared: Arc<Shared>,
}

// === impl AuthLayer ===

impl AuthLayer {
    /// API keys in a header or query parameter.
    pub fn api_key(keys: ApiKeys) -> Self {
        Self::with(Scheme::ApiKey(keys))
    }

    /// HTTP Basic against argon2 or bcrypt password hashes.
    pub fn basic(users: BasicUsers) -> Self {
        Self::with(Scheme::Basic(users.build()))
    }

    /// JWT bearer tokens.
    pub fn jwt(jwt: JwtAuth) -> Self {
        Self::with(Scheme::Jwt(Box::new(jwt.build())))
    }

    /// A layer from configuration, validated first (the first mistake is returned;
    /// [`AuthConfig::validate`] lists them all). Reads `pem_file`s.
    ///
    /// A JWT section with a `jwks_url` starts the JWKS task, so it must be called
    /// inside a tokio runtime ([`ConfigError::NoRuntime`] otherwise).
    pub fn from_config(config: &AuthConfig) -> Result<Self, ConfigError> {
        if let Err(errors) = config.validate() {
            return Err(errors
                .into_iter()
                .next()
                .unwrap_or_else(|| ConfigError::missing("auth", "invalid configuration")));
        }
        let (layer, identity_header, keep) = match config {
            AuthConfig::ApiKey(c) => {
                let mut keys = match (&c.header, &c.query) {
                    (Some(h), _) => {
                        ApiKeys::header(HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                            ConfigError::invalid("header", h.as_str(), "is not a valid header name")
                        })?)
                    }
                    (None, Some(q)) => ApiKeys::query(q)?,
                    (None, None) => {
                        return Err(ConfigError::missing(
                            "header",
                            "set exactly one of `header` and `query`",
                        ));
                    }
                };
                for k in &c.keys {
                    keys = keys.sha256_hex(k.identity.as_str(), k.sha256.expose())?;
                }
                (Self::api_key(keys), &c.identity_header, c.keep_credentials)
            }
            AuthConfig::Basic(c) => {
                let mut users = BasicUsers::new(&c.realm)?
                    .cache(c.cache_entries, c.cache_ttl)
                    .verification_wait(c.verification_wait);
                if let Some(n) = c.max_verifications {
                    users = users.max_verifications(n);
                }
                for u in &c.users {
                    users = users.user(&u.name, u.hash.expose())?;
                }
                (Self::basic(users), &c.identity_header, c.keep_credentials)
            }
            AuthConfig::Jwt(c) => {
                let mut jwt = JwtAuth::new()
                    .realm(&c.realm)?
                    .leeway(c.leeway)
                    .identity_claim(c.identity_claim.as_str())
                    .cache(c.cache_entries, c.cache_ttl);
                if let Some(iss) = &c.issuer {
                    jwt = jwt.issuer(iss.as_str());
                }
                for aud in &c.audience {
                    jwt = jwt.audience(aud.as_str());
                }
                for (i, k) in c.keys.iter().enumerate() {
                    jwt = jwt.key(k.load(i)?);
                }
                #[cfg(feature = "jwks")]
                if let Some(url) = &c.jwks_url {
                    jwt = jwt.jwks(url, c.jwks_refresh, c.jwks_timeout)?;
                }
                (Self::jwt(jwt), &c.identity_header, c.keep_credentials)
            }
        };
        let layer = match identity_header {
            Some(h) => {
                layer.identity_header(HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    ConfigError::invalid(
                        "identity_header",
                        h.as_str(),
                        "is not a valid header name",
                    )
                })?)?
            }
            None => layer,
        };
        Ok(layer.keep_credentials(keep))
    }

    /// Forwards the identity upstream in this request header. Client-sent copies
    /// of the header are always removed first, whatever the outcome. An identity
    /// that is not a valid header value (a JWT claim with a line break) is refused
    /// with 403. Default: none.
    ///
    /// The identity is written after the gateway's framing guard, hop-by-hop
    /// filter and forwarding layer ran, so this fails with
    /// [`ConfigError::Invalid`] for a header they or the upstream give a meaning
    /// to: `connection`, `content-length`, `keep-alive`, `proxy-connection`, `te`,
    /// `trailer`, `transfer-encoding`, `upgrade`, `expect`, `host`,
    /// `authorization`, `proxy-authorization`, `cookie`, `x-request-id`,
    /// `forwarded`, `x-forwarded-for`, `x-forwarded-proto`, `x-forwarded-host`,
    /// `x-forwarded-port`, `via`, and the header the API key comes in.
    ///
    /// ```
    /// use http::HeaderName;
    /// use portcullis_auth::{ApiKeys, AuthLayer};
    ///
    /// let keys = || ApiKeys::header(HeaderName::from_static("x-api-key")).key("acme", "k");
    /// let _layer = AuthLayer::api_key(keys())
    ///     .identity_header(HeaderName::from_static("x-portcullis-identity"))?;
    /// assert!(AuthLayer::api_key(keys())
    ///     .identity_header(HeaderName::from_static("transfer-encoding"))
    ///     .is_err());
    /// # Ok::<(), portcullis_auth::ConfigError>(())
    /// ```
    pub fn identity_header(mut self, name: HeaderName) -> Result<Self, ConfigError> {
        let key_header = match &self.shared.scheme {
            Scheme::ApiKey(keys) => keys.header_name(),
            Scheme::Basic(_) | Scheme::Jwt(_) => None,
        };
        crate::shared::check_identity_header(&name, key_header)
            .map_err(|reason| ConfigError::invalid("identity_header", name.as_str(), reason))?;
        Arc::make_mut(&mut self.shared).identity_header = Some(name);
        Ok(self)
    }

    /// Forwards the credentials upstream (the `Authorization` header, the key
    /// header or the key query parameter). Default: false, they are removed.
    pub fn keep_credentials(mut self, keep: bool) -> Self {
        Arc::make_mut(&mut self.shared).keep_credentials = keep;
        self
    }

    fn with(scheme: Scheme) -> Self {
        Self {
            shared: Arc::new(Shared {
                scheme,
                identity_header: None,
                keep_credentials: false,
            }),
        }
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth::new(inner, self)
    }
}
