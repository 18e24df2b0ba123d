"""Runs the side-by-side proxy benchmark. See bench/run.sh and
bench/RESULTS.md. Loopback only; every run is bounded by --duration."""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLLGATE = os.path.join(ROOT, "build-release", "tollgate")
CLK = os.sysconf("SC_CLK_TCK")
PROXY_CPU, LOAD_CPU = "0", "1"


# --filters: one filter per tollgate, each never refusing (limits far above
# the load), so the figure is the filter's own cost on every request.
FILTER_VARIANTS = [
    ("rate_limit", "  - rate_limit: { key: client_address, limit: 1000000000, window: 1m }"),
    ("rate_limit_shadow", "  - rate_limit: { key: client_address, limit: 1000000000, window: 1m, mode: shadow }"),
    ("rate_limit_cost", "  - rate_limit: { key: client_address, limit: 1000000000, window: 1m, "
                        "cost: 'header:x-cost', max_cost: 100, reconcile: 'header:x-used' }"),
    ("rate_limit_plans", "  - auth: { bearer_tokens: [{ name: bench, token: bench-token }] }\n"
                         "  - rate_limit: { key: identity, limit: 1000000000, window: 1m, overrides: "
                         "[{ name: pro, identities: [bench], limit: 1000000000, window: 1m }] }"),
    ("concurrency_limit", "  - concurrency_limit: { key: client_address, limit: 100000 }"),
    ("access_log", "  - access_log: { path: DIR/filter-access.log }"),
]

# --features: route and cluster options of #15 and tracing, each alone on the
# bare proxy's route (PORT: the listener, BPORT: the nginx backend), so the
# figure is the feature's own cost on every request.
FEATURE_VARIANTS = [
    ("split", """listeners: [{ name: bench, listen: '127.0.0.1:PORT' }]
routes: [{ name: all, clusters: [{ name: a, weight: 3 }, { name: b, weight: 1 }] }]
clusters:
  - { name: a, endpoints: ['127.0.0.1:BPORT'], pool_size: 256 }
  - { name: b, endpoints: ['localhost:BPORT'], pool_size: 256 }
"""),
    ("weighted_endpoints", """listeners: [{ name: bench, listen: '127.0.0.1:PORT' }]
routes: [{ name: all, cluster: backend }]
clusters: [{ name: backend, endpoints: [{ address: '127.0.0.1:BPORT', weight: 3 }, 'localhost:BPORT'], pool_size: 256 }]
"""),
    ("breakers", """listeners: [{ name: bench, listen: '127.0.0.1:PORT' }]
routes: [{ name: all, cluster: backend }]
clusters: [{ name: backend, endpoints: ['127.0.0.1:BPORT'], pool_size: 256, max_requests: 100000,
             max_pending: 100000, max_connections: 100000 }]
"""),
    ("trace_propagate", """tracing: { sample_ratio: 0 }
listeners: [{ name: bench, listen: '127.0.0.1:PORT' }]
routes: [{ name: all, cluster: backend }]
clusters: [{ name: backend, endpoints: ['127.0.0.1:BPORT'], pool_size: 256 }]
"""),
    ("trace_export_all", """tracing: { sample_ratio: 1, otlp: { endpoint: 'http://127.0.0.1:BPORT/v1/traces', queue_size: 65536 } }
listeners: [{ name: bench, listen: '127.0.0.1:PORT' }]
routes: [{ name: all, cluster: backend }]
clusters: [{ name: backend, endpoints: ['127.0.0.1:BPORT'], pool_size: 256 }]
"""),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening")


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except FileNotFoundError:
            pass
    return total


def rss_kib(pids):
    """Resident memory of the processes, in KiB (0 for one that is gone)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def children(pid):
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(x) for x in out.split()]


def start(argv, cpu, cwd=None):
    return subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, cwd=cwd)


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def nginx_conf(d, port, body):
    path = os.path.join(d, f"nginx-{port}.conf")
    with open(path, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx-{port}.pid;
error_log {d}/nginx-{port}.err warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {d}/body-{port};
  proxy_temp_path {d}/proxy-{port};
  fastcgi_temp_path {d}/fcgi-{port};
  uwsgi_temp_path {d}/uwsgi-{port};
  scgi_temp_path {d}/scgi-{port};
  keepalive_requests 100000;
  {body}
}}
""")
    return path


def haproxy_head(extra_global=""):
    """The global and defaults sections every benchmark's HAProxy runs with."""
    return f"""global
  nbthread 1
  maxconn 8000
{extra_global}defaults
  mode http
  option forwardfor
  http-reuse always
  timeout connect 5s
  timeout client 30s
  timeout server 30s
"""


