//! Request and response header rewriting for tower and axum: set, add, remove and
//! rename, plus a deny list of request headers that must never reach the upstream.
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, http::{HeaderMap, Request}, routing::get, Router};
//! use tower::ServiceExt;
//! use portcullis_headers::{HeaderRules, RequestHeadersLayer, ResponseHeadersLayer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let to_upstream = HeaderRules::new()
//!     .rename("x-user", "x-client-user")?
//!     .set("x-env", "prod")?;
//! let to_client = HeaderRules::new().remove("server")?.add("x-served-by", "edge")?;
//! let app = Router::new()
//!     .route("/", get(|h: HeaderMap| async move {
//!         // What the handler (the "upstream") sees.
//!         assert_eq!(h["x-client-user"], "ann");
//!         assert!(h.get("x-user").is_none());
//!         assert_eq!(h["x-env"], "prod");
//!         ([("server", "secret-origin/1.0")], "hi")
//!     }))
//!     .layer(RequestHeadersLayer::new(to_upstream))
//!     .layer(ResponseHeadersLayer::new(to_client));
//! let req = Request::get("/").header("x-user", "ann").header("x-env", "dev").body(Body::empty())?;
//! let res = app.oneshot(req).await?;
//! assert!(res.headers().get("server").is_none());
//! assert_eq!(res.headers()["x-served-by"], "edge");
//! # Ok(()) }
//! ```
//!
//! # Order
//!
//! One [`HeaderRules`] applies its operations in the order they were added, so a
//! rule can build on the result of an earlier one (rename `a` to `b`, then add to
//! `b`). Several layers apply in the order they are stacked: the outer one sees the
//! request first and the response last.
//!
//! [`HeaderRules::from_config`] orders a [`HeaderRulesConfig`] as `remove`,
//! `rename`, `set`, `add` — the order in which a table's keys can mean something
//! unambiguous.
//!
//! # Deny lists
//!
//! [`RequestHeadersLayer::deny`] removes headers from requests; a gateway puts it
//! right in front of the proxy so that, whatever other filters did, those headers
//! never reach the upstream. Removal covers every field of that name.
//!
//! # Limits and defaults
//!
//! Names and values are validated when the rules are built ([`ConfigError`]);
//! nothing is parsed per request. Hop-by-hop headers and framing headers
//! (`content-length`, `transfer-encoding`, `host`, `connection`, …) cannot be set
//! or renamed here: changing them would change how the message is framed.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod layer;
mod rules;

pub use config::HeaderRulesConfig;
pub use layer::{
    RequestHeaders, RequestHeadersLayer, ResponseFuture, ResponseHeaders, ResponseHeadersLayer,
};
pub use rules::{ConfigError, HeaderRules};
