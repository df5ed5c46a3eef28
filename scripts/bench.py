#!/usr/bin/env python3
"""Agentry's benchmark (`make bench`; scripts/bench.sh builds and installs the tools first).

Standard library only. Starts the fake upstream and Agentry (fresh database, persistence on,
logs at `warn`), creates a provider pointing at the fake and an agent, then measures on
loopback, with oha as the load generator:

- non-streaming load: the DIRECT call to the fake upstream and the calls THROUGH Agentry
  (`/v1/chat/completions`, `/v1/responses`, agent chat, one-shot runs), at concurrency 1, 16, 64
  and at fixed rates of 500, 1,000 and 2,000 requests/s, for each fake latency (0 and 50 ms);
  overhead = through - direct at each percentile;
- streaming time-to-first-token, direct vs through (sequential requests);
- Responses turns continuing the previous one (`previous_response_id`), with the conversation
  cache on and off (two servers asked in alternation);
- resident memory: idle, and with 1,000 and 10,000 concurrent open SSE streams (through the
  fake upstream over HTTP/1.1 and over HTTP/2, and on the in-process mock provider);
- time from process start to `/ready` answering 200;
- optionally LiteLLM's proxy (single worker) under the same load (BENCH_LITELLM=1).

Endpoints that answer 404 are skipped ("skipped: endpoint not available") so the same script
measures them once they exist. Every process started is killed on exit. The results section of
docs/performance.md (between the bench:results markers) is rewritten; raw results go to
results.json in the run's directory (printed at the end).

Environment (all optional):
  BENCH_QUICK=1            smoke run (short points, few streams); the doc is left alone
  BENCH_DURATION=5         seconds per load point
  BENCH_LATENCIES=0,50     fake upstream latencies (ms), one section each
  BENCH_SLOW_POINTS=c16,c64,r500,r1000   the points measured for latencies above 0
  BENCH_STREAMS=1000,10000 concurrent SSE streams held for the memory measurement
  BENCH_STREAM_SETTLE=6    seconds between the last stream opening and the memory reading
  BENCH_TTFT_N=200         sequential streamed requests per path for time-to-first-token
  BENCH_CHAIN_N=400        chained Responses turns per server (cache on, cache off)
  BENCH_READY_STARTS=7     starts measured for time-to-ready
  BENCH_DB=sqlite|postgres BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/test
  BENCH_WORKERS=n          AGENTRY_WORKERS for the server (default: one per core)
  BENCH_LOG=warn           AGENTRY_LOG for the server
  BENCH_PASS_ENV="A B"     names of variables passed to Agentry (its environment is otherwise
                           cleared of AGENTRY_*, DATABASE_URL, RUST_LOG and provider keys)
  AGENTRY_BENCH_TOKEN      sent as `Authorization: Bearer <token>` to Agentry
  BENCH_DOC=path           where to write the results section (default docs/performance.md)
  BENCH_NOTE=text          a note printed above the results (e.g. "measured under load")
  BENCH_OUT=dir            where logs and results.json go (default a new temporary directory)
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import http.client
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_list(name: str, default: str) -> list[str]:
    return [x.strip() for x in os.environ.get(name, default).split(",") if x.strip()]


QUICK = os.environ.get("BENCH_QUICK", "0") == "1"
DURATION = float(os.environ.get("BENCH_DURATION", "1.5" if QUICK else "5"))
WARMUP = 0.5 if QUICK else 1.0
CONCURRENCY = [1, 16, 64]
RATES = [500] if QUICK else [500, 1000, 2000]
LATENCIES = [int(x) for x in env_list("BENCH_LATENCIES", "0" if QUICK else "0,50")]
SLOW_POINTS = env_list("BENCH_SLOW_POINTS", "c16,r500" if QUICK else "c16,c64,r500,r1000")
STREAMS = [int(x) for x in env_list("BENCH_STREAMS", "50,200" if QUICK else "1000,10000")]
TTFT_N = env_int("BENCH_TTFT_N", 20 if QUICK else 200)
READY_STARTS = env_int("BENCH_READY_STARTS", 3 if QUICK else 7)
DB_KIND = os.environ.get("BENCH_DB", "sqlite")
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
TOKEN = os.environ.get("AGENTRY_BENCH_TOKEN", "")
AUTH = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}
BENCH_ADMIN_PASSWORD = "bench-admin-password-0123456789"
LITELLM = os.environ.get("BENCH_LITELLM", "0") == "1"
MESSAGE = "hello from the agentry benchmark"
# A slow answer of 80 words: a stream that stays open for minutes (3 s per word).
SLOW_MS = 3000
SLOW_MESSAGE = " ".join(f"w{i}" for i in range(80))
STREAM_HOLD_TIMEOUT = 30.0 if QUICK else 120.0
STREAM_SETTLE = float(os.environ.get("BENCH_STREAM_SETTLE", "6"))


def tool(name: str, env: str) -> str:
    path = os.environ.get(env) or shutil.which(name)
    if not path or not os.path.exists(path):
        sys.exit(f"bench: {name} not found (set {env}; `make bench` builds/installs it)")
    return path


# --------------------------------------------------------------------------------------------
# Processes: everything started is in its own process group and is killed on exit.

PROCS: list[subprocess.Popen] = []
CLEANUPS: list = []


def cleanup() -> None:
    for p in PROCS:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + 5
    for p in PROCS:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
    PROCS.clear()
    while CLEANUPS:
        try:
            CLEANUPS.pop()()
        except Exception as e:  # noqa: BLE001 - best effort on the way out
            print(f"bench: cleanup: {e}", file=sys.stderr)


def on_signal(signum, _frame):
    print(f"\nbench: signal {signum}, stopping everything started", file=sys.stderr)
    sys.exit(130)


atexit.register(cleanup)
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGHUP, on_signal)


def spawn(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    p = subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    out.close()
    PROCS.append(p)
    return p


def stop(p: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except OSError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if p in PROCS:
        PROCS.remove(p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body=None, headers=None, timeout=30.0):
    """One HTTP request; returns (status, parsed JSON or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")
    finally:
        conn.close()


def wait_ready(p: subprocess.Popen, port: int, path: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            sys.exit(f"bench: {log.stem} exited with {p.returncode} before it was ready:\n{tail}")
        try:
            if request(port, "GET", path, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"bench: {log.stem} not ready on port {port} after {timeout} s (log: {log})")


def rss_kb(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "Threads:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_rss_kb(pid: int) -> int:
    """VmRSS of a process and all its descendants (LiteLLM may fork)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += rss_kb(p).get("VmRSS", 0)
        except OSError:
            pass
        todo.extend(children.get(p, []))
    return total


# --------------------------------------------------------------------------------------------
# The processes under test.

class Run:
    """The run's directory and its tools."""

    def __init__(self) -> None:
        out = os.environ.get("BENCH_OUT")
        self.dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="agentry-bench-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.agentry = tool("agentry", "BENCH_AGENTRY_BIN")
        self.fake = tool("agentry-fake-upstream", "BENCH_FAKE_BIN")
        self.oha = tool("oha", "BENCH_OHA")
        self.n = 0

    def next_name(self, what: str) -> str:
        self.n += 1
        return f"{self.n:02d}-{what}"


class Fake:
    def __init__(self, run: Run, latency_ms: int) -> None:
        self.port = free_port()
        self.log = run.dir / f"{run.next_name('fake-upstream')}.log"
        self.proc = spawn(
            [run.fake, "--addr", f"127.0.0.1:{self.port}", "--latency-ms", str(latency_ms)],
            dict(os.environ), self.log,
        )
        wait_ready(self.proc, self.port, "/v1/models", 30, self.log)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        stop(self.proc)


def server_env(port: int, db_url: str) -> dict:
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("AGENTRY_") and k not in {
            "DATABASE_URL", "RUST_LOG", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
    }
    for name in os.environ.get("BENCH_PASS_ENV", "").split():
        if name in os.environ:
            env[name] = os.environ[name]
    env.update({
        "AGENTRY_ADDR": f"127.0.0.1:{port}",
        "DATABASE_URL": db_url,
        "AGENTRY_LOG": os.environ.get("BENCH_LOG", "warn"),
        # The benchmark logs in as the bootstrap admin; the per-client rate limits (100/min by
        # default) would otherwise turn the load into 429s.
        "AGENTRY_ADMIN_PASSWORD": BENCH_ADMIN_PASSWORD,
        "AGENTRY_RATE_LIMIT_PER_MINUTE": "1000000000",
        "AGENTRY_RATE_LIMIT_BURST": "1000000000",
        "AGENTRY_RATE_LIMIT_CONCURRENCY": "1000000",
    })
    if os.environ.get("BENCH_WORKERS"):
        env["AGENTRY_WORKERS"] = os.environ["BENCH_WORKERS"]
    return env


class Databases:
    """A fresh database per Agentry start: a new SQLite file, or a new PostgreSQL database."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.count = 0
        if DB_KIND not in ("sqlite", "postgres"):
            sys.exit(f"bench: BENCH_DB must be sqlite or postgres, not {DB_KIND!r}")
        if DB_KIND == "postgres" and not shutil.which("psql"):
            sys.exit("bench: BENCH_DB=postgres needs psql to create the databases")

    def fresh(self) -> str:
        self.count += 1
        if DB_KIND == "sqlite":
            path = self.run.dir / f"agentry-{self.count}.db"
            CLEANUPS.append(lambda: [Path(f"{path}{x}").unlink(missing_ok=True)
                                     for x in ("", "-wal", "-shm")])
            return f"sqlite://{path}"
        name = f"agentry_bench_{os.getpid()}_{self.count}"
        admin = PG_URL
        subprocess.run(["psql", admin, "-q", "-c", f"CREATE DATABASE {name}"], check=True,
                       stdout=subprocess.DEVNULL)
        CLEANUPS.append(lambda: subprocess.run(
            ["psql", admin, "-q", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        parts = re.match(r"^(postgres(?:ql)?://[^/]*)(/[^?]*)?(\?.*)?$", admin)
        if not parts:
            sys.exit(f"bench: cannot read BENCH_PG_URL {admin!r}")
        return f"{parts.group(1)}/{name}{parts.group(3) or ''}"


class Agentry:
    def __init__(self, run: Run, dbs: Databases, what: str = "agentry",
                 extra_env: dict | None = None) -> None:
        self.port = free_port()
        self.log = run.dir / f"{run.next_name(what)}.log"
        self.started = time.perf_counter()
        env = server_env(self.port, dbs.fresh())
        env.update(extra_env or {})
        self.proc = spawn([run.agentry, "serve"], env, self.log)
        wait_ready(self.proc, self.port, "/ready", 60, self.log)
        self.ready_s = time.perf_counter() - self.started
        if not TOKEN:
            self.login()

    def login(self) -> None:
        """Logs in as the bootstrap admin and sends its access token from now on."""
        status, body = request(self.port, "POST", "/api/v1/auth/login",
                               {"username": "admin", "password": BENCH_ADMIN_PASSWORD}, {})
        if status == 200 and isinstance(body, dict) and body.get("access_token"):
            AUTH["Authorization"] = f"Bearer {body['access_token']}"

    def call(self, method: str, path: str, body=None):
        return request(self.port, method, path, body, AUTH)

    def setup(self, fake: Fake, agents: dict[str, str]) -> None:
        """Creates providers `up` (the fake) and `mk` (kind mock), and the agents {key: model}."""
        status, body = self.call("POST", "/api/v1/providers", {
            "id": "up", "kind": "openai", "base_url": fake.base, "models": []})
        self._check(status, body, "create the provider")
        # An in-process provider (no upstream socket) that accepts any model name.
        status, body = self.call("POST", "/api/v1/providers", {
            "id": "mk", "kind": "mock", "models": []})
        self._check(status, body, "create the mock provider")
        for key, model in agents.items():
            status, body = self.call("POST", "/api/v1/agents", {
                "name": key, "model": model, "status": "active"})
            self._check(status, body, f"create agent {key}")
            got = body.get("key") if isinstance(body, dict) else None
            if got != key:
                sys.exit(f"bench: agent {key!r} was created with key {got!r}")

    @staticmethod
    def _check(status: int, body, what: str) -> None:
        if status in (401, 403):
            sys.exit(f"bench: Agentry refused to {what} ({status}): it asks for authentication; "
                     "set AGENTRY_BENCH_TOKEN to a token it accepts")
        if status not in (200, 201):
            sys.exit(f"bench: cannot {what}: {status} {body}")

    def rss(self) -> dict:
        return rss_kb(self.proc.pid)

    def close(self) -> None:
        stop(self.proc)


# --------------------------------------------------------------------------------------------
# Load with oha.

_OHA_JSON_FLAGS: list[str] | None = None


def oha_json_flags(oha: str) -> list[str]:
    global _OHA_JSON_FLAGS
    if _OHA_JSON_FLAGS is None:
        helptext = subprocess.run([oha, "--help"], capture_output=True, text=True).stdout
        _OHA_JSON_FLAGS = ["--output-format", "json"] if "--output-format" in helptext else ["-j"]
    return _OHA_JSON_FLAGS


def oha(run: Run, url: str, body: dict, headers: dict, duration: float,
        concurrency: int, rate: int | None = None) -> dict:
    cmd = [run.oha, "--no-tui", *oha_json_flags(run.oha), "-z", f"{duration}s", "-m", "POST",
           "-H", "Content-Type: application/json", "-d", json.dumps(body),
           "-c", str(concurrency)]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    if rate:
        # Open loop: requests are sent on schedule and latency is counted from the scheduled
        # time, so a slow server cannot hide its queueing (no coordinated omission).
        cmd += ["-q", str(rate), "--latency-correction"]
    cmd.append(url)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench: oha failed ({done.returncode}): {done.stderr[-2000:]}\n{' '.join(cmd)}")
    raw = json.loads(done.stdout)
    summary = raw.get("summary", {})
    pct = raw.get("latencyPercentiles", {})
    codes = {str(k): v for k, v in (raw.get("statusCodeDistribution") or {}).items()}
    errors = {k: v for k, v in (raw.get("errorDistribution") or {}).items()
              if "deadline" not in k.lower()}
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    elapsed = summary.get("total") or duration
    ms = lambda v: None if v is None else v * 1000.0  # noqa: E731
    return {
        "ok": ok,
        "non_2xx": sum(v for k, v in codes.items() if not k.startswith("2")),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "status_codes": codes,
        "rps": ok / elapsed if elapsed else 0.0,
        "p50": ms(pct.get("p50")),
        "p90": ms(pct.get("p90")),
        "p99": ms(pct.get("p99")),
        "mean": ms(summary.get("average")),
        "concurrency": concurrency,
        "rate": rate,
    }


def point_name(kind: str, value: int) -> str:
    return f"c{value}" if kind == "c" else f"r{value}"


def point_label(name: str) -> str:
    v = int(name[1:])
    return f"concurrency {v}" if name[0] == "c" else f"{v:,} req/s"


def points_for(latency: int) -> list[str]:
    all_points = [f"c{c}" for c in CONCURRENCY] + [f"r{r}" for r in RATES]
    return all_points if latency == 0 else [p for p in all_points if p in SLOW_POINTS]


def connections_for(name: str, latency_ms: int) -> int:
    v = int(name[1:])
    if name[0] == "c":
        return v
    # Enough connections for the rate at this latency, with room for queueing.
    return max(64, math.ceil(v * (latency_ms + 5) / 1000 * 3))


# --------------------------------------------------------------------------------------------
# Targets: the direct call and each way through Agentry.

def targets(fake: Fake, ag: Agentry) -> list[dict]:
    a = f"http://127.0.0.1:{ag.port}"
    return [
        {"id": "direct", "label": "direct: fake upstream `/v1/chat/completions`",
         "url": f"{fake.base}/chat/completions", "headers": {},
         "body": {"model": "fake-echo", "messages": [{"role": "user", "content": MESSAGE}]}},
        {"id": "completions", "label": "Agentry `/v1/chat/completions` (model = agent key)",
         "url": f"{a}/v1/chat/completions", "headers": AUTH,
         "body": {"model": "bench", "messages": [{"role": "user", "content": MESSAGE}]}},
        {"id": "responses", "label": "Agentry `/v1/responses`",
         "url": f"{a}/v1/responses", "headers": AUTH,
         "body": {"model": "bench", "input": MESSAGE}},
        {"id": "chat", "label": "Agentry agent chat `/api/v1/agents/bench/chat`",
         "url": f"{a}/api/v1/agents/bench/chat", "headers": AUTH,
         "body": {"message": MESSAGE}},
        {"id": "runs", "label": "Agentry one-shot run `/api/v1/runs`",
         "url": f"{a}/api/v1/runs", "headers": AUTH,
         "body": {"prompt": MESSAGE, "model": "up/fake-echo"}},
    ]


def probe(target: dict) -> str | None:
    """None when the endpoint answers 2xx, else why it is skipped."""
    url = target["url"]
    m = re.match(r"http://127\.0\.0\.1:(\d+)(/.*)", url)
    status, body = request(int(m.group(1)), "POST", m.group(2), target["body"], target["headers"])
    if status == 404:
        return f"skipped: endpoint not available (404 {json.dumps(body)[:160]})"
    if not 200 <= status < 300:
        return f"skipped: answered {status} {json.dumps(body)[:200]}"
    return None


def load_section(run: Run, dbs: Databases, latency: int, results: dict) -> tuple:
    print(f"\n== non-streaming load, fake upstream latency {latency} ms", flush=True)
    fake = Fake(run, latency)
    ag = Agentry(run, dbs)
    ag.setup(fake, {"bench": "up/fake-echo"})
    section = {"latency_ms": latency, "targets": {}, "skipped": {}}
    live = []
    for t in targets(fake, ag):
        why = probe(t)
        if why:
            print(f"  {t['id']}: {why}", flush=True)
            section["skipped"][t["id"]] = why
            continue
        section["targets"][t["id"]] = {"label": t["label"], "points": {}}
        live.append(t)
        oha(run, t["url"], t["body"], t["headers"], WARMUP, 8)
    for name in points_for(latency):
        conns = connections_for(name, latency)
        rate = int(name[1:]) if name[0] == "r" else None
        for t in live:
            # CPU of the process under test: the fake for the direct call, Agentry otherwise.
            pid = fake.proc.pid if t["id"] == "direct" else ag.proc.pid
            cpu0 = cpu_seconds(pid)
            r = oha(run, t["url"], t["body"], t["headers"], DURATION, conns, rate)
            cpu = cpu_seconds(pid) - cpu0
            r["cpu_us_per_req"] = cpu / r["ok"] * 1e6 if r["ok"] else None
            r["cpu_cores"] = cpu / DURATION
            section["targets"][t["id"]]["points"][name] = r
            print(f"  {name:>6} {t['id']:<12} {r['rps']:9.0f} req/s  p50 {fmt(r['p50'])}  "
                  f"p90 {fmt(r['p90'])}  p99 {fmt(r['p99'])} ms  non-2xx {r['non_2xx']}  "
                  f"errors {r['errors']}  cpu {fmt(r['cpu_us_per_req'])} us/req", flush=True)
    results["load"][str(latency)] = section
    return fake, ag


# --------------------------------------------------------------------------------------------
# Time to first token, sequential, direct vs through.

def _is_token(kind: str, frame: dict) -> bool:
    if kind == "openai":
        for choice in frame.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                return True
        return False
    if kind == "agent":
        return frame.get("type") == "token"
    if kind == "responses":
        return frame.get("type") == "response.output_text.delta"
    return False


class SseClient:
    """A keep-alive connection that sends a streaming request and times the first token frame."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def ttft(self, path: str, body: dict, headers: dict, kind: str) -> float | None:
        data = json.dumps(body).encode()
        h = {"Content-Type": "application/json", "Accept": "text/event-stream", **headers}
        t0 = time.perf_counter()
        self.conn.request("POST", path, body=data, headers=h)
        resp = self.conn.getresponse()
        if resp.status != 200:
            resp.read()
            return None
        first, buf = None, b""
        while first is None:
            chunk = resp.read1(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf and first is None:
                event, buf = buf.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue
                    try:
                        frame = json.loads(line[5:].strip())
                    except ValueError:
                        continue  # [DONE]
                    if isinstance(frame, dict) and _is_token(kind, frame):
                        first = time.perf_counter() - t0
                        break
        resp.read()  # the rest, untimed; the connection is then ready for the next request
        return first

    def close(self) -> None:
        self.conn.close()


def ttft_section(fake: Fake, ag: Agentry, results: dict) -> None:
    print(f"\n== time to first token, {TTFT_N} sequential streamed requests per path", flush=True)
    msgs = [{"role": "user", "content": MESSAGE}]
    paths = [
        ("direct", fake.port, "/v1/chat/completions",
         {"model": "fake-echo", "messages": msgs, "stream": True}, {}, "openai"),
        ("completions", ag.port, "/v1/chat/completions",
         {"model": "bench", "messages": msgs, "stream": True}, AUTH, "openai"),
        ("responses", ag.port, "/v1/responses",
         {"model": "bench", "input": MESSAGE, "stream": True}, AUTH, "responses"),
        ("chat", ag.port, "/api/v1/agents/bench/chat",
         {"message": MESSAGE, "stream": True}, AUTH, "agent"),
    ]
    live = []
    for pid, port, path, body, headers, kind in paths:
        status, answer = request(port, "POST", path, body, headers)
        if status == 404:
            results["ttft_skipped"][pid] = "skipped: endpoint not available"
            print(f"  {pid}: skipped: endpoint not available", flush=True)
            continue
        if status != 200:
            results["ttft_skipped"][pid] = f"skipped: answered {status}"
            print(f"  {pid}: skipped: answered {status} {str(answer)[:200]}", flush=True)
            continue
        live.append((pid, SseClient(port), path, body, headers, kind))
    samples: dict[str, list[float]] = {p[0]: [] for p in live}
    failures: dict[str, int] = {p[0]: 0 for p in live}
    for _ in range(10):  # warm-up
        for pid, client, path, body, headers, kind in live:
            client.ttft(path, body, headers, kind)
    for _ in range(TTFT_N):
        for pid, client, path, body, headers, kind in live:
            t = client.ttft(path, body, headers, kind)
            if t is None:
                failures[pid] += 1
            else:
                samples[pid].append(t * 1000)
    for pid, client, *_ in live:
        client.close()
        s = sorted(samples[pid])
        results["ttft"][pid] = {
            "n": len(s), "failures": failures[pid],
            "p50": percentile(s, 50), "p90": percentile(s, 90), "p99": percentile(s, 99),
        }
        r = results["ttft"][pid]
        print(f"  {pid:<12} n={r['n']}  p50 {fmt(r['p50'])}  p90 {fmt(r['p90'])}  "
              f"p99 {fmt(r['p99'])} ms  failures {failures[pid]}", flush=True)


CHAIN_N = env_int("BENCH_CHAIN_N", 40 if QUICK else 400)
CHAIN_LENGTH = 20


def chain_section(run: Run, dbs: Databases, fake: Fake, ag: Agentry, results: dict) -> None:
    """Responses turns continuing the previous one (`previous_response_id`), sequential on a
    keep-alive connection, chains of CHAIN_LENGTH turns: on `ag` (the conversation cache on,
    the default) and on a second server with `conversation_cache_bytes = 0`, turn by turn in
    alternation so both see the same machine."""
    print(f"\n== {CHAIN_N} chained Responses turns per server (chains of {CHAIN_LENGTH})",
          flush=True)
    ag_auth = dict(AUTH)
    off = Agentry(run, dbs, "agentry-no-conversation-cache",
                  {"AGENTRY_CONVERSATION_CACHE_BYTES": "0"})
    off.setup(fake, {"bench": "up/fake-echo"})
    # Each server signs its own access tokens: the second one's login replaced AUTH's.
    headers = {"cache": {"Content-Type": "application/json", **ag_auth},
               "no_cache": {"Content-Type": "application/json", **AUTH}}
    servers = [("cache", ag), ("no_cache", off)]
    conns = {name: http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
             for name, s in servers}
    statuses: dict[str, dict[int, int]] = {name: {} for name, _ in servers}
    previous: dict[str, str | None] = {name: None for name, _ in servers}
    samples: dict[str, list[float]] = {name: [] for name, _ in servers}
    cpu: dict[str, float] = {name: 0.0 for name, _ in servers}
    failures: dict[str, int] = {name: 0 for name, _ in servers}

    def one(name: str, server: Agentry, timed: bool) -> None:
        body = {"model": "bench", "input": MESSAGE}
        if previous[name]:
            body["previous_response_id"] = previous[name]
        c0 = cpu_seconds(server.proc.pid)
        t0 = time.perf_counter()
        conns[name].request("POST", "/v1/responses", json.dumps(body), headers[name])
        resp = conns[name].getresponse()
        data = resp.read()
        took = time.perf_counter() - t0
        used = cpu_seconds(server.proc.pid) - c0
        if resp.status != 200:
            failures[name] += 1
            statuses[name][resp.status] = statuses[name].get(resp.status, 0) + 1
            previous[name] = None
            return
        previous[name] = json.loads(data).get("id")
        if timed:
            samples[name].append(took * 1000)
            cpu[name] += used

    for i in range(CHAIN_LENGTH):  # warm-up: one chain each
        for name, server in servers:
            one(name, server, False)
    for i in range(CHAIN_N):
        for name, server in servers:
            if i % CHAIN_LENGTH == 0:
                previous[name] = None
            one(name, server, True)
    for name, _ in servers:
        conns[name].close()
        s = sorted(samples[name])
        results["chain"][name] = {
            "n": len(s), "failures": failures[name],
            "p50": percentile(s, 50), "p90": percentile(s, 90), "p99": percentile(s, 99),
            "cpu_us": cpu[name] / len(s) * 1e6 if s else None,
        }
        r = results["chain"][name]
        print(f"  {name:<9} n={r['n']}  p50 {fmt(r['p50'])}  p90 {fmt(r['p90'])}  "
              f"p99 {fmt(r['p99'])} ms  CPU {fmt(r['cpu_us'])} µs/turn  "
              f"failures {failures[name]} {statuses[name] or ''}", flush=True)
    off.close()
    AUTH.clear()
    AUTH.update(ag_auth)


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


# --------------------------------------------------------------------------------------------
# Memory: idle, and with N concurrent open SSE streams.

async def hold_streams(port: int, path: str, body: dict, n: int, measure) -> dict:
    """Opens n streaming requests, waits until each has received its first SSE frame, calls
    measure() while all are open, then closes them all."""
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in AUTH.items())
            + f"Content-Length: {len(data)}\r\n\r\n").encode()
    connect_gate = asyncio.Semaphore(256)
    state = {"open": 0, "failed": 0, "reasons": {}}
    all_open = asyncio.Event()
    release = asyncio.Event()
    writers = []

    def settle() -> None:
        if state["open"] + state["failed"] >= n:
            all_open.set()

    def fail(reason: str) -> None:
        state["failed"] += 1
        state["reasons"][reason] = state["reasons"].get(reason, 0) + 1
        settle()

    async def one() -> None:
        try:
            async with connect_gate:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writers.append(writer)
                writer.write(head + data)
                await writer.drain()
            buf = b""
            while b"data:" not in buf:
                chunk = await reader.read(65536)
                if not chunk:
                    return fail("closed before the first frame: " + buf[:60].decode(errors="replace"))
                buf += chunk
            if not buf.startswith(b"HTTP/1.1 200"):
                return fail(buf.split(b"\r\n", 1)[0].decode(errors="replace"))
            state["open"] += 1
            settle()
            # Keep reading (as a client would) until told to let go.
            while not release.is_set():
                chunk = await reader.read(65536)
                if not chunk:
                    break
        except (OSError, asyncio.IncompleteReadError) as e:
            fail(type(e).__name__ + ": " + str(e)[:80])

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(one()) for _ in range(n)]
    try:
        await asyncio.wait_for(all_open.wait(), STREAM_HOLD_TIMEOUT)
    except asyncio.TimeoutError:
        pass
    opened_in = time.perf_counter() - t0
    # Steady state: after the server's periodic return of freed memory (every 5 s by
    # default, `memory_trim_secs`) has run once since the last stream opened. jemalloc
    # (decision 132) returns freed pages over its own 10 s decay; with no decay at all the
    # 10,000-stream figure was ~3 MB lower, so 6 s does not flatter it.
    await asyncio.sleep(STREAM_SETTLE)
    sample = measure()
    release.set()
    for w in writers:
        w.transport.abort()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"requested": n, "open": state["open"], "failed": state["failed"],
            "failure_reasons": state["reasons"], "open_seconds": round(opened_in, 1), **sample}


