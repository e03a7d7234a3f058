#!/usr/bin/env python3
"""`make deploy`: pin the built image in deploy/docker-compose.yml and derive deploy/app-compose.json from it.

1. The proxy's `image:` line (marked `# make deploy`) becomes `<repo>@<digest>` (the digest `make image` wrote to
   build-image/image/digest, or --digest).
2. deploy/app-compose.json is dstack's app description with that compose file in `docker_compose_file`, written
   in dstack's deterministic JSON form (keys sorted, compact, UTF-8, no trailing newline: what dstack's SDKs'
   get_compose_hash serialises), so that sha256 of the file's bytes — what dstack-util measures into the
   `compose-hash` event (sha256_file(app-compose.json)) — and the SDKs' get_compose_hash agree.
3. The compose hash is written to deploy/compose-hash and between the markers in docs/deploy.md.
Standard library only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
MARK = "# make deploy"
DOC_BEGIN, DOC_END = "<!-- compose-hash:begin -->", "<!-- compose-hash:end -->"

# dstack's AppCompose (dstack-types): the fields an operator decides. Env values that are not in allowed_envs
# never reach the containers; the ones that are stay outside the measured compose (docs/deploy.md).
APP_COMPOSE_FIELDS = {
    "manifest_version": 2,
    "name": "private-inference",
    "runner": "docker-compose",
    "kms_enabled": True,           # keys from dstack's KMS: the signing addresses survive restarts and moves
    "gateway_enabled": True,       # dstack-gateway terminates TLS at <app-id>-8000.<gateway domain>
    "local_key_provider_enabled": False,
    "public_logs": True,           # the proxy never logs prompts, completions, tokens or keys
    "public_sysinfo": True,
    "public_tcbinfo": True,        # Info (and so the verifier) shows app_compose and the event log
    "allowed_envs": ["MODEL_NAME", "TOKEN", "HF_TOKEN"],
    "no_instance_id": False,
    "secure_time": True,
}


def deterministic_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def pin_image(compose: str, repo: str, digest: str) -> str:
    lines = compose.split("\n")
    hits = [i for i, line in enumerate(lines) if line.rstrip().endswith(MARK) and line.lstrip().startswith("image:")]
    if len(hits) != 1:
        raise SystemExit(f"make_deploy: expected exactly one `image: … {MARK}` line in the compose, found {len(hits)}")
    i = hits[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i] = f"{indent}image: {repo}@{digest} {MARK}"
    return "\n".join(lines)


def app_compose(compose_text: str) -> bytes:
    doc = dict(APP_COMPOSE_FIELDS)
    doc["docker_compose_file"] = compose_text
    return deterministic_json(doc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--digest", help="sha256:<hex> (default: build-image/image/digest)")
    ap.add_argument("--repo", default=os.environ.get("IMAGE_REPO") or None,
                    help="registry repository the image is pushed to (default $IMAGE_REPO, else the one in the "
                         "compose file)")
    ap.add_argument("--check", action="store_true",
                    help="only check that deploy/app-compose.json and the hash are derived from the compose file")
    a = ap.parse_args()

    compose_path = DEPLOY / "docker-compose.yml"
    compose = compose_path.read_text()
    if not a.check:
        digest = a.digest or (REPO / "build-image" / "image" / "digest").read_text().strip()
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise SystemExit(f"make_deploy: bad digest {digest!r}")
        repo = a.repo
        if repo is None:
            m = re.search(r"image:\s*(\S+)@sha256:[0-9a-f]{64}\s*" + re.escape(MARK), compose)
            if not m:
                raise SystemExit("make_deploy: give --repo (or IMAGE_REPO)")
            repo = m.group(1)
        compose = pin_image(compose, repo, digest)
        compose_path.write_text(compose)

    doc = app_compose(compose)
    h = hashlib.sha256(doc).hexdigest()
    if a.check:
        ok = (DEPLOY / "app-compose.json").read_bytes() == doc and \
            (DEPLOY / "compose-hash").read_text().strip() == h
        print(f"deploy: app-compose.json {'matches' if ok else 'DOES NOT match'} docker-compose.yml; "
              f"compose hash {h}")
        return 0 if ok else 1
    (DEPLOY / "app-compose.json").write_bytes(doc)
    (DEPLOY / "compose-hash").write_text(h + "\n")
    docs = REPO / "docs" / "deploy.md"
    if docs.exists():
        text = docs.read_text()
        if DOC_BEGIN in text and DOC_END in text:
            pre, rest = text.split(DOC_BEGIN, 1)
            _, post = rest.split(DOC_END, 1)
            docs.write_text(f"{pre}{DOC_BEGIN}`{h}`{DOC_END}{post}")
    print(f"deploy: {compose_path.relative_to(REPO)} pins the proxy image; app-compose.json compose hash {h}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
