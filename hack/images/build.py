#!/usr/bin/python3
"""Owns the keel-test/* test images: builds their layers deterministically (fixed mtimes, sorted
entries, uid/gid set explicitly, gzip mtime 0) and pushes blobs and manifests straight through the
registry HTTP API v2. Idempotent: a tag whose manifest digest already matches is skipped.
Run by hack/test-images.sh; stdlib only (plus the zstd CLI for the zstd layer)."""
import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CREATED = "2024-01-01T00:00:00Z"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = OCI_TAR + "+gzip"
OCI_ZSTD = OCI_TAR + "+zstd"
D_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
D_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
D_CONFIG = "application/vnd.docker.container.image.v1+json"
D_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ALL_MANIFESTS = ", ".join([OCI_MANIFEST, OCI_INDEX, D_MANIFEST, D_LIST])


def die(msg):
    sys.exit(f"build.py: error: {msg}")


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---- layers ---------------------------------------------------------------------------------

def d(path, mode=0o755, uid=0, gid=0):
    return (path, tarfile.DIRTYPE, mode, uid, gid, None)


def f(path, data, mode=0o644, uid=0, gid=0):
    return (path, tarfile.REGTYPE, mode, uid, gid, data.encode() if isinstance(data, str) else data)


def sym(path, target):
    return (path, tarfile.SYMTYPE, 0o777, 0, 0, target)


def whiteout(path):
    return f(path, b"")


class Layer:
    """A layer blob: the tar (whose sha256 is the diff_id) and its compressed form."""

    def __init__(self, entries, compression):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for path, kind, mode, uid, gid, payload in sorted(entries, key=lambda e: e[0].split("/")):
                info = tarfile.TarInfo(path.lstrip("/"))
                info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, 0
                info.uname = info.gname = ""
                if kind == tarfile.SYMTYPE:
                    info.linkname = payload
                if kind == tarfile.REGTYPE:
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                else:
                    tar.addfile(info)
        tar_bytes = buf.getvalue()
        self.diff_id = sha256(tar_bytes)
        self.compression = compression
        if compression == "gzip":
            out = io.BytesIO()
            with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
                gz.write(tar_bytes)
            self.data = out.getvalue()
        elif compression == "zstd":
            try:
                self.data = subprocess.run(["zstd", "-q", "-c", "-19", "--no-progress"], input=tar_bytes,
                                           capture_output=True, check=True).stdout
            except (OSError, subprocess.CalledProcessError) as e:
                die(f"zstd compression failed ({e}); is the zstd package installed?")
        else:
            self.data = tar_bytes
        self.digest = sha256(self.data)

    def media_type(self, docker):
        if docker:
            assert self.compression == "gzip", "docker v2s2 layers here are gzip only"
            return D_GZIP
        return {"gzip": OCI_GZIP, "zstd": OCI_ZSTD, "none": OCI_TAR}[self.compression]


def busybox_layer(busybox_path):
    with open(busybox_path, "rb") as fh:
        binary = fh.read()
    applets = subprocess.run([busybox_path, "--list"], capture_output=True, text=True, check=True).stdout.split()
    if "sh" not in applets:
        die(f"{busybox_path} --list printed no 'sh' applet; is it Debian's busybox-static?")
    entries = [d("/bin"), d("/dev"), d("/etc"), d("/home"), d("/proc", 0o555), d("/root", 0o700),
               d("/sys", 0o555), d("/tmp", 0o1777), d("/var"),
               f("/bin/busybox", binary, 0o755),
               f("/etc/passwd", passwd()), f("/etc/group", group())]
    entries += [sym(f"/bin/{a}", "busybox") for a in sorted(set(applets)) if a != "busybox"]
    return Layer(entries, "gzip")


