#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test. This is the README's test command and
# exactly what CI runs (.ci/run). Needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test --workspace"
cargo test --workspace --locked

printf '\nall checks passed\n'
