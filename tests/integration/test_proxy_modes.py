"""Configuration the README documents: vllm-proxy's environment variables, --public, --gpu-evidence."""
from __future__ import annotations

import json
import secrets
import subprocess
import time

import httpx

import verify_helpers as vh
from conftest import free_port, pi_binary, sanitizer_env, start_proxy

CHAT = "/v1/chat/completions"
JSON = {"Content-Type": "application/json"}


def _chat(stack) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": f"Hi {stack.marker()}"}], "max_tokens": 2}).encode()


def _wait_ready(proc, url: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.alive(), f"proxy exited:\n{proc.tail()}"
        try:
            if httpx.get(url + "/version", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"proxy not ready:\n{proc.tail()}")


def test_configured_by_vllm_proxy_environment_alone(stack, backend):
    """`serve` with no flags: VLLM_BASE_URL, LISTEN, MODEL_NAME and TOKEN (comma-separated) as vllm-proxy reads them."""
    a, b = secrets.token_hex(12), secrets.token_hex(12)
    stack.tokens.update([a, b])
    port = free_port()
    env = sanitizer_env()
    env.update({"VLLM_BASE_URL": backend.url, "LISTEN": f"127.0.0.1:{port}", "MODEL_NAME": "env-model",
                "TOKEN": f"{a},{b}"})
    proc = stack.start("proxy-env", "proxy", [str(pi_binary()), "serve"], env=env)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(proc, url)
    for tok in (a, b):
        r = httpx.post(url + CHAT, content=_chat(stack), headers={**JSON, "Authorization": f"Bearer {tok}"},
                       timeout=120)
        assert r.status_code == 200, r.text
        stack.remember_body(r.content)
    vh.check_error_envelope(httpx.post(url + CHAT, content=_chat(stack), headers=JSON, timeout=60), 401,
                            "invalid_api_key")
    assert proc.stop() == 0, proc.tail()


def test_public_list_decides_what_needs_a_token(stack, backend):
    """--public version,inference: chat without a token works, /metrics (public by default) now needs one."""
    token = secrets.token_urlsafe(24)
    p = start_proxy(stack, "proxy-public", backend.url, None, [token], extra=["--public", "version,inference"])
    with p.client(token=None) as anon:
        assert anon.get("/version").status_code == 200
        vh.check_error_envelope(anon.get("/metrics"), 401, "invalid_api_key")
        r = anon.post(CHAT, content=_chat(stack), headers=JSON)
        assert r.status_code == 200, r.text
        stack.remember_body(r.content)
    with p.client() as c:
        assert c.get("/metrics").status_code == 200
    assert p.proc.stop() == 0, p.proc.tail()


def test_gpu_evidence_required_refuses_to_start_without_nvml(backend):
    port = free_port()
    r = subprocess.run([str(pi_binary()), "serve", "--backend", backend.url, "--listen", f"127.0.0.1:{port}",
                        "--gpu-evidence", "required", "--nvml-lib", "/nonexistent/libnvidia-ml.so.1"],
                       capture_output=True, text=True, timeout=120, env=sanitizer_env())
    assert r.returncode != 0, "a proxy with --gpu-evidence required served without NVML"
    assert "--gpu-evidence required" in r.stderr + r.stdout


def test_gpu_evidence_off_says_so_in_the_report(stack, backend, dev_tee):
    p = start_proxy(stack, "proxy-gpu-off", backend.url, dev_tee.socket, [secrets.token_urlsafe(24)],
                    extra=["--gpu-evidence", "off"])
    with p.client(token=None) as c:
        r = c.get("/v1/attestation/report", params={"nonce": vh.fresh_nonce(), "signing_algo": "ecdsa"})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["gpu_evidence"] is None
    assert "--gpu-evidence off" in rep["gpu_evidence_error"]
    assert p.proc.stop() == 0, p.proc.tail()
