"""Google's go-tdx-guest (the TDX library teep uses), and Phala's dcap-qvl, judge a dev-tee --pki quote as they judge
a real one.

tests/go/tdxguest is a small Go program (go.mod pins github.com/google/go-tdx-guest) that parses the quote
(abi.QuoteToProto), reads the PCK certificate's SGX extensions (pcs.PckCertificateExtensions, which requires
Intel's six extensions) and runs verify.TdxQuote with the TEST root as the trusted root — once without
collateral, once with dev-tee's simulated collateral (TCB info, QE identity, CRLs, revocation checked) served
to go-tdx-guest's collateral getter, never the network — and once with go-tdx-guest's embedded Intel root,
which must fail at the root of trust and nowhere else.

A real dstack quote (tests/fixtures/tdx) goes through the same program as the control.
Skipped only when Go is absent (failing under PI_REQUIRE_ALL=1, as the other optional tests do).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, _require, _subcommand_help, pi_binary, sanitizer_env

GO_DIR = REPO / "tests" / "go" / "tdxguest"
BODY = 48


@pytest.fixture(scope="module")
def tdxguest(tmp_path_factory) -> Path:
    go = shutil.which("go")
    if go is None:
        reason = "Go is not installed: the go-tdx-guest cross-check needs the go command (golang.org/dl or the " \
                 "distribution's golang package)"
        if os.environ.get("PI_REQUIRE_ALL") == "1":
            pytest.fail(reason + " (PI_REQUIRE_ALL=1)")
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("go") / "tdxguest"
    env = {**os.environ, "GOFLAGS": "-mod=readonly"}
    r = subprocess.run([go, "build", "-o", str(out), "."], cwd=GO_DIR, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"go build failed:\n{r.stderr[-3000:]}"
    return out


def run_tdxguest(binary: Path, quote_hex: str, root_pem: Path, tmp: Path, collateral: Path | None = None) -> dict:
    qf = tmp / "quote.hex"
    qf.write_text(quote_hex)
    out = tmp / "result.json"
    argv = [str(binary), "-quote", str(qf), "-root", str(root_pem), "-out", str(out)]
    if collateral is not None:
        argv += ["-collateral", str(collateral)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def evidence(tmp_path_factory) -> tuple[dict, Path]:
    _require("--pki-evidence" in _subcommand_help("dev-tee"), f"{pi_binary()} has no `dev-tee --pki-evidence`")
    state = tmp_path_factory.mktemp("gotee") / "state"
    rd = os.urandom(64).hex()
    r = subprocess.run([str(pi_binary()), "dev-tee", "--state", str(state), "--pki", "--pki-evidence", rd],
                       capture_output=True, text=True, timeout=120, env=sanitizer_env())
    assert r.returncode == 0, r.stderr[-3000:]
    ev = json.loads(r.stdout.strip().splitlines()[-1])
    assert ev["report_data"] == rd and ev["simulated"] is True
    return ev, state


def test_go_tdx_guest_parses_and_verifies_a_dev_tee_quote_with_the_test_root(tdxguest, evidence, tmp_path):
    ev, state = evidence
    res = run_tdxguest(tdxguest, ev["quote"], state / "pki" / "root.cert.pem", tmp_path, state / "collateral.json")
    assert res["parsed"], res
    assert res["version"] == 4 and res["tee_type"] == 0x81
    assert res["report_data"] == ev["report_data"]
    app_compose = json.loads(ev["info"]["tcb_info"])["app_compose"]
    assert res["mr_config_id"] == "01" + hashlib.sha256(app_compose.encode()).hexdigest() + "00" * 15
    # the PCK certificate: Intel's six extensions, read by go-tdx-guest's own parser
    assert res["pck_extension_count"] == 6 and "pck_extensions_error" not in res, res
    assert res["pck_issuer_cn"] == "Intel SGX PCK Platform CA"
    collateral = json.loads((state / "collateral.json").read_text())
    tcb_info = json.loads(collateral["tcb_info"])
    assert res["fmspc"] == tcb_info["fmspc"] and res["pce_id"] == tcb_info["pceId"]
    assert res["pce_svn"] == tcb_info["tcbLevels"][0]["tcb"]["pcesvn"]
    assert bytes.fromhex(res["cpu_svn"]) == bytes(c["svn"] for c in tcb_info["tcbLevels"][0]["tcb"]["sgxtcbcomponents"])
    # verification: passes with the TEST root, with and without the simulated collateral ...
    assert res["verify_test_root"] == "ok"
    assert res["verify_test_root_collateral"] == "ok"
    asked = res["collateral_requests"]
    assert any("/tdx/certification/v4/tcb?fmspc=" in u for u in asked)
    assert any(u.endswith("/qe/identity") for u in asked)
    assert any("pckcrl?ca=platform" in u for u in asked)
    assert any(u.endswith("/IntelSGXRootCA.der") for u in asked), asked
    # ... and fails with Intel's root, at the chain (not at the shape of the evidence)
    assert res["verify_intel_root"] != "ok"
    assert "error verifying PCK Certificate" in res["verify_intel_root"], res["verify_intel_root"]


def test_go_tdx_guest_rejects_an_edited_dev_tee_quote(tdxguest, evidence, tmp_path):
    ev, state = evidence
    q = bytearray(bytes.fromhex(ev["quote"]))
    q[BODY + 184 + 1] ^= 0x01  # MRCONFIGID: covered by the attestation key's signature
    res = run_tdxguest(tdxguest, q.hex(), state / "pki" / "root.cert.pem", tmp_path)
    assert res["parsed"]
    assert res["verify_test_root"] != "ok"


def test_go_tdx_guest_control_real_dstack_quote(tdxguest, tmp_path):
    fx = json.loads((REPO / "tests" / "fixtures" / "tdx" / "vllm_proxy_sample_dstack.json").read_text())
    root = tmp_path / "intel_root.pem"
    der = (REPO / "tests" / "fixtures" / "tdx" / "intel_sgx_root_ca.der").read_bytes()
    b64 = __import__("base64").encodebytes(der).decode()
    root.write_text("-----BEGIN CERTIFICATE-----\n" + b64 + "-----END CERTIFICATE-----\n")
    res = run_tdxguest(tdxguest, fx["quote"]["quote"], root, tmp_path)
    assert res["parsed"] and res["pck_extension_count"] == 6 and res["fmspc"] == "20a06f000000"
    assert res["verify_test_root"] == "ok"  # here the "test root" given is Intel's own
    assert res["verify_intel_root"] == "ok"
    tcb = fx["info"]["tcb_info"]
    tcb = json.loads(tcb) if isinstance(tcb, str) else tcb
    assert res["mr_config_id"] == "01" + hashlib.sha256(tcb["app_compose"].encode()).hexdigest() + "00" * 15


def test_dcap_qvl_accepts_the_dev_tee_quote_only_with_the_test_root(evidence):
    """The same evidence through Phala's dcap-qvl (the verifier dstack's own tooling uses): UpToDate with the test
    root and the simulated collateral; rejected with Intel's root."""
    try:
        import dcap_qvl  # noqa: PLC0415
    except ImportError:
        if os.environ.get("PI_REQUIRE_ALL") == "1":
            pytest.fail("dcap-qvl is not installed (tests/requirements.txt; PI_REQUIRE_ALL=1)")
        pytest.skip("dcap-qvl is not installed (tests/requirements.txt)")
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import Encoding  # noqa: PLC0415
    ev, state = evidence
    quote = bytes.fromhex(ev["quote"])
    col = dcap_qvl.QuoteCollateralV3.from_json((state / "collateral.json").read_text())
    root = x509.load_pem_x509_certificate((state / "pki" / "root.cert.pem").read_bytes()).public_bytes(Encoding.DER)
    now = int(__import__("time").time())
    assert dcap_qvl.verify_with_root_ca(quote, col, root, now).status == "UpToDate"
    with pytest.raises(Exception):
        dcap_qvl.verify(quote, col, now)
