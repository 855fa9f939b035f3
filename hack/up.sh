#!/usr/bin/env bash
# Keel's one "run" command: installs the dependencies, builds the release binaries into
# /usr/local/bin (and Keel's CNI plugins into /opt/cni/bin), writes a default keel-cri config and
# CNI config when there are none, starts the
# local test registry and runs keel-cri in the foreground (Ctrl-C stops it; containers keep
# running). Needs root. Until the single-node cluster exists, keel-cri is Keel's main job.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

bash hack/install-deps.sh
cargo build --release -p keel-cri -p keel-cni --bins
for bin in keel-cri keel-cri-monitor keel-runc; do
  install -m 0755 "$target/release/$bin" /usr/local/bin/
done
# Keel's CNI plugins, where runtimes look first.
mkdir -p /opt/cni/bin
for plugin in bridge host-local portmap loopback; do
  install -m 0755 "$target/release/$plugin" /opt/cni/bin/
done

mkdir -p /etc/keel /etc/cni/net.d
if [ ! -f /etc/keel/cri.toml ]; then
  cat > /etc/keel/cri.toml <<'TOML'
# Written by hack/up.sh; every key and its default: keel-cri --print-config
[cni]
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
[registry."127.0.0.1:5000"]
mirrors = ["http://127.0.0.1:5000"]
TOML
  echo "up: wrote /etc/keel/cri.toml"
fi
if ! ls /etc/cni/net.d/*.conflist /etc/cni/net.d/*.conf /etc/cni/net.d/*.json >/dev/null 2>&1; then
  cat > /etc/cni/net.d/10-keel.conflist <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "keel",
  "plugins": [
    {
      "type": "bridge", "bridge": "keel0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.85.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  echo "up: wrote /etc/cni/net.d/10-keel.conflist (bridge keel0, 10.85.0.0/16)"
fi

bash hack/test-images.sh
echo "up: keel-cri on unix:///run/keel/cri.sock (crictl --runtime-endpoint unix:///run/keel/cri.sock ...)"
exec /usr/local/bin/keel-cri --config /etc/keel/cri.toml
