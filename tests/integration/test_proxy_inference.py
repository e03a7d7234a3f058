"""Inference through the proxy with the official `openai` client and raw httpx; every answer's signature is verified.

For every exchange the test recomputes sha256 of the exact request bytes sent and of the exact response bytes
received (captured at the transport, i.e. the de-chunked HTTP body) and checks them, the signed text, the ECDSA
signature (eth-account) and the Ed25519 signature (cryptography) for signing_algo=ecdsa and =ed25519.
"""
from __future__ import annotations

import json

import httpx
import pytest

import verify_helpers as vh
from conftest import find_addresses_in

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _chat_body(stack, prompt: str = "Write one short sentence about the sea.", **extra) -> dict:
    marker = stack.marker()
    return {"model": "smollm2", "messages": [{"role": "user", "content": f"{prompt} Reference {marker}."}],
            "max_tokens": 24, **extra}


def test_chat_non_streaming_openai_client(proxy, stack, addresses):
    client, transport = proxy.openai()
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2", max_tokens=24,
        messages=[{"role": "user", "content": f"Write one sentence about rivers. Reference {stack.marker()}."}])
    completion = raw.parse()
    ex = transport.last("/chat/completions")
    assert ex.status == 200
    assert completion.object == "chat.completion" and completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    stack.remember_completion(completion.choices[0].message.content)
    assert raw.headers.get("x-signature-id") == completion.id
    with proxy.client() as c:
        vh.verify_recorded(c, ex, completion.id, proxy.token, addresses)


def test_chat_non_streaming_raw_httpx(proxy, stack, addresses):
    client, transport = proxy.recording_client()
    body = json.dumps(_chat_body(stack), separators=(",", ":")).encode()
    with client:
        r = client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        ex = transport.last()
        assert ex.request_body == body and bytes(ex.response_body) == r.content
        stack.remember_body(r.content)
        rid = r.json()["id"]
        assert r.headers["x-signature-id"] == rid
        vh.verify_recorded(client, ex, rid, proxy.token, addresses)


def test_request_bytes_are_hashed_exactly_as_sent(proxy, stack, addresses):
    """Whitespace and key order are part of the signed request: two equivalent JSON spellings give two hashes."""
    body = _chat_body(stack)
    spellings = [json.dumps(body).encode(), json.dumps(body, indent=2, sort_keys=True).encode() + b"\n"]
    hashes = set()
    with proxy.client() as c:
        for raw in spellings:
            r = c.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
            assert r.status_code == 200, r.text
            stack.remember_body(r.content)
            rec = vh.verify_exchange(c, r.json()["id"], raw, r.content, proxy.token, addresses)
            hashes.add(rec["ecdsa"]["request_hash"])
    assert len(hashes) == 2


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_streaming_openai_client(proxy, stack, addresses, include_usage):
    client, transport = proxy.openai()
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = client.chat.completions.create(
        model="smollm2", max_tokens=24, stream=True,
        messages=[{"role": "user", "content": f"Name three colours. Reference {stack.marker()}."}], **kwargs)
    chunks = list(stream)
    ex = transport.last("/chat/completions")
    raw = bytes(ex.response_body)
    assert ex.status == 200
    assert ex.response_headers["content-type"].startswith("text/event-stream")
    assert raw.endswith(b"data: [DONE]\n\n"), raw[-80:]
    ids = {c.id for c in chunks}
    assert len(ids) == 1
    rid = ids.pop()
    assert rid == vh.stream_id(raw)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content and content == vh.stream_content(raw)
    stack.remember_completion(content)
    if include_usage:
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0 and chunks[-1].choices == []
    else:
        assert all(c.usage is None for c in chunks)
    with proxy.client() as c:
        vh.verify_recorded(c, ex, rid, proxy.token, addresses)


def test_chat_streaming_raw_httpx(proxy, stack, addresses):
    client, transport = proxy.recording_client()
    body = json.dumps(_chat_body(stack, stream=True)).encode()
    with client:
        with client.stream("POST", "/v1/chat/completions", content=body,
                           headers={"Content-Type": "application/json"}) as r:
            assert r.status_code == 200
            received = b"".join(r.iter_raw())
        ex = transport.last()
        assert bytes(ex.response_body) == received and vh.sse_has_done(received)
        stack.remember_stream(received)
        vh.verify_exchange(client, vh.stream_id(received), body, received, proxy.token, addresses)


def test_tool_call_with_tool_choice_required(proxy, stack, addresses):
    """Tools reach the backend and the answer is signed.

    Observed with xllamacpp 2026.10.11549 + SmolLM2-135M (run_backend's tool-aware template): llama.cpp renders the
    tools into the prompt but does NOT enforce tool_choice="required" with a grammar, so the model usually answers
    in plain text. The proxy's job is byte-exact forwarding and signing, so the test proves the tools were forwarded
    (prompt_tokens grows by the tool definitions) and verifies the signature; if the model does emit tool calls
    their shape is checked too.
    """
    client, transport = proxy.openai()
    messages = [{"role": "user", "content": f"What is the weather in Paris? Reference {stack.marker()}."}]
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2", max_tokens=48, messages=messages, tools=[WEATHER_TOOL], tool_choice="required")
    with_tools = raw.parse()
    ex = transport.last("/chat/completions")
    assert json.loads(ex.request_body)["tool_choice"] == "required"
    without = client.chat.completions.create(model="smollm2", max_tokens=1, messages=messages)
    assert with_tools.usage.prompt_tokens > without.usage.prompt_tokens + 20, \
        "the tool definitions did not reach the backend's prompt"
    msg = with_tools.choices[0].message
    stack.remember_completion(msg.content)
    if msg.tool_calls:
        assert with_tools.choices[0].finish_reason == "tool_calls"
        assert msg.tool_calls[0].function.name == "get_weather"
        json.loads(msg.tool_calls[0].function.arguments)
    with proxy.client() as c:
        vh.verify_recorded(c, ex, with_tools.id, proxy.token, addresses)


