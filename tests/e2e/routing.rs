//! R8 routing through the binary: host, path, method and header precedence; 404
//! and 405; strip_prefix and rewrite on the raw bytes of the path.

use crate::support::{Action, Gateway, Origin, exchange, named_origin, ok, service};

/// `GET target` with this Host and extra header lines; returns (status, body).
async fn ask(gw: &Gateway, host: &str, target: &str, extra: &str) -> (u16, String) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");
    let res = exchange(gw, req.as_bytes()).await;
    (res.status, res.body.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_host_beats_longest_wildcard_beats_any_host() {
    let exact = named_origin("exact").await;
    let wild = named_origin("wild").await;
    let wild_eu = named_origin("wild-eu").await;
    let any = named_origin("any").await;
    let rest = format!(
        "{}{}{}{}\
         [[routes]]\npath = \"/\"\nservice = \"any\"\n\n\
         [[routes]]\nhost = \"*.example.com\"\npath = \"/\"\nservice = \"wild\"\n\n\
         [[routes]]\nhost = \"*.eu.example.com\"\npath = \"/\"\nservice = \"wild-eu\"\n\n\
         [[routes]]\nhost = \"api.example.com\"\npath = \"/e/\"\nservice = \"exact\"\n",
        service("exact", &exact.url()),
        service("wild", &wild.url()),
        service("wild-eu", &wild_eu.url()),
        service("any", &any.url()),
    );
    let gw = Gateway::run("", &rest).await;
    let cases = [
        ("api.example.com", "/e/1", "exact"),
        // Case-insensitive, port ignored.
        ("API.Example.COM:8443", "/e/1", "exact"),
        // The exact host has no route for this path: the wildcard is tried next.
        ("api.example.com", "/x", "wild"),
        ("shop.example.com", "/e/1", "wild"),
        // The longest matching wildcard wins.
        ("fr.eu.example.com", "/e/1", "wild-eu"),
        // A wildcard does not match the bare domain.
        ("example.com", "/e/1", "any"),
        ("other.test", "/e/1", "any"),
    ];
    for (host, target, want) in cases {
        let (status, body) = ask(&gw, host, target, "").await;
        assert_eq!(
            (status, body.as_str()),
            (200, want),
            "Host: {host}, {target}"
        );
    }
    // An absolute-form target names the host, whatever Host says.
    let res = exchange(
        &gw,
        b"GET http://api.example.com/e/2 HTTP/1.1\r\nHost: other.test\r\n\r\n",
    )
    .await;
    assert_eq!(res.body.text(), "exact", "{}", res.dump());
    assert_eq!(exact.records().len(), 3);
    assert_eq!(wild.records().len(), 2);
    assert_eq!(wild_eu.records().len(), 1);
    assert_eq!(any.records().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_path_beats_template_beats_longest_prefix() {
    let names = [
        "exact", "tmpl", "static", "param", "items", "deep", "files", "root",
    ];
    let mut origins = Vec::new();
    let mut rest = String::new();
    for name in names {
        let o = named_origin(name).await;
        rest.push_str(&service(name, &o.url()));
        origins.push(o);
    }
    rest.push_str(
        "[[routes]]\npath = \"/\"\nservice = \"root\"\n\n\
         [[routes]]\npath = \"/items/\"\nservice = \"items\"\n\n\
         [[routes]]\npath = \"/items/deep/\"\nservice = \"deep\"\n\n\
         [[routes]]\npath = \"/items/{id}\"\nservice = \"tmpl\"\n\n\
         [[routes]]\npath = \"/items/special\"\nservice = \"exact\"\n\n\
         [[routes]]\npath = \"/users/{id}/{tab}\"\nservice = \"param\"\n\n\
         [[routes]]\npath = \"/users/{id}/settings\"\nservice = \"static\"\n\n\
         [[routes]]\npath = \"/files/{*rest}\"\nservice = \"files\"\n",
    );
    let gw = Gateway::run("", &rest).await;
    let cases = [
        ("/items/special", "exact"),
        ("/items/42", "tmpl"),
        // A template segment is one segment, so a deeper path falls to a prefix.
        ("/items/42/parts", "items"),
        ("/items/deep", "tmpl"),
        // The longer prefix wins.
        ("/items/deep/x", "deep"),
        ("/items/deep/x/y?z=1", "deep"),
        // `/items/` also matches `/items`.
        ("/items", "items"),
        ("/users/7/settings", "static"),
        ("/users/7/billing", "param"),
        ("/files/a/b/c.txt", "files"),
        ("/other", "root"),
    ];
    for (target, want) in cases {
        let (status, body) = ask(&gw, "test.local", target, "").await;
        assert_eq!((status, body.as_str()), (200, want), "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_sets_pick_the_service_and_others_get_405_with_allow() {
    let reader =
        Origin::start(|r| Action::Respond(ok(&format!("reader {}", r.head.method())))).await;
    let writer = Origin::start(|r| {
        Action::Respond(ok(&format!("writer {} {}", r.head.method(), r.body.text())))
    })
    .await;
    let rest = format!(
        "{}{}\
         [[routes]]\npath = \"/things\"\nmethods = [\"GET\", \"HEAD\"]\nservice = \"reader\"\n\n\
         [[routes]]\npath = \"/things\"\nmethods = [\"POST\"]\nservice = \"writer\"\n\n\
         [[routes]]\npath = \"/mixed\"\nservice = \"reader\"\n\n\
         [[routes]]\npath = \"/mixed\"\nmethods = [\"POST\"]\nservice = \"writer\"\n",
        service("reader", &reader.url()),
        service("writer", &writer.url()),
    );
    let gw = Gateway::run("", &rest).await;

    let res = exchange(&gw, b"GET /things HTTP/1.1\r\nHost: test.local\r\n\r\n").await;
    assert_eq!(
        (res.status, res.body.text().as_str()),
        (200, "reader GET"),
        "{}",
        res.dump()
    );
    let res = exchange(
        &gw,
        b"POST /things HTTP/1.1\r\nHost: test.local\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(
        (res.status, res.body.text().as_str()),
        (200, "writer POST abc"),
        "{}",
        res.dump()
    );

    let res = exchange(
        &gw,
        b"DELETE /things HTTP/1.1\r\nHost: test.local\r\nx-request-id: rid-405\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 405, "{}", res.dump());
    assert_eq!(
        res.head.get_all("allow"),
        ["GET, HEAD, POST"],
        "{}",
        res.dump()
    );
    assert_eq!(res.cause(), Some("method_not_allowed"), "{}", res.dump());
    assert_eq!(
        res.body.text(),
        r#"{"error":"method_not_allowed","status":405,"request_id":"rid-405","service":null}"#
    );

    // Among routes for the same path, one with a method list goes first; the one
    // for any method takes the rest.
    let res = exchange(
        &gw,
        b"POST /mixed HTTP/1.1\r\nHost: test.local\r\nContent-Length: 1\r\n\r\nz",
    )
    .await;
    assert_eq!(res.body.text(), "writer POST z", "{}", res.dump());
    let res = exchange(&gw, b"DELETE /mixed HTTP/1.1\r\nHost: test.local\r\n\r\n").await;
    assert_eq!(res.body.text(), "reader DELETE", "{}", res.dump());

    let starts =
        |o: &Origin| -> Vec<String> { o.records().iter().map(|r| r.head.start.clone()).collect() };
    assert_eq!(
        starts(&reader),
        ["GET /things HTTP/1.1", "DELETE /mixed HTTP/1.1"]
    );
    assert_eq!(
        starts(&writer),
        ["POST /things HTTP/1.1", "POST /mixed HTTP/1.1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_predicates_route_canary_traffic() {
    let names = ["stable", "canary", "beta", "both"];
    let mut origins = Vec::new();
    let mut rest = String::new();
    for name in names {
        let o = named_origin(name).await;
        rest.push_str(&service(name, &o.url()));
        origins.push(o);
    }
    rest.push_str(
        "[[routes]]\npath = \"/\"\nservice = \"stable\"\n\n\
         [[routes]]\npath = \"/\"\nheaders = [{ name = \"x-canary\", value = \"1\" }]\nservice = \"canary\"\n\n\
         [[routes]]\npath = \"/\"\nheaders = [{ name = \"x-beta\" }]\nservice = \"beta\"\n\n\
         [[routes]]\npath = \"/\"\nheaders = [{ name = \"x-canary\", value = \"1\" }, { name = \"x-beta\" }]\nservice = \"both\"\n",
    );
    let gw = Gateway::run("", &rest).await;
    let cases = [
        ("", "stable"),
        ("x-canary: 1\r\n", "canary"),
        ("X-Canary: 1\r\n", "canary"),
        // Equal byte for byte, or not at all.
        ("x-canary: 2\r\n", "stable"),
        ("x-canary: 10\r\n", "stable"),
        ("x-beta: anything\r\n", "beta"),
        // More predicates go first.
        ("x-canary: 1\r\nx-beta: yes\r\n", "both"),
    ];
    for (extra, want) in cases {
        let (status, body) = ask(&gw, "test.local", "/page", extra).await;
        assert_eq!((status, body.as_str()), (200, want), "{extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_with_the_error_shape() {
    let origin = named_origin("only").await;
    let rest = format!(
        "{}[[routes]]\npath = \"/only/\"\nservice = \"svc\"\n",
        service("svc", &origin.url())
    );
    let gw = Gateway::run("", &rest).await;
    let res = exchange(
        &gw,
        b"GET /elsewhere?x=1 HTTP/1.1\r\nHost: test.local\r\nx-request-id: rid-404\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 404, "{}", res.dump());
    assert_eq!(
        res.head.get_all("portcullis-error"),
        ["no_route"],
        "{}",
        res.dump()
    );
    assert!(
        res.head
            .get("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "{}",
        res.dump()
    );
    assert_eq!(
        res.head.get("x-request-id"),
        Some("rid-404"),
        "{}",
        res.dump()
    );
    assert_eq!(
        res.body.text(),
        r#"{"error":"no_route","status":404,"request_id":"rid-404","service":null}"#
    );
    origin.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_works_on_raw_bytes() {
    let origin = named_origin("v1").await;
    let rest = format!(
        "{}[[routes]]\npath = \"/v1/\"\nstrip_prefix = \"/v1\"\nservice = \"svc\"\n",
        service("svc", &origin.url())
    );
    let gw = Gateway::run("", &rest).await;
    let cases = [
        ("/v1/a%2Fb//c/../d?q=%20", "/a%2Fb//c/../d?q=%20"),
        ("/v1/x;p=1?a=1&a=2", "/x;p=1?a=1&a=2"),
        ("/v1", "/"),
        ("/v1?x=%2F", "/?x=%2F"),
    ];
    for (i, (target, want)) in cases.iter().enumerate() {
        let (status, _) = ask(&gw, "test.local", target, "").await;
        assert_eq!(status, 200, "{target}");
        let records = origin.wait_records(i + 1).await;
        assert_eq!(
            records[i].head.start,
            format!("GET {want} HTTP/1.1"),
            "{target}: {}",
            records[i].head.text()
        );
    }
    // Segment boundaries on the raw path: neither is under `/v1/`.
    for target in ["/v10/a", "/v1%2Fa"] {
        let (status, _) = ask(&gw, "test.local", target, "").await;
        assert_eq!(status, 404, "{target}");
    }
    assert_eq!(origin.records().len(), cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_fills_the_template_from_captures() {
    let origin = named_origin("internal").await;
    let rest = format!(
        "{}[[routes]]\npath = \"/droplets/{{id}}\"\nrewrite = \"/internal/{{id}}\"\nservice = \"svc\"\n\n\
         [[routes]]\npath = \"/old/\"\nrewrite = \"/v2/\"\nservice = \"svc\"\n",
        service("svc", &origin.url())
    );
    let gw = Gateway::run("", &rest).await;
    let cases = [
        ("/droplets/7", "/internal/7"),
        ("/droplets/a%20b?x=1&y", "/internal/a%20b?x=1&y"),
        ("/old/x//y?z=%41", "/v2/x//y?z=%41"),
    ];
    for (i, (target, want)) in cases.iter().enumerate() {
        let (status, _) = ask(&gw, "test.local", target, "").await;
        assert_eq!(status, 200, "{target}");
        let records = origin.wait_records(i + 1).await;
        assert_eq!(
            records[i].head.start,
            format!("GET {want} HTTP/1.1"),
            "{target}: {}",
            records[i].head.text()
        );
    }
}

/// A path whose dot segments would make the upstream resolve it to another
/// route (one behind auth, say) is ambiguous: 400, and the origin sees nothing.
/// The same path through a catch-all still passes byte for byte (`paths.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_that_would_cross_routes_are_refused() {
    let public = named_origin("public").await;
    let admin = named_origin("admin").await;
    let rest = format!(
        "{}{}\
         [auth.keys]\ntype = \"api_key\"\nheader = \"x-api-key\"\n\
         keys = [ {{ identity = \"a\", sha256 = \"{}\" }} ]\n\n\
         [[routes]]\npath = \"/public/\"\nservice = \"public\"\n\n\
         [[routes]]\npath = \"/admin/\"\nservice = \"admin\"\n\
         [[routes.filters]]\nauth = \"keys\"\n",
        service("public", &public.url()),
        service("admin", &admin.url()),
        crate::auth::sha256_hex("k"),
    );
    let gw = Gateway::run("", &rest).await;
    for target in [
        "/public/../admin/secret",
        "/public/%2e%2e/admin/secret",
        "/public/.%2E/admin/secret",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: t.local\r\nx-request-id: r1\r\n\r\n");
        let res = exchange(&gw, req.as_bytes()).await;
        assert_eq!(res.status, 400, "{target}: {}", res.dump());
        assert_eq!(
            res.head.get_all("portcullis-error"),
            ["bad_request"],
            "{}",
            res.dump()
        );
    }
    // Dot segments that stay inside the route are forwarded as sent.
    let (status, body) = ask(&gw, "t.local", "/public/a/../b", "").await;
    assert_eq!((status, body.as_str()), (200, "public"));
    let rec = public.only_record().await;
    assert_eq!(rec.head.start, "GET /public/a/../b HTTP/1.1");
    admin.assert_untouched().await;
}

/// A Host that is not a host name or address (and optional port) is refused:
/// `api.example.com:@evil.com` must not be taken for `api.example.com`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_hosts_are_refused() {
    let api = named_origin("api").await;
    let rest = format!(
        "{}[[routes]]\nhost = \"api.example.com\"\npath = \"/\"\nservice = \"api\"\n",
        service("api", &api.url()),
    );
    let gw = Gateway::run("", &rest).await;
    for host in [
        "api.example.com:@evil.com",
        "api.example.com:80:90",
        "api.example.com/x",
    ] {
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let res = exchange(&gw, req.as_bytes()).await;
        assert_eq!(res.status, 400, "{host}: {}", res.dump());
    }
    let (status, body) = ask(&gw, "api.example.com:8080", "/", "").await;
    assert_eq!((status, body.as_str()), (200, "api"));
}
