//! R3 and R6: X-Forwarded-* and Via.

use crate::support::{
    Action, Client, Gateway, Origin, exchange, ok, proxy_to, refusing_port, response,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_appended_for_a_trusted_peer() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = proxy_to(&origin, &["--trusted-proxy", "127.0.0.1"]).await;
    let res = exchange(
        &gw,
        b"GET /xff HTTP/1.1\r\nHost: test.local\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    assert_eq!(
        rec.head.get_all("x-forwarded-for"),
        ["203.0.113.9, 127.0.0.1"],
        "{}",
        rec.head.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_replaced_for_an_untrusted_peer() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = proxy_to(&origin, &[]).await;
    let res = exchange(
        &gw,
        b"GET /xff HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.9\r\n\
          X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Port: 443\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    let h = &rec.head;
    assert_eq!(h.get_all("x-forwarded-for"), ["127.0.0.1"], "{}", h.text());
    assert_eq!(h.get_all("x-forwarded-proto"), ["http"], "{}", h.text());
    assert_eq!(
        h.get_all("x-forwarded-host"),
        ["shop.example"],
        "{}",
        h.text()
    );
    let port = gw.addr.port().to_string();
    assert_eq!(
        h.get_all("x-forwarded-port"),
        [port.as_str()],
        "{}",
        h.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_proto_host_and_port_are_set() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = proxy_to(&origin, &[]).await;
    let res = exchange(&gw, b"GET /p HTTP/1.1\r\nHost: api.example:8443\r\n\r\n").await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    let h = &rec.head;
    assert_eq!(h.get("x-forwarded-for"), Some("127.0.0.1"), "{}", h.text());
    assert_eq!(h.get("x-forwarded-proto"), Some("http"), "{}", h.text());
    assert_eq!(
        h.get("x-forwarded-host"),
        Some("api.example:8443"),
        "{}",
        h.text()
    );
    let port = gw.addr.port().to_string();
    assert_eq!(
        h.get("x-forwarded-port"),
        Some(port.as_str()),
        "{}",
        h.text()
    );
    // The Host header itself is forwarded as the client sent it.
    assert_eq!(h.get_all("host"), ["api.example:8443"], "{}", h.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_is_added_to_the_request_and_the_response() {
    let origin = Origin::start(|r| {
        if r.head.target() == "/chain" {
            Action::Respond(response("200 OK", &[("Via", "1.0 fred")], b"ok"))
        } else {
            Action::Respond(ok("ok"))
        }
    })
    .await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(&crate::support::get("/via")).await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(
        res.head.joined("via").as_deref(),
        Some("1.1 portcullis"),
        "{}",
        res.head.text()
    );
    c.send(b"GET /chain HTTP/1.1\r\nHost: test.local\r\nVia: 1.1 edge-lb\r\n\r\n")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(
        res.head.joined("via").as_deref(),
        Some("1.0 fred, 1.1 portcullis"),
        "{}",
        res.head.text()
    );
    let recs = origin.wait_records(2).await;
    assert_eq!(
        recs[0].head.joined("via").as_deref(),
        Some("1.1 portcullis"),
        "{}",
        recs[0].head.text()
    );
    assert_eq!(
        recs[1].head.joined("via").as_deref(),
        Some("1.1 edge-lb, 1.1 portcullis"),
        "{}",
        recs[1].head.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_is_on_gateway_errors() {
    let (_reserved, port) = refusing_port();
    let dead = format!("http://127.0.0.1:{port}");
    let gw = Gateway::proxy(&[&dead], &[]).await;
    let res = exchange(&gw, &crate::support::get("/down")).await;
    assert_eq!(res.status, 502, "{}", res.dump());
    assert_eq!(
        res.head.joined("via").as_deref(),
        Some("1.1 portcullis"),
        "{}",
        res.head.text()
    );
}
