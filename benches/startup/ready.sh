#!/usr/bin/env bash
# Start-to-ready time of kuma-cp: from spawning `kuma-cp run` until
# `GET /ready` on its diagnostics port answers 200. Every port is 0
# (ephemeral); the diagnostics port is read from the start-up log. Each run
# is stopped with SIGTERM and must exit 0.
#
# Usage: benches/startup/ready.sh [RUNS]        (default 10)
#   KUMA_CP=path  the binary (default: target/release/kuma-cp;
#                 build it with `cargo build --release -p kuma-cp`)
#   KUMA_STORE_LOCAL_PATH=dir  a local store to start on (default: a new one)
#
# Prints every run, then min / median / max in milliseconds. Polling uses
# bash builtins only (/dev/tcp, read -t on a fifo), so no process is forked
# while waiting and the resolution is about 1 ms.
set -euo pipefail

runs=${1:-10}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KUMA_CP:-$root/target/release/kuma-cp}
if [[ ! -x $bin ]]; then
    echo "ready.sh: no $bin; build it with: cargo build --release -p kuma-cp" >&2
    exit 1
fi
if [[ -z ${EPOCHREALTIME:-} ]]; then
    echo "ready.sh: needs bash 5 (EPOCHREALTIME)" >&2
    exit 1
fi

tmp=$(mktemp -d)
pid=
cleanup() {
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# A builtin sleep: read with a timeout from a fifo nobody writes to.
mkfifo "$tmp/tick"
exec 9<>"$tmp/tick"
nap() { read -r -t "$1" -u 9 _ || true; }

for v in KUMA_API_SERVER_PORT KUMA_XDS_SERVER_GRPC_PORT KUMA_BOOTSTRAP_SERVER_PORT \
    KUMA_XDS_SERVER_DIAGNOSTICS_PORT KUMA_DNS_SERVER_PORT KUMA_SDS_SERVER_GRPC_PORT \
    KUMA_ADMIN_SERVER_LOCAL_PORT KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT; do
    export "$v=0"
done
# The default (local) store, in a directory of this script's: the first run
# creates it, the others open it again.
export KUMA_STORE_LOCAL_PATH=${KUMA_STORE_LOCAL_PATH:-$tmp/store}

# 0 when GET /ready on 127.0.0.1:$1 answers 200.
ready() {
    local status
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
    if ! read -r -t 2 status <&3; then
        exec 3<&-
        return 1
    fi
    exec 3<&-
    [[ $status == *" 200"* ]]
}

# Milliseconds between two EPOCHREALTIME values.
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }

limit=30 # seconds per start-up, at most
times=()
for ((i = 1; i <= runs; i++)); do
    log=$tmp/run$i.log
    : >"$log"
    t0=$EPOCHREALTIME
    "$bin" run 2>"$log" &
    pid=$!
    deadline=$((${t0%[.,]*} + limit))
    port=
    while [[ -z $port ]]; do
        mapfile -t lines <"$log"
        for l in "${lines[@]}"; do
            if [[ $l =~ server=\"diagnostics\"\ address=[^\ ]*:([0-9]+) ]]; then
                port=${BASH_REMATCH[1]}
            fi
        done
        if [[ -z $port ]]; then
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "ready.sh: kuma-cp exited during start-up:" >&2
                cat "$log" >&2
                exit 1
            fi
            ((${EPOCHREALTIME%[.,]*} < deadline)) || { echo "ready.sh: no diagnostics address after ${limit}s" >&2; exit 1; }
            nap 0.001
        fi
    done
    until ready "$port"; do
        ((${EPOCHREALTIME%[.,]*} < deadline)) || { echo "ready.sh: /ready not 200 after ${limit}s" >&2; exit 1; }
        nap 0.001
    done
    t1=$EPOCHREALTIME
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    pid=
    if ((rc != 0)); then
        echo "ready.sh: kuma-cp exited $rc after SIGTERM" >&2
        exit 1
    fi
    ms=$(ms_between "$t0" "$t1")
    times+=("$ms")
    printf 'run %2d: %s ms\n' "$i" "$ms"
done

printf '%s\n' "${times[@]}" | sort -g | awk -v bin="$bin" '
    { t[NR] = $1 }
    END {
        median = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
        printf "kuma-cp start-to-ready over %d runs (%s): min %.1f ms, median %.1f ms, max %.1f ms\n", NR, bin, t[1], median, t[NR]
    }'
