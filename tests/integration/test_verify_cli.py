"""`private-inference verify attestation --report` offline: exit statuses, text/JSON output, clear usage errors.

The report is the vllm-proxy /v1/attestation/report shape built from the recorded Phala deployment
(tests/fixtures/tdx/vllm_proxy_sample_dstack.json). Its report_data is a placeholder (0x01 x 64), so with an
ECDSA address the binding check must fail — see docs/verifier.md "About the vllm-proxy sample's binding".
No network, no proxy.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, _require, pi_binary, sanitizer_env

FIX = REPO / "tests" / "fixtures" / "tdx"
COLL = ["--collateral", str(FIX / "collateral_fmspc20a06f_2025-09.json"), "--now", "1756900000"]
NONCE = "01" * 32


def _report(tmp_path: Path, **override) -> Path:
    fx = json.loads((FIX / "vllm_proxy_sample_dstack.json").read_text())
    rep = {"signing_address": "0x" + "11" * 20, "signing_algo": "ecdsa", "request_nonce": NONCE,
           "intel_quote": fx["quote"]["quote"], "event_log": json.loads(fx["quote"]["event_log"]),
           "info": fx["info"], "vm_config": "", "nvidia_payload": None, "gpu_evidence": None,
           "gpu_evidence_error": "recorded sample has no GPU evidence", "simulated": False}
    rep.update(override)
    rep["all_attestations"] = [dict(rep)]
    p = tmp_path / "report.json"
    p.write_text(json.dumps(rep))
    return p


def _run(*args: str) -> subprocess.CompletedProcess:
    _require(pi_binary().is_file(), f"{pi_binary()} is not built (set PI_BINARY)")
    return subprocess.run([str(pi_binary()), "verify", "attestation", *args], capture_output=True, text=True,
                          timeout=120, env=sanitizer_env())


def test_sample_report_text_output(tmp_path):
    r = _run("--report", str(_report(tmp_path)), "--nonce", NONCE, "--no-nras", *COLL)
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "== hardware =="
    assert "PASS tdx.quote_signature" in r.stdout and "PASS tdx.tcb_status" in r.stdout
    assert "FAIL binding.report_data" in r.stdout and "signing-key half does not match" in r.stdout
    assert "PASS code.rtmr" in r.stdout and "PASS code.compose_hash" in r.stdout
    assert "SKIP gpu.evidence [not enforced]" in r.stdout
    assert lines[-1].startswith("summary: attestation FAILED: ")
    # groups appear in chain-of-trust order
    order = [l for l in lines if l.startswith("== ")]
    assert order[:4] == ["== hardware ==", "== binding ==", "== code ==", "== gpu =="]


def test_python_literal_report_fields(tmp_path):
    fx = json.loads((FIX / "vllm_proxy_sample_dstack.json").read_text())
    p = _report(tmp_path, info=repr(fx["info"]), event_log=fx["quote"]["event_log"],
                intel_quote="0x" + fx["quote"]["quote"])
    r = _run("--report", str(p), "--nonce", NONCE, "--json", "--no-nras", *COLL)
    doc = json.loads(r.stdout)
    assert doc["facts"]["encoding.info"] == "python-literal-string"
    assert doc["facts"]["encoding.event_log"] == "json-string (event_log)"
    assert doc["facts"]["encoding.quote"] == "0x-hex (intel_quote)"
    checks = {c["id"]: c["status"] for c in doc["checks"]}
    assert checks["code.compose_hash"] == "pass" and checks["code.rtmr"] == "pass"


def test_offline_without_collateral_is_incomplete(tmp_path):
    # Ed25519 key 01..01 matches the placeholder layout, so everything that can run passes.
    p = _report(tmp_path, signing_algo="ed25519", signing_address=NONCE)
    r = _run("--report", str(p), "--nonce", NONCE, "--signing-algo", "ed25519", "--offline", "--json")
    assert r.returncode == 3, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "INCOMPLETE" and doc["ok"] is True and doc["complete"] is False
    skipped = {c["id"]: c for c in doc["checks"] if c["status"] == "skip" and c["enforced"]}
    assert "tdx.pck_chain" in skipped and "offline" in skipped["tdx.pck_chain"]["detail"]
    assert doc["facts"]["network"].startswith("offline")


def test_layout_matching_report_verifies(tmp_path):
    p = _report(tmp_path, signing_algo="ed25519", signing_address=NONCE)
    r = _run("--report", str(p), "--nonce", NONCE, "--signing-algo", "ed25519", "--no-nras", "--json", *COLL)
    assert r.returncode == 0, r.stdout
    assert json.loads(r.stdout)["verdict"] == "VERIFIED"


def test_policy_violation_fails(tmp_path):
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps({"compose_hashes": ["00" * 32]}))
    p = _report(tmp_path, signing_algo="ed25519", signing_address=NONCE)
    r = _run("--report", str(p), "--nonce", NONCE, "--signing-algo", "ed25519", "--no-nras", "--policy", str(pol),
             "--json", *COLL)
    assert r.returncode == 1
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["code.policy.compose_hash"]["status"] == "fail"


@pytest.mark.parametrize("args, message", [
    (["--nonce", "abc"], "--nonce must be exactly 64 hex digits"),
    ([], "give exactly one of --url or --report"),
    (["--report", "/nonexistent/report.json"], "cannot read report file"),
    (["--policy", "{tmp}/bad-policy.json"], "policy"),
    (["--collateral", "{tmp}/report.json"], "--collateral"),
])
def test_usage_errors_are_clear(tmp_path, args, message):
    (tmp_path / "bad-policy.json").write_text('{"mrtd": ["zz"]}')
    report = _report(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--report" not in args and args != []:
        args = ["--report", str(report), *args]
    r = _run(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr
    assert "AddressSanitizer" not in r.stderr


def test_garbage_report_fails_cleanly(tmp_path):
    p = tmp_path / "garbage.json"
    p.write_text(json.dumps({"intel_quote": "00" * 700, "event_log": "{'a': ", "info": "[1,"}))
    r = _run("--report", str(p), "--offline", "--json")
    assert r.returncode == 1
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["tdx.quote_format"]["status"] == "fail"
    assert checks["code.event_log"]["status"] == "fail"
    # A field of the wrong JSON type is a malformed report, named (never a silently skipped check).
    p.write_text(json.dumps({"intel_quote": "00" * 700, "info": 5}))
    r = _run("--report", str(p), "--offline", "--json")
    assert r.returncode == 1
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["attestation.format"]["status"] == "fail"
    assert checks["attestation.format"]["detail"].startswith("info: ")


# --- the verifier cannot be talked round (issue #11 item 7) -----------------------------------------------------

def _verifying(tmp_path: Path, **override) -> Path:
    """The sample with the synthetic Ed25519 key 01..01 that its placeholder report_data binds: VERIFIED."""
    return _report(tmp_path, signing_algo="ed25519", signing_address=NONCE, **override)


ED = ["--nonce", NONCE, "--signing-algo", "ed25519", "--no-nras", *COLL]


def test_zero_gpus_is_shown_and_require_gpu_fails_without_evidence(tmp_path):
    p = _verifying(tmp_path)
    r = _run("--report", str(p), *ED)
    assert r.returncode == 0, r.stdout
    assert "summary: GPUs verified: 0 -- no GPU evidence: recorded sample has no GPU evidence" in r.stdout
    r = _run("--report", str(p), *ED, "--json")
    assert json.loads(r.stdout)["gpus"] == {"verified": 0, "evidence_items": 0, "architectures": [],
                                            "simulated": False, "required": None,
                                            "why_none": "recorded sample has no GPU evidence"}
    # --require-gpu without a value means at least one
    r = _run("--report", str(p), *ED, "--require-gpu", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["gpu.required"]["status"] == "fail" and checks["gpu.required"]["enforced"] is True
    assert "0 GPU(s) verified; at least 1 required" in checks["gpu.required"]["detail"]
    assert doc["gpus"]["required"] == 1
    r = _run("--report", str(p), *ED, "--require-gpu", "2", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["gpus"]["required"] == 2
    r = _run("--report", str(p), *ED, "--require-gpu", "0")
    assert r.returncode == 0, r.stdout
    r = _run("--report", str(p), *ED, "--require-gpu", "many")
    assert r.returncode == 2 and "--require-gpu" in r.stderr
    # the same requirement from the policy file
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps({"gpu": {"min_count": 1, "allowed_architectures": ["HOPPER", "BLACKWELL"]}}))
    r = _run("--report", str(p), *ED, "--policy", str(pol), "--json")
    assert r.returncode == 1
    assert {c["id"]: c["status"] for c in json.loads(r.stdout)["checks"]}["gpu.required"] == "fail"
    pol.write_text(json.dumps({"gpu": {"min_cnt": 1}}))
    r = _run("--report", str(p), *ED, "--policy", str(pol))
    assert r.returncode == 2 and "policy.gpu has unknown key 'min_cnt'" in r.stderr


def test_bytes_after_the_quote_must_be_zero_padding(tmp_path):
    fx = json.loads((FIX / "vllm_proxy_sample_dstack.json").read_text())
    quote = fx["quote"]["quote"]
    r = _run("--report", str(_verifying(tmp_path, intel_quote=quote + "0000")), *ED, "--json")
    assert r.returncode == 0, r.stdout
    doc = json.loads(r.stdout)
    assert doc["facts"]["tdx.quote_padding"].startswith("72 zero bytes")
    assert doc["fact_status"]["tdx.quote_padding"]["status"] == "note"
    r = _run("--report", str(_verifying(tmp_path, intel_quote=quote + "ff")), *ED, "--json")
    assert r.returncode == 1
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["tdx.quote_format"]["status"] == "fail"
    assert "not zero padding" in checks["tdx.quote_format"]["detail"]


def test_every_all_attestations_entry_is_verified(tmp_path):
    p = _verifying(tmp_path)
    doc = json.loads(p.read_text())
    top = dict(doc["all_attestations"][0])
    tampered = dict(top, request_nonce="bb" * 32)  # an instance answering another nonce
    doc["all_attestations"] = [top, tampered]
    p.write_text(json.dumps(doc))
    r = _run("--report", str(p), *ED)
    assert r.returncode == 1, r.stdout
    assert "== instances ==" in r.stdout
    assert "PASS all_attestations.0:" in r.stdout
    assert "FAIL all_attestations.1:" in r.stdout and "binding.request_nonce" in r.stdout
    assert "PASS all_attestations.top_level:" in r.stdout
    # a list that does not contain the top level fails
    doc["all_attestations"] = [dict(top, vm_config="{}")]
    p.write_text(json.dumps(doc))
    r = _run("--report", str(p), *ED, "--json")
    assert r.returncode == 1
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["all_attestations.0"]["status"] == "pass"
    assert checks["all_attestations.top_level"]["status"] == "fail"


@pytest.mark.parametrize("variant", ["verifying", "offline", "failing"])
def test_every_shown_fact_has_a_status(tmp_path, variant):
    if variant == "offline":
        r = _run("--report", str(_verifying(tmp_path)), "--nonce", NONCE, "--signing-algo", "ed25519", "--offline",
                 "--json")
    elif variant == "failing":
        r = _run("--report", str(_report(tmp_path)), "--nonce", NONCE, "--no-nras", "--json", *COLL)
    else:
        r = _run("--report", str(_verifying(tmp_path)), *ED, "--json")
    doc = json.loads(r.stdout)
    assert doc["facts"], doc
    assert set(doc["fact_status"]) == set(doc["facts"])
    for key, st in doc["fact_status"].items():
        assert st["status"] in ("checked", "not checked", "note"), (key, st)
        if st["status"] == "checked":
            assert st["by"], key
            checks = {c["id"]: c["status"] for c in doc["checks"]}
            assert all(checks.get(i) == "pass" for i in st["by"]), (key, st)
        if st["status"] == "not checked":
            assert st["why"] and "no check covers" not in st["why"], (key, st)
    if variant == "verifying":
        assert doc["fact_status"]["mrtd"]["status"] == "checked"
        assert doc["fact_status"]["compose_hash"]["status"] == "checked"
    if variant == "offline":
        assert doc["fact_status"]["mrtd"]["status"] == "not checked"
    if variant == "failing":  # the ECDSA address is not bound by this quote
        assert doc["fact_status"]["signing_address"]["status"] == "not checked"
        assert "binding.report_data failed" in doc["fact_status"]["signing_address"]["why"]
