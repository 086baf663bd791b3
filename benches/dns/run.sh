#!/usr/bin/env bash
# dnsperf against kuma-dns, unbound and NSD serving the same 1,000 names,
# each with one server thread, on loopback, in one run.
#
#   benches/dns/run.sh [SECONDS] [NAMES]     (ROUNDS=3 by default)
#
# kuma-dns runs as `kuma-dns/examples/dns_bench_server.rs` (release build):
# the library's DnsServer on a current_thread tokio runtime, answering
# `svc-<i>.mesh` from the VIP table. unbound uses `num-threads: 1` with
# local-data, NSD `server-count: 1` with a zone file. dnsperf sends the
# same query file (every name once, A records) to each server with the
# same settings. Needs dnsperf, unbound and nsd (Debian packages).
# KUMA_DNS_BIN=<path> benchmarks that build of the example instead (e.g. a
# copy of an earlier commit's, for before/after figures in one session).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${1:-10}
NAMES=${2:-1000}
KUMA_PORT=25353
UNBOUND_PORT=25354
NSD_PORT=25355
CLIENTS=${DNSPERF_CLIENTS:-4}
OUTSTANDING=${DNSPERF_OUTSTANDING:-100}

for tool in dnsperf unbound nsd; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install dnsperf unbound nsd)" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

KUMA_BIN=${KUMA_DNS_BIN:-}
if [ -z "$KUMA_BIN" ]; then
    echo "==> building kuma-dns bench server (release)"
    cargo build --release -p kuma-dns --example dns-bench-server >/dev/null
    KUMA_BIN=target/release/examples/dns-bench-server
fi

# The same names and addresses everywhere: svc-<i>.mesh -> 240.0.x.y, in
# the order kuma's allocator hands them out (240.0.0.1, 240.0.0.2, ...).
for i in $(seq 0 $((NAMES - 1))); do echo "svc-$i"; done | sort > "$WORK/names"
awk '{ n = NR; printf "%s.mesh A\n", $1 }' "$WORK/names" > "$WORK/queries"
awk '{ n = NR; printf "%s 240.0.%d.%d\n", $1, int(n / 256), n % 256 }' "$WORK/names" > "$WORK/addrs"

cat > "$WORK/unbound.conf" <<CONF
server:
    interface: 127.0.0.1
    port: $UNBOUND_PORT
    num-threads: 1
    do-daemonize: no
    use-syslog: no
    logfile: ""
    verbosity: 0
    chroot: ""
    username: ""
    directory: "$WORK"
    pidfile: "$WORK/unbound.pid"
    access-control: 127.0.0.0/8 allow
    so-reuseport: no
    local-zone: "mesh." static
$(awk '{ printf "    local-data: \"%s.mesh. 60 IN A %s\"\n", $1, $2 }' "$WORK/addrs")
remote-control:
    control-enable: no
CONF

{
    echo '$ORIGIN mesh.'
    echo '$TTL 60'
    echo '@ IN SOA ns.mesh. hostmaster.mesh. 1 3600 600 86400 60'
    echo '@ IN NS ns.mesh.'
    echo 'ns IN A 127.0.0.1'
    awk '{ printf "%s IN A %s\n", $1, $2 }' "$WORK/addrs"
} > "$WORK/mesh.zone"
cat > "$WORK/nsd.conf" <<CONF
server:
    ip-address: 127.0.0.1
    port: $NSD_PORT
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "$WORK"
    database: ""
    pidfile: "$WORK/nsd.pid"
    xfrdfile: "$WORK/xfrd.state"
    zonelistfile: "$WORK/zone.list"
    logfile: "$WORK/nsd.log"
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: mesh
    zonefile: mesh.zone
CONF

echo "==> starting servers"
"$KUMA_BIN" "$KUMA_PORT" "$NAMES" 2>"$WORK/kuma.log" &
PIDS+=($!)
unbound -d -c "$WORK/unbound.conf" 2>"$WORK/unbound.log" &
PIDS+=($!)
nsd -d -c "$WORK/nsd.conf" 2>"$WORK/nsd.err" &
PIDS+=($!)

wait_for() { # name port
    for _ in $(seq 1 100); do
        if dig +time=1 +tries=1 @127.0.0.1 -p "$2" svc-0.mesh A +short 2>/dev/null | grep -q '^240\.'; then
            return 0
        fi
        sleep 0.1
    done
    echo "$1 did not answer on port $2" >&2
    cat "$WORK"/*.log "$WORK"/*.err >&2 || true
    exit 1
}
wait_for kuma "$KUMA_PORT"
wait_for unbound "$UNBOUND_PORT"
wait_for nsd "$NSD_PORT"

ROUNDS=${ROUNDS:-3}
run() { # name port round
    dnsperf -s 127.0.0.1 -p "$2" -d "$WORK/queries" -l "$DURATION" \
        -c "$CLIENTS" -q "$OUTSTANDING" -T 1 > "$WORK/$1.$3.perf" 2>&1 || true
    local qps lost
    qps=$(awk '/Queries per second:/ { printf "%d", $4 }' "$WORK/$1.$3.perf")
    lost=$(awk '/Queries lost:/ { print $3 }' "$WORK/$1.$3.perf")
    echo "$1 ${qps:-0} ${lost:-?}" >> "$WORK/results"
    printf '  round %s %-10s %10s q/s %8s lost\n' "$3" "$1" "${qps:-?}" "${lost:-?}"
}

# The machine may be shared: rounds interleave the servers so that load
# from elsewhere hits all three alike; the table reports the median.
echo "==> dnsperf: ${DURATION}s per run, $ROUNDS rounds, $NAMES names, $CLIENTS clients, $OUTSTANDING outstanding, 1 dnsperf thread"
for round in $(seq 1 "$ROUNDS"); do
    run kuma-dns "$KUMA_PORT" "$round"
    run unbound "$UNBOUND_PORT" "$round"
    run nsd "$NSD_PORT" "$round"
done
echo
printf '%-10s %16s %16s\n' server "median queries/s" "lost (all runs)"
for s in kuma-dns unbound nsd; do
    median=$(awk -v s="$s" '$1 == s { print $2 }' "$WORK/results" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    lost=$(awk -v s="$s" '$1 == s { l += $3 } END { print l }' "$WORK/results")
    printf '%-10s %16s %16s\n' "$s" "$median" "$lost"
done
