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
