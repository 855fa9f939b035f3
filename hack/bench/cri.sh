#!/usr/bin/env bash
# keel-cri vs containerd 1.6 + runc, side by side in one run. Prints the table of
# cri/benches/cri.rs (per-operation medians, ratio, p90; daemon and monitor/shim memory).
#
# Sets up, all in a temp dir removed on exit:
#   - one CNI conflist (bridge keelbench0, host-local 10.88.77.0/24, portmap) both runtimes use
#   - containerd with its own root, state, socket, runc root and registry hosts dir; the
#     Debian service's socket, /var/lib/containerd and /run/containerd are never used
#   - keel-cri (release build) with default_runtime = "runc", and when the workspace has a
#     keel-runc binary, a second keel-cri with default_runtime = "keel-runc" as another column
# The registry on 127.0.0.1:5000 comes from hack/test-images.sh.
#
# Usage: hack/bench/cri.sh [bench flags...]   e.g. --iterations 50 --rss-pods 5
# Env:   BENCH_RUNTIMES="keel-cri containerd"  which daemons to run (keel-runc is added when
#        built); e.g. BENCH_RUNTIMES=containerd for containerd alone.
#        BENCH_IPMASQ=true  the bridge plugin also masquerades (iptables rules per pod).
#        BENCH_LOG_DIR=DIR  keep the daemons' logs there (keel-cri logs each operation's stages).
#        BENCH_CNI=keel     both runtimes use Keel's own CNI plugins (bridge, host-local, loopback,
#                           and portmap once built; the reference's otherwise) instead of Debian's.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

BRIDGE=keelbench0
NETNAME=keelbench
SUBNET=10.88.77.0/24
CNI_BIN=/usr/lib/cni
CNI_PLUGINS=${BENCH_CNI:-reference} # reference: Debian's plugins; keel: Keel's own (release)
REGISTRY=127.0.0.1:5000
PAUSE_IMAGE=$REGISTRY/keel-test/pause:latest
BUSYBOX_IMAGE=$REGISTRY/keel-test/busybox:latest
RUNTIMES=${BENCH_RUNTIMES:-keel-cri containerd}
IPMASQ=${BENCH_IPMASQ:-false} # true: the bridge plugin also adds its iptables NAT rules per pod
START_TIMEOUT=60 # seconds for a daemon to serve its socket
STOP_TIMEOUT=20  # seconds for a daemon to exit after SIGTERM

die() { echo "bench/cri: error: $*" >&2; exit 1; }
log() { echo "bench/cri: $*" >&2; }
wants() { [[ " $RUNTIMES " == *" $1 "* ]]; }

[[ $IPMASQ == true || $IPMASQ == false ]] || die "BENCH_IPMASQ must be true or false, not $IPMASQ"

[[ $EUID == 0 ]] || die "needs root (network namespaces, mounts, cgroups)"
for tool in containerd ctr /usr/sbin/runc ip jq curl findmnt /usr/bin/python3 cargo; do
  command -v "$tool" >/dev/null || die "$tool not found; run hack/install-deps.sh first"
done
for plugin in bridge host-local portmap loopback; do
  [[ -x $CNI_BIN/$plugin ]] || die "$CNI_BIN/$plugin missing (containernetworking-plugins)"
done
[[ $CNI_PLUGINS == reference || $CNI_PLUGINS == keel ]] \
  || die "BENCH_CNI must be reference or keel, not $CNI_PLUGINS"

# --- build ---------------------------------------------------------------------------------
# The package that has a keel-runc binary, if any.
RUNC_PKG=$(cargo metadata --no-deps --format-version 1 \
  | jq -r '.packages[] | select(any(.targets[]; .name == "keel-runc" and (.kind | index("bin")))) | .name' \
  | head -n1)
KEEL_RUNC=
if wants keel-cri; then
  build=(-p keel-cri --bin keel-cri --bin keel-cri-monitor)
  [[ -n $RUNC_PKG ]] && build+=(-p "$RUNC_PKG" --bin keel-runc)
  log "building ${build[*]} (release)"
  cargo build --release "${build[@]}"
  [[ -n $RUNC_PKG ]] && KEEL_RUNC=$REPO/target/release/keel-runc
fi
if [[ $CNI_PLUGINS == keel ]]; then
  log "building Keel's CNI plugins (release)"
  cargo build --release -p keel-cni --bins
fi
log "building the benchmark"
cargo bench -p keel-cri --bench cri --no-run

# --- registry --------------------------------------------------------------------------------
if [[ -f hack/test-images.sh ]]; then
  bash hack/test-images.sh
else
  log "hack/test-images.sh is not in this tree; checking that the registry is already up"
