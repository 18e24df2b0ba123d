"""User-space instructions per request, counted by callgrind: the one
figure of a request's cost that does not move with the machine's noise
(a shared two-core VM moves CPU time per request by 5-10% from one round
to the next; an instruction count repeats to within a fraction of a
percent). It sees only tollgate's own work and its libraries' — not the
kernel's, which is most of a request's CPU on the loopback path (see
RESULTS.md) — so it tells whether a change to the request path did less
work, and where (the functions that cost most, per request), not what it
saves in time.

  hit       a `cache` route, one URL: every request a hit (the default)
  proxied   a route without filters: every request goes upstream

tollgate (one worker) runs under valgrind; an nginx backend answers
`/obj/...` with --size bytes and `Cache-Control: max-age=3600`. Counting
starts after a warm-up request and covers a wrk run (-c10, --seconds) only.
`--compare BIN` counts a second binary the same way (the ratio printed);
`--peers` counts HAProxy (its `cache`) and nginx (`proxy_cache`, one
process, files on /dev/shm) on the same case, so the user-space work of
one request compares across proxies without the machine's noise (the
kernel's part, the same two socket calls per request for all three, is
left out alike). Needs valgrind (`scripts/deps.sh --bench`)."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fetch(url, tries=120):
    """GETs url once it answers (valgrind starts slowly): its status."""
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
                return r.status
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url}: no answer")


def tollgate_cmd(binary, port, bport, d):
    cfg = os.path.join(d, f"tollgate-{port}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""workers: 1
listeners: [{{ name: bench, listen: '127.0.0.1:{port}' }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'], pool_size: 256 }}]
routes:
  - {{ name: proxied, match: {{ path_prefix: /obj/plain }}, cluster: backend }}
  - {{ name: cached, cluster: backend, filters: [{{ cache: {{ max_size: 64MiB }} }}] }}
""")
    return [binary, "-c", cfg, "-l", "warn"]


def haproxy_cmd(case, port, bport, d):
    cfg = os.path.join(d, f"haproxy-{port}.cfg")
    cache = "" if case == "proxied" else "  http-request cache-use bench\n  http-response cache-store bench\n"
    with open(cfg, "w") as f:
        f.write(run.haproxy_head() + f"""cache bench
  total-max-size 64
  max-object-size 65536
  max-age 3600
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
{cache}  server s1 127.0.0.1:{bport}
""")
    return ["haproxy", "-db", "-f", cfg]


def nginx_cmd(case, port, bport, d):
    shm = tempfile.mkdtemp(prefix="tg-bench-instr-", dir="/dev/shm")
    os.chmod(shm, 0o777)
    cache = "" if case == "proxied" else "proxy_cache bench; proxy_cache_lock on;"
    conf = run.nginx_conf(d, port, f"""
  proxy_cache_path {shm}/nginx levels=1:2 keys_zone=bench:16m max_size=64m inactive=1h use_temp_path=off;
  upstream backend {{ server 127.0.0.1:{bport}; keepalive 256; }}
  server {{ listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
                 {cache} }} }}""")
    with open(conf) as f:
        text = f.read().replace("master_process on;", "master_process off;")  # one process to count
    with open(conf, "w") as f:
        f.write(text)
    return ["nginx", "-c", conf]


def count(cmd_of, case, bport, seconds, d, top):
    """Runs the proxy cmd_of(port) makes under callgrind for one wrk run of
    the case: (requests, instructions, [(instructions per request,
    function)])."""
    port = run.free_port()
    out = os.path.join(d, f"callgrind-{port}.out")
    cmd = cmd_of(port)
    binary = cmd[0]
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                          *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    try:
        path = "/obj/plain" if case == "proxied" else "/obj/hot"
        url = f"http://127.0.0.1:{port}{path}"
        if fetch(url) != 200 or fetch(url) != 200:
            raise SystemExit("warm-up: not 200")
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True, capture_output=True)
        rps, p99, total, bad, sockerr = run.wrk_url(url, 10, seconds)
        subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], check=True, capture_output=True)
        if bad or total == 0:
            raise SystemExit(f"{binary}: {bad} non-2xx answers {sockerr}")
    finally:
        run.stop(p)
    ann = subprocess.run(["callgrind_annotate", out], capture_output=True, text=True).stdout
    m = re.search(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?PROGRAM TOTALS", ann, re.M)
    if m is None:
        raise SystemExit(f"{out}: no totals")
    instr = int(m.group(1).replace(",", ""))
    funcs = []
    body = ann.split("file:function", 1)[1] if "file:function" in ann else ""
    for line in body.splitlines():
        fm = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S+)", line)
        if fm:
            name = fm.group(2).rsplit(":", 1)[-1]
            funcs.append((int(fm.group(1).replace(",", "")) / total, name))
        if len(funcs) == top:
            break
    return total, instr, funcs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-release", "tollgate"))
    ap.add_argument("--compare", help="a second tollgate binary, counted the same way")
    ap.add_argument("--peers", action="store_true", help="also count HAProxy and nginx on the same case")
    ap.add_argument("--case", choices=("hit", "proxied"), default="hit")
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--top", type=int, default=15, help="functions listed (by their own instructions)")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate", "wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (scripts/deps.sh --bench)")
    d = tempfile.mkdtemp(prefix="tg-bench-instr-")
    bport = run.free_port()
    body = "x" * args.size
    backend = run.start(["nginx", "-c", run.nginx_conf(d, bport, f"""
  server {{ listen 127.0.0.1:{bport} reuseport backlog=4096;
    location /obj/ {{ default_type text/plain; add_header cache-control "max-age=3600"; return 200 "{body}"; }} }}""")],
                        run.LOAD_CPU)
    try:
        run.wait_port(bport)
        results = []
        runs = [(b, lambda port, b=b: tollgate_cmd(b, port, bport, d))
                for b in [args.bin] + ([args.compare] if args.compare else [])]
        if args.peers:
            runs += [("haproxy", lambda port: haproxy_cmd(args.case, port, bport, d)),
                     ("nginx", lambda port: nginx_cmd(args.case, port, bport, d))]
        for name, cmd_of in runs:
            total, instr, funcs = count(cmd_of, args.case, bport, args.seconds, d, args.top)
            results.append((name, instr / total))
            print(f"{name}: {args.case}, {total} requests, {instr / total:,.0f} instructions per request")
            for per, fname in funcs:
                print(f"  {per:8.1f}  {fname}")
        if args.compare:
            print(f"ratio (--bin / --compare): {results[0][1] / results[1][1]:.3f}")
        if args.peers:
            best = min(v for n, v in results if n in ("haproxy", "nginx"))
            print(f"tollgate / best peer: {results[0][1] / best:.3f}")
    finally:
        run.stop(backend)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
