"""TLS and HTTP/2 side-by-side benchmark (see bench/run_tls_h2.sh and
bench/RESULTS.md): tollgate, nginx, HAProxy and h2o, one worker each on
CPU 0, in front of the same nginx backend on CPU 1, for four loads:

  tls        HTTP/1.1 over TLS, keep-alive (wrk)
  handshake  HTTP/1.1 over TLS, a new connection per request (wrk with
             Connection: close): full TLS handshakes per second
  h2         HTTP/2 over TLS (h2load: 4 connections x 25 streams)
  h2c        HTTP/2 cleartext with prior knowledge (h2load, same shape)

Each figure is the median of alternating rounds; "proxy CPU us/req" is the
proxy's utime+stime over the run divided by the requests served."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import (LOAD_CPU, PROXY_CPU, TOLLGATE, children, cpu_ticks, free_port, haproxy_head,  # noqa: E402
                 nginx_conf, start, stop, wait_port)

SUITES = ("tls", "handshake", "h2", "h2c")


def make_cert(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    with open(f"{d}/combined.pem", "w") as f:  # HAProxy wants both in one file
        f.write(open(f"{d}/cert.pem").read() + open(f"{d}/key.pem").read())


def targets(d, bport, suite, compare=""):
    """(name, port, argv) of each proxy configured for the suite; compare:
    another tollgate build, run beside it as tollgate-before."""
    tls = suite != "h2c"
    out = []
    # TG_BENCH_POOL: the upstream pool_size (default 256; "default": none given, the adaptive pool)
    pool = os.environ.get("TG_BENCH_POOL", "256")
    pool_part = "" if pool == "default" else f", pool_size: {pool}"
    port = free_port()
    tls_block = (f"\n    tls: {{ certificates: [{{ cert: {d}/cert.pem, key: {d}/key.pem }}] }}" if tls else "")
    with open(f"{d}/tollgate-{suite}.yaml", "w") as f:
        f.write(f"""workers: 1
listeners:
  - name: bench
    listen: 127.0.0.1:{port}{tls_block}
routes: [{{ name: all, cluster: backend }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}']{pool_part} }}]
""")
    out.append(("tollgate", port, [TOLLGATE, "-c", f"{d}/tollgate-{suite}.yaml", "-l", "warn"]))
    if compare:
        oport = free_port()
        with open(f"{d}/tollgate-before-{suite}.yaml", "w") as f:
            f.write(open(f"{d}/tollgate-{suite}.yaml").read().replace(f"127.0.0.1:{port}\n", f"127.0.0.1:{oport}\n"))
        out.append(("tollgate-before", oport, [os.path.abspath(compare), "-c", f"{d}/tollgate-before-{suite}.yaml",
                                               "-l", "warn"]))

    port = free_port()
    listen = f"127.0.0.1:{port} ssl http2" if tls else f"127.0.0.1:{port} http2"
    ssl = (f"ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem; "
           f"ssl_session_cache shared:SSL:10m; ssl_protocols TLSv1.2 TLSv1.3;") if tls else ""
    out.append(("nginx", port, ["nginx", "-c", nginx_conf(d, port, f"""
  upstream backend {{ server 127.0.0.1:{bport}; keepalive 256; }}
  server {{ listen {listen} backlog=4096; {ssl}
    http2_max_concurrent_streams 128;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }} }}""")]))

    port = free_port()
    bind = (f"bind 127.0.0.1:{port} ssl crt {d}/combined.pem alpn h2,http/1.1" if tls
            else f"bind 127.0.0.1:{port} proto h2")
    with open(f"{d}/haproxy-{suite}.cfg", "w") as f:
        f.write(haproxy_head("  tune.ssl.default-dh-param 2048\n") + f"""frontend fe
  {bind}
  default_backend be
backend be
  server s1 127.0.0.1:{bport}
""")
    out.append(("haproxy", port, ["haproxy", "-db", "-f", f"{d}/haproxy-{suite}.cfg"]))

    if shutil.which("h2o"):
        port = free_port()
        ssl_block = (f"""
  ssl:
    certificate-file: {d}/cert.pem
    key-file: {d}/key.pem""" if tls else "")
        with open(f"{d}/h2o-{suite}.conf", "w") as f:
            f.write(f"""num-threads: 1
user: root
listen:
  host: 127.0.0.1
  port: {port}{ssl_block}
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:{bport}/
        proxy.preserve-host: ON
