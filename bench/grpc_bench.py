"""gRPC-shaped unary calls over h2c, side by side (see bench/run_grpc.sh and
bench/RESULTS.md): h2load sends POST /test.v1.Echo/Echo with
content-type application/grpc, te: trailers and a framed 5-byte message
over 4 connections x 32 streams, straight to nghttpd (the fast h2c
backend, answering with a framed message and a `grpc-status: 0` trailer,
as a gRPC server does) and through tollgate (h2c cluster), nginx
(grpc_pass) and HAProxy (proto h2 on both sides), each with one worker on
CPU 0; h2load and nghttpd share CPU 1. Reports calls/s and proxy CPU per
call, medians of alternating rounds.

h2load sees HTTP status codes only, so a gRPC failure (a missing or
non-zero grpc-status, in the trailers or a trailers-only answer) would be
invisible to it: after each target's rounds, a check pass of CHECK_CALLS
calls over one HTTP/2 connection (Python's h2) reads every call's
grpc-status, and the table's failures column counts both.

--json adds the same calls made as JSON (POST /test.v1.Echo/Json with
{"name":"world"}, content-type application/json) through the grpc_json
filter, which turns each into a gRPC call to the same backend and its
answer ({"message":"hello"}) back into JSON: the transcoding's cost beside
the native call. Its backend answer is a real EchoReply message. With
--json every target's backend is nginx serving the answers as static
files over h2c (content-type application/grpc, a grpc-status: 0 trailer):
nghttpd cannot give a file a content-type without an extension."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import (LOAD_CPU, PROXY_CPU, TOLLGATE, children, cpu_ticks, free_port, nginx_conf, start, stop,  # noqa: E402
                 wait_port)

PATH = "/test.v1.Echo/Echo"
JSON_PATH = "/test.v1.Echo/Json"
ECHO_PROTO = """syntax = "proto3";
package test.v1;
message EchoRequest { string name = 1; }
message EchoReply { string message = 1; }
service Echo { rpc Echo(EchoRequest) returns (EchoReply); rpc Json(EchoRequest) returns (EchoReply); }
"""
CHECK_CALLS = 2000


def grpc_check(port, n=CHECK_CALLS, ctype="application/grpc", window=32):
    """n unary calls over one h2c connection, `window` at a time; returns
    how many did not end with grpc-status 0 (in trailers, or in the only
    HEADERS of a trailers-only answer), or did not end at all."""
    import socket
    import h2.config
    import h2.connection
    import h2.events
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    status, data_of, sent, done, next_id = {}, {}, 0, 0, 1
    body = b"\x00\x00\x00\x00\x05world"
    try:
        while done < n:
            while sent < n and sent - done < window:
                conn.send_headers(next_id, [(":method", "POST"), (":path", PATH), (":scheme", "http"),
                                            (":authority", "bench"), ("content-type", ctype), ("te", "trailers")])
                conn.send_data(next_id, body, end_stream=True)
                status[next_id] = None
                next_id += 2
                sent += 1
            s.sendall(conn.data_to_send())
            data = s.recv(1 << 16)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    h = dict(ev.headers)
                    if "grpc-status" in h:
                        status[ev.stream_id] = h["grpc-status"]
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    data_of[ev.stream_id] = data_of.get(ev.stream_id, b"") + ev.data
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    done += 1
                    # gRPC-Web: the trailers are the body's last frame (flag 0x80)
                    web = data_of.pop(ev.stream_id, b"")
                    if status.get(ev.stream_id) is None and b"\x80" in web and b"grpc-status:0\r\n" in web:
                        status[ev.stream_id] = "0"
            s.sendall(conn.data_to_send())
    finally:
        s.close()
    return sum(1 for v in status.values() if v != "0") + (n - sent)


def targets(d, bport, compare="", web=False, json_mode=False):
    out = []
    port = free_port()
    with open(f"{d}/tollgate.yaml", "w") as f:
        f.write(f"""workers: 1
listeners: [{{ name: bench, listen: '127.0.0.1:{port}' }}]
routes: [{{ name: echo, match: {{ grpc_service: test.v1.Echo }}, cluster: backend }}]
clusters: [{{ name: backend, protocol: h2c, endpoints: ['127.0.0.1:{bport}'] }}]
""")
    out.append(("tollgate", port, [TOLLGATE, "-c", f"{d}/tollgate.yaml", "-l", "warn"]))
    if web:  # the same calls as gRPC-Web (h2), translated by the grpc_web filter
        wport = free_port()
        with open(f"{d}/tollgate-web.yaml", "w") as f:
            f.write(f"""workers: 1
