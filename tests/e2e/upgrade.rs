//! R15: WebSocket upgrades are tunnelled both ways.

use crate::support::{Action, Client, Origin, ok, proxy_to};

const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled() {
    let origin = Origin::start(|r| {
        if r.head.has("upgrade") {
            Action::Upgrade(SWITCH.to_vec())
        } else {
            Action::Respond(ok("no upgrade"))
        }
    })
    .await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(
        b"GET /ws HTTP/1.1\r\n\
          Host: test.local\r\n\
          Connection: Upgrade\r\n\
          Upgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    let head = c.head().await;
    assert_eq!(head.status(), 101, "{}", head.text());
    assert_eq!(
        head.get("upgrade").map(str::to_ascii_lowercase).as_deref(),
        Some("websocket"),
        "{}",
        head.text()
    );
    assert!(
        head.get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{}",
        head.text()
    );
    assert_eq!(
        head.get("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{}",
        head.text()
    );

    // A masked text frame "hello", then a second one: echoed byte for byte.
    let frame: &[u8] = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    c.send(frame).await;
    let back =
        c.r.read_exact_vec(frame.len())
            .await
            .expect("echo through the tunnel");
    assert_eq!(back, frame);
    let more = b"\x00\x01binary\xff\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    c.send(more).await;
    let back =
        c.r.read_exact_vec(more.len())
            .await
            .expect("second echo through the tunnel");
    assert_eq!(back, more);

    let rec = origin.only_record().await;
    let h = &rec.head;
    assert_eq!(h.start, "GET /ws HTTP/1.1", "{}", h.text());
    assert_eq!(h.get_all("upgrade"), ["websocket"], "{}", h.text());
    assert_eq!(
        h.joined("connection")
            .map(|v| v.to_ascii_lowercase())
            .as_deref(),
        Some("upgrade"),
        "{}",
        h.text()
    );
    assert_eq!(
        h.get("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ=="),
        "{}",
        h.text()
    );
    assert_eq!(h.get("sec-websocket-version"), Some("13"), "{}", h.text());
}
