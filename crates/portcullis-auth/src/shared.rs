//! What every scheme shares: the decision, the settings behind the layer's
//! `Arc`, credential parsing helpers, and the admit/reject steps.

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use portcullis_core::{Cause, ErrorBody, ErrorResponse, Identity, MatchedRoute};
use tokio::task::JoinHandle;

use crate::api_key::ApiKeys;
use crate::basic::BasicScheme;
use crate::jwt::JwtScheme;
use crate::metrics::AUTH_DECISIONS_TOTAL;

/// The result of checking a request's credentials.
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    /// Authenticated as this identity.
    Allow(Arc<str>),
    /// No credentials for this scheme: 401.
    Missing,
    /// Wrong, expired, unknown or malformed credentials: 403, with a short reason
    /// for the debug log.
    Deny(&'static str),
    /// Credentials cannot be checked now (no key set yet): 503 `auth_unavailable`.
    Unavailable,
    /// No verification slot free in time: 503 `overloaded`.
    Overloaded,
}

/// A decision now, or one computed on a blocking thread.
#[derive(Debug)]
pub(crate) enum Outcome {
    Now(Decision),
    Later(JoinHandle<Decision>),
}

/// A credential in `Authorization: <scheme> <credentials>`.
pub(crate) enum Credential<'a> {
    /// No `Authorization` header, or one for another scheme.
    Missing,
    /// Present but unusable (duplicated).
    Bad(&'static str),
    /// The bytes after the scheme and its spaces.
    Found(&'a [u8]),
}

#[derive(Debug, Clone)]
pub(crate) enum Scheme {
    ApiKey(ApiKeys),
    Basic(BasicScheme),
    Jwt(Box<JwtScheme>),
}

/// The layer's settings, shared by all its services.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) scheme: Scheme,
    pub(crate) identity_header: Option<HeaderName>,
    pub(crate) keep_credentials: bool,
}

// === impl Scheme ===

impl Scheme {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Scheme::ApiKey(_) => "api_key",
            Scheme::Basic(_) => "basic",
            Scheme::Jwt(_) => "jwt",
        }
    }
}

// === impl Shared ===

impl Shared {
    /// Removes client-sent identity headers, then checks the credentials.
    pub(crate) fn check<B>(&self, req: &mut Request<B>) -> Outcome {
        if let Some(name) = &self.identity_header {
            // Always, before anything else: a spoofed identity must never pass.
            // (`remove` drops every value of the header.)
            req.headers_mut().remove(name);
        }
        match &self.scheme {
            Scheme::ApiKey(keys) => Outcome::Now(keys.check(req)),
            Scheme::Basic(basic) => basic.check(req),
            Scheme::Jwt(jwt) => Outcome::Now(jwt.check(req)),
        }
    }

    /// Marks the request as authenticated as `identity` and strips the
    /// credentials; `Err` with a reason when the request must be refused after all.
    pub(crate) fn admit<B>(
        &self,
        req: &mut Request<B>,
        identity: Arc<str>,
    ) -> Result<(), &'static str> {
        if let Some(name) = &self.identity_header {
            let value = HeaderValue::from_str(&identity)
                .map_err(|_| "identity is not a valid header value")?;
            req.headers_mut().insert(name.clone(), value);
        }
        if !self.keep_credentials {
            match &self.scheme {
                Scheme::ApiKey(keys) => keys.strip(req)?,
                Scheme::Basic(_) | Scheme::Jwt(_) => {
                    req.headers_mut().remove(AUTHORIZATION);
                }
            }
        }
        req.extensions_mut().insert(Identity(identity));
        record(req, self.scheme.label(), "allowed");
        Ok(())
    }

    /// The error response for a decision other than `Allow`.
    pub(crate) fn reject<B>(&self, req: &Request<B>, decision: &Decision) -> Response<ErrorBody> {
        let scheme = self.scheme.label();
        let (cause, label) = match decision {
            Decision::Missing => (Cause::MissingCredentials, "missing"),
            Decision::Deny(reason) => {
                tracing::debug!(scheme, reason = *reason, "request denied");
                (Cause::BadCredentials, "denied")
            }
            Decision::Unavailable => {
                tracing::debug!(
                    scheme,
                    reason = "no key set yet",
                    "request not authenticated"
                );
                (Cause::AuthUnavailable, "unavailable")
            }
            Decision::Overloaded => {
                tracing::debug!(scheme, reason = "no verification slot", "request shed");
                (Cause::Overloaded, "unavailable")
            }
            Decision::Allow(_) => {
                // Not reached: callers admit allowed requests. Refuse anyway.
                (Cause::BadCredentials, "denied")
            }
        };
        record(req, scheme, label);
        let mut res = ErrorResponse::for_request(cause, req);
        match cause {
            Cause::MissingCredentials => res = res.www_authenticate(self.challenge()),
            Cause::AuthUnavailable | Cause::Overloaded => res = res.retry_after(1),
            _ => {}
        }
        res.build()
    }

    fn challenge(&self) -> HeaderValue {
        match &self.scheme {
            Scheme::ApiKey(keys) => keys.challenge().clone(),
            Scheme::Basic(basic) => basic.challenge().clone(),
            Scheme::Jwt(jwt) => jwt.challenge().clone(),
        }
    }
}

