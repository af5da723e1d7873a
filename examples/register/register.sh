#!/usr/bin/env bash
# A service registering itself with a running Portcullis gateway: no library of
# ours, only HTTP. It registers its routes and one endpoint, heartbeats (repeats
# the endpoint PUT) until stopped, and deregisters on exit.
#
#   ADMIN=http://127.0.0.1:9090 TOKEN=$(cat portcullis-state/admin-token) \
#   SERVICE=droplets URL=http://127.0.0.1:3001 ./examples/register/register.sh
#
# A tiny service to try it with: python3 -m http.server 3001 --bind 127.0.0.1
set -euo pipefail
ADMIN="${ADMIN:-http://127.0.0.1:9090}"
TOKEN="${TOKEN:?set TOKEN to the admin token of the gateway}"
SERVICE="${SERVICE:-droplets}"
URL="${URL:-http://127.0.0.1:3001}"
ID="${ID:-$(hostname)-$$}"
TTL="${TTL:-15s}"
EVERY="${EVERY:-5}"   # heartbeat period in seconds, well under the TTL

call() { # METHOD PATH [JSON]
    local args=(-sS --fail-with-body -X "$1" "$ADMIN$2" -H "Authorization: Bearer $TOKEN")
    if [ $# -ge 3 ]; then
        args+=(-H "Content-Type: application/json" --data "$3")
    fi
    curl "${args[@]}"
    echo
}

call PUT "/api/v1/services/$SERVICE" \
    '{"routes": [{"path": "/'"$SERVICE"'/", "strip_prefix": "/'"$SERVICE"'"}],
      "health": {"path": "/", "interval": "5s", "timeout": "1s", "expected_status": [200]},
      "balancer": "least_request"}'

deregister() {
    call DELETE "/api/v1/services/$SERVICE/endpoints/$ID" || true
    exit 0
}
trap deregister INT TERM

while true; do
    call PUT "/api/v1/services/$SERVICE/endpoints/$ID" \
        '{"url": "'"$URL"'", "ttl": "'"$TTL"'", "weight": 1, "metadata": {"pid": "'"$$"'"}}' >/dev/null
    sleep "$EVERY" &
    wait $!
done
