//! Tests of the service and its response future.

use std::convert::Infallible;

use http::header::HeaderMap;
use http::{Request, Response, StatusCode, Version};
use tower::{ServiceExt, service_fn};

use crate::{HopByHop, HopByHopLayer};

/// The headers the upstream received, carried back in the response extensions.
#[derive(Clone)]
struct Seen(HeaderMap);

/// Sends `req` through `HopByHop` to an upstream that answers `res`; returns the
/// headers the upstream saw and the response the client got.
async fn exchange(req: Request<()>, res: Response<()>) -> (HeaderMap, Response<()>) {
    let mut res = Some(res);
    let svc = HopByHop::new(service_fn(move |req: Request<()>| {
        let mut res = res.take().expect("service called once");
        res.extensions_mut().insert(Seen(req.headers().clone()));
        async move { Ok::<_, Infallible>(res) }
    }));
    let mut res = svc.oneshot(req).await.expect("infallible");
    let seen = res
        .extensions_mut()
        .remove::<Seen>()
        .expect("upstream saw the request");
    (seen.0, res)
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

const HOP_HEADERS: [(&str, &str); 8] = [
    ("connection", "close"),
    ("keep-alive", "timeout=5, max=100"),
    ("proxy-connection", "keep-alive"),
    ("proxy-authenticate", "Basic realm=\"proxy\""),
    ("proxy-authorization", "Basic Zm9vOmJhcg=="),
    ("te", "gzip"),
    ("transfer-encoding", "chunked"),
    ("upgrade", "websocket"),
];

#[tokio::test]
async fn each_hop_header_is_removed_in_both_directions() {
    for (name, value) in HOP_HEADERS {
        let req = Request::get("/")
            .header("x-before", "1")
            .header(name, value)
            .header("x-after", "2")
            .body(())
            .unwrap();
        let res = Response::builder()
            .header("x-before", "3")
            .header(name, value)
            .header("x-after", "4")
            .body(())
            .unwrap();
        let (seen, res) = exchange(req, res).await;
        assert_eq!(
            pairs(&seen),
            kv(&[("x-before", "1"), ("x-after", "2")]),
            "{name}"
        );
        assert_eq!(
            pairs(res.headers()),
            kv(&[("x-before", "3"), ("x-after", "4")]),
            "{name}"
        );
    }
}

#[tokio::test]
async fn headers_named_by_connection_are_removed_in_both_directions() {
    let req = Request::get("/")
        .header("connection", "close, X-Foo")
        .header("x-foo", "secret")
        .header("x-bar", "kept")
        .body(())
        .unwrap();
    let res = Response::builder()
        .header("Connection", "X-Upstream-Internal")
        .header("x-upstream-internal", "1")
        .header("content-type", "text/plain")
        .body(())
        .unwrap();
    let (seen, res) = exchange(req, res).await;
    assert_eq!(pairs(&seen), kv(&[("x-bar", "kept")]));
    assert_eq!(pairs(res.headers()), kv(&[("content-type", "text/plain")]));
}

#[tokio::test]
async fn multiple_connection_lines_and_messy_lists_are_all_honoured() {
    let req = Request::get("/")
        .header("connection", "x-a")
        .header("x-a", "1")
        .header("x-b", "2")
        .header("x-c", "3")
        .header("connection", "close,,  X-B ,")
        .header("x-d", "4")
        .header("connection", "\tX-D")
        .body(())
        .unwrap();
    let (seen, _) = exchange(req, Response::new(())).await;
    assert_eq!(pairs(&seen), kv(&[("x-c", "3")]));
}

#[tokio::test]
async fn other_headers_keep_their_order() {
    let req = Request::get("/")
        .header("a", "1")
        .header("connection", "close")
        .header("b", "2")
        .header("keep-alive", "timeout=5")
        .header("c", "3")
        .header("b", "4")
        .header("d", "5")
        .body(())
        .unwrap();
    let (seen, _) = exchange(req, Response::new(())).await;
    assert_eq!(
        pairs(&seen),
        kv(&[("a", "1"), ("b", "2"), ("b", "4"), ("c", "3"), ("d", "5")])
    );
}

#[tokio::test]
async fn te_trailers_is_kept_as_exactly_te_trailers() {
    let req = Request::post("/grpc.Service/Method")
        .header("content-type", "application/grpc")
        .header("te", "gzip, Trailers")
        .header("connection", "TE")
        .header("te", "deflate")
        .body(())
        .unwrap();
    let res = Response::builder()
        .header("te", "trailers")
        .header("grpc-encoding", "identity")
        .body(())
        .unwrap();
    let (seen, res) = exchange(req, res).await;
    assert_eq!(
        pairs(&seen),
        kv(&[("content-type", "application/grpc"), ("te", "trailers")])
    );
    assert_eq!(pairs(res.headers()), kv(&[("grpc-encoding", "identity")]));
}

fn websocket_request(version: Version, connection: &str) -> Request<()> {
    Request::get("/chat")
        .version(version)
        .header("host", "example.com")
        .header("connection", connection)
        .header("upgrade", "websocket")
        .header("x-foo", "hop")
        .header("keep-alive", "timeout=5")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap()
}

fn switching_protocols(connection: Option<&str>) -> Response<()> {
    let mut res = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    if let Some(connection) = connection {
        res = res.header("connection", connection);
    }
    res.header("upgrade", "websocket")
        .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        .body(())
        .unwrap()
}

#[tokio::test]
async fn real_upgrade_keeps_upgrade_and_sends_connection_upgrade() {
    let req = websocket_request(Version::HTTP_11, "keep-alive, Upgrade, X-Foo");
    let (seen, res) = exchange(req, switching_protocols(Some("Upgrade, x-hop"))).await;
    assert_eq!(
        pairs(&seen),
        kv(&[
            ("host", "example.com"),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ])
    );
    assert_eq!(res.status(), 101);
    assert_eq!(
        pairs(res.headers()),
        kv(&[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ])
    );
}

#[tokio::test]
async fn real_upgrade_101_without_connection_gets_connection_upgrade() {
    let req = websocket_request(Version::HTTP_11, "upgrade");
    let (_, res) = exchange(req, switching_protocols(None)).await;
    let connection: Vec<_> = res.headers().get_all("connection").iter().collect();
    assert_eq!(connection, ["upgrade"]);
    assert_eq!(res.headers()["upgrade"], "websocket");
}

#[tokio::test]
async fn upgrade_request_answered_without_101_loses_upgrade() {
    let req = websocket_request(Version::HTTP_11, "upgrade");
    let res = Response::builder()
        .status(StatusCode::OK)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("content-length", "0")
        .body(())
        .unwrap();
    let (_, res) = exchange(req, res).await;
    assert_eq!(pairs(res.headers()), kv(&[("content-length", "0")]));
}

#[tokio::test]
async fn upgrade_without_connection_option_is_stripped_and_its_101_too() {
    let req = websocket_request(Version::HTTP_11, "keep-alive");
    let (seen, res) = exchange(req, switching_protocols(Some("upgrade"))).await;
    assert!(seen.get("upgrade").is_none());
    assert!(seen.get("connection").is_none());
    assert_eq!(res.status(), 101);
    assert_eq!(
        pairs(res.headers()),
        kv(&[("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")])
    );
}

#[tokio::test]
async fn upgrade_headers_over_http2_or_http10_are_stripped() {
    for version in [Version::HTTP_2, Version::HTTP_10] {
        let req = websocket_request(version, "upgrade");
        let (seen, res) = exchange(req, switching_protocols(Some("upgrade"))).await;
        assert!(seen.get("upgrade").is_none(), "{version:?}");
        assert!(seen.get("connection").is_none(), "{version:?}");
        assert!(res.headers().get("upgrade").is_none(), "{version:?}");
        assert!(res.headers().get("connection").is_none(), "{version:?}");
    }
}

#[tokio::test]
async fn informational_responses_are_stripped_too() {
    let res = Response::builder()
        .status(StatusCode::EARLY_HINTS)
        .header("link", "</style.css>; rel=preload")
        .header("keep-alive", "timeout=5")
        .header("connection", "x-hint")
        .header("x-hint", "1")
        .body(())
        .unwrap();
    let (_, res) = exchange(Request::new(()), res).await;
    assert_eq!(
        pairs(res.headers()),
        kv(&[("link", "</style.css>; rel=preload")])
    );
}

#[tokio::test]
async fn inner_errors_pass_through() {
    let svc = HopByHop::new(service_fn(|_: Request<()>| async {
        Err::<Response<()>, _>("boom")
    }));
    assert_eq!(svc.oneshot(Request::new(())).await.unwrap_err(), "boom");
}

#[tokio::test]
async fn works_inside_an_axum_router() {
    use axum::{Router, body::Body, http::HeaderMap, routing::get};
    use http_body_util::BodyExt;

    async fn handler(headers: HeaderMap) -> ([(&'static str, &'static str); 3], String) {
        let names: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
        (
            [
                ("connection", "x-internal"),
                ("x-internal", "1"),
                ("x-public", "2"),
            ],
            names.join(","),
        )
    }
    let app = Router::new()
        .route("/", get(handler))
        .layer(HopByHopLayer::new());
    let req = Request::get("/")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("connection", "x-foo")
        .header("x-foo", "1")
        .header("x-bar", "2")
        .header("te", "trailers")
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("connection").is_none());
    assert!(res.headers().get("x-internal").is_none());
    assert_eq!(res.headers()["x-public"], "2");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"x-bar,te");
}