fi
accept='application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json'
for image in "$BUSYBOX_IMAGE" "$PAUSE_IMAGE"; do
  repo=${image#"$REGISTRY"/}
  curl -sf --max-time 5 -o /dev/null -H "Accept: $accept" \
    "http://$REGISTRY/v2/${repo%:*}/manifests/${repo##*:}" \
    || die "$image is not in the registry on $REGISTRY (run hack/test-images.sh)"
done

# --- the network must be ours alone ---------------------------------------------------------
ip link show "$BRIDGE" >/dev/null 2>&1 \
  && die "bridge $BRIDGE already exists (another run of this script, or a leftover: ip link del $BRIDGE)"
/usr/bin/python3 - "$SUBNET" <<'EOF' || die "$SUBNET clashes with this host's addresses or routes"
import ipaddress, json, subprocess, sys
net = ipaddress.ip_network(sys.argv[1])
addrs = json.loads(subprocess.check_output(["ip", "-j", "-4", "addr"]))
routes = json.loads(subprocess.check_output(["ip", "-j", "-4", "route", "show", "table", "all"]))
clash = [f"{a['local']}/{a['prefixlen']} on {i['ifname']}" for i in addrs for a in i.get("addr_info", [])
         if ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False).overlaps(net)]
clash += [f"route {r['dst']}" for r in routes if r.get("dst") not in (None, "default")
          and ipaddress.ip_network(r["dst"], strict=False).overlaps(net)]
for c in clash:
    print(f"bench/cri: {sys.argv[1]} overlaps {c}", file=sys.stderr)
sys.exit(1 if clash else 0)
EOF

# --- temp dir and cleanup --------------------------------------------------------------------
TMP=$(mktemp -d /tmp/keel-bench-cri.XXXXXX)
if [[ $CNI_PLUGINS == keel ]]; then
  mkdir -p "$TMP/cni-bin"
  for plugin in bridge host-local portmap loopback; do
    if [[ -x $REPO/target/release/$plugin ]]; then
      ln -s "$REPO/target/release/$plugin" "$TMP/cni-bin/$plugin"
    else
      ln -s "$CNI_BIN/$plugin" "$TMP/cni-bin/$plugin"
      log "no Keel $plugin yet: using the reference's"
    fi
  done
  CNI_BIN=$TMP/cni-bin
fi
declare -A DAEMON_PID=()

# Waits up to $2 seconds for pid $1 to be gone.
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

cleanup() {
  local rc=$? name pid mnt root bin id f cmd
  set +e
  if [[ -n ${BENCH_LOG_DIR:-} ]]; then
    mkdir -p "$BENCH_LOG_DIR" && cp "$TMP"/*.log "$BENCH_LOG_DIR"/ 2>/dev/null
  fi
  for name in "${!DAEMON_PID[@]}"; do
    pid=${DAEMON_PID[$name]}
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid"
    wait_gone "$pid" "$STOP_TIMEOUT" || { log "$name (pid $pid) ignored SIGTERM; killing it"; kill -KILL "$pid"; }
    wait "$pid" 2>/dev/null
  done
  # Only after a failure is anything below still there. Containers runc still knows of:
  for root in "$TMP"/containerd/runc/* "$TMP"/keel-cri*/state/runtime/*; do
    [[ -d $root ]] || continue
    bin=/usr/sbin/runc
    [[ ${root##*/} == keel-runc ]] && bin=$KEEL_RUNC
    [[ -n $bin ]] || continue
    for id in $("$bin" --root "$root" list -q 2>/dev/null); do
      log "deleting leftover container $id ($bin --root $root)"
      "$bin" --root "$root" delete -f "$id" 2>/dev/null
    done
  done
  # Shims and monitors our daemons left behind: each names this run's temp dir in its argv.
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/} && pid=${pid%/cmdline}
    [[ $pid == "$$" ]] && continue
    cmd=$( { tr '\0' ' ' <"$f"; } 2>/dev/null) || continue
    [[ $cmd == *"$TMP"* ]] || continue
    log "killing leftover pid $pid: $cmd"
    kill -KILL "$pid" 2>/dev/null
  done
  # Rootfs overlays, /dev/shm, pinned namespaces: everything mounted under the temp dir.
  for mnt in $(findmnt -rn -o TARGET | grep -F -- "$TMP/" | sort -r); do
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || log "could not unmount $mnt"
  done
  if ((rc != 0)); then
    for name in "${!DAEMON_PID[@]}"; do
      log "last lines of $name's log:"
      tail -n 20 "$TMP/$name.log" >&2
    done
  fi
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
  rm -f /var/lib/cni/results/"$NETNAME"-* # containerd's libcni result cache
  rm -rf --one-file-system "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a daemon in the background, logging to $TMP/<name>.log; waits for its socket to answer.
