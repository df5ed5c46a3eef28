#!/usr/bin/env python3
"""Insights at scale (issue 17): the time of `GET /api/v1/agents/{id}/insights` and `…/status`
with one agent holding 1,000,000 stored turns (250,000 conversations of 4 turns, each analysed,
1.5 issue labels each on average), on SQLite and on PostgreSQL.

Usage: scripts/bench_insights.py [--db sqlite|postgres|both] [--bin PATH] [--conversations N]
Prints a Markdown table for docs/performance.md. The analyses are written straight into the
database (the insights read only them and the conversation count); messages are not stored,
since insights never read them.
"""

import argparse
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone

ISSUES = ["refund problem", "slow answers", "asked for a human", "answer cut off",
          "user repeated a question", "billing problem", "password problem", "user dissatisfied"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(base, path, token, method="GET", body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def rows(agent_id, n):
    """(conversation, analysis, issues) rows: the last message spread over 120 days."""
    rnd = random.Random(7)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for i in range(n):
        at = now - timedelta(seconds=rnd.randrange(0, 120 * 86400))
        stamp = at.strftime("%Y-%m-%d %H:%M:%S.%f")
        outcome = rnd.choices(["completed", "abandoned", "escalated"], [80, 15, 5])[0]
        task = 1 if outcome == "completed" and rnd.random() < 0.9 else 0
        sentiment = round(rnd.uniform(-1, 1), 2)
        issues = rnd.sample(ISSUES, rnd.choice([0, 1, 2, 3]))
        failed = 0 if outcome == "completed" and task else 1
        cid = f"conv_{i:032x}"
        yield (
            (cid, agent_id, f"s{i}", "{}", 8, stamp, stamp),
            (cid, agent_id, outcome, int(outcome == "completed"), int(outcome == "abandoned"),
             int(outcome == "escalated"), task, sentiment, int(sentiment > 0.2), int(sentiment < -0.2),
             json.dumps(issues), "bench", 8, 900.0, stamp, stamp),
            [(cid, label, agent_id, failed, stamp) for label in issues],
        )


def rollups(ana, iss):
    """The daily roll-ups the server keeps as it writes analyses (storage/src/insights.rs)."""
    days, idays = {}, {}
    for a in ana:
        day = a[14][:10] + " 00:00:00"
        d = days.setdefault((a[1], day), [0] * 8 + [0.0, 0.0, 0, 0])
        d[0] += 1
        for k, col in enumerate((3, 4, 5, 6, 8, 9), start=1):
            d[k] += a[col]
        d[8] += a[7]
        d[9] += a[13]
        d[10] += 1
        d[11] += a[12]
    for (cid, label, agent, failed, stamp) in iss:
        k = (agent, stamp[:10] + " 00:00:00", label)
        v = idays.setdefault(k, [0, 0])
        v[0] += 1
        v[1] += failed
    day_rows = [(a, d, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[8], v[9], v[10], v[11]) for (a, d), v in days.items()]
    issue_rows = [(a, d, l, v[0], v[1]) for (a, d, l), v in idays.items()]
    return day_rows, issue_rows


def collect(agent_id, n):
    conv, ana, iss = [], [], []
    for c, a, i in rows(agent_id, n):
        conv.append(c)
        ana.append(a)
        iss.extend(i)
    return conv, ana, iss


def fill_sqlite(path, agent_id, n):
    db = sqlite3.connect(path, timeout=60)
    conv, ana, iss = collect(agent_id, n)
    day_rows, issue_rows = rollups(ana, iss)
    db.executemany("INSERT INTO conversations (id, agent_id, session_key, context, message_count, created_at, updated_at) VALUES (?,?,?,?,?,?,?)", conv)
    db.executemany("INSERT INTO conversation_analyses VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", ana)
    db.executemany("INSERT INTO insight_days VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", day_rows)
    db.executemany("INSERT INTO insight_issue_days VALUES (?,?,?,?,?)", issue_rows)
    db.commit()
    db.execute("ANALYZE")
    db.close()
    return len(iss)


def fill_postgres(url, agent_id, n):
    conv_rows, ana_rows, iss_rows = collect(agent_id, n)
    day_rows, issue_rows = rollups(ana_rows, iss_rows)
    line = lambda r: "\t".join(map(str, r))
    conv, ana = [line(c) for c in conv_rows], [line(a) for a in ana_rows]

    def copy(table, cols, lines):
        sql = f"COPY {table} ({cols}) FROM STDIN"
        subprocess.run(["psql", url, "-q", "-c", sql], input="\n".join(lines) + "\n", text=True, check=True)

    copy("conversations", "id, agent_id, session_key, context, message_count, created_at, updated_at", conv)
    copy("conversation_analyses", "conversation_id, agent_id, outcome, completed, abandoned, escalated, task_completed, sentiment, positive, negative, issues, analyser, message_count, response_ms, last_message_at, analysed_at", ana)
    copy("insight_days", "agent_id, day, conversations, completed, abandoned, escalated, task_completed, positive, negative, sentiment_sum, response_ms_sum, responses, messages", [line(r) for r in day_rows])
    copy("insight_issue_days", "agent_id, day, label, conversations, failed", [line(r) for r in issue_rows])
    subprocess.run(["psql", url, "-q", "-c", "ANALYZE"], check=True)
    return len(iss_rows)


def measure(base, token, key, repeats):
    out = {}
    for name, path in [("status", f"/api/v1/agents/{key}/status")] + [
            (f"insights days={d}", f"/api/v1/agents/{key}/insights?days={d}") for d in ("7", "30", "90", "all")]:
        call(base, path, token)  # warm
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            body = call(base, path, token)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out[name] = (statistics.median(times), times[int(len(times) * 0.95) - 1], body)
    return out


def run(kind, binary, n, repeats):
    work = tempfile.mkdtemp(prefix="agentry-insights-")
    port = free_port()
    env = dict(os.environ, AGENTRY_ADDR=f"127.0.0.1:{port}", AGENTRY_ADMIN_PASSWORD="bench-insights-1",
               AGENTRY_LOG="warn", AGENTRY_RATE_LIMIT_PER_MINUTE="1000000", AGENTRY_RATE_LIMIT_BURST="1000000")
    if kind == "sqlite":
        env["DATABASE_URL"] = f"sqlite://{work}/bench.db"
    else:
        name = f"bench_insights_{os.getpid()}"
        admin = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
        subprocess.run(["psql", admin, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
        pg_url = admin.rsplit("/", 1)[0] + "/" + name
        env["DATABASE_URL"] = pg_url
    server = subprocess.Popen([binary, "serve"], env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        token = call(base, "/api/v1/auth/login", "", "POST", {"username": "admin", "password": "bench-insights-1"})["access_token"]
        agent = call(base, "/api/v1/agents", token, "POST", {"name": "Bench", "key": "bench", "model": "mock/echo"})
        t = time.perf_counter()
        if kind == "sqlite":
            issues = fill_sqlite(f"{work}/bench.db", agent["id"], n)
        else:
            issues = fill_postgres(pg_url, agent["id"], n)
        filled = time.perf_counter() - t
        return measure(base, token, "bench", repeats), issues, filled
    finally:
        server.kill()
        server.wait()
        if kind == "postgres":
            subprocess.run(["psql", admin, "-q", "-c", f"DROP DATABASE IF EXISTS {name}"], check=False)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--db", default="both")
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    default_bin = next((b for b in (f"{target}/release/agentry", f"{target}/debug/agentry") if os.path.exists(b)), "agentry")
    p.add_argument("--bin", default=os.path.abspath(default_bin) if os.path.exists(default_bin) else default_bin)
    p.add_argument("--conversations", type=int, default=250_000)
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args()
    kinds = ["sqlite", "postgres"] if a.db == "both" else [a.db]
    print(f"binary: {a.bin}; {a.conversations} conversations of 4 turns ({a.conversations * 4} turns), analysed")
    print("| database | request | median ms | p95 ms | conversations counted |")
    print("|---|---|---|---|---|")
    for kind in kinds:
        results, issues, filled = run(kind, a.bin, a.conversations, a.repeats)
        for name, (median, p95, body) in results.items():
            counted = body.get("summary", {}).get("totalConversations", body.get("metrics", {}).get("conversationCount"))
            print(f"| {kind} | {name} | {median:.1f} | {p95:.1f} | {counted} |")
        print(f"<!-- {kind}: {issues} issue rows, filled in {filled:.0f} s -->")


if __name__ == "__main__":
    main()
