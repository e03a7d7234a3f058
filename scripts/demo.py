#!/usr/bin/env python3
"""`make demo`: the whole product on one machine, end to end.

Starts a real llama.cpp backend (scripts/run_backend.py), the simulated dstack agent
(`private-inference dev-tee`) and the signing proxy (`private-inference serve`); sends one chat with
the official `openai` client; then checks what a user can check:

  1. the request and response hashes, recomputed from the exact bytes the client sent and received;
  2. the ECDSA signature (address recovered with eth-account) and the Ed25519 signature
     (verified with `cryptography`) — libraries this project did not write;
  3. a fresh-nonce attestation report whose quote binds that signing address and nonce
     (report_data) — from the SIMULATED TEE, which proves nothing about hardware;
  4. the project's own verifier: `verify attestation` (DCAP quote checks, binding, event-log replay,
     GPU SPDM evidence) and `verify response`, trusting the simulated test roots explicitly
     (`--trust-simulated`, `--gpu-test-root`): every check passes and is labelled SIMULATED.

Every process it starts is stopped when it ends, whatever happens.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GREEN, RED, YELLOW, BOLD, RESET = "\033[32m", "\033[31m", "\033[33m", "\033[1m", "\033[0m"
if not sys.stdout.isatty():
    GREEN = RED = YELLOW = BOLD = RESET = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen, name: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited early (status {proc.returncode}); see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.3)
    raise SystemExit(f"{name} did not come up within {timeout:.0f}s")


def wait_path(path: Path, timeout: float, proc: subprocess.Popen, name: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited early (status {proc.returncode}); see its log")
        if path.exists():
            return
        time.sleep(0.1)
    raise SystemExit(f"{name} did not create {path} within {timeout:.0f}s")


class Checks:
    def __init__(self) -> None:
        self.failed = 0

    def line(self, ok: bool, what: str, detail: str = "") -> None:
        mark = f"{GREEN}PASS{RESET}" if ok else f"{RED}FAIL{RESET}"
        print(f"  [{mark}] {what}" + (f" — {detail}" if detail else ""))
        if not ok:
            self.failed += 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(ROOT / "build" / "private-inference"))
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pi-demo-"))
    procs: list[tuple[str, subprocess.Popen]] = []

    def start(name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(work / f"{name}.log", "wb")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             env={**os.environ, **env} if env else None)
        procs.append((name, p))
        return p

    def stop_all() -> None:
        for name, p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    checks = Checks()
    try:
        backend_port, proxy_port = free_port(), free_port()
        sock = work / "dstack.sock"
        token = secrets.token_hex(16)
        print(f"{BOLD}Starting{RESET} (logs in {work})")
        be = start("backend", [sys.executable, str(ROOT / "scripts" / "run_backend.py"), "--port", str(backend_port)])
        tee_state = work / "tee-state"
        gpu_pki = work / "gpu-pki"
        tee = start("dev-tee", [args.binary, "dev-tee", "--socket", str(sock), "--state", str(tee_state), "--pki"])
        wait_path(sock, 30, tee, "dev-tee")
        print(f"  dev-tee    unix:{sock}  {YELLOW}(SIMULATED TDX: quotes signed by a test PKI, not hardware){RESET}")
        wait_http(f"http://127.0.0.1:{backend_port}/v1/models", 180, be, "backend")
        print(f"  backend    http://127.0.0.1:{backend_port}  (llama.cpp via xllamacpp, SmolLM2-135M)")
        sim_lib = Path(args.binary).resolve().parent / "libnvidia-ml-sim.so"
        px = start("proxy", [args.binary, "serve", "--backend", f"http://127.0.0.1:{backend_port}",
                             "--listen", f"127.0.0.1:{proxy_port}", "--dstack-socket", str(sock),
                             "--model", "smollm2", f"--token={token}", "--threads", "1", "--nvml-lib", str(sim_lib),
                             "--state-dir", str(work / "proxy-state")],
                   env={"PI_NVML_SIM_MODE": "testpki", "PI_NVML_SIM_GPUS": "2", "PI_NVML_SIM_PPCIE": "1",
                        "PI_NVML_SIM_PKI_DIR": str(gpu_pki)})
        base = f"http://127.0.0.1:{proxy_port}"
        wait_http(f"{base}/version", 30, px, "proxy")
        print(f"  proxy      {base}  {YELLOW}(GPU evidence: SIMULATED NVML, 2 GPUs, test PKI){RESET}")

        # ---- one chat through the official openai client, keeping the raw bytes ----
        import httpx
        from openai import OpenAI

        sent: dict[str, bytes] = {}

        def remember_request(request: httpx.Request) -> None:
            sent["body"] = request.read()

        http_client = httpx.Client(event_hooks={"request": [remember_request]}, timeout=120)
        client = OpenAI(base_url=f"{base}/v1", api_key=token, http_client=http_client)
        prompt = "In one sentence, what is a confidential VM?"
        raw = client.chat.completions.with_raw_response.create(
            model="smollm2", messages=[{"role": "user", "content": prompt}], max_tokens=48, temperature=0)
        received = raw.http_response.content
        completion = raw.parse()
        print(f"\n{BOLD}Chat{RESET} (openai {__import__('openai').__version__}): id {completion.id}")
        print(f"  assistant: {completion.choices[0].message.content!r}")

        # ---- 1+2: hashes and signatures, checked with independent libraries ----
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from eth_account import Account
        from eth_account.messages import encode_defunct

        print(f"\n{BOLD}Signature{RESET}")
        req_hash = hashlib.sha256(sent["body"]).hexdigest()
        resp_hash = hashlib.sha256(received).hexdigest()
        auth = {"Authorization": f"Bearer {token}"}
        sig_ecdsa = httpx.get(f"{base}/v1/signature/{completion.id}", params={"signing_algo": "ecdsa"}, headers=auth).json()
        sig_ed = httpx.get(f"{base}/v1/signature/{completion.id}", params={"signing_algo": "ed25519"}, headers=auth).json()
        checks.line(sig_ecdsa["request_hash"] == req_hash, "request_hash = sha256(bytes the client sent)", req_hash)
        checks.line(sig_ecdsa["response_hash"] == resp_hash, "response_hash = sha256(bytes the client received)", resp_hash)
        checks.line(sig_ecdsa["text"] == f"{req_hash}:{resp_hash}", "signed text = request_hash:response_hash")
        recovered = Account.recover_message(encode_defunct(text=sig_ecdsa["text"]), signature=sig_ecdsa["signature"])
        checks.line(recovered == sig_ecdsa["signing_address"], "ECDSA (EIP-191) signature recovers the signing address",
                    f"{recovered} (eth-account)")
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(sig_ed["signing_address"])).verify(
                bytes.fromhex(sig_ed["signature"]), sig_ed["text"].encode())
            checks.line(True, "Ed25519 signature verifies", f"key {sig_ed['signing_address'][:16]}… (cryptography)")
        except Exception as e:  # noqa: BLE001
            checks.line(False, "Ed25519 signature verifies", str(e))

        # ---- 3: attestation binding (simulated TEE) ----
        print(f"\n{BOLD}Attestation{RESET} {YELLOW}(SIMULATED TEE: test-PKI quote; proves nothing about hardware){RESET}")
        for algo, sig in (("ecdsa", sig_ecdsa), ("ed25519", sig_ed)):
            nonce = secrets.token_hex(32)
            rep = httpx.get(f"{base}/v1/attestation/report", params={"nonce": nonce, "signing_algo": algo}).json()
            quote = bytes.fromhex(rep["intel_quote"])
            rd = quote[568:632]
            addr = sig["signing_address"]
            addr_bytes = bytes.fromhex(addr[2:] if addr.startswith("0x") else addr)
            checks.line(rep["request_nonce"] == nonce and rd[32:] == bytes.fromhex(nonce),
                        f"{algo}: quote report_data carries our fresh nonce", nonce[:16] + "…")
            checks.line(rd[:32] == addr_bytes.ljust(32, b"\0") and rep["signing_address"] == addr,
                        f"{algo}: quote report_data binds the signing key that signed the chat", addr[:18] + "…")
            checks.line(rep.get("simulated") is True, f"{algo}: report is labelled simulated")

        # ---- 4: the project's own verifier: fresh-nonce attestation, then the exchange ----
        (work / "request.json").write_bytes(sent["body"])
        (work / "response.json").write_bytes(received)
        trust = ["--trust-simulated", str(tee_state), "--gpu-test-root", str(gpu_pki / "root.cert.pem"),
                 f"--token={token}", "--no-nras"]
        for title, cmd in (
            ("verify attestation", ["verify", "attestation", "--url", base, *trust]),
            ("verify response", ["verify", "response", "--url", base, "--id", completion.id,
                                 "--request", str(work / "request.json"), "--response", str(work / "response.json"),
                                 *trust]),
        ):
            print(f"\n{BOLD}private-inference {title}{RESET} (trusting the SIMULATED test roots explicitly)")
            vr = subprocess.run([args.binary, *cmd], capture_output=True, text=True, timeout=180)
            shown = [l for l in vr.stdout.splitlines()
                     if l.split(" ", 1)[0] in ("PASS", "FAIL", "SKIP", "==") or l.lstrip().startswith("summary")]
            print("\n".join("  " + l for l in shown))
            checks.line(vr.returncode == 0 and not any(l.startswith("FAIL") for l in shown),
                        f"{title}: every enforced check passes (exit status {vr.returncode})")
        # ---- logs never carry content ----
        px_log = (work / "proxy.log").read_text(errors="replace") + (work / "dev-tee.log").read_text(errors="replace")
        checks.line(prompt not in px_log and (completion.choices[0].message.content or "@@") not in px_log,
                    "proxy and dev-tee logs contain neither the prompt nor the completion")
    finally:
        stop_all()

    print()
    if checks.failed:
        print(f"{RED}{BOLD}{checks.failed} check(s) failed{RESET} — logs in {work}")
        return 1
    print(f"{GREEN}{BOLD}Verified:{RESET} the answer was signed by the proxy's key over the exact bytes sent and "
          f"received, and that key is bound to a fresh nonce in a TDX quote and GPU evidence that verify — "
          f"{YELLOW}{BOLD}SIMULATED hardware (test PKIs): not a security proof{RESET}.")
    if not args.keep_logs:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
