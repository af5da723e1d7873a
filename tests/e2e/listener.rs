//! R18 and R6: the client-facing listener's limits (URI length, header size and
//! count, header read timeout, connection cap) and the admin listener.
//!
//! Graceful shutdown with idle keep-alive connections is covered by
//! `shutdown::idle_keep_alive_connections_do_not_hold_up_shutdown`.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::support::gateway::EnvChange;
use crate::support::wire::is_cut;
use crate::support::{Action, Client, Gateway, Origin, Record, TempDir, exchange, get, ok};

/// Upper bound on the waits for the gateway to close a connection.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// One service on `origin` for every path.
fn routes(origin: &Origin) -> String {
    format!(
        "[[services]]\nname = \"svc\"\nendpoints = [\"{}\"]\n\n[[routes]]\npath = \"/\"\nservice = \"svc\"\n",
        origin.url()
    )
}

/// Answers with the request target, so a response shows which request it is for.
fn echo_target(r: &Record) -> Action {
    Action::Respond(ok(&format!("target {}", r.head.target())))
}

/// `GET target` with these extra header lines.
fn get_with(target: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut out = format!("GET {target} HTTP/1.1\r\nHost: test.local\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Waits up to [`CLOSE_WAIT`] for the gateway to end the connection without
/// answering: end of stream or reset. Panics if response bytes arrive or the
/// connection stays open.
async fn assert_closed_unanswered(c: &mut Client, what: &str) {
    match tokio::time::timeout(CLOSE_WAIT, c.r.fill()).await {
        Ok(Ok(0)) => {}
        Ok(Err(e)) if is_cut(&e) => {}
        Ok(Ok(_)) => panic!(
            "{what}: the gateway answered instead of closing: {:?}",
            String::from_utf8_lossy(c.r.buffered())
        ),
        Ok(Err(e)) => panic!("{what}: reading failed without a close: {e}"),
        Err(_) => panic!("{what}: the connection was still open after {CLOSE_WAIT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_uri_gets_414_uri_too_long() {
    let origin = Origin::start(echo_target).await;
    let gw = Gateway::run("max_uri_bytes = \"1KiB\"", &routes(&origin)).await;
    let long = format!("/{}", "a".repeat(1999));
    let res = exchange(&gw, &get(&long)).await;
    assert_eq!(res.status, 414, "{}", res.dump());
    assert_eq!(res.cause(), Some("uri_too_long"), "{}", res.dump());
    let json = res.json();
    assert_eq!(json["error"], "uri_too_long", "{}", res.dump());
    assert_eq!(json["status"], 414, "{}", res.dump());
    assert_eq!(
        res.head.get("content-type"),
        Some("application/json"),
        "{}",
        res.head.text()
    );
    origin.assert_untouched().await;

    let short = format!("/{}", "b".repeat(499));
    let res = exchange(&gw, &get(&short)).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), format!("target {short}"));
    assert_eq!(origin.only_record().await.head.target(), short);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_gets_431_headers_too_large() {
    let origin = Origin::start(echo_target).await;
    let gw = Gateway::run("max_header_bytes = \"4KiB\"", &routes(&origin)).await;
    let big = vec![("X-Big".to_owned(), "v".repeat(6000))];
    let res = exchange(&gw, &get_with("/big", &big)).await;
    assert_eq!(res.status, 431, "{}", res.dump());
    assert_eq!(res.cause(), Some("headers_too_large"), "{}", res.dump());
    let json = res.json();
    assert_eq!(json["error"], "headers_too_large", "{}", res.dump());
    assert_eq!(json["status"], 431, "{}", res.dump());
    origin.assert_untouched().await;

    // A head well under the limit passes.
    let small = vec![("X-Small".to_owned(), "v".repeat(1000))];
    let res = exchange(&gw, &get_with("/small", &small)).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let rec = origin.only_record().await;
    assert_eq!(rec.head.get("x-small").map(str::len), Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_get_431_headers_too_large() {
    let origin = Origin::start(echo_target).await;
    let gw = Gateway::run("max_headers = 10", &routes(&origin)).await;
    let many: Vec<_> = (0..20)
        .map(|i| (format!("X-H{i}"), format!("v{i}")))
        .collect();
    let res = exchange(&gw, &get_with("/many", &many)).await;
    assert_eq!(res.status, 431, "{}", res.dump());
    assert_eq!(res.cause(), Some("headers_too_large"), "{}", res.dump());
    let json = res.json();
    assert_eq!(json["error"], "headers_too_large", "{}", res.dump());
    assert_eq!(json["status"], 431, "{}", res.dump());
    origin.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_header_over_max_headers_gets_431_headers_too_large() {
    // Host plus 10 more: 11 fields, one over the limit.
    let origin = Origin::start(echo_target).await;
    let gw = Gateway::run("max_headers = 10", &routes(&origin)).await;
    let many: Vec<_> = (0..10)
        .map(|i| (format!("X-H{i}"), format!("v{i}")))
        .collect();
    let res = exchange(&gw, &get_with("/many", &many)).await;
    assert_eq!(res.status, 431, "{}", res.dump());
    assert_eq!(res.cause(), Some("headers_too_large"), "{}", res.dump());
    assert_eq!(res.json()["error"], "headers_too_large", "{}", res.dump());
    origin.assert_untouched().await;

    // Exactly at the limit passes.
    let res = exchange(&gw, &get_with("/ten", &many[..9])).await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(origin.only_record().await.head.target(), "/ten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_head_is_closed_after_header_timeout() {
    let origin = Origin::start(echo_target).await;
    let gw = Gateway::run("header_timeout = \"500ms\"", &routes(&origin)).await;
    let mut c = Client::connect(gw.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
    // End of stream, a reset, or a 408 then the close: all within the bound.
    let outcome = tokio::time::timeout(CLOSE_WAIT, async {
        loop {
            match c.r.fill().await {
                Ok(0) => return String::from_utf8_lossy(c.r.buffered()).into_owned(),
                Ok(_) => {}
                Err(e) if is_cut(&e) => {
                    return String::from_utf8_lossy(c.r.buffered()).into_owned();
                }
                Err(e) => panic!("reading: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the connection was still open after {CLOSE_WAIT:?}; got {:?}",
            String::from_utf8_lossy(c.r.buffered())
        )
    });
    assert!(
        outcome.is_empty() || outcome.starts_with("HTTP/1.1 408"),
        "the gateway answered something else than 408 before closing: {outcome:?}"
    );
    origin.assert_untouched().await;
}

/// A request on a fresh connection; `None` when the gateway closed it unanswered.
async fn try_exchange(gw: &Gateway, target: &str) -> Option<crate::support::Response> {
    let mut c = Client::connect(gw.addr).await;
    if c.w.write_all(&get(target)).await.is_err() {
        return None;
    }
    c.try_response_to("GET").await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_and_are_closed() {
    let origin = Origin::start(echo_target).await;
    let gw = Gateway::run(
        "max_connections = 2\nconnection_wait = \"100ms\"",
        &routes(&origin),
    )
    .await;
    let mut first = Client::connect(gw.addr).await;
    first.send(&get("/first")).await;
    let res = first.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "target /first");
    let mut second = Client::connect(gw.addr).await;
    second.send(&get("/second")).await;
    let res = second.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "target /second");

    // The kernel accepts the third connection; the gateway sheds it with a 503
    // `overloaded` (best effort, before reading anything) and closes it.
    let mut third = Client::connect(gw.addr).await;
    let res = third.response().await;
    assert_eq!(res.status, 503, "{}", res.dump());
    assert_eq!(res.cause(), Some("overloaded"), "{}", res.dump());
    assert_eq!(
        res.head.get("retry-after"),
        Some("1"),
        "{}",
        res.head.text()
    );
    // The gateway may have closed it already: a failed write is fine.
    let _ = third.w.write_all(&get("/third")).await;
    assert_closed_unanswered(&mut third, "third connection").await;
    assert!(
        !origin.records().iter().any(|r| r.head.target() == "/third"),
        "the shed connection's request reached the origin"
    );
    // The log line may reach us just after the close does.
    let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
    while !gw.logs().contains("connection limit reached") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line for the shed connection:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The first two still work.
    first.send(&get("/first-again")).await;
    let res = first.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "target /first-again");
    second.send(&get("/second-again")).await;
    let res = second.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "target /second-again");

    // Closing one frees a slot: a new connection is served (retrying until the
    // gateway has seen the close).
    drop(first);
    let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
    let res = loop {
        if let Some(res) = try_exchange(&gw, "/fourth").await {
            break res;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no connection was served within {CLOSE_WAIT:?} after a slot was freed:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "target /fourth");

    second.send(&get("/second-last")).await;
    let res = second.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.body.text(), "target /second-last");
}

/// A `run` config with the admin listener on `admin` and state in `state`.
fn admin_config(admin: &str, state: &std::path::Path, origin: &Origin) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"{admin}\"\nstate_dir = {:?}\n\n{}",
        state.display().to_string(),
        routes(origin)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_answers_healthz_and_readyz() {
    let origin = Origin::start(echo_target).await;
    let gw = Gateway::run_with_admin("127.0.0.1:0", "", &routes(&origin)).await;
    let admin = gw.admin_addr();
    assert!(
        gw.logs().contains("admin listening"),
        "no admin listening log line:\n{}",
        gw.logs()
    );

    let mut c = Client::connect(admin).await;
    c.send(&get("/healthz")).await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert!(res.body.text().contains("ok"), "{}", res.dump());
    assert_eq!(res.json()["status"], "ok", "{}", res.dump());

    let mut c = Client::connect(admin).await;
    c.send(&get("/readyz")).await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.dump());
    assert_eq!(res.json()["status"], "ready", "{}", res.dump());

    let mut c = Client::connect(admin).await;
    c.send(&get("/nope")).await;
    assert_eq!(c.response().await.status, 404);

    // The admin listener is not the proxy: the origin saw none of these.
    origin.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_creates_a_private_admin_token_without_the_variable() {
    use std::os::unix::fs::PermissionsExt as _;

    let origin = Origin::start(echo_target).await;
    let dir = TempDir::new();
    let state = dir.0.join("state");
    let admin = "127.0.0.1:0";
    let text = admin_config(admin, &state, &origin);
    let gw = Gateway::run_file_with_env(dir, &text, &[EnvChange::Remove("PORTCULLIS_ADMIN_TOKEN")])
        .await;
    let token = state.join("admin-token");
    let meta = std::fs::metadata(&token)
        .unwrap_or_else(|e| panic!("{}: {e}\nlogs:\n{}", token.display(), gw.logs()));
    assert!(meta.is_file());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "mode {:o}",
        meta.permissions().mode()
    );
    let text = std::fs::read_to_string(&token).expect("read admin-token");
    assert!(
        text.len() >= 32 && text.bytes().all(|b| b.is_ascii_hexdigit()),
        "token {text:?}"
    );
    // The gateway serves as usual.
    let res = exchange(&gw, &get("/after-token")).await;
    assert_eq!(res.status, 200, "{}", res.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_creates_no_token_file_with_the_variable_set() {
    let origin = Origin::start(echo_target).await;
    let dir = TempDir::new();
    let state = dir.0.join("state");
    let admin = "127.0.0.1:0";
    let text = admin_config(admin, &state, &origin);
    let gw = Gateway::run_file_with_env(
        dir,
        &text,
        &[EnvChange::Set("PORTCULLIS_ADMIN_TOKEN", "e2e-secret")],
    )
    .await;
    let token = state.join("admin-token");
    assert!(
        !token.exists(),
        "{} was created although PORTCULLIS_ADMIN_TOKEN is set",
        token.display()
    );
    let res = exchange(&gw, &get("/no-token")).await;
    assert_eq!(res.status, 200, "{}", res.dump());
}

/// A head far past the limits is cut off at the connection (the raw inspector
/// fails the read), so hyper's large body buffer never fills with header bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_head_closes_the_connection() {
    let origin = Origin::start(echo_target).await;
    let gw = Gateway::run(
        "max_header_bytes = \"4KiB\"\nmax_uri_bytes = \"1KiB\"",
        &routes(&origin),
    )
    .await;
    let mut c = Client::connect(gw.addr).await;
    let mut head = b"GET /endless HTTP/1.1\r\nHost: test.local\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'v', 64 * 1024));
    // The gateway may close while we are still writing: ignore write errors.
    let _ = c.w.write_all(&head).await;
    assert_closed_unanswered(&mut c, "a 64 KiB head").await;
    origin.assert_untouched().await;
}
