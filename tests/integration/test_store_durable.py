"""Signature records survive a restart of the proxy (issue #13 item 1: the SQLite store).

Against the real binary and the real llama.cpp engine, with the dev-tee as dstack agent (so the signing keys,
derived from it, are the same after the restart): 200 signed answers, streamed and not, then the proxy is
killed (SIGKILL: a crash) or stopped (SIGTERM) and started again on the same --store file. Every record is
still served, byte-identical to what was served before, and verifies against the bytes the client got.
Records are committed before the last byte of their answer leaves, so even the answers received just
before the SIGKILL have theirs. An expired record is not served after a restart.
"""
from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import verify_helpers as vh
from conftest import start_proxy

CHAT = "/v1/chat/completions"
JSON = {"content-type": "application/json"}


def _one_answer(stack, base_url: str, token: str, i: int) -> tuple[str, bytes, bytes]:
    """One signed answer (every other one streamed): (id, request bytes, response bytes as received)."""
    stream = i % 2 == 0
    body = json.dumps({"messages": [{"role": "user", "content": f"Count to {i % 7} {stack.marker()}"}],
                       "max_tokens": 3, "stream": stream}).encode()
    with httpx.Client(base_url=base_url, timeout=120,
                      headers={"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}) as c:
        if stream:
            with c.stream("POST", CHAT, content=body, headers=JSON) as r:
                assert r.status_code == 200
                raw = b"".join(r.iter_raw())
            stack.remember_stream(raw)
            return vh.stream_id(raw), body, raw
        r = c.post(CHAT, content=body, headers=JSON)
        assert r.status_code == 200, r.text
        stack.remember_body(r.content)
        assert r.headers["x-signature-id"] == r.json()["id"]
        return r.json()["id"], body, r.content


def _answers(stack, proxy, first: int, n: int) -> list[tuple[str, bytes, bytes]]:
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda i: _one_answer(stack, proxy.url, proxy.token, i), range(first, first + n)))


def _records(proxy, answers) -> dict[tuple[str, str], bytes]:
    """The served record bytes per (id, algo)."""
    out = {}
    with proxy.client() as c:
        for rid, _, _ in answers:
            for algo in vh.ALGOS:
                r = vh.fetch_signature(c, rid, algo, proxy.token)
                assert r.status_code == 200, f"{rid} {algo}: {r.status_code} {r.text}"
                out[(rid, algo)] = r.content
    return out


def _check_verifies(records: dict[tuple[str, str], bytes], answers, addresses) -> None:
    by_id = {rid: (req, resp) for rid, req, resp in answers}
    for (rid, algo), raw in records.items():
        req, resp = by_id[rid]
        vh.check_signature_record(json.loads(raw), algo, req, resp, addresses)


def _start(stack, name, backend, dev_tee, token, store, extra=()):
    return start_proxy(stack, name, backend.url, dev_tee.socket, [token], ["--store", store, *extra])


def _kill(proxy) -> None:
    proxy.proc.popen.send_signal(signal.SIGKILL)
    proxy.proc.popen.wait(10)
    proxy.proc.stop()
    proxy.proc.role = "proxy-killed"  # its exit status is the point (the stack's clean-exit check skips it)


def _scan(stack, proc) -> None:
    text = proc.logs()
    for v in stack.markers | stack.completions | stack.tokens:
        assert v not in text, f"{proc.name} log contains content: {v[:40]!r}"


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_200_signatures_survive_a_restart(stack, backend, dev_tee, tmp_path, how):
    token = os.urandom(18).hex()
    store = f"sqlite:{tmp_path / 'signatures.db'}"
    a = _start(stack, f"durable-{how}-a", backend, dev_tee, token, store)
    early = _answers(stack, a, 0, 100)
    before = _records(a, early)
    late = _answers(stack, a, 100, 100)  # received in full just before the stop: no fetch in between
    if how == "sigkill":
        _kill(a)
        _scan(stack, a.proc)
    else:
        assert a.proc.stop() == 0, a.proc.tail()
    assert len({rid for rid, _, _ in early + late}) == 200

    b = _start(stack, f"durable-{how}-b", backend, dev_tee, token, store)
    assert "200 live record(s)" in b.proc.logs(), b.proc.tail()
    after_early = _records(b, early)
    assert after_early == before, "records are served byte-identically after the restart"
    after_late = _records(b, late)
    with b.client() as c:
        addresses = {algo: c.get("/v1/attestation/report", params={"nonce": vh.fresh_nonce(), "signing_algo": algo})
                     .json()["signing_address"] for algo in vh.ALGOS}
    _check_verifies(after_early, early, addresses)
    _check_verifies(after_late, late, addresses)
    with b.client() as c:
        assert vh.metric_value(c, "pi_signature_store_records") == 200
    print(f"\n{how}: 200/200 signature records served after the restart, byte-identical, verified")
    b.proc.stop()


def test_expired_record_is_gone_after_restart(stack, backend, dev_tee, tmp_path):
    token = os.urandom(18).hex()
    store = f"sqlite:{tmp_path / 'signatures.db'}"
    a = _start(stack, "durable-ttl-a", backend, dev_tee, token, store, ["--signature-ttl", "2"])
    (rid, _, _), (keep, _, _) = _answers(stack, a, 0, 2)
    assert a.proc.stop() == 0
    time.sleep(2.5)
    b = _start(stack, "durable-ttl-b", backend, dev_tee, token, store, ["--signature-ttl", "2"])
    with b.client() as c:
        for i in (rid, keep):
            vh.check_error_envelope(vh.fetch_signature(c, i, "ecdsa", token), 404, "signature_not_found")
        assert vh.metric_value(c, "pi_signature_store_records") == 0
    b.proc.stop()


def test_unusable_store_is_a_clear_start_up_error(tmp_path):
    import subprocess

    from conftest import pi_binary

    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"x" * 8192)
    for store, part in ((f"sqlite:{bad}", "not a database"), (f"sqlite:{tmp_path}/no/dir/s.db", "cannot open"),
                        ("bogus", "must be 'memory', 'sqlite:PATH' or 'redis://"),
                        ("redis://h:99999", "bad port"), ("rediss://h", "TLS to Redis (rediss://) is not supported")):
        p = subprocess.run([str(pi_binary()), "serve", "--backend", "http://127.0.0.1:9", "--listen", "127.0.0.1:0",
                            "--store", store], capture_output=True, text=True, timeout=60)
        assert p.returncode != 0
        assert part in p.stdout + p.stderr, p.stdout + p.stderr