def passwd(*extra):
    return "".join(["root:x:0:0:root:/root:/bin/sh\n",
                    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", *extra])


def group(*extra):
    return "".join(["root:x:0:\n", "nogroup:x:65534:\n", "nobody:x:65534:\n", *extra])


# ---- configs and manifests ------------------------------------------------------------------

def canonical(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def config_blob(layers, arch="amd64", **cfg):
    cfg.setdefault("Env", [PATH_ENV])
    return canonical({
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]},
        "history": [{"created": CREATED, "created_by": f"hack/images/build.py layer {i}"}
                    for i in range(len(layers))],
    })


class Manifest:
    """An image manifest (OCI or Docker v2s2) together with the blobs it references."""

    def __init__(self, layers, config, docker=False):
        self.media_type = D_MANIFEST if docker else OCI_MANIFEST
        self.blobs = [config] + [l.data for l in layers]
        self.data = canonical({
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": {"mediaType": D_CONFIG if docker else OCI_CONFIG,
                       "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": l.media_type(docker), "digest": l.digest, "size": len(l.data)}
                       for l in layers],
        })
        self.digest = sha256(self.data)
        self.children = []


class Index:
    """An OCI image index or Docker manifest list over (manifest, platform) pairs."""

    def __init__(self, entries, docker=False):
        self.media_type = D_LIST if docker else OCI_INDEX
        self.blobs = []
        self.children = [m for m, _ in entries]
        self.data = canonical({
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [{"mediaType": m.media_type, "digest": m.digest, "size": len(m.data),
                           "platform": plat} for m, plat in entries],
        })
        self.digest = sha256(self.data)


def images(busybox_path, pause_path):
    bb = busybox_layer(busybox_path)
    amd64 = Manifest([bb], config_blob([bb], Cmd=["sh"]))
    v2s2 = Manifest([bb], config_blob([bb], Cmd=["sh"]), docker=True)
    wrong = config_blob([bb], arch="arm64", Cmd=["echo", "WRONG-ARCH"])
    amd64_p = {"architecture": "amd64", "os": "linux"}
    arm64_p = {"architecture": "arm64", "os": "linux", "variant": "v8"}

    with open(pause_path, "rb") as fh:
        pause = Layer([f("/pause", fh.read(), 0o755)], "gzip")

    www = Layer([d("/www"), f("/www/index.html", "hello from keel-test/httpd\n")], "gzip")

    keel = Layer([d("/etc"), d("/home"), d("/home/keel", 0o755, 1000, 1000),
                  f("/etc/passwd", passwd("keel:x:1000:1000:keel:/home/keel:/bin/sh\n")),
                  f("/etc/group", group("keel:x:1000:\n"))], "gzip")
    user_cfg = dict(Env=[PATH_ENV, "GREETING=hello"], WorkingDir="/home/keel", Entrypoint=["/bin/sh", "-c"],
                    Cmd=['echo "$GREETING from $(id -u):$(id -g) in $(pwd)"'])

    l1 = Layer([d("/data"), d("/data/dir"), d("/opq"), f("/data/keep", "keep\n"), f("/data/gone", "gone\n"),
                f("/opq/old", "old\n"), f("/data/dir/inner", "inner\n")], "gzip")
    l2 = Layer([d("/data"), d("/opq"), whiteout("/data/.wh.gone"), whiteout("/data/.wh.dir"),
                whiteout("/opq/.wh..wh..opq"), f("/opq/new", "new\n")], "zstd")
    l3 = Layer([d("/data"), f("/data/added", "added\n")], "none")

    return [
        ("keel-test/busybox", "latest", amd64),
        ("keel-test/busybox", "v2s2", v2s2),
        ("keel-test/busybox", "multiarch", Index([(amd64, amd64_p), (Manifest([bb], wrong), arm64_p)])),
        ("keel-test/busybox", "manifestlist",
         Index([(v2s2, amd64_p), (Manifest([bb], wrong, docker=True), arm64_p)], docker=True)),
        ("keel-test/pause", "latest", Manifest([pause], config_blob([pause], Entrypoint=["/pause"]))),
        ("keel-test/httpd", "latest", Manifest([bb, www], config_blob(
            [bb, www], Entrypoint=["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"],
            ExposedPorts={"8080/tcp": {}}))),
        ("keel-test/user", "latest", Manifest([bb, keel], config_blob([bb, keel], User="keel", **user_cfg))),
        ("keel-test/user", "numeric", Manifest([bb, keel], config_blob([bb, keel], User="1000:1000", **user_cfg))),
        ("keel-test/layers", "latest", Manifest([bb, l1, l2, l3], config_blob([bb, l1, l2, l3], Cmd=["sh"]))),
        ("keel-test/stopsignal", "latest", Manifest([bb], config_blob(
            [bb], StopSignal="SIGUSR1",
            Cmd=["sh", "-c", "trap 'echo got-usr1; exit 0' USR1; while true; do sleep 0.1; done"]))),
    ]


