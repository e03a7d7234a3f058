"""`private-inference verify response` and `verify attestation --url` end to end: real backend → proxy (with the
dev-tee as its dstack agent when available) → our verifier binary.

What must hold (docs/verifier.md):
  * the response checks (exact-bytes hashes, signed text, ECDSA recovery / Ed25519 verification) PASS for a real
    exchange, and a single tampered response byte FAILs exactly at response.response_hash;
  * the attestation part must FAIL against the dev-tee: its quote is the recorded Phala quote with our
    report_data written into it, so the attestation key's signature over the quote no longer verifies
    (tdx.quote_signature). Binding (report_data = address ‖ our fresh nonce) and the code checks (event-log
    replay, compose hash) still PASS, because the dev-tee serves the recorded event log and Info unchanged.
    Consequently response.key_bound FAILs: nothing proves where a key of the recorded-quote dev-tee lives.
    (`dev-tee --pki` with `verify --trust-simulated` is the mode that verifies: test_simulated_tee.py.)
Collateral is the recorded fixture with `now` pinned inside its window, so nothing touches the network.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import verify_helpers as vh
from conftest import REPO, pi_binary, sanitizer_env

FIX = REPO / "tests" / "fixtures" / "tdx"
OFFLINE = ["--collateral", str(FIX / "collateral_fmspc20a06f_2025-09.json"), "--now", "1756900000", "--no-nras"]


def _run(args: list[str]) -> tuple[int, dict, str]:
    r = subprocess.run([str(pi_binary()), "verify", *args, "--json"], capture_output=True, text=True, timeout=180,
                       env=sanitizer_env())
    assert r.returncode in (0, 1, 3), f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.returncode, json.loads(r.stdout), r.stderr


def _checks(doc: dict) -> dict[str, dict]:
    return {c["id"]: c for c in doc["checks"]}


def _exchange(proxy, stack, tmp_path: Path, stream: bool = False) -> tuple[str, Path, Path, bytes]:
    client, transport = proxy.recording_client()
    body = {"model": "smollm2", "max_tokens": 16, "stream": stream,
            "messages": [{"role": "user", "content": f"Name one colour. Reference {stack.marker()}."}]}
    raw_req = json.dumps(body).encode()
    with client:
        r = client.post("/v1/chat/completions", content=raw_req, headers={"Content-Type": "application/json"})
        r.read()
    assert r.status_code == 200, r.text
    ex = transport.last("/chat/completions")
    raw_res = bytes(ex.response_body)
    if stream:
        stack.remember_stream(raw_res)
        rid = vh.stream_id(raw_res)
    else:
        stack.remember_body(raw_res)
        rid = r.headers.get("x-signature-id") or r.json()["id"]
    req_f, res_f = tmp_path / "request.bin", tmp_path / "response.bin"
    req_f.write_bytes(ex.request_body)
    res_f.write_bytes(raw_res)
    return rid, req_f, res_f, raw_res


def _response_args(proxy, rid: str, req_f: Path, res_f: Path, algo: str) -> list[str]:
    return ["response", "--url", proxy.url, "--id", rid, "--request", str(req_f), "--response", str(res_f),
            "--signing-algo", algo, f"--token={proxy.token}", *OFFLINE]


RESPONSE_CHECKS = ("response.signature_fetch", "response.request_hash", "response.response_hash", "response.text",
                   "response.signature")


@pytest.mark.parametrize("algo", vh.ALGOS)
def test_verify_response_passes_response_checks_and_fails_simulated_hardware(proxy, stack, tmp_path, algo):
    rid, req_f, res_f, _ = _exchange(proxy, stack, tmp_path)
    rc, doc, _ = _run(_response_args(proxy, rid, req_f, res_f, algo))
    checks = _checks(doc)
    for cid in RESPONSE_CHECKS:
        assert checks[cid]["status"] == "pass", checks[cid]
    # The signature recovers / verifies for the address the proxy attests.
    assert rc == 1 and doc["ok"] is False
    if proxy.dstack is not None:
        # dev-tee: the recorded quote with our report_data written in -> the quote signature is broken.
        assert checks["tdx.quote_signature"]["status"] == "fail", checks["tdx.quote_signature"]
        assert checks["binding.request_nonce"]["status"] == "pass"
        assert checks["binding.report_data"]["status"] == "pass", checks["binding.report_data"]
        assert checks["code.rtmr"]["status"] == "pass"
        assert checks["code.compose_hash"]["status"] == "pass"
        assert doc["facts"].get("simulated", "").startswith("true")
    else:
        assert checks["attestation.fetch"]["status"] == "fail"  # no TEE: 503 from the proxy
    assert checks["response.key_bound"]["status"] == "fail"


def test_verify_response_streaming(proxy, stack, tmp_path):
    rid, req_f, res_f, raw = _exchange(proxy, stack, tmp_path, stream=True)
    assert vh.sse_has_done(raw)
    rc, doc, _ = _run(_response_args(proxy, rid, req_f, res_f, "ecdsa"))
    checks = _checks(doc)
    for cid in RESPONSE_CHECKS:
        assert checks[cid]["status"] == "pass", checks[cid]
    # as for non-streaming answers: the signature is right, but the recorded dev-tee quote (or no TEE)
    # cannot bind the key, so the verdict is "not verified"
    assert rc == 1 and doc["ok"] is False
    assert checks["response.key_bound"]["status"] == "fail"


def test_tampered_response_byte_fails_at_response_hash(proxy, stack, tmp_path):
    rid, req_f, res_f, raw = _exchange(proxy, stack, tmp_path)
    tampered = bytearray(raw)
    i = raw.index(b'"content"') + 12
    tampered[i] ^= 0x20  # flip the case of one letter of the completion
    res_f.write_bytes(bytes(tampered))
    _, doc, _ = _run(_response_args(proxy, rid, req_f, res_f, "ecdsa"))
    checks = _checks(doc)
    assert checks["response.response_hash"]["status"] == "fail"
    assert "not the bytes that were signed" in checks["response.response_hash"]["detail"]
    for cid in ("response.request_hash", "response.text", "response.signature"):
        assert checks[cid]["status"] == "pass", checks[cid]


def test_tampered_request_byte_fails_at_request_hash(proxy, stack, tmp_path):
    rid, req_f, res_f, _ = _exchange(proxy, stack, tmp_path)
    req_f.write_bytes(req_f.read_bytes() + b" ")
    _, doc, _ = _run(_response_args(proxy, rid, req_f, res_f, "ecdsa"))
    checks = _checks(doc)
    assert checks["response.request_hash"]["status"] == "fail"
    assert checks["response.response_hash"]["status"] == "pass"


def test_other_token_cannot_fetch_the_signature(proxy, stack, tmp_path):
    rid, req_f, res_f, _ = _exchange(proxy, stack, tmp_path)
    args = _response_args(proxy, rid, req_f, res_f, "ecdsa")
    args[args.index(f"--token={proxy.token}")] = f"--token={proxy.tokens[1]}"
    _, doc, _ = _run(args)
    c = _checks(doc)["response.signature_fetch"]
    assert c["status"] == "fail" and "404" in c["detail"]


def test_verify_attestation_url_against_dev_tee(proxy):
    if proxy.dstack is None:
        pytest.skip("the dev-tee is not available: the proxy has no attestation to verify")
    rc, doc, _ = _run(["attestation", "--url", proxy.url, "--signing-algo", "ed25519", *OFFLINE])
    checks = _checks(doc)
    assert rc == 1
    assert checks["tdx.quote_signature"]["status"] == "fail"  # simulated: never passes silently
    for cid in ("attestation.fetch", "binding.request_nonce", "binding.report_data", "binding.signing_key",
                "code.event_log", "code.rtmr", "code.compose_hash"):
        assert checks[cid]["status"] == "pass", checks[cid]
    # No GPU evidence unless the proxy was started with a (simulated) NVML collector: then the gpu.* checks run.
    gpu = [c for c in doc["checks"] if c["group"] == "gpu"]
    assert gpu, "the GPU group must say something (checks, or a SKIP with gpu_evidence_error)"
    if "gpu.evidence" in checks:
        assert checks["gpu.evidence"]["status"] == "skip" and not checks["gpu.evidence"]["enforced"]
    # text output: one line per check plus a summary line
    r = subprocess.run([str(pi_binary()), "verify", "attestation", "--url", proxy.url, *OFFLINE],
                       capture_output=True, text=True, timeout=180, env=sanitizer_env())
    assert r.returncode == 1
    assert "FAIL tdx.quote_signature" in r.stdout
    assert "summary: attestation FAILED" in r.stdout


def test_verify_attestation_url_without_tee(proxy_no_dstack):
    rc, doc, _ = _run(["attestation", "--url", proxy_no_dstack.url, *OFFLINE])
    c = _checks(doc)["attestation.fetch"]
    assert rc == 1 and c["status"] == "fail" and "503" in c["detail"]