def start_backend(d):
    """The nginx backend every benchmark proxies to (\"ok\" to any GET), on the load CPU; its port."""
    bport = free_port()
    p = start(["nginx", "-c", nginx_conf(d, bport, f"""
  server {{ listen 127.0.0.1:{bport} reuseport backlog=4096;
    location / {{ return 200 "ok\\n"; }} }}""")], LOAD_CPU)
    wait_port(bport)
    return p, bport


def wrk_url(url, connections, seconds, extra=()):
    """One wrk run: (req/s, p99 ms, requests, non-2xx responses, socket errors as text)."""
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_err = re.search(r"Socket errors: (.*)", out)
    return rps, p99, total, (int(errors.group(1)) if errors else 0), (sock_err.group(1) if sock_err else "")


def cpu_run(name, url, pids, connections, seconds, extra=()):
    """A one-second warm-up, then one wrk run: {rps, p99 (ms), cpu (µs of
    pids' CPU per request)}, printed as a progress line; exits on any
    non-2xx answer."""
    wrk_url(url, connections, 1, extra)
    c0 = cpu_ticks(pids)
    rps, p99, total, bad, sockerr = wrk_url(url, connections, seconds, extra)
    c1 = cpu_ticks(pids)
    if bad:
        raise SystemExit(f"{name}: {bad} non-2xx answers {sockerr}")
    r = {"rps": rps, "p99": p99, "cpu": (c1 - c0) / CLK * 1e6 / total}
    print(f"{name:30s} {rps:9.0f} req/s  p99 {p99:6.2f} ms  cpu {r['cpu']:6.2f} us/req", flush=True)
    return r


def wrk(port, args):
    return wrk_url(f"http://127.0.0.1:{port}/", args.connections, args.duration,
                   ["-H", "Authorization: Bearer bench-token"])


