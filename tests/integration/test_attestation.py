"""Attestation through the proxy with the dev-tee as dstack agent (simulated TDX: `simulated` must say so)."""
from __future__ import annotations

import json
import re
import secrets

import pytest

import verify_helpers as vh
from conftest import start_proxy

REPORT_FIELDS = ("signing_address", "signing_algo", "signing_public_key", "request_nonce", "intel_quote", "quote",
                 "event_log", "vm_config", "info", "nvidia_payload", "gpu_evidence", "gpu_evidence_error",
                 "all_attestations", "simulated")


@pytest.fixture(scope="module")
def attested_proxy(proxy, dev_tee):
    assert proxy.dstack is dev_tee
    return proxy


def _report(client, algo: str, nonce: str | None = None, **params):
    q = {"signing_algo": algo, **params}
    if nonce is not None:
        q["nonce"] = nonce
    return client.get("/v1/attestation/report", params=q)


@pytest.mark.parametrize("algo", vh.ALGOS)
def test_report_binds_signing_key_and_nonce(attested_proxy, algo, stack):
    nonce = vh.fresh_nonce()
    with attested_proxy.client(token=None) as anon:  # public by default
        r = _report(anon, algo, nonce)
    assert r.status_code == 200, r.text
    rep = r.json()
    missing = [f for f in REPORT_FIELDS if f not in rep]
    assert not missing, f"report lacks {missing}"
    assert rep["signing_algo"] == algo and rep["request_nonce"] == nonce
    assert rep["simulated"] is True, "a dev-tee quote must be labelled simulated"
    vh.check_report_binding(rep, algo, nonce)
    assert isinstance(rep["event_log"], list) and isinstance(rep["info"], dict)
    assert rep["nvidia_payload"] is None and rep["gpu_evidence"] is None and isinstance(rep["gpu_evidence_error"], str)
    assert isinstance(rep["all_attestations"], list) and rep["all_attestations"]
    assert rep["signing_address"] in [a.get("signing_address") for a in rep["all_attestations"]]
    if algo == "ecdsa":
        assert re.fullmatch(r"0x[0-9a-fA-F]{40}", rep["signing_address"])
        assert len(rep["signing_public_key"].removeprefix("0x")) == 128
    else:
        assert rep["signing_public_key"].lower().removeprefix("0x") == rep["signing_address"].lower()

    # The attested key is the key that signs responses.
    body = json.dumps({"messages": [{"role": "user", "content": f"Hi {stack.marker()}"}], "max_tokens": 4}).encode()
    with attested_proxy.client() as c:
        resp = c.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 200
        stack.remember_body(resp.content)
        recs = vh.verify_exchange(c, resp.json()["id"], body, resp.content, attested_proxy.token)
    assert recs[algo]["signing_address"] == rep["signing_address"]


def test_report_without_nonce_uses_a_random_one(attested_proxy):
    with attested_proxy.client() as c:
        reports = [_report(c, "ecdsa").json() for _ in range(2)]
    for rep in reports:
        assert re.fullmatch(r"[0-9a-f]{64}", rep["request_nonce"]), rep["request_nonce"]
        vh.check_report_binding(rep, "ecdsa", rep["request_nonce"])
    assert reports[0]["request_nonce"] != reports[1]["request_nonce"]


def test_report_for_a_foreign_signing_address_is_404(attested_proxy, addresses):
    with attested_proxy.client() as c:
        ok = _report(c, "ecdsa", vh.fresh_nonce(), signing_address=addresses["ecdsa"])
        assert ok.status_code == 200 and ok.json()["signing_address"] == addresses["ecdsa"]
        from eth_account import Account

        other = Account.create().address
        vh.check_error_envelope(_report(c, "ecdsa", vh.fresh_nonce(), signing_address=other), 404)
        vh.check_error_envelope(_report(c, "ed25519", vh.fresh_nonce(), signing_address=secrets.token_hex(32)), 404)


def test_plain_attestation_endpoint_binds_nonce(attested_proxy):
    nonce = vh.fresh_nonce()
    with attested_proxy.client(token=None) as c:
        r = c.get("/v1/attestation", params={"nonce": nonce})
    assert r.status_code == 200, r.text
    assert nonce in r.text.lower(), "the nonce does not appear in /v1/attestation's answer"


def test_identity_is_dstack_derived_and_survives_restart(stack, backend, dev_tee, addresses):
    """Same dev-tee state + same model name -> same keys after a restart; another model name -> other keys."""
    same = start_proxy(stack, "proxy-restart", backend.url, dev_tee.socket, [secrets.token_urlsafe(24)])
    other = start_proxy(stack, "proxy-othermodel", backend.url, dev_tee.socket, [secrets.token_urlsafe(24)],
                        model="another-model")
    try:
        for algo in vh.ALGOS:
            with same.client() as c:
                assert _report(c, algo, vh.fresh_nonce()).json()["signing_address"] == addresses[algo]
            with other.client() as c:
                assert _report(c, algo, vh.fresh_nonce()).json()["signing_address"] != addresses[algo]
    finally:
        assert same.proc.stop() == 0, same.proc.tail()
        assert other.proc.stop() == 0, other.proc.tail()


def test_without_dstack_attestation_is_503_but_signing_works(proxy_no_dstack, stack):
    p = proxy_no_dstack
    with p.client() as c:
        for algo in vh.ALGOS:
            err = vh.check_error_envelope(_report(c, algo, vh.fresh_nonce()), 503)
            assert "dstack" in err["message"].lower() or "tee" in err["message"].lower(), err
        body = json.dumps({"messages": [{"role": "user", "content": f"Hi {stack.marker()}"}], "max_tokens": 6}).encode()
        r = c.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        stack.remember_body(r.content)
        vh.verify_exchange(c, r.json()["id"], body, r.content, p.token)
