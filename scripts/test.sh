#!/usr/bin/env bash
# What CI runs: setup, format check, clippy with warnings as errors, every test, docs, and a short
# smoke run of the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
step() { echo "== $*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -q -- -D warnings
step "services for tern-sink's tests: PostgreSQL (scripts/postgres.sh), a Kafka broker (scripts/kafka.sh)"
trap 'scripts/kafka.sh stop; scripts/postgres.sh stop' EXIT
scripts/postgres.sh start
eval "$(scripts/postgres.sh env)"
scripts/kafka.sh start
eval "$(scripts/kafka.sh env)"
step "cargo test"
cargo test --workspace 2>&1 | tee target/test-output.txt
step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q
if [ -d crates/tern-bench ]; then
  step "benchmark smoke run (tern-bench --quick)"
  cargo run -q -p tern-bench -- --quick --json target/bench/ci-smoke.json
fi
passed=$(grep -E '^test result:' target/test-output.txt | awk '{s+=$4} END {print s+0}')
failed=$(grep -E '^test result:' target/test-output.txt | awk '{s+=$6} END {print s+0}')
echo "tests: $passed passed, $failed failed"
