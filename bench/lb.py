"""Load balancing side by side (bench/RESULTS.md, "Load balancing that sees
load"). Two workloads, one run:

1. One slow backend: three uvicorn instances of tests/integration/apps/app.py
   (GET /whoami sleeps 2 ms; one instance 20 ms: tenfold), wrk with a fixed
   number of connections through each proxy: tollgate round_robin,
   least_request and peak_ewma, HAProxy `balance leastconn`, nginx
   `least_conn`. Reported: p50/p90/p99 latency, req/s, the slow instance's
   share of requests (read from each instance's /stats) and the proxy's CPU
   per request.
2. The even case: three nginx backends answering at once; tollgate with each
   lb (round_robin, least_request, random, peak_ewma, ring_hash, maglev)
   — the CPU each algorithm costs per request, as a ratio to round_robin.

Proxies on CPU 0; wrk and the backends on CPU 1. Loopback only; each run is
bounded by --duration. Medians of --rounds alternating rounds."""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the shared helpers: start, stop, nginx_conf, cpu_ticks, wait_port)

ROOT = run.ROOT
APPS = os.path.join(ROOT, "tests", "integration", "apps")
PYTHON = "/usr/bin/python3"


def wrk(url, connections, seconds):
    cmd = ["taskset", "-c", run.LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout

    def pct(p):
        m = re.search(rf"\b{p}%\s+([\d.]+)(us|ms|s)\b", out)
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    m = re.search(r"Latency\s+([\d.]+)(us|ms|s)\b", out)
    avg = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "avg": avg, "p50": pct(50),
            "p90": pct(90), "p99": pct(99), "total": total, "bad": int(bad.group(1)) if bad else 0}


