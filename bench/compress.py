"""Response compression, side by side: the cost of compressing a 20 KiB
text response in tollgate (compress filter) and in nginx (gzip module) at
the same gzip level, in front of the same nginx backend, plus tollgate's
brotli and zstd and both proxies without compression. The proxy runs on
one core, wrk and the backend on the other (bench/run.py's layout).
Reports req/s, CPU per request, CPU per KiB of body compressed, and the
bytes sent per response. `bash bench/run.sh --compress` writes the table
into bench/RESULTS.md."""
import argparse
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the shared helpers)

BODY_KIB = 20


def wrk(port, seconds, accept_encoding, connections):
    cmd = ["taskset", "-c", run.LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
           "-H", f"Accept-Encoding: {accept_encoding}", f"http://127.0.0.1:{port}/body.txt"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    per_sec = float(m.group(1)) * {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, per_sec / rps if rps else 0, int(errors.group(1)) if errors else 0


def measure(name, port, pid, args, ae):
    wrk(port, 2, ae, args.connections)
    best = None
    for _ in range(args.rounds):
        c0 = run.cpu_ticks([pid]) if pid else 0
        rps, total, bytes_per, bad = wrk(port, args.duration, ae, args.connections)
        c1 = run.cpu_ticks([pid]) if pid else 0
        cpu = (c1 - c0) / run.CLK * 1e6 / total if pid else 0.0
        r = {"name": name, "ae": ae, "rps": rps, "cpu": cpu, "bytes": bytes_per, "bad": bad}
        if best is None or (pid and cpu < best["cpu"]) or (not pid and rps > best["rps"]):
            best = r
    print(f"{name:22s} {ae:5s} {best['rps']:9.0f} req/s  cpu {best['cpu']:7.2f} us/req  "
          f"{best['cpu'] / BODY_KIB:6.2f} us/KiB  {best['bytes']:7.0f} B/resp  non2xx={best['bad']}", flush=True)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--level", type=int, default=5, help="gzip level for both proxies")
    ap.add_argument("--results", default="")
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-bench-compress-")
    os.chmod(d, 0o755)  # nginx's workers (another user) read the body from here
    with open(os.path.join(d, "body.txt"), "w") as f:
        f.write("".join(f"line {i}: GET /api/items/{i * 7919 % 10007} 200 {i * 31 % 977} ms\n"
                        for i in range(2000))[:BODY_KIB * 1024])
    os.chmod(os.path.join(d, "body.txt"), 0o644)
    procs, results = [], []
    try:
        bport = run.free_port()
        procs.append(run.start(["nginx", "-c", run.nginx_conf(d, bport, f"""
  server {{ listen 127.0.0.1:{bport} reuseport backlog=4096; root {d};
    location / {{ default_type text/plain; }} }}""")], run.LOAD_CPU))
        run.wait_port(bport)
        results.append(measure("direct (no proxy)", bport, None, args, "gzip"))
        cases = []
        for name, chain, ae in (
                ("tollgate", "", "gzip"),
                ("tollgate+gzip", f"[{{ compress: {{ algorithms: [gzip], gzip_level: {args.level} }} }}]", "gzip"),
                ("tollgate+br", "[{ compress: { algorithms: [br], brotli_quality: 4 } }]", "br"),
                ("tollgate+zstd", "[{ compress: { algorithms: [zstd], zstd_level: 3 } }]", "zstd")):
            port = run.free_port()
            path = os.path.join(d, f"{name}.yaml")
            with open(path, "w") as f:
                f.write(f"""workers: 1
listeners: [{{ name: bench, listen: '127.0.0.1:{port}' }}]
routes: [{{ name: all, cluster: backend{', filters: ' + chain if chain else ''} }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'], pool_size: 256 }}]
""")
            cases.append((name, port, [run.TOLLGATE, "-c", path, "-l", "warn"], ae))
        for name, gz in (("nginx", "off"), ("nginx+gzip", "on")):
            port = run.free_port()
            cases.append((name, port, ["nginx", "-c", run.nginx_conf(d, port, f"""
  upstream backend {{ server 127.0.0.1:{bport}; keepalive 256; }}
  gzip {gz}; gzip_comp_level {args.level}; gzip_types text/plain; gzip_min_length 256; gzip_proxied any;
  server {{ listen 127.0.0.1:{port} backlog=4096;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")],
                          "gzip"))
        for name, port, argv, ae in cases:
            p = run.start(argv, run.PROXY_CPU)
            procs.append(p)
            run.wait_port(port)
            pid = p.pid
            kids = run.children(pid)
            results.append(measure(name, port, kids[0] if name.startswith("nginx") and kids else pid, args, ae))
            run.stop(p)
            procs.remove(p)
    finally:
        for p in procs:
            run.stop(p)
    by = {r["name"]: r for r in results}
    tg, ng = by["tollgate+gzip"], by["nginx+gzip"]
    lines = ["| proxy | encoding | req/s | CPU µs/req | CPU µs per KiB of body | bytes/response |",
             "|---|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['ae'] if r['name'] not in ('tollgate', 'nginx', 'direct (no proxy)') else '—'}"
                     f" | {r['rps']:.0f} | {r['cpu']:.2f} | "
                     f"{r['cpu'] / BODY_KIB:.2f}"
                     f" | {r['bytes']:.0f} |")
    lines += ["", f"gzip level {args.level}, {BODY_KIB} KiB text body, {args.connections} connections: tollgate+gzip "
                  f"{tg['cpu']:.2f} µs/req vs nginx+gzip {ng['cpu']:.2f} ({tg['cpu'] / ng['cpu']:.2f}×); "
                  f"compression alone (minus the same proxy without it): tollgate "
                  f"{tg['cpu'] - by['tollgate']['cpu']:.2f} µs vs nginx {ng['cpu'] - by['nginx']['cpu']:.2f} µs "
                  f"per response."]
    print("\n".join(lines))
    if args.results:
        with open(args.results, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
