"""The harness's real llama.cpp backend (scripts/run_backend.py) and the byte-capturing helpers, without the proxy."""
from __future__ import annotations

import json

import httpx

import verify_helpers as vh
from conftest import start_backend


def test_backend_answers_chat_streams_and_embeddings(backend):
    client, transport = vh.recording_client(backend.url)
    with client:
        body = json.dumps({"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}).encode()
        r = client.post("/v1/chat/completions", content=body)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["role"] == "assistant"
        ex = transport.last("/v1/chat/completions")
        assert ex.request_body == body and bytes(ex.response_body) == r.content

        stream_body = json.dumps({"messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 8,
                                  "stream": True}).encode()
        with client.stream("POST", "/v1/chat/completions", content=stream_body) as s:
            received = b"".join(s.iter_raw())
        ex = transport.last("/v1/chat/completions")
        assert ex.complete and bytes(ex.response_body) == received
        assert vh.sse_has_done(received)
        assert vh.stream_id(received).startswith("chatcmpl-")

    # a fresh connection: llama.cpp may close a kept-alive connection after a stream, which is not under test here
    with httpx.Client(base_url=backend.url, timeout=120) as fresh:
        r = fresh.post("/v1/embeddings", json={"input": "hello world"})
        assert r.status_code == 200, r.text
        emb = r.json()["data"][0]["embedding"]
        assert len(emb) == 576  # SmolLM2-135M hidden size

    slots = backend.get_json("/slots")
    assert len(slots) == 8 and all("is_processing" in s for s in slots)
    metrics = httpx.get(backend.url + "/metrics", timeout=10).text
    assert "llamacpp:tokens_predicted_total" in metrics


def test_backend_exits_cleanly_on_sigterm(stack):
    b = start_backend(stack, name="backend-sigterm")
    assert httpx.get(b.url + "/health", timeout=10).status_code == 200
    assert b.proc.stop() == 0 and not b.proc.killed, b.proc.tail()
