#!/usr/bin/env bash
# Runs Keel's whole test suite: formatting, lints, then every test (unit, privileged, end-to-end).
# Privileged tests need root and the local registry (hack/test-images.sh); under CI=true they fail
# instead of skipping when either is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo build --workspace --bins --quiet
cargo test --workspace --no-fail-fast
