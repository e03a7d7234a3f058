#!/usr/bin/env python3
"""Independent regenerator of the wire-protocol test vectors in tests/vectors/*.json.

The vectors pin the rules of docs/spec/ (hashing-and-signing.md, report-data.md, streams.md,
signature-record.md). This script recomputes every derived value from the inputs defined below,
using only libraries this project did not write:

  * hashlib                        SHA-256
  * eth-account / eth-keys / eth-utils   EIP-191 personal_sign, keccak-256, EIP-55 addresses
  * cryptography                   Ed25519 (RFC 8032)

The SSE completeness verdicts are recomputed by `judge_stream` below, a second implementation of
docs/spec/streams.md written from the spec (not a port of src/protocol/sse.cpp). It never runs the
project's binary.

    gen_vectors.py            check: exit 1 and print a diff if any file differs from what it regenerates
    gen_vectors.py --write    (re)write tests/vectors/*.json

The C++ side (tests/unit/spec_vectors_test.cpp) checks the same files against src/protocol.
"""
from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys import keys as eth_keys
from eth_utils import keccak

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"

# ---------------------------------------------------------------------------------------------
# Inputs (docs/spec/test-vectors.md states them too). Everything else is derived.

ECDSA_SECRET = bytes(range(0x01, 0x21))  # secp256k1 secret key 0x0102…20
ED25519_SEED = bytes(range(0x21, 0x41))  # Ed25519 seed (RFC 8032 private key) 0x2122…40
NONCE = bytes(range(0xC0, 0xE0))  # report_data nonce 0xc0c1…df
TLS_CERT_FINGERPRINT = bytes(range(0xE0, 0x100))  # NEAR layout fingerprint 0xe0e1…ff
BEARER_TOKEN = "sk-spec-vector-token"

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_SSE_LINE = 8 << 20  # docs/spec/streams.md: longest inspectable line, in bytes


def _chunk(cid: str, delta: str, finish: str = "null") -> str:
    return (
        '{"id":"' + cid + '","object":"chat.completion.chunk","created":1700000000,"model":"spec-model",'
        '"choices":[{"index":0,"delta":' + delta + ',"logprobs":null,"finish_reason":' + finish + "}]}"
    )


def _sse(*payloads: str, event: str | None = None) -> str:
    return "".join(("event: " + event + "\n" if event else "") + "data: " + p + "\n\n" for p in payloads)


CHAT_STREAM = (
    _sse(
        _chunk("chatcmpl-spec-0002", '{"role":"assistant","content":""}'),
        _chunk("chatcmpl-spec-0002", '{"content":"Hel"}'),
        _chunk("chatcmpl-spec-0002", '{"content":"lo!"}'),
        _chunk("chatcmpl-spec-0002", "{}", '"stop"'),
    )
    + "data: [DONE]\n\n"
)

RESPONSES_STREAM = (
    _sse(
        '{"type":"response.created","sequence_number":0,"response":{"id":"resp_spec_0003","object":"response",'
        '"status":"in_progress"}}',
        event="response.created",
    )
    + _sse(
        '{"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_spec_0003","output_index":0,'
        '"content_index":0,"delta":"Hi there"}',
        event="response.output_text.delta",
    )
    + _sse(
        '{"type":"response.completed","sequence_number":2,"response":{"id":"resp_spec_0003","object":"response",'
        '"status":"completed"}}',
        event="response.completed",
    )
)

UNICODE_CONTENT = "Grüße zurück — 你好 🙂"

