"""A fleet: three proxy replicas behind HAProxy, one redis-server, the synthetic engine (issue #13 item 5).

Real parts only: Debian's haproxy (round robin, health checks) and redis-server (AOF, fsync always), the
private-inference binary three times (each with its own dev-tee: the same key seed, as KMS-derived keys are
the same for every replica of an app, and its own instance id), and pi-bench-backend as the engine (timers
only, vLLM framing), so that ~300 concurrent streams fit on a 2-core CI machine.

Mid-run, one replica is SIGKILLed and, later, Redis is SIGKILLed and restarted on its AOF. Afterwards every
signature is fetched through the load balancer (so mostly from a replica that did not serve the answer) and
verified from the bytes the client received, with eth-account and cryptography. Asserted: no signature is
lost for an answer the client received in full, and every record names the instance that served it (HAProxy
says which server answered; /v1/attestation names each replica's instance).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

import verify_helpers as vh
from conftest import pi_binary, free_port, sanitizer_env, start_proxy, _unix_socket_answers

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
TOKEN = "fleet-token-7f3a9c"
INSTANCES = ["f1ee70000000000000000000000000000000000a", "f1ee70000000000000000000000000000000000b",
             "f1ee70000000000000000000000000000000000c"]
STREAMS = 300
PLAIN = 150


def _need(path: str, what: str) -> None:
    if not Path(path).exists():
        if os.environ.get("PI_REQUIRE_ALL") == "1":
            pytest.fail(f"{what} ({path}) is not installed (PI_REQUIRE_ALL=1)")
        pytest.skip(f"{what} ({path}) is not installed")


def _wait(cond, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Redis:
    def __init__(self, stack, tmp: Path):
        self.stack, self.dir, self.port = stack, tmp / "redis", free_port()
        self.dir.mkdir()
        self.proc, self.starts = None, 0
        self.start()

    def start(self):
        self.starts += 1
        self.proc = self.stack.start(f"redis-{self.starts}", "redis", [REDIS, "--port", str(self.port), "--bind", "127.0.0.1",
                                                        "--dir", str(self.dir), "--save", "", "--appendonly", "yes",
                                                        "--appendfsync", "always"])
        _wait(lambda: _port_open(self.port), "redis-server listening")

    def kill(self):
        self.proc.popen.send_signal(signal.SIGKILL)
        self.proc.popen.wait(10)
        self.proc.stop()


def _haproxy_cfg(port: int, replicas: list[tuple[str, int]]) -> str:
    # Health checks generous enough for ASan replicas under load on 2 cores; a dead replica refuses connections,
    # which `retries` + `redispatch` send to another server before the checks even notice.
    servers = "\n".join(f"    server {name} 127.0.0.1:{p} check inter 500ms fall 2 rise 1" for name, p in replicas)
    return f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout check 5s
    retries 3
    option redispatch
frontend fleet
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /health
    http-response set-header X-Served-By %s
{servers}
"""


def _dev_tee(stack, base: Path, i: int, seed_dir: Path):
    sock = base / f"dstack-{i}.sock"
    proc = stack.start(f"dev-tee-{i}", "dev-tee", [str(pi_binary()), "dev-tee", "--socket", str(sock), "--state",
                                                  str(seed_dir), "--instance-id", INSTANCES[i]],
                       env=sanitizer_env())
    _wait(lambda: _unix_socket_answers(sock), f"dev-tee {i} socket", 90)
    return sock, proc


async def _one(client: httpx.AsyncClient, i: int, stream: bool, results: list) -> None:
    # Non-streamed answers are short (2 tokens, ~0.1 s), so the replica killed at 0.6 s has completed some.
    body = json.dumps({"model": "synthetic", "messages": [{"role": "user", "content": f"fleet {i}"}],
                       "max_tokens": 24 if stream else 2, "stream": stream}).encode()
    try:
        if stream:
            async with client.stream("POST", "/v1/chat/completions", content=body,
                                     headers={"content-type": "application/json"}) as r:
                raw = b"".join([c async for c in r.aiter_raw()])
                served = r.headers.get("x-served-by")
                status = r.status_code
        else:
            r = await client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
            raw, served, status = r.content, r.headers.get("x-served-by"), r.status_code
    except httpx.HTTPError:
        results.append((i, stream, None, body, b"", None))  # cut (the killed replica): not received in full
        return
    results.append((i, stream, status, body, raw, served))


