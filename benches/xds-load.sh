#!/usr/bin/env bash
# Runs the xDS load tool (benches/src/bin/xds-load.rs) against a kuma-cp it
# starts itself, with the open-file limit raised for thousands of streams
# (one TCP connection per stream on each side).
#
# Usage: benches/xds-load.sh [xds-load flags]
#   e.g. benches/xds-load.sh --services 100 --instances 10    (1,000 streams)
#        benches/xds-load.sh                                   (10,000 streams)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p kuma-cp -p kuma-benches --bin kuma-cp --bin xds-load
exec target/release/xds-load "$@"
