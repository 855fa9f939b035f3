# Shared by the control-plane benchmarks (apiserver.sh, scheduler.sh): a temp work dir, the
# processes to stop on exit, logging and free loopback ports. Source it after `set -euo pipefail`
# with WORK_PREFIX set (the temp dir's name prefix).

WORK=$(mktemp -d "/tmp/${WORK_PREFIX:-keel-bench}.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

log() { echo "== $*" >&2; }

# A loopback port nothing listens on.
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}
