"""Proxy behaviours the README promises that the other files do not exercise: E2EE headers are refused (never
answered in plaintext), wrong methods get 405 with Allow, and `Expect: 100-continue` is honoured."""
from __future__ import annotations

import json
import socket

import pytest

import verify_helpers as vh

CHAT = "/v1/chat/completions"


@pytest.mark.parametrize("header", [{"X-Client-Pub-Key": "04" + "11" * 64}, {"X-Encryption-Version": "1"}],
                         ids=["client-pub-key", "encryption-version-alone"])
def test_e2ee_headers_are_refused_not_answered_in_plaintext(proxy, header):
    with proxy.client() as c:
        r = c.post(CHAT, json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
                   headers={"X-Signing-Algo": "ecdsa", **header})
    err = vh.check_error_envelope(r, 400)
    assert err["code"] == "e2ee_unsupported"
    assert r.headers.get("x-should-retry") == "false"


def test_wrong_method_is_405_with_allow(proxy):
    with proxy.client() as c:
        r = c.get(CHAT)
    err = vh.check_error_envelope(r, 405)
    assert err["code"] == "method_not_allowed"
    assert r.headers["allow"] == "POST"


def test_expect_100_continue_is_honoured_and_the_answer_signed(proxy):
    host, port = proxy.url.removeprefix("http://").split(":")
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
    head = (f"POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {proxy.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=120) as s:
        s.sendall(head)
        interim = s.recv(64)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim  # body is sent only after this
        rest = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        s.sendall(body)
        chunks = [rest]
        while data := s.recv(65536):
            chunks.append(data)
    raw = b"".join(chunks)
    status, _, payload = raw.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200"), status
    response_id = json.loads(payload)["id"]
    with proxy.client() as c:
        vh.verify_exchange(c, response_id, body, payload, proxy.token)
