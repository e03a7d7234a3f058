#!/usr/bin/env python3
"""`make bench`: what the proxy costs, measured against the backend it protects (issue 6).

For every cell (a workload at one concurrency) it runs the load generator against the synthetic
backend directly and through the proxy, interleaved (direct, proxied, then proxied, direct when
--rounds 2, ...), each with a fresh backend and proxy so every figure (RSS included) belongs to
its cell. It prints the proxied/direct ratio of every figure, the proxy's CPU per 1000 tokens and
its peak RSS, checks the issue's targets, runs the micro-benchmarks, and writes all of it as JSON
(bench/results/latest.json).

Python 3.11 standard library only. Loopback only. See docs/performance.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"

# The cells. itl_ms is the synthetic engine's inter-token delay. Every streaming cell sends
# 256-token answers and is sized so that the aggregate token rate (concurrency x 1000 / itl_ms)
# stays within what 2 shared cores can drive for generator + engine + proxy together (<= ~10k
# tokens/s): the benchmark measures the proxy's overhead, not the machine's ceiling. At 512 and
# 4096 streams an answer therefore lasts 12.8 s and 102 s, longer than a run: those cells use
# --stagger (each stream's first answer is shorter, so streams are spread over their lifetime as
# in a server that has been running) and report no total latency (it is time to first token +
# 255 inter-token gaps, both measured). The output says so.
CELLS = [
    dict(name="chat non-stream small", mode="chat", c=64, tokens=16, ttft_ms=20, itl_ms=0,
         note="16-token JSON answers, 20 ms after the request"),
    dict(name="stream 256 tok c=1", mode="chat-stream", c=1, tokens=256, ttft_ms=20, itl_ms=2),
    dict(name="stream 256 tok c=64", mode="chat-stream", c=64, tokens=256, ttft_ms=20, itl_ms=10),
    dict(name="stream 256 tok c=512", mode="chat-stream", c=512, tokens=256, ttft_ms=20, itl_ms=50, stagger=True,
         duration=6, warmup=2,
         note="a token every 50 ms: an answer lasts 12.8 s, so streams are staggered and total latency is not "
              "sampled; requests/s counts answers completed in the window, the staggered first ones included"),
    dict(name="stream 256 tok c=512 in step", mode="chat-stream", c=512, tokens=256, ttft_ms=20, itl_ms=50,
         stagger=True, in_step=True, duration=6, warmup=2,
         note="as stream 256 tok c=512, but the engine emits every stream's next token at the same instant "
              "(one decode step for all running sequences, as vLLM's continuous batching does): bursts of 512 "
              "events every 50 ms; first tokens wait for the next step"),
    dict(name="stream 256 tok c=4096", mode="chat-stream", c=4096, tokens=256, ttft_ms=20, itl_ms=400, stagger=True,
         duration=8, warmup=3,
         note="a token every 400 ms: an answer lasts 102 s, staggered as above; 4096 connections ramp up over "
              "half the warm-up"),
    dict(name="attestation (dev TEE)", mode="attestation", c=8, tokens=0, ttft_ms=0, itl_ms=0,
         note="direct = engine GET /v1/models (a plain HTTP round trip); proxied = GET /v1/attestation/report "
              "with a fresh nonce, simulated dstack agent (dev-tee)"),
    dict(name="attestation + GPU x1 (sim NVML)", mode="attestation", c=8, tokens=0, ttft_ms=0, itl_ms=0, gpus=1,
         note="as above, plus GPU evidence over the same nonce from the simulated NVML (1 GPU, test-PKI P-384 "
              "signing, through the real dlopen path)"),
    dict(name="attestation + GPU x8 (sim NVML)", mode="attestation", c=8, tokens=0, ttft_ms=0, itl_ms=0, gpus=8,
         note="8 simulated GPUs in PPCIe mode: NVML calls are serialized, so latency grows with the GPU count"),
    dict(name="signature fetch", mode="signature", c=64, tokens=0, ttft_ms=0, itl_ms=0,
         note="direct = engine GET /v1/models; proxied = GET /v1/signature/{id}, ecdsa and ed25519 alternating "
              "(signed on demand: two signatures per fetch)"),
    dict(name="chat non-stream small, Redis store", mode="chat", c=64, tokens=16, ttft_ms=20, itl_ms=0, store="redis",
         note="as chat non-stream small, records in a local redis-server (AOF, appendfsync always): every answer "
              "waits for Redis's acknowledgement of its record"),
    dict(name="fleet: 3 replicas + Redis", mode="chat", c=64, tokens=16, ttft_ms=20, itl_ms=0, store="redis",
         replicas=3,
         note="three proxies behind HAProxy (round robin) sharing one redis-server; records/s sustained by the "
              "fleet = its requests/s (compare with the Redis cell: one replica at the same concurrency); on one "
              "2-core machine the replicas share the CPUs, so this shows the fleet's overhead, not its scaling"),
]
QUICK = {"chat non-stream small", "stream 256 tok c=64", "stream 256 tok c=512", "attestation (dev TEE)",
         "signature fetch", "chat non-stream small, Redis store"}

LATENCIES = [("ttfb_ms", "TTFB"), ("ttft_ms", "TTFT"), ("itl_ms", "inter-token"), ("total_ms", "total"),
             ("first_lag_ms", "1st-token lag"), ("lag_ms", "token lag"), ("tail_ms", "end after last token")]
STREAM_ONLY = ("ttft_ms", "itl_ms", "first_lag_ms", "lag_ms", "tail_ms")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return
        except Exception as e:  # noqa: BLE001 - still starting
            last = e
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up: {last}")


def wait_path(p: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.exists():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{p} did not appear")


class Pinning:
    """CPU sets for generator, engine and proxy: one CPU each, or nothing pinned."""

    def __init__(self, mode: str, nice: int = 0):
        self.nice = nice
        cpus = sorted(os.sched_getaffinity(0))
        load = os.getloadavg()[0]
        if mode == "auto":
            # Pinning steadies the figures only when each process gets a CPU of its own on an otherwise
            # idle machine. Measured on 2 CPUs: generator and engine pinned together to one CPU starve
            # each other (both runnable-but-waiting ~100% of the run, 0.78x their unpinned request
            # rate at 512 streams), which makes *direct* the slow side; and on a machine busy with other
            # work a pinned proxy cannot move to a CPU that is momentarily free (0.48x direct tokens/s).
            if len(cpus) < 3:
                enabled = False
                self.why = (f"auto: {len(cpus)} CPUs cannot give generator, engine and proxy one each; "
                            "sharing a CPU pinned starves the sharers, so the scheduler places them")
            else:
                enabled = load < 0.5 * len(cpus)
                self.why = (f"auto: 1-minute load average {load:.2f} on {len(cpus)} CPUs is "
                            f"{'low' if enabled else 'high (other work running)'}")
        else:
            enabled = mode == "on"
            self.why = f"--pin {mode}"
        self.enabled = enabled and len(cpus) >= 2
        if not self.enabled:
            self.gen = self.backend = self.proxy = set(cpus)
        elif len(cpus) == 2:  # only with --pin on: generator and engine share a CPU
            self.gen, self.backend, self.proxy = {cpus[0]}, {cpus[0]}, {cpus[1]}
        else:
            self.gen, self.backend, self.proxy = {cpus[0]}, {cpus[1]}, {cpus[2]}

    def describe(self) -> str:
        prio = f"; every benchmark process at nice {self.nice}" if self.nice else ""
        if not self.enabled:
            return f"not pinned ({self.why})" + prio
        return (f"pinned ({self.why}): load generator CPU {sorted(self.gen)}, engine CPU {sorted(self.backend)}, "
                f"proxy CPU {sorted(self.proxy)} (proxy --threads {len(self.proxy)})" + prio)

    def preexec(self, cpus: set[int]):
        nice = self.nice

        def setup() -> None:
            if self.enabled:
                os.sched_setaffinity(0, cpus)
            if nice:
                os.setpriority(os.PRIO_PROCESS, 0, nice)

        return setup if (self.enabled or nice) else None


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.build = Path(args.build_dir).resolve()
        self.pi = self.build / "private-inference"
        self.backend_bin = self.build / "pi-bench-backend"
        self.loadgen = self.build / "pi-loadgen"
        self.micro = self.build / "micro_bench"
        for b in (self.pi, self.backend_bin, self.loadgen):
            if not b.exists():
                sys.exit(f"missing {b}: build it first (cmake -DCMAKE_BUILD_TYPE=Release; ninja private-inference "
                         "pi-bench-backend pi-loadgen micro_bench)")
        cache = self.build / "CMakeCache.txt"
        if cache.exists():  # a sanitized or debug build would measure the build, not the proxy
            conf = dict(line.split(":", 1)[0:1] + line.split("=", 1)[1:2] for line in cache.read_text().splitlines()
                        if "=" in line and ":" in line.split("=", 1)[0] and not line.startswith(("#", "//")))
            # An empty build type is CMakeLists.txt's default, RelWithDebInfo; CMake's false values below.
            btype = conf.get("CMAKE_BUILD_TYPE", "") or "RelWithDebInfo"
            sanitize = conf.get("PI_SANITIZE", "OFF")
            sanitized = sanitize.upper() not in ("", "OFF", "0", "NO", "FALSE", "N", "IGNORE", "NOTFOUND")
            if btype not in ("Release", "RelWithDebInfo") or sanitized:
                sys.exit(f"{self.build} is a {btype or 'unspecified'} build (PI_SANITIZE={sanitize}); benchmark an "
                         "optimised one: cmake -DCMAKE_BUILD_TYPE=Release -DPI_SANITIZE=OFF (make bench does)")
        self.pin = Pinning(args.pin, args.nice)
        self.tmp = Path(tempfile.mkdtemp(prefix="pi-bench-"))
        self.procs: list[subprocess.Popen] = []
        self.devtee: subprocess.Popen | None = None
        self.dstack_sock = self.tmp / "dstack.sock"

    # ---- processes ------------------------------------------------------------------------

    def spawn(self, argv: list[str], cpus: set[int], log: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        f = open(self.tmp / log, "ab")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, preexec_fn=self.pin.preexec(cpus),
                             env={**os.environ, **env} if env else None)
        f.close()
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen | None) -> None:
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def start_devtee(self) -> None:
        state = self.tmp / "devtee-state"
        self.devtee = self.spawn([str(self.pi), "dev-tee", "--socket", str(self.dstack_sock), "--state", str(state),
                                  "--log-level", "warn"], self.pin.backend, "devtee.log")
        wait_path(self.dstack_sock)

    def start_backend(self, cell: dict) -> tuple[subprocess.Popen, int]:
        port = free_port()
        p = self.spawn([str(self.backend_bin), "--listen", f"127.0.0.1:{port}", "--ttft-ms", str(cell["ttft_ms"]),
                        "--itl-ms", str(cell["itl_ms"]), "--tokens", str(max(1, cell["tokens"])),
                        *(["--in-step"] if cell.get("in_step") else [])],
                       self.pin.backend, "backend.log")
        wait_http(f"http://127.0.0.1:{port}/health")
        return p, port

    def has_store_flag(self, binary: Path) -> bool:
        """Whether `binary` has the durable signature store (a baseline build may predate it: memory then)."""
        cache = self.__dict__.setdefault("_store_flag", {})
        if binary not in cache:
            out = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True).stdout
            cache[binary] = "--state-dir" in out
            print(f"signature store of {binary}: {'sqlite (--state-dir, the default)' if cache[binary] else 'memory'}")
        return cache[binary]

    def start_redis(self) -> tuple[subprocess.Popen, int]:
        redis = shutil.which("redis-server")
        if not redis:
            raise RuntimeError("redis-server is not installed (Debian: redis-server; make deps installs it)")
        port = free_port()
        d = Path(tempfile.mkdtemp(prefix="redis-", dir=self.tmp))
        p = self.spawn([redis, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--save", "",
                        "--appendonly", "yes", "--appendfsync", "always", "--loglevel", "warning"],
                       self.pin.backend, "redis.log")
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as c:
                if c.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        return p, port

    def start_haproxy(self, ports: list[int]) -> tuple[subprocess.Popen, int]:
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        port = free_port()
        servers = "\n".join(f"    server r{i} 127.0.0.1:{p}" for i, p in enumerate(ports))
        cfg = self.tmp / f"haproxy-{port}.cfg"
        cfg.write_text(f"global\n    maxconn 20000\ndefaults\n    mode http\n    timeout connect 2s\n"
                       f"    timeout client 120s\n    timeout server 120s\nfrontend fleet\n"
                       f"    bind 127.0.0.1:{port}\n    default_backend replicas\nbackend replicas\n"
                       f"    balance roundrobin\n{servers}\n")
        p = self.spawn([haproxy, "-db", "-f", str(cfg)], self.pin.proxy, "haproxy.log")
        wait_http(f"http://127.0.0.1:{port}/version")
        return p, port

    def start_proxy(self, backend_port: int, gpus: int = 0, binary: Path | None = None,
                    store: str | None = None) -> tuple[subprocess.Popen, int]:
        port = free_port()
        argv = [str(binary or self.pi), "serve", "--backend", f"http://127.0.0.1:{backend_port}", "--listen",
                f"127.0.0.1:{port}", "--token", TOKEN, "--dstack-socket", str(self.dstack_sock),
                "--log-level", self.args.proxy_log_level, "--signature-capacity", "1000000",
                # one load generator is one client: its 8 concurrent attestations must fit one client's share
                # (a quarter of the total) rather than measure the fairness limit
                "--max-concurrent-attestations", "64"]
        if store:
            argv += ["--store", store]
        elif self.has_store_flag(binary or self.pi):
            # The production default: SQLite (WAL, synchronous=FULL, group commit) on a fresh file on this disk.
            argv += ["--state-dir", tempfile.mkdtemp(prefix="proxy-state-", dir=self.tmp)]
        env = None
        if gpus:  # GPU evidence through the real dlopen path, served by the project's simulated NVML
            argv += ["--nvml-lib", str(self.pi.parent / "libnvidia-ml-sim.so")]
            env = {"PI_NVML_SIM_MODE": "testpki", "PI_NVML_SIM_GPUS": str(gpus),
                   "PI_NVML_SIM_PKI_DIR": str(self.tmp / "nvml-sim-pki")}
        else:
            argv += ["--gpu-evidence", "off"]
        if self.pin.enabled:
            argv += ["--threads", str(len(self.pin.proxy))]
        elif self.args.proxy_threads:
            argv += ["--threads", str(self.args.proxy_threads)]
        p = self.spawn(argv, self.pin.proxy, "proxy.log", env)
        wait_http(f"http://127.0.0.1:{port}/version")
        return p, port

    # ---- one measurement --------------------------------------------------------------------

    def measure(self, cell: dict, target: str) -> dict:
        """target: "direct", "proxied" (this build's proxy) or "baseline" (--baseline-binary)."""
        backend, bport = self.start_backend(cell)
        proxy = None
        extras: list[subprocess.Popen] = []  # more replicas, HAProxy
        redis = None
        proxied = target != "direct"
        try:
            watch = ["--watch", f"engine={backend.pid}"]
            if proxied:
                binary = Path(self.args.baseline_binary) if target == "baseline" else None
                store = None
                if cell.get("store") == "redis":
                    redis, rport = self.start_redis()
                    store = f"redis://127.0.0.1:{rport}"
                    watch += ["--watch", f"redis={redis.pid}"]
                proxy, pport = self.start_proxy(bport, cell.get("gpus", 0), binary, store)
                url = f"http://127.0.0.1:{pport}"
                watch += ["--watch", f"proxy={proxy.pid}"]
                if cell.get("replicas", 1) > 1:
                    ports = [pport]
                    for i in range(cell["replicas"] - 1):
                        p2, port2 = self.start_proxy(bport, cell.get("gpus", 0), binary, store)
                        extras.append(p2)
                        ports.append(port2)
                        watch += ["--watch", f"replica{i + 2}={p2.pid}"]
                    lb, lport = self.start_haproxy(ports)
                    extras.append(lb)
                    url = f"http://127.0.0.1:{lport}"
                    watch += ["--watch", f"haproxy={lb.pid}"]
                mode = cell["mode"]
                extra: list[str] = []
            else:
                url = f"http://127.0.0.1:{bport}"
                mode = cell["mode"]
                extra = []
                if mode in ("attestation", "signature"):  # the engine has no such endpoint: plain round trip
                    mode, extra = "get", ["--path", "/v1/models"]
            warmup = max(self.args.warmup, cell.get("warmup", 0))
            duration = max(self.args.duration, cell.get("duration", 0)) if not self.args.quick else self.args.duration
            argv = [str(self.loadgen), "--url", url, "--mode", mode, "--concurrency", str(cell["c"]),
                    "--duration", str(duration), "--warmup", str(warmup),
                    "--max-tokens", str(max(1, cell["tokens"])), "--token", TOKEN, *extra, *watch]
            if cell.get("stagger"):
                argv.append("--stagger")
            r = subprocess.run(argv, capture_output=True, text=True, preexec_fn=self.pin.preexec(self.pin.gen),
                               timeout=duration + warmup + 60)
            if r.returncode != 0:
                raise RuntimeError(f"pi-loadgen failed ({r.returncode}): {r.stderr.strip()}")
            res = json.loads(r.stdout)
            res["target"] = target
            res["loadavg_after"] = os.getloadavg()
            if proxy is not None and proxy.poll() is not None:
                raise RuntimeError(f"the proxy exited during the run (status {proxy.returncode}); see "
                                   f"{self.tmp / 'proxy.log'}")
            try:  # what reached the engine (the stats request itself counts one connection, one request)
                with urllib.request.urlopen(f"http://127.0.0.1:{bport}/bench/stats", timeout=5) as r:
                    res["engine_stats"] = json.loads(r.read())
            except Exception as e:  # noqa: BLE001 - informational only
                res["engine_stats"] = {"error": str(e)}
        finally:
            for p in reversed(extras):
                self.stop(p)
            self.stop(proxy)
            self.stop(redis)  # after the proxies: they flush their commits to it first
            self.stop(backend)
        if proxy is not None and proxy.returncode not in (0, -signal.SIGTERM):
            # The proxy handles SIGTERM and should exit cleanly; anything else is a defect to report.
            res["proxy_exit_status"] = proxy.returncode
            print(f"  WARNING: the proxy exited with status {proxy.returncode} on SIGTERM (see "
                  f"{self.tmp / 'proxy.log'})", flush=True)
        return res

    # ---- pre-flight: the proxy under test must sign correctly -------------------------------------

    def preflight(self) -> str:
        """One streamed answer through the proxy: its signature record must cover the exact bytes
        (checked here with hashlib) and, when the project's .venv exists, the ECDSA signature must
        recover to the proxy's address and the Ed25519 signature must verify (eth-account and
        cryptography, independent of our C++). Figures of a proxy that signs wrongly mean nothing."""
        cell = dict(ttft_ms=0, itl_ms=0, tokens=8)
        backend, bport = self.start_backend(cell)
        proxy = None
        try:
            proxy, pport = self.start_proxy(bport)
            base = f"http://127.0.0.1:{pport}"
            body = json.dumps({"model": "synthetic", "messages": [{"role": "user", "content": "pre-flight"}],
                               "max_tokens": 8, "stream": True}).encode()
            req = urllib.request.Request(f"{base}/v1/chat/completions", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {TOKEN}",
                                                  "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                resp = r.read()
            rid = json.loads(resp.split(b"\n", 1)[0][len(b"data: "):])["id"]
            sreq = urllib.request.Request(f"{base}/v1/signature/{rid}?signing_algo=ecdsa",
                                          headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(sreq, timeout=10) as r:
                sig = json.loads(r.read())
        finally:
            self.stop(proxy)
            self.stop(backend)
        import hashlib
        text = hashlib.sha256(body).hexdigest() + ":" + hashlib.sha256(resp).hexdigest()
        if sig.get("text") != text:
            raise RuntimeError("pre-flight: the signed text does not match the exact bytes exchanged")
        venv_py = ROOT / ".venv" / "bin" / "python"
        if not venv_py.exists():
            return "signed text matches the exact bytes (signature crypto not checked: no .venv)"
        check = (
            "import json,sys\n"
            "from eth_account import Account\n"
            "from eth_account.messages import encode_defunct\n"
            "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey\n"
            "s=json.loads(sys.stdin.read())\n"
            "assert Account.recover_message(encode_defunct(text=s['text']),signature=s['ecdsa_signature'])"
            "==s['ecdsa_signing_address'], 'ECDSA signature does not recover to the signing address'\n"
            "Ed25519PublicKey.from_public_bytes(bytes.fromhex(s['ed25519_signing_address'])).verify("
            "bytes.fromhex(s['ed25519_signature']), s['text'].encode())\n")
        r = subprocess.run([str(venv_py), "-c", check], input=json.dumps(sig), capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            if "ModuleNotFoundError" in r.stderr:
                return "signed text matches the exact bytes (signature crypto not checked: .venv lacks eth-account)"
            raise RuntimeError(f"pre-flight: the proxy's signatures do not verify: {r.stderr.strip()[-300:]}")
        return "signed text matches the exact bytes; ECDSA and Ed25519 signatures verify (eth-account, cryptography)"

    # ---- the whole run ------------------------------------------------------------------------

    def run(self) -> dict:
        started = dt.datetime.now(dt.timezone.utc)
        load_before = os.getloadavg()
        cells = [c for c in CELLS if not self.args.quick or c["name"] in QUICK]
        if self.args.only:
            cells = [c for c in cells if any(s in c["name"] for s in self.args.only)]
        print(f"pi bench: {len(cells)} cells x {self.args.rounds} round(s) x (direct, proxied), "
              f"{self.args.duration:g} s each after {self.args.warmup:g} s warm-up", flush=True)
        print(f"  {self.pin.describe()}", flush=True)
        print(f"  load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
              f"on {os.cpu_count()} CPUs", flush=True)
        self.start_devtee()
        preflight = self.preflight()
        print(f"  pre-flight: {preflight}", flush=True)
        results = []
        try:
            for cell in cells:
                targets = ["direct", "proxied"] + (["baseline"] if self.args.baseline_binary else [])
                runs: dict[str, list[dict]] = {t: [] for t in targets}
                for rnd in range(self.args.rounds):
                    order = targets if rnd % 2 == 0 else list(reversed(targets))
                    for target in order:
                        r = self.measure(cell, target)
                        runs[r["target"]].append(r)
                        print(f"  {cell['name']:<24} {r['target']:<8} round {rnd + 1}: "
                              f"{r['requests_per_s']:9.1f} req/s {r['tokens_per_s']:9.0f} tok/s "
                              f"errors {r['errors']}  (load {r['loadavg_after'][0]:.1f})", flush=True)
                entry = {"cell": cell, "runs": {"direct": runs["direct"], "proxied": runs["proxied"]},
                         "summary": summarize(cell, {"direct": runs["direct"], "proxied": runs["proxied"]})}
                if self.args.baseline_binary:
                    entry["baseline_runs"] = runs["baseline"]
                    entry["baseline_summary"] = summarize(cell, {"direct": runs["direct"],
                                                                 "proxied": runs["baseline"]})
                results.append(entry)
        finally:
            self.stop(self.devtee)
            for p in self.procs:
                self.stop(p)
        micro = self.run_micro() if not self.args.no_micro else None
        load_after = os.getloadavg()
        out = {
            "generated_at": started.isoformat(timespec="seconds"),
            "elapsed_s": round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_before": load_before,
                        "loadavg_after": load_after},
            "git_commit": git_commit(),
            "pinning": self.pin.describe(),
            "preflight": preflight,
            "params": {"duration_s": self.args.duration, "warmup_s": self.args.warmup, "rounds": self.args.rounds,
                       "nice": self.args.nice,
                       "proxy_log_level": self.args.proxy_log_level},
            "baseline_binary": self.args.baseline_binary,
            "cells": results,
            "targets": check_targets(results),
            "micro": micro,
        }
        if any(r2.get("proxy_exit_status") is not None for r in results for r2 in r["runs"]["proxied"]):
            print(f"  logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return out

    def run_micro(self) -> list[dict] | None:
        if not self.micro.exists():
            print(f"  (micro_bench not built at {self.micro}; skipped)")
            return None
        print("  micro-benchmarks ...", flush=True)
        r = subprocess.run([str(self.micro), "--benchmark_format=json", f"--benchmark_min_time={self.args.micro_time}"],
                           capture_output=True, text=True, preexec_fn=self.pin.preexec(self.pin.proxy), timeout=300)
        if r.returncode != 0:
            print(f"  micro_bench failed: {r.stderr.strip()[-500:]}")
            return None
        data = json.loads(r.stdout)
        unit = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}
        return [{"name": b["name"], "real_ns_per_op": b["real_time"] * unit.get(b.get("time_unit", "ns"), 1),
                 "cpu_ns_per_op": b["cpu_time"] * unit.get(b.get("time_unit", "ns"), 1),
                 "bytes_per_second": b.get("bytes_per_second")}
                for b in data.get("benchmarks", []) if b.get("run_type", "iteration") == "iteration"]


def mean(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return sum(v) / len(v) if v else None


def summarize(cell: dict, runs: dict[str, list[dict]]) -> dict:
    """Means over rounds of every figure, per target, and the proxied/direct ratios."""
    s: dict = {}
    for target, rs in runs.items():
        t: dict = {"requests_per_s": mean([r["requests_per_s"] for r in rs]),
                   "tokens_per_s": mean([r["tokens_per_s"] for r in rs]),
                   "errors": sum(r["errors"] for r in rs),
                   "error_kinds": {k: v for r in rs for k, v in r["error_kinds"].items()}}
        for key, _ in LATENCIES:
            for q in ("p50", "p90", "p99"):
                t[f"{key}_{q}"] = mean([r[key][q] for r in rs if key in r])
        proxy = [r["processes"].get("proxy") for r in rs if "proxy" in r["processes"]]
        if proxy:
            t["proxy_cpu_util"] = mean([p["cpu_util"] for p in proxy])
            t["proxy_cpu_ms_per_1000_tokens"] = mean([p.get("cpu_ms_per_1000_tokens") for p in proxy])
            t["proxy_cpu_us_per_request"] = mean([p.get("cpu_us_per_request") for p in proxy])
            t["proxy_peak_rss_mb"] = max(p["peak_rss_mb"] for p in proxy)
            t["proxy_runqueue_wait_frac"] = mean([p.get("runqueue_wait_s", 0) / r["duration_s"]
                                                  for p, r in zip(proxy, rs)])
        t["engine_cpu_util"] = mean([r["processes"]["engine"]["cpu_util"] for r in rs])
        t["engine_runqueue_wait_frac"] = mean([r["processes"]["engine"].get("runqueue_wait_s", 0) / r["duration_s"]
                                               for r in rs])
        t["loadgen_runqueue_wait_frac"] = mean([r["processes"].get("loadgen", {}).get("runqueue_wait_s", 0) /
                                                r["duration_s"] for r in rs])
        t["loadgen_cpu_util"] = mean([r["loadgen_cpu_s"] / r["duration_s"] for r in rs])
        s[target] = t
    ratios = {}
    for k, v in s["proxied"].items():
        d = s["direct"].get(k)
        if isinstance(v, (int, float)) and isinstance(d, (int, float)) and d and k not in ("errors",):
            ratios[k] = v / d
    s["ratio"] = ratios
    s["added_ms"] = {k: s["proxied"][k] - s["direct"][k] for k in s["proxied"]
                     if k.endswith(("_p50", "_p90", "_p99")) and s["proxied"][k] is not None
                     and s["direct"].get(k) is not None}
    return s


def check_targets(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        c, s = r["cell"], r["summary"]
        if c["name"] == "chat non-stream small":  # issue 13: with the SQLite store on (the default)
            ratio = s["ratio"].get("requests_per_s")
            out.append({"target": f"{c['name']}: proxied requests/s >= 0.90 x direct (SQLite store)", "value": ratio,
                        "met": ratio is not None and ratio >= 0.9})
            cpu = s["proxied"].get("proxy_cpu_us_per_request")
            out.append({"target": f"{c['name']}: proxy CPU <= 200 us per request", "value": cpu,
                        "met": cpu is not None and cpu <= 200})
        if c["mode"] != "chat-stream":
            continue
        if not c.get("stagger"):
            added = s["added_ms"].get("tail_ms_p99")
            out.append({"target": f"{c['name']}: added p99 end of stream after its last token (the commit) < 5 ms",
                        "value": added, "met": added is not None and added < 5.0})
        ratio = s["ratio"].get("tokens_per_s")
        out.append({"target": f"{c['name']}: proxied tokens/s >= 0.9 x direct", "value": ratio,
                    "met": ratio is not None and ratio >= 0.9})
        if c["c"] == 512 and not c.get("in_step"):
            added = s["added_ms"].get("ttft_ms_p99")
            out.append({"target": f"{c['name']}: added p99 TTFT < 2 ms", "value": added,
                        "met": added is not None and added < 2.0})
        if c["c"] == 512 and c.get("in_step"):
            # Stricter than the target. In step, a first token waits for the engine's next step,
            # which hides the request's own delay in TTFT; what the proxy adds to a first token is its
            # delivery lag (engine write -> client), the same as for any token of the burst it arrives
            # in, so the p99 over all tokens (tens of thousands of samples) is the robust figure.
            added = s["added_ms"].get("lag_ms_p99")
            out.append({"target": f"{c['name']}: added p99 token delivery lag < 2 ms (stricter check: "
                                  "vLLM-like bursts, first tokens included)", "value": added,
                        "met": added is not None and added < 2.0})
        if c["c"] == 4096:
            rss = s["proxied"].get("proxy_peak_rss_mb")
            out.append({"target": f"{c['name']}: proxy peak RSS < 200 MB", "value": rss,
                        "met": rss is not None and rss < 200})
    return out


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except Exception:  # noqa: BLE001 - not a git checkout
        return None


def fmt(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def render(out: dict) -> str:
    lines = []
    lines.append(f"Private Inference proxy benchmark — {out['generated_at']} (commit {out['git_commit']}), "
                 f"{out['machine']['cpus']} CPUs, load average before {out['machine']['loadavg_before'][0]:.2f} / "
                 f"after {out['machine']['loadavg_after'][0]:.2f}")
    lines.append(f"{out['pinning']}; {out['params']['duration_s']:g} s per run after "
                 f"{out['params']['warmup_s']:g} s warm-up (unless a cell's note says otherwise), "
                 f"{out['params']['rounds']} round(s) interleaved, means shown; proxy log level "
                 f"{out['params']['proxy_log_level']}")
    lines.append("Engine: pi-bench-backend (synthetic, timers only; vLLM SSE framing). Latencies in ms.")
    if out.get("preflight"):
        lines.append(f"Pre-flight: {out['preflight']}.")
    lines.append("")
    w = max([24] + [len(r["cell"]["name"]) for r in out["cells"]])  # cell column width
    hdr = f"| {'cell':<{w}} | {'figure':<16} | {'direct':>10} | {'proxied':>10} | {'ratio':>6} | {'added':>8} |"
    lines.append(hdr)
    lines.append("|" + "|".join("-" * (len(x)) for x in hdr.split("|")[1:-1]) + "|")
    for r in out["cells"]:
        c, s = r["cell"], r["summary"]
        d, p, ratio, added = s["direct"], s["proxied"], s["ratio"], s["added_ms"]
        rows = [("requests/s", "requests_per_s")]
        if c["mode"].startswith("chat"):
            rows.append(("tokens/s", "tokens_per_s"))
        for key, label in LATENCIES:
            if key in STREAM_ONLY and c["mode"] != "chat-stream":
                continue
            for q in ("p50", "p90", "p99"):
                rows.append((f"{label} {q}", f"{key}_{q}"))
        first = True
        for label, k in rows:
            name = c["name"] if first else ""
            first = False
            lines.append(f"| {name:<{w}} | {label:<16} | {fmt(d.get(k)):>10} | {fmt(p.get(k)):>10} | "
                         f"{fmt(ratio.get(k)):>6} | {fmt(added.get(k)) if k in added else '':>8} |")
        lines.append(f"| {'':<{w}} | {'errors':<16} | {d['errors']:>10} | {p['errors']:>10} | {'':>6} | {'':>8} |")
    lines.append("")
    lines.append("Proxy cost (proxied runs):")
    hdr2 = (f"| {'cell':<{w}} | {'conc.':>5} | {'proxy CPU %':>11} | {'CPU ms/1000 tok':>15} | "
            f"{'CPU us/request':>14} | {'peak RSS MB':>11} | {'engine CPU %':>12} | {'loadgen CPU %':>13} | "
            f"{'proxy waited %':>14} | {'direct: gen+engine waited %':>27} |")
    lines.append(hdr2)
    lines.append("|" + "|".join("-" * (len(x)) for x in hdr2.split("|")[1:-1]) + "|")
    for r in out["cells"]:
        c, p, d = r["cell"], r["summary"]["proxied"], r["summary"]["direct"]
        util = p.get("proxy_cpu_util")
        lines.append(f"| {c['name']:<{w}} | {c['c']:>5} | {fmt(util * 100 if util is not None else None, 1):>11} | "
                     f"{fmt(p.get('proxy_cpu_ms_per_1000_tokens')) if c['mode'].startswith('chat') else '-':>15} | "
                     f"{fmt(p.get('proxy_cpu_us_per_request'), 1):>14} | {fmt(p.get('proxy_peak_rss_mb'), 1):>11} | "
                     f"{fmt(p['engine_cpu_util'] * 100, 1):>12} | {fmt(p['loadgen_cpu_util'] * 100, 1):>13} | "
                     f"{fmt(p.get('proxy_runqueue_wait_frac', 0) * 100, 1):>14} | "
                     f"{fmt((d['engine_runqueue_wait_frac'] + d['loadgen_runqueue_wait_frac']) * 100, 1):>27} |")
    lines.append("(\"waited %\": share of the run a process was runnable but waiting for a CPU, from "
                 "/proc/PID/schedstat; high values mean other work on the machine starved it.)")
    notes = []
    for r in out["cells"]:
        note = r["cell"].get("note", "")
        runs = r["runs"]["direct"] + r["runs"]["proxied"]
        if runs and (runs[0].get("duration_s") != out["params"]["duration_s"]
                     or runs[0].get("warmup_s") != out["params"]["warmup_s"]):
            note += ("; " if note else "") + f"{runs[0]['duration_s']:g} s runs after {runs[0]['warmup_s']:g} s warm-up"
        if note:
            notes.append(f"{r['cell']['name']}: {note}")
    if notes:
        lines.append("")
        lines.append("Notes: " + "; ".join(notes) + ".")
    errs = [(r["cell"]["name"], t, r["summary"][t]["error_kinds"]) for r in out["cells"] for t in ("direct", "proxied")
            if r["summary"][t]["error_kinds"]]
    for name, t, kinds in errs:
        lines.append(f"Errors in {name} ({t}): {kinds}")
    bad_exits = sorted({r2.get("proxy_exit_status") for r in out["cells"] for r2 in r["runs"]["proxied"]} - {None})
    if bad_exits:
        lines.append(f"WARNING: the proxy did not exit cleanly on SIGTERM (exit statuses {bad_exits}).")
    lines.append("")
    lines.append("Targets:")
    for t in out["targets"]:
        lines.append(f"  [{'met ' if t['met'] else 'MISS'}] {t['target']} (measured {fmt(t['value'])})")
    if out.get("micro"):
        lines.append("")
        lines.append("Micro-benchmarks (bench/hot_path_bench.cpp; CPU time per operation, wall time beside it):")
        for b in out["micro"]:
            bps = b.get("bytes_per_second")
            lines.append(f"  {b['name']:<62} {b['cpu_ns_per_op']:>11,.0f} ns CPU {b['real_ns_per_op']:>11,.0f} ns wall"
                         + (f"  {bps / 1e6:7.0f} MB/s" if bps else ""))
    lines.append("")
    lines.append(f"(whole run: {out['elapsed_s']:.0f} s)")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default="build", help="where private-inference, pi-bench-backend, pi-loadgen are")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5)")
    ap.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds before (default 1.5; >= 2 at 4096)")
    ap.add_argument("--rounds", type=int, default=2, help="direct/proxied pairs per cell, order alternating")
    ap.add_argument("--quick", action="store_true", help="a subset of cells, 1 round, 3 s")
    ap.add_argument("--only", action="append", help="run cells whose name contains this (repeatable)")
    ap.add_argument("--pin", choices=["auto", "on", "off"], default="auto",
                    help="pin generator+engine and the proxy to separate CPUs; auto: only when the machine is "
                         "otherwise idle (load average < half the CPUs)")
    ap.add_argument("--nice", type=int, default=0,
                    help="run every benchmark process at this nice value (negative needs root): on a machine "
                         "shared with other work, e.g. -5 keeps that work from starving the runs; recorded")
    ap.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks")
    ap.add_argument("--micro-time", default="0.2", help="--benchmark_min_time for micro_bench (seconds)")
    ap.add_argument("--proxy-log-level", default="info", help="the proxy's --log-level (default: its default)")
    ap.add_argument("--proxy-threads", type=int, default=0, help="proxy --threads when not pinned (0: its default)")
    ap.add_argument("--baseline-binary", default=None,
                    help="also measure this private-inference binary (e.g. the previous commit's) in every round, "
                         "interleaved with the others, and print this build against it (before/after in one run)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"), help="JSON results")
    ap.add_argument("--write-docs", action="store_true",
                    help="also put the table into docs/performance.md (between its bench:latest markers)")
    ap.add_argument("--from-json", default=None, help="do not run: render the table of an earlier results JSON")
    ap.add_argument("--table", default=None, help="also write the printed table here (default: next to --out)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, min(args.duration, 3.0)

    # 4096 streams need ~8200 descriptors in the proxy and ~4100 in generator and engine.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < 10000:
        print(f"warning: open-files limit {soft} is too low for 4096 streams through the proxy (need ~8300)")

    if args.from_json:
        out = json.loads(Path(args.from_json).read_text())
    else:
        out = Bench(args).run()
    table = render(out)
    if out.get("baseline_binary"):
        table += "\n\n" + render_baseline(out)
    print()
    print(table)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(out_path)
    table_path = Path(args.table) if args.table else out_path.with_suffix(".txt")
    table_path.write_text(table + "\n")
    print(f"\nwrote {out_path} and {table_path}")
    if args.write_docs:
        write_docs(table)
    return 0


def render_baseline(out: dict) -> str:
    """This build against --baseline-binary, cell by cell, each measured against the same direct runs."""
    keys = [("tokens_per_s", "tok/s ratio", 1), ("ttft_ms_p99", "TTFT p99 +ms", 0),
            ("proxy_cpu_ms_per_1000_tokens", "CPU ms/1k tok", 0), ("proxy_peak_rss_mb", "peak RSS MB", 0)]
    lines = [f"before/after: this build vs {out['baseline_binary']} (same rounds, interleaved)",
             f"{'cell':<30}" + "".join(f"{label + ' new':>20}{label + ' old':>20}" for _, label, _ in keys)]

    def val(summary: dict, key: str, ratio: bool):
        if ratio:
            return summary.get("ratio", {}).get(key)
        if key.endswith("_p99"):
            return summary.get("added_ms", {}).get(key)
        return summary.get("proxied", {}).get(key)

    for c in out["cells"]:
        if "baseline_summary" not in c:
            continue
        row = f"{c['cell']['name']:<30}"
        for key, _, ratio in keys:
            row += f"{fmt(val(c['summary'], key, bool(ratio))):>20}{fmt(val(c['baseline_summary'], key, bool(ratio))):>20}"
        lines.append(row)
    return "\n".join(lines)


def write_docs(table: str) -> None:
    doc = ROOT / "docs" / "performance.md"
    text = doc.read_text()
    begin, end = "<!-- bench:latest:begin -->", "<!-- bench:latest:end -->"
    if begin not in text or end not in text:
        print(f"{doc} has no {begin} / {end} markers; not updated")
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n```\n{table}\n```\n{end}{tail}")
    print(f"updated {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
