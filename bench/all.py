"""One benchmark for every workload, side by side in one run: tollgate,
nginx, HAProxy and h2o (one worker each, pinned to CPU 0) in front of the
same backends (an nginx answering "ok", and nghttpd for gRPC), the load
generator and the backends on CPU 1. Each proxy runs one process for all
workloads: a cleartext port (HTTP/1.1, and h2c with prior knowledge), a TLS
port (TLS 1.2 and 1.3, ALPN h2 and http/1.1, session tickets and a session
cache) and, for nginx and HAProxy, whose cleartext HTTP/1 port does not
speak h2c, a second cleartext port for HTTP/2.

Workloads:
  h1            HTTP/1.1 keep-alive, wrk -c64
  h2c-4x25      h2c, h2load 4 connections x 25 streams
  h2c-16x32     h2c, h2load 16 connections x 32 streams
  tls-h1        TLS 1.3, HTTP/1.1 keep-alive, wrk -c64
  hs-1.2-new    TLS 1.2 handshakes, a new session each (openssl s_time -new, one request per connection)
  hs-1.2-resume TLS 1.2 handshakes resuming the session (s_time -reuse)
  hs-1.3-new    TLS 1.3, full handshakes
  hs-1.3-resume TLS 1.3, resumed with a ticket
  grpc          gRPC unary calls over h2c both ways, h2load 4 x 32 (h2o 2.2 cannot proxy to HTTP/2)
plus the floors: the load straight to the backend ("direct"), and nginx
answering by itself on the proxy's CPU ("nginx-self").

Per workload and proxy: requests (or handshakes) per second, p99 latency
(wrk's, or from h2load's per-request log; s_time has none), and the
proxy's CPU per request from /proc; medians of --rounds rounds, the
proxies alternating. Then the ratios of tollgate to the best peer, and the
idle memory per connection of bench/idle.py. `--write` puts the tables
into bench/RESULTS.md between the markers of "One run, every workload".

    python3 bench/all.py [--rounds 3] [--duration 5] [--only h1,grpc] [--write]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import (CLK, LOAD_CPU, PROXY_CPU, ROOT, TOLLGATE, children, cpu_ticks, free_port,  # noqa: E402
                 haproxy_head, nginx_conf, start, stop, wait_port, wrk_url)

WORKLOADS = ["h1", "h2c-4x25", "h2c-16x32", "tls-h1", "hs-1.2-new", "hs-1.2-resume", "hs-1.3-new", "hs-1.3-resume",
             "grpc"]
TITLES = {
    "h1": "HTTP/1.1 keep-alive (wrk -c64)",
    "h2c-4x25": "h2c, 4 conns x 25 streams",
    "h2c-16x32": "h2c, 16 conns x 32 streams",
    "tls-h1": "TLS 1.3 HTTP/1.1 keep-alive (wrk -c64)",
    "hs-1.2-new": "TLS 1.2 handshakes, full",
    "hs-1.2-resume": "TLS 1.2 handshakes, resumed",
    "hs-1.3-new": "TLS 1.3 handshakes, full",
    "hs-1.3-resume": "TLS 1.3 handshakes, resumed (ticket)",
    "grpc": "gRPC unary over h2c (4 x 32)",
}
PEERS = ["nginx", "haproxy", "h2o"]
GRPC_PATH = "/test.v1.Echo/Echo"
MARK_BEGIN, MARK_END = "<!-- bench/all.py -->", "<!-- /bench/all.py -->"


def make_cert(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    with open(f"{d}/combined.pem", "w") as f:
        f.write(open(f"{d}/cert.pem").read() + open(f"{d}/key.pem").read())


def proxies(d, bport, gport):
    """name -> (argv, {"plain": port, "h2c": port, "tls": port}, has_grpc)."""
    out = {}
    p = {"plain": free_port(), "tls": free_port()}
    p["h2c"] = p["plain"]  # tollgate's cleartext listener takes h2c prior knowledge too
    with open(f"{d}/tollgate.yaml", "w") as f:
        f.write(f"""workers: 1
listeners:
  - {{ name: plain, listen: '127.0.0.1:{p['plain']}' }}
  - name: tls
    listen: '127.0.0.1:{p['tls']}'
    tls: {{ certificates: [{{ cert: {d}/cert.pem, key: {d}/key.pem }}], min_version: '1.2' }}
routes:
  - {{ name: grpc, match: {{ grpc_service: test.v1.Echo }}, cluster: grpc }}
  - {{ name: all, cluster: backend }}
