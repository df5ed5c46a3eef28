#!/usr/bin/env python3
"""Records the functions a running Agentry executes and writes them, hottest first, to
crates/server/link-order.txt, the order the release binary's code is linked in (decision 129,
crates/server/build.rs).

Usage: make link-order  (or scripts/link_order.py [--check])

The release binary runs under valgrind's callgrind (exact: every function that runs is
recorded, not a sample) through a short workload that covers what a server does at rest and
under load: start-up and migrations, login, agents and providers created, agent chat, the
Responses and Chat Completions surfaces and one-shot runs, each answered and streamed, through
the benchmark's fake upstream over HTTP/1.1 and over HTTP/2. Both runs' functions are kept;
the order is by the instructions each function itself executed, so the hottest code is also
the most compact.

Rerun it after a change to dependencies, features or the compiler (their function names
carry hashes that change with them: names the file lists that a build does not have are
skipped, so a stale file costs memory, never correctness). `--check` only reports how many
of the file's names the built binary has.

Needs valgrind (Debian package `valgrind`) and the release builds of `agentry` and of
`agentry-fake-upstream`, each in its own cargo invocation (`cargo build --release -p agentry`,
then `cargo build --release -p agentry-fake-upstream`; decision 129): `make link-order` does.
"""

from __future__ import annotations

import asyncio
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ROOT / "crates" / "server" / "link-order.txt"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BINARY = Path(os.environ.get("BENCH_AGENTRY_BIN", TARGET / "release" / "agentry"))
FAKE = Path(os.environ.get("BENCH_FAKE_BIN", TARGET / "release" / "agentry-fake-upstream"))

MESSAGE = "hello from the link order workload"


def functions_in(binary: Path) -> set[str]:
    """The (mangled) names of the binary's functions."""
    out = subprocess.run(["nm", str(binary)], capture_output=True, text=True, check=True).stdout
    return {p[2] for p in (line.split() for line in out.splitlines())
            if len(p) == 3 and p[1] in "tT"}


def coverage(binary: Path) -> tuple[int, int]:
    """How many of the recorded functions `binary` has, and how many are recorded."""
    listed = ORDER.read_text().split() if ORDER.is_file() else []
    have = functions_in(binary)
    return sum(1 for name in listed if name in have), len(listed)


