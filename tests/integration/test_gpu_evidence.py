"""GPU evidence through the proxy's real dlopen(NVML) path, with the project's simulated NVML library.

The simulated library (build*/libnvidia-ml-sim.so) exports NVML's C functions. In test-PKI mode it signs SPDM
GET_MEASUREMENTS responses over the requested nonce with a P-384 device key chaining to a TEST root it writes to
PI_NVML_SIM_PKI_DIR; in replay mode it serves real recorded H100 evidence (whose nonce cannot be ours).

Each report is checked twice: independently here with `cryptography` (nonce in the SPDM request, P-384 signature by
the leaf key over SHA-384 of request ‖ response-without-signature, chain to the test root) and with our verifier
(`verify attestation --gpu-test-root`), whose GPU checks must pass and be labelled simulated.
"""
from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import secrets
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import verify_helpers as vh
from conftest import REPO, pi_binary, start_proxy

SIG_LEN = 96  # ECDSA P-384 r ‖ s
NONCE = slice(4, 36)  # SPDM 1.1 GET_MEASUREMENTS request (37 bytes): nonce at bytes 4..35


def sim_library() -> Path:
    lib = pi_binary().parent / "libnvidia-ml-sim.so"
    if not lib.is_file():
        pytest.fail(f"{lib} is not built (it is built with the private-inference target)")
    return lib


def start_gpu_proxy(stack, backend, dev_tee, tmp_path_factory, name: str, sim_env: dict[str, str],
                    extra: list[str] | None = None):
    pki = tmp_path_factory.mktemp(f"{name}-pki")
    env = {"PI_NVML_SIM_PKI_DIR": str(pki), **sim_env}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # start_proxy passes the test process's environment to the proxy
    try:
        p = start_proxy(stack, name, backend.url, dev_tee.socket, [secrets.token_urlsafe(24)],
                        extra=["--nvml-lib", str(sim_library())] + (extra or []))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return p, pki


def pem_chain(item: dict) -> list[x509.Certificate]:
    pem = base64.b64decode(item["certificate"]).rstrip(b"\0")
    return x509.load_pem_x509_certificates(pem)


def check_item_independently(item: dict, nonce_hex: str, root: x509.Certificate) -> bytes:
    """Returns the leaf certificate's DER after checking nonce, signature and chain with `cryptography`."""
    report = base64.b64decode(item["evidence"])
    assert report[NONCE].hex() == nonce_hex, "the SPDM request does not carry our nonce"
    chain = pem_chain(item)
    leaf = chain[0]
    sig = report[-SIG_LEN:]
    r, s = int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big")
    leaf.public_key().verify(encode_dss_signature(r, s), report[:-SIG_LEN], ec.ECDSA(hashes.SHA384()))
    # Each certificate is issued by the next; the last one is issued by the (test) root.
    for child, parent in zip(chain, chain[1:] + [root]):
        if child.fingerprint(hashes.SHA256()) == parent.fingerprint(hashes.SHA256()):
            continue  # a chain that includes the root itself
        child.verify_directly_issued_by(parent)
    return leaf.public_bytes(serialization.Encoding.DER)


def run_verifier(report: dict, nonce_hex: str, tmp_path: Path, extra: list[str]) -> dict:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    r = subprocess.run([str(pi_binary()), "verify", "attestation", "--report", str(path), "--nonce", nonce_hex,
                        "--offline", "--json", *extra], capture_output=True, text=True, timeout=120)
    assert r.stdout, r.stderr
    return json.loads(r.stdout)


def gpu_checks(result: dict) -> dict[str, dict]:
    return {c["id"]: c for c in result["checks"] if c["group"] == "gpu"}


@pytest.fixture(scope="module")
def one_gpu(stack, backend, dev_tee, tmp_path_factory):
    p, pki = start_gpu_proxy(stack, backend, dev_tee, tmp_path_factory, "proxy-gpu1",
                             {"PI_NVML_SIM_MODE": "testpki", "PI_NVML_SIM_GPUS": "1"})
    yield p, pki
    p.proc.stop()


@pytest.fixture(scope="module")
def eight_gpus(stack, backend, dev_tee, tmp_path_factory):
    p, pki = start_gpu_proxy(stack, backend, dev_tee, tmp_path_factory, "proxy-gpu8",
                             {"PI_NVML_SIM_MODE": "testpki", "PI_NVML_SIM_GPUS": "8", "PI_NVML_SIM_PPCIE": "1"})
    yield p, pki
    p.proc.stop()


@pytest.mark.parametrize("algo", ["ecdsa", "ed25519"])
def test_one_gpu_evidence_is_bound_to_the_client_nonce(one_gpu, algo, tmp_path):
    proxy, pki = one_gpu
    nonce = vh.fresh_nonce()
    with proxy.client() as c:
        r = c.get("/v1/attestation/report", params={"nonce": nonce, "signing_algo": algo})
    assert r.status_code == 200, r.text
    rep = r.json()
    vh.check_report_binding(rep, algo, nonce)  # the TDX quote binds the same nonce
    assert rep["gpu_evidence_error"] is None
    assert rep["simulated"] is True and rep.get("gpu_evidence_simulated") is True
    payload = json.loads(rep["nvidia_payload"])  # vllm-proxy: a JSON *string*
    assert payload["nonce"] == nonce and payload["arch"] == "HOPPER"
    assert len(payload["evidence_list"]) == 1 and len(rep["gpu_evidence"]) == 1
    item = rep["gpu_evidence"][0]
    assert item["nonce"] == nonce
    root = x509.load_pem_x509_certificate((pki / "root.cert.pem").read_bytes())
    check_item_independently(item, nonce, root)

    result = run_verifier(rep, nonce, tmp_path, ["--gpu-test-root", str(pki / "root.cert.pem")])
    checks = gpu_checks(result)
    for cid in ("gpu.payload_nonce", "gpu.0.nonce", "gpu.0.spdm_signature", "gpu.0.cert_chain", "gpu.0.arch"):
        assert checks[cid]["status"] == "pass", checks[cid]
    assert checks["gpu.0.cert_chain"]["simulated"] is True


