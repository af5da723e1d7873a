//! A small static route table: host, then the longest matching path.
//!
//! TODO(#3): replaced by `portcullis-router` (templates, methods, headers, filters).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use portcullis_core::{Cause, ErrorResponse, MatchedRoute, ServiceName};
use portcullis_proxy::BoxError;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

/// Response body of everything below the router.
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// The service behind one route.
pub type RouteService = BoxCloneSyncService<Request<Incoming>, Response<BoxBody>, Infallible>;

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
    let raw = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    // Strip a port, keeping bracketed IPv6 literals whole.
    Some(match raw.rfind(':') {
        Some(i) if !raw.ends_with(']') => raw.get(..i).unwrap_or(raw),
        _ => raw,
    })
}

impl Service<Request<Incoming>> for Router {
    type Response = Response<BoxBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        match self.find(&req) {
            Some(route) => {
                req.extensions_mut().insert(route.matched.clone());
                req.extensions_mut().insert(route.service.clone());
                Box::pin(route.svc.clone().oneshot(req))
            }
            None => {
                let res = ErrorResponse::for_request(Cause::NoRoute, &req)
                    .build()
                    .map(|b| b.map_err(|e| match e {}).boxed_unsync());
                Box::pin(std::future::ready(Ok(res)))
            }
        }
    }
}
