"""Integration-test harness: a real llama.cpp backend, the dev-tee (simulated dstack agent) and the proxy.

All processes listen on 127.0.0.1 with free ports, write their stdout/stderr to files under one log directory
(PI_TEST_LOG_DIR, else a pytest tmp dir; printed at the end of the run) and are always stopped at session end.

At session end the harness asserts that
  * every proxy exited with status 0 on SIGTERM (within 15 s), and
  * the proxy and dev-tee logs contain none of the unique marker strings used in prompts, none of the
    completions' texts and none of the bearer tokens ("nothing in the logs contains a prompt or a completion").

Environment:
  PI_BINARY        the private-inference binary (default: build-asan/private-inference in the repo)
  PI_TEST_LOG_DIR  keep the process logs there
  PI_PROXY_LOG_LEVEL  the proxies' --log-level (default trace: the leak scan then sees every log statement)
  PI_REQUIRE_ALL=1 fail instead of skipping when the binary lacks `serve` or `dev-tee` (for CI once both landed)
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import verify_helpers as vh  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROXY_READY_TIMEOUT = 90.0  # ASan builds start slowly on a shared 2-core machine
BACKEND_READY_TIMEOUT = 180.0
STOP_TIMEOUT = 15.0
MIN_COMPLETION_LEN = 12  # shorter completion texts ("Hello!") could appear in a log by coincidence
MODEL_NAME = "smollm2"
# The most verbose level by default, so the log-leak scan covers every log statement the proxy has.
PROXY_LOG_LEVEL = os.environ.get("PI_PROXY_LOG_LEVEL", "trace")


def pi_binary() -> Path:
    p = Path(os.environ.get("PI_BINARY", "build-asan/private-inference"))
    return p if p.is_absolute() else REPO / p


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require(ok: bool, reason: str) -> None:
    if ok:
        return
    if not pi_binary().is_file():
        reason = f"{pi_binary()} is not built (set PI_BINARY)"
    if os.environ.get("PI_REQUIRE_ALL") == "1":
        pytest.fail(reason + " (PI_REQUIRE_ALL=1)")
    pytest.skip(reason)


def _subcommand_help(sub: str) -> str:
    binary = pi_binary()
    if not binary.is_file():
        return ""
    try:
        r = subprocess.run([str(binary), sub, "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout + r.stderr if r.returncode == 0 else ""


def sanitizer_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    for var in ("DSTACK_SIMULATOR_ENDPOINT", "VLLM_BASE_URL", "TOKEN", "MODEL_NAME", "LISTEN", "VLLM_API_KEY",
                "CHAT_CACHE_EXPIRATION", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB", "PI_STORE"):
        env.pop(var, None)  # the harness passes everything explicitly
    return env


# ---------------------------------------------------------------------------------------------------------------
# Processes


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the test runner dies (e.g. pytest-timeout's os._exit),
    so no backend/proxy outlives a killed test session."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Proc:
    def __init__(self, name: str, role: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None):
        self.name, self.role, self.argv = name, role, argv
        self.out_path = log_dir / f"{name}.stdout.log"
        self.err_path = log_dir / f"{name}.stderr.log"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.popen = subprocess.Popen(argv, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                      env=env, start_new_session=True, preexec_fn=_die_with_parent)
        self.returncode: int | None = None
        self.killed = False

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit status (negative: killed by that signal)."""
        if self.returncode is not None:
            return self.returncode
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self.returncode = self.popen.returncode
        self._out.close()
        self._err.close()
        return self.returncode

    def logs(self) -> str:
        for f in (self._out, self._err):
            if not f.closed:
                f.flush()
        return self.out_path.read_bytes().decode("utf-8", "replace") + self.err_path.read_bytes().decode(
            "utf-8", "replace")

    def tail(self, n: int = 25) -> str:
        """The last lines of the log (long lines cut); for a sanitizer report, its first lines instead."""
        lines = self.logs().splitlines()
        for i, line in enumerate(lines):
            if "ERROR: AddressSanitizer" in line or "runtime error:" in line:
                lines = lines[max(0, i - 3):]
                break
        else:
            lines = lines[-n:]
        return "\n".join(line[:240] for line in lines[:n])