#[tokio::test]
async fn trailer_declaration_is_kept_both_ways() {
    let req = Request::post("/")
        .header("trailer", "grpc-status")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let svc = tower::Layer::layer(
        &HopByHopLayer::new(),
        service_fn(|req: Request<()>| async move {
            assert_eq!(req.headers()["trailer"], "grpc-status");
            Ok::<_, Infallible>(
                Response::builder()
                    .header("trailer", "grpc-status, grpc-message")
                    .body(())
                    .unwrap(),
            )
        }),
    );
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["trailer"], "grpc-status, grpc-message");
}

#[tokio::test]
async fn trailing_and_interleaved_hop_headers_keep_the_order_of_the_rest() {
    // Hop-by-hop headers last (the fast path) and in the middle (the rebuild).
    for hop_last in [true, false] {
        let mut b = Response::builder().header("a", "1").header("b", "2");
        if !hop_last {
            b = b.header("keep-alive", "timeout=5");
        }
        b = b.header("c", "3").header("d", "4");
        b = b
            .header("connection", "keep-alive, x-named")
            .header("x-named", "gone");
        if hop_last {
            b = b.header("keep-alive", "timeout=5");
        }
        let res = b.body(()).unwrap();
        let svc = tower::Layer::layer(
            &HopByHopLayer::new(),
            service_fn(move |_req: Request<()>| {
                let res = res.clone();
                async move { Ok::<_, Infallible>(res) }
            }),
        );
        let res = svc
            .oneshot(Request::get("/").body(()).unwrap())
            .await
            .unwrap();
        let names: Vec<&str> = res.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"], "hop_last = {hop_last}");
    }
}