listeners: [{{ name: bench, listen: '127.0.0.1:{wport}' }}]
routes: [{{ name: echo, cluster: backend, filters: [{{ grpc_web: {{}} }}] }}]
clusters: [{{ name: backend, protocol: h2c, endpoints: ['127.0.0.1:{bport}'] }}]
""")
        out.append(("tollgate+grpc_web", wport, [TOLLGATE, "-c", f"{d}/tollgate-web.yaml", "-l", "warn"]))
    if json_mode:  # the calls as JSON, transcoded by the grpc_json filter
        jport = free_port()
        with open(f"{d}/tollgate-json.yaml", "w") as f:
            f.write(f"""workers: 1
listeners: [{{ name: bench, listen: '127.0.0.1:{jport}' }}]
routes: [{{ name: echo, cluster: backend, filters: [{{ grpc_json: {{ descriptors: echo.pb }} }}] }}]
clusters: [{{ name: backend, protocol: h2c, endpoints: ['127.0.0.1:{bport}'] }}]
""")
        out.append(("tollgate+grpc_json", jport, [TOLLGATE, "-c", f"{d}/tollgate-json.yaml", "-l", "warn"]))
    if compare:  # another build (e.g. the previous commit's), beside it
        oport = free_port()
        with open(f"{d}/tollgate-before.yaml", "w") as f:
            f.write(open(f"{d}/tollgate.yaml").read().replace(f"127.0.0.1:{port}'", f"127.0.0.1:{oport}'"))
        out.append(("tollgate-before", oport, [os.path.abspath(compare), "-c", f"{d}/tollgate-before.yaml", "-l",
                                               "warn"]))
    port = free_port()
    out.append(("nginx", port, ["nginx", "-c", nginx_conf(d, port, f"""
  server {{ listen 127.0.0.1:{port} http2 backlog=4096;
    http2_max_concurrent_streams 128;
    location / {{ grpc_pass grpc://127.0.0.1:{bport}; }} }}""")]))
    port = free_port()
    with open(f"{d}/haproxy.cfg", "w") as f:
        f.write(f"""global
  nbthread 1
  maxconn 8000
defaults
  mode http
  option forwardfor
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:{port} proto h2
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:{bport} proto h2
""")
    out.append(("haproxy", port, ["haproxy", "-db", "-f", f"{d}/haproxy.cfg"]))
    return out


def json_check(port, n=200):
    """n JSON calls through grpc_json: how many did not answer 200 with
    the backend's message as JSON."""
    import json
    import urllib.request
    bad = 0
    for _ in range(n):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{JSON_PATH}", data=b'{"name":"world"}',
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                bad += r.status != 200 or json.loads(r.read()) != {"message": "hello"}
        except Exception:  # noqa: BLE001 (counted)
            bad += 1
    return bad


def load(port, n, d, ctype="application/grpc", shape=(4, 32)):
    json_call = ctype == "application/json"
    cmd = ["taskset", "-c", LOAD_CPU, "h2load", "-t1", f"-c{shape[0]}", f"-m{shape[1]}", "-n", str(n), "-d",
           f"{d}/req.json" if json_call else f"{d}/req.bin", "-H", f"content-type: {ctype}", "-H", "te: trailers",
           f"http://127.0.0.1:{port}{JSON_PATH if json_call else PATH}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    ok = re.search(r"status codes: (\d+) 2xx", out)
    return int(m.group(2)), rps, int(m.group(1)) - (int(ok.group(1)) if ok else 0)


def ctype_of(name):
    return ("application/grpc-web+proto" if name.endswith("grpc_web") else
            "application/json" if name.endswith("grpc_json") else "application/grpc")


def measure(name, port, pids, args, d):
    ctype = ctype_of(name)
    load(port, args.calls // 5, d, ctype, args.shape)  # warm-up
    c0 = cpu_ticks(pids)
    total, rps, bad = load(port, args.calls, d, ctype, args.shape)
    cpu = (cpu_ticks(pids) - c0) / os.sysconf("SC_CLK_TCK") * 1e6 / max(total, 1)
    print(f"{name:18s} {args.shape[0]}x{args.shape[1]} {rps:9.0f} calls/s  cpu {cpu:6.2f} us/call  failures={bad}",
          flush=True)
    return {"rps": rps, "cpu": cpu, "bad": bad}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare", default="", help="another tollgate binary, run beside it as tollgate-before")
    ap.add_argument("--web", action="store_true", help="also the same calls as gRPC-Web through the grpc_web filter")
    ap.add_argument("--json", action="store_true", help="also the same calls as JSON through the grpc_json filter")
    ap.add_argument("--shapes", default="4x32",
                    help="connections x streams of h2load, comma-separated: each shape in the same run (4x32,16x32)")
    ap.add_argument("--skip", default="", help="targets left out, comma-separated (nginx)")
    args = ap.parse_args()
    shapes = [tuple(int(x) for x in sh.split("x")) for sh in args.shapes.split(",")]
    args.shape = shapes[0]
    d = tempfile.mkdtemp(prefix="tg-bench-grpc-")
    procs, rows = [], []
    try:
        os.makedirs(f"{d}/www/test.v1.Echo")
        with open(f"{d}/www{PATH}", "wb") as f:
            f.write(b"\x00\x00\x00\x00\x05hello")
        with open(f"{d}/req.bin", "wb") as f:
            f.write(b"\x00\x00\x00\x00\x05world")
        if args.json:  # a real EchoReply for the JSON path, and the descriptors
            with open(f"{d}/www{JSON_PATH}", "wb") as f:
                f.write(b"\x00\x00\x00\x00\x07\x0a\x05hello")
            with open(f"{d}/req.json", "wb") as f:
                f.write(b'{"name":"world"}')
            with open(f"{d}/echo.proto", "w") as f:
                f.write(ECHO_PROTO)
            subprocess.run(["protoc", "-I", d, f"--descriptor_set_out={d}/echo.pb", "echo.proto"], check=True)
        bport = free_port()
        if args.json:  # nginx's workers (not root) read the files
            for path in (d, f"{d}/www", f"{d}/www/test.v1.Echo"):
                os.chmod(path, 0o755)
            for name in ("Echo", "Json"):
                os.chmod(f"{d}/www/test.v1.Echo/{name}", 0o644)
            conf = nginx_conf(d, bport, f"""server {{ listen 127.0.0.1:{bport} http2 backlog=4096;
    http2_max_concurrent_streams 128; root {d}/www; default_type application/grpc;
    add_trailer grpc-status 0 always; error_page 405 =200 $uri; }}""")
            procs.append(start(["nginx", "-c", conf], LOAD_CPU))
        else:
            procs.append(start(["nghttpd", "--no-tls", "--trailer", "grpc-status: 0", "-d", f"{d}/www", str(bport)],
                               LOAD_CPU))
        wait_port(bport)
        running = []
        for name, port, argv in targets(d, bport, args.compare, args.web, args.json):
            if name in args.skip.split(","):
                continue
            p = start(argv, PROXY_CPU, cwd=d)
            procs.append(p)
            wait_port(port)
            running.append((name, port, p))
        time.sleep(0.3)
        for shape in shapes:
            args.shape = shape
            direct = measure("direct", bport, [], args, d)
            direct["bad"] += grpc_check(bport)
            rows.append({"name": "direct", "shape": shape, **direct})
            samples = {name: [] for name, _, _ in running}
            for _ in range(args.rounds):
                for name, port, p in running:
                    samples[name].append(measure(name, port, [p.pid] + children(p.pid), args, d))
            for name, port, _ in running:
                rs = samples[name]
                med = lambda k: sorted(r[k] for r in rs)[len(rs) // 2]
                ctype = ctype_of(name)
                grpc_bad = grpc_check(port, ctype=ctype) if ctype != "application/json" else json_check(port)
                print(f"{name:18s} gRPC check: {grpc_bad} of {CHECK_CALLS} calls without grpc-status 0", flush=True)
                rows.append({"name": name, "shape": shape, "rps": med("rps"), "cpu": med("cpu"),
                             "bad": sum(r["bad"] for r in rs) + grpc_bad})
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(d, ignore_errors=True)
    lines = ["| shape | target | calls/s | proxy CPU us/call | calls/s vs HAProxy | CPU/call vs HAProxy | "
             "failures (non-2xx + gRPC check) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for shape in shapes:
        sh = [r for r in rows if r["shape"] == shape]
        hap = next((r for r in sh if r["name"] == "haproxy"), None)
        for r in sh:
            label = f"direct (h2load -> {'nginx' if args.json else 'nghttpd'})" if r["name"] == "direct" else r["name"]
            if r["name"] == "direct" or hap is None:
                lines.append(f"| {shape[0]}x{shape[1]} | {label} | {r['rps']:.0f} | "
                             f"{'-' if r['name'] == 'direct' else format(r['cpu'], '.2f')} | - | - | {r['bad']} |")
            else:
                lines.append(f"| {shape[0]}x{shape[1]} | {label} | {r['rps']:.0f} | {r['cpu']:.2f} | "
                             f"{r['rps'] / hap['rps']:.2f} | {r['cpu'] / hap['cpu']:.2f} | {r['bad']} |")
    os.makedirs(os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"), exist_ok=True)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "grpc.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