def memory_section(run: Run, dbs: Databases, fake: Fake, results: dict) -> None:
    print("\n== resident memory", flush=True)
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Through the fake over HTTP/1.1, Agentry holds two sockets per stream (client and
    # upstream); over HTTP/2 one per stream plus one per `provider_streams_per_connection` (100).
    caps = {"upstream": max(1, (soft - 256) // 2), "upstream-h2": max(1, (soft - 256) * 100 // 101),
            "mock": soft - 256}
    mem = results["memory"]
    mem["nofile_limit"] = soft

    ag = Agentry(run, dbs, "agentry-memory")
    time.sleep(1.0)
    idle = ag.rss()
    mem["idle_kb"], mem["idle_threads"] = idle["VmRSS"], idle["Threads"]
    print(f"  idle after start: {mb(mem['idle_kb'])} MB", flush=True)
    ag.setup(fake, {"bench": "up/fake-echo"})
    # A little traffic, then idle again (pools, caches and allocator arenas are warm).
    for _ in range(200):
        ag.call("POST", "/api/v1/agents/bench/chat", {"message": MESSAGE})
    time.sleep(1.0)
    used = ag.rss()
    mem["idle_after_use_kb"], mem["idle_after_use_threads"] = used["VmRSS"], used["Threads"]
    print(f"  idle after 200 chat turns: {mb(mem['idle_after_use_kb'])} MB", flush=True)
    ag.close()

    mem["streams"] = []
    for n in STREAMS:
        for via, model, env in (
                ("upstream", f"up/fake-slow-{SLOW_MS}", {}),
                ("upstream-h2", f"up/fake-slow-{SLOW_MS}", {"AGENTRY_PROVIDER_HTTP_VERSION": "http2"}),
                ("mock", f"mk/slow-{SLOW_MS}", {})):
            count = min(n, caps[via])
            ag = Agentry(run, dbs, f"agentry-streams-{count}-{via}", env)
            ag.setup(fake, {"slow": model})
            before = ag.rss()["VmRSS"]
            r = asyncio.run(hold_streams(
                ag.port, "/api/v1/agents/slow/chat",
                {"message": SLOW_MESSAGE, "stream": True}, count,
                lambda: {"rss_kb": ag.rss()["VmRSS"], "hwm_kb": ag.rss()["VmHWM"],
                         "threads": ag.rss()["Threads"]}))
            r.update({"via": via, "target": n, "before_kb": before})
            if r["open"]:
                per = (r["rss_kb"] - before) / r["open"]
                r["per_stream_kb"] = per
                r["extrapolated_kb"] = before + per * n
            mem["streams"].append(r)
            print(f"  {r['open']:>6} streams open via {via:<11} (asked {count}, failed {r['failed']}, "
                  f"{r['open_seconds']} s to open): VmRSS {mb(r['rss_kb'])} MB "
                  f"(before {mb(before)} MB), peak {mb(r['hwm_kb'])} MB, {r['threads']} threads",
                  flush=True)
            if r["failure_reasons"]:
                print(f"    failures: {r['failure_reasons']}", flush=True)
            ag.close()


# --------------------------------------------------------------------------------------------
# Time to ready.

def ready_section(run: Run, dbs: Databases, results: dict) -> None:
    print(f"\n== time from process start to /ready = 200 ({READY_STARTS} starts each)",
          flush=True)
    out = {"fresh_ms": [], "restart_ms": []}
    log = run.dir / f"{run.next_name('agentry-ready')}.log"

    def time_to_ready(db: str) -> float:
        port = free_port()
        env = server_env(port, db)
        t0 = time.perf_counter()
        p = spawn([run.agentry, "serve"], env, log)
        try:
            while time.perf_counter() - t0 < 30:
                if p.poll() is not None:
                    sys.exit(f"bench: agentry exited during the ready test (log: {log})")
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    conn.request("GET", "/ready")
                    status = conn.getresponse().status
                    conn.close()
                    if status == 200:
                        return (time.perf_counter() - t0) * 1000
                except OSError:
                    pass
                time.sleep(0.001)
            sys.exit(f"bench: agentry never became ready (log: {log})")
        finally:
            stop(p)

    for _ in range(READY_STARTS):
        out["fresh_ms"].append(time_to_ready(dbs.fresh()))
    existing = dbs.fresh()
    time_to_ready(existing)  # creates and migrates it; not counted
    for _ in range(READY_STARTS):
        out["restart_ms"].append(time_to_ready(existing))
    out["fresh_median_ms"] = statistics.median(out["fresh_ms"])
    out["restart_median_ms"] = statistics.median(out["restart_ms"])
    results["ready"] = out
    print(f"  fresh database: median {out['fresh_median_ms']:.0f} ms "
          f"({', '.join(f'{x:.0f}' for x in out['fresh_ms'])})", flush=True)
    print(f"  existing database: median {out['restart_median_ms']:.0f} ms "
          f"({', '.join(f'{x:.0f}' for x in out['restart_ms'])})", flush=True)


# --------------------------------------------------------------------------------------------
# LiteLLM side by side.

def litellm_section(run: Run, fake: Fake, results: dict) -> None:
    lt = results["litellm"]
    if os.environ.get("BENCH_LITELLM_FAILED"):
        lt["status"] = os.environ["BENCH_LITELLM_FAILED"] + "; not measured"
        print(f"\n== LiteLLM: {lt['status']}", flush=True)
        return
    binary = os.environ.get("BENCH_LITELLM_BIN") or shutil.which("litellm")
    if not binary or not os.path.exists(binary):
        lt["status"] = "litellm not installed; not measured"
        print(f"\n== LiteLLM: {lt['status']}", flush=True)
        return
    print("\n== LiteLLM proxy (single worker), same fake upstream, latency 0 ms", flush=True)
    version = subprocess.run(
        [str(Path(binary).parent / "python"), "-c",
         "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True).stdout.strip()
    lt["version"] = version
    # LiteLLM refuses to start without a master key; it is checked on every request, as
    # Agentry's token would be.
    master_key = "sk-" + secrets.token_hex(24)
    auth = {"Authorization": f"Bearer {master_key}"}
    cfg = run.dir / "litellm.yaml"
    cfg.write_text(
        "model_list:\n"
        "  - model_name: bench\n"
        "    litellm_params:\n"
        "      model: openai/fake-echo\n"
        f"      api_base: {fake.base}\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
        "  telemetry: false\n"
        "general_settings:\n"
        f"  master_key: {master_key}\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"}}
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                "LITELLM_TELEMETRY": "False", "NO_DOCS": "True"})
    log = run.dir / f"{run.next_name('litellm')}.log"
    p = spawn([binary, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
               "--num_workers", "1"], env, log)
    try:
        wait_ready(p, port, "/health/liveliness", 180, log)
    except SystemExit as e:
        lt["status"] = f"did not start: {e}"
        print(f"  {lt['status']}", flush=True)
        stop(p)
        return
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = {"model": "bench", "messages": [{"role": "user", "content": MESSAGE}]}
    status, answer = request(port, "POST", "/v1/chat/completions", body, auth)
    if status != 200:
        lt["status"] = f"answered {status}: {str(answer)[:200]}; not measured"
        print(f"  {lt['status']}", flush=True)
        stop(p)
        return
    time.sleep(1.0)
    lt["idle_kb"] = tree_rss_kb(p.pid)
    oha(run, url, body, auth, WARMUP * 2, 8)
    lt["points"] = {}
    for c in CONCURRENCY:
        r = oha(run, url, body, auth, DURATION, c)
        lt["points"][f"c{c}"] = r
        print(f"  c{c:<5} litellm      {r['rps']:9.0f} req/s  p50 {fmt(r['p50'])}  "
              f"p90 {fmt(r['p90'])}  p99 {fmt(r['p99'])} ms  non-2xx {r['non_2xx']}  "
              f"errors {r['errors']}", flush=True)
    lt["loaded_kb"] = tree_rss_kb(p.pid)
    lt["status"] = "measured"
    stop(p)


# --------------------------------------------------------------------------------------------
# Report.

def fmt(v, signed=False) -> str:
    if v is None:
        return "–"
    s = f"{v:+.2f}" if signed else f"{v:.2f}"
    if abs(v) >= 100:
        s = f"{v:+.0f}" if signed else f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:+.1f}" if signed else f"{v:.1f}"
    return s