# name, endpoint, response content type, request text, response text, intended record id
# (None: the body has no id, the proxy generates "pi-" + 24 hex)
EXCHANGES = [
    (
        "chat_nonstreaming",
        "POST /v1/chat/completions",
        "application/json",
        '{"model":"spec-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":8}',
        '{"id":"chatcmpl-spec-0001","object":"chat.completion","created":1700000000,"model":"spec-model",'
        '"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"logprobs":null,'
        '"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13}}',
        "chatcmpl-spec-0001",
    ),
    (
        "chat_streaming",
        "POST /v1/chat/completions",
        "text/event-stream",
        '{"model":"spec-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":8,"stream":true}',
        CHAT_STREAM,
        "chatcmpl-spec-0002",
    ),
    (
        "responses_streaming",
        "POST /v1/responses",
        "text/event-stream",
        '{"model":"spec-model","input":"Say hi.","stream":true}',
        RESPONSES_STREAM,
        "resp_spec_0003",
    ),
    (
        "embeddings_without_id",
        "POST /v1/embeddings",
        "application/json",
        '{"model":"spec-model","input":"hello"}',
        '{"model":"spec-model","object":"list","usage":{"prompt_tokens":2,"total_tokens":2},'
        '"data":[{"embedding":[0.125,-0.25,0.5],"index":0,"object":"embedding"}]}',
        None,
    ),
    (
        "unicode_raw_utf8",
        "POST /v1/chat/completions",
        "application/json",
        '{"model":"spec-model","messages":[{"role":"user","content":"Grüße, 世界! 🙂"}]}',
        '{"id":"chatcmpl-spec-0004","object":"chat.completion","created":1700000000,"model":"spec-model",'
        '"choices":[{"index":0,"message":{"role":"assistant","content":"' + UNICODE_CONTENT + '"},'
        '"finish_reason":"stop"}]}',
        "chatcmpl-spec-0004",
    ),
    (
        # The same JSON value as unicode_raw_utf8 with \\u escapes: different bytes, so a different hash.
        "unicode_escaped",
        "POST /v1/chat/completions",
        "application/json",
        '{"model":"spec-model","messages":[{"role":"user","content":"Grüße, 世界! 🙂"}]}',
        '{"id":"chatcmpl-spec-0004","object":"chat.completion","created":1700000000,"model":"spec-model",'
        '"choices":[{"index":0,"message":{"role":"assistant","content":'
        + json.dumps(UNICODE_CONTENT)
        + '},"finish_reason":"stop"}]}',
        "chatcmpl-spec-0004",
    ),
]

