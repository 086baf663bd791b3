#!/usr/bin/env bash
# Fills a local store with N Dataplanes (default 10,000) through kuma-cp's
# HTTP API, for measuring start-to-ready on a full store with ready.sh:
#
#   benches/startup/populate.sh /tmp/store 10000
#   KUMA_STORE_LOCAL_PATH=/tmp/store benches/startup/ready.sh 10
#
# Each Dataplane has one inbound (service `svc-<i % 1000>`) and 5 outbounds.
# Writes go 32 at a time (the local store commits them in groups).
#   KUMA_CP=path  the binary (default: target/release/kuma-cp)
set -euo pipefail

store=${1:?usage: populate.sh STORE_DIR [COUNT]}
count=${2:-10000}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KUMA_CP:-$root/target/release/kuma-cp}
tmp=$(mktemp -d)
pid=
cleanup() {
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

for v in KUMA_API_SERVER_PORT KUMA_XDS_SERVER_GRPC_PORT KUMA_BOOTSTRAP_SERVER_PORT \
    KUMA_XDS_SERVER_DIAGNOSTICS_PORT KUMA_DNS_SERVER_PORT KUMA_SDS_SERVER_GRPC_PORT \
    KUMA_ADMIN_SERVER_LOCAL_PORT KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT; do
    export "$v=0"
done
export KUMA_STORE_TYPE=local KUMA_STORE_LOCAL_PATH=$store KUMA_LOG_LEVEL=warn,kuma_cp=info
"$bin" run 2>"$tmp/log" &
pid=$!
port=
for _ in $(seq 300); do
    port=$(sed -n 's/.*server="api" address=[^ ]*:\([0-9]*\).*/\1/p' "$tmp/log" | head -n 1)
    [[ -n $port ]] && break
    sleep 0.1
done
[[ -n $port ]] || { cat "$tmp/log" >&2; echo "populate.sh: no API address" >&2; exit 1; }

python3 - "$port" "$count" <<'PY'
import json, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
port, count = int(sys.argv[1]), int(sys.argv[2])
def put(i):
    svc = f"svc-{i % 1000}"
    body = {
        "type": "Dataplane", "mesh": "default", "name": f"dp-{i}",
        "networking": {
            "address": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": svc}}],
            "outbound": [{"port": 20000 + k, "tags": {"kuma.io/service": f"svc-{(i + k + 1) % 1000}"}} for k in range(5)],
        },
    }
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/meshes/default/dataplanes/dp-{i}",
        data=json.dumps(body).encode(), method="PUT",
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        if r.status not in (200, 201):
            raise SystemExit(f"dp-{i}: {r.status}")
t = time.time()
with ThreadPoolExecutor(32) as pool:
    list(pool.map(put, range(count)))
print(f"populate.sh: {count} Dataplanes written in {time.time() - t:.1f} s")
PY
kill -TERM "$pid"
wait "$pid"
pid=