def mb(kb) -> str:
    return "–" if kb is None else f"{kb / 1024:.1f}"


def link_order_coverage() -> str:
    """How many of crates/server/link-order.txt's functions the measured binary has: the share
    of the code laid out as recorded (decision 129; idle memory depends on it)."""
    binary = os.environ.get("BENCH_AGENTRY_BIN", "")
    if not binary or not shutil.which("nm"):
        return "unknown"
    import link_order  # scripts/link_order.py, beside this file

    found, listed = link_order.coverage(Path(binary))
    return f"{found:,} of {listed:,} functions of crates/server/link-order.txt"


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "crates"],
                           capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory": mem,
            "kernel": platform.release(), "python": platform.python_version(),
            "link_order": link_order_coverage(),
            "commit": commit + (" (crates modified)" if dirty else ""),
            "loadavg_start": open("/proc/loadavg").read().split()[:3]}


def bars(results: dict) -> list[tuple[str, str, str]]:
    rows = []
    zero = results["load"].get("0", {})
    t = zero.get("targets", {})
    path = "completions" if "completions" in t else "chat"
    path_label = ("`/v1/chat/completions`" if path == "completions"
                  else "agent chat (`/v1/chat/completions` not available yet)")
    direct = t.get("direct", {}).get("points", {})
    through = t.get(path, {}).get("points", {})

    def verdict(ok):
        return "–" if ok is None else ("PASS" if ok else "MISS")

    if "r1000" in direct and "r1000" in through and through["r1000"]["p99"] is not None:
        ov = through["r1000"]["p99"] - direct["r1000"]["p99"]
        rows.append(("gateway overhead p99 ≤ 1 ms at 1,000 req/s, non-streaming, persistence on",
                     f"{fmt(ov, True)} ms on {path_label}", verdict(ov <= 1.0)))
    else:
        rows.append(("gateway overhead p99 ≤ 1 ms at 1,000 req/s", "not measured", "–"))

    tt = results["ttft"]
    spath = "completions" if "completions" in tt else "chat"
    if "direct" in tt and spath in tt and tt[spath]["p99"] is not None:
        ov = tt[spath]["p99"] - tt["direct"]["p99"]
        lbl = "`/v1/chat/completions`" if spath == "completions" else "agent chat SSE"
        rows.append(("streaming adds ≤ 1 ms to time-to-first-token at p99",
                     f"{fmt(ov, True)} ms on {lbl}", verdict(ov <= 1.0)))
    else:
        rows.append(("streaming adds ≤ 1 ms to TTFT at p99", "not measured", "–"))

    mem = results["memory"]
    big = [s for s in mem.get("streams", []) if s["target"] == max(STREAMS)]
    ups = [s for s in big if s["via"] == "upstream" and s.get("open")]
    h2 = [s for s in big if s["via"] == "upstream-h2" and s.get("open")]
    mock = [s for s in big if s["via"] == "mock" and s.get("open")]

    def at_target(s: dict) -> str:
        if s["open"] >= target:
            return f"{mb(s['rss_kb'])} MB"
        return f"{mb(s['extrapolated_kb'])} MB (extrapolated from {s['open']:,})"
    target = max(STREAMS)
    if ups:
        s = ups[0]
        if s["open"] >= target:
            val, kb = f"{mb(s['rss_kb'])} MB with {s['open']:,} streams", s["rss_kb"]
        else:
            kb = s["extrapolated_kb"]
            val = (f"{mb(kb)} MB extrapolated from {mb(s['rss_kb'])} MB at {s['open']:,} "
                   "streams through the fake upstream over HTTP/1.1")
        if h2:
            val += f"; {at_target(h2[0])} over HTTP/2"
        if mock:
            val += f"; {at_target(mock[0])} on `mock`"
        rows.append((f"{target:,} concurrent SSE streams in ≤ 300 MB", val,
                     verdict(kb / 1024 <= 300)))
    else:
        rows.append((f"{target:,} concurrent SSE streams in ≤ 300 MB", "not measured", "–"))

    if "idle_kb" in mem:
        rows.append(("idle memory ≤ 30 MB", f"{mb(mem['idle_kb'])} MB",
                     verdict(mem["idle_kb"] / 1024 <= 30)))
    rd = results.get("ready")
    if rd:
        db = "SQLite" if DB_KIND == "sqlite" else "PostgreSQL"
        rows.append(("ready in ≤ 200 ms with SQLite",
                     f"{rd['fresh_median_ms']:.0f} ms median ({db}, fresh database; "
                     f"{rd['restart_median_ms']:.0f} ms on an existing one)",
                     verdict(rd["fresh_median_ms"] <= 200) if DB_KIND == "sqlite" else "–"))

    best = max((p["rps"] for name, p in through.items() if name.startswith("c")), default=None)
    lt = results["litellm"]
    if best and lt.get("points"):
        lbest = max(p["rps"] for p in lt["points"].values())
        ratio = best / lbest if lbest else float("inf")
        rows.append(("max throughput ≥ 50× LiteLLM single worker",
                     f"{ratio:.1f}× ({best:,.0f} vs {lbest:,.0f} req/s, {path_label})",
                     verdict(ratio >= 50)))
    elif best:
        rows.append(("max throughput ≥ 50× LiteLLM single worker",
                     f"LiteLLM not measured ({lt.get('status', 'run with BENCH_LITELLM=1')}); "
                     f"Agentry {best:,.0f} req/s = {best / 100:.0f}× the ~100 req/s SPEC quotes",
                     "–"))
    return rows


