//! A small static route table: host, then the longest matching path.
//!
//! TODO(#3): replaced by `portcullis-router` (templates, methods, headers, filters).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use portcullis_body::{BodyLimit, LengthRequired, ResponseBody};
use portcullis_core::{Cause, ErrorResponse, MatchedRoute, ServiceName};
use portcullis_proxy::{Proxy, ProxyBody};
use tower::Service;

/// The proxy behind its body limit: every route has one.
pub type Limited = BodyLimit<Proxy>;

/// Response body of everything below the router. Concrete (not boxed): a route
/// without `length_required` wraps its body in the outer `Inner` variant, and the
/// router's own 404 uses the outer `Error` variant.
pub type RouteBody = ResponseBody<ResponseBody<ProxyBody>>;

/// The service behind one route: the proxy, its body limit, and optionally the
/// 411 check. An enum rather than a boxed service: no allocation per request.
#[derive(Clone, Debug)]
pub enum RouteService {
    /// Body limit, then proxy.
    Plain(Limited),
    /// 411 for bodies without `Content-Length`, body limit, then proxy.
    LengthRequired(LengthRequired<Limited>),
}

type PlainFuture = <Limited as Service<Request<Incoming>>>::Future;
type LengthRequiredFuture = <LengthRequired<Limited> as Service<Request<Incoming>>>::Future;

pin_project_lite::pin_project! {
    /// The future of [`Router`] and [`RouteService`].
    pub struct RouteFuture {
        #[pin]
        kind: Kind,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind {
        Plain { #[pin] fut: PlainFuture },
        LengthRequired { #[pin] fut: LengthRequiredFuture },
        NoRoute { res: Option<Response<RouteBody>> },
    }
}

impl RouteFuture {
    fn new(kind: Kind) -> Self {
        Self { kind }
    }
}

impl Future for RouteFuture {
    type Output = Result<Response<RouteBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Plain { fut } => fut
                .poll(cx)
                .map_ok(|res| res.map(|body| ResponseBody::Inner { body })),
            KindProj::LengthRequired { fut } => fut.poll(cx),
            KindProj::NoRoute { res } => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Pending,
            },
        }
    }
}

impl Service<Request<Incoming>> for RouteService {
    type Response = Response<RouteBody>;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self {
            RouteService::Plain(s) => Service::<Request<Incoming>>::poll_ready(s, cx),
            RouteService::LengthRequired(s) => Service::<Request<Incoming>>::poll_ready(s, cx),
        }
    }

    fn call(&mut self, req: Request<Incoming>) -> RouteFuture {
        match self {
            RouteService::Plain(s) => RouteFuture::new(Kind::Plain { fut: s.call(req) }),
            RouteService::LengthRequired(s) => {
                RouteFuture::new(Kind::LengthRequired { fut: s.call(req) })
            }
        }
    }
}

/// One route of the table.
#[derive(Clone, Debug)]
pub struct Route {
    /// Lower-case host without port, or any host.
    pub host: Option<String>,
    /// Path; a prefix when it ends in `/`.
    pub path: String,
    /// Name and template, put in request extensions.
    pub matched: MatchedRoute,
    /// The service name, put in request extensions.
    pub service: ServiceName,
    /// What handles matching requests.
    pub svc: RouteService,
}

/// Routes requests to the most specific matching route; 404 `no_route` otherwise.
///
/// Specificity: a route naming the request's host beats a route for any host;
/// among those, an exact path beats a prefix, and a longer prefix a shorter one.
#[derive(Clone, Debug)]
pub struct Router {
    routes: Arc<[Route]>,
}

impl Router {
    /// A router over these routes.
    pub fn new(mut routes: Vec<Route>) -> Self {
        // Most specific first, so the first match wins.
        routes.sort_by_key(|r| {
            (
                r.host.is_none(),
                r.path.ends_with('/'),
                std::cmp::Reverse(r.path.len()),
            )
        });
        Self {
            routes: routes.into(),
        }
    }

    fn find(&self, req: &Request<Incoming>) -> Option<&Route> {
        let host = request_host(req);
        let path = req.uri().path();
        self.routes.iter().find(|r| {
            let host_ok = match (&r.host, host) {
                (None, _) => true,
                (Some(want), Some(h)) => want.eq_ignore_ascii_case(h),
                (Some(_), None) => false,
            };
            host_ok
                && if r.path.ends_with('/') {
                    path.starts_with(r.path.as_str())
                        || path.len() + 1 == r.path.len() && r.path.starts_with(path)
                } else {
                    path == r.path
                }
        })
    }
}

fn request_host<B>(req: &Request<B>) -> Option<&str> {
    // The target's authority first (absolute-form, HTTP/2 :authority), as the
    // proxy and the forwarding headers do (RFC 9112 §3.2.2): a request must be
    // routed by the host it will be delivered to.
    let raw = match req.uri().authority() {
        Some(a) => a.as_str().rsplit('@').next().unwrap_or(a.as_str()),
        None => req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())?,
    };
    // Strip a port, keeping bracketed IPv6 literals whole.
    Some(match raw.rfind(':') {
        Some(i) if !raw.ends_with(']') => raw.get(..i).unwrap_or(raw),
        _ => raw,
    })
}

impl Service<Request<Incoming>> for Router {
    type Response = Response<RouteBody>;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> RouteFuture {
        match self.find(&req) {
            Some(route) => {
                req.extensions_mut().insert(route.matched.clone());
                req.extensions_mut().insert(route.service.clone());
                // Route stacks are always ready: the proxy applies back-pressure
                // by waiting for a connection slot inside its future, never in
                // `poll_ready`, and the body layers delegate to it. So the route's
                // (cheap, allocation-free) clone is called without a readiness wait.
                route.svc.clone().call(req)
            }
            None => {
                let res = ErrorResponse::for_request(Cause::NoRoute, &req)
                    .build()
                    .map(|body| ResponseBody::Error { body });
                RouteFuture::new(Kind::NoRoute { res: Some(res) })
            }
        }
    }
}
