"""The official `openai` npm client streams one chat through the proxy; its exact bytes verify against the signature.

tests/js/stream_chat.mjs captures the request body the SDK sends and the raw response body through the SDK's
`fetch` option (a tee of the body stream, before the SDK parses SSE), so request_hash and response_hash are
recomputed from the exact bytes, as for the Python client.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess

import pytest

import verify_helpers as vh
from conftest import REPO

JS_DIR = REPO / "tests" / "js"


def test_openai_npm_client_stream_verifies(proxy, stack, addresses):
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "openai").is_dir():
        if os.environ.get("PI_REQUIRE_ALL") == "1":
            pytest.fail("node or tests/js/node_modules missing (run `make js-deps`)")
        pytest.skip("node or tests/js/node_modules missing (run `make js-deps`)")
    marker = stack.marker()
    env = {**os.environ, "PI_BASE_URL": proxy.url + "/v1", "PI_API_KEY": proxy.token,
           "PI_PROMPT": f"Name a fruit. Reference {marker}."}
    r = subprocess.run([node, str(JS_DIR / "stream_chat.mjs")], cwd=JS_DIR, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"stream_chat.mjs failed:\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == 200 and out["content_encoding"] in (None, "identity")
    request_body = base64.b64decode(out["request_body_b64"])
    response_body = base64.b64decode(out["response_body_b64"])
    assert marker.encode() in request_body
    assert vh.sse_has_done(response_body)
    assert out["id"] == vh.stream_id(response_body)
    assert out["content"] and out["content"] == vh.stream_content(response_body)
    stack.remember_completion(out["content"])
    with proxy.client() as c:
        vh.verify_exchange(c, out["id"], request_body, response_body, proxy.token, addresses)
