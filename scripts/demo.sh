#!/usr/bin/env bash
# The main job: sets up the build, then runs `tern demo` with an embedded media driver and the
# archive in ./tern-demo (extra arguments go to `tern demo`, e.g. --messages 1000000; `--cluster`
# runs the cluster demo instead, in ./tern-demo-cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
cargo build --release -q -p tern
exec ./target/release/tern demo "$@"
