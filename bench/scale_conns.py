"""How the cost grows with the number of client connections (bench/RESULTS.md,
"Scaling: connections"). tollgate, nginx and HAProxy, one worker each on
CPU 0, in front of the same nginx backend; HTTP/1.1 keep-alive.

- idle: N connections each make one request and stay open; reported: the
  proxy's RSS growth per connection, and the CPU per request of a steady
  load (wrk -c50) served while those N sit idle beside it;
- active: wrk with N connections, every one carrying requests: req/s,
  p99 and the proxy's CPU per request.

    python3 bench/scale_conns.py [--idle 1000,4000,9000,18000]
                                 [--active 100,1000,4000,8000] [--seconds 5]
                                 [--only tollgate,nginx,haproxy] [--rounds 3]

Each process may hold at most its RLIMIT_NOFILE descriptors (the hard
limit; 20,000 on the machine of the table), so an idle connection costs
one descriptor in the proxy and an active one two (its upstream
connection too): sizes above what the limit allows are left out and say
so. HAProxy keeps two descriptors per connection in reserve: its idle
sizes stop at half the limit."""
import argparse
import os
import re
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def open_idle(port, n, conns):
    """Grows conns to n connections, each having had one answered request."""
    sel = selectors.DefaultSelector()
    pending = {}
    while len(conns) + len(pending) < n:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(REQUEST)
        s.setblocking(False)
        pending[s] = b""
        sel.register(s, selectors.EVENT_READ)
        if len(pending) >= 256 or len(conns) + len(pending) == n:
            deadline = time.time() + 30
            while pending and time.time() < deadline:
                for key, _ in sel.select(timeout=1):
                    s = key.fileobj
                    data = s.recv(4096)
                    if not data:
                        raise RuntimeError("a connection closed before its answer")
                    pending[s] += data
                    if b"\r\n\r\nok\n" in pending[s]:
                        sel.unregister(s)
                        del pending[s]
                        conns.append(s)
            if pending:
                raise RuntimeError(f"{len(pending)} answers missing")
    sel.close()


def haproxy_max(limit):
    """The most connections HAProxy accepts under a descriptor limit."""
    return limit // 2 - 100


