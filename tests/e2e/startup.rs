//! R18: starting the gateway from a config file.

use crate::support::{Action, Gateway, Origin, exchange, get, ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_on_port_zero() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let rest = format!(
        "[[services]]\nname = \"svc\"\nendpoints = [\"{}\"]\n\n[[routes]]\npath = \"/\"\nservice = \"svc\"\n",
        origin.url()
    );
    let gw = Gateway::run_with_admin("127.0.0.1:0", "", &rest).await;
    let res = exchange(&gw, &get("/")).await;
    assert_eq!(res.status, 200, "{}", res.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_pick_the_service_by_path_and_host() {
    let api = Origin::start(|_| Action::Respond(ok("api"))).await;
    let web = Origin::start(|_| Action::Respond(ok("web"))).await;
    let admin = Origin::start(|_| Action::Respond(ok("admin-host"))).await;
    let rest = format!(
        "[[services]]\nname = \"api\"\nendpoints = [\"{}\"]\n\n\
         [[services]]\nname = \"web\"\nendpoints = [\"{}\"]\n\n\
         [[services]]\nname = \"admin\"\nendpoints = [\"{}\"]\n\n\
         [[routes]]\npath = \"/api/\"\nservice = \"api\"\n\n\
         [[routes]]\npath = \"/\"\nservice = \"web\"\n\n\
         [[routes]]\nhost = \"admin.example\"\npath = \"/\"\nservice = \"admin\"\n",
        api.url(),
        web.url(),
        admin.url()
    );
    let gw = Gateway::run("", &rest).await;
    let res = exchange(&gw, &get("/api/items?x=1")).await;
    assert_eq!(res.body.text(), "api", "{}", res.dump());
    let res = exchange(&gw, &get("/index.html")).await;
    assert_eq!(res.body.text(), "web", "{}", res.dump());
    let res = exchange(
        &gw,
        b"GET /api/items HTTP/1.1\r\nHost: ADMIN.example:8080\r\n\r\n",
    )
    .await;
    assert_eq!(res.body.text(), "admin-host", "{}", res.dump());
    assert_eq!(api.only_record().await.head.target(), "/api/items?x=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_request_is_404_no_route() {
    let origin = Origin::start(|_| Action::Respond(ok("ok"))).await;
    let rest = format!(
        "[[services]]\nname = \"svc\"\nendpoints = [\"{}\"]\n\n[[routes]]\npath = \"/only/\"\nservice = \"svc\"\n",
        origin.url()
    );
    let gw = Gateway::run("", &rest).await;
    let res = exchange(&gw, &get("/elsewhere")).await;
    assert_eq!(res.status, 404, "{}", res.dump());
    assert_eq!(res.cause(), Some("no_route"), "{}", res.dump());
    assert_eq!(res.json()["error"], "no_route");
    origin.assert_untouched().await;
}
