//! Tests of the `Forwarded` and `Via` services.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use http::header::HeaderMap;
use http::{Request, Response, Version};
use portcullis_core::{Cause, ErrorResponse, LocalAddr, PeerAddr, Tls};
use tower::{Layer, ServiceExt, service_fn};

use crate::{Forwarded, ForwardedLayer, TrustedProxies, ViaLayer};

/// The headers the upstream received.
#[derive(Clone)]
struct Seen(HeaderMap);

fn trusted() -> TrustedProxies {
    TrustedProxies::parse(["10.0.0.0/8", "2001:db8:ffff::/48"]).unwrap()
}

/// Sends `req` through `layer` to an upstream that answers 200; returns the headers
/// the upstream saw.
async fn forward(layer: ForwardedLayer, req: Request<()>) -> HeaderMap {
    let svc = layer.layer(service_fn(|req: Request<()>| async move {
        let mut res = Response::new(());
        res.extensions_mut().insert(Seen(req.headers().clone()));
        Ok::<_, Infallible>(res)
    }));
    let res = svc.oneshot(req).await.unwrap();
    res.extensions().get::<Seen>().unwrap().0.clone()
}

fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect()
}

fn kv(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn untrusted_peer_replaces_everything_the_client_claims() {
    let req = Request::get("/")
        .header("host", "api.example.com")
        .header("x-forwarded-for", "1.1.1.1")
        .header("accept", "*/*")
        .header("x-forwarded-for", "2.2.2.2, 3.3.3.3")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-port", "443")
        .extension(PeerAddr(addr("203.0.113.7:50000")))
        .extension(LocalAddr(addr("0.0.0.0:8080")))
        .body(())
        .unwrap();
    let seen = forward(ForwardedLayer::new(trusted()), req).await;
    assert_eq!(
        pairs(&seen),
        kv(&[
            ("host", "api.example.com"),
            ("x-forwarded-for", "203.0.113.7"),
            ("accept", "*/*"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "api.example.com"),
            ("x-forwarded-port", "8080"),
        ])
    );
}

#[tokio::test]
async fn trusted_peer_appends_to_every_xff_line_and_keeps_the_rest() {
    let req = Request::get("/")
        .header("host", "internal:8080")
        .header("x-forwarded-for", "198.51.100.1,  192.0.2.3")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "10.1.1.1")
        .header("x-forwarded-host", "shop.example.com")
        .header("x-forwarded-port", "443")
        .extension(PeerAddr(addr("10.0.0.2:41000")))
        .body(())
        .unwrap();
    let seen = forward(ForwardedLayer::new(trusted()), req).await;
    assert_eq!(
        pairs(&seen),
        kv(&[
            ("host", "internal:8080"),
            (
                "x-forwarded-for",
                "198.51.100.1,  192.0.2.3, 10.1.1.1, 10.0.0.2"
            ),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "shop.example.com"),
            ("x-forwarded-port", "443"),
        ])
    );
}

#[tokio::test]
async fn trusted_peer_without_forwarding_headers_gets_them_set() {
    let req = Request::get("/")
        .header("host", "internal:8443")
        .extension(PeerAddr(addr("[::ffff:10.0.0.2]:41000")))
        .extension(Tls)
        .body(())
        .unwrap();
    let seen = forward(ForwardedLayer::new(trusted()), req).await;
    assert_eq!(
        pairs(&seen),
        kv(&[
            ("host", "internal:8443"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "internal:8443"),
            ("x-forwarded-port", "8443"),
        ])
    );
}

#[tokio::test]
async fn without_peer_xff_and_forwarded_are_removed() {
    for rfc7239 in [false, true] {
        let req = Request::get("/")
            .header("a", "1")
            .header("x-forwarded-for", "1.1.1.1")
            .header("forwarded", "for=1.1.1.1")
            .header("b", "2")
            .header("x-forwarded-host", "evil.example")
            .header("c", "3")
            .body(())
            .unwrap();
        let seen = forward(ForwardedLayer::new(trusted()).rfc7239(rfc7239), req).await;
        assert_eq!(
            pairs(&seen),
            kv(&[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-port", "80"),
            ]),
            "rfc7239 = {rfc7239}"
        );
    }
}

#[tokio::test]
async fn spoofed_forwarded_is_removed_when_the_option_is_off() {
    let req = Request::get("/")
        .header("host", "api.example.com")
        .header("forwarded", "for=6.6.6.6;proto=https")
        .header("forwarded", "for=7.7.7.7")
        .extension(PeerAddr(addr("203.0.113.7:50000")))
        .body(())
        .unwrap();
    let seen = forward(ForwardedLayer::new(trusted()), req).await;
    assert!(seen.get("forwarded").is_none());

    // From a trusted proxy it passes as sent.
    let req = Request::get("/")
        .header("forwarded", "for=6.6.6.6;proto=https")
        .extension(PeerAddr(addr("10.0.0.2:50000")))
        .body(())
        .unwrap();
    let seen = forward(ForwardedLayer::new(trusted()), req).await;
    assert_eq!(seen["forwarded"], "for=6.6.6.6;proto=https");
}

