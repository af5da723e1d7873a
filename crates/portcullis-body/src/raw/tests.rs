use super::*;

const OK: RawHeadVerdict = RawHeadVerdict::Ok;

fn bad(cause: Cause) -> impl Fn(&RawHeadVerdict) -> bool {
    move |v| matches!(v, RawHeadVerdict::Bad { cause: c, .. } if *c == cause)
}

/// Verdicts and passthrough state after feeding `chunks` in order.
fn run(chunks: &[&[u8]]) -> (Vec<RawHeadVerdict>, bool) {
    let mut inspector = HeadInspector::new(8 * 1024);
    for chunk in chunks {
        inspector.feed(chunk);
    }
    let mut verdicts = Vec::new();
    while let Some(v) = inspector.next_verdict() {
        verdicts.push(v);
    }
    (verdicts, inspector.is_passthrough())
}

/// Feeds `stream` at once, then split at every point, at every pair of points
/// and byte by byte, and checks that every split gives the same result.
fn inspect(stream: &[u8]) -> (Vec<RawHeadVerdict>, bool) {
    let whole = run(&[stream]);
    for i in 0..=stream.len() {
        let (a, b) = stream.split_at(i);
        assert_eq!(run(&[a, b]), whole, "split at {i}");
        for j in i..=stream.len() {
            let (b, c) = stream.split_at(j);
            let (a, b) = b.split_at(i);
            assert_eq!(run(&[a, b, c]), whole, "split at {i} and {j}");
        }
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run(&bytes), whole, "byte by byte");
    whole
}

fn single_bad(stream: &[u8], cause: Cause, reason: &'static str) {
    let (verdicts, passthrough) = inspect(stream);
    assert_eq!(
        verdicts,
        vec![RawHeadVerdict::Bad { cause, reason }],
        "{}",
        String::from_utf8_lossy(stream)
    );
    assert!(passthrough, "a bad head ends inspection");
}

#[test]
fn content_length_with_transfer_encoding_either_order() {
    single_bad(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Cause::BadFraming,
        "content-length with transfer-encoding",
    );
    single_bad(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: a\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        Cause::BadFraming,
        "content-length with transfer-encoding",
    );
}

#[test]
fn transfer_encoding_with_trailing_whitespace_is_bad() {
    for te in ["chunked\t", "chunked ", "chunked \t"] {
        let head = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n");
        single_bad(
            head.as_bytes(),
            Cause::BadFraming,
            "transfer-encoding other than chunked",
        );
    }
}

#[test]
fn transfer_encoding_other_than_chunked_is_bad() {
    for te in ["chunked, chunked", "gzip, chunked", "gzip", "identity", ""] {
        let head = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n");
        single_bad(
            head.as_bytes(),
            Cause::BadFraming,
            "transfer-encoding other than chunked",
        );
    }
    single_bad(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        Cause::BadFraming,
        "duplicate transfer-encoding",
    );
    single_bad(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        Cause::BadFraming,
        "transfer-encoding on http/1.0",
    );
}

#[test]
fn transfer_encoding_chunked_any_case_with_leading_space_is_ok() {
    let (verdicts, passthrough) =
        inspect(b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding:\t ChUnKeD\r\n\r\n0\r\n\r\n");
    assert_eq!(verdicts, vec![OK]);
    assert!(!passthrough);
}

#[test]
fn content_length_forms() {
    single_bad(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        Cause::BadFraming,
        "duplicate content-length",
    );
    single_bad(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\nabc",
        Cause::BadFraming,
        "duplicate content-length",
    );
    single_bad(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
        Cause::BadFraming,
        "duplicate content-length",
    );
    for cl in ["3\t", "+3", "-1", "0x3", "", "12345678901234567890", "3 3"] {
        let head = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\n");
        single_bad(head.as_bytes(), Cause::BadFraming, "invalid content-length");
    }
    let (verdicts, _) = inspect(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t 3 \r\n\r\nabc");
    assert_eq!(verdicts, vec![OK]);
}

#[test]
fn malformed_header_lines_are_bad_requests() {
    let cases: [(&[u8], &str); 7] = [
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "invalid header name"),
        (
            b"GET / HTTP/1.1\r\nHost\r\n\r\n",
            "header line without colon",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\n  b\r\n\r\n",
            "obsolete line folding",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
            "bare cr in request head",
        ),
        (
            b"GET / HTTP/1.1\r\nX: a\0b\r\nHost: a\r\n\r\n",
            "control byte in header value",
        ),
        (
            b"GET / HTTP/1.1\r\nX: a\x7f\r\nHost: a\r\n\r\n",
            "control byte in header value",
        ),
        (
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            "malformed request line",
        ),
    ];
    for (stream, reason) in cases {
        single_bad(stream, Cause::BadRequest, reason);
    }
}

#[test]
fn pipelined_requests_are_judged_in_order() {
    let stream: &[u8] = b"\r\n\
        POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world\
        POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value\r\nhello\r\nA ; x=\"y\"\r\n0123456789\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n\
        GET /c HTTP/1.1\nHost: a\n\n\
        DELETE /d HTTP/1.0\r\nContent-Length: 0\r\n\r\n";
    let (verdicts, passthrough) = inspect(stream);
    assert_eq!(verdicts, vec![OK, OK, OK, OK]);
    assert!(!passthrough);
}

#[test]
fn a_request_head_inside_a_body_is_not_a_head() {
    let smuggled =
        "GET /admin HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    let stream = format!(
        "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{smuggled}\
         POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n\
         GET /c HTTP/1.1\r\nHost: a\r\n\r\n",
        smuggled.len(),
        smuggled.len(),
    );
    let (verdicts, passthrough) = inspect(stream.as_bytes());
    assert_eq!(verdicts, vec![OK, OK, OK]);
    assert!(!passthrough);
}

