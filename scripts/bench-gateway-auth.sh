#!/usr/bin/env bash
# The gateway under ../shared/bench/run with one route that has API-key auth, the
# access log and metrics on (docs/benchmarks.md, issue 3):
#
#   ../shared/bench/run --name portcullis-auth --peers nginx --cases small \
#     --proxy "exec $PWD/scripts/bench-gateway-auth.sh $PWD/target/release/portcullis"
#
# The harness cannot add request headers, so the API key is read from a header
# every benchmark request carries, `Host` (127.0.0.1:$PROXY_PORT), and kept
# (`keep_credentials`) so the origin gets the same bytes as through the plain
# proxy. The work is that of any key header: hash, constant-time compare with
# every stored digest, identity into the extensions.
set -euo pipefail
bin="$1"
key_sha=$(printf %s "127.0.0.1:${PROXY_PORT}" | sha256sum | cut -d' ' -f1)
config="${BENCH_TMP}/portcullis-auth.toml"
cat > "$config" <<TOML
[server]
listen = "127.0.0.1:${PROXY_PORT}"
admin_listen = "127.0.0.1:0"
state_dir = "${BENCH_TMP}/portcullis-state"

[access_log]
redact_headers = ["x-api-key"]

[metrics]
enabled = true

[auth.bench]
type = "api_key"
header = "host"
keep_credentials = true
keys = [
  { identity = "other-1", sha256 = "$(printf %s other-1 | sha256sum | cut -d' ' -f1)" },
  { identity = "bench", sha256 = "${key_sha}" },
  { identity = "other-2", sha256 = "$(printf %s other-2 | sha256sum | cut -d' ' -f1)" },
]

[[services]]
name = "origin"
endpoints = ["http://${ORIGIN_ADDR}"]

[[routes]]
name = "all"
path = "/"
service = "origin"

[[routes.filters]]
auth = "bench"
TOML
exec "$bin" run --config "$config"
