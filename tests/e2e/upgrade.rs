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

/// Bytes the client sends right behind its upgrade request must not reach the
/// upstream before the upstream switched protocols: until the 101, the upstream
/// is still speaking HTTP/1.1 and would parse them as a second request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_forwarded_before_the_101() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_url = format!("http://{}", listener.local_addr().unwrap());
    let origin = tokio::spawn(async move {
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("gateway connects")
            .unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("head arrives")
                .unwrap();
            assert!(n > 0, "gateway closed before the head ended");
            head.extend_from_slice(&buf[..n]);
        }
        let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let early_in_head_read = head.len() - end;
        // Hold the 101 back a while: nothing more may arrive meanwhile.
        let early = match tokio::time::timeout(Duration::from_millis(400), s.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        s.write_all(SWITCH).await.unwrap();
        let mut tunnel = vec![0u8; 5];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut tunnel))
            .await
            .expect("tunnel bytes arrive after the 101")
            .unwrap();
        (early_in_head_read, early, tunnel)
    });

    let gw = crate::support::Gateway::proxy(&[&origin_url], &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(
        b"GET /ws HTTP/1.1\r\n\
          Host: test.local\r\n\
          Connection: Upgrade\r\n\
          Upgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\nEARLY",
    )
    .await;
    let head = c.head().await;
    assert_eq!(head.status(), 101, "{}", head.text());
    let (in_head_read, before_101, tunnel) = origin.await.unwrap();
    assert_eq!(
        in_head_read, 0,
        "bytes after the upgrade request arrived with it"
    );
    assert_eq!(
        before_101, 0,
        "bytes after the upgrade request arrived before the 101"
    );
    assert_eq!(tunnel, b"EARLY");
}
