//! End-to-end tests of the `portcullis` binary over real sockets: a raw client on
//! one side, a raw recording origin on the other, and assertions on the exact bytes
//! each side saw.
//!
//! Every test starts its own gateway process on `127.0.0.1:0` and kills it when it
//! ends; every network wait has a timeout.

// Test support code panics on purpose: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod access_log;
mod auth;
mod balancing;
mod body_limits;
mod check;
mod disconnect;
mod filters;
mod fleet;
mod forwarding;
mod framing;
mod h2_limits;
mod h2c;
mod hardening;
mod hop_by_hop;
mod large_bodies;
mod listener;
mod metrics;
mod paths;
mod rate_limit;
mod registration;
mod reload;
mod responses;
mod retries;
mod routing;
mod shutdown;
mod slow_clients;
mod startup;
mod static_health;
mod troubleshooting;
mod upgrade;
mod upstream_errors;