def report(results: dict) -> str:
    m = results["machine"]
    lines = [BEGIN, ""]
    lines.append(f"_Generated by `make bench` on {results['date']} "
                 f"(commit {m['commit']}, {DB_KIND}, {DURATION:g} s per load point). "
                 "Everything between the markers is rewritten by each run._")
    lines.append("")
    if results.get("note"):
        lines += [f"**Note:** {results['note']}", ""]
    lines += ["### Machine", "", "| | |", "|---|---|",
              f"| cores (`nproc`) | {m['nproc']} |", f"| CPU | {m['cpu']} |",
              f"| memory | {m['memory']} |", f"| kernel | {m['kernel']} |",
              f"| load average when the run started | {' '.join(m['loadavg_start'])} |",
              f"| load generator | {results['oha_version']} |",
              f"| Agentry workers | {os.environ.get('BENCH_WORKERS') or 'default (one per core)'} |",
              f"| code laid out in the recorded order | {m.get('link_order', 'unknown')} |",
              ""]
    lines += ["### Quality bars (SPEC)", "", "| bar | measured | |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in bars(results)]
    lines.append("")

    for latency, section in results["load"].items():
        lines += [f"### Non-streaming load, fake upstream latency {latency} ms", "",
                  "Latencies in ms. Δ = through Agentry − direct, at the same load point, "
                  "measured back to back in this run. CPU = CPU time of the process under test "
                  "(the fake upstream for the direct call, Agentry alone otherwise) per "
                  "successful request, in µs.", "",
                  "| endpoint | load | req/s | p50 | p90 | p99 | Δp50 | Δp90 | Δp99 | CPU µs/req "
                  "| failed |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        direct = section["targets"].get("direct", {}).get("points", {})
        names = [n for n in points_for(int(latency))]
        for name in names:
            for tid, t in section["targets"].items():
                p = t["points"].get(name)
                if not p:
                    continue
                d = direct.get(name)
                delta = lambda k: (fmt(p[k] - d[k], True)  # noqa: E731
                                   if tid != "direct" and d and p[k] is not None
                                   and d[k] is not None else "")
                failed = p["non_2xx"] + p["errors"]
                lines.append(
                    f"| {t['label']} | {point_label(name)} | {p['rps']:,.0f} | {fmt(p['p50'])} | "
                    f"{fmt(p['p90'])} | {fmt(p['p99'])} | {delta('p50')} | {delta('p90')} | "
                    f"{delta('p99')} | {fmt(p.get('cpu_us_per_req'))} | {failed or ''} |")
        for tid, why in section["skipped"].items():
            lines.append(f"| `{tid}` | {why.split(' (')[0]} | | | | | | | | | |")
        lines.append("")

    lt = results["litellm"]
    lines += ["### LiteLLM proxy, single worker, same fake upstream (latency 0 ms)", ""]
    if lt.get("points"):
        direct = results["load"].get("0", {}).get("targets", {}).get("direct", {}).get("points", {})
        lines += [f"LiteLLM {lt.get('version', '')}; resident memory {mb(lt.get('idle_kb'))} MB "
                  f"idle, {mb(lt.get('loaded_kb'))} MB after the load.", "",
                  "| load | req/s | p50 | p90 | p99 | Δp50 | Δp99 | failed |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, p in lt["points"].items():
            d = direct.get(name)
            dd = lambda k: fmt(p[k] - d[k], True) if d and p[k] is not None else ""  # noqa: E731
            lines.append(f"| {point_label(name)} | {p['rps']:,.0f} | {fmt(p['p50'])} | "
                         f"{fmt(p['p90'])} | {fmt(p['p99'])} | {dd('p50')} | {dd('p99')} | "
                         f"{(p['non_2xx'] + p['errors']) or ''} |")
    else:
        lines.append(f"Not measured: {lt.get('status', 'run `make bench BENCH_LITELLM=1`')}.")
    lines.append("")

    tt = results["ttft"]
    lines += [f"### Streaming: time to first token ({TTFT_N} sequential requests per path, "
              "fake latency 0 ms)", "",
              "| path | n | p50 | p90 | p99 | Δp50 | Δp99 |", "|---|---:|---:|---:|---:|---:|---:|"]
    labels = {"direct": "direct: fake upstream `/v1/chat/completions`",
              "completions": "Agentry `/v1/chat/completions` stream",
              "responses": "Agentry `/v1/responses` stream",
              "chat": "Agentry agent chat, `stream: true`"}
    d = tt.get("direct")
    for pid, r in tt.items():
        dd = (lambda k: fmt(r[k] - d[k], True)  # noqa: E731
              if pid != "direct" and d and r[k] is not None else "")
        lines.append(f"| {labels[pid]} | {r['n']} | {fmt(r['p50'])} | {fmt(r['p90'])} | "
                     f"{fmt(r['p99'])} | {dd('p50')} | {dd('p99')} |")
    for pid, why in results["ttft_skipped"].items():
        lines.append(f"| {labels[pid]} | {why} | | | | | |")
    lines.append("")

    ch = results.get("chain", {})
    if ch:
        lines += [f"### Continuing a response: {CHAIN_N} sequential `/v1/responses` turns with "
                  f"`previous_response_id` (chains of {CHAIN_LENGTH}), fake latency 0 ms", "",
                  "CPU = Agentry's CPU time per turn. The two servers are asked in alternation, "
                  "turn by turn.", "",
                  "| server | n | p50 | p90 | p99 | CPU µs/turn | failed |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        chain_labels = {"cache": "conversation cache on (default, 8 MiB)",
                        "no_cache": "conversation cache off (`conversation_cache_bytes = 0`)"}
        for name, r in ch.items():
            lines.append(f"| {chain_labels[name]} | {r['n']} | {fmt(r['p50'])} | "
                         f"{fmt(r['p90'])} | {fmt(r['p99'])} | {fmt(r['cpu_us'])} | "
                         f"{r['failures'] or ''} |")
        lines.append("")

    mem = results["memory"]
    lines += ["### Resident memory (VmRSS of the Agentry process)", "",
              "| state | VmRSS MB | peak (VmHWM) MB | threads |", "|---|---:|---:|---:|",
              f"| idle, right after start | {mb(mem.get('idle_kb'))} | | {mem.get('idle_threads', '')} |",
              f"| idle, after 200 chat turns | {mb(mem.get('idle_after_use_kb'))} | | "
              f"{mem.get('idle_after_use_threads', '')} |"]
    for s in mem.get("streams", []):
        via = {"upstream": "through the fake upstream over HTTP/1.1 (2 sockets per stream)",
               "upstream-h2": "through the fake upstream over HTTP/2 (h2c, 100 streams per "
                              "connection)",
               }.get(s["via"], "on the in-process `mock` provider")
        extra = f", {s['failed']} failed" if s["failed"] else ""
        ext = ""
        if s["open"] and s["open"] < s["target"] and s.get("extrapolated_kb"):
            ext = (f" (→ {mb(s['extrapolated_kb'])} MB extrapolated to {s['target']:,}; "
                   f"{s['per_stream_kb']:.1f} KB per stream)")
        lines.append(f"| {s['open']:,} open SSE streams {via}{extra}{ext} | "
                     f"{mb(s.get('rss_kb'))} | {mb(s.get('hwm_kb'))} | {s.get('threads', '')} |")
    lines.append("")
    if any(s["via"] == "upstream" and s["open"] < s["target"] for s in mem.get("streams", [])):
        lines += [f"The open-files limit here is {mem['nofile_limit']:,} per process and cannot "
                  "be raised without privileges; through an upstream, Agentry needs two sockets per "
                  "stream over HTTP/1.1, so the largest count through it is capped and the 10,000 "
                  "figure is extrapolated linearly; it is also measured over HTTP/2 and on the "
                  "in-process `mock` provider.", ""]

    rd = results.get("ready")
    if rd:
        lines += ["### Start-up: process start to `/ready` = 200", "",
                  "| database | median ms | each start, ms |", "|---|---:|---|",
                  f"| fresh ({DB_KIND}, migrations applied) | {rd['fresh_median_ms']:.0f} | "
                  f"{', '.join(f'{x:.0f}' for x in rd['fresh_ms'])} |",
                  f"| existing ({DB_KIND}) | {rd['restart_median_ms']:.0f} | "
                  f"{', '.join(f'{x:.0f}' for x in rd['restart_ms'])} |", ""]
    lines.append(END)
    return "\n".join(lines)


def write_doc(text: str) -> Path:
    doc = Path(os.environ.get("BENCH_DOC") or ROOT / "docs" / "performance.md")
    current = doc.read_text() if doc.exists() else "# Performance\n"
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        new = head + text + tail
    else:
        new = current.rstrip("\n") + "\n\n## Results\n\n" + text + "\n"
    doc.write_text(new)
    return doc


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    run = Run()
    dbs = Databases(run)
    started = time.monotonic()
    oha_version = subprocess.run([run.oha, "--version"], capture_output=True,
                                 text=True).stdout.strip()
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "oha_version": oha_version, "quick": QUICK,
        "db": DB_KIND, "duration_s": DURATION, "note": os.environ.get("BENCH_NOTE", ""),
        "load": {}, "ttft": {}, "ttft_skipped": {}, "chain": {}, "memory": {}, "litellm": {},
    }
    print(f"bench: run directory {run.dir} ({'quick' if QUICK else 'full'} run, {DB_KIND})")

    for latency in LATENCIES:
        fake, ag = load_section(run, dbs, latency, results)
        if latency == 0:
            ttft_section(fake, ag, results)
            chain_section(run, dbs, fake, ag, results)
            ag.close()  # idle processes only from here on
            if LITELLM:
                litellm_section(run, fake, results)
            memory_section(run, dbs, fake, results)
        ag.close()
        fake.close()
    if not LATENCIES or 0 not in LATENCIES:
        fake = Fake(run, 0)
        memory_section(run, dbs, fake, results)
        fake.close()
    ready_section(run, dbs, results)
    results["elapsed_s"] = round(time.monotonic() - started)

    (run.dir / "results.json").write_text(json.dumps(results, indent=2))
    text = report(results)
    (run.dir / "results.md").write_text(text + "\n")
    print("\n" + text)
    if not QUICK or os.environ.get("BENCH_DOC"):
        print(f"\nbench: wrote {write_doc(text)}")
    print(f"bench: done in {results['elapsed_s']} s; logs and results.json in {run.dir}")


if __name__ == "__main__":
    main()