def test_eight_gpus_in_ppcie_mode_all_verify(eight_gpus, tmp_path):
    proxy, pki = eight_gpus
    nonce = vh.fresh_nonce()
    with proxy.client() as c:
        rep = c.get("/v1/attestation/report", params={"nonce": nonce}).json()
    assert len(rep["gpu_evidence"]) == 8
    assert rep["gpu_evidence_info"]["ppcie"] is True
    root = x509.load_pem_x509_certificate((pki / "root.cert.pem").read_bytes())
    leaves = {check_item_independently(item, nonce, root) for item in rep["gpu_evidence"]}
    assert len(leaves) == 8, "eight GPUs must be eight distinct devices"
    checks = gpu_checks(run_verifier(rep, nonce, tmp_path, ["--gpu-test-root", str(pki / "root.cert.pem")]))
    assert all(checks[f"gpu.{i}.spdm_signature"]["status"] == "pass" for i in range(8))
    assert checks["gpu.distinct_devices"]["status"] == "pass"


def test_without_the_test_root_the_simulated_chain_fails(one_gpu, tmp_path):
    proxy, _ = one_gpu
    nonce = vh.fresh_nonce()
    with proxy.client() as c:
        rep = c.get("/v1/attestation/report", params={"nonce": nonce}).json()
    result = run_verifier(rep, nonce, tmp_path, [])
    assert gpu_checks(result)["gpu.0.cert_chain"]["status"] == "fail"
    assert result["ok"] is False


def test_replayed_recorded_evidence_is_a_nonce_mismatch(stack, backend, dev_tee, tmp_path_factory, tmp_path):
    replay = REPO / "tests" / "fixtures" / "nvidia" / "nvat_multi_gpu_hopper.json"
    proxy, _ = start_gpu_proxy(stack, backend, dev_tee, tmp_path_factory, "proxy-gpu-replay",
                               {"PI_NVML_SIM_MODE": "replay", "PI_NVML_SIM_REPLAY": str(replay)})
    try:
        nonce = vh.fresh_nonce()
        with proxy.client() as c:
            rep = c.get("/v1/attestation/report", params={"nonce": nonce}).json()
        assert rep["gpu_evidence"], rep.get("gpu_evidence_error")
        evidence_nonce = base64.b64decode(rep["gpu_evidence"][0]["evidence"])[NONCE].hex()
        assert evidence_nonce != nonce
        checks = gpu_checks(run_verifier(rep, nonce, tmp_path, []))
        assert checks["gpu.0.nonce"]["status"] == "fail", checks["gpu.0.nonce"]
        # the recording itself is genuine NVIDIA evidence: its signature and real chain still verify
        assert checks["gpu.0.spdm_signature"]["status"] == "pass"
        assert checks["gpu.0.cert_chain"]["status"] == "pass" and checks["gpu.0.cert_chain"]["simulated"] is False
    finally:
        proxy.proc.stop()


def test_no_nvml_library_is_a_clear_error_and_inference_still_works(proxy):
    nonce = vh.fresh_nonce()
    with proxy.client() as c:
        rep = c.get("/v1/attestation/report", params={"nonce": nonce}).json()
        assert rep["nvidia_payload"] is None and rep["gpu_evidence"] is None
        assert "NVML" in rep["gpu_evidence_error"] and "libnvidia-ml.so.1" in rep["gpu_evidence_error"]
        r = c.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                                   "max_tokens": 4})
        assert r.status_code == 200
        assert c.get(f"/v1/signature/{r.json()['id']}").status_code == 200
    assert proxy.version["gpu_evidence"]["available"] is False


def test_concurrent_attestations_are_bounded_by_the_pool(stack, backend, dev_tee, tmp_path_factory):
    proxy, _ = start_gpu_proxy(stack, backend, dev_tee, tmp_path_factory, "proxy-gpu-pool",
                               {"PI_NVML_SIM_MODE": "testpki", "PI_NVML_SIM_GPUS": "1",
                                "PI_NVML_SIM_DELAY_MS": "150"},
                               extra=["--max-concurrent-attestations", "3"])
    try:
        def one(_):
            nonce = vh.fresh_nonce()
            with httpx.Client(base_url=proxy.url, timeout=120) as c:
                r = c.get("/v1/attestation/report", params={"nonce": nonce})
            return nonce, r
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as ex:
            results = list(ex.map(one, range(200)))
        ok = [(n, r) for n, r in results if r.status_code == 200]
        busy = [r for _, r in results if r.status_code == 429]
        assert len(ok) + len(busy) == 200, {r.status_code for _, r in results}
        assert busy, "with 200 concurrent requests and a pool of 3, some must be refused"
        for r in busy:
            assert int(r.headers["retry-after"]) >= 1
            vh.check_error_envelope(r, 429)
        assert ok
        for nonce, r in ok:  # every answer carries evidence over its own nonce, never another request's
            rep = r.json()
            assert rep["gpu_evidence"][0]["nonce"] == nonce and rep["request_nonce"] == nonce
        with proxy.client(token=None) as c:  # every refusal counted; collections happened
            assert vh.metric_value(c, "pi_attestation_rejected_busy_total") == len(busy)
            assert vh.metric_value(c, "pi_gpu_evidence_collections_total") >= 1
    finally:
        proxy.proc.stop()
