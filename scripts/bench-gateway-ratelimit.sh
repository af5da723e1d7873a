#!/usr/bin/env bash
# The gateway under ../shared/bench/run with one route, the access log and
# metrics on, with (`limit`) or without (`plain`) a per-client-IP rate limit set
# high enough never to trip (docs/benchmarks.md, issue 5):
#
#   cargo build --release
#   for mode in plain limit; do
#     ../shared/bench/run --name portcullis-$mode --peers nginx --cases small,post \
#       --repeat 2 --duration 6 \
#       --proxy "exec $PWD/scripts/bench-gateway-ratelimit.sh $PWD/target/release/portcullis $mode"
#   done
#
# Every benchmark request comes from 127.0.0.1: one key, decided on every request
# (a GCRA check and update, the RateLimit headers written).
set -euo pipefail
bin="$1"
mode="${2:-limit}"
config="${BENCH_TMP}/portcullis-ratelimit.toml"
filters=""
if [ "$mode" = "limit" ]; then
  filters='[[routes.filters]]
rate_limit = "per_ip"'
fi
cat > "$config" <<TOML
[server]
listen = "127.0.0.1:${PROXY_PORT}"
admin_listen = "127.0.0.1:0"
state_dir = "${BENCH_TMP}/portcullis-state"

[metrics]
enabled = true

[[rate_limits]]
name = "per_ip"
key = "client_ip"
rate = 100000000
per = "1s"

[[services]]
name = "origin"
endpoints = ["http://${ORIGIN_ADDR}"]

[[routes]]
name = "all"
path = "/"
service = "origin"
${filters}
TOML
exec "$bin" run --config "$config"
