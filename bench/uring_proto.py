"""The io_uring prototype beside the same forwarder on epoll, and tollgate
itself, in one run (bench/run_uring_proto.sh; bench/RESULTS.md "io_uring:
measured first"). The prototype's two modes share every line but the I/O
layer, so their ratio is what io_uring would save on this machine."""
import argparse
import os
import sys
import tempfile
import shutil
import time

import run  # bench/run.py: start, stop, measure, nginx_conf, ...


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--proto", default=os.path.join(run.ROOT, "build-release", "uring_proto"))
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-uring-")
    procs, samples = [], {}
    try:
        backend, bport = run.start_backend(d)
        procs.append(backend)
        targets = []
        for mode in ("epoll", "uring", "uring-plain"):
            port = run.free_port()
            argv = [args.proto, mode.split("-")[0], str(port), str(bport)]
            if mode == "uring-plain":
                argv = ["env", "URING_PLAIN=1"] + argv
            targets.append((f"proto-{mode}", port, argv))
        tport = run.free_port()
        with open(os.path.join(d, "tollgate.yaml"), "w") as f:
            f.write(f"""workers: 1
listeners: [{{ name: bench, listen: '127.0.0.1:{tport}' }}]
routes: [{{ name: all, cluster: backend }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'], pool_size: 256 }}]
""")
        targets.append(("tollgate", tport, [run.TOLLGATE, "-c", os.path.join(d, "tollgate.yaml"), "-l", "warn"]))
        running = []
        for name, port, argv in targets:
            p = run.start(argv, run.PROXY_CPU)
            procs.append(p)
            run.wait_port(port)
            running.append((name, port, p))
            samples[name] = []
        time.sleep(0.3)
        for _ in range(args.rounds):
            for name, port, p in running:
                samples[name].append(run.measure(name, port, lambda p=p: [p.pid], args))
    finally:
        for p in procs:
            run.stop(p)
        shutil.rmtree(d, ignore_errors=True)
    med = {}
    for name, rs in samples.items():
        pick = lambda k: sorted(r[k] for r in rs)[len(rs) // 2]
        med[name] = {"rps": pick("rps"), "p99": pick("p99"), "cpu": pick("cpu"), "bad": sum(r["bad"] for r in rs)}
    lines = [f"HTTP/1.1 keep-alive, wrk -t1 -c{args.connections} -d{args.duration}s, median of {args.rounds} "
             f"alternating rounds; proxy on CPU {run.PROXY_CPU}, wrk + nginx backend on CPU {run.LOAD_CPU}.", "",
             "| target | req/s | p99 ms | proxy CPU us/req | non-2xx |", "|---|---:|---:|---:|---:|"]
    for name, m in med.items():
        lines.append(f"| {name} | {m['rps']:.0f} | {m['p99']:.2f} | {m['cpu']:.2f} | {m['bad']} |")
    e, u = med["proto-epoll"], med["proto-uring"]
    lines += ["", f"io_uring vs epoll (same forwarder): CPU/req {u['cpu'] / e['cpu']:.2f}x, "
                  f"req/s {u['rps'] / e['rps']:.2f}x, p99 {u['p99'] / e['p99']:.2f}x "
                  f"(the decision threshold: CPU/req <= 0.90x)."]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
