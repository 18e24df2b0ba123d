"""Where a request's cost goes, after warm-up, in the Release binary with
one worker: HTTP/1.1 keep-alive (wrk, 50 connections) and h2c streams
(h2load, 4 connections x 32 streams) to the nginx backend. Per request:
user and kernel CPU (/proc/PID/stat), system calls (strace -c, attached
for a separate run: its overhead does not change the counts), and heap
allocations (tests/integration/apps/alloc_count.c, an LD_PRELOAD
counter: tollgate's and its libraries' together), and bytes copied in user space (memcpy and
memmove through the C library, counted by the same library).
`python3 bench/profile.py`; with `--haproxy`, HAProxy (one thread, the
same backend and loads, h2 on its frontend) is measured the same way
beside it (CPU and system calls; its allocations are not counted), which
is where RESULTS.md's side-by-side user/kernel and syscall figures come
from. `--h2c-load 16x32` sets the h2c shape (connections x streams)."""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def count(pid, path):
    os.kill(pid, 28)  # SIGWINCH: the library writes its count
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:  # "ALLOCATIONS BYTES_COPIED"
                os.unlink(path)
                return tuple(int(x) for x in text.split())
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise RuntimeError("no count")


def cpu(pid):
    """(user, system) clock ticks of the process, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def requests_done(out):
    m = re.search(r"(\d+) requests in", out) or re.search(r"requests: (\d+) total", out)
    return int(m.group(1))


def syscalls(path):
    """strace -c's table as {name: calls}."""
    out = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            out[f[-1]] = int(f[3])
    return out


def profile(pid, loads, requests, d, counted=None):
    """Per-request figures for one running proxy: [(name, n, allocations,
    bytes copied, user us, kernel us, {syscall: calls}, strace requests)]."""
    rows = []
    for name, load in loads:
        subprocess.run(["taskset", "-c", run.LOAD_CPU] + load(requests // 4), capture_output=True,
                       timeout=300)  # warm-up: pools, buffers, caches
        c0, t0 = (count(pid, counted) if counted else (0, 0)), cpu(pid)
        n = requests_done(subprocess.run(["taskset", "-c", run.LOAD_CPU] + load(requests),
                                         capture_output=True, text=True, timeout=300).stdout)
        c1, t1 = (count(pid, counted) if counted else (0, 0)), cpu(pid)
        user = (t1[0] - t0[0]) / run.CLK * 1e6 / n
        kern = (t1[1] - t0[1]) / run.CLK * 1e6 / n
        # system calls: strace attached for another run of the same load
        st = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", os.path.join(d, "strace.txt")],
                              stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        ns = requests_done(subprocess.run(["taskset", "-c", run.LOAD_CPU] + load(requests // 10),
                                          capture_output=True, text=True, timeout=300).stdout)
        st.send_signal(2)
        st.wait(30)
        calls = syscalls(os.path.join(d, "strace.txt"))
        rows.append((name, n, c1[0] - c0[0], c1[1] - c0[1], user, kern, calls, ns))
        print(f"{name}: {(c1[0] - c0[0]) / n:.3f} allocations, {(c1[1] - c0[1]) / n:.0f} bytes copied, "
              f"{user:.2f} us user + {kern:.2f} us kernel, {sum(calls.values()) / ns:.2f} syscalls per request",
              flush=True)
    return rows


def loads_for(port, h2c):
    c, m = h2c.split("x")
    return (("HTTP/1.1 keep-alive (wrk -c50)",
             lambda n: ["wrk", "-t1", "-c50", "-d3s", f"http://127.0.0.1:{port}/"]),
            (f"h2c streams (h2load -c{c} -m{m})",
             lambda n: ["h2load", "-t1", f"-c{c}", f"-m{m}", "-n", str(n), f"http://127.0.0.1:{port}/"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--haproxy", action="store_true", help="also HAProxy, the same way, beside it")
    ap.add_argument("--h2c-load", default="4x32", help="h2c connections x streams")
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-bench-allocs-")
    so = os.path.join(d, "alloc_count.so")
    src = os.path.join(run.ROOT, "tests", "integration", "apps", "alloc_count.c")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so, src, "-ldl"], check=True)
    procs = []
    table = []
    try:
        backend, bport = run.start_backend(d)
        procs.append(backend)
        port = run.free_port()
        cfg = os.path.join(d, "tollgate.yaml")
        with open(cfg, "w") as f:
            f.write(f"""workers: 1
listeners: [{{ name: bench, listen: '127.0.0.1:{port}' }}]
routes: [{{ name: all, cluster: backend }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'] }}]
""")
        cfile = os.path.join(d, "count")
        env = dict(os.environ, LD_PRELOAD=so, ALLOC_COUNT_FILE=cfile)
        p = subprocess.Popen(["taskset", "-c", run.PROXY_CPU, run.TOLLGATE, "-c", cfg, "-l", "warn"], env=env)
        procs.append(p)
        run.wait_port(port)
        table += [("tollgate",) + r for r in profile(p.pid, loads_for(port, args.h2c_load), args.requests, d, cfile)]
        if args.haproxy:
            hport, hport1 = run.free_port(), run.free_port()
            hcfg = os.path.join(d, "haproxy.cfg")
            with open(hcfg, "w") as f:
                f.write(run.haproxy_head() + f"""frontend fe
  bind 127.0.0.1:{hport} proto h2
  bind 127.0.0.1:{hport1}
  default_backend be
backend be
  server s1 127.0.0.1:{bport}
""")
            h = subprocess.Popen(["taskset", "-c", run.PROXY_CPU, "haproxy", "-db", "-f", hcfg])
            procs.append(h)
            run.wait_port(hport)
            run.wait_port(hport1)
            h1, h2 = loads_for(hport1, args.h2c_load)[0], loads_for(hport, args.h2c_load)[1]
            table += [("haproxy",) + r for r in profile(h.pid, (h1, h2), args.requests, d)]
    finally:
        for p in procs:
            run.stop(p)
    print("\n| proxy | workload | CPU µs/req user | kernel | syscalls/req | of which | heap allocations/req "
          "| bytes copied/req |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    for who, name, n, a, b, user, kern, calls, ns in table:
        top = ", ".join(f"{k} {v / ns:.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:4])
        counted = who == "tollgate"
        print(f"| {who} | {name} | {user:.2f} | {kern:.2f} | {sum(calls.values()) / ns:.2f} | {top} | "
              f"{f'{a / n:.2f}' if counted else '-'} | {f'{b / n:.0f}' if counted else '-'} |")


if __name__ == "__main__":
    main()
