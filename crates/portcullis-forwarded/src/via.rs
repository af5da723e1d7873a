//! [`ViaLayer`], [`Via`] and its [`ResponseFuture`]: the `Via` header (RFC 9110 §7.6.3).

use std::future::Future;
use std::net::Ipv6Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, BytesMut};
use http::header::{self, Entry, HeaderMap, HeaderValue};
use http::{Request, Response, Version};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::ConfigError;
use crate::headers::{is_tchar, trim_ows};

/// Appends `<version> <name>` to the `Via` header of requests and responses.
///
/// See the [crate docs](crate#via) for the exact rules.
#[derive(Debug, Clone)]
#[must_use]
pub struct ViaLayer {
    received: Arc<Received>,
}

/// Adds this gateway to the `Via` header of the request and of its response.
///
/// Made by [`ViaLayer`]; see the [crate docs](crate#via).
#[derive(Debug, Clone)]
pub struct Via<S> {
    inner: S,
    received: Arc<Received>,
}

pin_project! {
    /// Response future of [`Via`]: adds the gateway to the response's `Via`.
    ///
    /// Every response gets it, including the error responses of inner layers; an
    /// `Err` passes unchanged. Dropping it drops the inner future.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        received: Arc<Received>,
    }
}

/// The `Via` element for each HTTP version, made once per layer.
#[derive(Debug)]
struct Received {
    name: Box<str>,
    http09: HeaderValue,
    http10: HeaderValue,
    http11: HeaderValue,
    http2: HeaderValue,
    http3: HeaderValue,
}

/// The default `Via` name.
const DEFAULT_NAME: &str = "portcullis";

// === impl ViaLayer ===

impl ViaLayer {
    /// A layer that adds `<version> <name>` to `Via`, for a name fixed at compile time.
    ///
    /// # Panics
    ///
    /// When `name` is neither a token nor `host[:port]`, like
    /// `HeaderName::from_static`: a literal name is a programming error to fix,
    /// not a run-time condition. Use [`ViaLayer::try_new`] for names from
    /// configuration.
    pub fn new(name: &'static str) -> Self {
        match Self::try_new(name) {
            Ok(layer) => layer,
            Err(err) => panic!("ViaLayer::new: {err}"),
        }
    }

    /// A layer that adds `<version> <name>` to `Via`.
    ///
    /// `name` is a pseudonym (an HTTP token such as `portcullis`) or `host[:port]`
    /// (`gw1.example.com:8080`, `[2001:db8::1]:443`), as RFC 9110 §7.6.3 allows.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidViaName`] for anything else, such as an empty name or
    /// one with spaces or commas.
    pub fn try_new(name: impl AsRef<str>) -> Result<Self, ConfigError> {
        let name = name.as_ref();
        if !is_received_by(name) {
            return Err(ConfigError::InvalidViaName {
                value: name.to_owned(),
            });
        }
        let value = |version: &str| {
            HeaderValue::try_from(format!("{version} {name}")).map_err(|_| {
                ConfigError::InvalidViaName {
                    value: name.to_owned(),
                }
            })
        };
        let received = Received {
            name: name.into(),
            http09: value("0.9")?,
            http10: value("1.0")?,
            http11: value("1.1")?,
            http2: value("2")?,
            http3: value("3")?,
        };
        Ok(Self {
            received: Arc::new(received),
        })
    }

    /// The name this layer adds.
    pub fn name(&self) -> &str {
        &self.received.name
    }
}

impl Default for ViaLayer {
    /// A layer with the name `portcullis`.
    fn default() -> Self {
        Self::new(DEFAULT_NAME)
    }
}

impl<S> Layer<S> for ViaLayer {
    type Service = Via<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Via {
            inner,
            received: Arc::clone(&self.received),
        }
    }
}

/// `received-by` of RFC 9110 §7.6.3: a pseudonym (token) or `uri-host [":" port]`.
fn is_received_by(name: &str) -> bool {
    const MAX_LEN: usize = 255;
    if name.is_empty() || name.len() > MAX_LEN {
        return false;
    }
    // A pseudonym, or a host name without a port.
    if name.bytes().all(is_tchar) {
        return true;
    }
    let (host_ok, port) = match name.strip_prefix('[') {
        Some(rest) => {
            let Some((ip, after)) = rest.split_once(']') else {
                return false;
            };
            let port = match after {
                "" => None,
                after => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            (ip.parse::<Ipv6Addr>().is_ok(), port)
        }
        None => {
            let Some((host, port)) = name.rsplit_once(':') else {
                return false;
            };
            (!host.is_empty() && host.bytes().all(is_tchar), Some(port))
        }
    };
    host_ok && port.is_none_or(is_port)
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

// === impl Via ===

impl<S> Via<S> {
    /// Wraps `inner`, adding `name` to `Via`.
    ///
    /// # Panics
    ///
    /// As [`ViaLayer::new`], when `name` is not a valid `Via` name.
    pub fn new(inner: S, name: &'static str) -> Self {
        ViaLayer::new(name).layer(inner)
    }

    /// A [`ViaLayer`], the same as [`ViaLayer::new`].
    ///
    /// # Panics
    ///
    /// As [`ViaLayer::new`].
    pub fn layer(name: &'static str) -> ViaLayer {
        ViaLayer::new(name)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Via<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let value = self.received.for_version(req.version());
        append_via(req.headers_mut(), value);
        ResponseFuture {
            inner: self.inner.call(req),
            received: Arc::clone(&self.received),
        }
    }
}

// === impl ResponseFuture ===

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        let value = this.received.for_version(res.version());
        append_via(res.headers_mut(), value);
        Poll::Ready(Ok(res))
    }
}

