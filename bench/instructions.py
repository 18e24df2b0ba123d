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
`--compare BIN` counts a second binary the same way (the ratio printed).
Needs valgrind (`scripts/deps.sh --bench`)."""
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


def count(binary, case, bport, seconds, d, top):
    """Runs binary under callgrind for one wrk run of the case: (requests,
    instructions, [(instructions per request, function)])."""
    port = run.free_port()
    cfg = os.path.join(d, f"tollgate-{port}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""workers: 1
listeners: [{{ name: bench, listen: '127.0.0.1:{port}' }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'], pool_size: 256 }}]
routes:
  - {{ name: proxied, match: {{ path_prefix: /obj/plain }}, cluster: backend }}
  - {{ name: cached, cluster: backend, filters: [{{ cache: {{ max_size: 64MiB }} }}] }}
""")
    out = os.path.join(d, f"callgrind-{port}.out")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                          binary, "-c", cfg, "-l", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
        for binary in [args.bin] + ([args.compare] if args.compare else []):
            total, instr, funcs = count(binary, args.case, bport, args.seconds, d, args.top)
            results.append(instr / total)
            print(f"{binary}: {args.case}, {total} requests, {instr / total:,.0f} instructions per request")
            for per, name in funcs:
                print(f"  {per:8.1f}  {name}")
        if len(results) == 2:
            print(f"ratio (--bin / --compare): {results[0] / results[1]:.3f}")
    finally:
        run.stop(backend)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
