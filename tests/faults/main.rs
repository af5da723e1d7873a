//! Fault-injection tests of the `portcullis` binary (issue #6, R5, R6, R18):
//! malformed input from a corpus file, slowloris, a connection flood to the cap,
//! slow uploads and slow readers, a soak with integrity checks while origins are
//! killed, paused and the config reloaded, reloads under steady load, and a
//! graceful shutdown under load.
//!
//! Every test starts its own gateway process on `127.0.0.1:0`, kills it when it
//! ends, and bounds every wait. They measure memory, CPU and latency, so they run
//! one at a time ([`util::serial`]); the whole target takes about 60 s. Each test
//! prints its figures (outcome counts, KiB per connection, latencies, CPU) to
//! stderr: `cargo test --test faults -- --nocapture`. `FAULTS_VERBOSE=1` adds one
//! line per corpus input.

// Test code panics on purpose: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The end-to-end support (raw client, recording origin, gateway runner), shared
// as is; this target uses only part of it.
#[allow(dead_code, unused_imports)]
#[path = "../e2e/support/mod.rs"]
mod support;

mod util;

mod flood;
mod malformed;
mod reload_load;
mod shutdown_load;
mod slow_post;
mod slow_reader;
mod slowloris;
mod soak;