def self_costs(paths: list[str]) -> collections.Counter:
    """Instructions executed in each function itself (not in what it calls), from callgrind
    outputs written with `--demangle=no` and name compression."""
    cost: collections.Counter = collections.Counter()
    for path in paths:
        names: dict[str, str] = {}
        current = None
        after_call = False
        with open(path, errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                m = re.match(r"^(c?)fn=\((\d+)\)(?: (.*))?$", line)
                if m:
                    if m.group(3):
                        names[m.group(2)] = m.group(3)
                    if not m.group(1):
                        current = names.get(m.group(2))
                        if current:
                            cost.setdefault(current, 0)
                        after_call = False
                    continue
                if line.startswith("calls="):
                    # The next cost line is the call's inclusive cost, not this function's.
                    after_call = True
                    continue
                if line[:1].isdigit() or line[:1] in ("+", "-", "*"):
                    if after_call:
                        after_call = False
                        continue
                    parts = line.split()
                    if current and len(parts) >= 2 and parts[1].isdigit():
                        cost[current] += int(parts[1])
    return cost


def workload(h2: bool, out_dir: Path) -> None:
    """Starts the release server under callgrind and drives the workload through it."""
    sys.path.insert(0, str(ROOT / "scripts"))
    os.environ["BENCH_AGENTRY_BIN"] = str(out_dir / "agentry-under-callgrind")
    os.environ["BENCH_FAKE_BIN"] = str(FAKE)
    os.environ.setdefault("BENCH_OHA", shutil.which("true") or "/bin/true")
    os.environ["BENCH_OUT"] = str(out_dir / ("h2" if h2 else "h1"))
    import bench as B  # noqa: E402  (the benchmark's process helpers)

    run = B.Run()
    dbs = B.Databases(run)
    fake = B.Fake(run, 0)
    extra = {"AGENTRY_PROVIDER_HTTP_VERSION": "http2"} if h2 else {}
    ag = B.Agentry(run, dbs, "agentry-link-order", extra)
    ag.setup(fake, {"bench": "up/fake-echo", "slow": "up/fake-slow-50"})
    calls = [
        ("POST", "/api/v1/agents/bench/chat", {"message": MESSAGE}),
        ("POST", "/v1/chat/completions",
         {"model": "bench", "messages": [{"role": "user", "content": MESSAGE}]}),
        ("POST", "/v1/responses", {"model": "bench", "input": MESSAGE}),
        ("POST", "/api/v1/runs", {"prompt": MESSAGE, "model": "up/fake-echo"}),
        ("GET", "/v1/models", None),
        ("GET", "/health", None),
        ("GET", "/ready", None),
    ]
    for _ in range(3):
        for method, path, body in calls:
            status, _ = ag.call(method, path, body)
            if status >= 500:
                sys.exit(f"link-order: {method} {path} answered {status}")
    streams = [
        ("/api/v1/agents/slow/chat", {"message": "a b c", "stream": True}),
        ("/v1/chat/completions",
         {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "a b c"}]}),
        ("/v1/responses", {"model": "slow", "stream": True, "input": "a b c"}),
    ]
    B.STREAM_SETTLE = 1.0
    for path, body in streams:
        r = asyncio.run(B.hold_streams(ag.port, path, body, 20, lambda: {}))
        if r["open"] != 20:
            sys.exit(f"link-order: streams on {path} failed: {r['failure_reasons']}")
    time.sleep(1.0)
    ag.close()  # SIGTERM: the server exits cleanly and callgrind writes its output
    fake.close()


def main() -> None:
    if not BINARY.is_file():
        sys.exit(f"link-order: {BINARY} not found; build it on its own with "
                 "`cargo build --release -p agentry` (decision 129; `make link-order` does)")
    if "--check" in sys.argv[1:]:
        found, listed = coverage(BINARY)
        print(f"link-order: {found} of the {listed} functions in {ORDER.relative_to(ROOT)} "
              f"are in {BINARY}")
        return
    have = functions_in(BINARY)
    if not shutil.which("valgrind"):
        sys.exit("link-order: valgrind not found (apt-get install valgrind)")
    if not FAKE.is_file():
        sys.exit(f"link-order: {FAKE} not found; build it with "
                 "`cargo build --release -p agentry-fake-upstream`, in its own cargo invocation")
    out_dir = Path(tempfile.mkdtemp(prefix="agentry-link-order-"))
    wrapper = out_dir / "agentry-under-callgrind"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec valgrind --tool=callgrind --demangle=no "
        f"--callgrind-out-file={out_dir}/callgrind.%p.out {BINARY} \"$@\"\n")
    wrapper.chmod(0o755)
    for h2 in (False, True):
        # Each workload in its own process: `bench` keeps module-level state.
        subprocess.run([sys.executable, __file__, "--workload", "h2" if h2 else "h1",
                        str(out_dir)], check=True)
    outputs = glob.glob(str(out_dir / "callgrind.*.out"))
    if len(outputs) < 2:
        sys.exit(f"link-order: expected two callgrind outputs in {out_dir}, found {outputs}")
    cost = self_costs(outputs)
    ordered = sorted((n for n in cost if n in have), key=lambda n: (-cost[n], n))
    ORDER.write_text("\n".join(ordered) + "\n")
    print(f"link-order: {len(ordered)} functions written to {ORDER.relative_to(ROOT)}; "
          "rebuild the release binary to apply them")
    shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--workload":
        workload(sys.argv[2] == "h2", Path(sys.argv[3]))
    else:
        main()
