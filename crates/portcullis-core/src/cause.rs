use http::StatusCode;

/// Why the gateway answered a request itself (R6).
///
/// Each cause maps to one status code, one `portcullis-error` header value, one
/// JSON `error` field and one metric label: all the same string, [`Cause::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// 400: the request is malformed (no `Host` on HTTP/1.1, bad header bytes).
    BadRequest,
    /// 400: the request's message framing is ambiguous or invalid
    /// (`Content-Length` with `Transfer-Encoding`, duplicate lengths, …).
    BadFraming,
    /// 401: no credentials were presented.
    MissingCredentials,
    /// 403: credentials were presented but are wrong, expired or unknown.
    BadCredentials,
    /// 404: no route matches the request.
    NoRoute,
    /// 405: the gateway does not serve this method (`CONNECT`: it is a reverse
    /// proxy, not a forward proxy).
    MethodNotAllowed,
    /// 408: the client was too slow sending its request.
    ClientTimeout,
    /// 411: the route requires a `Content-Length` and the body was chunked.
    LengthRequired,
    /// 413: the request body is larger than the route allows.
    BodyTooLarge,
    /// 414: the request target is longer than allowed.
    UriTooLong,
    /// 429: a rate limit was reached.
    RateLimited,
    /// 431: the request header section is too large or has too many fields.
    HeadersTooLarge,
    /// 502: the upstream could not be reached (refused, reset, DNS, TLS).
    UpstreamUnreachable,
    /// 502: the upstream answered something that is not a valid HTTP response.
    UpstreamInvalidResponse,
    /// 503: no endpoint of the service is healthy.
    NoHealthyEndpoint,
    /// 503: the upstream's connection cap was reached and the wait timed out.
    UpstreamOverloaded,
    /// 503: the gateway itself is overloaded and shed the request.
    Overloaded,
    /// 504: the upstream did not answer in time.
    UpstreamTimeout,
    /// 503: credentials cannot be checked right now (a JWKS key set that was
    /// never fetched); the client may retry.
    AuthUnavailable,
    /// 503: a rate limit shared through a store (Redis) cannot be checked right
    /// now and the route's policy is to fail closed; the client may retry.
    RateLimitUnavailable,
}

// === impl Cause ===

impl Cause {
    /// Every cause, for documentation tables and metric pre-registration.
    pub const ALL: &'static [Cause] = &[
        Cause::BadRequest,
        Cause::BadFraming,
        Cause::MissingCredentials,
        Cause::BadCredentials,
        Cause::NoRoute,
        Cause::MethodNotAllowed,
        Cause::ClientTimeout,
        Cause::LengthRequired,
        Cause::BodyTooLarge,
        Cause::UriTooLong,
        Cause::RateLimited,
        Cause::HeadersTooLarge,
        Cause::UpstreamUnreachable,
        Cause::UpstreamInvalidResponse,
        Cause::NoHealthyEndpoint,
        Cause::UpstreamOverloaded,
        Cause::Overloaded,
        Cause::UpstreamTimeout,
        Cause::AuthUnavailable,
        Cause::RateLimitUnavailable,
    ];

    /// The status code the gateway answers with.
    pub const fn status(self) -> StatusCode {
        match self {
            Cause::BadRequest | Cause::BadFraming => StatusCode::BAD_REQUEST,
            Cause::MissingCredentials => StatusCode::UNAUTHORIZED,
            Cause::BadCredentials => StatusCode::FORBIDDEN,
            Cause::NoRoute => StatusCode::NOT_FOUND,
            Cause::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Cause::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            Cause::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Cause::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Cause::UriTooLong => StatusCode::URI_TOO_LONG,
            Cause::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Cause::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Cause::UpstreamUnreachable | Cause::UpstreamInvalidResponse => StatusCode::BAD_GATEWAY,
            Cause::NoHealthyEndpoint
            | Cause::UpstreamOverloaded
            | Cause::Overloaded
            | Cause::AuthUnavailable
            | Cause::RateLimitUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Cause::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The stable snake_case name: header value, JSON `error` and metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Cause::BadRequest => "bad_request",
            Cause::BadFraming => "bad_framing",
            Cause::MissingCredentials => "missing_credentials",
            Cause::BadCredentials => "bad_credentials",
            Cause::NoRoute => "no_route",
            Cause::MethodNotAllowed => "method_not_allowed",
            Cause::ClientTimeout => "client_timeout",
            Cause::LengthRequired => "length_required",
            Cause::BodyTooLarge => "body_too_large",
            Cause::UriTooLong => "uri_too_long",
            Cause::RateLimited => "rate_limited",
            Cause::HeadersTooLarge => "headers_too_large",
            Cause::UpstreamUnreachable => "upstream_unreachable",
            Cause::UpstreamInvalidResponse => "upstream_invalid_response",
            Cause::NoHealthyEndpoint => "no_healthy_endpoint",
            Cause::UpstreamOverloaded => "upstream_overloaded",
            Cause::Overloaded => "overloaded",
            Cause::UpstreamTimeout => "upstream_timeout",
            Cause::AuthUnavailable => "auth_unavailable",
            Cause::RateLimitUnavailable => "rate_limit_unavailable",
        }
    }

    /// Whether the client's connection should be closed after this answer.
    ///
    /// True for framing errors and oversize heads: once a request was refused
    /// before its framing was trusted, nothing that follows it on the connection
    /// can be trusted either.
    pub const fn closes_connection(self) -> bool {
        matches!(
            self,
            Cause::BadRequest
                | Cause::BadFraming
                | Cause::BodyTooLarge
                | Cause::ClientTimeout
                | Cause::UriTooLong
                | Cause::HeadersTooLarge
        )
    }

    /// Whether the fault lies with the upstream rather than the client or the gateway.
    pub const fn is_upstream(self) -> bool {
        matches!(
            self,
            Cause::UpstreamUnreachable
                | Cause::UpstreamInvalidResponse
                | Cause::UpstreamOverloaded
                | Cause::UpstreamTimeout
                | Cause::NoHealthyEndpoint
        )
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in Cause::ALL {
            assert!(seen.insert(c.as_str()), "duplicate {c}");
            assert!(
                c.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
            assert!(c.status().is_client_error() || c.status().is_server_error());
        }
    }
}
