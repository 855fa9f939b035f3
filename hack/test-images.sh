#!/usr/bin/env bash
# Owns the local test registries and the keel-test/* images in them:
#   127.0.0.1:5000  plain HTTP, no auth: every keel-test/* image (built by hack/images/build.py)
#   127.0.0.1:5001  plain HTTP, htpasswd auth keel/keelpass: keel-test/busybox:latest
# State lives in /var/lib/keel/test-registry (configs, storage) and /var/lib/keel/test-images
# (pause binary cache, manifest.txt with one "ref digest" line per image); logs go to
# /var/log/keel-test-registry-<port>.log. Idempotent; with everything in place it takes < 2 s.
set -euo pipefail
cd "$(dirname "$0")/.."

REG_DIR=/var/lib/keel/test-registry
IMG_DIR=/var/lib/keel/test-images
PY=/usr/bin/python3 # Debian's, not pyenv's
AUTH_USER=keel AUTH_PASS=keelpass

die() { echo "test-images: error: $*" >&2; exit 1; }
log() { echo "test-images: $*"; }

for tool in docker-registry curl gcc zstd "$PY" /bin/busybox; do
  command -v "$tool" >/dev/null || die "$tool not found; run hack/install-deps.sh first"
done
mkdir -p "$REG_DIR" "$IMG_DIR"

# HTTP status of a URL, 000 if nothing answers.
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" || true; }

# Writes the registry config for a port (only when it changed). $2 = htpasswd file, if any.
write_config() {
  local port=$1 htpasswd=${2:-} cfg="$REG_DIR/config-$1.yml" new
  new="version: 0.1
log:
  level: info
  fields: {service: keel-test-registry-$port}
storage:
  filesystem: {rootdirectory: $REG_DIR/data-$port}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
http:
  addr: 127.0.0.1:$port
  headers: {X-Content-Type-Options: [nosniff]}
"
  [[ -n $htpasswd ]] && new+="auth:
  htpasswd: {realm: keel-test, path: $htpasswd}
"
  [[ -f $cfg && "$(cat "$cfg")" == "${new%$'\n'}" ]] || printf '%s' "$new" >"$cfg"
  echo "$cfg"
}

# Frees a port held by something that does not answer as we need: our own stale registry or
# Debian's docker-registry service (its default config wants auth); anything else is an error.
free_port() {
  local port=$1 code=$2 pid cmd
  pid=$(ss -Hltnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true)
  cmd=$( [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" || echo "unknown process")
  if [[ $cmd == *"$REG_DIR/config-$port.yml"* ]]; then
    log "our registry on :$port (pid $pid) answers $code on /v2/; restarting it"
    kill "$pid"
  elif [[ $cmd == *docker-registry*/etc/docker/registry/config.yml* ]]; then
    log "Debian's docker-registry service holds :$port but answers $code on /v2/; stopping it"
    if [[ -d /run/systemd/system ]]; then systemctl stop docker-registry; else service docker-registry stop || kill "$pid"; fi
  else
    die "127.0.0.1:$port is held by '$cmd' (pid ${pid:-?}), which answers $code on /v2/ instead of a registry's"
  fi
  for _ in $(seq 100); do [[ $(http_code "http://127.0.0.1:$port/v2/") == 000 ]] && return; sleep 0.1; done
  die "127.0.0.1:$port still busy after stopping pid ${pid:-?}"
}

# Makes sure a registry answers on 127.0.0.1:$1 with status $2 on an anonymous GET /v2/.
ensure_registry() {
  local port=$1 want=$2 cfg=$3 code logf="/var/log/keel-test-registry-$1.log" pid
  code=$(http_code "http://127.0.0.1:$port/v2/")
  [[ $code == "$want" ]] && { log "registry on 127.0.0.1:$port is up"; return; }
  [[ $code == 000 ]] || free_port "$port" "$code"
  log "starting docker-registry on 127.0.0.1:$port (log: $logf)"
  setsid nohup docker-registry serve "$cfg" >>"$logf" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$REG_DIR/registry-$port.pid"
  for _ in $(seq 200); do # 20 s
    code=$(http_code "http://127.0.0.1:$port/v2/")
    [[ $code == "$want" ]] && return
    kill -0 "$pid" 2>/dev/null || die "docker-registry on :$port exited; last log lines:
$(tail -n 15 "$logf")"
    sleep 0.1
  done
  die "docker-registry on :$port did not answer /v2/ with $want within 20 s (last: $code); see $logf"
}

# --- plain registry on :5000 ---
if [[ $(http_code http://127.0.0.1:5000/v2/) == 200 ]]; then
  log "registry on 127.0.0.1:5000 is up"
else
  ensure_registry 5000 200 "$(write_config 5000)"
fi

# --- htpasswd registry on :5001 (bcrypt via libxcrypt through Debian's python3 crypt module) ---
auth_args=()
htpasswd="$REG_DIR/htpasswd"
if [[ ! -s $htpasswd ]]; then
  "$PY" -W ignore::DeprecationWarning -c '
import crypt, sys
h = crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))
assert h and h.startswith("$2"), "no bcrypt support in crypt(3)"
print(f"{sys.argv[1]}:{h}")' "$AUTH_USER" "$AUTH_PASS" >"$htpasswd.tmp" 2>/dev/null &&
    mv "$htpasswd.tmp" "$htpasswd" ||
    { rm -f "$htpasswd.tmp"; log "WARNING: cannot make a bcrypt htpasswd file; skipping the auth registry on :5001"; }
fi
if [[ -s $htpasswd ]]; then
  ensure_registry 5001 401 "$(write_config 5001 "$htpasswd")"
  code=$(http_code -u "$AUTH_USER:$AUTH_PASS" http://127.0.0.1:5001/v2/)
  [[ $code == 200 ]] || die "auth registry on :5001 answers $code (not 200) to $AUTH_USER:$AUTH_PASS"
  auth_args=(--auth-registry 127.0.0.1:5001 --auth "$AUTH_USER:$AUTH_PASS")
fi

# --- static pause binary, cached by source hash ---
pause_src=hack/images/pause.c
pause_bin="$IMG_DIR/pause-$(sha256sum "$pause_src" | cut -c1-16)"
if [[ ! -x $pause_bin ]]; then
  log "compiling $pause_src"
  gcc -static -Os -s -o "$pause_bin.tmp" "$pause_src" || die "gcc -static failed for $pause_src (libc6-dev installed?)"
  mv "$pause_bin.tmp" "$pause_bin"
fi

# --- images ---
log "building and pushing keel-test/* images"
"$PY" hack/images/build.py --registry 127.0.0.1:5000 --pause "$pause_bin" --list "$IMG_DIR/manifest.txt" \
  "${auth_args[@]}" || die "hack/images/build.py failed"
log "done; refs and digests in $IMG_DIR/manifest.txt"
