#!/usr/bin/env bash
# Compares keel-runc with Debian's runc on one busybox bundle: the wall time of each of create,
# start, kill and delete (`sleep 30` container, cgroupsPath /keel-runc-bench/<id>), N iterations
# each, and prints the medians in milliseconds as a table (ours, runc, ratio ours/runc).
#
# Usage: hack/bench/runc.sh [iterations]   (root; env KEEL_RUNC, RUNC override the binaries)
# Builds nothing: KEEL_RUNC defaults to target/debug/keel-runc
# (`cargo build -p keel-cri --bin keel-runc`). Cleans up its bundle, state and cgroups.
set -euo pipefail
cd "$(dirname "$0")/../.."
iterations=${1:-20}
ours=${KEEL_RUNC:-$PWD/target/debug/keel-runc}
runc=${RUNC:-/usr/sbin/runc}
[[ -x $ours ]] || { echo "no $ours: cargo build -p keel-cri --bin keel-runc" >&2; exit 1; }
[[ -x $runc ]] || { echo "no $runc (apt-get install runc)" >&2; exit 1; }
[[ -x /bin/busybox ]] || { echo "no /bin/busybox (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d /tmp/keel-runc-bench.XXXXXX)
cleanup() {
  local bin name
  for name in ours runc; do
    bin=$ours; [[ $name == runc ]] && bin=$runc
    for id in $("$bin" --root "$work/state-$name" list -q 2>/dev/null); do
      "$bin" --root "$work/state-$name" delete --force "$id" >/dev/null 2>&1 || true
    done
  done
  for d in /sys/fs/cgroup/*/keel-runc-bench /sys/fs/cgroup/keel-runc-bench; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/"
for a in sh sleep true; do ln -s busybox "$bundle/rootfs/bin/$a"; done
(cd "$bundle" && "$runc" spec)
jq '.process.terminal = false | .process.args = ["sleep", "30"] | .root.path = "rootfs"
    | .linux.cgroupsPath = "/keel-runc-bench/ID"' "$bundle/config.json" >"$bundle/config.tmpl"

now_ns() { date +%s%N; }
ms() { echo "scale=2; ($2 - $1) / 1000000" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m}'; }

# run BIN NAME: times every step of every iteration into $work/NAME.STEP
run() {
  local bin=$1 name=$2 root=$work/state-$2
  for i in $(seq "$iterations"); do
    local id="$name-$i-$$"
    sed "s|/keel-runc-bench/ID|/keel-runc-bench/$id|" "$bundle/config.tmpl" >"$bundle/config.json"
    local t0 t1 t2 t3 t3b t4
    t0=$(now_ns)
    "$bin" --root "$root" create --bundle "$bundle" --pid-file "$work/pid" "$id" </dev/null >/dev/null 2>&1
    t1=$(now_ns)
    "$bin" --root "$root" start "$id"
    t2=$(now_ns)
    "$bin" --root "$root" kill "$id" KILL
    t3=$(now_ns)
    local pid; pid=$(cat "$work/pid")
    for _ in $(seq 500); do [[ -d /proc/$pid ]] || break; sleep 0.01; done
    t3b=$(now_ns)
    "$bin" --root "$root" delete "$id"
    t4=$(now_ns)
    ms "$t0" "$t1" >>"$work/$name.create"
    ms "$t1" "$t2" >>"$work/$name.start"
    ms "$t2" "$t3" >>"$work/$name.kill"
    ms "$t3b" "$t4" >>"$work/$name.delete"
    echo "$(ms "$t0" "$t3") + $(ms "$t3b" "$t4")" | bc >>"$work/$name.total"
  done
}

run "$ours" ours
run "$runc" runc

printf "%-8s %10s %10s %7s\n" "step" "ours ms" "runc ms" "ratio"
for step in create start kill delete total; do
  o=$(median <"$work/ours.$step")
  r=$(median <"$work/runc.$step")
  printf "%-8s %10s %10s %7s\n" "$step" "$o" "$r" "$(echo "scale=2; $o / $r" | bc)"
done
echo "($iterations iterations, medians; ours = $ours)"
