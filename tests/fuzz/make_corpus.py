#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<harness>/ from the recorded fixtures (tests/fixtures, see
SOURCES.md) plus a few hand-written HTTP requests, SSE streams and JSON bodies. Run it again after changing a
harness's input format; regression inputs (crash-*, from findings) live next to the seeds and are kept.

The signature records need the lead venv's eth_account and cryptography packages (PYTHON=/work/main/.venv/bin/python
or any environment with tests/requirements.txt installed)."""
import base64
import hashlib
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
OUT = ROOT / "tests" / "fuzz" / "corpus"


def fixture(rel):
    return (FIX / rel).read_bytes()


def hexfile(rel):
    return bytes.fromhex(fixture(rel).decode().strip())


def put(harness, name, data):
    d = OUT / harness
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def pyrepr(v):  # a JSON value as a Python literal (single quotes, True/False/None), as Python services print it
    return repr(v)


sample = json.loads(fixture("tdx/vllm_proxy_sample_dstack.json"))
stripped = json.loads(fixture("tdx/dstack_getquote_stripped.json"))

# --- TDX / SGX quotes ---------------------------------------------------------------------------------------
put("tdx_quote", "dcapqvl_tdx.bin", fixture("tdx/dcapqvl_tdx_quote.bin"))
put("tdx_quote", "dcapqvl_sgx.bin", fixture("tdx/dcapqvl_sgx_quote.bin"))
put("tdx_quote", "near_dstack.bin", hexfile("tdx/near_dstack_quote.hex"))
put("tdx_quote", "dstack_sim055.bin", hexfile("tdx/dstack_sim055_quote.hex"))
put("tdx_quote", "stripped.bin", bytes.fromhex(stripped["quote"]))

# --- collateral ---------------------------------------------------------------------------------------------
put("collateral", "fmspc20a06f.json", fixture("tdx/collateral_fmspc20a06f_2025-09.json"))
col = json.loads(fixture("tdx/dcapqvl_tdx_quote_collateral.json"))
put("collateral", "dcapqvl_tdx.json", json.dumps(col, separators=(",", ":")))
# Intel PCS answers, as collateral_fetch.cpp cuts the signed member out of them.
put("collateral", "pcs_tcb.json", '{"tcbInfo":' + col["tcb_info"] + ',"signature":"' + col["tcb_info_signature"] + '"}')
put("collateral", "pcs_qe.json",
    '{"enclaveIdentity":' + col["qe_identity"] + ',"signature":"' + col["qe_identity_signature"] + '"}')

# --- event logs ---------------------------------------------------------------------------------------------
put("event_log", "sim055.json", fixture("tdx/dstack_sim055_eventlog.json"))
put("event_log", "vllm_sample.json", sample["quote"]["event_log"])
put("event_log", "stripped.json", stripped["event_log"])
put("event_log", "sim055.py", pyrepr(json.loads(fixture("tdx/dstack_sim055_eventlog.json"))[:6]))
put("event_log", "string.json", json.dumps(json.dumps(json.loads(stripped["event_log"])[:4])))

# --- SPDM reports and GPU certificate chains ----------------------------------------------------------------
put("spdm", "nvtrust_hopper.bin", hexfile("nvidia/nvtrust_hopper_report.hex"))
put("spdm", "nvat_hopper.bin", hexfile("nvidia/nvat_gpu_hopperAttestationReport.txt"))
put("spdm", "nvat_blackwell.bin", hexfile("nvidia/nvat_gpu_blackwellAttestationReport.txt"))
put("gpu_cert", "nvtrust_hopper.pem", fixture("nvidia/nvtrust_hopper_certchain.pem"))
put("gpu_cert", "nvat_blackwell.pem", fixture("nvidia/nvat_gpu_blackwellCertChain.txt"))
put("gpu_cert", "nvidia_root.pem", fixture("nvidia/nvidia_device_identity_root.pem"))

# --- GPU evidence JSON (nvidia_payload) ---------------------------------------------------------------------
nonce = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
item = {"certificate": base64.b64encode(fixture("nvidia/nvtrust_hopper_certchain.pem")).decode(),
        "evidence": base64.b64encode(hexfile("nvidia/nvtrust_hopper_report.hex")).decode(), "arch": "HOPPER"}
payload = {"nonce": nonce, "evidence_list": [item], "arch": "HOPPER"}
put("gpu_evidence", "nvtrust_object.json", json.dumps(payload))
put("gpu_evidence", "nvtrust_string.json", json.dumps(json.dumps(payload)))
put("gpu_evidence", "nvat_items.json", fixture("nvidia/nvat_hopper_evidence.json"))

# --- attestation reports ------------------------------------------------------------------------------------
report = {
    "signing_address": "0x17c5185167401eD00cF5F5b2fc97D9BBfDb7D025",
    "signing_algo": "ecdsa",
    "request_nonce": "00" * 32,
    "intel_quote": sample["quote"]["quote"],
    "event_log": json.loads(sample["quote"]["event_log"]),
    "info": sample["info"],
    "nvidia_payload": json.dumps(payload),
}
put("attestation", "vllm_sample.json", json.dumps(report))
small = dict(report, intel_quote=stripped["quote"], event_log=stripped["event_log"], info=pyrepr(sample["info"]))
small.pop("nvidia_payload")
small["gpu_evidence"] = [dict(item, nonce=nonce)]
put("attestation", "stripped_python_info.json", json.dumps(small))
put("attestation", "dstack_getquote.json", json.dumps({"signing_address": "0x00", "quote": stripped}))

# --- signature records --------------------------------------------------------------------------------------
REQ = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
RES = b'{"id":"chatcmpl-fuzz","object":"chat.completion","choices":[]}'
text = hashlib.sha256(REQ).hexdigest() + ":" + hashlib.sha256(RES).hexdigest()
try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from eth_account import Account
    from eth_account.messages import encode_defunct

    acct = Account.from_key(bytes([0x42] * 32))
    ecdsa_sig = "0x" + bytes(acct.sign_message(encode_defunct(text=text)).signature).hex()
    ed = Ed25519PrivateKey.from_private_bytes(bytes([0x24] * 32))
    ed_pub = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    ed_sig = ed.sign(text.encode()).hex()
    for algo, sig, addr in (("ecdsa", ecdsa_sig, acct.address), ("ed25519", ed_sig, ed_pub)):
        rec = {"text": text, "signature": sig, "signing_address": addr, "signing_algo": algo,
               "request_hash": text[:64], "response_hash": text[65:], "ecdsa_signature": ecdsa_sig,
               "ed25519_signature": ed_sig, "ecdsa_signing_address": acct.address,
               "ed25519_signing_address": ed_pub}
        put("signature", f"{algo}.json", json.dumps(rec))
    put("signature", "vllm_proxy.json", json.dumps(
        {"text": text, "signature": ecdsa_sig, "signing_address": acct.address, "signing_algo": "ecdsa"}))
except ImportError as e:
    sys.exit(f"signature records need eth_account and cryptography: {e}")

# --- NRAS -----------------------------------------------------------------------------------------------------
nras = json.loads(fixture("nvidia/vllm_proxy_nras_sample_response.json"))
put("nras", "answer.json", json.dumps(nras))
put("nras", "answer_ppcie.json", fixture("nvidia/vllm_proxy_nras_sample_ppcie_response.json"))
put("nras", "overall.jwt", nras[0][1])
put("nras", "detached.jwt", next(iter(nras[1].values())))
put("nras", "jwks.json", json.dumps({"keys": [
    {"kty": "EC", "crv": "P-384", "kid": "k1", "use": "sig",
     "x": "iA7lWQLzVrKGEFjfGMfMHfTEZ2KnLiKU7JuNT3E7ygsfE7ygsfE7ygsfE7ygsfE7",
     "y": "iA7lWQLzVrKGEFjfGMfMHfTEZ2KnLiKU7JuNT3E7ygsfE7ygsfE7ygsfE7ygsfE7"},
    {"kty": "EC", "kid": "k2", "x5c": [base64.b64encode(b"not a certificate").decode()]}]}))

# --- SSE streams (byte 0: max_line / 2, 0 = default; byte 1: chunking seed) -----------------------------------
chat = ('data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}'
        '\n\ndata: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
put("sse", "chat", b"\x00\x07" + chat.encode())
put("sse", "chat_crlf", b"\x00\x21" + chat.replace("\n", "\r\n").encode())
put("sse", "short_lines", b"\x20\x05" + chat.encode())
put("sse", "responses_api", b"\x00\x33" + (
    'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1"}}\n\n'
    'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"hi"}\n\n'
    'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1"}}\n\n').encode())
put("sse", "error", b"\x00\x01" + (
    'data: {"id":"x","choices":[]}\n\ndata: {"error":{"message":"boom"}}\n\nevent: error\ndata: {}\n\n'
    'data: {"object":"error"}\n\n').encode())

# --- JSON request bodies ------------------------------------------------------------------------------------
put("json_check", "chat.json", REQ)
put("json_check", "tools.json", json.dumps({"model": "m", "stream": True, "tools": [{"type": "function", "function": {
    "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": ["number", "null"]}}}}}],
    "messages": [{"role": "user", "content": "caf\u00e9 \U0001f600 \\u00e9"}], "temperature": -1.5e-3,
    "n": 1, "stop": None, "logprobs": False}, ensure_ascii=False))
put("json_check", "scalars.json", '[0,-0,1E+2,0.5e-10,"\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\\"",true,false,null,{}]')
put("json_check", "nested.json", "[" * 40 + "]" * 40)

# --- HTTP requests through the proxy (byte 0: engine answer mode 0..3) ----------------------------------------
AUTH = "Authorization: Bearer fuzz-token\r\n"


def post(target, body, extra="", mode=0):
    return bytes([mode]) + (f"POST {target} HTTP/1.1\r\nHost: proxy\r\n{AUTH}Content-Type: application/json\r\n"
                            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


stream = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'
put("http", "chat", post("/v1/chat/completions", REQ))
put("http", "chat_stream", post("/v1/chat/completions", stream, mode=1))
put("http", "chat_stream_cut", post("/v1/chat/completions", stream, mode=2))
put("http", "completions_500", post("/v1/completions", b'{"model":"m","prompt":"hi"}', mode=3))
put("http", "responses", post("/v1/responses", b'{"model":"m","input":"hi","stream":true}', mode=1))
put("http", "chunked", b"\x00" + (f"POST /v1/chat/completions HTTP/1.1\r\nHost: p\r\n{AUTH}"
                                   "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
                                   f"10\r\n{REQ[:16].decode()}\r\n{len(REQ) - 16:x}\r\n{REQ[16:].decode()}\r\n0\r\n\r\n"
                                   ).encode())
put("http", "get_routes", b"\x00" + (
    "GET /version HTTP/1.1\r\nHost: p\r\n\r\n"
    "GET /health HTTP/1.1\r\nHost: p\r\n\r\n"
    "GET /v1/models HTTP/1.1\r\nHost: p\r\n\r\n"
    "HEAD /metrics HTTP/1.1\r\nHost: p\r\n\r\n"
    f"GET /v1/signature/chatcmpl-fuzz?signing_algo=ed25519 HTTP/1.1\r\nHost: p\r\n{AUTH}\r\n"
    "GET /nope?x=%41 HTTP/1.1\r\nHost: p\r\n\r\n").encode())
put("http", "attestation", b"\x00" + (
    "GET /v1/attestation/report?nonce=" + "ab" * 32 + "&signing_algo=ecdsa HTTP/1.1\r\nHost: p\r\n\r\n").encode())
put("http", "pipelined_signed", post("/v1/chat/completions", REQ) + (
    f"GET /v1/signature/chatcmpl-fuzz HTTP/1.1\r\nHost: p\r\n{AUTH}Connection: close\r\n\r\n").encode())
put("http", "http10_expect", b"\x00" + (
    f"POST /v1/embeddings HTTP/1.0\r\n{AUTH}Expect: 100-continue\r\nContent-Length: 25\r\n\r\n"
    '{"model":"m","input":"x"}').encode())
put("http", "bad_te", b"\x00" + (
    f"POST /tokenize HTTP/1.1\r\nHost: p\r\n{AUTH}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n").encode())
print(f"corpus written under {OUT}")
