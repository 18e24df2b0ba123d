"""How the cost grows with the number of routes (bench/RESULTS.md,
"Scaling: routes"). Tables shaped as a multi-tenant gateway's: n/10 hosts
(tN.example.com), ten path prefixes each (/svc0/ .. /svc9/), every route
to one nginx backend; the request matches the last route (a linear scan's
worst case). Side by side, the same work:

  tollgate  n routes (match: host + path_prefix), 1 worker
  nginx     n/10 server blocks (server_name), ten `location /svcK/` each
  haproxy   one map of n lines "host/svcK/ -> backend", looked up with
            base,map_beg (HAProxy's prefix tree)

For each n: the proxy's CPU per request under wrk (utime + stime over the
run / requests; medians of --rounds, sizes and proxies interleaved in each
round), its RSS once loaded, and for tollgate `tollgate -t` and a reload
(POST /-/reload) of the file. One CPU each: the proxy on CPU 0, wrk and
the backend on CPU 1."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402



def write_tollgate(d, n, port, admin, bport):
    path = os.path.join(d, f"tollgate-{n}.yaml")
    with open(path, "w") as f:
        f.write(f"workers: 1\nadmin: {{ listen: 127.0.0.1:{admin} }}\n"
                f"listeners: [{{ name: bench, listen: '127.0.0.1:{port}' }}]\n"
                f"clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'], pool_size: 256 }}]\nroutes:\n")
        for i in range(n):
            f.write(f"  - {{ name: r{i}, cluster: backend, match: {{ host: t{i // 10}.example.com, "
                    f"path_prefix: /svc{i % 10}/ }} }}\n")
    return path


def write_nginx(d, n, port, bport):
    blocks = []
    for h in range((n + 9) // 10):
        locs = "".join(f"    location /svc{k}/ {{ proxy_pass http://be; }}\n" for k in range(min(10, n - 10 * h)))
        blocks.append(f"  server {{ listen 127.0.0.1:{port}; server_name t{h}.example.com;\n{locs}  }}\n")
    body = (f"upstream be {{ server 127.0.0.1:{bport}; keepalive 256; }}\n"
            f"  proxy_http_version 1.1; proxy_set_header Connection \"\";\n"
            f"  server_names_hash_max_size 262144; server_names_hash_bucket_size 128;\n"
            f"  server {{ listen 127.0.0.1:{port} default_server reuseport backlog=4096; return 404; }}\n"
            + "".join(blocks))
    return run.nginx_conf(d, port, body)


def write_haproxy(d, n, port, bport):
    mpath = os.path.join(d, f"routes-{n}.map")
    with open(mpath, "w") as f:
        for i in range(n):
            f.write(f"t{i // 10}.example.com/svc{i % 10}/ be\n")
    path = os.path.join(d, f"haproxy-{n}.cfg")
    with open(path, "w") as f:
        f.write(run.haproxy_head() + f"""frontend fe
  bind 127.0.0.1:{port}
  use_backend %[base,map_beg({mpath})]
backend be
  server s1 127.0.0.1:{bport} pool-max-conn 256
""")
    return path


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,1000,10000,100000")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--proxies", default="tollgate,nginx,haproxy")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    proxies = args.proxies.split(",")
    d = tempfile.mkdtemp(prefix="tg-bench-routes-")
    backend, bport = run.start_backend(d)
    procs, ports, extra = {}, {}, {}
    try:
        for n in sizes:
            for name in proxies:
                port = run.free_port()
                if name == "tollgate":
                    admin = run.free_port()
                    cfg = write_tollgate(d, n, port, admin, bport)
                    check = timed(lambda: subprocess.run([run.TOLLGATE, "-t", "-c", cfg], check=True,
                                                         capture_output=True))
                    p = run.start([run.TOLLGATE, "-c", cfg], run.PROXY_CPU)
                    run.wait_port(port, timeout=60)
                    run.wait_port(admin, timeout=60)
                    reloads = []
                    for _ in range(3):
                        req = urllib.request.Request(f"http://127.0.0.1:{admin}/-/reload", method="POST",
                                                     headers={"X-Tollgate-Admin": "1"})
                        reloads.append(timed(lambda: urllib.request.urlopen(req, timeout=120).read()))
                    extra[n] = {"check": check, "reload": statistics.median(reloads)}
                elif name == "nginx":
                    p = run.start(["nginx", "-c", write_nginx(d, n, port, bport)], run.PROXY_CPU)
                    run.wait_port(port, timeout=60)
                else:
                    p = run.start(["haproxy", "-f", write_haproxy(d, n, port, bport)], run.PROXY_CPU)
                    run.wait_port(port, timeout=60)
                procs[(name, n)], ports[(name, n)] = p, port
        results = {k: [] for k in procs}
        for _ in range(args.rounds):
            for n in sizes:
                host, path = f"t{(n - 1) // 10}.example.com", f"/svc{(n - 1) % 10}/items/42"
                for name in proxies:
                    p, port = procs[(name, n)], ports[(name, n)]
                    pids = [p.pid] + run.children(p.pid)
                    url = f"http://127.0.0.1:{port}{path}"
                    hdr = ["-H", f"Host: {host}"]
                    run.wrk_url(url, args.connections, 1, hdr)  # warm-up
                    c0 = run.cpu_ticks(pids)
                    rps, p99, total, bad, sockerr = run.wrk_url(url, args.connections, args.duration, hdr)
                    c1 = run.cpu_ticks(pids)
                    if bad or total == 0:
                        raise SystemExit(f"{name} {n}: {bad} non-2xx answers {sockerr}")
                    cpu = (c1 - c0) / run.CLK * 1e6 / total
                    results[(name, n)].append({"rps": rps, "cpu": cpu, "rss": run.rss_kib(pids)})
                    print(f"{name:9s} {n:7d} routes {rps:9.0f} req/s  cpu {cpu:6.2f} us/req", flush=True)
    finally:
        for p in procs.values():
            run.stop(p)
        run.stop(backend)
    med = {k: {f: statistics.median(r[f] for r in rs) for f in ("rps", "cpu", "rss")} for k, rs in results.items()}
    print()
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, medians of {args.rounds} rounds; each proxy (1 worker) "
          f"on CPU {run.PROXY_CPU}, wrk + nginx backend on CPU {run.LOAD_CPU}; the request matches the last route.")
    print()
    cols = " | ".join(f"{p} µs/req | vs {sizes[0]} routes" for p in proxies)
    print(f"| routes | {cols} | tollgate RSS MiB | tollgate -t s | tollgate reload s |")
    print("|---:|" + "---:|" * (2 * len(proxies) + 3))
    for n in sizes:
        row = []
        for name in proxies:
            m, first = med[(name, n)], med[(name, sizes[0])]
            row += [f"{m['cpu']:.2f}", f"{m['cpu'] / first['cpu']:.2f}"]
        t = extra.get(n, {})
        tg = med.get(("tollgate", n), {"rss": 0})
        print(f"| {n} | " + " | ".join(row) + f" | {tg['rss'] / 1024:.1f} | {t.get('check', 0):.2f} | "
              f"{t.get('reload', 0):.2f} |")
    print()
    print("| routes | " + " | ".join(f"{p} RSS MiB" for p in proxies) + " |")
    print("|---:|" + "---:|" * len(proxies))
    for n in sizes:
        print(f"| {n} | " + " | ".join(f"{med[(p, n)]['rss'] / 1024:.1f}" for p in proxies) + " |")


if __name__ == "__main__":
    main()