def app_requests(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
        return json.loads(r.read())["requests"]


def start_apps(delays):
    procs, ports = [], []
    for i, delay in enumerate(delays):
        port = run.free_port()
        env = dict(os.environ, APP_NAME=f"b{i}", APP_DELAY=str(delay), PYTHONDONTWRITEBYTECODE="1")
        procs.append(subprocess.Popen(
            ["taskset", "-c", run.LOAD_CPU, PYTHON, "-m", "uvicorn", "app:app", "--app-dir", APPS, "--host",
             "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
        ports.append(port)
    for p in ports:
        run.wait_port(p, timeout=30)
    return procs, ports


def tollgate_conf(port, lb, bports, extra=""):
    eps = ", ".join(f"'127.0.0.1:{p}'" for p in bports)
    return f"""workers: 1
listeners: [{{ name: bench, listen: '127.0.0.1:{port}' }}]
routes: [{{ name: all, cluster: backend }}]
clusters: [{{ name: backend, lb: {lb}, endpoints: [{eps}], pool_size: 256{extra} }}]
"""


def proxies(d, bports, lbs, with_peers):
    """(name, port, argv) of every proxy to run in front of bports."""
    out = []
    for lb in lbs:
        port = run.free_port()
        path = os.path.join(d, f"tollgate-{lb}.yaml")
        with open(path, "w") as f:
            f.write(tollgate_conf(port, lb, bports, ", hash_on: path" if lb in ("ring_hash", "maglev") else ""))
        out.append((f"tollgate {lb}", port, [run.TOLLGATE, "-c", path, "-l", "warn"]))
    if with_peers:
        servers = "\n".join(f"    server 127.0.0.1:{p};" for p in bports)
        nport = run.free_port()
        out.append(("nginx least_conn", nport, ["nginx", "-c", run.nginx_conf(d, nport, f"""
  upstream backend {{ least_conn;
{servers}
    keepalive 256; }}
  server {{ listen 127.0.0.1:{nport} backlog=4096;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }} }}""")]))
        hport = run.free_port()
        hcfg = os.path.join(d, "haproxy-lb.cfg")
        with open(hcfg, "w") as f:
            f.write(run.haproxy_head() + f"""frontend fe
  bind 127.0.0.1:{hport}
  default_backend be
backend be
  balance leastconn
""" + "".join(f"  server s{i} 127.0.0.1:{p}\n" for i, p in enumerate(bports)))
        out.append(("haproxy leastconn", hport, ["haproxy", "-db", "-f", hcfg]))
    return out


def bench(targets, url_path, args, app_ports=None, slow_port=None):
    """Alternating rounds over the targets; per target, the medians."""
    rows = {name: [] for name, _, _ in targets}
    for rnd in range(args.rounds):
        for name, port, argv in targets:
            p = run.start(argv, run.PROXY_CPU)
            try:
                run.wait_port(port)
                url = f"http://127.0.0.1:{port}{url_path}"
                wrk(url, args.connections, 2)  # warm-up
                pids = [p.pid] + run.children(p.pid)
                before = {q: app_requests(q) for q in app_ports} if app_ports else {}
                c0 = run.cpu_ticks(pids)
                r = wrk(url, args.connections, args.duration)
                c1 = run.cpu_ticks(pids)
                r["cpu"] = (c1 - c0) / run.CLK * 1e6 / r["total"]
                if app_ports:
                    got = {q: app_requests(q) - before[q] for q in app_ports}
                    r["slow_share"] = got[slow_port] / max(1, sum(got.values()))
                rows[name].append(r)
                print(f"round {rnd + 1} {name:20s} {r['rps']:8.0f} req/s  p50 {r['p50']:6.2f}  p90 {r['p90']:6.2f}  "
                      f"p99 {r['p99']:6.2f} ms  cpu {r['cpu']:6.2f} us/req"
                      + (f"  slow {r['slow_share'] * 100:4.1f}%" if app_ports else "") + f"  non2xx={r['bad']}",
                      flush=True)
            finally:
                run.stop(p)
    med = {}
    for name, rs in rows.items():
        med[name] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
    return med


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=3,
                    help="wrk connections on the slow-backend case: few, so the Python backends are not CPU-bound "
                         "(then queueing on the shared core, not the slow instance, sets the latency)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fast-delay", type=float, default=0.002)
    ap.add_argument("--slow-delay", type=float, default=0.020)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-bench-lb-")
    procs = []
    try:
        # 1. one slow backend
        apps, aports = start_apps([args.fast_delay, args.fast_delay, args.slow_delay])
        procs += apps
        slow = bench(proxies(d, aports, ["round_robin", "least_request", "peak_ewma"], True), "/whoami", args,
                     app_ports=aports, slow_port=aports[2])
        for p in apps:
            run.stop(p)
        # 2. the even case: nginx backends, the proxy is the bottleneck
        bports = [run.free_port() for _ in range(3)]
        servers = "\n".join(f"  server {{ listen 127.0.0.1:{p} reuseport backlog=4096; "
                            f"location / {{ return 200 \"ok\\n\"; }} }}" for p in bports)
        backend = run.start(["nginx", "-c", run.nginx_conf(d, bports[0], servers)], run.LOAD_CPU)
        procs.append(backend)
        for p in bports:
            run.wait_port(p)
        even_args = argparse.Namespace(**{**vars(args), "connections": 50, "duration": max(4, args.duration // 2)})
        even = bench(proxies(d, bports, ["round_robin", "least_request", "random", "peak_ewma", "ring_hash",
                                         "maglev"], False), "/", even_args)
    finally:
        for p in procs:
            run.stop(p)
    print()
    print(f"One slow backend: 3 uvicorn instances, /whoami {args.fast_delay * 1000:g} ms, one "
          f"{args.slow_delay * 1000:g} ms; wrk -c{args.connections} -d{args.duration}s; medians of {args.rounds}")
    print()
    print("| proxy, lb | req/s | mean ms | p50 ms | p90 ms | p99 ms | slow instance's share | proxy CPU µs/req |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in slow.items():
        print(f"| {name} | {r['rps']:.0f} | {r['avg']:.2f} | {r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} | "
              f"{r['slow_share'] * 100:.1f}% | {r['cpu']:.1f} |")
    print()
    base = even["tollgate round_robin"]["cpu"]
    print(f"Even case: 3 nginx backends, wrk -c50 -d{even_args.duration}s; medians of {args.rounds}")
    print()
    print("| lb | req/s | p99 ms | proxy CPU µs/req | vs round_robin |")
    print("|---|---|---|---|---|")
    for name, r in even.items():
        print(f"| {name.split(' ', 1)[1]} | {r['rps']:.0f} | {r['p99']:.2f} | {r['cpu']:.2f} | {r['cpu'] / base:.2f}× |")


if __name__ == "__main__":
    main()
