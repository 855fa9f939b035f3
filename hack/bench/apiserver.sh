#!/usr/bin/env bash
# Benchmarks keel-apiserver (release build) on its embedded store and on etcd, with etcd alone
# as the reference, and prints one table:
#   writes/s creating ConfigMaps from 1 and N concurrent clients (and their latency),
#   GET and LIST p50/p99 in a namespace of 10,000 ConfigMaps,
#   the delay from a write to its event at 1,000 watchers (p50/p99),
#   RSS idle, at 10,000 objects and with the watchers open.
# The load generator is control-plane/benches/apiserver_load.rs: HTTPS + HTTP/2 with the admin
# client certificate against the apiserver, the etcd-client crate (txn put-if-absent, get,
# range, watch) against etcd alone. Write figures are medians over ROUNDS rounds.
#
# Starts everything itself on free loopback ports in a temp dir, cleans up on exit.
# Env: BENCH_TARGET_DIR (release build dir; default: ../target-bench beside the repo),
#      ROUNDS (3), CLIENTS (64), WATCHERS (1000), OBJECTS (10000), ETCD (/usr/bin/etcd).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BENCH_TARGET_DIR=${BENCH_TARGET_DIR:-$(dirname "$REPO")/target-bench}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-64}
WATCHERS=${WATCHERS:-1000}
OBJECTS=${OBJECTS:-10000}
ETCD=${ETCD:-/usr/bin/etcd}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}

WORK_PREFIX=keel-bench
# shellcheck source=hack/bench/lib.sh
source "$(dirname "$0")/lib.sh"

# Waits up to $2 seconds for command "$1" (a function name) to succeed.
wait_until() {
    local what=$1 seconds=$2
    for _ in $(seq 1 $((seconds * 10))); do
        if "$what"; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for $what" >&2
    return 1
}

log "building keel-apiserver and the load generator (release, $BENCH_TARGET_DIR)"
(
    cd "$REPO"
    CARGO_TARGET_DIR=$BENCH_TARGET_DIR timeout 3600 cargo build --release -p keel-control-plane \
        --bin keel-apiserver --bench apiserver_load --message-format=json >"$WORK/build.json"
)
BUILT_LOADGEN=$(jq -r 'select(.reason=="compiler-artifact" and .target.name=="apiserver_load") | .executable // empty' "$WORK/build.json" | tail -1)
[[ -x $BENCH_TARGET_DIR/release/keel-apiserver && -x $BUILT_LOADGEN ]] || { echo "build produced no binaries" >&2; exit 1; }
# Private copies: another build into the same target dir must not swap them mid-run.
APISERVER=$WORK/keel-apiserver
LOADGEN=$WORK/apiserver_load
cp "$BENCH_TARGET_DIR/release/keel-apiserver" "$APISERVER"
cp "$BUILT_LOADGEN" "$LOADGEN"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

