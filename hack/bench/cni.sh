#!/usr/bin/env bash
# CNI plugin chain timing: Keel's bridge + host-local + portmap (release build) against Debian's
# reference plugins in /usr/lib/cni, in one run, on the same conflist. For each implementation,
# N iterations, each in a fresh netns: time ADD (bridge ADD, with host-local, then portmap ADD
# chained on its result) and DEL (portmap DEL, then bridge DEL), as a runtime would invoke them.
# Prints p50/p99 of ADD and DEL for both and the ratio ours/reference.
#
# Usage: hack/bench/cni.sh [N]          N iterations per implementation (default 200)
# Env:   BENCH_IPMASQ=true              the bridge also masquerades (per-container NAT rules)
#        BENCH_NO_PORTMAP=true          bridge + host-local only
#        BENCH_NO_BUILD=true            use the release build as it is
#        CARGO_TARGET_DIR               where cargo builds (default target/)
#
# Everything it makes is removed on exit, even on failure or ^C (trap): the netns of the current
# iteration, the bridge, the IPAM store, the rules of its containers (Keel's nft rules and the
# reference's iptables rules), and the reference's CNI-HOSTPORT-* chains and the nat tables
# when this run created them and nothing else uses them.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

N=${1:-200}
IPMASQ=${BENCH_IPMASQ:-false}
PORTMAP=true
[[ ${BENCH_NO_PORTMAP:-false} == true ]] && PORTMAP=false
REF_BIN=/usr/lib/cni
BRIDGE=kbench$(($$ % 10000))
NETNAME=kbench$$
SUBNET=10.246.$(($$ % 250)).0/24
HOST_PORT=32080

