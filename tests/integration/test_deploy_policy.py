"""From the deploy files to a verifier verdict, on the SIMULATED TEE (docs/deploy.md):

deploy/app-compose.json (derived from deploy/docker-compose.yml, which pins the image by digest)
  -> dev-tee --pki --compose deploy/app-compose.json measures sha256 of its bytes into the compose-hash event
  -> the proxy's attestation report
  -> `private-inference policy --app-compose … --image-digest …` writes the policy pinning that compose hash
  -> `verify attestation --policy` PASSES (test root trusted with --trust-simulated, as everywhere);
a compose that pins another image digest gives another compose hash, and its policy FAILS the same deployment.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import PROXY_READY_TIMEOUT, REPO, _unix_socket_answers, pi_binary, sanitizer_env, start_proxy

APP_COMPOSE = REPO / "deploy" / "app-compose.json"


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(pi_binary()), *args], capture_output=True, text=True, timeout=timeout,
                          env=sanitizer_env())


def compose_digest(path: Path) -> str:
    compose = json.loads(path.read_bytes())["docker_compose_file"]
    m = re.search(r"image:\s*\S*private-inference@(sha256:[0-9a-f]{64})", compose)
    assert m, "deploy/docker-compose.yml does not pin the proxy image by digest"
    return m.group(1)


@pytest.fixture(scope="module")
def deployed(stack, backend, tmp_path_factory):
    if "--compose" not in run("dev-tee", "--help").stdout or run("policy", "--help").returncode != 0:
        if os.environ.get("PI_REQUIRE_ALL") == "1":
            pytest.fail(f"{pi_binary()} has no `dev-tee --compose` / `policy` (PI_REQUIRE_ALL=1)")
        pytest.skip(f"{pi_binary()} has no `dev-tee --compose` / `policy` yet")
    base = tmp_path_factory.mktemp("deploy")
    sock, state = base / "dstack.sock", base / "state"
    tee = stack.start("dev-tee-deploy", "dev-tee", [str(pi_binary()), "dev-tee", "--socket", str(sock), "--state",
                                                    str(state), "--pki", "--compose", str(APP_COMPOSE)],
                      env=sanitizer_env())
    deadline = time.monotonic() + PROXY_READY_TIMEOUT
    while not _unix_socket_answers(sock):
        assert tee.alive(), tee.tail()
        assert time.monotonic() < deadline, "dev-tee --compose did not start"
        time.sleep(0.1)
    proxy = start_proxy(stack, "proxy-deploy", backend.url, sock, [secrets.token_urlsafe(24)])
    yield proxy, ["--trust-simulated", str(state)]
    proxy.proc.stop()
    tee.stop()


def verify_with_policy(proxy, trust: list[str], policy: Path) -> tuple[int, dict]:
    r = run("verify", "attestation", "--url", proxy.url, f"--token={proxy.token}", "--no-nras", *trust,
            "--policy", str(policy), "--json")
    assert r.stdout, r.stderr
    return r.returncode, json.loads(r.stdout)


def check(res: dict, cid: str) -> dict:
    return next(c for c in res["checks"] if c["id"] == cid)


def test_committed_app_compose_is_derived_from_the_compose_file_in_dstack_form():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "make_deploy.py"), "--check"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    raw = APP_COMPOSE.read_bytes()
    doc = json.loads(raw)
    # dstack measures the file's bytes; its SDKs' get_compose_hash re-serialises (sorted keys, compact, UTF-8).
    # The committed file is already in that form, so both give the same hash — the one written in deploy/.
    sdk_form = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert raw == sdk_form
    h = hashlib.sha256(raw).hexdigest()
    assert (REPO / "deploy" / "compose-hash").read_text().strip() == h
    assert h in (REPO / "docs" / "deploy.md").read_text()
    assert doc["runner"] == "docker-compose" and doc["docker_compose_file"] == \
        (REPO / "deploy" / "docker-compose.yml").read_text()
    assert "privileged" not in doc["docker_compose_file"]


def test_policy_from_the_deploy_compose_passes_the_deployment(deployed, tmp_path):
    proxy, trust = deployed
    digest = compose_digest(APP_COMPOSE)
    policy = tmp_path / "policy.json"
    r = run("policy", "--app-compose", str(APP_COMPOSE), "--image-digest", digest, "-o", str(policy))
    assert r.returncode == 0, r.stderr
    want = hashlib.sha256(APP_COMPOSE.read_bytes()).hexdigest()
    assert json.loads(policy.read_text())["compose_hashes"] == [want]
    assert want in r.stderr
    code, res = verify_with_policy(proxy, trust, policy)
    assert code == 0 and res["ok"] is True, [c for c in res["checks"] if c["status"] == "fail"]
    pinned = check(res, "code.policy.compose_hash")
    assert pinned["status"] == "pass" and pinned["enforced"], pinned
    assert check(res, "code.compose_hash")["status"] == "pass"
    assert check(res, "tdx.quote_signature")["status"] == "pass"
    # dev-tee served the deploy compose itself: its hash is the file's, and the compose text shown is ours.
    assert res["facts"]["compose_hash"] == want
    assert res["facts"]["docker_compose_file"] == (REPO / "deploy" / "docker-compose.yml").read_text()


def test_an_image_digest_not_in_the_compose_is_refused(deployed, tmp_path):
    other = "sha256:" + hashlib.sha256(b"another image").hexdigest()
    r = run("policy", "--app-compose", str(APP_COMPOSE), "--image-digest", other, "-o", str(tmp_path / "p.json"))
    assert r.returncode == 1 and "is not pinned" in r.stderr, r.stderr
    assert not (tmp_path / "p.json").exists()
    r = run("policy", "--app-compose", str(APP_COMPOSE), "--image-digest", "sha256:1234")
    assert r.returncode == 2


def test_a_compose_with_another_image_digest_fails_the_deployment(deployed, tmp_path):
    proxy, trust = deployed
    doc = json.loads(APP_COMPOSE.read_bytes())
    other = hashlib.sha256(b"another build of the proxy").hexdigest()
    doc["docker_compose_file"] = doc["docker_compose_file"].replace(compose_digest(APP_COMPOSE), "sha256:" + other)
    forged = tmp_path / "app-compose.json"
    forged.write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
    policy = tmp_path / "policy.json"
    r = run("policy", "--app-compose", str(forged), "--image-digest", "sha256:" + other, "-o", str(policy))
    assert r.returncode == 0, r.stderr
    code, res = verify_with_policy(proxy, trust, policy)
    assert code == 1 and res["ok"] is False
    pinned = check(res, "code.policy.compose_hash")
    assert pinned["status"] == "fail" and pinned["enforced"], pinned
    # Everything else about the deployment still verifies: only the pinned code differs.
    failed = {c["id"] for c in res["checks"] if c["status"] == "fail" and c["enforced"]}
    assert failed == {"code.policy.compose_hash"}, failed


def test_the_compose_file_is_what_dstack_runs(tmp_path):
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    proxy, vllm = compose["services"]["proxy"], compose["services"]["vllm"]
    assert re.fullmatch(r"\S+/private-inference@sha256:[0-9a-f]{64}", proxy["image"])
    assert proxy["image"].endswith(compose_digest(APP_COMPOSE))
    assert vllm["image"].startswith("vllm/vllm-openai")
    assert "--model" in vllm["command"] and "${MODEL_NAME}" in vllm["command"]
    assert proxy["ports"] == ["8000:8000"]
    assert "/var/run/dstack.sock:/var/run/dstack.sock" in proxy["volumes"]
    assert any(v.endswith(":/var/lib/private-inference") for v in proxy["volumes"])
    for svc in (proxy, vllm):
        assert "privileged" not in svc and "cap_add" not in svc
        assert svc["restart"] == "unless-stopped" and svc["healthcheck"]["test"][0] == "CMD"
        [dev] = svc["deploy"]["resources"]["reservations"]["devices"]
        assert dev["driver"] == "nvidia" and "gpu" in dev["capabilities"]
    assert proxy["healthcheck"]["test"][1:3] == ["/usr/bin/private-inference", "healthcheck"]
    # Every environment name given to the proxy is one `serve` reads (vllm-proxy's names and ours).
    env = dict(e.split("=", 1) for e in proxy["environment"])
    help_text = run("serve", "--help").stdout
    for name in env:
        assert f"(Env:{name})" in help_text, name
    assert env["VLLM_BASE_URL"] == "http://vllm:8000"
    allowed = set(json.loads(APP_COMPOSE.read_bytes())["allowed_envs"])
    referenced = set(re.findall(r"\$\{([A-Z_]+)\}", (REPO / "deploy" / "docker-compose.yml").read_text()))
    assert referenced == allowed, "every ${VAR} must be an allowed env (else dstack never sets it), and no more"
    # The health probe the compose runs works against a live proxy, and fails when nothing listens.
    assert run("healthcheck", "--url", "http://127.0.0.1:9/version", "--timeout", "2").returncode == 1


def test_the_healthcheck_passes_against_a_running_proxy(deployed):
    proxy, _ = deployed
    assert run("healthcheck", "--url", proxy.url + "/version").returncode == 0