def _complete(stream: bool, status, raw: bytes) -> bool:
    if status != 200:
        return False
    if stream:
        return vh.sse_has_done(raw)
    try:
        return "id" in json.loads(raw)
    except ValueError:
        return False


@pytest.mark.timeout(600)
def test_fleet_behind_haproxy_loses_no_signature(stack, tmp_path):
    _need(HAPROXY, "haproxy")
    _need(REDIS, "redis-server")
    engine_bin = pi_binary().parent / "pi-bench-backend"
    _need(str(engine_bin), "the synthetic engine (pi-bench-backend)")

    engine_port = free_port()
    stack.start("engine", "backend", [str(engine_bin), "--listen", f"127.0.0.1:{engine_port}", "--ttft-ms", "20",
                                      "--itl-ms", "40", "--tokens", "24", "--threads", "1"])
    _wait(lambda: _port_open(engine_port), "synthetic engine listening")
    redis = Redis(stack, tmp_path)

    seed = tmp_path / "kms-seed"  # one seed: the replicas' keys are the same, as dstack's KMS makes them
    socks = []
    for i in range(3):
        sock, _ = _dev_tee(stack, tmp_path, i, seed)
        socks.append(sock)
    replicas = []
    for i in range(3):
        replicas.append(start_proxy(stack, f"replica-{i}", f"http://127.0.0.1:{engine_port}", socks[i], [TOKEN],
                                    ["--store", f"redis://127.0.0.1:{redis.port}", "--threads", "2"],
                                    model="synthetic"))
    addresses = set()
    for p in replicas:
        with p.client() as c:
            rep = c.get("/v1/attestation/report").json()
            addresses.add(rep["signing_address"])
            assert rep["instance_id"] in INSTANCES, "each replica's report names its instance"
    assert len(addresses) == 1, "the replicas share the fleet's keys"

    lb_port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(_haproxy_cfg(lb_port, [(f"r{i}", int(p.url.rsplit(":", 1)[1])) for i, p in enumerate(replicas)]))
    stack.start("haproxy", "haproxy", [HAPROXY, "-db", "-f", str(cfg)])
    lb = f"http://127.0.0.1:{lb_port}"
    _wait(lambda: _port_open(lb_port), "haproxy listening")
    served_instance = {f"r{i}": INSTANCES[i] for i in range(3)}

    async def run_load() -> list:
        results: list = []
        limits = httpx.Limits(max_connections=STREAMS + 50, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=lb, timeout=120, limits=limits,
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Accept-Encoding": "identity"}) as client:
            # Interleaved, so that every replica has short non-streamed answers completing early on.
            # (A fixed shuffle: a period of 3 would line up with the 3 servers of the round robin.)
            kinds = [True] * STREAMS + [False] * PLAIN
            random.Random(7).shuffle(kinds)
            tasks = [asyncio.create_task(_one(client, i, stream, results)) for i, stream in enumerate(kinds)]

            async def chaos():
                # Once the victim has delivered answers in full (their records are in Redis), kill it while it
                # still has streams in flight; then take Redis away mid-run and bring it back on its AOF.
                deadline = time.monotonic() + 60
                while not any(r[5] == "r1" and _complete(r[1], r[2], r[4]) for r in results):
                    assert time.monotonic() < deadline, "replica r1 completed no answer"
                    await asyncio.sleep(0.02)
                victim = replicas[1]
                victim.proc.popen.send_signal(signal.SIGKILL)
                victim.proc.popen.wait(10)
                victim.proc.role = "proxy-killed"  # its exit status is the point
                await asyncio.sleep(0.4)
                redis.kill()  # records are kept by the replicas meanwhile
                await asyncio.sleep(0.8)
                redis.start()

            await asyncio.gather(chaos(), *tasks)
            # A second wave once everything is back: served by the two live replicas.
            more = [asyncio.create_task(_one(client, STREAMS + PLAIN + i, i % 2 == 0, results)) for i in range(60)]
            await asyncio.gather(*more)
        return results

    results = asyncio.run(run_load())
    complete = [r for r in results if _complete(r[1], r[2], r[4])]
    assert len(complete) >= STREAMS, f"only {len(complete)} of {len(results)} answers arrived in full"

    # Records kept in memory during the outage reach Redis once it is back.
    for p in (replicas[0], replicas[2]):
        with p.client() as c:
            _wait(lambda c=c: vh.metric_value(c, "pi_signature_store_unsynced_records") == 0
                  and vh.metric_value(c, "pi_signature_store_connected") == 1, f"{p.url} re-synced", 30)

    # The outage was real: the live replicas saw Redis go and come back, and kept answers' records meanwhile.
    kept = 0
    for p in (replicas[0], replicas[2]):
        logs = p.proc.logs()
        assert "unreachable" in logs and "reachable again" in logs, f"{p.url} did not see the Redis restart"
        kept += sum(int(m) for m in re.findall(r"reachable again; writing (\d+) record", logs))
        with p.client() as c:
            assert vh.metric_value(c, "pi_signature_store_errors_total") >= 1
    assert kept > 0, "no answer completed while Redis was away: the outage path was not exercised"

    lost, other_replica, by_instance = [], 0, {}
    with httpx.Client(base_url=lb, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        for i, stream, status, body, raw, served in complete:
            rid = vh.stream_id(raw) if stream else json.loads(raw)["id"]
            for algo in vh.ALGOS:
                r = vh.fetch_signature(c, rid, algo, TOKEN)
                if r.status_code != 200:
                    lost.append((rid, algo, r.status_code, served))
                    continue
                rec = r.json()
                vh.check_signature_record(rec, algo, body, raw)
                assert rec["ecdsa_signing_address"] in addresses
                assert rec["instance_id"] == served_instance[served], "the record names the replica that served it"
                if r.headers.get("x-served-by") != served:
                    other_replica += 1
            by_instance[served] = by_instance.get(served, 0) + 1
    assert not lost, f"{len(lost)} signature(s) lost for answers received in full: {lost[:5]}"
    assert len(by_instance) == 3, f"every replica served answers: {by_instance}"
    assert by_instance["r1"] > 0, "the killed replica's records are served by the others after its death"
    assert other_replica > len(complete) // 2, "most records were fetched from a replica that did not serve them"
    print(f"fleet: {len(results)} answers, {len(complete)} in full ({kept} completed while Redis was away), all "
          f"{2 * len(complete)} signatures verified; "
          f"{other_replica} fetched from another replica; served by {by_instance}")


def test_vllm_proxy_redis_variables_select_redis(stack, tmp_path, backend, dev_tee):
    """REDIS_HOST / REDIS_PORT / REDIS_PASSWORD, as vllm-proxy users set them, put the records in Redis: a second
    replica with the same variables serves a record the first one signed; the password never reaches a log."""
    _need(REDIS, "redis-server")
    password = "pw-" + os.urandom(6).hex()
    port = free_port()
    stack.start("redis-env", "redis", [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                                       "--save", "", "--requirepass", password])
    _wait(lambda: _port_open(port), "redis-server listening")
    stack.tokens.add(password)  # the log scan checks no log contains it
    env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port), "REDIS_PASSWORD": password}
    token = "redis-env-token"
    first = start_proxy(stack, "redis-env-a", backend.url, dev_tee.socket, [token], env=env)
    second = start_proxy(stack, "redis-env-b", backend.url, dev_tee.socket, [token], env=env)
    assert f"signature store: redis://:***@127.0.0.1:{port}" in first.proc.logs()
    body = json.dumps({"messages": [{"role": "user", "content": f"Say hi {stack.marker()}"}], "max_tokens": 4}).encode()
    with first.client() as c:
        r = c.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        stack.remember_body(r.content)
        assert vh.metric_value(c, "pi_signature_store_connected") == 1
    with second.client() as c:
        for algo in vh.ALGOS:
            rec = vh.fetch_signature(c, r.json()["id"], algo, token)
            assert rec.status_code == 200, rec.text
            vh.check_signature_record(rec.json(), algo, body, r.content)