ETCD_PID=""
ETCD_URL=""
start_etcd() {
    local dir=$WORK/$1 client peer
    client=$(free_port)
    peer=$(free_port)
    mkdir -p "$dir"
    "$ETCD" --name bench --data-dir "$dir/data" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "bench=http://127.0.0.1:$peer" --initial-cluster-state new \
        >"$dir/etcd.log" 2>&1 &
    ETCD_PID=$!
    PIDS+=("$ETCD_PID")
    ETCD_URL="http://127.0.0.1:$client"
    etcd_ready() { curl -fsS --max-time 1 "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'; }
    wait_until etcd_ready 30
}

API_PID=""
KUBECONFIG_FILE=""
start_apiserver() {
    local dir=$WORK/$1
    shift
    local port
    port=$(free_port)
    mkdir -p "$dir"
    "$APISERVER" --data-dir "$dir/data" --secure-port "$port" --log-level warn "$@" >"$dir/apiserver.log" 2>&1 &
    API_PID=$!
    PIDS+=("$API_PID")
    KUBECONFIG_FILE=$dir/data/admin.kubeconfig
    api_ready() {
        [[ -f $KUBECONFIG_FILE ]] && kubectl --kubeconfig "$KUBECONFIG_FILE" --request-timeout=2s get --raw /readyz >/dev/null 2>&1
    }
    wait_until api_ready 60
    # Let start-up work (bootstrap policy, caches) settle before the idle RSS is taken.
    sleep 2
}

stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

FAILED=0
# Runs the load generator; a failed run is reported and leaves "-" in its column.
loadgen() {
    local out=$1
    shift
    if ! timeout "$RUN_TIMEOUT" "$LOADGEN" --rounds "$ROUNDS" --clients "$CLIENTS" --watchers "$WATCHERS" \
        --objects "$OBJECTS" "$@" >"$out"; then
        echo "load generator failed for $out" >&2
        FAILED=1
    fi
}

log "embedded store"
start_apiserver embedded
loadgen "$WORK/embedded.out" --target apiserver --kubeconfig "$KUBECONFIG_FILE" --pid "apiserver=$API_PID"
stop "$API_PID"

log "etcd backend"
start_etcd etcd-backend
start_apiserver etcd-api --etcd-servers "$ETCD_URL"
loadgen "$WORK/etcd.out" --target apiserver --kubeconfig "$KUBECONFIG_FILE" \
    --pid "apiserver=$API_PID" --pid "etcd=$ETCD_PID"
stop "$API_PID"
stop "$ETCD_PID"

log "etcd alone"
start_etcd etcd-alone
sleep 2
loadgen "$WORK/alone.out" --target etcd --etcd-endpoint "$ETCD_URL" --pid "etcd=$ETCD_PID"
stop "$ETCD_PID"

# value FILE NAME: the RESULT named NAME in FILE, or "-".
value() { awk -v name="$2" '$1=="RESULT" && $2==name {print $3; found=1} END {if (!found) print "-"}' "$1"; }
# rss FILE LABEL: the RSS figures of FILE for LABEL, "apiserver+etcd" when both are there.
rss() {
    local api etcd
    api=$(value "$1" "rss_$2_mb_apiserver")
    etcd=$(value "$1" "rss_$2_mb_etcd")
    if [[ $api != - && $etcd != - ]]; then echo "$api (+etcd $etcd)"; elif [[ $api != - ]]; then echo "$api"; else echo "$etcd"; fi
}
row() {
    local title=$1 name=$2
    printf '| %-44s | %18s | %22s | %12s |\n' "$title" "$(value "$WORK/embedded.out" "$name")" \
        "$(value "$WORK/etcd.out" "$name")" "$(value "$WORK/alone.out" "$name")"
}
rss_row() {
    printf '| %-44s | %18s | %22s | %12s |\n' "$1" "$(rss "$WORK/embedded.out" "$2")" \
        "$(rss "$WORK/etcd.out" "$2")" "$(rss "$WORK/alone.out" "$2")"
}

echo
echo "keel-apiserver benchmark ($(nproc) cores; median of $ROUNDS write rounds; etcd alone driven by the etcd-client crate)"
echo "load average (1/5/15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
printf '| %-44s | %18s | %22s | %12s |\n' "measure" "embedded" "etcd backend" "etcd alone"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..20})" "$(printf -- '-%.0s' {1..24})" "$(printf -- '-%.0s' {1..14})"
row "creates/s, 1 client" writes_1_per_s
row "create p50 ms, 1 client" write_1_p50_ms
row "create p99 ms, 1 client" write_1_p99_ms
row "creates/s, $CLIENTS clients" writes_n_per_s
row "create p50 ms, $CLIENTS clients" write_n_p50_ms
row "create p99 ms, $CLIENTS clients" write_n_p99_ms
row "GET p50 ms ($OBJECTS objects)" get_p50_ms
row "GET p99 ms ($OBJECTS objects)" get_p99_ms
row "LIST p50 ms ($OBJECTS objects)" list_p50_ms
row "LIST p99 ms ($OBJECTS objects)" list_p99_ms
row "write->event p50 ms ($WATCHERS watchers)" watch_p50_ms
row "write->event p99 ms ($WATCHERS watchers)" watch_p99_ms
rss_row "RSS MB idle" idle
rss_row "RSS MB at $OBJECTS objects" loaded
rss_row "RSS MB with $WATCHERS watchers open" watching
exit "$FAILED"