#[tokio::test]
async fn rfc7239_replaces_for_untrusted_and_appends_for_trusted() {
    let req = Request::get("/")
        .header("host", "api.example.com")
        .header("forwarded", "for=6.6.6.6")
        .extension(PeerAddr(addr("203.0.113.7:50000")))
        .extension(Tls)
        .body(())
        .unwrap();
    let seen = forward(ForwardedLayer::new(trusted()).rfc7239(true), req).await;
    let lines: Vec<_> = seen.get_all("forwarded").iter().collect();
    assert_eq!(lines, ["for=203.0.113.7;proto=https;host=api.example.com"]);

    let req = Request::get("/")
        .header("host", "gw.internal")
        .header("forwarded", "for=192.0.2.60;proto=https;host=shop.example")
        .header("forwarded", "for=\"[2001:db8::7]\"")
        .extension(PeerAddr(addr("10.9.9.9:1234")))
        .body(())
        .unwrap();
    let seen = forward(ForwardedLayer::new(trusted()).rfc7239(true), req).await;
    let lines: Vec<_> = seen.get_all("forwarded").iter().collect();
    assert_eq!(
        lines,
        [concat!(
            "for=192.0.2.60;proto=https;host=shop.example, ",
            "for=\"[2001:db8::7]\", ",
            "for=10.9.9.9;proto=http;host=gw.internal"
        )]
    );
}

#[tokio::test]
async fn ipv6_peers_are_formatted_per_header() {
    let req = Request::get("/")
        .header("host", "example.com:8080")
        .extension(PeerAddr(addr("[2001:db8::1]:50000")))
        .body(())
        .unwrap();
    let seen = forward(ForwardedLayer::new(trusted()).rfc7239(true), req).await;
    assert_eq!(seen["x-forwarded-for"], "2001:db8::1");
    assert_eq!(
        seen["forwarded"],
        "for=\"[2001:db8::1]\";proto=http;host=\"example.com:8080\""
    );

    // A trusted IPv6 proxy is appended the same way.
    let req = Request::get("/")
        .header("x-forwarded-for", "192.0.2.1")
        .extension(PeerAddr(addr("[2001:db8:ffff::2]:50000")))
        .body(())
        .unwrap();
    let seen = forward(ForwardedLayer::new(trusted()).rfc7239(true), req).await;
    assert_eq!(seen["x-forwarded-for"], "192.0.2.1, 2001:db8:ffff::2");
    assert_eq!(seen["forwarded"], "for=\"[2001:db8:ffff::2]\";proto=http");
}

#[tokio::test]
async fn x_forwarded_port_from_local_addr_then_host_then_proto() {
    let cases: [(Option<&str>, Option<&str>, bool, &str); 5] = [
        (
            Some("127.0.0.1:9443"),
            Some("example.com:8080"),
            true,
            "9443",
        ),
        (None, Some("example.com:8080"), false, "8080"),
        (None, Some("[2001:db8::1]:8443"), true, "8443"),
        (None, Some("example.com"), true, "443"),
        (None, Some("example.com"), false, "80"),
    ];
    for (local, host, tls, want) in cases {
        let mut req = Request::get("/").extension(PeerAddr(addr("192.0.2.1:1")));
        if let Some(local) = local {
            req = req.extension(LocalAddr(addr(local)));
        }
        if let Some(host) = host {
            req = req.header("host", host);
        }
        if tls {
            req = req.extension(Tls);
        }
        let seen = forward(
            ForwardedLayer::new(TrustedProxies::none()),
            req.body(()).unwrap(),
        )
        .await;
        assert_eq!(seen["x-forwarded-port"], want, "{local:?} {host:?} {tls}");
    }
}

#[tokio::test]
async fn host_comes_from_the_uri_authority_when_there_is_one() {
    let req = Request::get("http://user:secret@origin.example:8081/path")
        .header("host", "other.example")
        .extension(PeerAddr(addr("192.0.2.1:1")))
        .body(())
        .unwrap();
    let seen = forward(ForwardedLayer::new(TrustedProxies::none()), req).await;
    assert_eq!(seen["x-forwarded-host"], "origin.example:8081");
    assert_eq!(seen["x-forwarded-port"], "8081");

    // No host at all: a client-sent X-Forwarded-Host is removed.
    let req = Request::get("/")
        .header("x-forwarded-host", "evil.example")
        .extension(PeerAddr(addr("192.0.2.1:1")))
        .body(())
        .unwrap();
    let seen = forward(ForwardedLayer::new(TrustedProxies::none()), req).await;
    assert!(seen.get("x-forwarded-host").is_none());
}

#[tokio::test]
async fn forwarded_service_new_matches_the_layer() {
    let svc = Forwarded::new(
        service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(
                req.headers()["x-forwarded-for"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            ))
        }),
        TrustedProxies::none(),
    );
    let req = Request::get("/")
        .header("x-forwarded-for", "6.6.6.6")
        .extension(PeerAddr(addr("192.0.2.44:1")))
        .body(())
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().into_body(), "192.0.2.44");
}

