"""The wire-protocol test vectors (tests/vectors/*.json) agree with an independent implementation.

tests/spec/gen_vectors.py recomputes every vector from its inputs with third-party libraries (hashlib,
eth-account, cryptography) and an SSE judge written from docs/spec/streams.md; it never runs our binary.
The C++ half of the check is tests/unit/spec_vectors_test.cpp. Needs no backend, proxy or dev-tee.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "tests" / "spec" / "gen_vectors.py"
VECTORS = REPO / "tests" / "vectors"


def run_generator(*args: str) -> subprocess.CompletedProcess:
    # The interpreter running pytest is the venv's: it has eth-account and cryptography.
    return subprocess.run([sys.executable, str(GENERATOR), *args], capture_output=True, text=True, timeout=120)


def test_vectors_match_the_independent_generator():
    r = run_generator()
    assert r.returncode == 0, f"vectors differ from the independent generator:\n{r.stdout}\n{r.stderr}"
    assert "4 vector files match" in r.stdout


def test_generator_detects_a_changed_vector(tmp_path):
    # The check is not vacuous: one altered signature in a copy of the files makes it fail with a diff.
    for f in VECTORS.glob("*.json"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    ex = json.loads((tmp_path / "exchanges.json").read_text(encoding="utf-8"))
    sig = ex["cases"][0]["ed25519_signature"]
    ex["cases"][0]["ed25519_signature"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    (tmp_path / "exchanges.json").write_text(json.dumps(ex, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    r = run_generator("--dir", str(tmp_path))
    assert r.returncode == 1
    assert "ed25519_signature" in r.stdout and "differ" in r.stderr


def test_vectors_cover_the_cases_the_spec_names():
    ex = {c["name"]: c for c in json.loads((VECTORS / "exchanges.json").read_text(encoding="utf-8"))["cases"]}
    assert {"chat_nonstreaming", "chat_streaming", "embeddings_without_id", "unicode_raw_utf8"} <= ex.keys()
    assert ex["embeddings_without_id"]["record_id"] is None
    assert ex["chat_streaming"]["response_text"].endswith("data: [DONE]\n\n")
    # The same JSON value, written with escapes, is different bytes and so a different hash.
    assert ex["unicode_raw_utf8"]["response_hash"] != ex["unicode_escaped"]["response_hash"]
    st = {c["name"]: c for c in json.loads((VECTORS / "streams.json").read_text(encoding="utf-8"))["cases"]}
    assert st["chat_complete"]["signable"]
    assert not st["chat_without_done"]["signable"] and not st["chat_without_done"]["completed"]
    assert st["error_member"]["error"] and not st["error_member"]["signable"]
    assert st["no_id"]["completed"] and st["no_id"]["id"] == "" and not st["no_id"]["signable"]
