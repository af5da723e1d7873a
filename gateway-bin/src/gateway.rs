//! Composition: the global edge stack around the route table and the proxy.

use std::collections::HashMap;

use anyhow::{Context as _, anyhow};
use portcullis_body::{BodyLimitLayer, FramingGuard, FramingGuardLayer, LengthRequiredLayer};
use portcullis_core::{MatchedRoute, ServiceName};
use portcullis_forwarded::{Forwarded, ForwardedLayer, TrustedProxies, Via, ViaLayer};
use portcullis_hop::{HopByHop, HopByHopLayer};
use portcullis_proxy::{Proxy, ProxyClient, Upstream};
use tower::Layer;

use crate::config::Config;
use crate::routes::{Route, RouteService, Router};
use crate::server::ListenerLimits;

/// The whole request path of the gateway, outermost layer first.
pub type Stack = FramingGuard<HopByHop<Forwarded<Via<Router>>>>;

/// Builds the stack from a validated config.
pub fn build(config: &Config) -> anyhow::Result<Stack> {
    let client = ProxyClient::new(config.proxy.clone())
        .map_err(|errs| anyhow!("invalid [proxy] settings: {errs:?}"))?;
    let mut proxies = HashMap::new();
    for svc in &config.services {
        let upstreams = svc
            .endpoints
            .iter()
            .map(|e| Upstream::parse(e.get_ref()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("service {}", svc.name.get_ref()))?;
        proxies.insert(
            svc.name.get_ref().clone(),
            Proxy::new(client.clone(), upstreams),
        );
    }
    let mut routes = Vec::new();
    for r in &config.routes {
        let proxy = proxies
            .get(r.service.get_ref())
            .cloned()
            .ok_or_else(|| anyhow!("route refers to unknown service {:?}", r.service.get_ref()))?;
        let max_body = r.max_body.unwrap_or(config.server.max_body);
        // Body limit sits right in front of the proxy: it must see the body stream
        // the proxy reads, and answers 413 when the proxy's upload fails on it.
        let limited = BodyLimitLayer::new(max_body).layer(proxy);
        let svc = if r.length_required {
            RouteService::LengthRequired(LengthRequiredLayer::new().layer(limited))
        } else {
            RouteService::Plain(limited)
        };
        let path = r.path.get_ref().clone();
        let name = r.name.clone().unwrap_or_else(|| path.clone());
        routes.push(Route {
            host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
            path: path.clone(),
            matched: MatchedRoute {
                name: name.into(),
                template: path.into(),
            },
            service: ServiceName::new(r.service.get_ref().as_str()),
            svc,
        });
    }
    let router = Router::new(routes);
    let s = &config.server;
    let trusted = TrustedProxies::parse(s.trusted_proxies.iter().map(|c| c.get_ref().as_str()))
        .context("server.trusted_proxies")?;
    let via = ViaLayer::try_new(s.via.clone()).context("server.via")?;
    // Outermost first. The framing guard runs before anything reads headers, so a
    // smuggling attempt is refused (and the connection closed) before any header
    // is trusted; hop-by-hop removal precedes the forwarding headers so a client
    // cannot make us drop them through `Connection`; Via sits innermost so it
    // marks gateway errors from the proxy as well as forwarded responses.
    Ok(FramingGuardLayer::new().layer(
        HopByHopLayer::new().layer(
            ForwardedLayer::new(trusted)
                .rfc7239(s.forwarded_header)
                .layer(via.layer(router)),
        ),
    ))
}

/// The listener limits of a config.
pub fn limits(config: &Config) -> ListenerLimits {
    let s = &config.server;
    ListenerLimits {
        max_connections: s.max_connections,
        connection_wait: s.connection_wait,
        header_timeout: s.header_timeout,
        max_header_bytes: usize::try_from(s.max_header_bytes).unwrap_or(usize::MAX),
        max_headers: s.max_headers,
        max_uri_bytes: usize::try_from(s.max_uri_bytes).unwrap_or(usize::MAX),
        http2: s.http2,
        shutdown_timeout: s.shutdown_timeout,
    }
}