// === impl Received ===

impl Received {
    fn for_version(&self, version: Version) -> &HeaderValue {
        match version {
            Version::HTTP_09 => &self.http09,
            Version::HTTP_10 => &self.http10,
            Version::HTTP_2 => &self.http2,
            Version::HTTP_3 => &self.http3,
            _ => &self.http11,
        }
    }
}

/// Appends `value` to the last `Via` line (`<old>, <value>`), or adds the header.
///
/// Earlier lines stay as they are and where they are.
fn append_via(headers: &mut HeaderMap, value: &HeaderValue) {
    match headers.try_entry(header::VIA) {
        Ok(Entry::Occupied(mut entry)) => {
            if let Some(last) = entry.iter_mut().last() {
                *last = joined(last, value);
            }
        }
        Ok(Entry::Vacant(entry)) => {
            if entry.try_insert(value.clone()).is_err() {
                tracing::debug!("header map full, via not added");
            }
        }
        Err(_) => tracing::debug!("header map full, via not added"),
    }
}

/// `<line>, <value>`, or `value` alone when `line` is blank.
fn joined(line: &HeaderValue, value: &HeaderValue) -> HeaderValue {
    let line = trim_ows(line.as_bytes());
    if line.is_empty() {
        return value.clone();
    }
    let mut out = BytesMut::with_capacity(line.len() + 2 + value.len());
    out.put_slice(line);
    out.put_slice(b", ");
    out.put_slice(value.as_bytes());
    // Header-value bytes joined by ", " are header-value bytes.
    HeaderValue::from_maybe_shared(out.freeze()).unwrap_or_else(|_| value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_by_names() {
        for good in [
            "portcullis",
            "gw-1.example.com",
            "gw1.example.com:8080",
            "[2001:db8::1]",
            "[2001:db8::1]:443",
            "10.0.0.1:80",
        ] {
            assert!(is_received_by(good), "{good}");
            assert_eq!(ViaLayer::try_new(good).unwrap().name(), good);
        }
        for bad in [
            "",
            "two words",
            "a,b",
            "host:",
            "host:99999",
            "host:8x",
            ":80",
            "[2001:db8::1",
            "[nope]:80",
            "[2001:db8::1]80",
            "a:b:c",
            "caf\u{e9}",
        ] {
            assert!(!is_received_by(bad), "{bad:?}");
            assert_eq!(
                ViaLayer::try_new(bad).unwrap_err(),
                ConfigError::InvalidViaName {
                    value: bad.to_owned()
                }
            );
        }
        assert!(!is_received_by(&"a".repeat(256)));
    }

    #[test]
    #[should_panic(expected = "ViaLayer::new: forwarded.via_name must be a token")]
    fn new_panics_on_an_invalid_literal() {
        let _ = ViaLayer::new("not valid");
    }

    #[test]
    fn default_is_portcullis() {
        assert_eq!(ViaLayer::default().name(), "portcullis");
    }

    #[test]
    fn append_via_extends_the_last_line_only() {
        let ours = HeaderValue::from_static("1.1 portcullis");
        let mut headers = HeaderMap::new();
        append_via(&mut headers, &ours);
        assert_eq!(headers["via"], "1.1 portcullis");

        let mut headers = HeaderMap::new();
        headers.append(
            "via",
            HeaderValue::from_static("1.0 fred, 1.1 p.example.net"),
        );
        headers.append("x-other", HeaderValue::from_static("1"));
        headers.append("via", HeaderValue::from_static(" 2 cdn "));
        append_via(&mut headers, &ours);
        let lines: Vec<_> = headers.get_all("via").iter().collect();
        assert_eq!(
            lines,
            ["1.0 fred, 1.1 p.example.net", "2 cdn, 1.1 portcullis"]
        );
        let names: Vec<_> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["via", "x-other"]);

        let mut headers = HeaderMap::new();
        headers.append("via", HeaderValue::from_static(""));
        append_via(&mut headers, &ours);
        assert_eq!(headers["via"], "1.1 portcullis");
    }
}
