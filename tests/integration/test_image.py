"""The OCI image (scripts/build_image.py, `make image`): reproducible, exactly the expected files, well-formed OCI
layout and docker archive, and it runs: its root filesystem, unpacked, serves a signed chat through the real
proxy (chroot into the layer, as a container runtime would, with /proc and /dev mounted in a private mount
namespace), whose ECDSA signature verifies with eth-account.

The image is built from $PI_IMAGE_BINARY, else the binary under test when PI_BINARY is set (the ASan build under
`make integration-test`), else build-image/private-inference when `make image` built it. The two-clone rebuild (two `git clone`s of HEAD, `make image` in each, same digest)
is slow and runs only with PI_IMAGE_REPRO=1 (`make image-repro`).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from conftest import (MODEL_NAME, PROXY_READY_TIMEOUT, REPO, _unix_socket_answers, free_port, pi_binary,
                      sanitizer_env)

SCRIPT = REPO / "scripts" / "build_image.py"
EPOCH = 1700000000
REVISION = "0123456789abcdef0123456789abcdef01234567"
LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")
NVML_GLIBC_DEPS = {"libdl.so.2", "libpthread.so.0", "librt.so.1", "libm.so.6"}


def image_binary() -> Path:
    """$PI_IMAGE_BINARY; else the binary under test when PI_BINARY names one (make integration-test: the ASan
    build, so the image tests need no extra build); else `make image`'s, else the default binary under test."""
    if os.environ.get("PI_IMAGE_BINARY"):
        return Path(os.environ["PI_IMAGE_BINARY"])
    built = REPO / "build-image" / "private-inference"
    return pi_binary() if os.environ.get("PI_BINARY") or not built.is_file() else built


def build(out: Path, cwd: Path | None = None, env_extra: dict[str, str] | None = None) -> dict:
    env = dict(os.environ, **(env_extra or {}))
    r = subprocess.run([sys.executable, str(SCRIPT), "--binary", str(image_binary()), "--out", str(out),
                        "--source-date-epoch", str(EPOCH), "--revision", REVISION, "--source", "test-source"],
                       capture_output=True, text=True, timeout=300, cwd=cwd or REPO, env=env)
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "image.json").read_text())
    assert r.stdout.startswith(f"image {info['digest']}"), r.stdout
    return info


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, dict]:
    if not image_binary().is_file():
        if os.environ.get("PI_REQUIRE_ALL") == "1":
            pytest.fail(f"{image_binary()} is not built (PI_REQUIRE_ALL=1)")
        pytest.skip(f"{image_binary()} is not built")
    out = tmp_path_factory.mktemp("image") / "out"
    return out, build(out)


