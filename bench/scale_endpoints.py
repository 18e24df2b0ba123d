"""How the cost grows with the number of endpoints in a cluster
(bench/RESULTS.md, "Scaling: endpoints"). One cluster of n endpoints:
four nginx ports that answer, the rest addresses on the loopback where
nothing listens (refused at once), all health-checked every 30 s, so once
the checks have gone round the requests go to the four that answer.

For each n: the gateway's CPU per request under wrk (the health checks'
own CPU, measured while idle, taken out), the CPU the health checks cost
per endpoint and second, the RSS, and `tollgate -t`. One worker each on
CPU 0, all sizes running at once with their rounds interleaved; wrk and
nginx on CPU 1."""
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

LIVE = 4
INTERVAL_S = 30



def write_config(d, n, port, live_ports):
    path = os.path.join(d, f"tollgate-{n}.yaml")
    with open(path, "w") as f:
        f.write(f"workers: 1\nlisteners: [{{ name: bench, listen: '127.0.0.1:{port}' }}]\n"
                f"routes: [{{ name: all, cluster: big }}]\nclusters:\n  - name: big\n"
                f"    health_check: {{ path: /, interval: {INTERVAL_S}s, timeout: 1s, unhealthy_threshold: 1 }}\n"
                f"    endpoints:\n")
        spread = max(1, n // LIVE)
        live = iter(live_ports)
        for i in range(n):
            if i % spread == 0 and i // spread < LIVE:
                f.write(f"      - '127.0.0.1:{next(live)}'\n")
            else:  # unique, refused at once
                f.write(f"      - '127.3.{(i // 250) % 250}.{i % 250 + 1}:{9 + i // 62500}'\n")
    return path


def all_ok(url, tries=20):
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status != 200:
                    return False
        except Exception:
            return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000,10000,100000")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-bench-endpoints-")
    live_ports = [run.free_port() for _ in range(LIVE)]
    listens = "".join(f"    listen 127.0.0.1:{p} backlog=4096;\n" for p in live_ports)
    backend = run.start(["nginx", "-c", run.nginx_conf(d, live_ports[0], f"""
  server {{
{listens}    location / {{ return 200 "ok\\n"; }} }}""")], run.LOAD_CPU)
    for p in live_ports:
        run.wait_port(p)
    sizes = [int(x) for x in args.sizes.split(",")]
    gws, ports, checks = {}, {}, {}
    try:
        for n in sizes:  # every gateway up at once: sizes interleaved in each round
            ports[n] = run.free_port()
            cfg = write_config(d, n, ports[n], live_ports)
            t0 = time.monotonic()
            subprocess.run([run.TOLLGATE, "-t", "-c", cfg], check=True, capture_output=True)
            checks[n] = time.monotonic() - t0
            gws[n] = run.start([run.TOLLGATE, "-c", cfg], run.PROXY_CPU)
            run.wait_port(ports[n], timeout=120)
        deadline = time.monotonic() + 3 * INTERVAL_S + 60
        for n in sizes:
            url = f"http://127.0.0.1:{ports[n]}/"
            while not all_ok(url) and time.monotonic() < deadline:
                time.sleep(1)  # until the checks have gone round
            if not all_ok(url):
                raise SystemExit(f"{n}: requests still fail after the health checks went round")
        c0 = {n: run.cpu_ticks([gws[n].pid]) for n in sizes}
        t0 = time.monotonic()
        time.sleep(3 * INTERVAL_S)  # idle: what the health checks cost
        idle = {n: (run.cpu_ticks([gws[n].pid]) - c0[n]) / run.CLK / (time.monotonic() - t0) for n in sizes}
        cpus, rpss = {n: [] for n in sizes}, {n: [] for n in sizes}
        for _ in range(args.rounds):
            for n in sizes:
                url, gw = f"http://127.0.0.1:{ports[n]}/", gws[n]
                run.wrk_url(url, args.connections, 1)
                c, t = run.cpu_ticks([gw.pid]), time.monotonic()
                rps, p99, total, bad, sockerr = run.wrk_url(url, args.connections, args.duration)
                spent = (run.cpu_ticks([gw.pid]) - c) / run.CLK - idle[n] * (time.monotonic() - t)
                if bad or total == 0:
                    raise SystemExit(f"{n}: {bad} non-2xx answers {sockerr}")
                cpus[n].append(spent * 1e6 / total)
                rpss[n].append(rps)
                print(f"{n:7d} endpoints {rps:9.0f} req/s  cpu {cpus[n][-1]:6.2f} us/req", flush=True)
        rows = [(n, statistics.median(rpss[n]), statistics.median(cpus[n]), idle[n], run.rss_kib([gws[n].pid]), checks[n])
                for n in sizes]
    finally:
        for gw in gws.values():
            run.stop(gw)
        run.stop(backend)
    print()
    print(f"One cluster, {LIVE} endpoints answering, the rest refused and failed by health checks every {INTERVAL_S} s; "
          f"wrk -t1 -c{args.connections} -d{args.duration}s, medians of {args.rounds} rounds; tollgate (1 worker) "
          f"on CPU {run.PROXY_CPU}, wrk + nginx on CPU {run.LOAD_CPU}.")
    print()
    print("| endpoints | req/s | CPU µs/req | vs first | health checks: CPU µs per endpoint per s | RSS MiB | "
          "RSS KiB per endpoint | tollgate -t s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    first = rows[0]
    for n, rps, cpu, idle, rss, check in rows:
        per_ep = (rss - first[4]) / (n - first[0]) if n != first[0] else 0
        print(f"| {n} | {rps:.0f} | {cpu:.2f} | {cpu / first[2]:.2f} | {idle * 1e6 / n:.2f} | {rss / 1024:.1f} | "
              f"{per_ep:.2f} | {check:.2f} |")


if __name__ == "__main__":
    main()
