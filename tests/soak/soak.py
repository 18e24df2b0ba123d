#!/usr/bin/python3
"""A soak of the release binary: minutes of HTTP/1.1 keep-alive load and
h2c load (h2load, paced) through two workers with rate_limit, retry and a JSON
access log, while the world moves — a backend SIGKILLed and restarted every
15 s (alternating between two uvicorn instances), a reload every 6 s.

Asserts what the gateway owes its clients: every request that could be
retried was answered — no non-2xx, and every failure a client saw is a
response the upstream cut after sending its head (the gateway had passed
the head on and could no longer retry; the access log shows each one with
its body short) — and RSS stays flat after warm-up (growth
from the end of the first quarter to the end under a bound). Reports what
it saw, including the gateway's own retry and upstream-error counters,
so that a loss can be explained.

Outside scripts/test.sh (it takes minutes): `python3 tests/soak/soak.py
[--seconds 240]` against build-release/tollgate (TOLLGATE_BIN to change).
Loopback only; every process it starts is stopped at the end."""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("TOLLGATE_BIN", os.path.join(HERE, "..", "..", "build-release", "tollgate"))
import harness  # noqa: E402

RSS_GROWTH_KIB = 2048  # after warm-up, the whole soak may add at most this much


def config(port, admin, backends, log, tag):
    return f"""
workers: 2
drain_timeout: 10s
admin: {{ listen: 127.0.0.1:{admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
filters:
  - access_log: {{ path: {log}, format: json }}
routes:
  - name: soak
    cluster: app
    response_headers: {{ set: {{ x-config: "{tag}" }} }}
    filters:
      - rate_limit: {{ key: client_address, limit: 100000000, window: 1m }}
      - retry: {{ attempts: 4, on: [connect-failure, reset, 502, 503], backoff: {{ base: 10ms, max: 100ms }} }}
clusters:
  - name: app
    endpoints: [{", ".join(f"127.0.0.1:{p}" for p in backends)}]
    connect_timeout: 500ms
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=240)
    ap.add_argument("--kill-every", type=float, default=15.0)
    ap.add_argument("--reload-every", type=float, default=6.0)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-soak-")
    ports = [harness.free_port(), harness.free_port()]
    backends = [harness.start_app(f"soak-{i}", port=p) for i, p in enumerate(ports)]
    port, admin = harness.free_port(), harness.free_port()
    log = os.path.join(d, "access.log")
    gw = harness.Gateway(config(port, admin, ports, log, "a"), port=port, log_level="warn")
    harness.wait_port(admin)
    stop = threading.Event()
    events = []

    def chaos():
        t0 = time.time()
        next_kill, next_reload, victim, tag = t0 + args.kill_every, t0 + args.reload_every, 0, 0
        while not stop.is_set():
            now = time.time()
            if now >= next_kill:
                b = backends[victim]
                b.p.send_signal(signal.SIGKILL)
                b.p.wait(10)
                events.append((round(now - t0, 1), f"killed backend {victim}"))
                time.sleep(1.0)
                backends[victim] = harness.start_app(f"soak-{victim}", port=ports[victim])
                events.append((round(time.time() - t0, 1), f"restarted backend {victim}"))
                victim, next_kill = 1 - victim, now + args.kill_every
            if now >= next_reload:
                tag += 1
                with open(gw.path + ".tmp", "w") as f:
                    f.write(config(port, admin, ports, log, "ab"[tag % 2]))
                os.replace(gw.path + ".tmp", gw.path)
                gw.proc.p.send_signal(signal.SIGHUP)
                next_reload = now + args.reload_every
            time.sleep(0.05)

    rss = []

    def sample_rss():
        while not stop.is_set():
            rss.append((time.time(), harness.rss_kib(gw.proc.pid)))
            stop.wait(1.0)

    threads = [threading.Thread(target=chaos, daemon=True), threading.Thread(target=sample_rss, daemon=True)]
    for t in threads:
        t.start()
    secs = args.seconds
    # HTTP/1.1: wrk, which opens a new connection after one fails (h2load
    # --h1 gives up the rest of that client's requests); h2c: h2load with a
    # fixed number of requests at a fixed rate (about `secs` long), since
    # h2load -D counts its own streams cut at the deadline as failed
    h1 = subprocess.Popen(["wrk", "-t1", "-c16", f"-d{secs}s", f"http://127.0.0.1:{port}/whoami"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    h2 = subprocess.Popen(["h2load", "-m8", "-c4", "--rps=250", f"-n{4 * 250 * secs}",
                           f"http://127.0.0.1:{port}/whoami"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    wout, _ = h1.communicate(timeout=secs * 3 + 120)
    hout, _ = h2.communicate(timeout=secs * 3 + 120)
    stop.set()
    for t in threads:
        t.join(30)
    metrics = harness.scrape(admin)
    rc, out = gw.stop()
    for b in backends:
        b.stop()

    problems = []
    m = re.search(r"(\d+) requests in", wout)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", wout)
    c1 = {"requests": int(m.group(1)) if m else 0,
          "non-2xx": int(re.search(r"Non-2xx or 3xx responses: (\d+)", wout).group(1)) if "Non-2xx" in wout else 0,
          **(dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()))) if sock else {})}
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored", hout)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", hout)
    c2 = {"total": int(m.group(1)), "succeeded": int(m.group(4)), "failed": int(m.group(5)),
          "non-2xx": sum(int(st.group(i)) for i in (2, 3, 4))} if m and st else None
    # Requests whose response the upstream cut after its head: the gateway
    # had already passed the head on, so it could not retry them, and ends
    # them as the protocol allows (an HTTP/1.1 connection closed, an HTTP/2
    # stream reset). The access log shows them: /whoami's 17-byte body short.
    cut = {"HTTP/1.1": 0, "HTTP/2": 0}
    with open(log) as f:
        for line in f:
            e = json.loads(line)
            if e["status"] == 200 and e["bytes_out"] < 17:
                cut[e["protocol"]] += 1
    print(f"HTTP/1.1 keep-alive (wrk -c16): {c1}")
    print(f"h2c (h2load -c4 -m8): {c2 or hout[-1500:]}")
    print(f"cut by the upstream after the response head (access log): {cut}")
    for name in ("tollgate_retries_total", "tollgate_retries_skipped_total", "tollgate_upstream_resets_total",
                 "tollgate_upstream_connect_failures_total", "tollgate_requests_aborted_total"):
        vals = re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", metrics, re.M)
        print(f"{name}: {sum(float(v) for v in vals):.0f}")
    warm = [k for t, k in rss if t >= rss[0][0] + secs / 4] if rss else []
    growth = (rss[-1][1] - warm[0]) if warm else 0
    print(f"RSS: start {rss[0][1] if rss else 0} KiB, after warm-up {warm[0] if warm else 0} KiB, "
          f"end {rss[-1][1] if rss else 0} KiB (growth {growth} KiB); by quarter: "
          f"{[rss[min(len(rss) - 1, len(rss) * q // 4)][1] for q in range(5)] if rss else []}")
    print("events:", events[:6], "...", f"({len(events)} in all)")
    # every failure a client saw is a response the upstream cut after its
    # head (wrk reconnects, and counts a cut that ends in a reset as a read
    # error, one that ends in a close as nothing); anything else (a refused, reset or unanswered request that a
    # retry or failover could have saved) is the gateway's
    if c1["non-2xx"] or c1.get("connect") or c1.get("write") or c1.get("timeout") or c1.get("read", 0) > cut["HTTP/1.1"]:
        problems.append(f"HTTP/1.1: {c1} beyond the {cut['HTTP/1.1']} cut after the head")
    if c2 is None or c2["non-2xx"] or c2["failed"] != cut["HTTP/2"] or c2["succeeded"] + c2["failed"] != c2["total"]:
        problems.append(f"h2c: {c2} beyond the {cut['HTTP/2']} cut after the head")
    if growth > RSS_GROWTH_KIB:
        problems.append(f"RSS grew {growth} KiB after warm-up (bound {RSS_GROWTH_KIB})")
    if rc != 0:
        problems.append(f"tollgate exited with {rc}: {out[-2000:]}")
    if problems:
        print("FAILED: " + "; ".join(problems))
        print(out[-3000:])
        return 1
    print("soak: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
