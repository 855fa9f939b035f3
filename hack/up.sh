#!/usr/bin/env bash
# Keel's one "run" command: installs the dependencies, builds the release binaries into
# /usr/local/bin (and Keel's CNI plugins into /opt/cni/bin), writes a default keel-cri config and
# CNI config when there are none, starts the local test registry, then runs the components built
# so far: the control plane (keel-apiserver on the embedded store, keel-scheduler,
# keel-controller-manager) in the background, logging to /var/log/keel/, and keel-cri in the
# foreground. Ctrl-C stops them all (containers keep running). Needs root. Until keel-kubelet
# exists, pods are scheduled to nodes but nothing runs them; keel-cri is driven with crictl.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

bash hack/install-deps.sh
cargo build --release -p keel-cri -p keel-cni -p keel-control-plane --bins
for bin in keel-cri keel-cri-monitor keel-runc keel-apiserver keel-scheduler keel-controller-manager; do
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

# The control plane: the apiserver writes its PKI and admin.kubeconfig on first start.
data=/var/lib/keel/apiserver
kubeconfig=$data/admin.kubeconfig
mkdir -p /var/log/keel
children=()
stop_all() {
  for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all EXIT INT TERM
/usr/local/bin/keel-apiserver --data-dir "$data" >>/var/log/keel/apiserver.log 2>&1 &
children+=($!)
for _ in $(seq 1 300); do
  [ -f "$kubeconfig" ] && kubectl --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1 && break
  sleep 0.1
done
kubectl --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null || {
  echo "up: keel-apiserver did not become ready; see /var/log/keel/apiserver.log" >&2
  exit 1
}
/usr/local/bin/keel-scheduler --kubeconfig "$kubeconfig" >>/var/log/keel/scheduler.log 2>&1 &
children+=($!)
/usr/local/bin/keel-controller-manager --kubeconfig "$kubeconfig" \
  --root-ca-file "$data/pki/ca.crt" \
  --cluster-signing-cert-file "$data/pki/ca.crt" --cluster-signing-key-file "$data/pki/ca.key" \
  >>/var/log/keel/controller-manager.log 2>&1 &
children+=($!)
echo "up: keel-apiserver on https://127.0.0.1:6443 (kubectl --kubeconfig $kubeconfig ...)"
echo "up: keel-scheduler and keel-controller-manager running (logs in /var/log/keel/)"
echo "up: keel-cri on unix:///run/keel/cri.sock (crictl --runtime-endpoint unix:///run/keel/cri.sock ...)"
/usr/local/bin/keel-cri --config /etc/keel/cri.toml