fn record<B>(req: &Request<B>, scheme: &'static str, decision: &'static str) {
    let route: metrics::SharedString = match req.extensions().get::<MatchedRoute>() {
        Some(m) => metrics::SharedString::from_shared(m.template.clone()),
        None => metrics::SharedString::const_str("unmatched"),
    };
    metrics::counter!(
        AUTH_DECISIONS_TOTAL,
        "route" => route,
        "scheme" => scheme,
        "decision" => decision,
    )
    .increment(1);
}

/// Finds the credentials of `scheme` (lower case) in the `Authorization` header.
pub(crate) fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Credential<'a> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = all.next() else {
        return Credential::Missing;
    };
    if all.next().is_some() {
        return Credential::Bad("more than one authorization header");
    }
    let bytes = value.as_bytes();
    let name_end = bytes.iter().position(|&b| b == b' ').unwrap_or(bytes.len());
    let (name, rest) = bytes.split_at(name_end);
    if !name.eq_ignore_ascii_case(scheme.as_bytes()) {
        return Credential::Missing;
    }
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let (_, credentials) = rest.split_at(start);
    if credentials.is_empty() {
        return Credential::Bad("empty credentials");
    }
    Credential::Found(credentials)
}

/// Headers the identity is never written to. The layer inserts the identity
/// after the gateway's framing guard, hop-by-hop filter and forwarding layer
/// ran, so a framing header here would smuggle a request (R4), and a credential,
/// request-id or forwarding header would be trusted upstream as the gateway's.
const RESERVED_IDENTITY_HEADERS: [&str; 20] = [
    // Framing and hop-by-hop (RFC 9112 §6, RFC 9110 §7.6.1).
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "host",
    // Credentials.
    "authorization",
    "proxy-authorization",
    "cookie",
    // Set or checked by the gateway.
    "x-request-id",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "via",
];

/// Checks an identity header name: not a [reserved](RESERVED_IDENTITY_HEADERS)
/// header, and not `key_header`, the header the API key comes in.
pub(crate) fn check_identity_header(
    name: &HeaderName,
    key_header: Option<&HeaderName>,
) -> Result<(), &'static str> {
    if RESERVED_IDENTITY_HEADERS.contains(&name.as_str()) {
        Err("must not be a framing, hop-by-hop, credential, request-id or forwarding header")
    } else if key_header == Some(name) {
        Err("must differ from the key header")
    } else {
        Ok(())
    }
}

/// Checks a realm: it goes in a quoted string.
pub(crate) fn check_realm(realm: &str) -> Result<(), &'static str> {
    if realm.is_empty() {
        Err("must not be empty")
    } else if realm
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        Ok(())
    } else {
        Err("must be printable ASCII without '\"' or '\\'")
    }
}

/// `<scheme> realm="<realm>"`, for a realm that passed [`check_realm`].
pub(crate) fn challenge(scheme: &str, realm: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{scheme} realm=\"{realm}\""))
        .or_else(|_| HeaderValue::from_str(scheme))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn authorization_parsing() {
        let h = headers(&["Bearer  abc"]);
        assert!(matches!(
            authorization(&h, "bearer"),
            Credential::Found(b"abc")
        ));
        let h = headers(&["bEaReR abc"]);
        assert!(matches!(
            authorization(&h, "bearer"),
            Credential::Found(b"abc")
        ));
        let h = headers(&["Basic abc"]);
        assert!(matches!(authorization(&h, "bearer"), Credential::Missing));
        let h = headers(&["Bearerabc"]);
        assert!(matches!(authorization(&h, "bearer"), Credential::Missing));
        let h = headers(&["Bearer"]);
        assert!(matches!(authorization(&h, "bearer"), Credential::Bad(_)));
        let h = headers(&["Bearer a", "Bearer b"]);
        assert!(matches!(authorization(&h, "bearer"), Credential::Bad(_)));
        assert!(matches!(
            authorization(&headers(&[]), "bearer"),
            Credential::Missing
        ));
    }

    #[test]
    fn realms() {
        assert!(check_realm("staff area").is_ok());
        assert!(check_realm("").is_err());
        assert!(check_realm("a\"b").is_err());
        assert!(check_realm("a\\b").is_err());
        assert!(check_realm("é").is_err());
        assert_eq!(challenge("Basic", "staff"), "Basic realm=\"staff\"");
    }
}
