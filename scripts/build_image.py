#!/usr/bin/env python3
"""Build the private-inference OCI image, bit-reproducibly, without docker, network or a base image.

The image is FROM scratch, one layer:
  /usr/bin/private-inference             the binary, stripped
  /lib64/ld-linux-x86-64.so.2, /lib/x86_64-linux-gnu/*
                                         exactly the shared libraries it loads (its ldd closure, the dynamic
                                         loader included) plus glibc's libdl/libpthread/librt/libm, which the
                                         host's libnvidia-ml.so.1 (mounted by the NVIDIA runtime, dlopen'ed
                                         for GPU evidence) links against
  /etc/ssl/certs/ca-certificates.crt     Debian's ca-certificates (the package's Mozilla certificates, sorted)
  /etc/passwd, /etc/group                root and the unprivileged user the proxy runs as (65532)
  /etc/nsswitch.conf                     "hosts: files dns" (glibc's default without the file asks DNS first
                                         and never reads /etc/hosts for localhost)
  /var/lib/private-inference/            the signature store's state directory (owned by 65532, so that a
                                         fresh volume mounted there is writable by the proxy)

Reproducible: every entry's mtime is SOURCE_DATE_EPOCH (default: the commit time of HEAD), owners are 0:0
(except the state directory) with empty names, entries are sorted, the tar is PAX with no per-build
headers, and gzip is level 9 with mtime 0 and no file name. The same binary (see PI_REPRODUCIBLE in
CMakeLists.txt) and the same Debian packages therefore give the same image digest.

Outputs in --out: oci/ (an OCI image layout: oci-layout, index.json, blobs/sha256/…),
private-inference.docker.tar (a `docker load` archive), digest (the image manifest's sha256) and
image.json (digest, sizes, file list). Standard library only.
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USER_ID = 65532
STATE_DIR = "var/lib/private-inference"
LIB_DIR = "lib/x86_64-linux-gnu"
# glibc's compatibility libraries that libnvidia-ml.so.1 (from the host, at run time) has in DT_NEEDED.
NVML_GLIBC_DEPS = ("libdl.so.2", "libpthread.so.0", "librt.so.1", "libm.so.6")
CA_DIR = Path("/usr/share/ca-certificates/mozilla")
PASSWD = "root:x:0:0:root:/root:/sbin/nologin\npi:x:65532:65532:private-inference:/nonexistent:/sbin/nologin\n"
GROUP = "root:x:0:\npi:x:65532:\n"
NSSWITCH = "hosts: files dns\n"


def sh(*argv: str, cwd: Path | None = None) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, cwd=cwd).stdout


def ldd_closure(binary: Path) -> dict[str, Path]:
    """Image path -> host file for the dynamic loader and every library `ldd` resolves for `binary`."""
    out: dict[str, Path] = {}
    for line in sh("ldd", str(binary)).splitlines():
        line = line.strip()
        m = re.match(r"^(\S+) => (/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            out[f"{LIB_DIR}/{m.group(1)}"] = Path(m.group(2))
            continue
        m = re.match(r"^(/\S+) \(0x[0-9a-f]+\)$", line)  # the interpreter, by its absolute path
        if m:
            out[m.group(1).lstrip("/")] = Path(m.group(1))
            continue
        if "not found" in line:
            raise SystemExit(f"build_image: {binary}: {line}")
        # linux-vdso.so.1 (0x...): provided by the kernel
    if "lib64/ld-linux-x86-64.so.2" not in out:
        raise SystemExit("build_image: no x86-64 dynamic loader in the ldd output (not an amd64 dynamic binary?)")
    return out


def host_lib(name: str) -> Path:
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"):
        if (Path(d) / name).exists():
            return Path(d) / name
    raise SystemExit(f"build_image: {name} not found")


def debian_package_versions(paths: list[Path]) -> str:
    """'pkg=version,...' of the Debian packages the files come from (what a rebuild must match)."""
    pkgs: set[str] = set()
    for p in paths:
        real = os.path.realpath(p)
        for candidate in (str(p), real, real.replace("/usr/lib/", "/lib/", 1)):
            r = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
            if r.returncode == 0:
                pkgs.add(r.stdout.split(":")[0].strip())
                break
    pkgs.add("ca-certificates")
    versions = []
    for pkg in sorted(pkgs):
        v = sh("dpkg-query", "-W", "-f=${Version}", pkg)
        versions.append(f"{pkg}={v}")
    return ",".join(versions)


# What else decides the image's bytes: the compiler and linker, the header-only libraries compiled into the binary
# (Boost.Asio/Beast, CLI11) and the headers of the shared ones, strip, and zlib (the gzip stream of the layer).
BUILD_PACKAGES = ("g++-12", "binutils", "zlib1g", "libboost1.81-dev", "libboost-json1.81-dev", "libcli11-dev",
                  "libspdlog-dev", "libfmt-dev", "libssl-dev", "libsecp256k1-dev", "libcrypto++-dev", "libsqlite3-dev")


def build_package_versions() -> str:
    out = []
    for pkg in BUILD_PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        out.append(f"{pkg}={r.stdout if r.returncode == 0 else 'absent'}")
    return ",".join(out)


def ca_bundle() -> bytes:
    files = sorted(CA_DIR.glob("*.crt"))
    if not files:
        raise SystemExit(f"build_image: no certificates in {CA_DIR} (apt-get install ca-certificates)")
    return b"".join(f.read_bytes().rstrip(b"\n") + b"\n" for f in files)


def stripped(binary: Path, tmp: Path) -> bytes:
    out = tmp / "private-inference.stripped"
    shutil.copyfile(binary, out)
    sh("strip", "--strip-all", "--remove-section=.comment", str(out))
    return out.read_bytes()


def layer_tar(files: dict[str, tuple[bytes, int]], epoch: int) -> bytes:
    """files: image path (no leading /) -> (content, mode). Directories are derived; all sorted."""
    dirs: set[str] = {STATE_DIR}
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in list(dirs):
        parts = d.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    entries = sorted([(d, None) for d in dirs] + [(p, v) for p, v in files.items()], key=lambda e: e[0])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, val in entries:
            info = tarfile.TarInfo(path)
            info.mtime = epoch
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if val is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                if path == STATE_DIR:
                    info.uid = info.gid = USER_ID
                    info.mode = 0o700
                tar.addfile(info)
            else:
                data, mode = val
                info.size = len(data)
                info.mode = mode
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    # filename="" and mtime=0: the gzip header names no file and no time.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def jbytes(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def git(*args: str) -> str:
    return sh("git", *args, cwd=REPO).strip()


def deterministic_tar(members: list[tuple[str, bytes]], epoch: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), epoch, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(binary: Path, out: Path, epoch: int, revision: str, source: str, version: str) -> dict:
    with tempfile.TemporaryDirectory() as td:
        bin_bytes = stripped(binary, Path(td))
    libs = ldd_closure(binary)
    for name in NVML_GLIBC_DEPS:
        libs.setdefault(f"{LIB_DIR}/{name}", host_lib(name))
    files: dict[str, tuple[bytes, int]] = {"usr/bin/private-inference": (bin_bytes, 0o755)}
    for path, host in libs.items():
        files[path] = (Path(os.path.realpath(host)).read_bytes(), 0o755 if path.startswith("lib64/") else 0o644)
    files["etc/ssl/certs/ca-certificates.crt"] = (ca_bundle(), 0o644)
    files["etc/passwd"] = (PASSWD.encode(), 0o644)
    files["etc/group"] = (GROUP.encode(), 0o644)
    files["etc/nsswitch.conf"] = (NSSWITCH.encode(), 0o644)

    layer = layer_tar(files, epoch)
    layer_gz = gzip_bytes(layer)
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {
        "org.opencontainers.image.title": "private-inference",
        "org.opencontainers.image.description": "Signing proxy for LLM inference in a TEE (FROM scratch)",
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.version": version,
        "io.private-inference.debian-packages": debian_package_versions(list(libs.values())),
        "io.private-inference.build-packages": build_package_versions(),
    }
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "author": "scripts/build_image.py",
        "config": {
            "User": f"{USER_ID}:{USER_ID}",
            "Entrypoint": ["/usr/bin/private-inference"],
            "Cmd": ["serve"],
            "Env": ["PATH=/usr/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                    "PI_STATE_DIR=/" + STATE_DIR],
            "ExposedPorts": {"8000/tcp": {}},
            "Volumes": {"/" + STATE_DIR: {}},
            "WorkingDir": "/",
            "StopSignal": "SIGTERM",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
        "history": [{"created": created, "created_by": "scripts/build_image.py (FROM scratch)"}],
    }
    config_b = jbytes(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config_b),
                   "size": len(config_b)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer_gz),
                    "size": len(layer_gz)}],
        "annotations": {k: v for k, v in labels.items() if k.startswith("org.opencontainers.")},
    }
    manifest_b = jbytes(manifest)
    digest = sha(manifest_b)
    tag = f"private-inference:{revision[:12]}"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": manifest["mediaType"], "digest": digest, "size": len(manifest_b),
                       "annotations": {"org.opencontainers.image.ref.name": revision[:12]}}],
    }

    if out.exists():
        shutil.rmtree(out)
    blobs = out / "oci" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for b in (layer_gz, config_b, manifest_b):
        (blobs / sha(b).split(":")[1]).write_bytes(b)
    (out / "oci" / "oci-layout").write_bytes(jbytes({"imageLayoutVersion": "1.0.0"}))
    (out / "oci" / "index.json").write_bytes(jbytes(index))

    # docker-archive (`docker load`): manifest.json, the config, the uncompressed layer (its sha256 is the
    # config's diff_id, which is what docker checks).
    cfg_name = sha(config_b).split(":")[1] + ".json"
    layer_name = sha(layer).split(":")[1] + "/layer.tar"
    docker_manifest = [{"Config": cfg_name, "RepoTags": [tag], "Layers": [layer_name]}]
    archive = deterministic_tar([("manifest.json", jbytes(docker_manifest)), (cfg_name, config_b),
                                 (layer_name, layer)], epoch)
    (out / "private-inference.docker.tar").write_bytes(archive)
    (out / "digest").write_text(digest + "\n")
    info = {
        "digest": digest,
        "tag": tag,
        "compressed_bytes": len(layer_gz) + len(config_b) + len(manifest_b),
        "layer_bytes": len(layer),
        "layer_digest": sha(layer_gz),
        "diff_id": sha(layer),
        "config_digest": sha(config_b),
        "source_date_epoch": epoch,
        "revision": revision,
        "files": sorted(files),
    }
    (out / "image.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", type=Path, default=REPO / "build-image" / "private-inference")
    ap.add_argument("--out", type=Path, default=REPO / "build-image" / "image")
    ap.add_argument("--source-date-epoch", type=int,
                    help="default: $SOURCE_DATE_EPOCH, else the commit time of HEAD")
    ap.add_argument("--revision", help="default: git rev-parse HEAD")
    ap.add_argument("--source", default=os.environ.get("PI_IMAGE_SOURCE", "private-inference"),
                    help="org.opencontainers.image.source (default $PI_IMAGE_SOURCE or 'private-inference'); "
                         "part of the digest: rebuilders use the publisher's value")
    ap.add_argument("--version", default=None, help="default: the version in src/version.hpp")
    a = ap.parse_args()
    epoch = a.source_date_epoch
    if epoch is None:
        epoch = int(os.environ["SOURCE_DATE_EPOCH"]) if os.environ.get("SOURCE_DATE_EPOCH") else \
            int(git("log", "-1", "--format=%ct"))
    revision = a.revision or git("rev-parse", "HEAD")
    version = a.version
    if version is None:
        m = re.search(r'kVersion = "([^"]+)"', (REPO / "src" / "version.hpp").read_text())
        version = m.group(1) if m else "unknown"
    if not a.binary.exists():
        print(f"build_image: {a.binary} does not exist (make image builds it)", file=sys.stderr)
        return 2
    info = build(a.binary, a.out, epoch, revision, a.source, version)
    print(f"image {info['digest']}")
    print(f"  tag {info['tag']}, revision {revision}, SOURCE_DATE_EPOCH {epoch}")
    print(f"  compressed {info['compressed_bytes']} bytes ({info['compressed_bytes'] / 1e6:.1f} MB), "
          f"uncompressed layer {info['layer_bytes']} bytes, {len(info['files'])} files")
    print(f"  OCI layout {a.out / 'oci'}, docker archive {a.out / 'private-inference.docker.tar'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