""")
        out.append(("h2o", port, ["h2o", "-c", f"{d}/h2o-{suite}.conf"]))
    return out


def load(suite, port, seconds, requests):
    """Runs the client; returns (requests served, req/s, failures)."""
    if suite in ("tls", "handshake"):
        cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c50", f"-d{seconds}s"]
        if suite == "handshake":
            cmd += ["-c20", "-H", "Connection: close"]
        cmd.append(f"https://127.0.0.1:{port}/")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
        total = int(re.search(r"(\d+) requests in", out).group(1))
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        nerr = (int(bad.group(1)) if bad else 0) + (int(errs.group(1)) + int(errs.group(4)) if errs else 0)
        return total, rps, nerr
    scheme = "https" if suite == "h2" else "http"
    conns, streams = os.environ.get("TG_BENCH_H2_SHAPE", "4x25").split("x")  # connections x streams each
    cmd = ["taskset", "-c", LOAD_CPU, "h2load", "-t1", f"-c{conns}", f"-m{streams}", "-n", str(requests),
           f"{scheme}://127.0.0.1:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    status = re.search(r"status codes: (\d+) 2xx", out)
    ok = int(status.group(1)) if status else 0
    return int(m.group(2)), rps, int(m.group(3)) + int(m.group(4)) + (int(m.group(2)) - ok)


def measure(suite, name, port, pids, args):
    n = args.h2_requests
    load(suite, port, 2, n // 4)  # warm-up
    c0 = cpu_ticks(pids)
    total, rps, bad = load(suite, port, args.duration, n)
    c1 = cpu_ticks(pids)
    cpu = (c1 - c0) / os.sysconf("SC_CLK_TCK") * 1e6 / max(total, 1)
    print(f"{suite:9s} {name:9s} {rps:9.0f} req/s  cpu {cpu:6.2f} us/req  failures={bad}", flush=True)
    return {"rps": rps, "cpu": cpu, "bad": bad}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--h2-requests", type=int, default=200000)
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--only", default="")
    ap.add_argument("--compare", default="", help="another tollgate binary, run beside it as tollgate-before")
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-bench-tls-")
    procs, lines = [], []
    try:
        make_cert(d)
        bport = free_port()
        backend = start(["nginx", "-c", nginx_conf(d, bport, f"""
  server {{ listen 127.0.0.1:{bport} reuseport backlog=4096;
    location / {{ return 200 "ok\\n"; }} }}""")], LOAD_CPU)
        procs.append(backend)
        wait_port(bport)
        for suite in args.suites.split(","):
            running = []
            for name, port, argv in targets(d, bport, suite, args.compare):
                if args.only and name not in args.only.split(","):
                    continue
                p = start(argv, PROXY_CPU, cwd=d)
                procs.append(p)
                try:
                    wait_port(port)
                except RuntimeError:
                    raise RuntimeError(f"{name} did not start for {suite}: {' '.join(argv)}")
                running.append((name, port, p))
            time.sleep(0.3)
            samples = {name: [] for name, _, _ in running}
            for _ in range(args.rounds):
                for name, port, p in running:
                    samples[name].append(measure(suite, name, port, [p.pid] + children(p.pid), args))
            for _, _, p in running:
                stop(p)
            rows = []
            for name, _, _ in running:
                rs = samples[name]
                med = lambda k: sorted(r[k] for r in rs)[len(rs) // 2]
                rows.append({"name": name, "rps": med("rps"), "cpu": med("cpu"), "bad": sum(r["bad"] for r in rs)})
            peers = [r for r in rows if not r["name"].startswith("tollgate")]
            best_cpu = min((r["cpu"] for r in peers), default=1) or 1
            best_rps = max((r["rps"] for r in peers), default=1) or 1
            lines += [f"### {suite}", "",
                      "| target | req/s | proxy CPU us/req | req/s vs best peer | CPU/req vs best peer | failures |",
                      "|---|---:|---:|---:|---:|---:|"]
            for r in rows:
                lines.append(f"| {r['name']} | {r['rps']:.0f} | {r['cpu']:.2f} | {r['rps'] / best_rps:.2f} | "
                             f"{r['cpu'] / best_cpu:.2f} | {r['bad']} |")
            lines.append("")
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"), exist_ok=True)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "tls_h2.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