@pytest.mark.parametrize("stream", [False, True])
def test_completions(proxy, stack, addresses, stream):
    client, transport = proxy.openai()
    prompt = f"Reference {stack.marker()}. Once upon a time"
    if stream:
        chunks = list(client.completions.create(model="smollm2", prompt=prompt, max_tokens=16, stream=True))
        rid = chunks[0].id
        text = "".join(c.choices[0].text for c in chunks if c.choices)
    else:
        raw = client.completions.with_raw_response.create(model="smollm2", prompt=prompt, max_tokens=16)
        completion = raw.parse()
        rid, text = completion.id, completion.choices[0].text
        assert raw.headers.get("x-signature-id") == rid
    assert text
    stack.remember_completion(text)
    ex = transport.last("/completions")
    if stream:
        assert vh.sse_has_done(bytes(ex.response_body))
    with proxy.client() as c:
        vh.verify_recorded(c, ex, rid, proxy.token, addresses)


def test_embeddings(proxy, stack, addresses):
    """llama.cpp's embeddings body has no "id": the proxy generates one, carried only by X-Signature-Id."""
    client, transport = proxy.openai()
    raw = client.embeddings.with_raw_response.create(model="smollm2", input=[f"the sea {stack.marker()}", "a river"])
    result = raw.parse()
    assert len(result.data) == 2 and len(result.data[0].embedding) == 576
    ex = transport.last("/embeddings")
    sig_id = raw.headers.get("x-signature-id")
    assert sig_id, "no X-Signature-Id header on an embeddings response"
    body = json.loads(ex.response_body)
    if "id" in body:
        assert body["id"] == sig_id
    with proxy.client() as c:
        vh.verify_recorded(c, ex, sig_id, proxy.token, addresses)


def test_backend_error_passes_through_unchanged(proxy, backend):
    """A request llama.cpp rejects: status and body from the proxy equal the backend's own answer, byte for byte."""
    body = b'{"messages":"not a list","max_tokens":4}'
    direct = httpx.post(backend.url + "/v1/chat/completions", content=body,
                        headers={"Content-Type": "application/json"}, timeout=30)
    assert direct.status_code == 400  # what llama.cpp says, so the comparison below is about a real error
    with proxy.client() as c:
        via = c.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert via.status_code == direct.status_code
    assert via.content == direct.content
    assert via.headers["content-type"] == direct.headers["content-type"]


def test_unknown_model_passes_through(proxy, backend, stack, addresses):
    """Whatever llama.cpp does with an unknown model name reaches the client unchanged.

    Observed: this llama.cpp build serves one model and ignores the requested name (200, "model" = its GGUF path).
    """
    body = json.dumps({"model": "no-such-model-xyz", "max_tokens": 4,
                       "messages": [{"role": "user", "content": f"Hi {stack.marker()}"}]}).encode()
    direct = httpx.post(backend.url + "/v1/chat/completions", content=body, timeout=60)
    with proxy.client() as c:
        via = c.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
        assert via.status_code == direct.status_code
        if via.status_code == 200:
            stack.remember_body(via.content)
            assert via.json()["model"] == direct.json()["model"]
            vh.verify_exchange(c, via.json()["id"], body, via.content, proxy.token, addresses)
        else:
            assert via.content == direct.content


def test_models_and_health_are_forwarded_and_public(proxy, backend):
    with proxy.client(token=None) as c:
        models = c.get("/v1/models")
        health = c.get("/health")
    assert models.status_code == 200, models.text
    assert [m["id"] for m in models.json()["data"]] == [m["id"] for m in backend.get_json("/v1/models")["data"]]
    assert health.status_code == 200 and health.json() == backend.get_json("/health")


def test_version_reports_identity(proxy, addresses):
    with proxy.client(token=None) as c:
        r = c.get("/version")
    assert r.status_code == 200
    v = r.json()
    found = find_addresses_in(v)
    assert addresses["ecdsa"] in found["ecdsa"], f"/version does not show the ECDSA signing address: {v}"
    assert addresses["ed25519"].lower() in found["hex64"], f"/version does not show the Ed25519 key: {v}"
    assert isinstance(v["simulated"], bool), v
    if proxy.dstack is not None:  # keys from the simulated dstack agent: labelled, never presented as real
        assert v["simulated"] is True, v


def test_metrics_include_proxy_and_backend(proxy):
    with proxy.client(token=None) as c:
        r = c.get("/metrics")
    assert r.status_code == 200
    assert "llamacpp:tokens_predicted_total" in r.text, "backend /metrics not appended"
    own = [line for line in r.text.splitlines() if line and not line.startswith("#") and "llamacpp:" not in line]
    assert own, "no metrics of the proxy's own"


def test_tokenize_and_detokenize_need_token_and_are_forwarded(proxy, backend):
    body = b'{"content":"hello world"}'
    direct = httpx.post(backend.url + "/tokenize", content=body, timeout=30)
    with proxy.client(token=None) as anon:
        vh.check_error_envelope(anon.post("/tokenize", content=body), 401)
    with proxy.client() as c:
        via = c.post("/tokenize", content=body, headers={"Content-Type": "application/json"})
        assert via.status_code == 200 and via.json() == direct.json()
        back = c.post("/detokenize", json={"tokens": via.json()["tokens"]})
        assert back.status_code == 200 and back.json()["content"].strip() == "hello world"
