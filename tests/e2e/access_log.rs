//! R7 access logs through the binary: one JSON line per request with the route
//! template, redaction of secrets everywhere in the log, and the request id.

use serde_json::Value;

use crate::support::{Action, Gateway, Origin, exchange, ok, refusing_port, response, service};

/// A gateway with `/droplets/{id}` (named `droplets`) and `/` to `origin`, after
/// `extra` top-level TOML.
async fn gateway(origin: &Origin, extra: &str) -> Gateway {
    let rest = format!(
        "{extra}\n{}[[routes]]\nname = \"droplets\"\npath = \"/droplets/{{id}}\"\nservice = \"svc\"\n\n\
         [[routes]]\npath = \"/r\"\nservice = \"svc\"\n",
        service("svc", &origin.url())
    );
    Gateway::run("", &rest).await
}

/// The one access line whose `request_id` is `id`.
fn line_for(lines: &[Value], id: &str) -> Value {
    let found: Vec<&Value> = lines.iter().filter(|l| l["request_id"] == id).collect();
    assert_eq!(found.len(), 1, "access lines for {id}: {lines:#?}");
    found[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_field_is_the_template_and_unmatched_for_404() {
    let origin = Origin::start(|_| Action::Respond(ok("droplet"))).await;
    let gw = gateway(&origin, "").await;
    for (id, target) in [
        ("rid-1", "/droplets/1"),
        ("rid-2", "/droplets/2?x=y"),
        ("rid-3", "/nope"),
    ] {
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: test.local\r\nx-request-id: {id}\r\nUser-Agent: e2e/1\r\n\r\n"
        );
        exchange(&gw, req.as_bytes()).await;
    }
    let lines = gw.wait_access_lines(3).await;
    for (id, path) in [("rid-1", "/droplets/1"), ("rid-2", "/droplets/2?x=y")] {
        let l = line_for(&lines, id);
        assert_eq!(l["route"], "/droplets/{id}", "{l}");
        assert_eq!(l["route_name"], "droplets", "{l}");
        assert_eq!(l["path"], path, "{l}");
        assert_eq!(l["service"], "svc", "{l}");
        assert_eq!(
            l["endpoint"].as_str().map(str::is_empty),
            Some(false),
            "{l}"
        );
        assert_eq!(l["status"], 200, "{l}");
        assert_eq!(l["cause"], "", "{l}");
        assert_eq!(l["method"], "GET", "{l}");
        assert_eq!(l["bytes_out"], 7, "{l}");
        assert_eq!(l["user_agent"], "e2e/1", "{l}");
        assert_eq!(l["http_version"], "HTTP/1.1", "{l}");
    }
    let l = line_for(&lines, "rid-3");
    assert_eq!(l["route"], "unmatched", "{l}");
    assert_eq!(l["status"], 404, "{l}");
    assert_eq!(l["cause"], "no_route", "{l}");
    assert_eq!(l["fault"], "client", "{l}");
    assert_eq!(l["service"], "", "{l}");
    assert_eq!(lines.len(), 3, "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log() {
    let origin = Origin::start(|_| {
        Action::Respond(response(
            "200 OK",
            &[("Set-Cookie", "sid=CANARY-SETCOOKIE-5; HttpOnly")],
            b"ok",
        ))
    })
    .await;
    let gw = gateway(
        &origin,
        "[access_log]\nredact_headers = [\"x-api-key\"]\nredact_query_params = [\"token\"]\n\
         log_request_headers = [\"authorization\", \"cookie\", \"x-api-key\", \"x-tenant\", \"proxy-authorization\"]\n",
    )
    .await;
    let res = exchange(
        &gw,
        b"GET /r?a=1&token=CANARY-QUERY-4&b=2 HTTP/1.1\r\nHost: test.local\r\n\
          x-request-id: rid-secret\r\n\
          Authorization: Bearer CANARY-AUTH-1\r\n\
          Cookie: s=CANARY-COOKIE-2\r\n\
          X-Api-Key: CANARY-KEY-3\r\n\
          Proxy-Authorization: Basic CANARY-PROXY-6\r\n\
          x-tenant: acme\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    // The client still gets the cookie; the origin still got the secrets (no auth
    // filter on this route), except Proxy-Authorization, which is hop-by-hop.
    assert_eq!(
        res.head.get_all("set-cookie"),
        ["sid=CANARY-SETCOOKIE-5; HttpOnly"],
        "{}",
        res.dump()
    );
    let rec = origin.only_record().await;
    assert_eq!(
        rec.head.start,
        "GET /r?a=1&token=CANARY-QUERY-4&b=2 HTTP/1.1"
    );
    assert_eq!(rec.head.get_all("authorization"), ["Bearer CANARY-AUTH-1"]);

    let lines = gw.wait_access_lines(1).await;
    let l = line_for(&lines, "rid-secret");
    let logs = gw.logs();
    for canary in [
        "CANARY-AUTH-1",
        "CANARY-COOKIE-2",
        "CANARY-KEY-3",
        "CANARY-QUERY-4",
        "CANARY-SETCOOKIE-5",
        "CANARY-PROXY-6",
    ] {
        assert!(!logs.contains(canary), "{canary} is in the log:\n{logs}");
    }
    assert_eq!(l["path"], "/r?a=1&token=[redacted]&b=2", "{l}");
    let headers: Value =
        serde_json::from_str(l["headers"].as_str().expect("headers field")).unwrap();
    assert_eq!(
        headers,
        serde_json::json!({
            "authorization": "[redacted]",
            "cookie": "[redacted]",
            "x-api-key": "[redacted]",
            "x-tenant": "acme",
            "proxy-authorization": "[redacted]",
        }),
        "{l}"
    );
    // A percent-encoded name and a repeated parameter are redacted too.
    let mut expected = lines.len();
    for (id, target, logged) in [
        (
            "rid-enc",
            "/r?to%6Ben=CANARY-QUERY-7&z",
            "/r?to%6Ben=[redacted]&z",
        ),
        (
            "rid-rep",
            "/r?token=CANARY-QUERY-8&token=CANARY-QUERY-9",
            "/r?token=[redacted]&token=[redacted]",
        ),
    ] {
        let req =
            format!("GET {target} HTTP/1.1\r\nHost: test.local\r\nx-request-id: {id}\r\n\r\n");
        assert_eq!(exchange(&gw, req.as_bytes()).await.status, 200);
        expected += 1;
        let lines = gw.wait_access_lines(expected).await;
        let l = line_for(&lines, id);
        assert_eq!(l["path"], logged, "{l}");
    }
    let logs = gw.logs();
    for canary in ["CANARY-QUERY-7", "CANARY-QUERY-8", "CANARY-QUERY-9"] {
        assert!(!logs.contains(canary), "{canary} is in the log:\n{logs}");
    }
    // Written in the configured order.
    assert!(
        l["headers"]
            .as_str()
            .unwrap()
            .starts_with(r#"{"authorization":"[redacted]","cookie":"[redacted]","x-api-key":"[redacted]","x-tenant":"acme""#),
        "{l}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_kept_replaced_or_generated_and_shared_with_the_origin() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = gateway(&origin, "").await;

    // Valid: echoed to the origin and back.
    let res = exchange(
        &gw,
        b"GET /r HTTP/1.1\r\nHost: test.local\r\nX-Request-Id: Abc-123_x.y:z\r\n\r\n",
    )
    .await;
    assert_eq!(
        res.head.get_all("x-request-id"),
        ["Abc-123_x.y:z"],
        "{}",
        res.dump()
    );
    let rec = origin.wait_records(1).await.remove(0);
    assert_eq!(
        rec.head.get_all("x-request-id"),
        ["Abc-123_x.y:z"],
        "{}",
        rec.head.text()
    );

    // Invalid: replaced, the same new id at the origin and the client.
    let res = exchange(
        &gw,
        b"GET /r HTTP/1.1\r\nHost: test.local\r\nx-request-id: not valid!\r\n\r\n",
    )
    .await;
    let invalid_replaced = res.head.get_all("x-request-id");
    assert_eq!(invalid_replaced.len(), 1, "{}", res.dump());
    let id2 = invalid_replaced[0].to_owned();
    assert_uuid(&id2);
    let rec = origin.wait_records(2).await.remove(1);
    assert_eq!(
        rec.head.get_all("x-request-id"),
        [id2.as_str()],
        "{}",
        rec.head.text()
    );

    // Two ids: replaced too.
    let res = exchange(
        &gw,
        b"GET /r HTTP/1.1\r\nHost: test.local\r\nx-request-id: a\r\nx-request-id: b\r\n\r\n",
    )
    .await;
    let id3 = res.head.get("x-request-id").unwrap().to_owned();
    assert_uuid(&id3);
    let rec = origin.wait_records(3).await.remove(2);
    assert_eq!(
        rec.head.get_all("x-request-id"),
        [id3.as_str()],
        "{}",
        rec.head.text()
    );

    // Absent: generated, the same at the origin and the client.
    let res = exchange(&gw, b"GET /r HTTP/1.1\r\nHost: test.local\r\n\r\n").await;
    let id4 = res.head.get("x-request-id").unwrap().to_owned();
    assert_uuid(&id4);
    let rec = origin.wait_records(4).await.remove(3);
    assert_eq!(
        rec.head.get_all("x-request-id"),
        [id4.as_str()],
        "{}",
        rec.head.text()
    );

    // A gateway error names the id too.
    let res = exchange(&gw, b"GET /none HTTP/1.1\r\nHost: test.local\r\n\r\n").await;
    let id5 = res.head.get("x-request-id").unwrap().to_owned();
    assert_uuid(&id5);
    assert_eq!(res.json()["request_id"], id5.as_str(), "{}", res.dump());

    let ids = ["Abc-123_x.y:z", &id2, &id3, &id4, &id5];
    let mut unique = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");

    // One access line per request, each with its id.
    let lines = gw.wait_access_lines(ids.len()).await;
    for id in ids {
        line_for(&lines, id);
    }
    assert_eq!(lines.len(), ids.len(), "{lines:#?}");
}

/// A hyphenated lower-case UUID.
fn assert_uuid(id: &str) {
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "not a UUID: {id:?}");
    assert!(
        id.bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not a lower-case UUID: {id:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cause_and_fault_tell_the_gateway_from_the_service() {
    let origin = Origin::start(|r| {
        if r.head.target() == "/r/fail" {
            Action::Respond(response("500 Internal Server Error", &[], b"boom"))
        } else {
            Action::Respond(ok("ok"))
        }
    })
    .await;
    let (_reserved, port) = refusing_port();
    let rest = format!(
        "{}{}[[routes]]\npath = \"/r/\"\nservice = \"svc\"\n\n\
         [[routes]]\npath = \"/locked\"\nservice = \"svc\"\n\n\
         [[routes.filters]]\nauth = \"keys\"\n\n\
         [[routes]]\npath = \"/dead\"\nservice = \"dead\"\n\n\
         [auth.keys]\ntype = \"api_key\"\nheader = \"x-api-key\"\n\
         keys = [ {{ identity = \"acme\", sha256 = \"{}\" }} ]\n",
        service("svc", &origin.url()),
        service("dead", &format!("http://127.0.0.1:{port}")),
        crate::auth::sha256_hex("log-key"),
    );
    let gw = Gateway::run("", &rest).await;
    let cases = [
        // (request id, target, status, cause, fault, service, route)
        ("rid-ok", "/r/fine", 200, "", "", "svc", "/r/"),
        ("rid-500", "/r/fail", 500, "", "", "svc", "/r/"),
        (
            "rid-401",
            "/locked",
            401,
            "missing_credentials",
            "client",
            "svc",
            "/locked",
        ),
        (
            "rid-502",
            "/dead",
            502,
            "upstream_unreachable",
            "upstream",
            "dead",
            "/dead",
        ),
    ];
    for (id, target, status, ..) in cases {
        let req =
            format!("GET {target} HTTP/1.1\r\nHost: test.local\r\nx-request-id: {id}\r\n\r\n");
        let res = exchange(&gw, req.as_bytes()).await;
        assert_eq!(res.status, status, "{}", res.dump());
    }
    let lines = gw.wait_access_lines(cases.len()).await;
    for (id, _, status, cause, fault, service, route) in cases {
        let l = line_for(&lines, id);
        assert_eq!(l["status"], status, "{l}");
        assert_eq!(l["cause"], cause, "{l}");
        assert_eq!(l["fault"], fault, "{l}");
        assert_eq!(l["service"], service, "{l}");
        assert_eq!(l["route"], route, "{l}");
    }
    // Only the forwarded requests have an upstream time.
    assert!(line_for(&lines, "rid-500")["upstream_ms"].is_number());
    assert!(line_for(&lines, "rid-401").get("upstream_ms").is_none());
}

/// A gateway whose `/h` route takes an API key in `x-partner-key` and whose `/q`
/// route takes one in the `partner_key` query parameter; `[access_log]` logs the
/// key header but names neither as sensitive.
async fn api_key_gateway(origin: &Origin) -> Gateway {
    let rest = format!(
        "[access_log]\nlog_request_headers = [\"x-partner-key\"]\n\n{}\
         [[routes]]\npath = \"/h\"\nservice = \"svc\"\n\n[[routes.filters]]\nauth = \"header\"\n\n\
         [[routes]]\npath = \"/q\"\nservice = \"svc\"\n\n[[routes.filters]]\nauth = \"query\"\n\n\
         [auth.header]\ntype = \"api_key\"\nheader = \"x-partner-key\"\n\
         keys = [ {{ identity = \"acme\", sha256 = \"{}\" }} ]\n\n\
         [auth.query]\ntype = \"api_key\"\nquery = \"partner_key\"\n\
         keys = [ {{ identity = \"acme\", sha256 = \"{}\" }} ]\n",
        service("svc", &origin.url()),
        crate::auth::sha256_hex("CANARY-HEADER-KEY-1"),
        crate::auth::sha256_hex("CANARY-QUERY-KEY-2"),
    );
    Gateway::run("", &rest).await
}

/// R7 names "configured API-key headers" among the sensitive headers, and
/// portcullis-auth's docs say the access log "must have marked Authorization and
/// the key header as sensitive": the header of an `[auth.*]` API-key policy is a
/// secret whether or not `[access_log] redact_headers` repeats it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_header_of_an_auth_policy_is_redacted_without_repeating_it() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = api_key_gateway(&origin).await;
    let res = exchange(
        &gw,
        b"GET /h HTTP/1.1\r\nHost: test.local\r\nx-request-id: rid-h\r\nx-partner-key: CANARY-HEADER-KEY-1\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let lines = gw.wait_access_lines(1).await;
    let logs = gw.logs();
    assert!(
        !logs.contains("CANARY-HEADER-KEY-1"),
        "the key is in the log:\n{logs}"
    );
    assert_eq!(
        line_for(&lines, "rid-h")["headers"],
        r#"{"x-partner-key":"[redacted]"}"#
    );
}

/// The same for an API key in a query parameter: it is a credential, and the
/// access line's `path` is always written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_query_parameter_of_an_auth_policy_is_redacted_without_repeating_it() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let gw = api_key_gateway(&origin).await;
    let res = exchange(
        &gw,
        b"GET /q?a=1&partner_key=CANARY-QUERY-KEY-2 HTTP/1.1\r\nHost: test.local\r\nx-request-id: rid-q\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.dump());
    let lines = gw.wait_access_lines(1).await;
    let logs = gw.logs();
    assert!(
        !logs.contains("CANARY-QUERY-KEY-2"),
        "the key is in the log:\n{logs}"
    );
    assert_eq!(
        line_for(&lines, "rid-q")["path"],
        "/q?a=1&partner_key=[redacted]"
    );
}