_ID = "chatcmpl-spec-s"
# name, description, stream text, intended (id, completed, error)
STREAMS = [
    ("chat_complete", "a complete chat stream ending in data: [DONE]", CHAT_STREAM, ("chatcmpl-spec-0002", True, False)),
    (
        "chat_without_done",
        "the engine stopped before data: [DONE]",
        CHAT_STREAM[: -len("data: [DONE]\n\n")],
        ("chatcmpl-spec-0002", False, False),
    ),
    (
        "chat_cut_mid_event",
        "the stream was cut inside an event",
        CHAT_STREAM[: CHAT_STREAM.index('"content":"lo!"')],
        ("chatcmpl-spec-0002", False, False),
    ),
    (
        "done_without_final_newline",
        "data: [DONE] is not terminated by LF, so the line does not count",
        _sse(_chunk(_ID + "1", '{"content":"x"}')) + "data: [DONE]",
        (_ID + "1", False, False),
    ),
    (
        "done_without_space",
        "data:[DONE] (no space after the colon) completes the stream",
        _sse(_chunk(_ID + "2", '{"content":"x"}')) + "data:[DONE]\n\n",
        (_ID + "2", True, False),
    ),
    (
        "done_with_two_spaces",
        "only one space after data: is removed; ' [DONE]' is not the terminator",
        _sse(_chunk(_ID + "3", '{"content":"x"}')) + "data:  [DONE]\n\n",
        (_ID + "3", False, False),
    ),
    (
        "crlf_line_endings",
        "CR LF line endings: the CR is removed before the line is inspected",
        (_sse(_chunk(_ID + "4", '{"content":"x"}')) + "data: [DONE]\n\n").replace("\n", "\r\n"),
        (_ID + "4", True, False),
    ),
    (
        "error_member",
        "an event whose top-level object has a non-null error member",
        _sse(
            _chunk(_ID + "5", '{"content":"x"}'),
            '{"error":{"message":"engine failure","type":"server_error","param":null,"code":null}}',
        )
        + "data: [DONE]\n\n",
        (_ID + "5", True, True),
    ),
    (
        "error_null",
        "\"error\": null is not an error",
        _sse('{"id":"' + _ID + '6","object":"chat.completion.chunk","choices":[],"error":null}') + "data: [DONE]\n\n",
        (_ID + "6", True, False),
    ),
    (
        "object_error",
        "an event with \"object\": \"error\" (vLLM's in-stream error shape)",
        _sse(
            _chunk(_ID + "7", '{"content":"x"}'),
            '{"object":"error","message":"request cancelled","type":"BadRequestError","param":null,"code":400}',
        )
        + "data: [DONE]\n\n",
        (_ID + "7", True, True),
    ),
    (
        "event_error_line",
        "an event: error field line",
        _sse(_chunk(_ID + "8", '{"content":"x"}')) + 'event: error\ndata: {"message":"overloaded"}\n\n' + "data: [DONE]\n\n",
        (_ID + "8", True, True),
    ),
    (
        "error_after_done",
        "an error event after data: [DONE] still makes the stream unsignable",
        _sse(_chunk(_ID + "9", '{"content":"x"}'))
        + "data: [DONE]\n\n"
        + _sse('{"error":{"message":"late failure","type":"server_error"}}'),
        (_ID + "9", True, True),
    ),
    (
        "content_mentions_error",
        "generated text containing the word \"error\" is not an error",
        _sse(_chunk(_ID + "10", '{"content":"The word \\"error\\" is harmless."}')) + "data: [DONE]\n\n",
        (_ID + "10", True, False),
    ),
    (
        "nested_error_member",
        "only a top-level error member counts, not a nested one",
        _sse('{"id":"' + _ID + '11","choices":[],"metadata":{"error":"not at top level"}}') + "data: [DONE]\n\n",
        (_ID + "11", True, False),
    ),
    (
        "no_id",
        "a complete stream whose events carry no id cannot be keyed, so it is not signed",
        _sse(
            '{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"x"}}]}',
            '{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
        )
        + "data: [DONE]\n\n",
        ("", True, False),
    ),
    (
        "id_in_later_event",
        "the id is taken from the first event that has one",
        _sse('{"object":"chat.completion.chunk","choices":[]}', _chunk(_ID + "12", '{"content":"x"}'), _chunk(_ID + "13", "{}"))
        + "data: [DONE]\n\n",
        (_ID + "12", True, False),
    ),
    (
        "empty_string_id",
        "an empty id is no id; a later event's id is used",
        _sse('{"id":"","object":"chat.completion.chunk","choices":[]}', _chunk(_ID + "14", '{"content":"x"}'))
        + "data: [DONE]\n\n",
        (_ID + "14", True, False),
    ),
    (
        "comments_and_non_json",
        "comment lines, other fields and non-JSON data are ignored",
        ": keep-alive\n\nretry: 1000\nid: 7\n"
        + _sse("not json", _chunk(_ID + "15", '{"content":"x"}'), "[1,2,3]")
        + "data: [DONE]\n\n",
        (_ID + "15", True, False),
    ),
    ("responses_completed", "a Responses-API stream ending in response.completed", RESPONSES_STREAM, ("resp_spec_0003", True, False)),
    (
        "responses_without_completed",
        "a Responses-API stream without response.completed",
        RESPONSES_STREAM[: RESPONSES_STREAM.index("event: response.completed")],
        ("resp_spec_0003", False, False),
    ),
    (
        "responses_failed",
        "a Responses-API stream ending in response.failed",
        RESPONSES_STREAM[: RESPONSES_STREAM.index("event: response.completed")]
        + _sse(
            '{"type":"response.failed","sequence_number":2,"response":{"id":"resp_spec_0003","status":"failed"}}',
            event="response.failed",
        ),
        ("resp_spec_0003", False, True),
    ),
    (
        "responses_incomplete_event_line",
        "an event: response.incomplete line marks an error even if its data says nothing",
        RESPONSES_STREAM[: RESPONSES_STREAM.index("event: response.completed")]
        + 'event: response.incomplete\ndata: {"sequence_number":2}\n\n'
        + RESPONSES_STREAM[RESPONSES_STREAM.index("event: response.completed") :],
        ("resp_spec_0003", True, True),
    ),
    (
        "responses_error_type",
        "a Responses-API event with \"type\": \"error\"",
        RESPONSES_STREAM[: RESPONSES_STREAM.index("event: response.completed")]
        + _sse('{"type":"error","sequence_number":2,"code":"server_error","message":"failed"}')
        + RESPONSES_STREAM[RESPONSES_STREAM.index("event: response.completed") :],
        ("resp_spec_0003", True, True),
    ),
]

