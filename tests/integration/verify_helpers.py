"""Independent verification helpers for the integration tests (shared with test_verify_*.py).

Everything here re-implements the protocol rules from the outside with independent libraries (hashlib,
eth-account, cryptography), never with the project's own code:

  request_hash  = sha256(exact request body bytes)             (lowercase hex)
  response_hash = sha256(exact response body bytes received)   (for SSE: the whole de-chunked stream)
  text          = request_hash + ":" + response_hash
  ECDSA         = EIP-191 personal_sign over text; signer = EIP-55 checksummed address
  Ed25519       = signature over text; "address" = public key hex
  report_data   = address bytes zero-padded to 32 || 32-byte nonce, at bytes 568..632 of a v4 TDX quote
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterable

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address

ALGOS = ("ecdsa", "ed25519")
SIGNATURE_FIELDS = (
    "text",
    "signature",
    "signing_address",
    "signing_algo",
    "request_hash",
    "response_hash",
    "ecdsa_signature",
    "ed25519_signature",
    "ecdsa_signing_address",
    "ed25519_signing_address",
)
ERROR_FIELDS = ("message", "type", "param", "code")
QUOTE_REPORT_DATA_OFFSET = 568  # v4 quote: 48-byte header + 520 bytes of TD report body before report_data


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fresh_nonce() -> str:
    return secrets.token_hex(32)


# ---------------------------------------------------------------------------------------------------------------
# Capturing the exact bytes a client sent and received.


class _TeeStream(httpx.SyncByteStream):
    """Wraps a transport's raw (de-chunked, not content-decoded) response stream and copies every byte."""

    def __init__(self, inner: httpx.SyncByteStream, exchange: "Exchange"):
        self._inner = inner
        self._exchange = exchange

    def __iter__(self):
        for chunk in self._inner:
            self._exchange.response_body.extend(chunk)
            yield chunk
        self._exchange.complete = True

    def close(self) -> None:
        self._inner.close()


@dataclass
class Exchange:
    method: str
    url: str
    request_headers: httpx.Headers
    request_body: bytes
    status: int = 0
    response_headers: httpx.Headers = field(default_factory=httpx.Headers)
    response_body: bytearray = field(default_factory=bytearray)
    complete: bool = False  # the body stream was read to its end

    @property
    def path(self) -> str:
        return httpx.URL(self.url).path


class RecordingTransport(httpx.BaseTransport):
    """An httpx transport that records the exact request body bytes and raw response body bytes of every exchange.

    Used as `httpx.Client(transport=RecordingTransport())`, including as the `http_client` of the official
    `openai` client, so the bytes hashed by the test are the bytes that crossed the wire (minus HTTP framing).
    """

    def __init__(self, **kwargs: Any):
        self._inner = httpx.HTTPTransport(**kwargs)
        self.exchanges: list[Exchange] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        ex = Exchange(request.method, str(request.url), httpx.Headers(request.headers), bytes(body))
        self.exchanges.append(ex)
        response = self._inner.handle_request(request)
        ex.status = response.status_code
        ex.response_headers = httpx.Headers(response.headers)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _TeeStream(response.stream, ex)
        return response

    def close(self) -> None:
        self._inner.close()

    def last(self, path_suffix: str | None = None) -> Exchange:
        for ex in reversed(self.exchanges):
            if path_suffix is None or ex.path.endswith(path_suffix):
                return ex
        raise AssertionError(f"no recorded exchange for {path_suffix!r}")


def recording_client(base_url: str, token: str | None = None, timeout: float = 120.0) -> tuple[httpx.Client, RecordingTransport]:
    transport = RecordingTransport()
    headers = {"Accept-Encoding": "identity"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=base_url, transport=transport, headers=headers, timeout=timeout), transport


# ---------------------------------------------------------------------------------------------------------------
# SSE


def sse_events(raw: bytes) -> list[str]:
    """The `data:` payloads of an SSE body, in order (joined per event, as the spec says)."""
    events: list[str] = []
    text = raw.decode("utf-8")
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data_lines = [line[5:].lstrip(" ") if line.startswith("data:") else None for line in block.split("\n")]
        data = [d for d in data_lines if d is not None]
        if data:
            events.append("\n".join(data))
    return events


def sse_json_chunks(raw: bytes) -> list[dict]:
    return [json.loads(e) for e in sse_events(raw) if e != "[DONE]"]


def sse_has_done(raw: bytes) -> bool:
    return any(e == "[DONE]" for e in sse_events(raw))


def stream_content(raw: bytes) -> str:
    """Concatenated delta content (chat) or text (completions) of a stream."""
    out = []
    for chunk in sse_json_chunks(raw):
        for choice in chunk.get("choices", []):
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out.append(delta["content"])
            if choice.get("text"):
                out.append(choice["text"])
    return "".join(out)


def stream_id(raw: bytes) -> str:
    ids = {c["id"] for c in sse_json_chunks(raw) if "id" in c}
    assert len(ids) == 1, f"expected exactly one response id in the stream, got {ids}"
    return ids.pop()


# ---------------------------------------------------------------------------------------------------------------
# Signatures


def address_bytes(algo: str, address: str) -> bytes:
    if algo == "ecdsa":
        assert address.startswith("0x") and len(address) == 42, address
        return bytes.fromhex(address[2:])
    assert len(address) == 64, address
    return bytes.fromhex(address)


