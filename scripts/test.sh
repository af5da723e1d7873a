#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration, end-to-end and doc tests.
# Installs what the tests need first (nothing beyond the Rust toolchain today;
# later issues add redis-server here).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-features --locked "$@"
