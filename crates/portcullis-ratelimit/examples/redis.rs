//! A fleet-wide limit through Redis: builds the layer from TOML and shows the
//! configuration. The layer connects on its first request, so this runs without a
//! Redis server; point `url` at yours to use it.
//!
//! `cargo run -p portcullis-ratelimit --features redis --example redis`

use portcullis_ratelimit::{RateLimitConfig, RateLimitLayer};

const CONFIG: &str = r#"
max_keys = 100000
sweep_interval = "60s"

[[limits]]
name = "per_ip"
key = "client_ip"
rate = 100
per = "1m"
burst = 20

[[limits]]
name = "per_tenant"
key = ["identity", { header = "x-tenant" }]
rate = 1000
per = "1h"

[store]
kind = "redis"
url = "redis://:change-me@127.0.0.1:6379/0"
key_prefix = "portcullis:rl:"
timeout = "50ms"
on_failure = "fail_open"   # or "fail_closed": 503 rate_limit_unavailable
fleet_size = 4             # each gateway allows 1/4 of a quota while Redis is down
breaker_cooldown = "1s"
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config: RateLimitConfig = toml::from_str(CONFIG)?;
    if let Err(errors) = config.validate() {
        for error in &errors {
            eprintln!("{error}");
        }
        std::process::exit(1);
    }
    let layer = RateLimitLayer::from_config(&config)?;
    // The password is never printed.
    eprintln!("{:#?}", config.store);
    eprintln!("{layer:?}");
    eprintln!(
        "keys look like portcullis:rl:{{per_ip}}:<32 hex digits>; add the layer to your \
         axum routes with .layer(layer)"
    );
    Ok(())
}
