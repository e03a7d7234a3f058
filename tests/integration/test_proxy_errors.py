"""Errors produced by the proxy itself: OpenAI envelope {"error":{"message","type","param","code"}} and the status."""
from __future__ import annotations

import json
import socket
import threading

import pytest

import verify_helpers as vh

CHAT = "/v1/chat/completions"
TEN_MIB = 10 * 1024 * 1024


def test_malformed_json_is_400_envelope(proxy):
    with proxy.client() as c:
        r = c.post(CHAT, content=b'{"messages": [{"role": "user", "content": "x"}', headers={"Content-Type": "application/json"})
    vh.check_error_envelope(r, 400, "invalid_json")
    assert r.headers.get("x-should-retry") == "false"


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
@pytest.mark.parametrize("method,path", [("POST", CHAT), ("POST", "/v1/completions"), ("POST", "/v1/embeddings"),
                                         ("GET", "/v1/signature/chatcmpl-anything?signing_algo=ecdsa")])
def test_missing_or_wrong_token_is_401_envelope(proxy, token, method, path):
    with proxy.client(token=token) as c:
        r = c.request(method, path, content=b'{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}'
                      if method == "POST" else None)
    vh.check_error_envelope(r, 401, "invalid_api_key")


def test_public_endpoints_need_no_token(proxy):
    with proxy.client(token=None) as c:
        for path in ("/version", "/health", "/v1/models", "/metrics"):
            assert c.get(path).status_code == 200, path


def test_unknown_route_is_404_envelope(proxy):
    with proxy.client() as c:
        vh.check_error_envelope(c.get("/v1/no-such-route"), 404, "unknown_url")
        vh.check_error_envelope(c.post("/v2/chat/completions", json={}), 404)


def test_unknown_signature_id_is_404_envelope(proxy):
    with proxy.client() as c:
        vh.check_error_envelope(c.get("/v1/signature/chatcmpl-doesnotexist", params={"signing_algo": "ecdsa"}), 404,
                                "signature_not_found")


def test_bad_signing_algo_is_400(proxy):
    with proxy.client() as c:
        r = c.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert r.status_code == 200
        vh.check_error_envelope(c.get(f"/v1/signature/{r.json()['id']}", params={"signing_algo": "rsa"}), 400)
        vh.check_error_envelope(c.get("/v1/attestation/report", params={"nonce": vh.fresh_nonce(), "signing_algo": "rsa"}), 400)


@pytest.mark.parametrize("nonce", ["abc", "0" * 63, "0" * 65, "zz" * 32, "0x" + "00" * 32, "00" * 31 + " 0"])
def test_bad_nonce_is_400(proxy, nonce):
    with proxy.client() as c:
        r = c.get("/v1/attestation/report", params={"nonce": nonce, "signing_algo": "ecdsa"})
    err = vh.check_error_envelope(r, 400)
    assert "nonce" in err["message"].lower()


def _raw_post(host: str, port: int, path: str, token: str, body_len: int) -> tuple[int, bytes]:
    """POSTs a body of body_len bytes over a raw socket, reading the answer while still sending.

    A server may answer 413 from the Content-Length alone and close; that must still reach the client, so the
    sender runs in a thread and tolerates the connection closing under it.
    """
    sock = socket.create_connection((host, port), timeout=60)
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n").encode()

    def send():
        try:
            sock.sendall(head)
            chunk = b" " * 65536
            left = body_len
            while left > 0:
                n = min(left, len(chunk))
                sock.sendall(chunk[:n])
                left -= n
        except OSError:
            pass  # the server answered early and closed: fine

    t = threading.Thread(target=send, daemon=True)
    t.start()
    data = b""
    try:
        while True:
            part = sock.recv(65536)
            if not part:
                break
            data += part
            if b"\r\n\r\n" in data:
                header, _, rest = data.partition(b"\r\n\r\n")
                lengths = [int(line.split(b":", 1)[1]) for line in header.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")]
                if lengths and len(rest) >= lengths[0]:
                    break
    except ConnectionResetError:
        pass
    finally:
        sock.close()
        t.join(30)
    assert data, "the connection closed without any HTTP response"
    header, _, rest = data.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    return status, rest


def test_body_over_limit_is_413(proxy):
    host, port = proxy.url.removeprefix("http://").split(":")
    status, body = _raw_post(host, int(port), CHAT, proxy.token, TEN_MIB + 1)
    assert status == 413, body[:300]
    err = json.loads(body)["error"]
    assert all(k in err for k in vh.ERROR_FIELDS), err
