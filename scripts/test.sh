#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration, end-to-end and doc tests.
# Installs what the tests need first: Debian's redis-server (the tests start their
# own instances on free ports; no system service is started).
#
#   scripts/test.sh [cargo test args...]   install what is missing, then run the tests
#   scripts/test.sh --deps-only            only install what is missing
set -euo pipefail
cd "$(dirname "$0")/.."

install_redis() {
    if command -v redis-server >/dev/null 2>&1; then
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    echo "installing redis-server (Debian package)" >&2
    # RUNLEVEL=1 keeps invoke-rc.d from starting the system service on install.
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
        apt-get install -y -qq --no-install-recommends redis-server)
    if ! "${apt[@]}" >/dev/null; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        "${apt[@]}" >/dev/null
    fi
    # Stop the system service if the package's postinst started one anyway.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
        "${sudo[@]}" systemctl stop redis-server >/dev/null 2>&1 || true
        "${sudo[@]}" systemctl disable redis-server >/dev/null 2>&1 || true
    fi
    command -v redis-server >/dev/null 2>&1 || {
        echo "redis-server is still missing after apt-get install" >&2
        exit 1
    }
}

install_redis
if [ "${1:-}" = "--deps-only" ]; then
    exit 0
fi
cargo test --workspace --all-features --locked "$@"
