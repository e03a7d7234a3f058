"""dev-tee (--pki) driven by dstack's OFFICIAL SDKs, as a real guest agent is: Python `dstack-sdk` (PyPI) and
`@phala/dstack-sdk` (npm), plus the absolute-form request target NEAR's Rust `dstack-sdk` sends.

Each test asserts content, computed here independently of dev-tee: the quote's REPORTDATA is what was asked,
MRCONFIGID = 0x01 || sha256(app_compose) || 0 x 15 (as dstack's VMM sets it), the SDK's own RTMR replay of the
event log gives the quote's RTMRs, Info's app_compose hashes to the compose-hash event, keys are deterministic
per path, and EmitEvent extends RTMR3 with dstack's runtime-event digest.

SIMULATED TEE: these quotes chain to dev-tee's TEST root; they prove shape, never hardware.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PROXY_READY_TIMEOUT, REPO, _require, _subcommand_help, _unix_socket_answers, pi_binary, \
    sanitizer_env

JS_DIR = REPO / "tests" / "js"
BODY = 48  # TDX v4 quote header; the TD report body follows
RUNTIME_EVENT_TYPE = 0x08000001


def _need(ok: bool, reason: str) -> None:
    if ok:
        return
    if os.environ.get("PI_REQUIRE_ALL") == "1":
        pytest.fail(reason + " (PI_REQUIRE_ALL=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pki_tee(stack, tmp_path_factory):
    _require("--pki" in _subcommand_help("dev-tee"), f"{pi_binary()} has no `dev-tee --pki`")
    base = tmp_path_factory.mktemp("sdktee")
    sock, state = base / "dstack.sock", base / "state"
    tee = stack.start("dev-tee-sdk", "dev-tee", [str(pi_binary()), "dev-tee", "--socket", str(sock), "--state",
                                                 str(state), "--pki"], env=sanitizer_env())
    deadline = time.monotonic() + PROXY_READY_TIMEOUT
    while not _unix_socket_answers(sock):
        assert tee.alive(), tee.tail()
        assert time.monotonic() < deadline, "dev-tee --pki did not start"
        time.sleep(0.1)
    yield sock
    tee.stop()


@pytest.fixture(scope="module")
def sdk():
    try:
        import dstack_sdk  # noqa: PLC0415
    except ImportError:
        _need(False, "the Python dstack-sdk is not installed (tests/requirements.txt; run `make venv`)")
    return dstack_sdk


# ---- independent reference computations ----

def mr_config_id_for(app_compose: str) -> bytes:
    return b"\x01" + hashlib.sha256(app_compose.encode()).digest() + bytes(15)


def rtmr(quote: bytes, i: int) -> bytes:
    at = BODY + 328 + 48 * i
    return quote[at:at + 48]


def runtime_digest(event: str, payload: bytes) -> bytes:
    return hashlib.sha384(RUNTIME_EVENT_TYPE.to_bytes(4, "little") + b":" + event.encode() + b":" + payload).digest()


def replay(events: list[dict], imr: int) -> bytes:
    m = bytes(48)
    for e in events:
        if e["imr"] == imr:
            m = hashlib.sha384(m + bytes.fromhex(e["digest"])).digest()
    return m


def compose_event(events: list[dict]) -> str:
    (payload,) = [e["event_payload"] for e in events if e["event"] == "compose-hash"]
    return payload


def raw_request(sock: Path, request_line: str, body: bytes) -> tuple[int, dict]:
    """One HTTP/1.1 request with the exact request line given (e.g. an absolute-form target)."""
    head = (f"{request_line}\r\nHost: unix.socket\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(sock))
        s.sendall(head + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


# ---- Python dstack-sdk ----

def test_python_sdk_get_key_is_deterministic_per_path(pki_tee, sdk):
    c = sdk.DstackClient(str(pki_tee), timeout=60)
    a, b = c.get_key("pi/py-sdk", "signing"), c.get_key("pi/py-sdk", "signing")
    other = c.get_key("pi/py-sdk-other", "signing")
    assert len(a.decode_key()) == 32 and a.decode_key() == b.decode_key()
    assert other.decode_key() != a.decode_key()
    assert a.decode_signature_chain() == []
    # the same key over the plain dstack API (no SDK)
    status, body = raw_request(pki_tee, "POST /GetKey HTTP/1.1",
                               json.dumps({"path": "pi/py-sdk", "purpose": "signing"}).encode())
    assert status == 200 and bytes.fromhex(body["key"]) == a.decode_key()


def test_python_sdk_get_quote_and_info_are_dstack_shaped(pki_tee, sdk):
    c = sdk.DstackClient(str(pki_tee), timeout=60)
    asked = b"private-inference sdk test " + os.urandom(8).hex().encode()
    q = c.get_quote(asked)
    quote = q.decode_quote()
    assert quote[BODY + 520:BODY + 584] == asked.ljust(64, b"\0")
    assert q.report_data == asked.ljust(64, b"\0").hex()
    # the SDK's own replay of the event log reproduces the quote's RTMRs
    replayed = q.replay_rtmrs()
    for i in range(4):
        assert replayed[i] == rtmr(quote, i).hex(), f"RTMR{i}"
    info = c.info()  # parses into the SDK's InfoResponse[TcbInfoV05x]: every field dstack has is present
    app_compose = info.tcb_info.app_compose
    events = [e.model_dump() for e in q.decode_event_log()]
    assert hashlib.sha256(app_compose.encode()).hexdigest() == compose_event(events) == info.compose_hash
    assert quote[BODY + 184:BODY + 232] == mr_config_id_for(app_compose)
    assert info.tcb_info.rtmr3 == rtmr(quote, 3).hex()
    assert info.tcb_info.mrtd == quote[BODY + 136:BODY + 184].hex()
    assert json.loads(info.vm_config)["os_image_hash"] == info.os_image_hash


def test_python_sdk_emit_event_extends_rtmr3(pki_tee, sdk):
    c = sdk.DstackClient(str(pki_tee), timeout=60)
    before = c.get_quote(b"emit")
    name, payload = f"pi-py-event-{os.urandom(4).hex()}", b"model weights sha256 ..."
    c.emit_event(name, payload)
    after = c.get_quote(b"emit")
    events = json.loads(after.event_log)
    mine = [e for e in events if e["event"] == name]
    assert len(mine) == 1 and mine[0]["imr"] == 3 and mine[0]["event_type"] == RUNTIME_EVENT_TYPE
    assert bytes.fromhex(mine[0]["event_payload"]) == payload
    assert bytes.fromhex(mine[0]["digest"]) == runtime_digest(name, payload)
    q0, q1 = before.decode_quote(), after.decode_quote()
    assert rtmr(q1, 3) != rtmr(q0, 3) and rtmr(q1, 3) == replay(events, 3)
    assert all(rtmr(q1, i) == rtmr(q0, i) for i in range(3))
    assert c.info().tcb_info.rtmr3 == rtmr(q1, 3).hex()
    with pytest.raises(ValueError):
        c.emit_event("", b"x")  # the SDK refuses; dev-tee refuses too (400)
    status, body = raw_request(pki_tee, "POST /EmitEvent HTTP/1.1", b'{"event":"","payload":"00"}')
    assert status == 400 and body["simulated"] is True


def test_absolute_form_target_as_the_rust_sdk_sends_it(pki_tee):
    want = json.dumps({"path": "pi/rust", "purpose": "signing"}).encode()
    s1, origin = raw_request(pki_tee, "POST /GetKey HTTP/1.1", want)
    s2, absolute = raw_request(pki_tee, "POST http://unix.socket/GetKey HTTP/1.1", want)
    s3, prpc = raw_request(pki_tee, "POST /prpc/GetKey?json HTTP/1.1", want)
    assert (s1, s2, s3) == (200, 200, 200)
    assert origin["key"] == absolute["key"] == prpc["key"]
    s4, quote = raw_request(pki_tee, "POST http://unix.socket/GetQuote HTTP/1.1", b'{"report_data":"c0ffee"}')
    assert s4 == 200 and bytes.fromhex(quote["quote"])[BODY + 520:BODY + 523] == bytes.fromhex("c0ffee")
    s5, _ = raw_request(pki_tee, "POST http://unix.socket/NoSuchMethod HTTP/1.1", b"{}")
    assert s5 == 404


# ---- @phala/dstack-sdk (npm) ----

def test_js_sdk_get_key_quote_info_emit_event(pki_tee):
    node = shutil.which("node")
    _need(node is not None and (JS_DIR / "node_modules" / "@phala" / "dstack-sdk").is_dir(),
          "node or tests/js/node_modules/@phala/dstack-sdk missing (run `make js-deps`)")
    asked = "js sdk " + os.urandom(6).hex()
    name, payload = f"pi-js-event-{os.urandom(4).hex()}", "js payload"
    env = {**os.environ, "PI_DSTACK_SOCKET": str(pki_tee), "PI_REPORT_DATA": asked, "PI_EVENT_NAME": name,
           "PI_EVENT_PAYLOAD": payload}
    env.pop("DSTACK_SIMULATOR_ENDPOINT", None)
    r = subprocess.run([node, str(JS_DIR / "dstack_sdk_check.mjs")], cwd=JS_DIR, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"dstack_sdk_check.mjs failed:\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(bytes.fromhex(out["key1"])) == 32 and out["key1"] == out["key2"] != out["key_other"]
    assert out["signature_chain_length"] == 0
    quote = bytes.fromhex(out["quote"])
    assert quote[BODY + 520:BODY + 584] == asked.encode().ljust(64, b"\0")
    assert out["replayed_rtmrs"] == [rtmr(quote, i).hex() for i in range(4)]
    events = json.loads(out["event_log"])
    assert hashlib.sha256(out["info_app_compose"].encode()).hexdigest() == compose_event(events) \
        == out["info_compose_hash"]
    assert quote[BODY + 184:BODY + 232] == mr_config_id_for(out["info_app_compose"])
    assert out["version"].endswith("-dev-tee")
    after = bytes.fromhex(out["after_quote"])
    after_events = json.loads(out["after_event_log"])
    mine = [e for e in after_events if e["event"] == name]
    assert len(mine) == 1 and bytes.fromhex(mine[0]["event_payload"]) == payload.encode()
    assert bytes.fromhex(mine[0]["digest"]) == runtime_digest(name, payload.encode())
    assert out["after_replayed_rtmrs"][3] == rtmr(after, 3).hex() == replay(after_events, 3).hex()
    assert rtmr(after, 3) != rtmr(quote, 3)
