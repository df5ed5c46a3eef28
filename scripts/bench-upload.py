#!/usr/bin/env python3
"""Server memory during a large file upload (docs/performance.md, "File uploads").

Starts `agentry serve` (AGENTRY_BIN, default $CARGO_TARGET_DIR/release/agentry) on a fresh
SQLite database and data folder, logs in, then uploads a file of BENCH_UPLOAD_MB (default 50)
megabytes of random bytes as multipart/form-data, streamed from a generator (the client never
holds it whole), while sampling the server's VmRSS every 20 ms. Prints VmRSS before, the
highest sample during, VmHWM (peak since start) before and after, and the upload's time.
Python 3 standard library only; everything runs on loopback and is removed afterwards.
"""
import http.client, json, os, shutil, socket, subprocess, sys, tempfile, threading, time

mb = int(os.environ.get("BENCH_UPLOAD_MB", "50"))
target = os.environ.get("CARGO_TARGET_DIR", "target")
binary = os.environ.get("AGENTRY_BIN", os.path.join(target, "release", "agentry"))
tmp = tempfile.mkdtemp(prefix="agentry-upload-bench-")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0

port = free_port()
env = {"PATH": os.environ.get("PATH", ""), "AGENTRY_ADDR": f"127.0.0.1:{port}",
       "DATABASE_URL": f"sqlite://{tmp}/agentry.db", "AGENTRY_ADMIN_PASSWORD": "bench-password-1",
       "AGENTRY_FILES_MAX_BYTES": str((mb + 10) * 1024 * 1024), "AGENTRY_LOG": "warn",
       "AGENTRY_RATE_LIMIT_PER_MINUTE": "1000000"}
server = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2); c.request("GET", "/ready")
            if c.getresponse().status == 200: break
        except OSError:
            pass
        time.sleep(0.05)
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST", "/api/v1/auth/login", json.dumps({"username": "admin", "password": "bench-password-1"}),
              {"Content-Type": "application/json"})
    token = json.loads(c.getresponse().read())["access_token"]
    # Warm up: one small upload, so lazily made things exist before measuring.
    boundary = "bench-boundary-d41d8cd98f00b204"
    def upload(size):
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        c.putrequest("POST", "/api/v1/files/upload")
        c.putheader("Authorization", f"Bearer {token}")
        c.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        c.putheader("Content-Length", str(len(head) + size + len(tail)))
        c.endheaders()
        c.send(head)
        chunk = os.urandom(64 * 1024)
        sent = 0
        while sent < size:
            n = min(len(chunk), size - sent); c.send(chunk[:n]); sent += n
        c.send(tail)
        r = c.getresponse(); body = r.read()
        assert r.status == 201, (r.status, body)
        return json.loads(body)
    upload(1024)
    time.sleep(0.5)
    rss_before, hwm_before = status(server.pid, "VmRSS"), status(server.pid, "VmHWM")
    samples, done = [], threading.Event()
    def sample():
        while not done.is_set():
            samples.append(status(server.pid, "VmRSS")); time.sleep(0.02)
    t = threading.Thread(target=sample); t.start()
    started = time.time()
    f = upload(mb * 1024 * 1024)
    took = time.time() - started
    done.set(); t.join()
    hwm_after = status(server.pid, "VmHWM")
    print(json.dumps({"upload_mb": mb, "size_bytes": f["size_bytes"], "rss_before_mb": round(rss_before, 1),
                      "rss_max_during_mb": round(max(samples), 1), "hwm_before_mb": round(hwm_before, 1),
                      "hwm_after_mb": round(hwm_after, 1), "seconds": round(took, 2), "binary": binary}))
finally:
    server.terminate(); server.wait()
    shutil.rmtree(tmp, ignore_errors=True)