clusters:
  - {{ name: backend, endpoints: ['127.0.0.1:{bport}'] }}
  - {{ name: grpc, protocol: h2c, endpoints: ['127.0.0.1:{gport}'] }}
""")
    out["tollgate"] = ([TOLLGATE, "-c", f"{d}/tollgate.yaml", "-l", "warn"], p, True)

    p = {"plain": free_port(), "h2c": free_port(), "tls": free_port()}
    proxy = """proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"""
    out["nginx"] = (["nginx", "-c", nginx_conf(d, p["plain"], f"""
  upstream backend {{ server 127.0.0.1:{bport}; keepalive 256; }}
  upstream grpcb {{ server 127.0.0.1:{gport}; keepalive 64; }}
  ssl_session_cache shared:SSL:10m;
  ssl_protocols TLSv1.2 TLSv1.3;
  http2_max_concurrent_streams 128;
  server {{ listen 127.0.0.1:{p['plain']} backlog=4096; location / {{ {proxy} }} }}
  server {{ listen 127.0.0.1:{p['h2c']} http2 backlog=4096;
    location / {{ {proxy} }}
    location /test.v1.Echo/ {{ grpc_pass grpc://grpcb; }} }}
  server {{ listen 127.0.0.1:{p['tls']} ssl http2 backlog=4096;
    ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;
    location / {{ {proxy} }} }}""")], p, True)

    p = {"plain": free_port(), "h2c": free_port(), "tls": free_port()}
    with open(f"{d}/haproxy.cfg", "w") as f:
        f.write(haproxy_head("  tune.ssl.cachesize 20000\n") + f"""frontend plain
  bind 127.0.0.1:{p['plain']}
  default_backend be
frontend h2c
  bind 127.0.0.1:{p['h2c']} proto h2
  use_backend grpc if {{ path_beg /test.v1.Echo/ }}
  default_backend be
frontend tls
  bind 127.0.0.1:{p['tls']} ssl crt {d}/combined.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2
  default_backend be
backend be
  server s1 127.0.0.1:{bport}
backend grpc
  server g1 127.0.0.1:{gport} proto h2
""")
    out["haproxy"] = (["haproxy", "-db", "-f", f"{d}/haproxy.cfg"], p, True)

    if shutil.which("h2o"):
        p = {"plain": free_port(), "tls": free_port()}
        p["h2c"] = p["plain"]
        with open(f"{d}/h2o.conf", "w") as f:
            f.write(f"""num-threads: 1
user: root
pid-file: {d}/h2o.pid
listen:
  host: 127.0.0.1
  port: {p['plain']}
listen:
  host: 127.0.0.1
  port: {p['tls']}
  ssl:
    certificate-file: {d}/cert.pem
    key-file: {d}/key.pem
    minimum-version: TLSv1.2
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:{bport}/
        proxy.preserve-host: ON
""")
        out["h2o"] = (["h2o", "-c", f"{d}/h2o.conf"], p, False)
    return out


def p99_from_log(path):
    lat = []
    with open(path) as f:
        for line in f:
            fields = line.split("\t")
            if len(fields) >= 3:
                lat.append(int(fields[2]))
    if not lat:
        return float("nan")
    lat.sort()
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000.0


def run_wrk(url, seconds):
    rps, p99, total, bad, sock_err = wrk_url(url, 64, seconds)
    errs = re.search(r"connect (\d+), read \d+, write \d+, timeout (\d+)", sock_err)
    return total, rps, p99, bad + (int(errs.group(1)) + int(errs.group(2)) if errs else 0)


def run_h2load(url, seconds, conns, streams, d, extra=()):
    log = f"{d}/h2load.log"
    cmd = ["taskset", "-c", LOAD_CPU, "h2load", "-t1", f"-c{conns}", f"-m{streams}", "-D", str(seconds),
           "--warm-up-time=1", f"--log-file={log}", *extra, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    codes = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", out)
    total = int(m.group(2))
    p99 = p99_from_log(log)
    os.unlink(log)
    return total, rps, p99, int(m.group(3)) + int(m.group(4)) + (int(codes.group(1)) + int(codes.group(2)) if codes else 0)


def run_s_time(port, seconds, version, resume):
    cmd = ["taskset", "-c", LOAD_CPU, "openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-www", "/",
           "-time", str(seconds), f"-tls{version.replace('.', '_')}", "-reuse" if resume else "-new"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"(\d+) connections in ([\d.]+)s", out)
    total, secs = int(m.group(1)), float(m.group(2))
    marks = re.sub(r"[^*r]", "", out.split("\n\n")[0] if resume else "")
    # with -reuse, s_time prints 'r' per resumed connection and '*' per new one
    not_resumed = marks.count("*") - 1 if resume else 0  # the first connection makes the session
    return total, total / secs if secs else 0.0, float("nan"), max(not_resumed, 0)


def load(workload, ports, seconds, d):
    """(requests, req/s, p99 ms, failures) of one run of the workload."""
    if workload == "h1":
        return run_wrk(f"http://127.0.0.1:{ports['plain']}/", seconds)
    if workload == "tls-h1":
        return run_wrk(f"https://127.0.0.1:{ports['tls']}/", seconds)
    if workload.startswith("h2c-"):
        conns, streams = workload[4:].split("x")
        return run_h2load(f"http://127.0.0.1:{ports['h2c']}/", seconds, conns, streams, d)
    if workload == "grpc":
        return run_h2load(f"http://127.0.0.1:{ports['h2c']}{GRPC_PATH}", seconds, 4, 32, d,
                          ["-d", f"{d}/req.bin", "-H", "content-type: application/grpc", "-H", "te: trailers"])
    _, version, mode = workload.split("-")
    return run_s_time(ports["tls"], seconds, version, mode == "resume")


def measure(workload, ports, pids, seconds, d):
    load(workload, ports, 2, d)  # warm-up: pools, caches, session caches
    c0 = cpu_ticks(pids) if pids else 0
    total, rps, p99, bad = load(workload, ports, seconds, d)
    cpu = (cpu_ticks(pids) - c0) / CLK * 1e6 / max(total, 1) if pids else 0.0
    return {"rps": rps, "p99": p99, "cpu": cpu, "bad": bad}


def median(rs, k):
    v = sorted(r[k] for r in rs)
    return v[len(v) // 2]


def idle_rows():
    """bench/idle.py's figures: {(name, kind): KiB per connection}."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "idle.py"), "--only", "tollgate,nginx,haproxy"],
                         capture_output=True, text=True, timeout=1800).stdout
    return {(m.group(1), m.group(2)): float(m.group(3))
            for m in re.finditer(r"^(\S+)\s+(http1|tls|h2c)\s+([\d.]+) KiB/conn", out, re.M)}


def fmt(v, spec):
    return "—" if v is None or v != v else format(v, spec)


def tables(rows, floors, idle, names):
    lines = ["| workload | metric | " + " | ".join(names) + " | tollgate vs best peer |",
             "|---|---|" + "---:|" * len(names) + "---:|"]
    for w in WORKLOADS:
        if w not in rows:
            continue
        r = rows[w]
        for metric, spec, better in (("req/s", ".0f", max), ("p99 ms", ".2f", min), ("CPU µs/req", ".2f", min)):
            key = {"req/s": "rps", "p99 ms": "p99", "CPU µs/req": "cpu"}[metric]
            vals = {n: r[n][key] if n in r else None for n in names}
            peers = [v for n, v in vals.items() if n != "tollgate" and v and v == v]
            t = vals.get("tollgate")
            ratio = "—" if not peers or t is None or t != t else f"{t / better(peers):.2f}×"
            lines.append(f"| {TITLES[w] if metric == 'req/s' else ''} | {metric} | "
                         + " | ".join(fmt(vals[n], spec) for n in names) + f" | {ratio} |")
    bad = {f"{w}/{n}": r[n]["bad"] for w, r in rows.items() for n in r if r[n]["bad"]}
    lines += ["", "Failures (non-2xx, socket errors, handshakes not resumed when asked): "
              + (", ".join(f"{k} {v}" for k, v in bad.items()) if bad else "none") + "."]
    if floors:
        lines += ["", "Floors (the same load without a proxy in the way):", "",
                  "| workload | target | req/s | p99 ms | CPU µs/req |", "|---|---|---:|---:|---:|"]
        for (w, n), f in floors.items():
            lines.append(f"| {TITLES[w]} | {n} | {f['rps']:.0f} | {fmt(f['p99'], '.2f')} | "
                         f"{fmt(f['cpu'] or None, '.2f')} |")
    if idle:
        inames = ["tollgate", "nginx", "haproxy"]
        lines += ["", "Idle connections after one request each (bench/idle.py, KiB of RSS per connection):", "",
                  "| kind | " + " | ".join(inames) + " | tollgate vs best peer |", "|---|" + "---:|" * 4]
        for kind in ("http1", "tls", "h2c"):
            vals = [idle.get((n, kind)) for n in inames]
            peers = [v for v in vals[1:] if v]
            ratio = f"{vals[0] / min(peers):.2f}×" if vals[0] and peers else "—"
            lines.append(f"| {kind} | " + " | ".join(fmt(v, '.2f') for v in vals) + f" | {ratio} |")
    return "\n".join(lines)


def write_results(text):
    path = os.path.join(ROOT, "bench", "RESULTS.md")
    with open(path) as f:
        doc = f.read()
    a, b = doc.find(MARK_BEGIN), doc.find(MARK_END)
    if a < 0 or b < 0:
        raise SystemExit(f"{path}: no {MARK_BEGIN} ... {MARK_END} markers")
    stamp = time.strftime("%Y-%m-%d")
    doc = doc[:a + len(MARK_BEGIN)] + f"\n_Measured {stamp}._\n\n" + text + "\n" + doc[b:]
    with open(path, "w") as f:
        f.write(doc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--no-idle", action="store_true", help="leave out bench/idle.py")
    ap.add_argument("--write", action="store_true", help="write the tables into bench/RESULTS.md")
    args = ap.parse_args()
    workloads = [w for w in WORKLOADS if w in args.only.split(",")]
    d = tempfile.mkdtemp(prefix="tg-bench-all-")
    procs, rows, floors = [], {}, {}
    try:
        make_cert(d)
        os.makedirs(f"{d}/www/test.v1.Echo")
        with open(f"{d}/www{GRPC_PATH}", "wb") as f:
            f.write(b"\x00\x00\x00\x00\x05hello")
        with open(f"{d}/req.bin", "wb") as f:
            f.write(b"\x00\x00\x00\x00\x05world")
        bport, gport, sport, sport2 = free_port(), free_port(), free_port(), free_port()
        procs.append(start(["nginx", "-c", nginx_conf(d, bport, f"""
  server {{ listen 127.0.0.1:{bport} reuseport backlog=4096; location / {{ return 200 "ok\\n"; }} }}""")],
                           LOAD_CPU))
        procs.append(start(["nghttpd", "--no-tls", "--trailer", "grpc-status: 0", "-d", f"{d}/www", str(gport)],
                           LOAD_CPU))
        # the floor on the proxy's CPU: nginx answering by itself
        selfp = start(["nginx", "-c", nginx_conf(d, sport, f"""
  server {{ listen 127.0.0.1:{sport} backlog=4096; location / {{ return 200 "ok\\n"; }} }}
  server {{ listen 127.0.0.1:{sport2} http2 backlog=4096;
    location / {{ return 200 "ok\\n"; }} }}""")], PROXY_CPU)
        procs.append(selfp)
        for port in (bport, gport, sport, sport2):
            wait_port(port)
        running = {}
        for name, (argv, ports, grpc) in proxies(d, bport, gport).items():
            p = start(argv, PROXY_CPU, cwd=d)
            procs.append(p)
            for port in set(ports.values()):
                wait_port(port)
            running[name] = (p, ports, grpc)
        time.sleep(0.5)
        names = [n for n in ["tollgate"] + PEERS if n in running]
        for w in workloads:
            samples = {n: [] for n in names}
            for _ in range(args.rounds):
                for n in names:
                    p, ports, grpc = running[n]
                    if w == "grpc" and not grpc:
                        continue
                    pids = [p.pid] + children(p.pid)  # nginx's master and worker, h2o's helpers: all of it
                    r = measure(w, ports, pids, args.duration, d)
                    samples[n].append(r)
                    print(f"{w:14s} {n:9s} {r['rps']:9.0f}/s  p99 {fmt(r['p99'], '6.2f')} ms  "
                          f"cpu {r['cpu']:6.2f} us  failures={r['bad']}", flush=True)
            rows[w] = {n: {"rps": median(s, "rps"), "p99": median(s, "p99"), "cpu": median(s, "cpu"),
                           "bad": sum(x["bad"] for x in s)} for n, s in samples.items() if s}
            if w in ("h1", "grpc"):  # the backends themselves (nginx speaks no h2c on its HTTP/1 port)
                floors[(w, "direct (no proxy)")] = measure(w, {"plain": bport, "h2c": gport}, [], args.duration, d)
            if w in ("h1", "h2c-4x25"):
                floors[(w, "nginx-self (answers on the proxy's CPU)")] = measure(
                    w, {"plain": sport, "h2c": sport2}, [selfp.pid] + children(selfp.pid), args.duration, d)
        for p in procs:
            stop(p)
        procs = []
        idle = {} if args.no_idle else idle_rows()
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(d, ignore_errors=True)
    text = tables(rows, floors, idle, names)
    print("\n" + text)
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "all.md"), "w") as f:
        f.write(text + "\n")
    if args.write:
        write_results(text)


if __name__ == "__main__":
    sys.exit(main())