@dataclass
class Stack:
    log_dir: Path
    procs: list[Proc] = field(default_factory=list)
    markers: set[str] = field(default_factory=set)
    completions: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)

    def start(self, name: str, role: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, role, argv, self.log_dir, env)
        self.procs.append(proc)
        return proc

    def marker(self) -> str:
        """A unique string to put in a prompt; it must never show up in the proxy or dev-tee logs."""
        m = f"pimark{secrets.token_hex(8)}"
        self.markers.add(m)
        return m

    def remember_completion(self, text: str | None) -> None:
        if text and len(text.strip()) >= MIN_COMPLETION_LEN:
            self.completions.add(text.strip())

    def remember_stream(self, raw: bytes) -> None:
        self.remember_completion(vh.stream_content(raw))

    def remember_body(self, raw: bytes) -> None:
        """Remembers every generated text in a non-streaming chat/completions JSON body."""
        try:
            body = json.loads(raw)
        except ValueError:
            return
        for choice in body.get("choices", []) if isinstance(body, dict) else []:
            self.remember_completion((choice.get("message") or {}).get("content"))
            self.remember_completion(choice.get("text"))

    def check_logs(self) -> list[str]:
        problems = []
        for proc in self.procs:
            if proc.role not in ("proxy", "dev-tee"):
                continue
            text = proc.logs()
            for kind, values in (("prompt marker", self.markers), ("completion text", self.completions),
                                 ("bearer token", self.tokens)):
                for v in values:
                    if v in text:
                        problems.append(f"{proc.name} log contains a {kind}: {v[:60]!r}")
        return problems


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    env_dir = os.environ.get("PI_TEST_LOG_DIR")
    if env_dir:
        log_dir = Path(env_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
    else:
        log_dir = tmp_path_factory.mktemp("logs")
    st = Stack(log_dir)
    _LOG_DIRS.append(log_dir)
    yield st
    problems = []
    for proc in reversed(st.procs):
        rc = proc.stop()
        if proc.role == "proxy" and (rc != 0 or proc.killed):
            problems.append(f"{proc.name} did not exit cleanly on SIGTERM: status {rc}"
                            f"{' (needed SIGKILL)' if proc.killed else ''}; log tail:\n{proc.tail()}")
    problems += st.check_logs()
    assert not problems, "\n".join(problems)
    _SCANNED.append((len(st.markers), len(st.completions), len(st.tokens),
                     [p.name for p in st.procs if p.role in ("proxy", "dev-tee")]))


_LOG_DIRS: list[Path] = []
_SCANNED: list[tuple] = []


def pytest_terminal_summary(terminalreporter):
    for d in _LOG_DIRS:
        terminalreporter.write_line(f"integration process logs: {d}")
    for markers, completions, tokens, names in _SCANNED:
        terminalreporter.write_line(f"log scan of {names}: {markers} prompt markers, {completions} completion texts, "
                                    f"{tokens} tokens searched, none found")


# ---------------------------------------------------------------------------------------------------------------
# Backend


@dataclass
class Backend:
    url: str
    proc: Proc

    def get_json(self, path: str):
        return httpx.get(self.url + path, timeout=10).json()

    def busy_slots(self) -> list[dict]:
        return [s for s in self.get_json("/slots") if s.get("is_processing")]


def start_backend(stack: Stack, name: str = "backend", api_key: str | None = None) -> Backend:
    port = free_port()
    argv = [sys.executable, str(REPO / "scripts" / "run_backend.py"), "--port", str(port), "--embeddings"]
    headers = {}
    if api_key:
        argv += [f"--api-key={api_key}"]  # "=": a random key may start with "-"
        headers["Authorization"] = f"Bearer {api_key}"
    proc = stack.start(name, "backend", argv)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + BACKEND_READY_TIMEOUT
    while time.monotonic() < deadline:
        if not proc.alive():
            pytest.fail(f"backend exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            if httpx.get(url + "/v1/models", timeout=2, headers=headers).status_code == 200 and \
                    httpx.get(url + "/health", timeout=2).status_code == 200:
                return Backend(url, proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"backend did not answer /v1/models within {BACKEND_READY_TIMEOUT}s:\n{proc.tail()}")


@pytest.fixture(scope="session")
def backend(stack) -> Iterator[Backend]:
    b = start_backend(stack)
    yield b
    b.proc.stop()


# ---------------------------------------------------------------------------------------------------------------
# dev-tee


@dataclass
class DevTee:
    socket: Path
    state: Path
    proc: Proc


def _unix_socket_answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


@pytest.fixture(scope="session")
def dev_tee(stack, tmp_path_factory) -> Iterator[DevTee]:
    help_text = _subcommand_help("dev-tee")
    _require("--socket" in help_text,
             f"{pi_binary()} has no working `dev-tee --socket` subcommand yet (being written); attestation tests need it")
    base = tmp_path_factory.mktemp("devtee")
    sock, state = base / "dstack.sock", base / "state"
    proc = stack.start("dev-tee", "dev-tee", [str(pi_binary()), "dev-tee", "--socket", str(sock), "--state", str(state),
                                             "--log-level", PROXY_LOG_LEVEL],
                       env=sanitizer_env())
    deadline = time.monotonic() + PROXY_READY_TIMEOUT
    while not _unix_socket_answers(sock):
        if not proc.alive():
            pytest.fail(f"dev-tee exited with {proc.popen.returncode}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"dev-tee socket {sock} not accepting connections after {PROXY_READY_TIMEOUT}s:\n{proc.tail()}")
        time.sleep(0.1)
    yield DevTee(sock, state, proc)
    proc.stop()


@pytest.fixture(scope="session")
def dev_tee_optional(request) -> DevTee | None:
    """The dev-tee when the binary has one, else None (the main proxy then runs without dstack)."""
    if "--socket" not in _subcommand_help("dev-tee") and os.environ.get("PI_REQUIRE_ALL") != "1":
        return None
    return request.getfixturevalue("dev_tee")


# ---------------------------------------------------------------------------------------------------------------
# Proxy


@dataclass
class Proxy:
    url: str
    tokens: list[str]
    proc: Proc
    dstack: DevTee | None
    version: dict

    @property
    def token(self) -> str:
        return self.tokens[0]

    def client(self, token: str | None = "default", timeout: float = 120.0) -> httpx.Client:
        tok = self.token if token == "default" else token
        headers = {"Accept-Encoding": "identity"}
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def recording_client(self, token: str | None = "default") -> tuple[httpx.Client, vh.RecordingTransport]:
        return vh.recording_client(self.url, self.token if token == "default" else token)

    def openai(self, token: str | None = "default"):
        from openai import OpenAI

        transport = vh.RecordingTransport()
        http = httpx.Client(transport=transport, timeout=120.0, headers={"Accept-Encoding": "identity"})
        client = OpenAI(base_url=self.url + "/v1", api_key=self.token if token == "default" else token,
                        http_client=http, max_retries=0)
        return client, transport


def start_proxy(stack: Stack, name: str, backend_url: str, dstack_socket: Path | None, tokens: list[str],
                extra: list[str] | None = None, model: str = MODEL_NAME, env: dict[str, str] | None = None) -> Proxy:
    help_text = _subcommand_help("serve")
    _require("--backend" in help_text, f"{pi_binary()} has no working `serve --backend` subcommand yet")
    port = free_port()
    argv = [str(pi_binary()), "serve", "--backend", backend_url, "--listen", f"127.0.0.1:{port}", "--model", model,
            "--log-level", PROXY_LOG_LEVEL]
    for t in tokens:
        argv += [f"--token={t}"]  # "=": a random token may start with "-"
    if dstack_socket is not None:
        argv += ["--dstack-socket", str(dstack_socket)]
    argv += extra or []
    if not any(a.split("=")[0] in ("--store", "--state-dir") for a in argv) and "REDIS_HOST" not in (env or {}):
        # Each proxy its own signature store (the default state directory would be shared, and locked).
        argv += ["--state-dir", tempfile.mkdtemp(prefix=f"{name}-state-", dir=stack.log_dir)]
    stack.tokens.update(tokens)
    proc = stack.start(name, "proxy", argv, env={**sanitizer_env(), **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + PROXY_READY_TIMEOUT
    while True:
        if not proc.alive():
            pytest.fail(f"proxy {name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            r = httpx.get(url + "/version", timeout=2)
            if r.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"proxy {name} did not answer GET /version within {PROXY_READY_TIMEOUT}s:\n{proc.tail()}")
        time.sleep(0.1)
    assert f"listening on 127.0.0.1:{port}" in proc.logs(), f"proxy did not log 'listening on':\n{proc.tail()}"
    return Proxy(url, tokens, proc, None, r.json())


def _no_system_dstack() -> bool:
    return not any(Path(p).exists() for p in ("/var/run/dstack.sock", "/var/run/dstack/dstack.sock"))


@pytest.fixture(scope="session")
def proxy(stack, backend, dev_tee_optional) -> Iterator[Proxy]:
    """The main proxy: two tokens, dev-tee as dstack agent when available (else no dstack at all)."""
    tokens = [secrets.token_urlsafe(24), secrets.token_urlsafe(24)]
    sock = dev_tee_optional.socket if dev_tee_optional else None
    if sock is None and not _no_system_dstack():
        pytest.skip("a system dstack socket exists on this machine and the dev-tee is not available")
    p = start_proxy(stack, "proxy", backend.url, sock, tokens)
    p.dstack = dev_tee_optional
    yield p
    p.proc.stop()


@pytest.fixture(scope="session")
def proxy_no_dstack(stack, backend) -> Iterator[Proxy]:
    """A proxy with no dstack agent at all (no --dstack-socket, no env, no system socket)."""
    if not _no_system_dstack():
        pytest.skip("a dstack socket exists at a default path on this machine; cannot run a proxy without one")
    p = start_proxy(stack, "proxy-nodstack", backend.url, None, [secrets.token_urlsafe(24)])
    yield p
    p.proc.stop()


@pytest.fixture(scope="session")
def addresses(proxy) -> dict[str, str]:
    """The main proxy's signing addresses, as attested (dev-tee) or as the first signature record shows them."""
    if proxy.dstack is not None:
        out = {}
        with proxy.client() as c:
            for algo in vh.ALGOS:
                r = c.get("/v1/attestation/report", params={"nonce": vh.fresh_nonce(), "signing_algo": algo})
                assert r.status_code == 200, r.text
                out[algo] = r.json()["signing_address"]
        return out
    with proxy.client() as c:
        body = json.dumps({"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}).encode()
        r = c.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        rec = vh.fetch_signature(c, r.json()["id"], "ecdsa", proxy.token).json()
        return {"ecdsa": rec["ecdsa_signing_address"], "ed25519": rec["ed25519_signing_address"]}


def find_addresses_in(obj) -> dict[str, set[str]]:
    """Every ECDSA address / 64-hex string anywhere in a JSON value (for /version, whose exact shape may vary)."""
    found: dict[str, set[str]] = {"ecdsa": set(), "hex64": set()}

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            if re.fullmatch(r"0x[0-9a-fA-F]{40}", v):
                found["ecdsa"].add(v)
            elif re.fullmatch(r"[0-9a-fA-F]{64}", v):
                found["hex64"].add(v.lower())

    walk(obj)
    return found