# ---------------------------------------------------------------------------------------------
# The rules, from the spec.


def sha256_hex(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def signed_text(request: bytes, response: bytes) -> str:
    return sha256_hex(request) + ":" + sha256_hex(response)


def ecdsa_sign(text: str) -> str:
    signed = Account.sign_message(encode_defunct(text=text), private_key=ECDSA_SECRET)
    sig = bytes(signed.signature)
    assert len(sig) == 65 and sig[64] in (27, 28), "v must be 27 or 28"
    assert int.from_bytes(sig[32:64], "big") <= SECP256K1_N // 2, "s must be low"
    out = "0x" + sig.hex()
    assert Account.recover_message(encode_defunct(text=text), signature=out) == ecdsa_address()
    return out


def eip191_digest(text: str) -> str:
    m = text.encode("utf-8")
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(m)).encode("ascii") + m).hex()


def ecdsa_address() -> str:
    return Account.from_key(ECDSA_SECRET).address  # EIP-55 checksummed


def ecdsa_public_key() -> bytes:
    pub = eth_keys.PrivateKey(ECDSA_SECRET).public_key.to_bytes()  # 64 bytes, no 0x04
    assert keccak(pub)[-20:] == bytes.fromhex(ecdsa_address()[2:])
    return pub


def ed25519_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(ED25519_SEED)


def ed25519_public_key() -> bytes:
    return ed25519_key().public_key().public_bytes_raw()


def ed25519_sign(text: str) -> str:
    sig = ed25519_key().sign(text.encode("utf-8"))
    ed25519_key().public_key().verify(sig, text.encode("utf-8"))
    return sig.hex()


def address_bytes(algo: str) -> bytes:
    return bytes.fromhex(ecdsa_address()[2:]) if algo == "ecdsa" else ed25519_public_key()


def signing_address(algo: str) -> str:
    return ecdsa_address() if algo == "ecdsa" else ed25519_public_key().hex()


def report_data_vllm(algo: str) -> bytes:
    a = address_bytes(algo)
    return a + bytes(32 - len(a)) + NONCE


def report_data_near_tls(algo: str) -> bytes:
    return hashlib.sha256(address_bytes(algo) + TLS_CERT_FINGERPRINT).digest() + NONCE


def response_id(body: bytes) -> str | None:
    """Top-level string "id" of a JSON object body, else None."""
    try:
        v = json.loads(body.decode("utf-8"), parse_constant=_reject)
    except ValueError:
        return None
    if isinstance(v, dict) and isinstance(v.get("id"), str):
        return v["id"]
    return None


def _reject(name: str):
    raise ValueError(name)


def judge_stream(data: bytes) -> dict:
    """docs/spec/streams.md, section "Completeness": id, completed, error, signable."""
    state = {"id": "", "completed": False, "error": False, "overflow": False}
    *lines, tail = data.split(b"\n")
    if len(tail) > MAX_SSE_LINE:
        state["overflow"] = True
    for raw in lines:
        if len(raw) > MAX_SSE_LINE:
            state["overflow"] = True
            continue
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line.startswith(b"data:"):
            _judge_data(_field_value(line[5:]), state)
        elif line.startswith(b"event:"):
            if _field_value(line[6:]) in (b"error", b"response.failed", b"response.incomplete"):
                state["error"] = True
    state["signable"] = state["completed"] and not state["error"] and not state["overflow"] and state["id"] != ""
    return state


def _field_value(v: bytes) -> bytes:
    return v[1:] if v.startswith(b" ") else v