# $1 name, $2 socket, $3 readiness command (run until it succeeds), rest: the daemon's argv.
start_daemon() {
  local name=$1 sock=$2 ready=$3 deadline
  shift 3
  "$@" >"$TMP/$name.log" 2>&1 &
  DAEMON_PID[$name]=$!
  deadline=$((SECONDS + START_TIMEOUT))
  until [[ -S $sock ]] && eval "$ready" >/dev/null 2>&1; do
    kill -0 "${DAEMON_PID[$name]}" 2>/dev/null \
      || { tail -n 30 "$TMP/$name.log" >&2; die "$name exited before serving $sock"; }
    ((SECONDS < deadline)) \
      || { tail -n 30 "$TMP/$name.log" >&2; die "$name did not serve $sock within ${START_TIMEOUT}s"; }
    sleep 0.1
  done
  log "$name is up (pid ${DAEMON_PID[$name]}, socket $sock, log $TMP/$name.log)"
}

# --- CNI: one network for both runtimes ------------------------------------------------------
mkdir -p "$TMP/cni"
cat >"$TMP/cni/10-$NETNAME.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NETNAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": $IPMASQ,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$TMP/cni-ipam"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF

BENCH_ARGS=(--pre-pull "$PAUSE_IMAGE" --image "$BUSYBOX_IMAGE")

# --- keel-cri --------------------------------------------------------------------------------
# $1 instance name, $2 default runtime handler.
start_keel_cri() {
  local name=$1 handler=$2 dir=$TMP/$1
  mkdir -p "$dir"
  {
    echo "listen = \"unix://$dir/cri.sock\""
    echo "root = \"$dir/root\""
    echo "state = \"$dir/state\""
    echo "default_runtime = \"$handler\""
    echo "monitor_path = \"$REPO/target/release/keel-cri-monitor\""
    echo "sandbox_image = \"$PAUSE_IMAGE\""
    echo "[runtimes.runc]"
    echo "path = \"/usr/sbin/runc\""
    if [[ -n $KEEL_RUNC ]]; then
      echo "[runtimes.keel-runc]"
      echo "path = \"$KEEL_RUNC\""
    fi
    echo "[cni]"
    echo "conf_dir = \"$TMP/cni\""
    echo "bin_dirs = [\"$CNI_BIN\"]"
    echo "[registry.\"$REGISTRY\"]"
    echo "mirrors = [\"http://$REGISTRY\"]"
  } >"$dir/cri.toml"
  start_daemon "$name" "$dir/cri.sock" true \
    "$REPO/target/release/keel-cri" --config "$dir/cri.toml"
  BENCH_ARGS+=(--endpoint "$name=unix://$dir/cri.sock" --pid "$name=${DAEMON_PID[$name]}")
}
if wants keel-cri; then
  start_keel_cri keel-cri runc
  [[ -n $KEEL_RUNC ]] && start_keel_cri keel-cri+keel-runc keel-runc
fi

# --- containerd ------------------------------------------------------------------------------
if wants containerd; then
  CD=$TMP/containerd
  mkdir -p "$CD/certs.d/$REGISTRY"
  cat >"$CD/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
  cat >"$CD/config.toml" <<EOF
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "$CD/containerd.sock"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CD/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    # Without CAP_SYS_RESOURCE (as in this VM) runc cannot set the pause container's
    # oom_score_adj of -998 and create fails; this clamps it to containerd's own value.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_BIN"
      conf_dir = "$TMP/cni"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          Root = "$CD/runc"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$CD/certs.d"
EOF
  start_daemon containerd "$CD/containerd.sock" \
    "ctr --address '$CD/containerd.sock' plugins ls | grep -q 'io.containerd.grpc.v1.*cri.*ok'" \
    containerd --config "$CD/config.toml"
  BENCH_ARGS+=(--endpoint "containerd=unix://$CD/containerd.sock" --pid "containerd=${DAEMON_PID[containerd]}")
fi

other=$(pgrep -x containerd | grep -vx "${DAEMON_PID[containerd]:-0}" | tr '\n' ' ' || true)
[[ -n $other ]] && log "another containerd runs (pid $other): left alone, not benchmarked"

# --- run -------------------------------------------------------------------------------------
log "running: cargo bench -p keel-cri --bench cri -- ${BENCH_ARGS[*]} $*"
cargo bench -p keel-cri --bench cri -- "${BENCH_ARGS[@]}" "$@"