# ---- registry client ------------------------------------------------------------------------

class Registry:
    def __init__(self, host, credentials=None):
        self.base = f"http://{host}"
        self.host = host
        self.auth = None
        if credentials:
            self.auth = "Basic " + base64.b64encode(credentials.encode()).decode()

    def call(self, method, url, data=None, headers=None, ok=(200,)):
        url = url if url.startswith("http") else self.base + url
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        if self.auth:
            req.add_header("Authorization", self.auth)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, hdrs, body = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            status, hdrs, body = e.code, e.headers, e.read()
        except OSError as e:
            die(f"{method} {url}: {e}")
        if status not in ok:
            die(f"{method} {url}: HTTP {status}: {body[:500].decode(errors='replace')}")
        return status, hdrs

    def push_blob(self, repo, data):
        digest = sha256(data)
        status, _ = self.call("HEAD", f"/v2/{repo}/blobs/{digest}", ok=(200, 404))
        if status == 200:
            return
        _, hdrs = self.call("POST", f"/v2/{repo}/blobs/uploads/", data=b"", ok=(202,))
        location = urllib.parse.urljoin(self.base + "/", hdrs["Location"])
        sep = "&" if "?" in location else "?"
        self.call("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", data=data,
                  headers={"Content-Type": "application/octet-stream"}, ok=(201,))

    def manifest_digest(self, repo, ref):
        status, hdrs = self.call("HEAD", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ALL_MANIFESTS},
                                 ok=(200, 404))
        return hdrs.get("Docker-Content-Digest") if status == 200 else None

    def push(self, repo, ref, m):
        """Pushes manifest m (children and blobs first) under ref; returns 'pushed' or 'skipped'."""
        if self.manifest_digest(repo, ref) == m.digest:
            return "skipped"
        for child in m.children:
            self.push(repo, child.digest, child)
        for blob in m.blobs:
            self.push_blob(repo, blob)
        self.call("PUT", f"/v2/{repo}/manifests/{ref}", data=m.data, headers={"Content-Type": m.media_type},
                  ok=(201,))
        got = self.manifest_digest(repo, ref)
        if got != m.digest:
            die(f"{self.host}/{repo}:{ref}: registry reports digest {got}, expected {m.digest}")
        return "pushed"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--registry", default="127.0.0.1:5000")
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--pause", required=True, help="static pause binary (from hack/images/pause.c)")
    ap.add_argument("--auth-registry", help="also push keel-test/busybox:latest here, with --auth")
    ap.add_argument("--auth", help="user:password for --auth-registry")
    ap.add_argument("--list", required=True, help="file to write 'ref digest' lines to")
    args = ap.parse_args()

    targets = [(Registry(args.registry), repo, tag, m) for repo, tag, m in images(args.busybox, args.pause)]
    if args.auth_registry:
        latest = targets[0][3]
        targets.append((Registry(args.auth_registry, args.auth), "keel-test/busybox", "latest", latest))

    rows = []
    for reg, repo, tag, m in targets:
        rows.append((reg.push(repo, tag, m), f"{reg.host}/{repo}:{tag}", m.digest))

    width = max(len(r[1]) for r in rows)
    for status, ref, digest in rows:
        print(f"  {status:8} {ref:{width}}  {digest}")
    with open(args.list + ".tmp", "w") as fh:
        fh.writelines(f"{ref} {digest}\n" for _, ref, digest in rows)
    os.replace(args.list + ".tmp", args.list)


if __name__ == "__main__":
    main()
