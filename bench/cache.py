"""What a response cache costs and saves per request (bench/RESULTS.md,
"Response cache"), side by side: tollgate's `cache` filter, nginx
`proxy_cache` (its zone's files on /dev/shm, so no disk) and HAProxy's
`cache` — each one process or thread on CPU 0 — in front of one nginx
backend on CPU 1 that answers `/obj/...` with a body of --size bytes and
`Cache-Control: max-age=3600`; wrk on CPU 1.

  hit       one URL, always in the cache: the proxy answers alone
  direct    the backend answering wrk itself (the floor of the I/O)
  proxied   tollgate without a cache: every request goes upstream
  miss      tollgate with a cache, a new URL each request (wrk script):
            looked up, sent upstream, stored, evicted once the zone is full
  bypass    tollgate with a cache on a route whose answers say no-store

Reported: req/s, p99 and the proxy's CPU per request (utime + stime over
the run / requests), medians of --rounds; for hits, tollgate's CPU as a
ratio to the better of nginx and HAProxy — of the medians, and paired
round by round (the three hit cases run seconds apart in each round, so
the machine's drift between rounds cancels)."""
import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

UNIQUE = """counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/obj/miss-" .. counter)
end
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-bench-cache-")
    shm = tempfile.mkdtemp(prefix="tg-bench-cache-", dir="/dev/shm")
    os.chmod(shm, 0o777)  # nginx workers run as an unprivileged user
    body = "x" * args.size
    bport = run.free_port()
    backend = run.start(["nginx", "-c", run.nginx_conf(d, bport, f"""
  server {{ listen 127.0.0.1:{bport} reuseport backlog=4096;
    location /obj/ {{ default_type text/plain; add_header cache-control "max-age=3600"; return 200 "{body}"; }}
    location /nostore/ {{ default_type text/plain; add_header cache-control "no-store"; return 200 "{body}"; }} }}""")],
        run.LOAD_CPU)
    run.wait_port(bport)
    tport, nport, hport = run.free_port(), run.free_port(), run.free_port()
    cfg = os.path.join(d, "tollgate.yaml")
    with open(cfg, "w") as f:
        f.write(f"""workers: 1
listeners: [{{ name: bench, listen: '127.0.0.1:{tport}' }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'], pool_size: 256 }}]
routes:
  - {{ name: proxied, match: {{ path_prefix: /obj/plain }}, cluster: backend }}
  - {{ name: cached, cluster: backend, filters: [{{ cache: {{ max_size: 64MiB }} }}] }}
""")
    tollgate = run.start([run.TOLLGATE, "-c", cfg], run.PROXY_CPU)
    nginx = run.start(["nginx", "-c", run.nginx_conf(d, nport, f"""
  proxy_cache_path {shm}/nginx levels=1:2 keys_zone=bench:16m max_size=64m inactive=1h use_temp_path=off;
  upstream backend {{ server 127.0.0.1:{bport}; keepalive 256; }}
  server {{ listen 127.0.0.1:{nport} reuseport backlog=4096;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_cache bench; proxy_cache_lock on; }} }}""")], run.PROXY_CPU)
    hcfg = os.path.join(d, "haproxy.cfg")
    with open(hcfg, "w") as f:
        f.write(run.haproxy_head() + f"""cache bench
  total-max-size 64
  max-object-size {max(args.size * 2, 65536)}
  max-age 3600
frontend fe
  bind 127.0.0.1:{hport}
  default_backend be
backend be
  http-request cache-use bench
  http-response cache-store bench
  server s1 127.0.0.1:{bport}
""")
    haproxy = run.start(["haproxy", "-f", hcfg], run.PROXY_CPU)
    for p in (tport, nport, hport):
        run.wait_port(p)
    script = os.path.join(d, "unique.lua")
    with open(script, "w") as f:
        f.write(UNIQUE)
    cases = [
        ("tollgate hit", tollgate, f"http://127.0.0.1:{tport}/obj/hot", ()),
        ("nginx proxy_cache hit", nginx, f"http://127.0.0.1:{nport}/obj/hot", ()),
        ("haproxy cache hit", haproxy, f"http://127.0.0.1:{hport}/obj/hot", ()),
        ("direct (backend alone)", backend, f"http://127.0.0.1:{bport}/obj/hot", ()),
        ("tollgate proxied (no cache)", tollgate, f"http://127.0.0.1:{tport}/obj/plain", ()),
        ("tollgate miss (new URL each)", tollgate, f"http://127.0.0.1:{tport}/", ("-s", script)),
        ("tollgate bypass (no-store)", tollgate, f"http://127.0.0.1:{tport}/nostore/x", ()),
    ]
    results = {name: [] for name, _, _, _ in cases}
    try:
        for _ in range(args.rounds):
            for name, proc, url, extra in cases:
                pids = [proc.pid] + run.children(proc.pid)  # (the warm-up fills the caches)
                results[name].append(run.cpu_run(name, url, pids, args.connections, args.duration, extra))
    finally:
        for p in (tollgate, nginx, haproxy, backend):
            run.stop(p)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p99", "cpu")} for n, rs in results.items()}
    best = min(med["nginx proxy_cache hit"]["cpu"], med["haproxy cache hit"]["cpu"])
    print()
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.size}-byte bodies, medians of {args.rounds} rounds; "
          f"each proxy one worker on CPU {run.PROXY_CPU}, wrk + the nginx backend on CPU {run.LOAD_CPU}.")
    print()
    print("| case | req/s | p99 ms | proxy CPU µs/req | vs best peer hit |")
    print("|---|---|---|---|---|")
    for name, _, _, _ in cases:
        m = med[name]
        print(f"| {name} | {m['rps']:.0f} | {m['p99']:.2f} | {m['cpu']:.2f} | {m['cpu'] / best:.2f} |")
    # The machine's speed drifts between rounds more than the proxies
    # differ: each round's hit against that round's better peer, seconds
    # apart, cancels the drift that the medians above keep.
    paired = [t["cpu"] / min(n["cpu"], h["cpu"]) for t, n, h in
              zip(results["tollgate hit"], results["nginx proxy_cache hit"], results["haproxy cache hit"])]
    print()
    print(f"tollgate hit / best peer hit, paired by round: median {statistics.median(paired):.2f} "
          f"(rounds: {' '.join(f'{x:.2f}' for x in paired)})")


if __name__ == "__main__":
    main()
