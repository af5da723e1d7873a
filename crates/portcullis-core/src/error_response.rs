use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response};

use crate::{Cause, ErrorBody, ServiceName};

/// The header that marks a response the gateway made itself: `portcullis-error: <cause>`.
pub const PORTCULLIS_ERROR: HeaderName = HeaderName::from_static("portcullis-error");

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What an error response needs from its request (the `x-request-id` header and
/// the [`ServiceName`]), captured without allocating, for layers that may have to
/// answer after the request was handed on.
#[derive(Debug, Clone, Default)]
pub struct ErrorContext {
    request_id: Option<HeaderValue>,
    service: Option<ServiceName>,
}

// === impl ErrorContext ===

impl ErrorContext {
    /// Captures the context of `req`.
    pub fn of<B>(req: &Request<B>) -> Self {
        Self {
            request_id: req.headers().get(X_REQUEST_ID).cloned(),
            service: req.extensions().get::<ServiceName>().cloned(),
        }
    }

    /// An error response for `cause` with this context.
    pub fn error(&self, cause: Cause) -> ErrorResponse {
        let mut e = ErrorResponse::new(cause);
        e.request_id = self
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= MAX_REQUEST_ID_LEN)
            .map(str::to_owned);
        e.service = self.service.as_ref().map(|s| s.0.to_string());
        e
    }
}

/// Request ids longer than this are not echoed.
const MAX_REQUEST_ID_LEN: usize = 200;

/// Builder of a gateway-made error response (R6).
///
/// The response has the cause's status, a `portcullis-error` header, a JSON body
/// `{"error", "status", "request_id", "service"}` (plus `"endpoint"` when the
/// gateway picked one), `Cache-Control: no-store`, and the
/// [`Cause`] in its extensions. Causes that put the connection's framing in doubt
/// ([`Cause::closes_connection`]) also get `Connection: close`.
#[derive(Debug, Clone)]
pub struct ErrorResponse {
    cause: Cause,
    request_id: Option<String>,
    service: Option<String>,
    endpoint: Option<String>,
    retry_after: Option<u64>,
    www_authenticate: Option<HeaderValue>,
}

// === impl ErrorResponse ===

impl ErrorResponse {
    /// An error response for this cause.
    pub fn new(cause: Cause) -> Self {
        Self {
            cause,
            request_id: None,
            service: None,
            endpoint: None,
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// An error response for this cause, with the request id and service taken
    /// from the request (its `x-request-id` header and [`ServiceName`] extension).
    pub fn for_request<B>(cause: Cause, req: &Request<B>) -> Self {
        ErrorContext::of(req).error(cause)
    }

    /// The cause.
    pub fn cause(&self) -> Cause {
        self.cause
    }

    /// Replaces the cause, keeping the request id and service.
    pub fn with_cause(mut self, cause: Cause) -> Self {
        self.cause = cause;
        self
    }

    /// Sets the request id echoed in the body and the `x-request-id` header.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Sets the service named in the body.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Names the upstream endpoint the failed exchange was with, in the body's
    /// `"endpoint"` (absent otherwise).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Adds `Retry-After: <seconds>`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a `WWW-Authenticate` challenge (for 401).
    pub fn www_authenticate(mut self, challenge: HeaderValue) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }

    /// The JSON body.
    pub fn json(&self) -> String {
        let mut out = String::with_capacity(96);
        out.push_str("{\"error\":\"");
        out.push_str(self.cause.as_str());
        out.push_str("\",\"status\":");
        out.push_str(self.cause.status().as_str());
        out.push_str(",\"request_id\":");
        push_json_opt(&mut out, self.request_id.as_deref());
        out.push_str(",\"service\":");
        push_json_opt(&mut out, self.service.as_deref());
        if let Some(endpoint) = &self.endpoint {
            out.push_str(",\"endpoint\":");
            push_json_opt(&mut out, Some(endpoint));
        }
        out.push('}');
        out
    }

    /// Builds the response.
    pub fn build(self) -> Response<ErrorBody> {
        let body = self.json();
        let mut res = Response::new(ErrorBody::new(body));
        *res.status_mut() = self.cause.status();
        let h = res.headers_mut();
        h.insert(
            PORTCULLIS_ERROR,
            HeaderValue::from_static(self.cause.as_str()),
        );
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(id) = self
            .request_id
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            h.insert(X_REQUEST_ID, id);
        }
        if let Some(secs) = self.retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.www_authenticate {
            h.insert(http::header::WWW_AUTHENTICATE, challenge);
        }
        if self.cause.closes_connection() {
            h.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        res.extensions_mut().insert(self.cause);
        res
    }
}

fn push_json_opt(out: &mut String, v: Option<&str>) {
    match v {
        None => out.push_str("null"),
        Some(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => {
                        out.push_str(&format!("\\u{:04x}", c as u32));
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_and_nulls() {
        let r = ErrorResponse::new(Cause::NoRoute).request_id("a\"b\\c\n");
        assert_eq!(
            r.json(),
            r#"{"error":"no_route","status":404,"request_id":"a\"b\\c\u000a","service":null}"#
        );
    }

    #[test]
    fn framing_errors_close_the_connection() {
        let res = ErrorResponse::new(Cause::BadFraming).build();
        assert_eq!(res.status(), 400);
        assert_eq!(res.headers()[CONNECTION], "close");
        let res = ErrorResponse::new(Cause::UpstreamTimeout).build();
        assert!(res.headers().get(CONNECTION).is_none());
    }

    #[test]
    fn takes_request_id_and_service_from_request() {
        let mut req = Request::new(());
        req.headers_mut()
            .insert(X_REQUEST_ID, HeaderValue::from_static("r-1"));
        req.extensions_mut().insert(ServiceName::new("api"));
        let r = ErrorResponse::for_request(Cause::UpstreamUnreachable, &req);
        assert_eq!(
            r.json(),
            r#"{"error":"upstream_unreachable","status":502,"request_id":"r-1","service":"api"}"#
        );
    }
}
