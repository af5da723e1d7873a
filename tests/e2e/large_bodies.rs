//! R1 and R5: large bodies stream both ways with bounded memory.

use tokio::io::AsyncWriteExt;

use crate::support::{Action, Checksum, Client, Framing, Origin, fill_pattern, ok, proxy_to};

const SIZE: u64 = 50 * 1024 * 1024;
/// The gateway's peak resident set must stay below this.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_response_streams_intact_in_bounded_memory() {
    let origin = Origin::start(|_| Action::Stream {
        head: format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\n\r\n")
            .into_bytes(),
        len: SIZE,
    })
    .await;
    let gw = proxy_to(&origin, &[]).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(&crate::support::get("/big")).await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.head.text());
    assert!(res.body.complete, "body cut after {} bytes", res.body.len);
    assert_eq!(res.body.len, SIZE);
    assert_eq!(res.body.sum, Checksum::of_pattern(SIZE), "body corrupted");
    // Either framing is fine as long as the bytes are intact.
    assert!(
        matches!(res.framing, Framing::Length(SIZE) | Framing::Chunked),
        "{:?}",
        res.framing
    );
    let rss = gw.peak_rss_kib();
    assert!(
        rss < RSS_LIMIT_KIB,
        "gateway peak RSS {rss} KiB >= {RSS_LIMIT_KIB} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_chunked_request_streams_intact_in_bounded_memory() {
    let origin = Origin::start(|r| {
        Action::Respond(ok(&format!(
            "{} {:016x} {}",
            r.body.len, r.body.sum.0, r.body.complete
        )))
    })
    .await;
    let gw = proxy_to(&origin, &[]).await;
    let Client { mut r, mut w } = Client::connect(gw.addr).await;
    let writer = tokio::spawn(async move {
        w.write_all(
            b"POST /upload HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await?;
        let mut buf = vec![0u8; 64 * 1024 + 16];
        let mut off = 0u64;
        // Chunks of varying sizes, so chunk boundaries do not line up with anything.
        let mut size = 1usize;
        while off < SIZE {
            let n = (SIZE - off).min(size as u64) as usize;
            let mut chunk = format!("{n:x}\r\n").into_bytes();
            fill_pattern(off, &mut buf[..n]);
            chunk.extend_from_slice(&buf[..n]);
            chunk.extend_from_slice(b"\r\n");
            w.write_all(&chunk).await?;
            off += n as u64;
            size = size * 7 % (64 * 1024) + 1;
        }
        w.write_all(b"0\r\n\r\n").await?;
        Ok::<_, std::io::Error>(w)
    });
    let head = r
        .read_head()
        .await
        .expect("response head")
        .expect("a response");
    let body = r
        .read_body(head.response_framing("POST"))
        .await
        .expect("response body");
    let _w = writer
        .await
        .expect("writer task")
        .expect("writing the request");
    assert_eq!(head.status(), 200, "{}{}", head.text(), body.text());
    let want = format!("{SIZE} {:016x} true", Checksum::of_pattern(SIZE).0);
    assert_eq!(
        body.text(),
        want,
        "origin's view of the body (len checksum complete)"
    );
    let recs = origin.records();
    assert_eq!(recs.len(), 1);
    let rss = gw.peak_rss_kib();
    assert!(
        rss < RSS_LIMIT_KIB,
        "gateway peak RSS {rss} KiB >= {RSS_LIMIT_KIB} KiB"
    );
}