def _judge_data(payload: bytes, state: dict) -> None:
    if payload == b"[DONE]":
        state["completed"] = True
        return
    need_id = state["id"] == ""
    if not need_id and b'"error"' not in payload and b'"response.' not in payload:
        return  # spec: such an event cannot change the verdict
    try:
        v = json.loads(payload.decode("utf-8"), parse_constant=_reject)
    except ValueError:
        return
    if not isinstance(v, dict):
        return
    if "error" in v and v["error"] is not None:
        state["error"] = True
    if v.get("object") == "error":
        state["error"] = True
    t = v.get("type")
    if isinstance(t, str):
        if t == "response.completed":
            state["completed"] = True
        if t in ("error", "response.failed", "response.incomplete"):
            state["error"] = True
    if need_id:
        if isinstance(v.get("id"), str):
            state["id"] = v["id"]
        elif isinstance(v.get("response"), dict) and isinstance(v["response"].get("id"), str):
            state["id"] = v["response"]["id"]


def owner_tag(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).digest()[:8].hex()


# ---------------------------------------------------------------------------------------------
# The files.


def signature_response(req_hash: str, res_hash: str, text: str, ecdsa_sig: str, ed_sig: str, algo: str) -> dict:
    # Field order as the proxy serialises it (order is not significant to clients).
    return {
        "text": text,
        "signature": ecdsa_sig if algo == "ecdsa" else ed_sig,
        "signing_address": signing_address(algo),
        "signing_algo": algo,
        "request_hash": req_hash,
        "response_hash": res_hash,
        "ecdsa_signature": ecdsa_sig,
        "ed25519_signature": ed_sig,
        "ecdsa_signing_address": signing_address("ecdsa"),
        "ed25519_signing_address": signing_address("ed25519"),
    }


def keys_file() -> dict:
    return {
        "description": "Fixed test keys, their addresses and the report_data layouts (docs/spec/report-data.md). "
        "Regenerate with tests/spec/gen_vectors.py --write.",
        "ecdsa": {
            "secret_hex": ECDSA_SECRET.hex(),
            "public_key_hex": ecdsa_public_key().hex(),
            "address": ecdsa_address(),
            "address_bytes_hex": address_bytes("ecdsa").hex(),
        },
        "ed25519": {
            "seed_hex": ED25519_SEED.hex(),
            "public_key_hex": ed25519_public_key().hex(),
            "address": signing_address("ed25519"),
            "address_bytes_hex": address_bytes("ed25519").hex(),
        },
        "nonce_hex": NONCE.hex(),
        "tls_cert_fingerprint_hex": TLS_CERT_FINGERPRINT.hex(),
        "report_data": {
            "vllm_proxy": {a: report_data_vllm(a).hex() for a in ("ecdsa", "ed25519")},
            "near_tls": {a: report_data_near_tls(a).hex() for a in ("ecdsa", "ed25519")},
            "near_tls_sha256_input": {a: (address_bytes(a) + TLS_CERT_FINGERPRINT).hex() for a in ("ecdsa", "ed25519")},
        },
        "record_namespace": {
            "bearer_token": BEARER_TOKEN,
            "authorization_header": "Bearer " + BEARER_TOKEN,
            "owner_tag": owner_tag(BEARER_TOKEN),
        },
    }


def exchanges_file() -> dict:
    cases = []
    for name, endpoint, ctype, req_text, res_text, intended_id in EXCHANGES:
        req, res = req_text.encode("utf-8"), res_text.encode("utf-8")
        rq, rs = sha256_hex(req), sha256_hex(res)
        text = signed_text(req, res)
        ecdsa_sig, ed_sig = ecdsa_sign(text), ed25519_sign(text)
        if ctype == "text/event-stream":
            verdict = judge_stream(res)
            assert verdict["signable"], name
            record_id, source = verdict["id"], "stream"
        else:
            record_id = response_id(res)
            source = "body" if record_id is not None else "generated"
        assert record_id == intended_id, (name, record_id)
        cases.append(
            {
                "name": name,
                "endpoint": endpoint,
                "response_content_type": ctype,
                "request_text": req_text,
                "request_hex": req.hex(),
                "response_text": res_text,
                "response_hex": res.hex(),
                "request_hash": rq,
                "response_hash": rs,
                "text": text,
                "eip191_digest": eip191_digest(text),
                "ecdsa_signature": ecdsa_sig,
                "ed25519_signature": ed_sig,
                "record_id": record_id,
                "record_id_source": source,
                "signature_response": {
                    a: signature_response(rq, rs, text, ecdsa_sig, ed_sig, a) for a in ("ecdsa", "ed25519")
                },
            }
        )
    return {
        "description": "Signed exchanges with the keys of keys.json (docs/spec/hashing-and-signing.md, "
        "signature-record.md). *_hex are the exact bytes; *_text the same bytes as UTF-8. "
        "Regenerate with tests/spec/gen_vectors.py --write.",
        "keys": "keys.json",
        "cases": cases,
    }