def blob(out: Path, digest: str) -> bytes:
    data = (out / "oci" / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, "a blob's name is not its sha256"
    return data


def layer_members(out: Path, info: dict) -> list[tarfile.TarInfo]:
    with tarfile.open(out / "oci" / "blobs" / "sha256" / info["layer_digest"].split(":")[1], "r:gz") as t:
        return t.getmembers()


def needed_closure(binary: Path) -> set[str]:
    """The image paths the loader needs, found independently of the script: DT_NEEDED (readelf), recursively,
    resolved in Debian's multiarch directories, plus PT_INTERP."""
    def readelf(*args: str) -> str:
        return subprocess.run(["readelf", *args], capture_output=True, text=True, check=True).stdout

    interp = re.search(r"Requesting program interpreter: (\S+)\]", readelf("-lW", str(binary))).group(1)
    paths, todo, seen = {interp.lstrip("/")}, [binary], set()
    while todo:
        f = todo.pop()
        for name in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf("-dW", str(f))):
            if name in seen:
                continue
            seen.add(name)
            hit = next((Path(d) / name for d in LIB_DIRS if (Path(d) / name).exists()), None)
            assert hit is not None, f"{name} (needed by {f}) not found"
            paths.add(f"lib/x86_64-linux-gnu/{name}")
            todo.append(hit)
    # ld-linux-x86-64.so.2 appears as NEEDED of libc too; it lives at the interpreter path only.
    paths.discard("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    return paths


def test_two_builds_from_the_same_binary_give_the_same_digest(image, tmp_path):
    out, info = image
    # Another working directory, time zone and umask: nothing of the build environment may leak into the bytes.
    old = os.umask(0o077)
    try:
        second = build(tmp_path / "again", cwd=tmp_path, env_extra={"TZ": "Pacific/Kiritimati"})
    finally:
        os.umask(old)
    assert second["digest"] == info["digest"]
    files_a = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (out / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes(), f"{rel} differs"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", info["digest"])
    assert info["compressed_bytes"] < 25_000_000 or "asan" in str(image_binary()), info["compressed_bytes"]


def test_the_image_holds_exactly_the_expected_files(image):
    out, info = image
    members = layer_members(out, info)
    names = [m.name for m in members]
    assert names == sorted(names), "layer entries are not sorted"
    files = {m.name for m in members if m.isfile()}
    expected = {"usr/bin/private-inference", "etc/passwd", "etc/group", "etc/nsswitch.conf",
                "etc/ssl/certs/ca-certificates.crt"} | needed_closure(image_binary()) | \
        {f"lib/x86_64-linux-gnu/{n}" for n in NVML_GLIBC_DEPS}
    assert files == expected, (sorted(files - expected), sorted(expected - files))
    dirs = {m.name for m in members if m.isdir()}
    parents = {str(Path(f).parent) for f in files} | {"var/lib/private-inference"}
    want_dirs = set()
    for p in parents:
        parts = Path(p).parts
        want_dirs |= {"/".join(parts[:i]) for i in range(1, len(parts) + 1)}
    assert dirs == want_dirs
    assert all(m.isfile() or m.isdir() for m in members), "links or devices in the layer"
    for m in members:
        assert m.mtime == EPOCH, m.name
        assert m.uname == "" and m.gname == "", m.name
        if m.name == "var/lib/private-inference":
            assert (m.uid, m.gid, m.mode) == (65532, 65532, 0o700)
        else:
            assert (m.uid, m.gid) == (0, 0), m.name
    with tarfile.open(out / "oci" / "blobs" / "sha256" / info["layer_digest"].split(":")[1], "r:gz") as t:
        passwd = t.extractfile("etc/passwd").read().decode()
        binary = t.extractfile("usr/bin/private-inference").read()
        ca = t.extractfile("etc/ssl/certs/ca-certificates.crt").read()
    assert re.search(r"^pi:x:65532:65532:", passwd, re.M)
    assert ca.count(b"-----BEGIN CERTIFICATE-----") >= 100
    # Stripped: no symbol table in the image's binary.
    stripped = out.parent / "bin"
    stripped.write_bytes(binary)
    sections = subprocess.run(["readelf", "-SW", str(stripped)], capture_output=True, text=True, check=True).stdout
    assert ".symtab" not in sections and ".comment" not in sections


def test_oci_layout_and_docker_archive_are_consistent(image):
    out, info = image
    assert json.loads((out / "oci" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((out / "oci" / "index.json").read_text())
    [desc] = index["manifests"]
    assert desc["digest"] == info["digest"] == (out / "digest").read_text().strip()
    manifest_b = blob(out, desc["digest"])
    assert desc["size"] == len(manifest_b)
    manifest = json.loads(manifest_b)
    assert manifest["mediaType"] == desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    config_b = blob(out, manifest["config"]["digest"])
    assert manifest["config"]["size"] == len(config_b)
    [layer_desc] = manifest["layers"]
    assert layer_desc["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    layer_gz = blob(out, layer_desc["digest"])
    assert layer_desc["size"] == len(layer_gz)
    # Deterministic gzip: MTIME 0, no FNAME flag (RFC 1952 header: flags byte 3, mtime bytes 4..7).
    assert layer_gz[:3] == b"\x1f\x8b\x08" and layer_gz[3] & 0x08 == 0 and layer_gz[4:8] == b"\0\0\0\0"
    layer = gzip.decompress(layer_gz)
    config = json.loads(config_b)
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    c = config["config"]
    assert c["User"] == "65532:65532" and c["Entrypoint"] == ["/usr/bin/private-inference"]
    assert "8000/tcp" in c["ExposedPorts"]
    labels = c["Labels"]
    assert labels["org.opencontainers.image.revision"] == REVISION
    assert labels["org.opencontainers.image.source"] == "test-source"
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z" == config["created"]
    assert "libc6=" in labels["io.private-inference.debian-packages"]
    assert "g++-12=" in labels["io.private-inference.build-packages"] and "zlib1g=" in \
        labels["io.private-inference.build-packages"]
    assert manifest["annotations"]["org.opencontainers.image.revision"] == REVISION

    with tarfile.open(out / "private-inference.docker.tar") as t:
        dm = json.loads(t.extractfile("manifest.json").read())
        assert dm == [{"Config": manifest["config"]["digest"].split(":")[1] + ".json",
                       "RepoTags": [f"private-inference:{REVISION[:12]}"],
                       "Layers": [config["rootfs"]["diff_ids"][0].split(":")[1] + "/layer.tar"]}]
        assert t.extractfile(dm[0]["Config"]).read() == config_b
        assert t.extractfile(dm[0]["Layers"][0]).read() == layer
        assert all(m.mtime == EPOCH and m.uid == 0 for m in t.getmembers())


def test_skopeo_reads_the_oci_layout_and_the_docker_archive(image, tmp_path):
    """An independent reader (containers/image, Debian's skopeo — also the documented way to publish the image):
    it verifies every blob's digest while copying, keeps the manifest bytes, and loads the docker archive (layer
    checked against the config's diff_id), as `docker load` reads it."""
    if not shutil.which("skopeo"):
        if os.environ.get("PI_REQUIRE_ALL") == "1":
            pytest.fail("skopeo is not installed (make deps)")
        pytest.skip("skopeo is not installed (make deps)")
    out, info = image
    subprocess.run(["skopeo", "copy", "-q", f"oci:{out / 'oci'}", f"dir:{tmp_path / 'dir'}"], check=True, timeout=120)
    assert "sha256:" + hashlib.sha256((tmp_path / "dir" / "manifest.json").read_bytes()).hexdigest() == info["digest"]
    r = subprocess.run(["skopeo", "inspect", f"docker-archive:{out / 'private-inference.docker.tar'}"], check=True,
                       capture_output=True, text=True, timeout=120)
    inspected = json.loads(r.stdout)
    assert inspected["Labels"]["org.opencontainers.image.revision"] == REVISION
    assert inspected["Architecture"] == "amd64" and inspected["Os"] == "linux"
    subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{out / 'private-inference.docker.tar'}",
                    f"oci:{tmp_path / 'from-docker'}:x"], check=True, timeout=120)
    index = json.loads((tmp_path / "from-docker" / "index.json").read_text())
    manifest = json.loads((tmp_path / "from-docker" / "blobs" / "sha256" /
                           index["manifests"][0]["digest"].split(":")[1]).read_bytes())
    # skopeo re-encodes the config when it converts formats; the content it read is ours: same layer, same labels.
    config = json.loads((tmp_path / "from-docker" / "blobs" / "sha256" /
                         manifest["config"]["digest"].split(":")[1]).read_bytes())
    assert config["rootfs"]["diff_ids"] == [info["diff_id"]]
    assert config["config"]["Labels"] == inspected["Labels"]
    assert config["config"]["User"] == "65532:65532"


def unpack_root(out: Path, info: dict, root: Path) -> None:
    with tarfile.open(out / "oci" / "blobs" / "sha256" / info["layer_digest"].split(":")[1], "r:gz") as t:
        t.extractall(root, numeric_owner=True)
    # What a container runtime provides: mount points for /proc and /dev, and the dstack socket's directory.
    for d in ("proc", "dev", "var/run"):
        (root / d).mkdir(parents=True, exist_ok=True)


def in_root(root: Path, argv: list[str]) -> list[str]:
    """argv run as the image's user inside `root`, with /proc and /dev mounted in a private mount namespace
    (unshare, then chroot; the proxy keeps the PID, so SIGTERM reaches it directly)."""
    script = 'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot --userspec=65532:65532 "$0" "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root), *argv]


def test_the_image_serves_a_signed_chat_that_verifies(image, stack, backend, tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("chroot"):
        why = "running the image's root filesystem needs root (mount namespace + chroot)"
        if os.environ.get("PI_REQUIRE_ALL") == "1":
            pytest.fail(why + " (PI_REQUIRE_ALL=1)")
        pytest.skip(why)
    out, info = image
    root = tmp_path / "rootfs"
    unpack_root(out, info, root)
    sock = root / "var" / "run" / "dstack.sock"  # the proxy's default --dstack-socket, inside the root
    state = tmp_path / "devtee-state"
    tee = stack.start("dev-tee-image", "dev-tee", [str(pi_binary()), "dev-tee", "--socket", str(sock), "--state",
                                                   str(state), "--pki"], env=sanitizer_env())
    deadline = time.monotonic() + PROXY_READY_TIMEOUT
    while not _unix_socket_answers(sock):
        assert tee.alive(), tee.tail()
        assert time.monotonic() < deadline, "dev-tee did not start"
        time.sleep(0.1)
    sock.chmod(0o666)  # dstack's agent socket is 0777 (SocketMode in its systemd unit); the proxy is not root
    port, token = free_port(), secrets.token_urlsafe(24)
    env = sanitizer_env()
    # An ASan binary inside the root: no leak check at exit (LeakSanitizer's thread tracer is not what this test is
    # about; every other proxy of the suite runs with it).
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
    # The image's own defaults: no --state-dir (the image's /var/lib/private-inference), no --dstack-socket.
    argv = in_root(root, ["/usr/bin/private-inference", "serve", "--backend", backend.url, "--listen",
                          f"127.0.0.1:{port}", "--model", MODEL_NAME, f"--token={token}", "--log-level", "info"])
    stack.tokens.add(token)
    proxy = stack.start("proxy-image", "proxy", argv, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + PROXY_READY_TIMEOUT
    while True:
        assert proxy.alive(), proxy.tail()
        try:
            if httpx.get(url + "/version", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, proxy.tail()
        time.sleep(0.1)
    version = httpx.get(url + "/version", timeout=10).json()
    # Found the agent at the default socket path inside the root, and took its keys from it.
    assert version["tee"]["mode"] == "dstack" and version["signing_keys"].startswith("dstack-derived"), version

    marker = stack.marker()
    body = json.dumps({"model": MODEL_NAME, "max_tokens": 8,
                       "messages": [{"role": "user", "content": f"Say hi {marker}"}]}).encode()
    auth = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
    r = httpx.post(url + "/v1/chat/completions", content=body, timeout=120,
                   headers=auth | {"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    stack.remember_body(r.content)
    sig = httpx.get(f"{url}/v1/signature/{r.json()['id']}", headers=auth, timeout=30).json()
    assert sig["text"] == hashlib.sha256(body).hexdigest() + ":" + hashlib.sha256(r.content).hexdigest()
    recovered = Account.recover_message(encode_defunct(text=sig["text"]), signature=sig["ecdsa_signature"])
    assert recovered == sig["ecdsa_signing_address"]
    # The key is dev-tee's (bound in its quote), not a random one; the record sits in the image's state dir.
    nonce = secrets.token_hex(32)
    report = httpx.get(url + "/v1/attestation/report", params={"nonce": nonce, "signing_algo": "ecdsa"},
                       timeout=60).json()
    assert report["signing_address"].lower() == recovered.lower() == version["signing_addresses"]["ecdsa"].lower()
    assert (root / "var/lib/private-inference/signatures.db").exists()
    assert proxy.stop() == 0, proxy.tail()


@pytest.mark.skipif(os.environ.get("PI_IMAGE_REPRO") != "1", reason="two full Release builds: make image-repro")
@pytest.mark.timeout(7200)
def test_two_clean_clones_build_the_same_image():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()
    # Two directories: a path leaking into the binary shows up as a different digest. make image turns ccache's
    # base_dir off, so each clone compiles in full (about 10 minutes each on 2 cores).
    base = REPO / "build-image-repro"
    shutil.rmtree(base, ignore_errors=True)
    digests = []
    for name in ("a", "b"):
        clone = base / name
        subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(clone)], check=True)
        subprocess.run(["git", "checkout", "-q", head], cwd=clone, check=True)
        r = subprocess.run(["make", "image", f"JOBS={os.environ.get('JOBS', '2')}"], cwd=clone,
                           capture_output=True, text=True, timeout=3600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        digests.append((clone / "build-image" / "image" / "digest").read_text().strip())
        print(f"clone {name}: {digests[-1]}")
    assert digests[0] == digests[1]
    a, b = (base / n / "build-image" / "image" for n in ("a", "b"))
    assert (a / "private-inference.docker.tar").read_bytes() == (b / "private-inference.docker.tar").read_bytes()
    shutil.rmtree(base, ignore_errors=True)
