"""Timeouts in the middle of a stream: an engine that goes silent, a client that stops reading.

Real llama.cpp cannot be told to stall mid-answer, so the engine here is a simulated failure
(failing_peers.MisbehavingEngine: HTTP/1.1 and vLLM's SSE framing, then misbehaviour). The proxy,
the client and the checks are real.
"""
from __future__ import annotations

import json
import secrets
import socket
import time

import httpx
import pytest

import verify_helpers as vh
from conftest import start_proxy
from failing_peers import MisbehavingEngine

CHAT = "/v1/chat/completions"
JSON = {"Content-Type": "application/json"}
STREAM_ID = "chatcmpl-stall-0001"


def _wait_for(cond, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _metric(proxy, name: str) -> float:
    with proxy.client() as c:
        return vh.metric_value(c, name)


def test_engine_silent_mid_stream_breaks_the_stream_unsigned(stack):
    """--backend-timeout 2: the events sent so far reach the client at once; after 2 s of silence the proxy
    closes the engine connection, the client sees a broken stream (no clean end) and no signature exists."""
    engine = MisbehavingEngine(STREAM_ID, events=3)
    token = secrets.token_urlsafe(24)
    try:
        p = start_proxy(stack, "proxy-stall", engine.url, None, [token], extra=["--backend-timeout", "2"])
        body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
        received = b""
        t0 = time.monotonic()
        with p.client(timeout=60) as c:
            with pytest.raises(httpx.RemoteProtocolError):
                with c.stream("POST", CHAT, content=body, headers=JSON) as r:
                    assert r.status_code == 200
                    for chunk in r.iter_raw():
                        if not received:
                            first = time.monotonic() - t0
                        received += chunk
            broke = time.monotonic() - t0
        assert received.count(b"data: ") == 3 and b"[DONE]" not in received
        assert first < 2, f"events were held back ({first:.1f} s before the first)"
        # the watchdog ticks every 0.5 s here (a quarter of the shorter timeout): the stream must break
        # soon after 2 s of silence (slack for a sanitized build on a loaded machine)
        assert 1.5 < broke < 8, f"stream broke after {broke:.1f} s with --backend-timeout 2"
        assert _wait_for(lambda: engine.closed_at, 10), "the proxy never closed the engine connection"
        assert engine.closed_at[0] - t0 < 30
        assert _metric(p, "pi_backend_timeouts_total") == 1
        with p.client() as c:
            vh.check_error_envelope(vh.fetch_signature(c, STREAM_ID, "ecdsa", token), 404)
        assert p.proc.stop() == 0, p.proc.tail()
    finally:
        engine.close()


def test_client_that_stops_reading_is_dropped_and_engine_released(stack):
    """--client-timeout 2: a client that never reads while the engine floods events. Once the socket buffers
    are full the proxy's write stalls; after 2 s it drops the client and closes the engine connection
    (which cancels generation), and goes on serving."""
    engine = MisbehavingEngine(STREAM_ID, events=1, flood=True)
    token = secrets.token_urlsafe(24)
    try:
        p = start_proxy(stack, "proxy-stalled-client", engine.url, None, [token], extra=["--client-timeout", "2"])
        body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
        port = int(p.url.rsplit(":", 1)[1])
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                  b"\r\n\r\n" + body)
        assert engine.stream_started.wait(30), "the engine never got the request"
        t0 = time.monotonic()
        assert _wait_for(lambda: engine.closed_at, 60), \
            "the proxy kept the engine streaming into a client that does not read"
        waited = engine.closed_at[0] - t0
        assert 1.5 < waited < 15, f"engine connection closed {waited:.1f} s after the stream started"
        # The client's side was closed too: draining it ends in EOF or a reset, not an endless stream.
        s.settimeout(30)
        try:
            while s.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass
        s.close()
        assert _metric(p, "pi_client_disconnects_total") >= 1
        assert _metric(p, "pi_backend_timeouts_total") == 0
        with p.client() as c:  # still serving
            assert c.get("/version").status_code == 200
        assert p.proc.stop() == 0, p.proc.tail()
    finally:
        engine.close()


def test_streams_that_end_normally_are_complete_and_signed_under_a_fast_watchdog(stack):
    """The control: with 1 s timeouts the watchdog wakes every 250 ms, in the middle of streams whose
    events come every 50 ms. Every stream must still end properly (its last event and [DONE] reach
    the client at once, nothing is held back or cut off) and be signed over the exact bytes."""
    engine = MisbehavingEngine("chatcmpl-ok", events=12, finish=True, gap=0.05)
    token = secrets.token_urlsafe(24)
    try:
        p = start_proxy(stack, "proxy-fast-watchdog", engine.url, None, [token],
                        extra=["--backend-timeout", "1", "--client-timeout", "1"])
        with p.client(timeout=30) as c:
            for n in range(1, 9):
                body = json.dumps({"messages": [{"role": "user", "content": f"hi {n}"}], "stream": True}).encode()
                t0 = time.monotonic()
                r = c.post(CHAT, content=body, headers=JSON)
                took = time.monotonic() - t0
                assert r.status_code == 200, r.text
                assert r.content.count(b"data: ") == 13 and r.content.endswith(b"data: [DONE]\n\n")
                assert took < 5, f"stream {n} took {took:.1f} s for 12 events 50 ms apart"
                rid = f"chatcmpl-ok-{n}"
                assert rid.encode() in r.content
                vh.verify_exchange(c, rid, body, r.content, token)
        assert _metric(p, "pi_backend_timeouts_total") == 0
        assert _metric(p, "pi_signatures_created_total") == 8
        assert p.proc.stop() == 0, p.proc.tail()
    finally:
        engine.close()
