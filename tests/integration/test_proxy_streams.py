"""Streams under stress and signature-record isolation."""
from __future__ import annotations

import json
import re
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import verify_helpers as vh
from conftest import start_proxy

CHAT = "/v1/chat/completions"
JSON = {"Content-Type": "application/json"}


def _metric(backend, name: str) -> float:
    text = httpx.get(backend.url + "/metrics", timeout=10).text
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    assert m, f"{name} not in backend metrics"
    return float(m.group(1))


def _wait_idle(backend, timeout: float) -> float:
    t0 = time.monotonic()
    while backend.busy_slots():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"backend still generating {timeout}s after the client went away: "
                                 f"{[(s['id'], s.get('id_task')) for s in backend.busy_slots()]}")
        time.sleep(0.05)
    return time.monotonic() - t0


def test_client_disconnect_mid_stream_stops_generation(proxy, backend, stack):
    """2000 tokens with ignore_eos would take many seconds; after the client hangs up, llama.cpp must stop soon.

    Also: the cut-off stream (no [DONE] reached the client) gets no signature record.
    """
    _wait_idle(backend, 30)
    predicted_before = _metric(backend, "llamacpp:tokens_predicted_total")
    body = json.dumps({"messages": [{"role": "user", "content": f"Tell a very long story. {stack.marker()}"}],
                       "max_tokens": 2000, "ignore_eos": True, "stream": True}).encode()
    client = proxy.client(timeout=60)
    events = 0
    received = b""
    with client.stream("POST", CHAT, content=body, headers=JSON) as r:
        assert r.status_code == 200
        # Keep a reference to the iterator: a dropped httpx byte iterator closes the connection at once, and the
        # stream must stay open (unread) while the test checks that the backend is generating.
        chunks = r.iter_raw()
        for chunk in chunks:
            received += chunk
            events = received.count(b"\n\n")
            if events >= 5:
                break
        # llama.cpp answers /slots from its main loop, so the view may lag a little: poll while the stream is open
        deadline = time.monotonic() + 5
        while not backend.busy_slots():
            assert time.monotonic() < deadline, "the backend was not generating while the stream was open"
            time.sleep(0.05)
        time.sleep(1.0)
        assert backend.busy_slots(), "generation stopped although the client was still connected"
        chunks.close()
    client.close()  # closes the connection: the response was not read to its end
    disconnected = time.monotonic()
    waited = _wait_idle(backend, 5.0)
    predicted = _metric(backend, "llamacpp:tokens_predicted_total") - predicted_before
    assert predicted < 2000, f"the backend generated all {predicted} tokens although the client left"
    rid = json.loads(received.split(b"\n\n")[0].removeprefix(b"data: "))["id"]
    with proxy.client() as c:
        for algo in vh.ALGOS:
            r = vh.fetch_signature(c, rid, algo, proxy.token)
            assert r.status_code == 404, f"a stream cut off by the client got a signature record: {r.text}"
    print(f"backend idle {waited:.2f}s after disconnect ({time.monotonic() - disconnected:.2f}s), "
          f"{predicted:.0f} tokens generated")


@pytest.mark.timeout(900)
def test_fifty_concurrent_streams_complete_and_verify(proxy, stack, addresses):
    """50 streams at once (the backend has 8 slots, so most queue): all complete with [DONE] and all verify.

    The timeouts are generous because on a loaded 2-core CI machine 50 queued generations can take minutes.
    """
    n = 50

    def one(i: int):
        client, transport = proxy.recording_client()
        client.timeout = httpx.Timeout(600.0)
        body = json.dumps({"messages": [{"role": "user", "content": f"Say a word. {stack.marker()}"}],
                           "max_tokens": 6, "stream": True}).encode()
        with client:
            with client.stream("POST", CHAT, content=body, headers=JSON) as r:
                status = r.status_code
                raw = b"".join(r.iter_raw())
        return status, body, raw

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    assert [s for s, _, _ in results] == [200] * n
    ids = set()
    with proxy.client() as c:
        for _, body, raw in results:
            assert vh.sse_has_done(raw), raw[-200:]
            stack.remember_stream(raw)
            rid = vh.stream_id(raw)
            ids.add(rid)
            vh.verify_exchange(c, rid, body, raw, proxy.token, addresses)
    assert len(ids) == n


def test_other_tokens_signature_is_404(proxy, stack, addresses):
    token_a, token_b = proxy.tokens
    body = json.dumps({"messages": [{"role": "user", "content": f"Hello {stack.marker()}"}], "max_tokens": 6}).encode()
    with proxy.client(token=token_a) as a, proxy.client(token=token_b) as b:
        r = a.post(CHAT, content=body, headers=JSON)
        assert r.status_code == 200
        stack.remember_body(r.content)
        rid = r.json()["id"]
        for algo in vh.ALGOS:
            vh.check_error_envelope(vh.fetch_signature(b, rid, algo, token_b), 404)
        vh.verify_exchange(a, rid, body, r.content, token_a, addresses)