def measure(name, port, pids_fn, args):
    wrk(port, argparse.Namespace(**{**vars(args), "duration": 2}))  # warm-up
    pids = pids_fn()
    c0 = cpu_ticks(pids)
    rps, p99, total, bad, sockerr = wrk(port, args)
    c1 = cpu_ticks(pids)
    cpu_us = (c1 - c0) / CLK * 1e6 / total if pids else 0.0
    print(f"{name:10s} {rps:10.0f} req/s  p99 {p99:7.2f} ms  cpu {cpu_us:6.2f} us/req  non2xx={bad} {sockerr}",
          flush=True)
    return {"name": name, "rps": rps, "p99": p99, "cpu": cpu_us, "bad": bad}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--only", default="")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--filters", action="store_true",
                    help="also run one tollgate per filter (rate_limit plain, shadow, by cost; concurrency_limit; "
                         "access_log) and report each one's CPU per request over the bare proxy")
    ap.add_argument("--features", action="store_true",
                    help="also run one tollgate per feature: traffic split, weighted endpoints, circuit breakers, "
                         "trace propagation, and tracing with every span exported")
    ap.add_argument("--redis", action="store_true",
                    help="also run the same route with a local rate_limit and with store: redis (a redis-server "
                         "pinned beside the backend), and report the Redis store's cost over the local one")
    ap.add_argument("--compare", default="",
                    help="another tollgate binary (e.g. the previous commit's), run beside it as tollgate-before")
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-bench-")
    procs = []
    results = []
    try:
        bport = free_port()
        backend = start(["nginx", "-c", nginx_conf(d, bport, f"""
  server {{ listen 127.0.0.1:{bport} reuseport backlog=4096;
    location / {{ return 200 "ok\\n"; }} }}""")], LOAD_CPU)
        procs.append(backend)
        wait_port(bport)
        results.append(measure("direct", bport, lambda: [], args))

        candidates = []
        tport = free_port()
        with open(os.path.join(d, "tollgate.yaml"), "w") as f:
            f.write(f"""workers: 1
listeners: [{{ name: bench, listen: '127.0.0.1:{tport}' }}]
routes: [{{ name: all, cluster: backend }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'], pool_size: 256 }}]
""")
        candidates.append(("tollgate", tport, [TOLLGATE, "-c", os.path.join(d, "tollgate.yaml"), "-l", "warn"]))
        if args.compare:
            oport = free_port()
            with open(os.path.join(d, "tollgate-before.yaml"), "w") as f:
                f.write(open(os.path.join(d, "tollgate.yaml")).read().replace(f"127.0.0.1:{tport}",
                                                                              f"127.0.0.1:{oport}"))
            candidates.append(("tollgate-before", oport,
                               [os.path.abspath(args.compare), "-c", os.path.join(d, "tollgate-before.yaml"), "-l",
                                "warn"]))
        # the same, with a realistic filter chain: auth + rate_limit (high
        # limit) + access_log to a file
        cport = free_port()
        with open(os.path.join(d, "tollgate-chain.yaml"), "w") as f:
            f.write(f"""workers: 1
filters:
  - auth: {{ bearer_tokens: [{{ name: bench, token: bench-token }}] }}
  - rate_limit: {{ key: identity, limit: 1000000000, window: 1m }}
  - access_log: {{ path: {d}/access.log }}
listeners: [{{ name: bench, listen: '127.0.0.1:{cport}' }}]
routes: [{{ name: all, cluster: backend }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'], pool_size: 256 }}]
""")
        candidates.append(("tollgate+chain", cport,
                           [TOLLGATE, "-c", os.path.join(d, "tollgate-chain.yaml"), "-l", "warn"]))
        if args.filters:
            for fname, chain in FILTER_VARIANTS:
                fport = free_port()
                with open(os.path.join(d, f"tollgate-{fname}.yaml"), "w") as f:
                    f.write(f"""workers: 1
filters:
{chain.replace("DIR", d)}
listeners: [{{ name: bench, listen: '127.0.0.1:{fport}' }}]
routes: [{{ name: all, cluster: backend }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'], pool_size: 256 }}]
""")
                candidates.append((f"tollgate+{fname}", fport,
                                   [TOLLGATE, "-c", os.path.join(d, f"tollgate-{fname}.yaml"), "-l", "warn"]))
        if args.features:
            for fname, body in FEATURE_VARIANTS:
                fport = free_port()
                with open(os.path.join(d, f"tollgate-{fname}.yaml"), "w") as f:
                    f.write("workers: 1\n" + body.replace("BPORT", str(bport)).replace("PORT", str(fport)))
                candidates.append((f"tollgate+{fname}", fport,
                                   [TOLLGATE, "-c", os.path.join(d, f"tollgate-{fname}.yaml"), "-l", "warn"]))
        if args.redis:
            rport = free_port()
            procs.append(start(["redis-server", "--bind", "127.0.0.1", "--port", str(rport), "--save", "",
                                "--appendonly", "no", "--dir", d], LOAD_CPU))
            wait_port(rport)
            for fname, extra in (("rl_local", ""), ("rl_redis", ", store: redis")):
                fport = free_port()
                with open(os.path.join(d, f"tollgate-{fname}.yaml"), "w") as f:
                    f.write(f"""workers: 1
redis: {{ address: '127.0.0.1:{rport}' }}
filters:
  - rate_limit: {{ key: client_address, limit: 1000000000, window: 1m{extra} }}
listeners: [{{ name: bench, listen: '127.0.0.1:{fport}' }}]
routes: [{{ name: all, cluster: backend }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'], pool_size: 256 }}]
""")
                candidates.append((f"tollgate+{fname}", fport,
                                   [TOLLGATE, "-c", os.path.join(d, f"tollgate-{fname}.yaml"), "-l", "warn"]))
        nport = free_port()
        candidates.append(("nginx", nport, ["nginx", "-c", nginx_conf(d, nport, f"""
  upstream backend {{ server 127.0.0.1:{bport}; keepalive 256; }}
  server {{ listen 127.0.0.1:{nport} backlog=4096;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }} }}""")]))
        hport = free_port()
        hcfg = os.path.join(d, "haproxy.cfg")
        with open(hcfg, "w") as f:
            f.write(haproxy_head() + f"""frontend fe
  bind 127.0.0.1:{hport}
  default_backend be
backend be
  server s1 127.0.0.1:{bport}
""")
        candidates.append(("haproxy", hport, ["haproxy", "-db", "-f", hcfg]))
        if args.only:
            candidates = [c for c in candidates if c[0] in args.only.split(",")]
        running = []
        for name, port, argv in candidates:
            p = start(argv, PROXY_CPU)
            procs.append(p)
            wait_port(port)
            running.append((name, port, p))
        time.sleep(0.3)
        # Rounds alternate the targets so that noise from the shared machine
        # hits all of them alike; each figure is the median over rounds.
        samples = {name: [] for name, _, _ in running}
        for _ in range(args.rounds):
            for name, port, p in running:
                samples[name].append(measure(name, port, lambda p=p: [p.pid] + children(p.pid), args))
        for name, _, _ in running:
            rs = samples[name]
            med = lambda k: sorted(r[k] for r in rs)[len(rs) // 2]
            results.append({"name": name, "rps": med("rps"), "p99": med("p99"), "cpu": med("cpu"),
                            "bad": sum(r["bad"] for r in rs)})
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(d, ignore_errors=True)

    peers = [r for r in results if r["name"] in ("nginx", "haproxy")]
    best_cpu = min((r["cpu"] for r in peers), default=0) or 1
    best_p99 = min((r["p99"] for r in peers), default=0) or 1
    best_rps = max((r["rps"] for r in peers), default=0) or 1
    lines = [f"HTTP/1.1 keep-alive, GET / -> 2-byte body, wrk -t1 -c{args.connections} -d{args.duration}s, "
             f"median of {args.rounds} alternating rounds; "
             f"proxy on CPU {PROXY_CPU}, wrk + nginx backend on CPU {LOAD_CPU}.", "",
             "| target | req/s | p99 ms | proxy CPU us/req | req/s vs best peer | p99 vs best peer | CPU/req vs best peer |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r["name"] == "direct":
            lines.append(f"| direct (no proxy) | {r['rps']:.0f} | {r['p99']:.2f} | - | - | - | - |")
        else:
            lines.append(f"| {r['name']} | {r['rps']:.0f} | {r['p99']:.2f} | {r['cpu']:.2f} | "
                         f"{r['rps'] / best_rps:.2f} | {r['p99'] / best_p99:.2f} | {r['cpu'] / best_cpu:.2f} |")
    bare = next((r for r in results if r["name"] == "tollgate"), None)
    before = next((r for r in results if r["name"] == "tollgate-before"), None)
    if bare and before:
        lines += ["", f"tollgate vs tollgate-before ({args.compare}): req/s {bare['rps'] / before['rps']:.2f}x, "
                      f"CPU/req {bare['cpu'] / before['cpu']:.2f}x."]
    chain = next((r for r in results if r["name"] == "tollgate+chain"), None)
    if bare and chain:
        lines += ["", f"Filter chain (auth + rate_limit + access_log to a file) vs the bare proxy: "
                      f"req/s {chain['rps'] / bare['rps']:.2f}x, CPU/req {chain['cpu'] / bare['cpu']:.2f}x."]
    if bare and args.filters:
        lines += ["", "One filter at a time (CPU per request over the bare proxy, same run):", "",
                  "| filter | proxy CPU us/req | over the bare proxy (us) | vs access_log's cost |",
                  "|---|---:|---:|---:|"]
        log = next((r for r in results if r["name"] == "tollgate+access_log"), None)
        log_cost = (log["cpu"] - bare["cpu"]) if log else 0
        for fname, _ in FILTER_VARIANTS:
            r = next((x for x in results if x["name"] == f"tollgate+{fname}"), None)
            if r is None:
                continue
            over = r["cpu"] - bare["cpu"]
            rel = f"{over / log_cost:.2f}" if log_cost > 0 else "-"
            lines.append(f"| {fname} | {r['cpu']:.2f} | {over:+.2f} | {rel} |")
    if bare and args.features:
        lines += ["", "One feature at a time (CPU per request over the bare proxy, same run):", "",
                  "| feature | req/s | proxy CPU us/req | over the bare proxy (us) |", "|---|---:|---:|---:|"]
        for fname, _ in FEATURE_VARIANTS:
            r = next((x for x in results if x["name"] == f"tollgate+{fname}"), None)
            if r is not None:
                lines.append(f"| {fname} | {r['rps']:.0f} | {r['cpu']:.2f} | {r['cpu'] - bare['cpu']:+.2f} |")
    local = next((r for r in results if r["name"] == "tollgate+rl_local"), None)
    remote = next((r for r in results if r["name"] == "tollgate+rl_redis"), None)
    if bare and local and remote:
        lines += ["", "The same route with no limit, a local rate_limit, and rate_limit store: redis "
                      "(redis-server on the backend's CPU; every request one EVALSHA round trip):", "",
                  "| route | req/s | p99 ms | proxy CPU us/req |", "|---|---:|---:|---:|"]
        for label, r in (("no limit", bare), ("rate_limit, local", local), ("rate_limit, store: redis", remote)):
            lines.append(f"| {label} | {r['rps']:.0f} | {r['p99']:.2f} | {r['cpu']:.2f} |")
        lines += ["", f"Redis store vs local: CPU/req {remote['cpu'] / local['cpu']:.2f}x (target <= 1.15), "
                      f"p99 {remote['p99'] - local['p99']:+.2f} ms (target within 1 ms), "
                      f"req/s {remote['rps'] / local['rps']:.2f}x."]
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "latest.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