def streams_file() -> dict:
    cases = []
    for name, description, text, (intended_id, intended_completed, intended_error) in STREAMS:
        data = text.encode("utf-8")
        v = judge_stream(data)
        assert (v["id"], v["completed"], v["error"]) == (intended_id, intended_completed, intended_error), (name, v)
        cases.append(
            {
                "name": name,
                "description": description,
                "stream_text": text,
                "stream_hex": data.hex(),
                "id": v["id"],
                "completed": v["completed"],
                "error": v["error"],
                "signable": v["signable"],
            }
        )
    return {
        "description": "SSE completeness verdicts (docs/spec/streams.md). stream_hex is the exact response body; "
        "stream_text the same bytes as UTF-8. Regenerate with tests/spec/gen_vectors.py --write.",
        "cases": cases,
    }


def ecdsa_forms_file() -> dict:
    """The accepted and rejected encodings of one ECDSA signature (docs/spec/hashing-and-signing.md §4.1)."""
    text = signed_text(b"{}", b"{}")
    canonical = bytes.fromhex(ecdsa_sign(text)[2:])
    r, s, v = canonical[:32], int.from_bytes(canonical[32:64], "big"), canonical[64]
    high = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # the same key's high-s twin, v flipped
    # eth-account recovers the signer from every form below: the verdicts are the spec's rule, not recoverability
    for sig in (canonical, high, canonical[:64] + bytes([v - 27])):
        assert Account.recover_message(encode_defunct(text=text), signature=sig) == ecdsa_address()

    def form(name: str, sig: bytes, strict: bool, compat: bool, why: str) -> dict:
        return {"name": name, "signature": "0x" + sig.hex(), "accept": strict, "accept_with_v01_compat": compat,
                "why": why}

    return {
        "description": "ECDSA signature encodings a verifier accepts or rejects for the text of two empty JSON "
        "objects with the ECDSA key of keys.json (docs/spec/hashing-and-signing.md section 4.1). Regenerate with "
        "tests/spec/gen_vectors.py --write.",
        "text": text,
        "signing_address": ecdsa_address(),
        "forms": [
            form("canonical", canonical, True, True, "low s, v = 27 + recid: what the proxy writes"),
            form("v_0_1", canonical[:64] + bytes([v - 27]), False, True, "the bare recovery id as v"),
            form("high_s", high, False, False, "s replaced by n - s (recid flipped): malleated, never produced"),
            form("v_29", canonical[:64] + bytes([29 + (v - 27)]), False, False, "v outside 27/28 and 0/1"),
        ],
    }


def render(obj: dict) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="write the files instead of checking them")
    ap.add_argument("--dir", type=Path, default=VECTORS_DIR, help="vector directory (default: %(default)s)")
    args = ap.parse_args()

    files = {
        "keys.json": keys_file(),
        "exchanges.json": exchanges_file(),
        "streams.json": streams_file(),
        "ecdsa_forms.json": ecdsa_forms_file(),
    }
    if args.write:
        args.dir.mkdir(parents=True, exist_ok=True)
        for name, obj in files.items():
            (args.dir / name).write_text(render(obj), encoding="utf-8")
            print(f"wrote {args.dir / name}")
        return 0
    bad = 0
    for name, obj in files.items():
        path = args.dir / name
        want = render(obj)
        have = path.read_text(encoding="utf-8") if path.exists() else ""
        if have != want:
            bad += 1
            sys.stdout.writelines(
                difflib.unified_diff(
                    have.splitlines(keepends=True), want.splitlines(keepends=True), f"{path} (on disk)", f"{path} (regenerated)"
                )
            )
    if bad:
        print(f"\n{bad} vector file(s) differ from what the independent generator computes", file=sys.stderr)
        return 1
    print(f"{len(files)} vector files match the independent generator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