/// Sends `req` through a `ViaLayer` to an upstream that answers `res`; returns the
/// upstream's `Via` lines and the client's.
async fn via(req: Request<()>, res: Response<()>) -> (Vec<String>, Vec<String>) {
    let lines = |headers: &HeaderMap| -> Vec<String> {
        headers
            .get_all("via")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    let mut res = Some(res);
    let svc = ViaLayer::new("portcullis").layer(service_fn(move |req: Request<()>| {
        let mut res = res.take().unwrap();
        res.extensions_mut().insert(Seen(req.headers().clone()));
        async move { Ok::<_, Infallible>(res) }
    }));
    let res = svc.oneshot(req).await.unwrap();
    let upstream = lines(&res.extensions().get::<Seen>().unwrap().0);
    (upstream, lines(res.headers()))
}

#[tokio::test]
async fn via_is_added_with_the_message_version() {
    for (version, want) in [
        (Version::HTTP_10, "1.0 portcullis"),
        (Version::HTTP_11, "1.1 portcullis"),
        (Version::HTTP_2, "2 portcullis"),
        (Version::HTTP_3, "3 portcullis"),
    ] {
        let req = Request::get("/").version(version).body(()).unwrap();
        let res = Response::builder().version(version).body(()).unwrap();
        let (upstream, client) = via(req, res).await;
        assert_eq!(upstream, [want]);
        assert_eq!(client, [want]);
    }
}

#[tokio::test]
async fn via_is_appended_to_existing_values() {
    let req = Request::get("/")
        .header("via", "1.0 fred")
        .header("via", "1.1 cdn.example:8080")
        .body(())
        .unwrap();
    let res = Response::builder()
        .version(Version::HTTP_2)
        .header("via", "1.1 upstream-sidecar")
        .body(())
        .unwrap();
    let (upstream, client) = via(req, res).await;
    assert_eq!(
        upstream,
        ["1.0 fred", "1.1 cdn.example:8080, 1.1 portcullis"]
    );
    assert_eq!(client, ["1.1 upstream-sidecar, 2 portcullis"]);
}

#[tokio::test]
async fn via_is_added_to_error_responses_of_inner_layers() {
    let svc = ViaLayer::try_new("gw1.example.com:8080")
        .unwrap()
        .layer(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(ErrorResponse::for_request(Cause::NoRoute, &req).build())
        }));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["portcullis-error"], "no_route");
    assert_eq!(res.headers()["via"], "1.1 gw1.example.com:8080");
}

#[tokio::test]
async fn via_passes_errors_through() {
    let svc = ViaLayer::default().layer(service_fn(|_: Request<()>| async {
        Err::<Response<()>, _>("boom")
    }));
    assert_eq!(svc.oneshot(Request::new(())).await.unwrap_err(), "boom");
}

#[tokio::test]
async fn both_layers_inside_an_axum_router() {
    use axum::{Router, body::Body, http::StatusCode, routing::get};
    use http_body_util::BodyExt;

    async fn handler(headers: HeaderMap) -> (StatusCode, String) {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} | {} | {}",
                get("x-forwarded-for"),
                get("forwarded"),
                get("via")
            ),
        )
    }
    let app = Router::new()
        .route("/", get(handler))
        .layer(ForwardedLayer::new(trusted()).rfc7239(true))
        .layer(ViaLayer::default())
        .layer(tower::util::MapRequestLayer::new(
            |mut req: Request<Body>| {
                req.extensions_mut().insert(PeerAddr(addr("10.0.0.5:1000")));
                req
            },
        ));
    let req = Request::get("/")
        .header("host", "api.example.com")
        .header("x-forwarded-for", "198.51.100.2")
        .header("via", "1.1 edge")
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["via"], "1.1 portcullis");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "198.51.100.2, 10.0.0.5 | for=10.0.0.5;proto=http;host=api.example.com | 1.1 edge, 1.1 portcullis"
    );
}

#[tokio::test]
async fn the_client_addr_extension_is_the_client_ip() {
    async fn client(layer: ForwardedLayer, peer: &str, xff: Option<&str>) -> Option<IpAddr> {
        let svc = layer.layer(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(
                req.extensions()
                    .get::<portcullis_core::ClientAddr>()
                    .map(|c| c.0),
            )
        }));
        let mut req = Request::get("/").header("host", "h");
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x);
        }
        let req = req.extension(PeerAddr(addr(peer))).body(()).unwrap();
        svc.oneshot(req).await.unwrap()
    }
    let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    // A trusted proxy's forwarded client.
    assert_eq!(
        client(
            ForwardedLayer::new(trusted()),
            "10.0.0.2:1",
            Some("198.51.100.9")
        )
        .await,
        ip("198.51.100.9")
    );
    // An untrusted peer's own header is not believed.
    assert_eq!(
        client(
            ForwardedLayer::new(trusted()),
            "203.0.113.7:1",
            Some("198.51.100.9")
        )
        .await,
        ip("203.0.113.7")
    );
}
