//! Test support: a raw recording origin, a raw client and the gateway process.

pub(crate) mod access;
pub(crate) mod admin;
pub(crate) mod client;
pub(crate) mod gateway;
pub(crate) mod origin;
pub(crate) mod redis;
pub(crate) mod wire;

pub(crate) use client::{Client, Response, get};
pub(crate) use gateway::{Gateway, TempDir, refusing_port};
pub(crate) use origin::{Action, DripEnd, Origin, Record, ok, response};
pub(crate) use wire::{Checksum, Framing, fill_pattern};

/// `portcullis proxy` in front of `origin`, with `extra` arguments.
pub(crate) async fn proxy_to(origin: &Origin, extra: &[&str]) -> Gateway {
    Gateway::proxy(&[&origin.url()], extra).await
}

/// One request on a fresh connection; returns the response.
pub(crate) async fn exchange(gw: &Gateway, request: &[u8]) -> Response {
    let mut c = Client::connect(gw.addr).await;
    c.send(request).await;
    c.response().await
}

/// A `[[services]]` table named `name` with one endpoint, `url`.
pub(crate) fn service(name: &str, url: &str) -> String {
    format!("[[services]]\nname = \"{name}\"\nendpoints = [\"{url}\"]\n\n")
}

/// An origin answering `200 OK` with its `name` as the body, every time.
pub(crate) async fn named_origin(name: &'static str) -> Origin {
    Origin::start(move |_| Action::Respond(ok(name))).await
}