def test_client_request_id_and_hash_headers_cannot_overwrite_records(proxy, stack, addresses):
    token_a, token_b = proxy.tokens
    body_a = json.dumps({"messages": [{"role": "user", "content": f"First {stack.marker()}"}], "max_tokens": 6}).encode()
    with proxy.client(token=token_a) as a, proxy.client(token=token_b) as b:
        ra = a.post(CHAT, content=body_a, headers=JSON)
        assert ra.status_code == 200
        stack.remember_body(ra.content)
        victim = ra.json()["id"]
        forged = {**JSON, "X-Request-Id": victim, "X-Request-Hash": "00" * 32}
        for client, token in ((a, token_a), (b, token_b)):
            body = json.dumps({"messages": [{"role": "user", "content": f"Second {stack.marker()}"}],
                               "max_tokens": 6}).encode()
            r = client.post(CHAT, content=body, headers=forged)
            assert r.status_code == 200
            stack.remember_body(r.content)
            own_id = r.json()["id"]
            assert own_id != victim
            # the attacker's own record is over its real bytes (X-Request-Hash ignored) ...
            vh.verify_exchange(client, own_id, body, r.content, token, addresses)
        # ... and the victim's record still matches the victim's bytes
        vh.verify_exchange(a, victim, body_a, ra.content, token_a, addresses)


class CuttingRelay:
    """A TCP relay to the real backend that records what the proxy sends upstream and, with `cut_after`, closes both
    sides after that many SSE events of a response.

    With cut_after it simulates a backend that dies mid-stream (simulated failure, real bytes): no [DONE].
    """

    def __init__(self, backend_url: str, cut_after: int | None = 3):
        host, port = backend_url.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.cut_after = cut_after
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        self.upstream: list[bytearray] = []  # per connection: the bytes the proxy sent towards the backend
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(down,), daemon=True).start()

    def _serve(self, down: socket.socket):
        up = socket.create_connection(self.target)
        sent = bytearray()
        self.upstream.append(sent)

        def pump_up():
            try:
                while data := down.recv(65536):
                    sent.extend(data)
                    up.sendall(data)
            except OSError:
                pass

        threading.Thread(target=pump_up, daemon=True).start()
        seen = b""
        try:
            while data := up.recv(65536):
                seen += data
                if self.cut_after and b"text/event-stream" in seen and seen.count(b"data: ") >= self.cut_after:
                    # forward only up to the end of the cut_after-th event, then drop the connection
                    self.cuts += 1
                    down.sendall(data[: max(0, len(data) - 1)])
                    break
                down.sendall(data)
        except OSError:
            pass
        finally:
            for s in (up, down):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self._stop = True
        self.listener.close()


def test_stream_cut_off_by_backend_gets_no_signature(stack, backend, dev_tee_optional):
    """simulated backend failure: the backend connection drops mid-stream, so no [DONE] -> no signature (404)."""
    relay = CuttingRelay(backend.url)
    token = secrets.token_urlsafe(24)
    try:
        p = start_proxy(stack, "proxy-cut", f"http://127.0.0.1:{relay.port}",
                        dev_tee_optional.socket if dev_tee_optional else None, [token])
        body = json.dumps({"messages": [{"role": "user", "content": f"Tell a story. {stack.marker()}"}],
                           "max_tokens": 200, "ignore_eos": True, "stream": True}).encode()
        received = b""
        with p.client(timeout=60) as c:
            try:
                with c.stream("POST", CHAT, content=body, headers=JSON) as r:
                    assert r.status_code == 200
                    for chunk in r.iter_raw():
                        received += chunk
            except httpx.HTTPError:
                pass  # an abrupt end of the chunked body is a legitimate way to signal the failure
            assert relay.cuts >= 1
            assert not vh.sse_has_done(received)
            events = [e for e in vh.sse_events(received) if e.startswith("{")]
            assert events, f"no event reached the client before the cut: {received[:300]!r}"
            rid = json.loads(events[0])["id"]
            for algo in vh.ALGOS:
                vh.check_error_envelope(vh.fetch_signature(c, rid, algo, token), 404)
        stack.remember_stream(received)
        p.proc.stop()
    finally:
        relay.close()


def test_request_reaches_backend_byte_exact_without_client_headers(stack, backend, dev_tee_optional):
    """What the proxy sends upstream (seen by a recording relay in front of the real backend): the body exactly as
    the client sent it, and neither the client's bearer token nor its X-Request-Id / X-Request-Hash."""
    relay = CuttingRelay(backend.url, cut_after=None)
    token = secrets.token_urlsafe(24)
    try:
        p = start_proxy(stack, "proxy-relay", f"http://127.0.0.1:{relay.port}",
                        dev_tee_optional.socket if dev_tee_optional else None, [token])
        body = (b'{ "messages" : [ {"role":"user", "content":"Hi \\u00e9 ' + stack.marker().encode() +
                b'"} ],\n  "max_tokens": 4 }')
        request_id = "rid-" + secrets.token_hex(8)
        with p.client() as c:
            r = c.post(CHAT, content=body, headers={**JSON, "X-Request-Id": request_id, "X-Request-Hash": "ab" * 32})
            assert r.status_code == 200, r.text
            stack.remember_body(r.content)
            vh.verify_exchange(c, r.json()["id"], body, r.content, token)
        requests = [bytes(u) for u in relay.upstream if CHAT.encode() in bytes(u)]
        assert len(requests) == 1, f"expected one upstream chat request, saw {len(requests)}"
        head, _, upstream_body = requests[0].partition(b"\r\n\r\n")
        assert upstream_body == body, "the body the backend received differs from the client's bytes"
        head_l = head.lower()
        assert token.encode().lower() not in head_l, "the client's bearer token was forwarded to the backend"
        assert request_id.encode().lower() not in head_l and b"x-request-hash" not in head_l, head.decode()
        assert p.proc.stop() == 0, p.proc.tail()
    finally:
        relay.close()
