"""What mirroring costs the primary (bench/RESULTS.md, "Request
mirroring"): one tollgate (one worker, CPU 0) in front of an nginx primary
(CPU 1), every request mirrored (percent: 100) to

  none      no mirror filter (the baseline)
  fast      a second nginx (as fast as the primary)
  slow      a server that answers after --delay ms (asyncio, CPU 1): far
            slower than the primary, so the copies pile up to max_concurrent
  dead      a port nobody listens on: every copy's connection refused
  down      the same, with health checks on the mirror cluster: it is
            marked down and copies fail without a connection attempt

The load is open-loop at a fixed rate well below what one worker can do
(h2load --h1 --rps, 10 connections, --rate requests a second in all, on
CPU 1), so latency shows waiting, not a saturated CPU: a closed loop at
full speed would charge the mirror's extra work (each request makes two)
to the primary's latency. Reported: the primary's p50, p99 and p99.9
(from h2load's per-request log), the gateway's CPU per request, and
copies sent / dropped; medians of --rounds. The claim checked: the
primary's latency with a slow or dead mirror stays within the noise of
no mirror."""
import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

SLOW = """
import asyncio, sys
DELAY = float(sys.argv[2]) / 1000
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\\r\\n\\r\\n")
            await asyncio.sleep(DELAY)
            w.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 3\\r\\n\\r\\nok\\n")
            await w.drain()
    except Exception:
        w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    async with s:
        await s.serve_forever()
asyncio.run(main())
"""


def load(url, rate, seconds, log):
    """h2load at a fixed rate; (answers, p50, p99, p99.9 in ms, non-2xx)."""
    if os.path.exists(log):
        os.unlink(log)  # h2load appends
    cmd = ["taskset", "-c", run.LOAD_CPU, "h2load", "--h1", "-c", "10", "--rps", str(max(1, rate // 10)),
           "-D", str(seconds), "--log-file", log, url]
    subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    lat, bad = [], 0
    with open(log) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                lat.append(int(parts[2]) / 1000.0)
                bad += not parts[1].startswith("2")
    lat.sort()

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0.0
    return len(lat), pct(0.5), pct(0.99), pct(0.999), bad



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rate", type=int, default=4000, help="requests a second, all connections together")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--delay", type=float, default=10.0, help="the slow mirror's delay, ms")
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-bench-mirror-")
    primary, pport = run.start_backend(d)
    fast, fport = run.start_backend(d)
    sport, dead, admin = run.free_port(), run.free_port(), run.free_port()
    slow_py = os.path.join(d, "slow.py")
    with open(slow_py, "w") as f:
        f.write(SLOW)
    slow = run.start(["/usr/bin/python3", slow_py, str(sport), str(args.delay)], run.LOAD_CPU)
    run.wait_port(sport)
    port = run.free_port()
    cfg = os.path.join(d, "tollgate.yaml")
    with open(cfg, "w") as f:
        f.write(f"""workers: 1
admin: {{ listen: 127.0.0.1:{admin} }}
listeners: [{{ name: bench, listen: '127.0.0.1:{port}' }}]
clusters:
  - {{ name: primary, endpoints: ['127.0.0.1:{pport}'], pool_size: 256 }}
  - {{ name: fast, endpoints: ['127.0.0.1:{fport}'], pool_size: 256 }}
  - {{ name: slow, endpoints: ['127.0.0.1:{sport}'], pool_size: 256 }}
  - {{ name: dead, endpoints: ['127.0.0.1:{dead}'] }}
  - {{ name: down, endpoints: ['127.0.0.1:{dead}'], health_check: {{ path: /, interval: 1s }} }}
routes:
  - {{ name: fast, match: {{ path_prefix: /fast }}, cluster: primary, filters: [{{ mirror: {{ cluster: fast }} }}] }}
  - {{ name: slow, match: {{ path_prefix: /slow }}, cluster: primary, filters: [{{ mirror: {{ cluster: slow }} }}] }}
  - {{ name: dead, match: {{ path_prefix: /dead }}, cluster: primary, filters: [{{ mirror: {{ cluster: dead }} }}] }}
  - {{ name: down, match: {{ path_prefix: /down }}, cluster: primary, filters: [{{ mirror: {{ cluster: down }} }}] }}
  - {{ name: none, cluster: primary }}
""")
    gw = run.start([run.TOLLGATE, "-c", cfg], run.PROXY_CPU)
    run.wait_port(port)
    cases = ["none", "fast", "slow", "dead", "down"]
    results = {c: [] for c in cases}
    try:
        for _ in range(args.rounds):
            for name in cases:
                url = f"http://127.0.0.1:{port}/{name}"
                log = os.path.join(d, f"{name}.log")
                load(url, args.rate, 1, log)
                c0 = run.cpu_ticks([gw.pid])
                total, p50, p99, p999, bad = load(url, args.rate, args.duration, log)
                c1 = run.cpu_ticks([gw.pid])
                if bad or total == 0:
                    raise SystemExit(f"{name}: {bad} non-2xx answers of {total}")
                results[name].append({"p50": p50, "p99": p99, "p999": p999, "cpu": (c1 - c0) / run.CLK * 1e6 / total})
                print(f"{name:5s} {total:7d} answers  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  p99.9 {p999:6.3f} ms  "
                      f"cpu {results[name][-1]['cpu']:6.2f} us/req", flush=True)
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    finally:
        for p in (gw, primary, fast, slow):
            run.stop(p)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("p50", "p99", "p999", "cpu")}
           for n, rs in results.items()}

    def copies(route, result):
        m = re.search(rf'tollgate_mirror_requests_total{{route="{route}",mirror="{route}",result="{result}"}} (\d+)',
                      metrics)
        return int(m.group(1)) if m else 0
    print()
    print(f"h2load --h1 -c10 at {args.rate} req/s for {args.duration}s, medians of {args.rounds} rounds; tollgate "
          f"(1 worker) on CPU {run.PROXY_CPU}, h2load + the backends on CPU {run.LOAD_CPU}; slow mirror: "
          f"{args.delay:g} ms a request.")
    print()
    print("| mirror | p50 ms | p99 ms | p99.9 ms | p99 vs none | CPU µs/req | CPU vs none | copies sent | "
          "dropped (max_concurrent) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in cases:
        m = med[name]
        sent = copies(name, "sent") if name != "none" else 0
        dropped = copies(name, "dropped_concurrency") if name != "none" else 0
        print(f"| {name} | {m['p50']:.3f} | {m['p99']:.3f} | {m['p999']:.3f} | {m['p99'] / med['none']['p99']:.2f} | "
              f"{m['cpu']:.2f} | {m['cpu'] / med['none']['cpu']:.2f} | {sent} | {dropped} |")


if __name__ == "__main__":
    main()