def start_proxy(name, d, port, bport, max_conns):
    if name == "tollgate":
        cfg = os.path.join(d, "tollgate.yaml")
        with open(cfg, "w") as f:
            f.write(f"""workers: 1
limits: {{ idle_timeout: 10m }}
listeners: [{{ name: web, listen: '127.0.0.1:{port}' }}]
routes: [{{ name: all, cluster: backend }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'] }}]
""")
        p = run.start([run.TOLLGATE, "-c", cfg, "-l", "warn"], run.PROXY_CPU)
        return p, lambda: [p.pid]
    if name == "nginx":
        conf = run.nginx_conf(d, port, f"""
  upstream backend {{ server 127.0.0.1:{bport}; keepalive 64; }}
  keepalive_timeout 600s;
  server {{ listen 127.0.0.1:{port} backlog=4096;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
        with open(conf) as f:
            text = f.read().replace("worker_connections 8192;", f"worker_connections {max_conns};")
        with open(conf, "w") as f:
            f.write(f"worker_rlimit_nofile {max_conns};\n" + text)
        p = run.start(["nginx", "-c", conf], run.PROXY_CPU)
        return p, lambda: run.children(p.pid)
    cfg = os.path.join(d, "haproxy.cfg")
    with open(cfg, "w") as f:
        # HAProxy keeps two descriptors per connection in reserve and refuses to
        # start with a maxconn the limit cannot cover twice
        f.write(run.haproxy_head().replace("maxconn 8000", f"maxconn {haproxy_max(max_conns)}") + f"""  timeout client 10m
  timeout http-keep-alive 10m
frontend web
  bind 127.0.0.1:{port}
  default_backend be
backend be
  server s1 127.0.0.1:{bport}
""")
    p = run.start(["haproxy", "-db", "-f", cfg], run.PROXY_CPU)
    return p, lambda: [p.pid]


def steady(port, pids, seconds):
    """CPU µs per request of wrk -c50 against the proxy."""
    url = f"http://127.0.0.1:{port}/"
    run.wrk_url(url, 50, 1)
    c0 = run.cpu_ticks(pids)
    rps, p99, total, bad, sockerr = run.wrk_url(url, 50, seconds)
    c1 = run.cpu_ticks(pids)
    if bad or sockerr:
        raise SystemExit(f"steady load: {bad} non-2xx, socket errors {sockerr}")
    return (c1 - c0) / run.CLK * 1e6 / total


def active(port, pids, n, seconds):
    url = f"http://127.0.0.1:{port}/"
    run.wrk_url(url, n, 2)
    c0 = run.cpu_ticks(pids)
    rps, p99, total, bad, sockerr = run.wrk_url(url, n, seconds, ["--timeout", "10s"])
    c1 = run.cpu_ticks(pids)
    return {"rps": rps, "p99": p99, "cpu": (c1 - c0) / run.CLK * 1e6 / total, "bad": bad, "sockerr": sockerr}


def one_proxy(name, d, bport, limit, idle_sizes, active_sizes, seconds, runs):
    """One round of one proxy: the idle sizes, then the active ones, appended to runs."""
    port = run.free_port()
    p, pids_fn = start_proxy(name, d, port, bport, limit)
    try:
        run.wait_port(port)
        time.sleep(0.3)
        pids = pids_fn()
        conns = []
        open_idle(port, 50, conns)  # first-use allocations
        time.sleep(0.5)
        base = run.rss_kib(pids)
        base_n = len(conns)
        for n in idle_sizes:
            if name == "haproxy" and n + base_n > haproxy_max(limit):
                continue  # past its maxconn (the table says so)
            open_idle(port, n + base_n, conns)
            time.sleep(1.0)
            kib = (run.rss_kib(pids) - base) / (len(conns) - base_n)
            cpu = steady(port, pids, seconds)
            runs.setdefault((name, "idle", n), []).append({"kib": kib, "cpu": cpu})
            print(f"{name:9s} idle {n:6d}: {kib:6.2f} KiB/conn, steady load beside them {cpu:6.2f} us/req", flush=True)
        for s in conns:
            s.close()
        conns.clear()
        time.sleep(1.0)
        for n in active_sizes:
            r = active(port, pids, n, seconds)
            runs.setdefault((name, "active", n), []).append(r)
            print(f"{name:9s} active {n:6d}: {r['rps']:9.0f} req/s  p99 {r['p99']:8.2f} ms  "
                  f"cpu {r['cpu']:6.2f} us/req  non2xx={r['bad']} {r['sockerr']}", flush=True)
    finally:
        run.stop(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", default="1000,4000,9000,18000")
    ap.add_argument("--active", default="100,1000,4000,8000")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--only", default="tollgate,nginx,haproxy")
    ap.add_argument("--rounds", type=int, default=3, help="each figure is the median of this many runs")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the children inherit it
    limit = hard
    idle_sizes = [int(x) for x in args.idle.split(",") if x]
    active_sizes = [int(x) for x in args.active.split(",") if x]
    skipped = [f"idle {n}" for n in idle_sizes if n + 200 > limit] + \
              [f"active {n}" for n in active_sizes if 2 * n + 200 > limit]
    idle_sizes = [n for n in idle_sizes if n + 200 <= limit]
    active_sizes = [n for n in active_sizes if 2 * n + 200 <= limit]
    d = tempfile.mkdtemp(prefix="tg-conns-")
    runs = {}
    backend = None
    try:
        backend, bport = run.start_backend(d)
        for rnd in range(args.rounds):  # proxies interleaved round by round
            for name in args.only.split(","):
                one_proxy(name, d, bport, limit, idle_sizes, active_sizes, args.seconds, runs)
    finally:
        if backend is not None:
            run.stop(backend)
        shutil.rmtree(d, ignore_errors=True)
    results = {k: {f: statistics.median(r[f] for r in v) for f in v[0] if f != "sockerr"} for k, v in runs.items()}
    names = args.only.split(",")
    print(f"\nIdle connections (descriptor limit {limit}): KiB of RSS per connection / CPU µs per request "
          "of a steady wrk -c50 load beside them\n")
    print("| idle connections | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for n in idle_sizes:
        print(f"| {n} | " + " | ".join("{kib:.2f} / {cpu:.2f}".format(**results[(x, 'idle', n)])
                                       if (x, "idle", n) in results else "— (past its maxconn)"
                                       for x in names) + " |")
    print("\nActive connections (wrk -cN): req/s / p99 ms / CPU µs per request\n")
    print("| active connections | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for n in active_sizes:
        print(f"| {n} | " + " | ".join("{rps:.0f} / {p99:.1f} / {cpu:.2f}".format(**results[(x, 'active', n)])
                                       for x in names) + " |")
    if skipped:
        print("\nLeft out (past the descriptor limit): " + ", ".join(skipped))


if __name__ == "__main__":
    sys.exit(main())
