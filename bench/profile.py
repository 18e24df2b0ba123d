"""Where a request's cost goes, after warm-up, in the Release binary with
one worker: HTTP/1.1 keep-alive (wrk, 50 connections) and h2c streams
(h2load, 4 connections x 32 streams) to the nginx backend. Per request:
user and kernel CPU (/proc/PID/stat), system calls (strace -c, attached
for a separate run: its overhead does not change the counts), and heap
allocations (tests/integration/apps/alloc_count.c, an LD_PRELOAD
counter: tollgate's and its libraries' together), and bytes copied in user space (memcpy and
memmove through the C library, counted by the same library).
`python3 bench/profile.py`."""
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200000)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-bench-allocs-")
    so = os.path.join(d, "alloc_count.so")
    src = os.path.join(run.ROOT, "tests", "integration", "apps", "alloc_count.c")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so, src, "-ldl"], check=True)
    procs = []
    rows = []
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
        for name, load in (
                ("HTTP/1.1 keep-alive (wrk -c50)",
                 lambda n: ["wrk", "-t1", "-c50", "-d3s", f"http://127.0.0.1:{port}/"]),
                ("h2c streams (h2load -c4 -m32)",
                 lambda n: ["h2load", "-t1", "-c4", "-m32", "-n", str(n), f"http://127.0.0.1:{port}/"])):
            subprocess.run(["taskset", "-c", run.LOAD_CPU] + load(args.requests // 4), capture_output=True,
                           timeout=300)  # warm-up: pools, buffers, caches
            c0, t0 = count(p.pid, cfile), cpu(p.pid)
            n = requests_done(subprocess.run(["taskset", "-c", run.LOAD_CPU] + load(args.requests),
                                             capture_output=True, text=True, timeout=300).stdout)
            c1, t1 = count(p.pid, cfile), cpu(p.pid)
            user = (t1[0] - t0[0]) / run.CLK * 1e6 / n
            kern = (t1[1] - t0[1]) / run.CLK * 1e6 / n
            # system calls: strace attached for another run of the same load
            st = subprocess.Popen(["strace", "-c", "-f", "-p", str(p.pid), "-o", os.path.join(d, "strace.txt")],
                                  stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            ns = requests_done(subprocess.run(["taskset", "-c", run.LOAD_CPU] + load(args.requests // 10),
                                              capture_output=True, text=True, timeout=300).stdout)
            st.send_signal(2)
            st.wait(30)
            calls = syscalls(os.path.join(d, "strace.txt"))
            rows.append((name, n, c1[0] - c0[0], c1[1] - c0[1], user, kern, calls, ns))
            print(f"{name}: {(c1[0] - c0[0]) / n:.3f} allocations, {(c1[1] - c0[1]) / n:.0f} bytes copied, "
                  f"{user:.2f} us user + {kern:.2f} us kernel, {sum(calls.values()) / ns:.2f} syscalls per request",
                  flush=True)
    finally:
        for p in procs:
            run.stop(p)
    print("\n| workload | CPU µs/req user | kernel | syscalls/req | of which | heap allocations/req "
          "| bytes copied/req |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for name, n, a, b, user, kern, calls, ns in rows:
        top = ", ".join(f"{k} {v / ns:.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:4])
        print(f"| {name} | {user:.2f} | {kern:.2f} | {sum(calls.values()) / ns:.2f} | {top} | {a / n:.2f} "
              f"| {b / n:.0f} |")


if __name__ == "__main__":
    main()