#[test]
fn bad_head_after_good_ones_keeps_order() {
    let stream: &[u8] = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi\
        GET /c HTTP/1.1\r\nHost: a\r\n\r\n";
    let (verdicts, passthrough) = inspect(stream);
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
    assert_eq!(verdicts.first(), Some(&OK));
    assert!(verdicts.get(1).is_some_and(bad(Cause::BadFraming)));
    assert!(passthrough);
}

#[test]
fn http2_preface_goes_passthrough() {
    let (verdicts, passthrough) =
        inspect(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00");
    assert!(verdicts.is_empty());
    assert!(passthrough);
}

#[test]
fn a_refused_upgrade_is_followed_like_any_request() {
    // The upgrade may be refused (no 101): the connection then goes on as
    // HTTP/1.1, so a smuggling attempt after it must still be caught.
    let (verdicts, passthrough) = inspect(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\
          GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    );
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
    assert_eq!(verdicts[0], OK);
    assert!(matches!(
        verdicts[1],
        RawHeadVerdict::Bad {
            cause: Cause::BadFraming,
            ..
        }
    ));
    assert!(passthrough);
}

#[test]
fn stop_ends_tracking_after_a_real_switch() {
    let mut inspector = HeadInspector::new(1024);
    inspector.feed(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nEAR",
    );
    assert_eq!(inspector.next_verdict(), Some(OK));
    inspector.stop();
    inspector.feed(b"LY tunnel bytes\r\n\r\n\x00\xff");
    assert!(inspector.is_passthrough());
    assert!(!inspector.head_overflowed());
    assert_eq!(inspector.next_verdict(), None);
}

#[test]
fn malformed_chunked_body_goes_passthrough() {
    for body in [
        "zz\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5\r\nhelloX\r\n",
        "5;a\nb\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffff\r\n",
    ] {
        let stream = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}GET / HTTP/1.1\r\n\r\n"
        );
        let (verdicts, passthrough) = inspect(stream.as_bytes());
        assert_eq!(verdicts, vec![OK], "{body:?}");
        assert!(passthrough, "{body:?}");
    }
}

#[test]
fn head_over_the_limit_is_too_large() {
    let mut inspector = HeadInspector::new(64);
    inspector.feed(b"GET / HTTP/1.1\r\nHost: a\r\n");
    assert!(!inspector.is_passthrough());
    inspector.feed(&[b'x'; 64]);
    assert!(inspector.is_passthrough());
    assert_eq!(
        inspector.next_verdict(),
        Some(RawHeadVerdict::Bad {
            cause: Cause::HeadersTooLarge,
            reason: "request head too large",
        })
    );
    assert_eq!(inspector.next_verdict(), None);
}

#[test]
fn any_number_of_pipelined_requests_is_followed_in_constant_memory() {
    let one = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut burst = Vec::new();
    for _ in 0..10_000 {
        burst.extend_from_slice(one);
    }
    let mut inspector = HeadInspector::new(1024);
    inspector.feed(&burst);
    assert!(!inspector.is_passthrough());
    for _ in 0..10_000 {
        assert_eq!(inspector.next_verdict(), Some(OK));
    }
    assert_eq!(inspector.next_verdict(), None);
    assert!(std::mem::size_of::<HeadInspector>() <= 128);
}

#[test]
fn oks_before_a_bad_head_come_first() {
    let mut inspector = HeadInspector::new(1024);
    inspector.feed(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    inspector.feed(
        b"POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(inspector.next_verdict(), Some(OK));
    assert_eq!(inspector.next_verdict(), Some(OK));
    assert!(matches!(
        inspector.next_verdict(),
        Some(RawHeadVerdict::Bad {
            cause: Cause::BadFraming,
            ..
        })
    ));
    assert_eq!(inspector.next_verdict(), None);
}

#[test]
fn large_content_length_body_is_skipped_in_bulk() {
    let mut inspector = HeadInspector::new(1024);
    inspector.feed(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n");
    let block = [b'\n'; 1000];
    for _ in 0..1000 {
        inspector.feed(&block);
    }
    inspector.feed(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n");
    assert_eq!(inspector.next_verdict(), Some(OK));
    assert!(
        inspector
            .next_verdict()
            .is_some_and(|v| bad(Cause::BadFraming)(&v))
    );
}

#[test]
fn an_oversize_head_is_flagged_as_overflowed() {
    let mut i = HeadInspector::new(64);
    i.feed(b"GET / HTTP/1.1\r\nHost: x\r\n");
    assert!(!i.head_overflowed());
    i.feed(&[b'a'; 100]);
    assert!(i.head_overflowed());
    assert!(i.is_passthrough());
}
