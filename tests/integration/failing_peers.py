"""Simulated failures for the proxy's tests: TCP peers that speak just enough HTTP to misbehave.

Real llama.cpp cannot be told to go silent or to flood on demand; these peers stand in for an engine
only where the test is about the proxy's handling of such an engine.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time


class TcpPeer:
    """Listens on 127.0.0.1 (ephemeral port) and serves each connection on its own thread."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class SilentBackend(TcpPeer):
    """simulated failure: accepts connections and reads requests but never answers."""

    def serve(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass


def sse_chunk(stream_id: str, content: str) -> bytes:
    """One vLLM-style SSE event as one HTTP/1.1 chunk."""
    ev = {"id": stream_id, "object": "chat.completion.chunk", "created": 1, "model": "m",
          "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    data = b"data: " + json.dumps(ev, separators=(",", ":")).encode() + b"\n\n"
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class MisbehavingEngine(TcpPeer):
    """simulated failure: answers POSTs with an SSE stream (vLLM framing) of `events` events, `gap`
    seconds apart, that then either stalls (the default), floods events as fast as the proxy takes
    them (flood=True), or, as the well-behaved control, ends properly with `data: [DONE]` and keeps
    the connection (finish=True; then each stream's id is `stream_id` + "-" + a counter). Other
    requests get 404. Records when the proxy closed each streaming connection."""

    def __init__(self, stream_id: str, events: int = 1, flood: bool = False, finish: bool = False,
                 gap: float = 0.0):
        self.stream_id, self.events, self.flood, self.finish, self.gap = stream_id, events, flood, finish, gap
        self.served = 0
        self.closed_at: list[float] = []
        self.stream_started = threading.Event()
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        buf = b""
        streaming = False
        try:
            while self.finish:  # keep-alive: one finished stream after another on this connection
                buf = self._serve_one(conn, buf)
                if buf is None:
                    return
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            if not head.startswith(b"POST "):
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            need = int(m.group(1)) if m else 0
            while len(rest) < need:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                rest += chunk
            streaming = True
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(self.events):
                conn.sendall(sse_chunk(self.stream_id, f"t{i}"))
                time.sleep(self.gap)
            self.stream_started.set()
            if self.flood:
                big = sse_chunk(self.stream_id, "x" * 4000) * 16
                while True:
                    conn.sendall(big)  # raises once the proxy closes the connection
            while conn.recv(65536):  # silent: wait until the proxy gives up on us
                pass
        except OSError:
            pass
        finally:
            if streaming:
                self.closed_at.append(time.monotonic())
            conn.close()

    def _serve_one(self, conn: socket.socket, buf: bytes) -> bytes | None:
        """One well-behaved streamed answer; returns bytes already read of the next request, or None at EOF."""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?i)content-length:\s*(\d+)", head)
        need = int(m.group(1)) if m else 0
        while len(rest) < need:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            rest += chunk
        self.served += 1
        sid = f"{self.stream_id}-{self.served}"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(self.events):
            conn.sendall(sse_chunk(sid, f"t{i}"))
            time.sleep(self.gap)
        done = b"data: [DONE]\n\n"
        conn.sendall(f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n")
        return rest[need:]


class EngineRequest:
    """One request as the stand-in engine received it."""

    __slots__ = ("method", "target", "headers", "body", "authorized", "problem")

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                 authorized: bool, problem: str | None = None):
        self.method, self.target, self.headers, self.body = method, target, headers, body
        self.authorized, self.problem = authorized, problem

    @property
    def path(self) -> bytes:
        return self.target.split(b"?", 1)[0]


class CountingEngine(TcpPeer):
    """A well-behaved stand-in engine that counts what reaches it (for the hostile-request campaign).

    Answers every request (keep-alive, HTTP/1.1) with a small valid chat completion — or, when the body is a
    JSON object with "stream": true, with an SSE stream of two events and `data: [DONE]` — and a text body
    for GET /metrics. Records every request: method, target, headers, exact body bytes, and whether it
    carried `Authorization: Bearer <api_key>` (the proxy's --backend-api-key, which tells the proxy's
    requests apart from anything else). It never answers with an error: a request it cannot parse is
    recorded with `problem` set, answered 200 all the same and its connection closed, so an error the
    client sees is always one the proxy made.
    """

    MAX_HEAD = 1 << 20
    MAX_BODY = 64 << 20

    def __init__(self, api_key: str, completion: str):
        self.api_key = api_key
        self.completion = completion
        self.lock = threading.Lock()
        self.requests: list[EngineRequest] = []
        self.body_bytes = 0  # body bytes of every request received
        self.connections = 0
        super().__init__()
        self.sock.listen(256)  # the proxy opens a pooled connection per concurrent request

    def snapshot(self) -> tuple[list[EngineRequest], int]:
        with self.lock:
            return list(self.requests), self.body_bytes

    def _record(self, req: EngineRequest) -> int:
        with self.lock:
            self.requests.append(req)
            self.body_bytes += len(req.body)
            return len(self.requests)

    @staticmethod
    def _recv_until(conn: socket.socket, buf: bytearray, pred) -> bool:
        while not pred(buf):
            chunk = conn.recv(65536)
            if not chunk:
                return False
            buf += chunk
        return True

    def serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.connections += 1
        buf = bytearray()
        try:
            while True:
                if not self._recv_until(conn, buf, lambda b: b"\r\n\r\n" in b or len(b) > self.MAX_HEAD):
                    return
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    self._record(EngineRequest(b"", b"", [], bytes(buf[:4096]), False, "head over 1 MiB"))
                    return
                head, rest = bytes(buf[:end]), buf[end + 4:]
                lines = head.split(b"\r\n")
                parts = lines[0].split(b" ")
                headers = [tuple(x.strip() for x in line.split(b":", 1)) for line in lines[1:] if b":" in line]
                problem = None if len(parts) == 3 and parts[2] == b"HTTP/1.1" else "bad request line"
                hmap = {k.lower(): v for k, v in headers}
                if b"chunked" in hmap.get(b"transfer-encoding", b"").lower():
                    body, rest, ok = self._read_chunked(conn, rest)
                    if not ok:
                        problem = problem or "bad chunked body"
                else:
                    try:
                        need = int(hmap.get(b"content-length", b"0"))
                    except ValueError:
                        need, problem = 0, problem or "bad Content-Length"
                    if need > self.MAX_BODY or not self._recv_until(conn, rest, lambda b: len(b) >= need):
                        problem = problem or "body not received"
                        need = min(need, len(rest))
                    body, rest = bytes(rest[:need]), rest[need:]
                auths = [v for k, v in headers if k.lower() == b"authorization"]
                authorized = auths == [f"Bearer {self.api_key}".encode()]
                n = self._record(EngineRequest(parts[0] if parts else b"", parts[1] if len(parts) > 1 else b"",
                                               headers, body, authorized, problem))
                conn.sendall(self._answer(parts[1] if len(parts) > 1 else b"", body, n))
                if problem:
                    return
                buf = rest
        except OSError:
            pass
        finally:
            conn.close()

    def _read_chunked(self, conn: socket.socket, rest: bytearray) -> tuple[bytes, bytearray, bool]:
        body = bytearray()
        while True:
            if not self._recv_until(conn, rest, lambda b: b"\r\n" in b):
                return bytes(body), rest, False
            line, _, tail = bytes(rest).partition(b"\r\n")
            try:
                size = int(line.split(b";")[0], 16)
            except ValueError:
                return bytes(body), bytearray(tail), False
            rest = bytearray(tail)
            if size == 0:
                if not self._recv_until(conn, rest, lambda b: b.startswith(b"\r\n") or b"\r\n\r\n" in b):
                    return bytes(body), rest, False
                cut = 2 if rest.startswith(b"\r\n") else rest.find(b"\r\n\r\n") + 4
                return bytes(body), rest[cut:], True
            if not self._recv_until(conn, rest, lambda b: len(b) >= size + 2):
                return bytes(body), rest, False
            body += rest[:size]
            rest = rest[size + 2:]

    def _answer(self, target: bytes, body: bytes, n: int) -> bytes:
        if target.split(b"?", 1)[0] == b"/metrics":
            text = b"# stub engine metrics\nstub_requests_total %d\n" % n
            return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(text)) + text
        try:
            stream = json.loads(body).get("stream") is True
        except (ValueError, AttributeError, RecursionError):
            stream = False
        rid = f"chatcmpl-stub{n}"
        if stream:
            out = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            half = len(self.completion) // 2
            for piece in (self.completion[:half], self.completion[half:]):
                out += sse_chunk(rid, piece)
            done = b"data: [DONE]\n\n"
            return out + f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n"
        doc = {"id": rid, "object": "chat.completion", "created": 1, "model": "stub",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": self.completion},
                            "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        data = json.dumps(doc, separators=(",", ":")).encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)) + data