def check_ecdsa(text: str, signature: str, address: str) -> None:
    assert isinstance(signature, str) and signature.startswith("0x") and len(signature) == 132, signature
    v = int(signature[-2:], 16)
    assert v in (27, 28), f"ECDSA v must be 27 or 28, got {v}"
    assert address == to_checksum_address(address), f"signing address not EIP-55 checksummed: {address}"
    recovered = Account.recover_message(encode_defunct(text=text), signature=signature)
    assert recovered == address, f"ECDSA signature recovers {recovered}, expected {address}"


def check_ed25519(text: str, signature: str, public_key_hex: str) -> None:
    assert len(signature) == 128 and len(public_key_hex) == 64
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
    try:
        key.verify(bytes.fromhex(signature), text.encode())
    except InvalidSignature as e:  # pragma: no cover - the assertion message is the point
        raise AssertionError(f"Ed25519 signature does not verify for key {public_key_hex}") from e


def check_signature_record(
    record: dict,
    algo: str,
    request_body: bytes,
    response_body: bytes,
    expected_addresses: dict[str, str] | None = None,
) -> None:
    """Every property of one GET /v1/signature/{id} body, recomputed independently."""
    missing = [f for f in SIGNATURE_FIELDS if f not in record]
    assert not missing, f"signature record lacks {missing}: {sorted(record)}"
    req_hash, resp_hash = sha256_hex(request_body), sha256_hex(response_body)
    assert record["request_hash"] == req_hash, "request_hash differs from sha256 of the request bytes sent"
    assert record["response_hash"] == resp_hash, "response_hash differs from sha256 of the response bytes received"
    assert record["text"] == f"{req_hash}:{resp_hash}"
    assert record["signing_algo"] == algo
    check_ecdsa(record["text"], record["ecdsa_signature"], record["ecdsa_signing_address"])
    check_ed25519(record["text"], record["ed25519_signature"], record["ed25519_signing_address"])
    if algo == "ecdsa":
        assert record["signature"] == record["ecdsa_signature"]
        assert record["signing_address"] == record["ecdsa_signing_address"]
        check_ecdsa(record["text"], record["signature"], record["signing_address"])
    else:
        assert record["signature"] == record["ed25519_signature"]
        assert record["signing_address"] == record["ed25519_signing_address"]
        check_ed25519(record["text"], record["signature"], record["signing_address"])
    if expected_addresses:
        assert record["ecdsa_signing_address"] == expected_addresses["ecdsa"]
        assert record["ed25519_signing_address"] == expected_addresses["ed25519"]


def fetch_signature(client: httpx.Client, response_id: str, algo: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(f"/v1/signature/{response_id}", params={"signing_algo": algo}, headers=headers)


def verify_exchange(
    client: httpx.Client,
    response_id: str,
    request_body: bytes,
    response_body: bytes,
    token: str | None,
    expected_addresses: dict[str, str] | None = None,
    algos: Iterable[str] = ALGOS,
) -> dict[str, dict]:
    """Fetches the record for `response_id` with every algorithm and checks it against the bytes. Returns them."""
    records = {}
    for algo in algos:
        r = fetch_signature(client, response_id, algo, token)
        assert r.status_code == 200, f"GET /v1/signature/{response_id}?signing_algo={algo}: {r.status_code} {r.text}"
        record = r.json()
        check_signature_record(record, algo, request_body, response_body, expected_addresses)
        records[algo] = record
    return records


def verify_recorded(client: httpx.Client, ex: Exchange, response_id: str, token: str | None,
                    expected_addresses: dict[str, str] | None = None) -> dict[str, dict]:
    # The openai client stops reading an SSE body at "data: [DONE]" (the last event), before the transport sees the
    # chunked terminator; the body bytes are nevertheless all there.
    assert ex.complete or bytes(ex.response_body).endswith(b"data: [DONE]\n\n"), "response body not read to its end"
    return verify_exchange(client, response_id, ex.request_body, bytes(ex.response_body), token, expected_addresses)


# ---------------------------------------------------------------------------------------------------------------
# Errors and attestation


def check_error_envelope(r: httpx.Response, status: int, code: str | None = None) -> dict:
    """The OpenAI error envelope with `status`; with `code`, also the machine-readable error.code."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    body = r.json()
    assert set(body) == {"error"}, f"error envelope must be exactly {{'error': ...}}, got {body}"
    err = body["error"]
    missing = [f for f in ERROR_FIELDS if f not in err]
    assert not missing, f"error object lacks {missing}: {err}"
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    if code is not None:
        assert err["code"] == code, f"expected code {code!r}: {err}"
    return err


def metric_value(client: httpx.Client, name: str) -> float:
    """A counter or gauge from the proxy's /metrics (the unlabelled sample, or the first labelled one)."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", r.text, re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


def report_data_of_quote(quote_hex: str) -> bytes:
    quote = bytes.fromhex(quote_hex.removeprefix("0x"))
    assert len(quote) >= QUOTE_REPORT_DATA_OFFSET + 64, f"quote too short: {len(quote)} bytes"
    version = int.from_bytes(quote[0:2], "little")
    assert version == 4, f"expected a v4 TDX quote, got version {version}"
    return quote[QUOTE_REPORT_DATA_OFFSET:QUOTE_REPORT_DATA_OFFSET + 64]


def check_report_binding(report: dict, algo: str, nonce_hex: str) -> None:
    """report_data in the quote = signing address bytes zero-padded to 32 || nonce."""
    rd = report_data_of_quote(report["intel_quote"])
    addr = address_bytes(algo, report["signing_address"])
    assert rd[:32] == addr.ljust(32, b"\0"), f"report_data[0:32]={rd[:32].hex()} does not bind {report['signing_address']}"
    assert rd[32:] == bytes.fromhex(nonce_hex), f"report_data[32:64]={rd[32:].hex()} is not the nonce {nonce_hex}"
