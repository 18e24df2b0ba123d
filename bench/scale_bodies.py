"""How the cost grows with the size of a response body (bench/RESULTS.md,
"Scaling: body size"). nginx serves files of each size from a temporary
directory; tollgate, nginx (proxy_pass) and HAProxy, one worker each on
CPU 0, proxy them to the load generator on CPU 1 — wrk with 4
connections for the small sizes, one curl at a time for the large ones,
each size for at least --seconds. Reported per proxy and size: GB/s
through it and the proxy's CPU-seconds per GiB moved (utime + stime),
medians of --rounds with proxies interleaved."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

SIZES = {"1KiB": 1 << 10, "64KiB": 64 << 10, "1MiB": 1 << 20, "64MiB": 64 << 20, "1GiB": 1 << 30}
GIB = 1 << 30


def make_files(d, names):
    root = os.path.join(d, "files")
    os.makedirs(root, exist_ok=True)
    for path in (d, root):  # nginx's workers run as another user
        os.chmod(path, 0o755)
    block = os.urandom(1 << 20)
    for name in names:
        size = SIZES[name]
        with open(os.path.join(root, name), "wb") as f:
            left = size
            while left > 0:
                n = min(left, len(block))
                f.write(block[:n])
                left -= n
        os.chmod(os.path.join(root, name), 0o644)
    return root


def start_proxies(d, bport, names):
    procs, ports = {}, {}
    for name in names:
        port = run.free_port()
        if name == "tollgate":
            cfg = os.path.join(d, "tollgate.yaml")
            with open(cfg, "w") as f:
                f.write(f"workers: 1\nlisteners: [{{ name: l, listen: '127.0.0.1:{port}' }}]\n"
                        f"routes: [{{ name: all, cluster: backend, timeout: 10m }}]\n"
                        f"clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'] }}]\n")
            p = run.start([run.TOLLGATE, "-c", cfg, "-l", "warn"], run.PROXY_CPU)
        elif name == "nginx":
            p = run.start(["nginx", "-c", run.nginx_conf(d, port, f"""
  upstream be {{ server 127.0.0.1:{bport}; keepalive 16; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_buffering off; proxy_read_timeout 600s; }} }}""")], run.PROXY_CPU)
        else:
            cfg = os.path.join(d, "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write(run.haproxy_head() + f"""frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  timeout server 10m
  server s1 127.0.0.1:{bport}
""")
            p = run.start(["haproxy", "-f", cfg], run.PROXY_CPU)
        run.wait_port(port)
        procs[name], ports[name] = p, port
    return procs, ports


def moved(port, name, seconds):
    """Transfers of /name for at least `seconds`: (bytes, wall seconds)."""
    url = f"http://127.0.0.1:{port}/{name}"
    size = SIZES[name]
    if size <= (1 << 20):
        cmd = ["taskset", "-c", run.LOAD_CPU, "wrk", "-t1", "-c4", f"-d{seconds}s", url]
        t0 = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
        wall = time.monotonic() - t0
        total = int(re.search(r"(\d+) requests in", out).group(1))
        if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
            raise SystemExit(f"{name} via {port}: non-2xx answers")
        return total * size, wall
    got, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds or got == 0:
        r = subprocess.run(["taskset", "-c", run.LOAD_CPU, "curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
                            url], capture_output=True, text=True, timeout=600)
        n = int(r.stdout or 0)
        if n != size:
            raise SystemExit(f"{name} via {port}: {n} bytes, not {size}: {r.stderr}")
        got += n
    return got, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--proxies", default="tollgate,nginx,haproxy")
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    names, proxies = args.sizes.split(","), args.proxies.split(",")
    d = tempfile.mkdtemp(prefix="tg-bench-bodies-")
    root = make_files(d, names)
    bport = run.free_port()
    backend = run.start(["nginx", "-c", run.nginx_conf(d, bport, f"""
  sendfile on;
  server {{ listen 127.0.0.1:{bport} reuseport backlog=4096; root {root}; }}""")], run.LOAD_CPU)
    run.wait_port(bport)
    procs, ports = start_proxies(d, bport, proxies)
    res = {}
    try:
        for _ in range(args.rounds):
            for name in names:
                for px in proxies:
                    pids = [procs[px].pid] + run.children(procs[px].pid)
                    c0 = run.cpu_ticks(pids)
                    nbytes, wall = moved(ports[px], name, args.seconds)
                    cpu = (run.cpu_ticks(pids) - c0) / run.CLK
                    res.setdefault((px, name), []).append((nbytes / wall / 1e9, cpu / (nbytes / GIB)))
                    print(f"{px:9s} {name:6s} {nbytes / wall / 1e9:7.3f} GB/s  {cpu / (nbytes / GIB):6.3f} CPU-s/GiB",
                          flush=True)
    finally:
        for p in procs.values():
            run.stop(p)
        run.stop(backend)
    print()
    print(f"One worker each on CPU {run.PROXY_CPU}; nginx serving files and the client (wrk -c4 up to 1 MiB, curl "
          f"above) on CPU {run.LOAD_CPU}; at least {args.seconds} s per size, medians of {args.rounds} rounds.")
    print()
    print("| body | " + " | ".join(f"{p} GB/s | {p} CPU-s/GiB" for p in proxies) + " |")
    print("|---|" + "---:|" * (2 * len(proxies)))
    for name in names:
        cells = []
        for px in proxies:
            rs = res[(px, name)]
            cells += [f"{statistics.median(r[0] for r in rs):.3f}", f"{statistics.median(r[1] for r in rs):.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
