"""A seeded campaign of ~2,000 hostile raw requests against a proxy with a token, in front of a counting stub engine.

The generator is `random.Random(seed)`; the seed is printed (PI_CAMPAIGN_SEED overrides it, PI_CAMPAIGN_CASES the
number of cases, PI_CAMPAIGN_ONLY=3,17 runs only those case ids of the same seed). Every case opens its own
127.0.0.1 socket, writes raw bytes (one write, several writes, or a head that waits for `100 Continue`), and reads
what comes back (socket inactivity timeout 2.5 s, at most 8 s per case); 8 cases run at a time.

The proxy: one valid token, `--backend-api-key` (so the stub engine can tell the proxy's requests apart),
`--max-body-bytes 65536`, `--client-timeout 2`, and `--public version,attestation`: only the two endpoint groups
that never talk to the engine are public, so that *every* byte the engine receives must come from a request that
carried the valid token (by default /v1/models and /health are public and forwarded, and /metrics scrapes the
engine). No TEE (attestation answers its documented 503 `tee_unavailable`), no GPU evidence.

Every request target carries `?pic=<tag>` (the route ignores the query; the proxy forwards the target verbatim), so
each request the engine sees is attributed to the one request the generator meant it to be.

Asserted, for every case and as a whole:
  1. no 500 ever; no other 5xx except the documented `tee_unavailable` (with a healthy stub engine there is no
     reason for a `backend_*` error, so those fail too);
  2. every 4xx/5xx is the OpenAI envelope {"error":{"message","type","param","code"}} with a JSON content type;
     the statuses are the documented ones where the behaviour is documented (401 without a valid token, 404/405
     from the route table, 413 over the body limit, 400 for bad JSON, 200 for well-formed authenticated requests,
     valid JSON nested up to 100 levels included; RFC 9112 §6.1/§6.3: a Transfer-Encoding whose final coding is not
     chunked gets 400/501, never a forwarded body); no more answers than requests the client framed (request
     desync); no body in an answer to HEAD; no `100 Continue` for a refused request or an HTTP/1.0 request;
     a connection closed without any answer only for requests the HTTP layer cannot frame (UNFRAMEABLE below,
     counted and reported, and asserted to stay a minority);
  3. no byte of an unauthenticated request reaches the engine: each engine request is attributed by its tag to a
     request sent with the valid token and meant to be forwarded, with exactly that method, target and body; no
     smuggled request (bytes the client framed as a body) ever reaches it; the engine's request count and body
     bytes stay within what authenticated requests sent; the proxy's requests carry the backend key and never
     the client's token;
  4. the proxy's RSS (VmRSS, sampled every 50 ms) stays under RSS_BOUND above its level after warm-up;
  5. the proxy is alive at the end and serves a normal chat, streamed and not, whose signatures verify.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import select
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import verify_helpers as vh
from conftest import _no_system_dstack, start_proxy
from failing_peers import CountingEngine

SEED = int(os.environ.get("PI_CAMPAIGN_SEED", "20240611"))
CASES = int(os.environ.get("PI_CAMPAIGN_CASES", "2000"))
ONLY = {int(x) for x in os.environ.get("PI_CAMPAIGN_ONLY", "").split(",") if x.strip()}
MAX_BODY = 64 * 1024
WORKERS = 8
SOCKET_TIMEOUT = 2.5  # inactivity; the proxy's own --client-timeout (2 s) ends a stalled request first
CASE_CAP = 8.0
CAMPAIGN_BUDGET = 150.0  # seconds for the whole campaign (the test as a whole stays under ~3 minutes)
# Justification: a connection holds at most the head (64 KiB limit), the body (64 KiB limit) and bytes pipelined
# while the engine works (limit + 64 KiB): ~0.3 MiB; 8 client connections at a time plus lingering ones is a few
# MiB; the ASan quarantine is capped at 16 MiB for this proxy (ASAN_OPTIONS below) and ASan's shadow adds 1/8.
# 200 MiB is ~10x that (an ASan build grows ~30 MiB over the campaign), while a leak of ~100 KiB per request over
# 2,000 requests would cross it.
RSS_BOUND = 200 * 1024 * 1024
ALLOWED_5XX_CODES = {"tee_unavailable"}  # attestation on a proxy without a TEE: documented
ENGINE_5XX_CODES = {"backend_error", "backend_timeout", "backend_unavailable"}  # documented, impossible here
COMPLETION = "stub engine completion text for the hostile campaign"
# The requests the HTTP layer cannot frame: incomplete on the wire (a head or body that never ends, a body that never
# comes after `100 Continue`, a chunk size that promises more than is sent, LF-only line ends a strict parser is
# still waiting to see CRLF in, a TLS ClientHello). Only these may end in a connection closed without any answer
# (the proxy's --client-timeout, or the client's half-close); each case of them is also flagged in the generator.
UNFRAMEABLE = {"bad_chunking/missing-crlf-after-data", "bad_chunking/bare-lf", "bad_chunking/no-terminator",
               "bad_chunking/size-mismatch", "expect/never", "incomplete/head-no-end", "incomplete/cl-short",
               "incomplete/chunked-partial", "http09/get-line", "http09/empty-lines", "http09/lf", "http09/tls-hello",
               "versions/lf-only", "pipelining/partial"}
CHAT = b"/v1/chat/completions"


# ---------------------------------------------------------------------------------------------------------------
# What the generator means each request to be


@dataclass(frozen=True)
class Route:
    method: bytes
    path: bytes
    kind: str  # signed | forward | metrics | version | attestation | signature
    prefix: bool = False


ROUTES = [
    Route(b"POST", b"/v1/chat/completions", "signed"),
    Route(b"POST", b"/v1/completions", "signed"),
    Route(b"POST", b"/v1/embeddings", "signed"),
    Route(b"POST", b"/v1/responses", "signed"),
    Route(b"POST", b"/tokenize", "forward"),
    Route(b"POST", b"/detokenize", "forward"),
    Route(b"GET", b"/v1/models", "forward"),
    Route(b"GET", b"/health", "forward"),
    Route(b"GET", b"/metrics", "metrics"),
    Route(b"GET", b"/version", "version"),
    Route(b"GET", b"/v1/signature/", "signature", prefix=True),
    Route(b"GET", b"/v1/attestation/report", "attestation"),
    Route(b"GET", b"/v1/attestation", "attestation"),
]
PUBLIC_KINDS = {"version", "attestation"}  # --public version,attestation
ENGINE_KINDS = {"signed", "forward"}  # forwarded with the client's target


@dataclass
class Req:
    """One request of a case as the client framed it."""
    tag: str | None
    method: bytes
    target: bytes
    body: bytes  # the body as framed (de-chunked)
    auth: str  # valid | invalid | ambiguous (two Authorization headers, one valid)
    reach: bool  # may reach the engine (then with exactly method, target and body)
    expect: frozenset[int] | None  # the statuses its answer may have (None: any, within the global rules)
    ok_allowed: bool  # a 2xx is acceptable
    continue_allowed: bool  # a `100 Continue` before its answer is acceptable
    kind: str | None = None  # its route's kind, None: no route
    code: str | None = None  # the error code its answer must have
    stream: bool = False  # a streamed chat: a 200 must be a complete SSE stream
    unframeable: bool = False  # incomplete on the wire: no answer is acceptable
    no_body: bool = False  # HEAD: its answer has no body
    http10: bool = False  # an HTTP/1.0 request: a `100 Continue` is never acceptable (RFC 9110 §10.1.1)


@dataclass
class Case:
    id: int
    cls: str
    variant: str
    writes: list  # bytes, or WAIT: hold the next write until the proxy answered (interim or final)
    reqs: list[Req]
    smuggled: list[str] = field(default_factory=list)  # tags of requests hidden inside a body: never forwarded
    half_close: bool = False  # shut the write side after the last write
    linger: float = 0.0  # keep reading this long after the expected answers, to catch extra ones

    @property
    def raw(self) -> bytes:
        return b"".join(w for w in self.writes if isinstance(w, bytes))

    @property
    def unframeable(self) -> bool:
        return any(r.unframeable for r in self.reqs)


WAIT = object()


def variant_key(case: Case) -> str:
    if case.cls == "pipelining":
        return "pipelining/" + case.variant.rsplit("+", 1)[-1]
    return f"{case.cls}/{case.variant.split(' ')[0]}"


def match(path: bytes, method: bytes) -> tuple[Route | None, int | None]:
    """The route table as the proxy documents it: (route, None), or (None, 404/405)."""
    hits = [r for r in ROUTES if (path.startswith(r.path) if r.prefix else path == r.path)]
    if not hits:
        return None, 404
    for r in hits:
        if r.method == method:
            return r, None
    return None, 405


def expectation(method: bytes, target: bytes, auth: str, body_kind: str) -> dict:
    """The documented answer to a well-framed request: statuses, whether the engine may see it, …"""
    route, err = match(target.split(b"?", 1)[0], method)
    if route is None:
        return dict(expect=frozenset({err}), reach=False, ok_allowed=False, continue_allowed=False,
                    code="unknown_url" if err == 404 else "method_not_allowed")
    public = route.kind in PUBLIC_KINDS
    if auth == "invalid" and not public:
        return dict(expect=frozenset({401}), reach=False, ok_allowed=False, continue_allowed=False,
                    code="invalid_api_key", kind=route.kind)
    expect = {"signed": {"object": {200}, "invalid": {400}, "maybe": {200, 400}}[body_kind],
              "forward": {200}, "metrics": {200}, "version": {200},
              "attestation": {400, 503}, "signature": {400, 404}}[route.kind]
    reach = route.kind in ENGINE_KINDS and auth != "invalid" and not (route.kind == "signed" and body_kind == "invalid")
    return dict(expect=None if auth == "ambiguous" else frozenset(expect), reach=reach, ok_allowed=True,
                continue_allowed=True, kind=route.kind,
                code="invalid_json" if route.kind == "signed" and body_kind == "invalid" and auth == "valid" else None)


def widen(req: Req, *statuses: int) -> None:
    """Also accept these statuses (and then any error code)."""
    if req.expect is not None:
        req.expect = req.expect | set(statuses)
    req.code = None


def chunked(body: bytes, rng: random.Random, ext: bytes = b"", upper: bool = False, zeros: int = 0) -> bytes:
    out, i = [], 0
    while i < len(body):
        n = rng.randint(1, max(1, min(len(body) - i, rng.choice([7, 100, 4096, 20000]))))
        size = (b"%X" if upper else b"%x") % n
        out.append(b"0" * zeros + size + ext + b"\r\n" + body[i:i + n] + b"\r\n")
        i += n
    return b"".join(out) + b"0\r\n\r\n"


# ---------------------------------------------------------------------------------------------------------------
# The generator


AUTH_INVALID = ["none", "none", "none", "wrong", "wrong", "wrong", "empty", "blank", "scheme-only", "basic",
                "truncated", "extended", "swapcase", "double-space", "tab", "no-scheme", "x-api-key", "proxy-auth",
                "query"]
AUTH_VALID = ["valid", "valid", "valid", "valid-lower", "valid-upper"]
AUTH_AMBIGUOUS = ["dup-wrong-first", "dup-valid-first"]


class Gen:
    def __init__(self, seed: int, token: str, wrong: list[str], markers: list[str]):
        self.rng = random.Random(seed)
        self.token, self.wrong, self.markers = token.encode(), [w.encode() for w in wrong], markers
        self.case = 0
        self.serial = 0

    # building blocks

    def tag(self) -> str:
        self.serial += 1
        return f"c{self.case}n{self.serial}"

    def content(self, unauth: bool) -> str:
        return f"{self.rng.choice(self.markers)} {'piunauth' if unauth else 'piauth'} {self.rng.randrange(10 ** 9)}"

    def chat(self, unauth: bool = False, stream: bool = False, pad: int = 0) -> bytes:
        doc = {"model": "stub", "messages": [{"role": "user", "content": self.content(unauth)}], "max_tokens": 4}
        if stream:
            doc["stream"] = True
        return json.dumps(doc).encode() + b" " * pad

    def auth_kind(self, p_valid: float = 0.5) -> str:
        r = self.rng.random()
        if r < p_valid:
            return self.rng.choice(AUTH_VALID)
        if r < p_valid + 0.05:
            return self.rng.choice(AUTH_AMBIGUOUS)
        return self.rng.choice(AUTH_INVALID)

    def auth(self, kind: str) -> tuple[list[bytes], str]:
        t, w = self.token, self.rng.choice(self.wrong)
        return {
            "valid": ([b"Authorization: Bearer " + t], "valid"),
            "valid-lower": ([b"authorization: bearer " + t], "valid"),
            "valid-upper": ([b"AUTHORIZATION: BEARER " + t], "valid"),
            "none": ([], "invalid"),
            "query": ([], "invalid"),
            "wrong": ([b"Authorization: Bearer " + w], "invalid"),
            "empty": ([b"Authorization: Bearer "], "invalid"),
            "blank": ([b"Authorization:"], "invalid"),
            "scheme-only": ([b"Authorization: Bearer"], "invalid"),
            "basic": ([b"Authorization: Basic " + base64.b64encode(b"user:" + t)], "invalid"),
            "truncated": ([b"Authorization: Bearer " + t[:-1]], "invalid"),
            "extended": ([b"Authorization: Bearer " + t + b"x"], "invalid"),
            "swapcase": ([b"Authorization: Bearer " + t.swapcase()], "invalid"),
            "double-space": ([b"Authorization: Bearer  " + t], "invalid"),
            "tab": ([b"Authorization: Bearer\t" + t], "invalid"),
            "no-scheme": ([b"Authorization: " + t], "invalid"),
            "x-api-key": ([b"X-Api-Key: " + t], "invalid"),
            "proxy-auth": ([b"Proxy-Authorization: Bearer " + t], "invalid"),
            "bad-utf8": ([b"Authorization: Bearer " + t + b"\xff\xfe"], "invalid"),
            "nul": ([b"Authorization: Bearer " + t + b"\x00"], "invalid"),
            "huge": ([b"Authorization: Bearer " + b"A" * 70000], "invalid"),
            "dup-wrong-first": ([b"Authorization: Bearer " + w, b"Authorization: Bearer " + t], "ambiguous"),
            "dup-valid-first": ([b"Authorization: Bearer " + t, b"Authorization: Bearer " + w], "ambiguous"),
        }[kind]

    def make(self, method: bytes = b"POST", path: bytes = CHAT, body: bytes | None = None, auth: str = "valid",
             body_kind: str = "object", framing: str | None = None, version: bytes = b"HTTP/1.1", host: bool = True,
             extra: tuple | list = (), query: bytes = b"", close: bool | None = None, expect100: bool = False,
             stream: bool = False, wire_body: bytes | None = None, headers_override: list[bytes] | None = None,
             **override) -> tuple[bytes, Req]:
        """One request: its bytes and what it means. `override` replaces fields of the computed Req."""
        lines, state = self.auth(auth)
        tag = self.tag()
        q = [b"pic=" + tag.encode()]
        if query:
            q.append(query)
        if auth == "query":
            q.append(b"api_key=" + self.token)
        target = path + b"?" + b"&".join(q)
        if body is None:
            body = self.chat(unauth=state == "invalid", stream=stream) if method == b"POST" else b""
        framing = framing or ("cl" if method == b"POST" or body else "none")
        headers = [b"Host: 127.0.0.1"] if host else []
        headers += lines
        if body and self.rng.random() < 0.9:
            headers.append(b"Content-Type: application/json")
        if framing == "cl":
            headers.append(b"Content-Length: %d" % len(body))
        elif framing == "chunked":
            headers.append(b"Transfer-Encoding: chunked")
        if close is None:
            close = self.rng.random() < 0.3
        if close:
            headers.append(b"Connection: close")
        if expect100:
            headers.append(b"Expect: 100-continue")
        headers += list(extra)
        if self.rng.random() < 0.5:
            self.rng.shuffle(headers)
        if headers_override is not None:
            headers = headers_override
        if wire_body is None:
            wire_body = chunked(body, self.rng) if framing == "chunked" else body
        raw = method + b" " + target + b" " + version + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"
        fields = expectation(method, target, state, body_kind)
        fields.update(override)
        req = Req(tag=tag, method=method, target=target, body=body, auth=state,
                  stream=stream and method == b"POST", no_body=method == b"HEAD", http10=version == b"HTTP/1.0",
                  **fields)
        if req.http10:
            req.continue_allowed = False
        if state == "ambiguous":  # the proxy reads the first Authorization header; either answer is fine
            widen(req, 401)
        return raw + wire_body, req

    def case_of(self, cls: str, variant: str, raw: bytes | list, reqs: list[Req], **kw) -> Case:
        writes = raw if isinstance(raw, list) else [raw]
        return Case(self.case, cls, variant, writes, reqs, **kw)

    def single(self, cls: str, variant: str, **kw) -> Case:
        raw, req = self.make(**kw)
        return self.case_of(cls, variant, raw, [req])

    # the classes

    def c_control(self) -> Case:
        """Well-formed authenticated requests in between: the proxy keeps serving."""
        r = self.rng.choice([r for r in ROUTES if r.kind in ENGINE_KINDS | {"metrics", "version"}])
        stream = r.path == CHAT and self.rng.random() < 0.5
        return self.single("control", f"{r.path.decode()}{' stream' if stream else ''}", method=r.method,
                           path=r.path, stream=stream)

    def c_auth(self) -> Case:
        """Every endpoint class without a token, with a wrong one, a malformed one, or the valid one."""
        r = self.rng.choice(ROUTES)
        path = r.path + (b"chatcmpl-" + self.rng.randbytes(6).hex().encode() if r.prefix else b"")
        kind = self.auth_kind(0.25)
        body = None
        if r.method == b"POST":
            _, state = self.auth(kind)
            body = self.chat(unauth=state == "invalid", pad=self.rng.choice([0, 0, 1000, 16000, 60000]))
        elif self.rng.random() < 0.2:  # a GET with a body (forwarded as it is, when authenticated)
            _, state = self.auth(kind)
            body = self.content(state == "invalid").encode() * self.rng.randint(1, 500)
        expect100 = body is not None and self.rng.random() < 0.2
        raw, req = self.make(method=r.method, path=path, body=body, auth=kind, expect100=expect100)
        return self.case_of("auth", f"{r.path.decode()} {kind}{' expect' if expect100 else ''}", raw, [req])

    def c_bad_json(self) -> Case:
        state_kind = self.auth_kind(0.75)
        _, state = self.auth(state_kind)
        c = self.content(state == "invalid").encode()
        base = self.chat(unauth=state == "invalid")
        variants = {
            "truncated": (base[:self.rng.randrange(1, len(base) - 1)], "invalid"),
            "trailing-garbage": (base + self.rng.choice([b"x", b" }", b"]", b",", b"{}", b"\x01"]), "invalid"),
            "nan": (b'{"messages":[{"role":"user","content":"%s"}],"temperature":NaN}' % c, "invalid"),
            "infinity": (b'{"messages":[{"role":"user","content":"%s"}],"temperature":-Infinity}' % c, "invalid"),
            "single-quotes": (b"{'messages':[{'role':'user','content':'%s'}]}" % c, "invalid"),
            "comment": (b'{"messages":[{"role":"user","content":"%s"}] /* c */}' % c, "invalid"),
            "trailing-comma": (b'{"messages":[{"role":"user","content":"%s"},]}' % c, "invalid"),
            "empty": (b"", "invalid"),
            "whitespace": (b" \r\n\t ", "invalid"),
            "two-objects": (base + base, "invalid"),
            "unterminated-string": (b'{"messages":[{"role":"user","content":"%s' % c, "invalid"),
            "bad-escape": (b'{"messages":[{"role":"user","content":"%s\\x41"}]}' % c, "invalid"),
            "control-char": (b'{"messages":[{"role":"user","content":"%s\x01"}]}' % c, "invalid"),
            "leading-zero": (b'{"messages":[{"role":"user","content":"%s"}],"max_tokens":01}' % c, "invalid"),
            "hex-number": (b'{"messages":[{"role":"user","content":"%s"}],"max_tokens":0x10}' % c, "invalid"),
            "unquoted-key": (b'{messages:[{"role":"user","content":"%s"}]}' % c, "invalid"),
            "bom": (b"\xef\xbb\xbf" + base, "maybe"),
            "duplicate-keys": (b'{"messages":[],"messages":[{"role":"user","content":"%s"}]}' % c, "maybe"),
            "lone-surrogate": (b'{"messages":[{"role":"user","content":"%s\\ud800"}]}' % c, "maybe"),
            "huge-exponent": (b'{"messages":[{"role":"user","content":"%s"}],"max_tokens":1e999999}' % c, "maybe"),
            "big-integer": (b'{"messages":[{"role":"user","content":"%s"}],"max_tokens":%s}' % (c, b"9" * 400),
                            "maybe"),
        }
        name = self.rng.choice(sorted(variants))
        body, body_kind = variants[name]
        if self.rng.random() < 0.15:  # an unvalidated forwarded route: the bytes pass through untouched
            return self.single("bad_json", f"{name} /tokenize", path=b"/tokenize", body=body, auth=state_kind)
        path = self.rng.choice([r.path for r in ROUTES if r.kind == "signed"])
        return self.single("bad_json", name, path=path, body=body, auth=state_kind, body_kind=body_kind)

    def c_wrong_types(self) -> Case:
        base = self.chat()
        name, body = self.rng.choice([("array", b"[]"), ("array-of-object", b"[" + base + b"]"), ("number", b"42"),
                                      ("float", b"-0.5e3"), ("string", b'"messages"'), ("true", b"true"),
                                      ("null", b"null"), ("numbers", b"[1,2,3]")])
        path = self.rng.choice([r.path for r in ROUTES if r.kind == "signed"])
        return self.single("wrong_types", name, path=path, body=body, auth=self.auth_kind(0.8), body_kind="invalid")

    def c_deep_json(self) -> Case:
        n = self.rng.choice([1000, 10000, 30000])
        c = self.content(False).encode()
        variants = {
            "deep-array": (b"[" * n + b"]" * n, "invalid"),
            "deep-object": (b'{"a":' * min(n, 10000) + b"1" + b"}" * min(n, 10000), "maybe"),
            "deep-in-messages": (b'{"messages":[{"role":"user","content":' + b"[" * n + b"]" * n + b"}]}", "maybe"),
            "deep-in-content": (b'{"messages":[{"role":"user","content":"%s"}],"x":' % c +
                                b'{"a":' * min(n, 9000) + b"0" + b"}" * min(n, 9000) + b"}", "maybe"),
            "unbalanced-array": (b"[" * n, "invalid"),
            "unbalanced-object": (b'{"a":' * min(n, 12000), "invalid"),
            "mixed": (b'[{"a":' * min(n, 8000) + b"0" + b"}]" * min(n, 8000), "invalid"),
        }
        if self.rng.random() < 0.25:
            # Valid JSON nested deeper than a parser's default (Boost.JSON: 32) but far shallower than what the
            # engines parse (Python's json: ~1000): a real request (tools' JSON schemas nest), to be forwarded.
            d = self.rng.randint(33, 100)
            body = (b'{"messages":[{"role":"user","content":"%s"}],"x":' % c + b"[" * (d - 1) + b"]" * (d - 1) + b"}")
            return self.single("deep_json", "moderate-depth", body=body, auth="valid")
        name = self.rng.choice(sorted(variants))
        body, body_kind = variants[name]
        path = self.rng.choice([r.path for r in ROUTES if r.kind == "signed"])
        return self.single("deep_json", f"{name} {n}", path=path, body=body, auth=self.auth_kind(0.8),
                           body_kind=body_kind)

    def c_bad_utf8(self) -> Case:
        bad = self.rng.choice([b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                               b"\xe2\x82", b"\x80", b"\xf4\x90\x80\x80"])
        kind = self.auth_kind(0.8)
        _, state = self.auth(kind)
        c = self.content(state == "invalid").encode()
        name = self.rng.choice(["body-string", "body-key", "body-raw", "header-value", "user-agent", "content-type",
                                "header-name", "target", "token"])
        if name == "body-string":
            return self.single("bad_utf8", name, body=b'{"messages":[{"role":"user","content":"%s%s"}]}' % (c, bad),
                               auth=kind, body_kind="maybe")
        if name == "body-key":
            return self.single("bad_utf8", name, auth=kind, body_kind="maybe",
                               body=b'{"messages":[{"role":"user","content":"%s"}],"%s":1}' % (c, bad))
        if name == "body-raw":
            return self.single("bad_utf8", name, auth=kind, body_kind="invalid",
                               body=b'{"messages":[{"role":"user","content":"%s"}],"x":%s}' % (c, bad))
        if name in ("header-value", "user-agent", "content-type"):
            h = {"header-value": b"X-Note: ", "user-agent": b"User-Agent: ",
                 "content-type": b"Content-Type: application/json; charset="}[name]
            raw, req = self.make(auth=kind, extra=[h + bad])
            widen(req, 400)
            return self.case_of("bad_utf8", name, raw, [req])
        if name == "header-name":
            raw, req = self.make(auth=kind, extra=[b"X-" + bad + b": 1"], expect=frozenset({400}), reach=False,
                                 ok_allowed=False, continue_allowed=False, code=None)
            return self.case_of("bad_utf8", name, raw, [req])
        if name == "target":
            return self.single("bad_utf8", name, path=CHAT + bad, auth=kind, expect=frozenset({400, 404}),
                               reach=False, ok_allowed=False, continue_allowed=False, code=None)
        return self.single("bad_utf8", name, auth="bad-utf8", expect=frozenset({400, 401}), code=None)

    PATH_TRICKS = [
        b"/v1/../v1/chat/completions", b"//v1/chat/completions", b"/v1/chat/completions/", b"/v1/./chat/completions",
        b"/v1/%2e%2e/v1/chat/completions", b"/%2e%2e/v1/chat/completions", b"/v1/chat%2Fcompletions",
        b"/v1/chat/completion%73", b"/V1/chat/completions", b"/v1/chat/completions%00", b"/v1/chat/completions;.json",
        b"/v1/chat/completions#frag", b"/v1//chat/completions", b"\\v1\\chat\\completions", b"/v1/signature/%zz",
        b"/v1/signature/%", b"/v1/signature/%4", b"/v1/signature/x%2", b"/v1/signature/%00",
        b"/v1/signature/..%2f..%2fetc%2fpasswd", b"/v1/signature/", b"/v1/signature", b"/%zz", b"%", b"*", b"",
        b"/v1/chat/completions?%zz", b"/v1/attestation/report?nonce=%zz", b"/v1/attestation/report?nonce=%",
        b"/v1/attestation?signing_algo=%", b"/v1/signature/abc?signing_algo=%zz",
        b"http://127.0.0.1/v1/chat/completions", b"http://evil.example/v1/models", b"/v1/models/../../health",
        b"/health/", b"/health%20", b"/%68ealth", b"/v1/models%3f", b"/v1/chat/completions?" + b"&" * 2000,
        b"/v1/" + b"../" * 5000 + b"chat/completions",
    ]

    def c_path_tricks(self) -> Case:
        if self.rng.random() < 0.2:
            n = self.rng.choice([4096, 32768, 60000])
            path = self.rng.choice([b"/" + b"a" * n, b"/v1/signature/" + b"x" * n, CHAT + b"/" + b"%2e" * (n // 3)])
            name = f"long-{path[:14].decode()}-{n}"
        else:
            path = self.rng.choice(self.PATH_TRICKS)
            name = repr(path[:48])[2:-1]
        route_like = b"signature" in path or b"attestation" in path or b"models" in path or b"health" in path
        method = b"GET" if route_like or self.rng.random() < 0.2 else b"POST"
        kind = self.auth_kind(0.7)
        raw, req = self.make(method=method, path=path, auth=kind)
        widen(req, 400)
        return self.case_of("path_tricks", name, raw, [req])

    def c_overlong(self) -> Case:
        name = self.rng.choice(["url", "header", "many-headers", "many-headers-under", "auth-huge", "cookie-under",
                                "line-no-end"])
        refused = dict(expect=frozenset({400, 414, 431}), reach=False, ok_allowed=False, continue_allowed=False,
                       code=None)
        if name == "url":
            return self.single("overlong", name, query=b"pad=" + b"a" * self.rng.randint(65536, 90000),
                               auth=self.auth_kind(0.7), **refused)
        if name == "header":
            return self.single("overlong", name, extra=[b"X-Big: " + b"b" * self.rng.randint(65536, 90000)],
                               auth=self.auth_kind(0.7), **refused)
        if name == "many-headers":
            return self.single("overlong", name, extra=[b"X-H%d: %s" % (i, b"v" * 20) for i in range(3200)],
                               auth=self.auth_kind(0.7), **refused)
        if name == "auth-huge":
            return self.single("overlong", name, auth="huge", **{**refused, "expect": frozenset({400, 401, 431})})
        if name == "line-no-end":
            raw = b"GET /" + b"a" * self.rng.randint(66000, 90000)
            req = Req(None, b"GET", b"", b"", "invalid", False, frozenset({400, 414, 431}), False, False)
            return self.case_of("overlong", name, raw, [req], half_close=self.rng.random() < 0.5)
        extra = ([b"X-H%d: %s" % (i, b"v" * 12) for i in range(600)] if name == "many-headers-under"
                 else [b"Cookie: " + b"c=" * 25000])
        raw, req = self.make(auth=self.auth_kind(0.7), extra=extra)
        widen(req, 400, 431)
        return self.case_of("overlong", name, raw, [req])

    def smuggle(self) -> tuple[bytes, str]:
        """A complete, authenticated request to hide inside another request's body."""
        tag = f"s{self.case}n{self.serial}"
        self.serial += 1
        body = json.dumps({"messages": [{"role": "user", "content": "pismuggled " + self.content(False)}]}).encode()
        head = (b"POST " + CHAT + b"?pic=" + tag.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                self.token + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        return head + body, tag

    def c_cl_te(self) -> Case:
        kind = self.auth_kind(0.7)
        lines, state = self.auth(kind)
        payload = self.chat(unauth=state == "invalid")
        inner, stag = self.smuggle()
        enc = chunked(payload, self.rng)
        base = [b"Host: 127.0.0.1", b"Content-Type: application/json"] + lines
        name = self.rng.choice(["cl-and-te", "te-and-cl", "te-gzip", "te-gzip-inner-only", "te-gzip-cl",
                                "te-identity", "te-chunked-gzip", "te-xchunked", "te-gzip-chunked",
                                "te-space-before-colon", "te-http10", "te-obs-fold", "te-dup", "te-vtab",
                                "te-comma-empty", "cl-list-same", "cl-dup-same",
                                "cl-dup-differ", "cl-plus", "cl-negative", "cl-hex", "cl-huge", "cl-empty",
                                "cl-inner-space", "cl-float"])
        version = b"HTTP/1.1"
        smuggled = [stag]
        # (headers, wire body, expected statuses, may reach the engine (with the payload as body))
        refused = {400, 501} | ({401} if state == "invalid" else set())
        maybe = {200, 400} if state != "invalid" else {400, 401}
        cl_all = b"Content-Length: %d" % (len(enc) + len(inner) if self.rng.random() < 0.5 else len(enc))
        if name in ("cl-and-te", "te-and-cl"):
            hs = [cl_all, b"Transfer-Encoding: chunked"]
            spec = (hs if name == "cl-and-te" else hs[::-1], enc + inner, maybe, True)
        elif name == "te-gzip":
            spec = ([b"Transfer-Encoding: gzip"], payload + inner, refused, False)
        elif name == "te-gzip-inner-only":  # the "body" is the hidden request itself
            spec = ([b"Transfer-Encoding: gzip"], inner, refused, False)
        elif name == "te-gzip-cl":
            spec = ([b"Transfer-Encoding: gzip", b"Content-Length: %d" % len(payload)], payload + inner, refused, False)
        elif name == "te-identity":
            spec = ([b"Transfer-Encoding: identity", b"Content-Length: %d" % len(payload)], payload + inner, refused,
                    False)
        elif name == "te-chunked-gzip":
            spec = ([b"Transfer-Encoding: chunked, gzip"], enc + inner, refused, False)
        elif name == "te-xchunked":
            spec = ([b"Transfer-Encoding: xchunked"], enc + inner, refused, False)
        elif name == "te-vtab":
            spec = ([b"Transfer-Encoding:\x0bchunked"], enc + inner, refused, False)
        elif name == "te-comma-empty":
            spec = ([b"Transfer-Encoding: ,"], payload + inner, refused, False)
        elif name == "te-space-before-colon":
            spec = ([b"Transfer-Encoding : chunked", b"Content-Length: %d" % len(payload)], payload + inner,
                    refused, False)
        elif name == "te-http10":
            version = b"HTTP/1.0"
            spec = ([b"Transfer-Encoding: chunked"], enc + inner, maybe, True)
        else:
            smuggled = []  # the framing is arguably valid: what follows would be a genuinely pipelined request
            spec = {
                "te-gzip-chunked": ([b"Transfer-Encoding: gzip, chunked"], enc, maybe | {415, 501}, True),
                "te-obs-fold": ([b"Transfer-Encoding:\r\n chunked"], enc, maybe, True),
                "te-dup": ([b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"], enc, maybe, True),
                "cl-list-same": ([b"Content-Length: %d, %d" % (len(payload), len(payload))], payload, maybe, True),
                "cl-dup-same": ([b"Content-Length: %d" % len(payload)] * 2, payload, maybe, True),
                "cl-plus": ([b"Content-Length: +%d" % len(payload)], payload, maybe, True),
                "cl-dup-differ": ([b"Content-Length: %d" % len(payload), b"Content-Length: %d" % (len(payload) + 1)],
                                  payload + b" ", refused, False),
                "cl-negative": ([b"Content-Length: -1"], payload, refused, False),
                "cl-hex": ([b"Content-Length: 0x%x" % len(payload)], payload, refused, False),
                "cl-huge": ([b"Content-Length: " + b"9" * 30], payload, refused | {413}, False),
                "cl-empty": ([b"Content-Length:"], payload, refused, False),
                "cl-inner-space": ([b"Content-Length: 1 %d" % len(payload)], payload, refused, False),
                "cl-float": ([b"Content-Length: %d.0" % len(payload)], payload, refused, False),
            }[name]
        hs, wire, exp, reach = spec
        headers = base + hs
        raw, req = self.make(body=payload, auth=kind, version=version, headers_override=headers, wire_body=wire,
                             expect=frozenset(exp), reach=reach and state != "invalid", code=None,
                             ok_allowed=state != "invalid")
        # make() added a tag to the target; the header list was given whole, so the auth state stays `state`.
        return self.case_of("cl_te", name, raw, [req], smuggled=smuggled, linger=0.3)

    def c_bad_chunking(self) -> Case:
        kind = self.auth_kind(0.8)
        _, state = self.auth(kind)
        payload = self.chat(unauth=state == "invalid")
        p = payload
        h = len(p)
        bad = {400} | ({401} if state == "invalid" else set())
        good = {200} if state != "invalid" else {401}
        either = {200, 400} if state != "invalid" else {400, 401}
        big = b"x" * 8192
        variants = {
            # name: (wire body, expected, reaches the engine, unframeable)
            "bad-hex": (b"zz\r\n" + p + b"\r\n0\r\n\r\n", bad, False, False),
            "negative": (b"-5\r\n" + p + b"\r\n0\r\n\r\n", bad, False, False),
            "0x-prefix": (b"0x%x\r\n" % h + p + b"\r\n0\r\n\r\n", bad, False, False),
            "plus": (b"+%x\r\n" % h + p + b"\r\n0\r\n\r\n", bad, False, False),
            "overflow": (b"f" * 24 + b"\r\n" + p + b"\r\n0\r\n\r\n", bad | {413}, False, False),
            "size-over-limit": (b"%x\r\n" % (MAX_BODY * 4) + b"y" * 70000, bad | {413}, False, False),
            "sum-over-limit": (b"".join(b"2000\r\n" + big + b"\r\n" for _ in range(9)) + b"0\r\n\r\n", bad | {413},
                               False, False),
            "missing-crlf-after-data": (b"%x\r\n" % h + p + b"0\r\n\r\n", bad, False, True),
            "bare-lf": (b"%x\n" % h + p + b"\n0\n\n", either, True, True),
            "ext": (chunked(p, self.rng, ext=b";name=value"), good, True, False),
            "ext-quoted": (chunked(p, self.rng, ext=b';a="b c"'), either, True, False),
            "ext-long": (chunked(p, self.rng, ext=b";" + b"x" * 10000), either | {413}, True, False),
            "ext-nul": (b"%x;\x00\r\n" % h + p + b"\r\n0\r\n\r\n", either, True, False),
            "bws": (b"%x ;x\r\n" % h + p + b"\r\n0\r\n\r\n", either, True, False),
            "trailer": (b"%x\r\n" % h + p + b"\r\n0\r\nX-Trailer: v\r\n\r\n", good, True, False),
            "trailer-cl": (b"%x\r\n" % h + p + b"\r\n0\r\nContent-Length: 5\r\n\r\n", either, True, False),
            "trailer-bad": (b"%x\r\n" % h + p + b"\r\n0\r\nbad trailer line\r\n\r\n", either, True, False),
            "leading-zeros": (chunked(p, self.rng, zeros=3), good, True, False),
            "uppercase-hex": (chunked(p, self.rng, upper=True), good, True, False),
            "size-line-long": (b"0" * 5000 + b"%x\r\n" % h + p + b"\r\n0\r\n\r\n", either, True, False),
            "empty-size": (b"\r\n" + p + b"\r\n0\r\n\r\n", bad, False, False),
            "no-terminator": (chunked(p, self.rng)[:-5], bad, False, True),
            "size-mismatch": (b"%x\r\n" % (h + 7) + p + b"\r\n0\r\n\r\n", bad, False, True),
        }
        name = self.rng.choice(sorted(variants))
        wire, exp, reach, unframeable = variants[name]
        if state == "invalid":
            unframeable = False  # refused from the head, before any body byte is read
        raw, req = self.make(body=payload, auth=kind, framing="chunked", wire_body=wire, expect=frozenset(exp),
                             reach=reach and state != "invalid", unframeable=unframeable, code=None)
        return self.case_of("bad_chunking", name, raw, [req], half_close=unframeable and self.rng.random() < 0.5)

    def c_over_limit(self) -> Case:
        kind = self.auth_kind(0.7)
        _, state = self.auth(kind)
        too_large = frozenset({413} | ({401} if state == "invalid" else set()))
        name = self.rng.choice(["cl-over-sent", "cl-over-sent", "cl-huge-unsent", "cl-exact", "cl-over-expect",
                                "cl-over-by-one"])
        refused = dict(expect=too_large, reach=False, ok_allowed=False, continue_allowed=False, code=None)
        if name == "cl-exact":
            body = self.chat(unauth=state == "invalid")
            body += b" " * (MAX_BODY - len(body))
            return self.single("over_limit", name, body=body, auth=kind)
        if name in ("cl-over-sent", "cl-over-by-one"):
            body = self.chat(unauth=state == "invalid")
            n = MAX_BODY + (1 if name == "cl-over-by-one" else self.rng.randint(2, 200000))
            return self.single("over_limit", name, body=body + b" " * (n - len(body)), auth=kind, **refused)
        if name == "cl-huge-unsent":
            raw, req = self.make(auth=kind, body=b"", extra=[b"Content-Length: %d" % 10 ** 12], framing="none",
                                 **refused)
            return self.case_of("over_limit", name, raw, [req])
        body = self.chat(unauth=state == "invalid")
        body += b" " * (MAX_BODY + 10 - len(body))
        raw, req = self.make(body=body, auth=kind, expect100=True, **refused)
        head = raw[:len(raw) - len(body)]
        return self.case_of("over_limit", name, [head, WAIT, body], [req])

    def pipeline_item(self) -> tuple[bytes, Req, str]:
        name = self.rng.choice(["valid-chat", "valid-stream", "valid-get", "unauth-get", "unauth-post", "bad-json",
                                "not-found", "garbage", "version", "wrong-method", "unauth-post-empty"])
        if name == "garbage":
            return (b"GARBAGE\r\n\r\n", Req(None, b"", b"", b"", "invalid", False, frozenset({400}), False, False),
                    name)
        kw = {
            "valid-chat": dict(), "valid-stream": dict(stream=True),
            "valid-get": dict(method=b"GET", path=self.rng.choice([b"/v1/models", b"/health", b"/metrics"])),
            "unauth-get": dict(method=b"GET", path=self.rng.choice([b"/v1/models", b"/health", b"/metrics"]),
                               auth=self.rng.choice(AUTH_INVALID)),
            "unauth-post": dict(auth=self.rng.choice(AUTH_INVALID)),
            "unauth-post-empty": dict(auth=self.rng.choice(AUTH_INVALID), body=b""),
            "bad-json": dict(body=b'{"messages": [', body_kind="invalid"),
            "not-found": dict(method=b"GET", path=b"/v1/nope"),
            "version": dict(method=b"GET", path=b"/version", auth="none"),
            "wrong-method": dict(method=b"GET", path=CHAT),
        }[name]
        raw, req = self.make(close=False, **kw)
        return raw, req, name

    def c_pipelining(self) -> Case:
        items = [self.pipeline_item() for _ in range(self.rng.randint(2, 5))]
        blob = b"".join(i[0] for i in items)
        reqs = [i[1] for i in items]
        names = [i[2] for i in items]
        if self.rng.random() < 0.2:  # a last request that never completes
            raw, req = self.make(method=b"GET", path=b"/v1/models", unframeable=True)
            blob += raw[:-2]
            reqs.append(req)
            names.append("partial")
        cuts = sorted(self.rng.sample(range(1, len(blob)), min(len(blob) - 1, self.rng.randint(0, 2))))
        writes = [blob[a:b] for a, b in zip([0] + cuts, cuts + [len(blob)])]
        return self.case_of("pipelining", "+".join(names), writes, reqs, linger=0.2)

    def c_expect(self) -> Case:
        kind = self.auth_kind(0.6)
        _, state = self.auth(kind)
        name = self.rng.choice(["immediate", "wait", "wait", "never", "unknown-expectation", "http10", "case",
                                "get"])
        if name == "get":
            return self.single("expect", name, method=b"GET", path=b"/v1/models", auth=kind, expect100=True)
        body = self.chat(unauth=state == "invalid")
        if name == "unknown-expectation":
            raw, req = self.make(body=body, auth=kind, extra=[b"Expect: fancy-extension"])
            if req.expect is not None and state != "invalid":
                widen(req, 417)
            return self.case_of("expect", name, raw, [req])
        if name == "http10":
            return self.single("expect", name, body=body, auth=kind, expect100=True, version=b"HTTP/1.0")
        extra = [b"Expect: 100-Continue"] if name == "case" else []
        raw, req = self.make(body=body, auth=kind, expect100=name != "case", extra=extra)
        head = raw[:len(raw) - len(body)]
        if name == "immediate":
            return self.case_of("expect", name, raw, [req])
        if name == "never":
            req.unframeable = state != "invalid" and req.kind is not None  # waits for a body that never comes
            req.reach = False
            return self.case_of("expect", name, [head], [req], half_close=self.rng.random() < 0.3)
        return self.case_of("expect", name, [head, WAIT, body], [req])

    def c_methods(self) -> Case:
        method = self.rng.choice([b"FOO", b"PURGE", b"get", b"Get", b"PATCH", b"DELETE", b"PUT", b"OPTIONS",
                                  b"TRACE", b"HEAD", b"CONNECT", b"M" * 1000, b"GE\x00T", b"G(ET", b"POST/",
                                  b"PROPFIND", b"LINK", b"\xc4\x9eET"])
        path = self.rng.choice([r.path for r in ROUTES] + [b"/v1/nope", b"*", b"127.0.0.1:80"])
        body = self.chat() if method in (b"PUT", b"PATCH", b"DELETE", b"FOO") and self.rng.random() < 0.7 else b""
        raw, req = self.make(method=method, path=path, body=body, auth=self.auth_kind(0.6), close=True,
                             expect=frozenset({400, 404, 405, 501}), reach=False, ok_allowed=False,
                             continue_allowed=False, code=None)
        return self.case_of("methods", repr(method[:12])[2:-1], raw, [req])

    def c_versions(self) -> Case:
        kind = self.auth_kind(0.8)
        name = self.rng.choice(["http10", "http10-keepalive", "http10-get", "lowercase", "http12", "http2",
                                "http3", "http19", "junk-1.1x", "junk-11.1", "junk-httx", "junk-extra",
                                "double-space", "leading-crlf", "tab-separators", "lf-only"])
        if name.startswith("http10"):
            extra = [b"Connection: keep-alive"] if name == "http10-keepalive" else []
            method, path = (b"GET", b"/v1/models") if name == "http10-get" else (b"POST", CHAT)
            return self.single("versions", name, method=method, path=path, auth=kind, version=b"HTTP/1.0",
                               extra=extra, close=False, host=name != "http10-get")
        version = {"lowercase": b"http/1.1", "http12": b"HTTP/1.2", "http2": b"HTTP/2.0", "http3": b"HTTP/3",
                   "http19": b"HTTP/1.9", "junk-1.1x": b"HTTP/1.1x", "junk-11.1": b"HTTP/11.1",
                   "junk-httx": b"HTTX/1.1", "junk-extra": b"HTTP/1.1 extra"}.get(name, b"HTTP/1.1")
        raw, req = self.make(auth=kind, version=version, close=True)
        if name in ("http12", "http2", "http19"):
            widen(req, 400, 505)
        elif name == "leading-crlf":
            raw = b"\r\n" + raw
            widen(req, 400)
        elif name == "lf-only":
            head, _, body = raw.partition(b"\r\n\r\n")
            raw = head.replace(b"\r\n", b"\n") + b"\n\n" + body
            widen(req, 400)
            req.unframeable = True  # a strict parser is still looking for CRLF CRLF
            return self.case_of("versions", name, raw, [req], half_close=self.rng.random() < 0.5)
        else:
            if name == "double-space":
                raw = raw.replace(b"POST ", b"POST  ", 1)
            elif name == "tab-separators":
                line, _, rest = raw.partition(b"\r\n")
                raw = line.replace(b" ", b"\t") + b"\r\n" + rest
            req.expect, req.reach, req.ok_allowed, req.continue_allowed, req.code = (
                frozenset({400, 404, 405, 505}), False, False, False, None)
        return self.case_of("versions", name, raw, [req])

    def c_http09(self) -> Case:
        name, raw, unframeable = self.rng.choice([
            ("get-line", b"GET /v1/models\r\n", True),
            ("get-line-blank", b"GET /v1/models\r\n\r\n", False),
            ("get-only", b"GET\r\n\r\n", False),
            ("path-only", b"/v1/models\r\n\r\n", False),
            ("empty-lines", b"\r\n" * 20, True),
            ("lf", b"GET /\n\n", True),
            ("binary", self.rng.randbytes(200) + b"\r\n\r\n", False),
            ("tls-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + self.rng.randbytes(64), True),
            ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", False),
            ("nul-line", b"\x00" * 64 + b"\r\n\r\n", False),
        ])
        req = Req(None, b"", b"", b"", "invalid", False, frozenset({400, 404, 405, 505}), False, False,
                  unframeable=unframeable)
        return self.case_of("http09", name, raw, [req], half_close=unframeable and self.rng.random() < 0.5)

    def c_missing_host(self) -> Case:
        kind = self.auth_kind(0.7)
        name = self.rng.choice(["missing", "double", "empty", "garbage", "long"])
        extra = {"missing": [], "double": [b"Host: 127.0.0.1", b"Host: evil.example"], "empty": [b"Host:"],
                 "garbage": [b"Host: a b\xff"], "long": [b"Host: " + b"h" * 8000]}[name]
        raw, req = self.make(auth=kind, host=False, extra=extra)
        widen(req, 400)
        return self.case_of("missing_host", name, raw, [req])

    def c_nul(self) -> Case:
        kind = self.auth_kind(0.75)
        _, state = self.auth(kind)
        c = self.content(state == "invalid").encode()
        name = self.rng.choice(["request-line", "method", "header-name", "header-value", "token", "body-json",
                                "body-tokenize", "body-after-json", "content-type"])
        no = dict(reach=False, ok_allowed=False, continue_allowed=False, code=None)
        if name == "request-line":
            return self.single("nul", name, path=b"/v1/chat\x00/completions", auth=kind,
                               expect=frozenset({400, 404}), **no)
        if name == "method":
            return self.single("nul", name, method=b"PO\x00ST", auth=kind, expect=frozenset({400, 404, 405}), **no)
        if name == "header-name":
            return self.single("nul", name, auth=kind, extra=[b"X-A\x00B: 1"], expect=frozenset({400}), **no)
        if name == "token":
            return self.single("nul", name, auth="nul", expect=frozenset({400, 401}), **no)
        if name == "body-json":
            return self.single("nul", name, auth=kind, body_kind="invalid",
                               body=b'{"messages":[{"role":"user","content":"%s\x00"}]}' % c)
        if name == "body-after-json":
            return self.single("nul", name, auth=kind, body_kind="invalid",
                               body=self.chat(state == "invalid") + b"\x00")
        if name == "body-tokenize":
            return self.single("nul", name, path=b"/tokenize", auth=kind,
                               body=b"\x00" + c + self.rng.randbytes(300) + b"\x00")
        h = b"X-A: a\x00b" if name == "header-value" else b"Content-Type: application/json\x00"
        raw, req = self.make(auth=kind, extra=[h])
        widen(req, 400)
        return self.case_of("nul", name, raw, [req])

    def c_incomplete(self) -> Case:
        kind = self.auth_kind(0.7)
        _, state = self.auth(kind)
        name = self.rng.choice(["head-no-end", "cl-short", "chunked-partial"])
        body = self.chat(unauth=state == "invalid")
        if name == "head-no-end":
            raw, req = self.make(body=body, auth=kind, unframeable=True, reach=False, expect=frozenset({400, 408}),
                                 ok_allowed=False, code=None)
            raw = raw[:raw.index(b"\r\n\r\n")] + b"\r\n"
        elif name == "cl-short":
            raw, req = self.make(body=body, auth=kind, reach=False, code=None)
            raw = raw[:len(raw) - len(body) // 2]
        else:
            raw, req = self.make(body=body, auth=kind, framing="chunked", reach=False, code=None)
            raw = raw[:-5]
        if name != "head-no-end":
            # With a valid token the proxy waits for the rest of the body (then closes); without, it refuses
            # from the head.
            req.unframeable = state != "invalid"
            if req.unframeable:
                req.expect = frozenset({400, 408} | ({401} if state == "ambiguous" else set()))
        return self.case_of("incomplete", name, raw, [req], half_close=self.rng.random() < 0.5)

    WEIGHTS = {"auth": 16, "control": 6, "bad_json": 9, "wrong_types": 4, "deep_json": 5, "bad_utf8": 6,
               "path_tricks": 9, "overlong": 4, "cl_te": 9, "bad_chunking": 8, "over_limit": 5, "pipelining": 8,
               "expect": 6, "methods": 5, "versions": 5, "http09": 3, "missing_host": 3, "nul": 4, "incomplete": 3}

    def cases(self, n: int) -> list[Case]:
        names = sorted(self.WEIGHTS)
        weights = [self.WEIGHTS[k] for k in names]
        out = []
        for i in range(n):
            self.case = i
            cls = self.rng.choices(names, weights)[0]
            out.append(getattr(self, "c_" + cls)())
        return out


# ---------------------------------------------------------------------------------------------------------------
# The client side: raw bytes out, HTTP responses in


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool
    interim: int  # 1xx responses just before this one
    head: bytes


def parse_responses(buf: bytes, eof: bool, no_body: set[int]) -> tuple[list[Resp], int, bytes]:
    """The complete-or-partial final responses in `buf`, the 1xx count after the last final, and unparsed bytes."""
    out: list[Resp] = []
    pos, interim = 0, 0
    while pos < len(buf):
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            return out, interim, buf[pos:]
        head = buf[pos:end]
        lines = head.split(b"\r\n")
        m = re.fullmatch(rb"HTTP/1\.[01] (\d{3})(?: .*)?", lines[0])
        if not m:
            return out, interim, buf[pos:]
        status = int(m.group(1))
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        pos = end + 4
        if 100 <= status < 200:
            interim += 1
            continue
        if len(out) in no_body or status in (204, 304):
            body, complete = b"", True
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body, complete, p = b"", False, pos
            while True:
                eol = buf.find(b"\r\n", p)
                if eol < 0:
                    break
                try:
                    size = int(buf[p:eol].split(b";")[0], 16)
                except ValueError:
                    return out, interim, buf[pos:]
                if size == 0:
                    tail = buf.find(b"\r\n", eol + 2)
                    if tail < 0:
                        break
                    p, complete = tail + 2, True
                    break
                if len(buf) < eol + 2 + size + 2:
                    break
                body += buf[eol + 2:eol + 2 + size]
                p = eol + 2 + size + 2
            pos = p if complete else len(buf)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body, complete = buf[pos:pos + n], len(buf) - pos >= n
            pos = min(len(buf), pos + n)
        else:
            body, complete, pos = buf[pos:], eof, len(buf)
        out.append(Resp(status, headers, body, complete, interim, head))
        interim = 0
    return out, interim, b""


@dataclass
class Outcome:
    responses: list[Resp]
    trailing_interim: int
    leftover: bytes
    received: bytes
    eof: bool = False
    reset: bool = False
    timed_out: bool = False
    send_error: str | None = None
    connect_error: str | None = None
    seconds: float = 0.0


def talk(port: int, case: Case) -> Outcome:
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    except OSError as e:
        return Outcome([], 0, b"", b"", connect_error=repr(e), seconds=time.monotonic() - t0)
    no_body = {i for i, r in enumerate(case.reqs) if r.no_body}
    expected = sum(1 for r in case.reqs if not r.unframeable)
    writes = list(case.writes)
    pending = b""
    buf = bytearray()
    out = Outcome([], 0, b"", b"")
    writing = True
    resps: list[Resp] = []
    trailing, leftover = 0, b""
    stop_at = None
    last = time.monotonic()
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        while True:
            now = time.monotonic()
            resps, trailing, leftover = parse_responses(bytes(buf), out.eof, no_body)
            if writing and not pending:
                if writes and writes[0] is WAIT:
                    if resps:  # answered before the body: do not send it
                        writes.clear()
                    elif trailing:
                        writes.pop(0)
                if writes and writes[0] is not WAIT:
                    pending = writes.pop(0)
                elif not writes:
                    writing = False
                    if case.half_close:
                        s.shutdown(socket.SHUT_WR)
            answered = (resps and resps[-1].complete and
                        (len(resps) >= expected > 0 or resps[-1].headers.get("connection", "").lower() == "close"))
            if out.eof or out.reset or (answered and stop_at is None and not case.linger):
                break
            if answered and stop_at is None:
                stop_at = now + case.linger
            if stop_at is not None and now >= stop_at:
                break
            if now - last > SOCKET_TIMEOUT or now - t0 > CASE_CAP:
                out.timed_out = True
                break
            r, w, _ = select.select([s], [s] if pending else [], [], 0.05)
            if r:
                try:
                    data = s.recv(262144)
                except ConnectionResetError:
                    out.reset = True
                    continue
                if not data:
                    out.eof = True
                    continue
                buf += data
                last = time.monotonic()
            if w and pending:
                try:
                    n = s.send(pending)
                    pending = pending[n:]
                    last = time.monotonic()
                except BlockingIOError:
                    pass
                except OSError as e:  # the proxy answered early and closed: keep reading what it sent
                    out.send_error = repr(e)
                    pending, writes, writing = b"", [], False
        resps, trailing, leftover = parse_responses(bytes(buf), out.eof, no_body)
    finally:
        s.close()
    out.responses, out.trailing_interim, out.leftover, out.received = resps, trailing, leftover, bytes(buf)
    out.seconds = time.monotonic() - t0
    return out


def judge(case: Case, out: Outcome) -> list[tuple[str, str]]:
    """(kind, message) for every broken promise in one exchange."""
    problems: list[tuple[str, str]] = []
    if out.connect_error:
        return [("connect", f"could not connect: {out.connect_error}")]
    if out.leftover and out.responses and case.reqs[min(len(out.responses), len(case.reqs)) - 1].no_body:
        problems.append(("framing", f"the answer to HEAD carries a {len(out.leftover)}-byte body; answers to HEAD "
                                    f"have none (RFC 9112 §6.3): a keep-alive client reads it as the next response: "
                                    f"{out.leftover[:100]!r}"))
    elif out.leftover and not (case.unframeable and out.leftover.startswith(b"HTTP/")):
        problems.append(("framing", f"bytes that are not an HTTP response: {out.leftover[:160]!r}"))
    closed = False
    for i, r in enumerate(out.responses):
        if i >= len(case.reqs):
            problems.append(("desync", f"{len(out.responses)} answers to {len(case.reqs)} framed request(s); extra: "
                                       f"{r.head[:120]!r}"))
            break
        req = case.reqs[i]
        where = f"answer {i}" if len(case.reqs) > 1 else "answer"
        if not r.complete:
            problems.append(("framing", f"{where} {r.status} truncated"))
        if r.status == 500:
            problems.append(("500", f"{where}: 500 {r.body[:200]!r}"))
        if r.status >= 400 and req.no_body:
            pass  # HEAD: no body to check (a body sent anyway is reported above)
        elif r.status >= 400:
            try:
                doc = json.loads(r.body)
                err = doc["error"]
                if not (set(doc) == {"error"} and all(k in err for k in vh.ERROR_FIELDS)
                        and isinstance(err["message"], str) and err["message"]
                        and isinstance(err["type"], str) and err["type"]
                        and (err["param"] is None or isinstance(err["param"], str))
                        and isinstance(err["code"], str) and err["code"]):
                    raise ValueError(doc)
                code = err["code"]
            except (ValueError, KeyError, TypeError):
                problems.append(("envelope", f"{where} {r.status} is not the OpenAI error envelope: {r.body[:200]!r}"))
                code = None
            if code is not None and not r.headers.get("content-type", "").startswith("application/json"):
                problems.append(("envelope", f"{where} {r.status} Content-Type {r.headers.get('content-type')!r}"))
            if r.status > 500:
                if code in ENGINE_5XX_CODES:
                    problems.append(("5xx", f"{where} {r.status} {code} with a healthy stub engine"))
                elif code not in ALLOWED_5XX_CODES:
                    problems.append(("5xx", f"{where} {r.status} code {code!r} is not a documented 5xx"))
            if req.code is not None and code is not None and code != req.code:
                problems.append(("status", f"{where} {r.status} code {code!r}, expected {req.code!r}"))
        elif r.status >= 300 or r.status < 200:
            problems.append(("status", f"{where} unexpected status {r.status}"))
        else:
            if not req.ok_allowed:
                problems.append(("auth" if req.auth == "invalid" and req.kind else "status",
                                 f"{where} {r.status} for a request that must be refused"
                                 f"{' (no valid token)' if req.auth == 'invalid' else ''}"))
            if req.stream and r.status == 200 and not r.body.endswith(b"data: [DONE]\n\n"):
                problems.append(("framing", f"{where} stream does not end with data: [DONE]: {r.body[-80:]!r}"))
        if req.expect is not None and r.status not in req.expect:
            problems.append(("status", f"{where} {r.status}, expected one of {sorted(req.expect)}"))
        if r.interim and req.http10:
            problems.append(("continue", f"{where}: `100 Continue` sent to an HTTP/1.0 request (RFC 9110 §10.1.1: "
                                         f"a server MUST ignore the expectation; a 1.0 client takes it as the answer)"))
        elif r.interim and not req.continue_allowed:
            problems.append(("continue", f"{where}: `100 Continue` sent before refusing it with {r.status}"))
        if r.headers.get("connection", "").lower() == "close":
            closed = True
            break
    if not closed:
        for j in range(len(out.responses), len(case.reqs)):
            if any(r.unframeable for r in case.reqs[:j + 1]):
                break
            how = "reset" if out.reset else "closed" if out.eof else f"silent for {SOCKET_TIMEOUT}s"
            problems.append(("no-answer", f"no answer to request {j} of {len(case.reqs)} (connection {how})"))
            break
    if out.trailing_interim and case.reqs and not all(r.continue_allowed for r in case.reqs):
        refused = [r for r in case.reqs[len(out.responses):] if not r.continue_allowed]
        if refused:
            problems.append(("continue", "`100 Continue` sent for a request that must be refused"))
    return problems


# ---------------------------------------------------------------------------------------------------------------
# The proxy's memory


class RssMonitor(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.stop_evt = threading.Event()
        self.max = 0
        self.samples = 0

    def read(self) -> int:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
        return int(m.group(1)) * 1024 if m else 0

    def run(self) -> None:
        while not self.stop_evt.wait(0.05):
            v = self.read()
            self.samples += 1
            self.max = max(self.max, v)


# ---------------------------------------------------------------------------------------------------------------
# The test


def show(b: bytes, limit: int) -> str:
    r = repr(b[:limit])
    return r + (f" … ({len(b)} bytes in all, sha256 {hashlib.sha256(b).hexdigest()[:16]})" if len(b) > limit else "")


@pytest.fixture(scope="module")
def hostile_setup(stack):
    if not _no_system_dstack():
        pytest.skip("a dstack socket exists at a default path on this machine; this proxy must run without a TEE")
    rng = random.Random(SEED ^ 0x5EED)
    token = "tok-" + rng.randbytes(16).hex()
    backend_key = "bk-" + rng.randbytes(16).hex()
    wrong = ["tok-" + rng.randbytes(16).hex() for _ in range(8)]
    markers = ["pimark" + rng.randbytes(8).hex() for _ in range(16)]
    stack.tokens.update(wrong + [backend_key])  # the session-end log scan: no presented token is logged
    stack.markers.update(markers)
    stack.remember_completion(COMPLETION)
    engine = CountingEngine(backend_key, COMPLETION)
    old = os.environ.get("ASAN_OPTIONS")
    # A small ASan quarantine: freed memory held by ASan would otherwise dominate the RSS bound (256 MiB default).
    os.environ["ASAN_OPTIONS"] = (old + ":" if old else "detect_leaks=1:abort_on_error=1:") + "quarantine_size_mb=16"
    try:
        proxy = start_proxy(stack, "proxy-hostile", engine.url, None, [token],
                            extra=[f"--backend-api-key={backend_key}", f"--max-body-bytes={MAX_BODY}",
                                   "--client-timeout=2", "--public=version,attestation", "--gpu-evidence=off",
                                   "--threads=2"])
    finally:
        if old is None:
            os.environ.pop("ASAN_OPTIONS", None)
        else:
            os.environ["ASAN_OPTIONS"] = old
    yield proxy, engine, wrong, markers
    proxy.proc.stop()
    engine.close()


def test_hostile_request_campaign(hostile_setup, stack, capsys):
    proxy, engine, wrong, markers = hostile_setup
    port = int(proxy.url.rsplit(":", 1)[1])
    gen = Gen(SEED, proxy.token, wrong, markers)
    cases = gen.cases(CASES)
    if ONLY:
        cases = [c for c in cases if c.id in ONLY]

    # Warm-up (one of each kind of success), then the RSS baseline.
    with proxy.client() as c:
        for path in ("/v1/models", "/health", "/metrics", "/version"):
            assert c.get(path).status_code == 200, path
        warm = json.dumps({"messages": [{"role": "user", "content": "warm-up"}]}).encode()
        assert c.post("/v1/chat/completions", content=warm).status_code == 200
    warm_requests = len(engine.snapshot()[0])
    monitor = RssMonitor(proxy.proc.popen.pid)
    baseline = monitor.read()
    monitor.max = baseline
    monitor.start()

    t0 = time.monotonic()
    outcomes: dict[int, Outcome] = {}
    problems: list[tuple[Case, str, str]] = []
    crashed_with: list[Case] | None = None
    cut_short = False
    todo = iter(cases)
    inflight: dict = {}
    with ThreadPoolExecutor(WORKERS) as pool:
        exhausted = False
        while True:
            while not exhausted and len(inflight) < WORKERS and crashed_with is None and not cut_short:
                case = next(todo, None)
                if case is None:
                    exhausted = True
                    break
                inflight[pool.submit(talk, port, case)] = case
            if not inflight:
                break
            done, _ = wait(list(inflight), timeout=0.5, return_when=FIRST_COMPLETED)
            for f in done:
                case = inflight.pop(f)
                outcomes[case.id] = out = f.result()
                problems += [(case, k, m) for k, m in judge(case, out)]
            if crashed_with is None and not proxy.proc.alive():
                crashed_with = list(inflight.values()) + [c for c, k, _ in problems[-WORKERS:] if k == "connect"]
            if time.monotonic() - t0 > CAMPAIGN_BUDGET:
                cut_short = True
    elapsed = time.monotonic() - t0
    monitor.stop_evt.set()
    monitor.join(1)

    # The engine side: every request attributed to an authenticated request that was meant to be forwarded.
    by_tag: dict[str, tuple[Case, Req]] = {}
    smuggled: dict[str, Case] = {}
    allowed_requests = allowed_bytes = metrics_allowed = 0
    for case in cases:
        for r in case.reqs:
            if r.tag:
                by_tag[r.tag] = (case, r)
            if case.id in outcomes and r.reach:
                allowed_requests += 1
                allowed_bytes += len(r.body)
            if case.id in outcomes and r.kind == "metrics" and r.auth != "invalid":
                metrics_allowed += 1
        for t in case.smuggled:
            smuggled[t] = case
    engine_reqs, engine_bytes = engine.snapshot()
    campaign_reqs = engine_reqs[warm_requests:]
    seen: dict[str, int] = {}
    scrapes = 0
    engine_problems: list[tuple[Case | None, str, str]] = []
    token_b = proxy.token.encode()
    for er in campaign_reqs:
        if er.problem:
            engine_problems.append((None, "engine", f"the engine could not parse a proxy request ({er.problem}): "
                                                    f"{er.method!r} {er.target[:100]!r}"))
        if not er.authorized:
            engine_problems.append((None, "engine", f"engine request without the backend key: {er.target[:100]!r}"))
        if any(token_b in v for _, v in er.headers):
            engine_problems.append((None, "engine", f"the client's token was forwarded: {er.target[:100]!r}"))
        m = re.search(rb"[?&]pic=([cs]\d+n\d+)", er.target)
        tag = m.group(1).decode() if m else None
        if tag is None:
            if er.method == b"GET" and er.target == b"/metrics":
                scrapes += 1
            else:
                engine_problems.append((None, "engine", f"untagged engine request {er.method!r} {er.target[:100]!r} "
                                                        f"body {show(er.body, 120)}"))
            continue
        seen[tag] = seen.get(tag, 0) + 1
        if tag in smuggled:
            engine_problems.append((smuggled[tag], "desync", f"a request smuggled inside a body reached the engine: "
                                                             f"{er.method!r} {er.target[:80]!r}"))
            continue
        if tag not in by_tag:
            engine_problems.append((None, "engine", f"engine request with an unknown tag {tag}: {er.target[:100]!r}"))
            continue
        case, req = by_tag[tag]
        if not req.reach:
            why = "without a valid token" if req.auth == "invalid" else "that must not be forwarded"
            engine_problems.append((case, "auth" if req.auth == "invalid" else "engine",
                                    f"a request {why} reached the engine ({len(er.body)} body bytes)"))
        elif (er.method, er.target, er.body) != (req.method, req.target, req.body):
            engine_problems.append((case, "engine", f"the engine got other bytes than the client framed: "
                                                    f"{er.method!r} {er.target[:80]!r} body {show(er.body, 120)}"))
        if b"piunauth" in er.body or b"pismuggled" in er.body:
            engine_problems.append((case, "auth", f"bytes of an unauthenticated/smuggled body reached the engine: "
                                                  f"{show(er.body, 120)}"))
        if seen[tag] == 2:
            engine_problems.append((case, "engine", "the same request reached the engine twice"))
    engine_campaign_bytes = sum(len(er.body) for er in campaign_reqs)
    if scrapes > metrics_allowed:
        engine_problems.append((None, "auth", f"{scrapes} engine /metrics scrapes for {metrics_allowed} "
                                              f"authenticated GET /metrics"))
    if len(campaign_reqs) - scrapes > allowed_requests:
        engine_problems.append((None, "auth", f"the engine got {len(campaign_reqs) - scrapes} requests; only "
                                              f"{allowed_requests} authenticated well-formed ones were sent"))
    if engine_campaign_bytes > allowed_bytes:
        engine_problems.append((None, "auth", f"the engine got {engine_campaign_bytes} body bytes; authenticated "
                                              f"requests sent {allowed_bytes}"))
    problems += engine_problems

    # Statistics.
    per_class: dict[str, int] = {}
    statuses: dict[int, int] = {}
    silent: dict[str, int] = {}
    for case in cases:
        per_class[case.cls] = per_class.get(case.cls, 0) + 1
        out = outcomes.get(case.id)
        if out is None:
            continue
        for r in out.responses:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        if not out.responses:
            key = variant_key(case)
            silent[key] = silent.get(key, 0) + 1
    n_silent = sum(silent.values())
    unframeable_cases = sum(1 for c in cases if c.unframeable)
    rss_growth = monitor.max - baseline

    # 5: still alive, and a normal signed chat, whole and streamed, verifies.
    alive = proxy.proc.alive()
    final_error = None
    if alive:
        try:
            with proxy.client() as c:
                body = json.dumps({"messages": [{"role": "user", "content": "after the campaign"}]}).encode()
                r = c.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
                assert r.status_code == 200, r.text
                vh.verify_exchange(c, r.json()["id"], body, r.content, proxy.token)
                sbody = json.dumps({"messages": [{"role": "user", "content": "after, streamed"}],
                                    "stream": True}).encode()
                with c.stream("POST", "/v1/chat/completions", content=sbody,
                              headers={"Content-Type": "application/json"}) as s:
                    assert s.status_code == 200
                    raw = b"".join(s.iter_raw())
                vh.verify_exchange(c, vh.stream_id(raw), sbody, raw, proxy.token)
        except Exception as e:  # noqa: BLE001 - reported with the rest
            final_error = f"{type(e).__name__}: {e}"

    summary = [
        f"hostile campaign: seed {SEED} (PI_CAMPAIGN_SEED), {len(outcomes)}/{len(cases)} cases in {elapsed:.1f}s, "
        f"{WORKERS} at a time",
        "cases per class: " + ", ".join(f"{k} {v}" for k, v in sorted(per_class.items())),
        "answers per status: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())),
        f"closed without any answer: {n_silent} (of {unframeable_cases} unframeable cases): "
        + (", ".join(f"{k} {v}" for k, v in sorted(silent.items())) or "none"),
        f"engine: {len(campaign_reqs)} requests ({scrapes} /metrics scrapes), {engine_campaign_bytes} body bytes; "
        f"authenticated well-formed requests sent: {allowed_requests} ({allowed_bytes} body bytes), "
        f"{metrics_allowed} GET /metrics",
        f"proxy RSS: {baseline / 2 ** 20:.1f} MiB after warm-up, max {monitor.max / 2 ** 20:.1f} MiB "
        f"(+{rss_growth / 2 ** 20:.1f} MiB, bound +{RSS_BOUND / 2 ** 20:.0f}), {monitor.samples} samples",
        f"problems: {len(problems)}" + (" by kind: " + ", ".join(
            f"{k} {sum(1 for _, kk, _ in problems if kk == k)}" for k in sorted({k for _, k, _ in problems}))
            if problems else ""),
    ]
    report = stack.log_dir / f"hostile_campaign_{SEED}.txt"
    lines = list(summary) + ["", "answers per variant (statuses of the answers on one connection; none: closed):"]
    per_variant: dict[str, dict[str, int]] = {}
    for case in cases:
        if case.id in outcomes:
            seq = "-".join(str(r.status) for r in outcomes[case.id].responses) or "none"
            d = per_variant.setdefault(f"{case.cls}/{case.variant[:60]}", {})
            d[seq] = d.get(seq, 0) + 1
    lines += [f"  {k}: " + ", ".join(f"{s} x{n}" for s, n in sorted(v.items())) for k, v in sorted(per_variant.items())]
    seen_cases: set[int] = set()
    for case, kind, msg in problems:
        what = f"case {case.id} {case.cls}/{case.variant}" if case else "campaign"
        lines.append(f"\n[{kind}] {what}: {msg}")
        if case is not None and case.id not in seen_cases:
            seen_cases.add(case.id)
            out = outcomes.get(case.id)
            lines.append(f"  raw request: {show(case.raw, 6000)}")
            if out is not None:
                lines.append(f"  received ({out.seconds:.2f}s, eof={out.eof} reset={out.reset} "
                             f"timeout={out.timed_out} send_error={out.send_error}): {show(out.received, 1500)}")
    report.write_text("\n".join(lines), encoding="utf-8")
    with capsys.disabled():
        print("\n" + "\n".join(summary) + f"\nfull report: {report}")

    failures = []
    if crashed_with is not None:
        failures.append(f"the proxy died (status {proxy.proc.popen.poll()}) while these cases were in flight: "
                        + "; ".join(f"case {c.id} {c.cls}/{c.variant}: {show(c.raw, 300)}" for c in crashed_with)
                        + f"\nproxy log tail:\n{proxy.proc.tail(40)}")
    elif not alive:
        failures.append(f"the proxy is not alive at the end:\n{proxy.proc.tail(40)}")
    if cut_short:
        failures.append(f"the campaign did not finish within {CAMPAIGN_BUDGET}s: {len(outcomes)} of {len(cases)} "
                        f"cases ran (hostile input made the proxy this slow, or the machine is overloaded)")
    if final_error:
        failures.append(f"after the campaign a normal signed chat failed: {final_error}")
    if rss_growth > RSS_BOUND:
        failures.append(f"proxy RSS grew by {rss_growth / 2 ** 20:.1f} MiB (bound {RSS_BOUND / 2 ** 20:.0f} MiB)")
    if set(silent) - UNFRAMEABLE:
        failures.append(f"connections closed without any answer outside the unframeable variants: "
                        f"{sorted(set(silent) - UNFRAMEABLE)}")
    if n_silent > 0.15 * max(1, len(outcomes)):
        failures.append(f"{n_silent} of {len(outcomes)} connections closed without any answer: not a minority")
    # One example (with its raw bytes) per kind of broken promise and variant, then the counts.
    groups: dict[tuple, list[tuple[Case | None, str]]] = {}
    for case, kind, msg in problems:
        key = (kind, case.cls, case.variant.split(" ")[0]) if case else (kind, "campaign", msg[:40])
        groups.setdefault(key, []).append((case, msg))
    for (kind, cls, variant), items in list(groups.items())[:30]:
        case, msg = items[0]
        ids = sorted({c.id for c, _ in items if c is not None})
        text = f"[{kind}] {cls}/{variant} x{len(items)}" + (f" (cases {ids[:12]})" if ids else "") + f": {msg}"
        if case is not None:
            out = outcomes.get(case.id)
            text += f"\n    e.g. case {case.id} raw: {show(case.raw, 400)}"
            if out is not None:
                text += f"\n    got: {show(out.received, 300)}"
        failures.append(text)
    if len(groups) > 30:
        failures.append(f"… and {len(groups) - 30} more kinds of problem (see {report})")
    assert not failures, (f"seed {SEED} (rerun: PI_CAMPAIGN_SEED={SEED} PI_CAMPAIGN_ONLY=<case ids>)\n"
                          + "\n".join(summary) + "\n\n" + "\n".join(failures))


def test_campaign_oracle_flags_broken_answers():
    """The judge is the campaign's oracle: each broken promise it must catch, fed as a made-up answer."""
    gen = Gen(1, "tok-0123", ["tok-4567"], ["pimark00"])
    raw, unauth = gen.make(auth="none")
    case = Case(0, "oracle", "unauth", [raw], [unauth])
    raw_att, att = gen.make(method=b"GET", path=b"/v1/attestation", auth="none")
    att_case = Case(1, "oracle", "attestation", [raw_att], [att])
    json_ct = {"content-type": "application/json"}

    def env(code: str) -> bytes:
        return json.dumps({"error": {"message": "m", "type": "t", "param": None, "code": code}}).encode()

    def kinds(c: Case, *resps: Resp, **kw) -> set[str]:
        return {k for k, _ in judge(c, Outcome(list(resps), 0, b"", b"", **kw))}

    assert kinds(case, Resp(401, json_ct, env("invalid_api_key"), True, 0, b"")) == set()
    assert kinds(att_case, Resp(503, json_ct, env("tee_unavailable"), True, 0, b"")) == set()
    assert "auth" in kinds(case, Resp(200, {}, b"{}", True, 0, b""))
    assert "500" in kinds(case, Resp(500, json_ct, env("internal_error"), True, 0, b""))
    assert "5xx" in kinds(att_case, Resp(502, json_ct, env("backend_error"), True, 0, b""))
    assert "envelope" in kinds(case, Resp(401, json_ct, b"Unauthorized", True, 0, b""))
    assert "envelope" in kinds(case, Resp(401, json_ct, b'{"error":{"message":"m"}}', True, 0, b""))
    assert "status" in kinds(case, Resp(404, json_ct, env("unknown_url"), True, 0, b""))
    assert "status" in kinds(case, Resp(401, json_ct, env("other_code"), True, 0, b""))
    assert "continue" in kinds(case, Resp(401, json_ct, env("invalid_api_key"), True, 1, b""))
    assert "desync" in kinds(case, *[Resp(401, json_ct, env("invalid_api_key"), True, 0, b"")] * 2)
    assert "no-answer" in kinds(case, eof=True)
    assert "framing" in kinds(case, Resp(401, json_ct, env("invalid_api_key")[:5], False, 0, b""))
    flagged = {variant_key(c) for c in Gen(SEED, "tok-0123", ["tok-4567"], ["pimark00"]).cases(CASES) if c.unframeable}
    assert flagged <= UNFRAMEABLE, flagged - UNFRAMEABLE
    assert parse_responses(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3\r\nabc\r\n0\r\n\r\n", True, set())[0][0].body == b"abc"
