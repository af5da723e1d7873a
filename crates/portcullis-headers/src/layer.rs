use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{ConfigError, HeaderRules};

/// Applies [`HeaderRules`] to every request before the inner service sees it.
#[derive(Debug, Clone)]
#[must_use]
pub struct RequestHeadersLayer {
    rules: HeaderRules,
}

/// The service of [`RequestHeadersLayer`].
#[derive(Debug, Clone)]
pub struct RequestHeaders<S> {
    inner: S,
    rules: HeaderRules,
}

/// Applies [`HeaderRules`] to every response of the inner service.
#[derive(Debug, Clone)]
#[must_use]
pub struct ResponseHeadersLayer {
    rules: HeaderRules,
}

/// The service of [`ResponseHeadersLayer`].
#[derive(Debug, Clone)]
pub struct ResponseHeaders<S> {
    inner: S,
    rules: HeaderRules,
}

pin_project! {
    /// Future of [`ResponseHeaders`]: edits the response head when it arrives.
    ///
    /// Dropping it drops the inner future.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        rules: HeaderRules,
    }
}

// === impl RequestHeadersLayer ===

impl RequestHeadersLayer {
    /// Applies `rules` to requests.
    pub fn new(rules: HeaderRules) -> Self {
        Self { rules }
    }

    /// Removes every header in `names` from requests: the talk's
    /// "blacklisted headers" filter.
    pub fn deny<I, N>(names: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        let mut rules = HeaderRules::new();
        for n in names {
            rules = rules.remove(n.as_ref())?;
        }
        Ok(Self::new(rules))
    }
}

impl<S> Layer<S> for RequestHeadersLayer {
    type Service = RequestHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestHeaders::new(inner, self.rules.clone())
    }
}

// === impl RequestHeaders ===

impl<S> RequestHeaders<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, rules: HeaderRules) -> Self {
        Self { inner, rules }
    }

    /// A layer applying `rules`.
    pub fn layer(rules: HeaderRules) -> RequestHeadersLayer {
        RequestHeadersLayer::new(rules)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for RequestHeaders<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        self.rules.apply(req.headers_mut());
        self.inner.call(req)
    }
}

// === impl ResponseHeadersLayer ===

impl ResponseHeadersLayer {
    /// Applies `rules` to responses.
    pub fn new(rules: HeaderRules) -> Self {
        Self { rules }
    }
}

impl<S> Layer<S> for ResponseHeadersLayer {
    type Service = ResponseHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseHeaders::new(inner, self.rules.clone())
    }
}

// === impl ResponseHeaders ===

impl<S> ResponseHeaders<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, rules: HeaderRules) -> Self {
        Self { inner, rules }
    }

    /// A layer applying `rules`.
    pub fn layer(rules: HeaderRules) -> ResponseHeadersLayer {
        ResponseHeadersLayer::new(rules)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            rules: self.rules.clone(),
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
        this.rules.apply(res.headers_mut());
        Poll::Ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    #[tokio::test]
    async fn deny_removes_every_named_header_before_the_inner_service() {
        let svc = RequestHeadersLayer::deny(["x-internal", "x-debug"])
            .unwrap()
            .layer(service_fn(|req: Request<()>| async move {
                let seen: Vec<String> = req
                    .headers()
                    .keys()
                    .map(|k| k.as_str().to_owned())
                    .collect();
                Ok::<_, Infallible>(Response::new(seen.join(",")))
            }));
        let req = Request::get("/")
            .header("x-internal", "1")
            .header("x-keep", "2")
            .header("x-debug", "3")
            .header("x-internal", "4")
            .body(())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.body(), "x-keep");
    }

    #[tokio::test]
    async fn response_rules_edit_the_response_head() {
        let rules = HeaderRules::new()
            .remove("server")
            .unwrap()
            .set("x-frame-options", "DENY")
            .unwrap();
        let svc = ResponseHeadersLayer::new(rules).layer(service_fn(|_req: Request<()>| async {
            let mut res = Response::new(());
            res.headers_mut()
                .insert("server", http::HeaderValue::from_static("origin"));
            Ok::<_, Infallible>(res)
        }));
        let res = svc.oneshot(Request::new(())).await.unwrap();
        assert!(res.headers().get("server").is_none());
        assert_eq!(res.headers()["x-frame-options"], "DENY");
    }
}