die() { echo "bench/cni: error: $*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "needs root (netns, bridge, nftables)"
[[ -x $REF_BIN/bridge && -x $REF_BIN/host-local && -x $REF_BIN/portmap ]] || die "the reference plugins are not in $REF_BIN"

TMP=$(mktemp -d /tmp/keel-bench-cni.XXXXXX)
NS=""
ID=""
created_tables=()
for t in "ip keel-portmap" "ip6 keel-portmap" "ip keel-cni" "ip6 keel-cni" "ip nat" "ip6 nat"; do
  nft list table $t >/dev/null 2>&1 || created_tables+=("$t")
done
had_hostport_chains=false
iptables -w -t nat -S 2>/dev/null | grep -qx -- '-N CNI-HOSTPORT-DNAT' && had_hostport_chains=true

# Deletes an `iptables -S` rule line ("-A CHAIN ...") with -D; the line's quoting is iptables'.
ipt_del() { eval "iptables -w -t nat -D ${1#-A }" 2>/dev/null || true; }

cleanup() {
  set +e
  [[ -n $NS ]] && ip netns del "$NS" 2>/dev/null
  ip link del "$BRIDGE" 2>/dev/null
  # Keel's rules of this run's containers (comment "<network>:<id>").
  for t in "ip keel-portmap" "ip6 keel-portmap" "ip keel-cni" "ip6 keel-cni"; do
    nft -a list table $t 2>/dev/null | awk -v c="comment \"$NETNAME:" '
      /^\tchain / { chain = $2 } index($0, c) { print chain, $NF }' |
      while read -r chain handle; do nft delete rule $t "$chain" handle "$handle"; done
  done
  # The reference's rules of this run's containers, then its shared chains if unused.
  iptables -w -t nat -S 2>/dev/null | grep -- '^-A ' | grep -F "$NETNAME" |
    while read -r l; do ipt_del "$l"; done
  if [[ $had_hostport_chains == false ]] &&
    ! iptables -w -t nat -S 2>/dev/null | grep -q -- '^-A CNI-HOSTPORT-DNAT '; then
    iptables -w -t nat -S 2>/dev/null | grep -- '^-A ' | grep -F -- '-j CNI-HOSTPORT-' |
      while read -r l; do ipt_del "$l"; done
    for c in $(iptables -w -t nat -S 2>/dev/null | awk '/^-N CNI-(HOSTPORT|DN)-/ { print $2 }'); do
      iptables -w -t nat -F "$c"; iptables -w -t nat -X "$c"
    done
  fi
  # Tables this run created, when left without rules.
  for t in "${created_tables[@]}"; do
    if nft list table $t >/dev/null 2>&1 &&
      ! nft list table $t | grep -P '^\t\t' | grep -qvP '^\t\ttype '; then
      nft delete table $t
    fi
  done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

if [[ ${BENCH_NO_BUILD:-false} != true ]]; then
  cargo build --release -q -p keel-cni --bin bridge --bin host-local --bin portmap
fi
RELEASE=${CARGO_TARGET_DIR:-$REPO/target}/release
mkdir -p "$TMP/ours"
for b in bridge host-local portmap; do
  [[ -x $RELEASE/$b ]] || die "$RELEASE/$b is not built"
  ln -s "$RELEASE/$b" "$TMP/ours/$b"
done

BRIDGE_CONF=$(cat <<JSON
{"cniVersion":"1.0.0","name":"$NETNAME","type":"bridge","bridge":"$BRIDGE","isDefaultGateway":true,"ipMasq":$IPMASQ,
 "ipam":{"type":"host-local","subnet":"$SUBNET","dataDir":"$TMP/ipam"}}
JSON
)
# The portmap config takes the bridge result as prevResult: this prefix + result + "}".
PORTMAP_HEAD="{\"cniVersion\":\"1.0.0\",\"name\":\"$NETNAME\",\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true},\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":$HOST_PORT,\"containerPort\":8080,\"protocol\":\"tcp\"}]},\"prevResult\":"

now() { date +%s%N; }

# plugin DIR TYPE COMMAND CONFIG: runs DIR/TYPE with the CNI environment of the current iteration.
plugin() {
  local dir=$1 type=$2 cmd=$3 conf=$4
  local out
  if ! out=$(CNI_COMMAND=$cmd CNI_CONTAINERID=$ID CNI_NETNS=/run/netns/$NS CNI_IFNAME=eth0 \
    CNI_PATH=$dir "$dir/$type" <<<"$conf"); then
    die "$dir/$type $cmd failed: $out"
  fi
  printf '%s' "$out"
}

# run NAME DIR: N iterations; writes $TMP/NAME.add and $TMP/NAME.del (microseconds, one a line).
run() {
  local name=$1 dir=$2 i t0 t1 t2 result
  : >"$TMP/$name.add"; : >"$TMP/$name.del"
  for ((i = 0; i < N; i++)); do
    NS=kbench-$$-$name-$i
    ID=$NETNAME-$name-$i
    ip netns add "$NS"
    t0=$(now)
    result=$(plugin "$dir" bridge ADD "$BRIDGE_CONF")
    [[ $PORTMAP == true ]] && plugin "$dir" portmap ADD "$PORTMAP_HEAD$result}" >/dev/null
    t1=$(now)
    [[ $PORTMAP == true ]] && plugin "$dir" portmap DEL "$PORTMAP_HEAD$result}" >/dev/null
    plugin "$dir" bridge DEL "$BRIDGE_CONF" >/dev/null
    t2=$(now)
    ip netns del "$NS"
    NS=""
    echo $(((t1 - t0) / 1000)) >>"$TMP/$name.add"
    echo $(((t2 - t1) / 1000)) >>"$TMP/$name.del"
  done
}

# pct FILE P: the P-th percentile (nearest rank) in milliseconds.
pct() {
  sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 } END { r = int((p * NR + 99) / 100); if (r < 1) r = 1; printf "%.2f", v[r] / 1000 }'
}

chain="bridge + host-local"
[[ $PORTMAP == true ]] && chain="$chain + portmap"
echo "bench/cni: $chain, ipMasq=$IPMASQ, $N iterations each, one fresh netns per iteration" >&2
echo "bench/cni: load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)" >&2
run ours "$TMP/ours"
run reference "$REF_BIN"

echo "bench/cni: load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
printf '\n%-6s %-10s %10s %10s %10s\n' "op" "stat" "keel (ms)" "ref (ms)" "keel/ref"
for op in add del; do
  for p in 50 99; do
    a=$(pct "$TMP/ours.$op" $p)
    b=$(pct "$TMP/reference.$op" $p)
    printf '%-6s %-10s %10s %10s %10s\n' "${op^^}" "p$p" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"
  done
done
