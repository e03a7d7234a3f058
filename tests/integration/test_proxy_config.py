"""Proxies started with non-default settings: backend key, signature TTL/capacity, unreachable and silent backends."""
from __future__ import annotations

import json
import secrets
import time


import verify_helpers as vh
from conftest import free_port, start_backend, start_proxy
from failing_peers import SilentBackend

CHAT = "/v1/chat/completions"
JSON = {"Content-Type": "application/json"}


def _chat(stack, max_tokens: int = 4) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": f"Hi {stack.marker()}"}],
                       "max_tokens": max_tokens}).encode()


def test_backend_api_key_is_sent_and_client_token_is_not(stack, dev_tee_optional):
    """A backend that requires its own key (like vLLM --api-key): the proxy authenticates with --backend-api-key.

    The client's bearer token is not the backend key, so a 200 also shows the proxy replaced the client's
    Authorization header instead of forwarding it.
    """
    backend_key = secrets.token_urlsafe(16)
    b = start_backend(stack, "backend-keyed", api_key=backend_key)
    token = secrets.token_urlsafe(24)
    stack.tokens.add(backend_key)
    sock = dev_tee_optional.socket if dev_tee_optional else None
    try:
        p = start_proxy(stack, "proxy-keyed", b.url, sock, [token], extra=[f"--backend-api-key={backend_key}"])
        body = _chat(stack)
        with p.client() as c:
            r = c.post(CHAT, content=body, headers=JSON)
            assert r.status_code == 200, r.text
            stack.remember_body(r.content)
            vh.verify_exchange(c, r.json()["id"], body, r.content, token)
        assert p.proc.stop() == 0, p.proc.tail()
        # without the key the same backend refuses: the 200 above really needed --backend-api-key
        p2 = start_proxy(stack, "proxy-unkeyed", b.url, sock, [token])
        with p2.client() as c:
            r = c.post(CHAT, content=body, headers=JSON)
            assert r.status_code == 401, r.text
        assert p2.proc.stop() == 0, p2.proc.tail()
    finally:
        assert b.proc.stop() == 0


TTL = 30  # seconds


def test_signature_ttl_and_capacity(stack, backend, dev_tee_optional):
    token = secrets.token_urlsafe(24)
    p = start_proxy(stack, "proxy-small-store", backend.url, dev_tee_optional.socket if dev_tee_optional else None,
                    [token], extra=["--signature-ttl", str(TTL), "--signature-capacity", "2"])
    with p.client() as c:
        ids = []
        first = time.monotonic()
        for _ in range(2):
            body = _chat(stack)
            r = c.post(CHAT, content=body, headers=JSON)
            assert r.status_code == 200, r.text
            stack.remember_body(r.content)
            vh.verify_exchange(c, r.json()["id"], body, r.content, token)
            ids.append(r.json()["id"])
        last = time.monotonic()  # both records were committed before their answers arrived
        full = c.post(CHAT, content=_chat(stack), headers=JSON)
        # The TTL is generous so that a slow (sanitized, loaded) machine still fills the store before
        # the first record expires.
        assert time.monotonic() - first < TTL, "the machine was too slow to fill the store inside the TTL"
        vh.check_error_envelope(full, 503, "signature_store_full")
        assert int(full.headers["retry-after"]) >= 1
        time.sleep(max(0.0, last + TTL + 1.5 - time.monotonic()))
        for rid in ids:
            vh.check_error_envelope(vh.fetch_signature(c, rid, "ecdsa", token), 404)
        body = _chat(stack)
        again = c.post(CHAT, content=body, headers=JSON)
        assert again.status_code == 200, f"expired records did not free the store: {again.text}"
        stack.remember_body(again.content)
        vh.verify_exchange(c, again.json()["id"], body, again.content, token)
    assert p.proc.stop() == 0, p.proc.tail()


def test_unreachable_backend_is_502(stack):
    token = secrets.token_urlsafe(24)
    p = start_proxy(stack, "proxy-nobackend", f"http://127.0.0.1:{free_port()}", None, [token],
                    extra=["--connect-timeout", "2"])
    with p.client() as c:
        vh.check_error_envelope(c.post(CHAT, content=_chat(stack), headers=JSON), 502, "backend_unavailable")
    assert p.proc.stop() == 0, p.proc.tail()


def test_silent_backend_is_504(stack):
    silent = SilentBackend()
    token = secrets.token_urlsafe(24)
    try:
        p = start_proxy(stack, "proxy-silent", f"http://127.0.0.1:{silent.port}", None, [token],
                        extra=["--backend-timeout", "2"])
        with p.client(timeout=60) as c:
            t0 = time.monotonic()
            vh.check_error_envelope(c.post(CHAT, content=_chat(stack), headers=JSON), 504, "backend_timeout")
            assert time.monotonic() - t0 < 30
        assert p.proc.stop() == 0, p.proc.tail()
    finally:
        silent.close()


def test_streamed_request_rejected_by_backend_passes_through(proxy, backend):
    """A stream request over the context size: llama.cpp answers 400 JSON before any event; it reaches the client."""
    import httpx

    body = json.dumps({"messages": [{"role": "user", "content": "hello " * 3000}], "max_tokens": 4,
                       "stream": True}).encode()
    direct = httpx.post(backend.url + CHAT, content=body, headers=JSON, timeout=60)
    assert direct.status_code == 400, direct.text  # a real rejection by llama.cpp
    with proxy.client() as c:
        via = c.post(CHAT, content=body, headers=JSON)
    assert (via.status_code, via.content) == (direct.status_code, direct.content)


def test_max_body_bytes_with_content_length_and_chunked(stack, backend):
    """--max-body-bytes 4096: a body just under passes to the backend; over it -> 413, declared or chunked."""
    token = secrets.token_urlsafe(24)
    p = start_proxy(stack, "proxy-small-body", backend.url, None, [token], extra=["--max-body-bytes", "4096"])
    marker = stack.marker()
    filler = "x" * (4096 - 120)
    under = json.dumps({"messages": [{"role": "user", "content": f"{marker} {filler}"}], "max_tokens": 2}).encode()
    under = under[:4096] if len(under) <= 4096 else None
    assert under is not None and len(under) <= 4096
    over = json.dumps({"messages": [{"role": "user", "content": f"{marker} {filler} {filler}"}]}).encode()
    assert len(over) > 4096
    with p.client() as c:
        r = c.post(CHAT, content=under, headers=JSON)
        assert r.status_code == 200, r.text
        stack.remember_body(r.content)
    with p.client() as c:
        vh.check_error_envelope(c.post(CHAT, content=over, headers=JSON), 413, "request_too_large")
    with p.client() as c:
        chunked = c.post(CHAT, content=iter([over[:3000], over[3000:]]), headers=JSON)
        assert "content-length" not in {k.lower() for k in chunked.request.headers}
        vh.check_error_envelope(chunked, 413, "request_too_large")
    assert p.proc.stop() == 0, p.proc.tail()
