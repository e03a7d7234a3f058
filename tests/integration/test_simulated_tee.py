"""The whole chain on SIMULATED hardware: dev-tee in test-PKI mode (TDX v4 quotes signed through a test PKI, with
matching collateral and event log) and the simulated NVML (SPDM evidence signed by a test device chain), checked by
our verifier with fresh nonces — and the negative cases, each failing at the check that should catch it.

The test roots are trusted only with `--trust-simulated DIR` / `--gpu-test-root PEM`; without them the same evidence
must fail. Every check that relies on a test root is labelled simulated.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

import verify_helpers as vh
from conftest import PROXY_READY_TIMEOUT, _unix_socket_answers, pi_binary, sanitizer_env, start_proxy


@pytest.fixture(scope="module")
def sim(stack, backend, tmp_path_factory):
    base = tmp_path_factory.mktemp("simtee")
    sock, state, gpu_pki = base / "dstack.sock", base / "state", base / "gpu-pki"
    tee = stack.start("dev-tee-pki", "dev-tee", [str(pi_binary()), "dev-tee", "--socket", str(sock), "--state",
                                                 str(state), "--pki"], env=sanitizer_env())
    deadline = time.monotonic() + PROXY_READY_TIMEOUT
    while not _unix_socket_answers(sock):
        assert tee.alive(), tee.tail()
        assert time.monotonic() < deadline, "dev-tee --pki did not start"
        time.sleep(0.1)
    env = {"PI_NVML_SIM_MODE": "testpki", "PI_NVML_SIM_GPUS": "2", "PI_NVML_SIM_PKI_DIR": str(gpu_pki)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        proxy = start_proxy(stack, "proxy-simtee", backend.url, sock, [secrets.token_urlsafe(24)],
                            extra=["--nvml-lib", str(pi_binary().parent / "libnvidia-ml-sim.so")])
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    trust = ["--trust-simulated", str(state), "--gpu-test-root", str(gpu_pki / "root.cert.pem")]
    yield proxy, trust
    proxy.proc.stop()
    tee.stop()


def verify(*args: str) -> tuple[int, dict]:
    r = subprocess.run([str(pi_binary()), "verify", *args, "--json"], capture_output=True, text=True, timeout=180,
                       env=sanitizer_env())
    assert r.stdout, r.stderr
    return r.returncode, json.loads(r.stdout)


def by_id(result: dict) -> dict[str, dict]:
    return {c["id"]: c for c in result["checks"]}


def failed(result: dict) -> set[str]:
    return {c["id"] for c in result["checks"] if c["status"] == "fail" and c["enforced"]}


def fetch_report(proxy, nonce: str) -> dict:
    with proxy.client() as c:
        r = c.get("/v1/attestation/report", params={"nonce": nonce})
    assert r.status_code == 200, r.text
    return r.json()


def verify_report(report: dict, nonce: str, trust: list[str], tmp_path: Path) -> tuple[int, dict]:
    path = tmp_path / f"report-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(report))
    return verify("attestation", "--report", str(path), "--nonce", nonce, "--no-nras", *trust)


def test_fresh_nonce_chain_verifies_and_is_labelled_simulated(sim):
    proxy, trust = sim
    code, res = verify("attestation", "--url", proxy.url, f"--token={proxy.token}", "--no-nras", *trust)
    assert code == 0 and res["ok"] is True, failed(res)
    checks = by_id(res)
    for cid in ("tdx.quote_signature", "tdx.pck_chain", "tdx.tcb_status", "binding.report_data", "code.rtmr",
                "code.compose_hash", "gpu.0.nonce", "gpu.0.spdm_signature", "gpu.1.cert_chain"):
        assert checks[cid]["status"] == "pass", checks[cid]
    assert checks["tdx.pck_chain"]["simulated"] and checks["gpu.0.cert_chain"]["simulated"]
    assert res.get("simulated") is True


def test_response_verifies_end_to_end_against_a_verified_attestation(sim, tmp_path):
    proxy, trust = sim
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"simtee {secrets.token_hex(4)}"}],
                       "max_tokens": 8}).encode()
    with proxy.client() as c:
        r = c.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    (tmp_path / "req").write_bytes(body)
    (tmp_path / "resp").write_bytes(r.content)
    code, res = verify("response", "--url", proxy.url, "--id", r.json()["id"], "--request", str(tmp_path / "req"),
                       "--response", str(tmp_path / "resp"), f"--token={proxy.token}", "--no-nras", *trust)
    assert code == 0, failed(res)
    assert by_id(res)["response.key_bound"]["status"] == "pass"


def test_test_pki_quote_without_trust_simulated_fails(sim):
    proxy, trust = sim
    state = Path(trust[trust.index("--trust-simulated") + 1])
    # The simulated collateral is given, but the test roots are not trusted: the chains must fail.
    code, res = verify("attestation", "--url", proxy.url, f"--token={proxy.token}", "--no-nras",
                       "--collateral", str(state / "collateral.json"))
    assert code != 0 and res["ok"] is False
    assert "tdx.pck_chain" in failed(res), failed(res)
    assert "gpu.0.cert_chain" in failed(res)


def test_replayed_nonce_fails_at_the_binding(sim, tmp_path):
    proxy, trust = sim
    old = vh.fresh_nonce()
    report = fetch_report(proxy, old)  # an attacker replays a report made for an earlier nonce
    code, res = verify_report(report, vh.fresh_nonce(), trust, tmp_path)
    assert code != 0
    assert "binding.request_nonce" in failed(res), failed(res)
    code, res = verify_report(report, old, trust, tmp_path)  # the same report with its own nonce is fine
    assert code == 0, failed(res)


def test_report_data_edited_after_signing_fails_the_quote_signature(sim, tmp_path):
    proxy, trust = sim
    nonce = vh.fresh_nonce()
    report = fetch_report(proxy, nonce)
    quote = bytearray.fromhex(report["intel_quote"])
    quote[600] ^= 0x01  # first byte of the nonce half of report_data
    report["intel_quote"] = report["quote"] = quote.hex()
    code, res = verify_report(report, nonce, trust, tmp_path)
    assert code != 0
    assert "tdx.quote_signature" in failed(res), failed(res)


def test_event_log_edited_after_the_fact_fails(sim, tmp_path):
    proxy, trust = sim
    nonce = vh.fresh_nonce()
    report = fetch_report(proxy, nonce)
    log = report["event_log"] if isinstance(report["event_log"], list) else json.loads(report["event_log"])
    target = next(e for e in log if e.get("event") == "compose-hash")
    target["event_payload"] = "00" * 32  # claim another compose file ran
    report["event_log"] = log
    code, res = verify_report(report, nonce, trust, tmp_path)
    assert code != 0
    assert failed(res) & {"code.event_log", "code.rtmr", "code.compose_hash"}, failed(res)


def test_gpu_evidence_for_another_nonce_fails(sim, tmp_path):
    proxy, trust = sim
    nonce = vh.fresh_nonce()
    report = fetch_report(proxy, nonce)
    other = fetch_report(proxy, vh.fresh_nonce())
    report["nvidia_payload"] = other["nvidia_payload"]  # genuine (simulated) evidence, but over another nonce
    report["gpu_evidence"] = other["gpu_evidence"]
    code, res = verify_report(report, nonce, trust, tmp_path)
    assert code != 0
    assert failed(res) & {"gpu.payload_nonce", "gpu.0.nonce"}, failed(res)
    assert "tdx.quote_signature" not in failed(res)  # the TDX half is still genuine
