#!/usr/bin/env bash
# Installs the Debian packages Keel builds, tests and benchmarks with. Idempotent: packages that
# are already installed are not fetched again. Needs root (CI and developers run as root).
set -euo pipefail

packages=(
  # build: -sys crates and protobuf
  pkg-config gcc libc6-dev libseccomp-dev libnftnl-dev libmnl-dev libelf-dev
  protobuf-compiler libprotobuf-dev
  # host tools the tests use
  iproute2 nftables procps util-linux jq
  # the test registry and image tooling (hack/test-images.sh)
  docker-registry busybox-static skopeo umoci zstd curl python3
  # peers the benchmarks and comparison tests run against
  containerd runc containernetworking-plugins etcd-server etcd-client hyperfine
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all packages present"
fi

# Debian's containerd and docker-registry packages may start their services; Keel's scripts start
# what they need themselves, on their own ports and sockets, so nothing here depends on them.
