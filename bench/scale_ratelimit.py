"""How the cost of rate limiting grows with the number of keys
(bench/RESULTS.md, "Scaling: rate-limit keys"). One route with
`rate_limit: { key: 'header:x-key', ... }` (limits far above the load, so
nothing is refused and every request is counted), max_keys above the
largest size. The table is filled key by key (x-key: 0, 1, 2, ...) up to
each size in turn; at each size the gateway's RSS is read and its CPU per
request measured with keys drawn uniformly from those in the table.
tollgate (1 worker) on CPU 0; wrk and the nginx backend on CPU 1."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

FILL = """
local next_key = tonumber(os.getenv("TG_FROM"))
local last = tonumber(os.getenv("TG_TO"))
request = function()
  local k = next_key
  if next_key < last then next_key = next_key + 1 else k = math.random(0, last) end
  return wrk.format(nil, nil, { ["x-key"] = tostring(k) })
end
"""

DRAW = """
local n = tonumber(os.getenv("TG_N"))
math.randomseed(42)
request = function()
  return wrk.format(nil, nil, { ["x-key"] = tostring(math.random(0, n - 1)) })
end
"""



def wrk_script(url, script, seconds, env, connections=50):
    cmd = ["taskset", "-c", run.LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, env={**os.environ, **env}).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, int(bad.group(1)) if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,1000,100000,1000000,10000000")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    d = tempfile.mkdtemp(prefix="tg-bench-rl-")
    fill, draw = os.path.join(d, "fill.lua"), os.path.join(d, "draw.lua")
    with open(fill, "w") as f:
        f.write(FILL)
    with open(draw, "w") as f:
        f.write(DRAW)
    backend, bport = run.start_backend(d)
    port = run.free_port()
    cfg = os.path.join(d, "tollgate.yaml")
    with open(cfg, "w") as f:
        f.write(f"""workers: 1
listeners: [{{ name: bench, listen: '127.0.0.1:{port}' }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'], pool_size: 256 }}]
routes:
  - name: all
    cluster: backend
    filters:
      - rate_limit: {{ key: 'header:x-key', limit: 1000000000, window: 10m, max_keys: {max(sizes) * 2} }}
""")
    gw = run.start([run.TOLLGATE, "-c", cfg], run.PROXY_CPU)
    url = f"http://127.0.0.1:{port}/"
    rows = []
    try:
        run.wait_port(port)
        run.wrk_url(url, 10, 1)
        base_rss = run.rss_kib([gw.pid])
        have = 0
        for n in sizes:
            while have < n:  # fill keys have .. n-1, in order
                rps, total, bad = wrk_script(url, fill, 10, {"TG_FROM": str(have), "TG_TO": str(n - 1)})
                if bad:
                    raise SystemExit(f"fill: {bad} non-2xx answers")
                have = min(n, have + total)
            rss = run.rss_kib([gw.pid])
            cpus, rpss = [], []
            for _ in range(args.rounds):
                c0 = run.cpu_ticks([gw.pid])
                rps, total, bad = wrk_script(url, draw, args.duration, {"TG_N": str(n)})
                if bad or total == 0:
                    raise SystemExit(f"{n}: {bad} non-2xx answers")
                cpus.append((run.cpu_ticks([gw.pid]) - c0) / run.CLK * 1e6 / total)
                rpss.append(rps)
                print(f"{n:9d} keys {rps:9.0f} req/s  cpu {cpus[-1]:6.2f} us/req  rss {rss / 1024:.1f} MiB", flush=True)
            rows.append((n, statistics.median(rpss), statistics.median(cpus), rss))
    finally:
        run.stop(gw)
        run.stop(backend)
    print()
    print(f"rate_limit on header:x-key, the table filled to each size, then wrk -t1 -c50 -d{args.duration}s with keys "
          f"drawn uniformly from those in the table, medians of {args.rounds} rounds; tollgate (1 worker) on CPU "
          f"{run.PROXY_CPU}, wrk + nginx on CPU {run.LOAD_CPU}.")
    print()
    print("| keys | req/s | CPU µs/req | vs 1 key | RSS MiB | bytes per key |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, rps, cpu, rss in rows:
        per = f"{(rss - base_rss) * 1024 / n:.0f}" if n >= 1000 else "—"
        print(f"| {n} | {rps:.0f} | {cpu:.2f} | {cpu / rows[0][2]:.2f} | {rss / 1024:.1f} | {per} |")

if __name__ == "__main__":
    main()
