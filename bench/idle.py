"""Memory per idle client connection, side by side: tollgate, nginx and
HAProxy (one worker each) in front of the same nginx backend. For each
kind — HTTP/1.1 keep-alive, TLS (HTTP/1.1 over TLS 1.3) and h2c — N
connections each make one request and then stay open, idle; the figure is
the proxy's RSS growth divided by N (KiB per connection). Kernel socket
buffers are not in RSS and are the same for every proxy.

    python3 bench/idle.py [--conns 2000] [--only tollgate,nginx,haproxy]

bench/RESULTS.md ("Idle connections") has the figures."""
import argparse
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import h2.config
import h2.connection
import h2.events

import run  # bench/run.py: start, stop, nginx_conf, free_port, wait_port, children



def read_response(s):
    """Reads one HTTP/1.1 response with Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        b = s.recv(4096)
        if not b:
            raise RuntimeError("closed")
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    n = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:"))
    while len(body) < n:
        body += s.recv(4096)


def open_h1(port, n, tls=None):
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        if tls is not None:
            s = tls.wrap_socket(s, server_hostname="localhost")
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        read_response(s)
        conns.append(s)
    return conns


def open_h2c(port, n):
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        c.initiate_connection()
        c.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "localhost")],
                       end_stream=True)
        s.sendall(c.data_to_send())
        done = False
        while not done:
            data = s.recv(65536)
            if not data:
                raise RuntimeError("closed")
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.StreamEnded):
                    done = True
            s.sendall(c.data_to_send())
        conns.append((s, c))
    return conns


def measure(kind, port, pids_fn, n, tls_ctx, settle):
    opener = {"http1": lambda k: open_h1(port, k), "tls": lambda k: open_h1(port, k, tls_ctx),
              "h2c": lambda k: open_h2c(port, k)}[kind]
    warm = opener(50)  # pools, caches and first-use allocations
    time.sleep(0.5)
    before = run.rss_kib(pids_fn())
    conns = opener(n)
    time.sleep(1.0)
    after = run.rss_kib(pids_fn())
    time.sleep(settle)  # idle a while: what a server gives back from idle connections
    settled = run.rss_kib(pids_fn())
    for c in conns + warm:
        (c[0] if isinstance(c, tuple) else c).close()
    time.sleep(0.5)
    return (after - before) / n, (settled - before) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--only", default="tollgate,nginx,haproxy")
    ap.add_argument("--kinds", default="http1,tls,h2c")
    ap.add_argument("--settle", type=float, default=12.0, help="seconds idle before the second reading")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    d = tempfile.mkdtemp(prefix="tg-idle-")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-keyout", f"{d}/k.pem", "-out", f"{d}/c.pem", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    with open(f"{d}/both.pem", "w") as f:
        f.write(open(f"{d}/c.pem").read() + open(f"{d}/k.pem").read())
    tls_ctx = ssl.create_default_context(cafile=f"{d}/c.pem")
    procs, results = [], {}
    try:
        backend, bport = run.start_backend(d)
        procs.append(backend)
        for name, kind in [(n, k) for n in args.only.split(",") for k in args.kinds.split(",")]:
            # a fresh server for each kind: memory freed by one kind's connections would be
            # reused by the next kind's and hide its cost
            ports = {k: run.free_port() for k in ("http1", "tls", "h2c")}
            if name == "tollgate":
                cfg = os.path.join(d, "tollgate.yaml")
                with open(cfg, "w") as f:
                    f.write(f"""workers: 1
limits: {{ idle_timeout: 10m }}
listeners:
  - {{ name: http1, listen: '127.0.0.1:{ports['http1']}' }}
  - {{ name: h2c, listen: '127.0.0.1:{ports['h2c']}' }}
  - name: tls
    listen: '127.0.0.1:{ports['tls']}'
    tls: {{ certificates: [{{ cert: {d}/c.pem, key: {d}/k.pem }}], alpn: [http/1.1]{os.environ.get('IDLE_TLS_EXTRA', '')} }}
routes: [{{ name: all, cluster: backend }}]
clusters: [{{ name: backend, endpoints: ['127.0.0.1:{bport}'] }}]
""")
                p = run.start([run.TOLLGATE, "-c", cfg, "-l", "warn"], run.PROXY_CPU)
                pids = lambda p=p: [p.pid]
            elif name == "nginx":
                p = run.start(["nginx", "-c", run.nginx_conf(d, ports["http1"], f"""
  upstream backend {{ server 127.0.0.1:{bport}; keepalive 64; }}
  keepalive_timeout 600s;
  server {{ listen 127.0.0.1:{ports['http1']};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
  server {{ listen 127.0.0.1:{ports['h2c']} http2;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
  server {{ listen 127.0.0.1:{ports['tls']} ssl; ssl_certificate {d}/c.pem; ssl_certificate_key {d}/k.pem;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")],
                              run.PROXY_CPU)
                pids = lambda p=p: run.children(p.pid)  # the worker
            else:
                cfg = os.path.join(d, "haproxy.cfg")
                with open(cfg, "w") as f:
                    f.write(f"""global
  nbthread 1
  maxconn 8000
defaults
  mode http
  http-reuse always
  timeout connect 5s
  timeout client 10m
  timeout server 30s
  timeout http-keep-alive 10m
frontend http1
  bind 127.0.0.1:{ports['http1']}
  default_backend be
frontend h2c
  bind 127.0.0.1:{ports['h2c']} proto h2
  default_backend be
frontend tls
  bind 127.0.0.1:{ports['tls']} ssl crt {d}/both.pem alpn http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:{bport}
""")
                p = run.start(["haproxy", "-db", "-f", cfg], run.PROXY_CPU)
                pids = lambda p=p: [p.pid]
            procs.append(p)
            for k in ports.values():
                run.wait_port(k)
            time.sleep(0.3)
            results[(name, kind)] = measure(kind, ports[kind], pids, args.conns, tls_ctx, args.settle)
            print(f"{name:9s} {kind:6s} {results[(name, kind)][0]:6.2f} KiB/conn, "
                  f"{results[(name, kind)][1]:6.2f} after {args.settle:.0f} s idle", flush=True)
            run.stop(p)
    finally:
        for p in procs:
            run.stop(p)
        shutil.rmtree(d, ignore_errors=True)
    names = args.only.split(",")
    lines = [f"Idle connections after one request each ({args.conns} per kind), RSS growth per connection (KiB), "
             f"1 s after the request / after {args.settle:.0f} s idle:",
             "", "| kind | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for kind in args.kinds.split(","):
        lines.append(f"| {kind} | " + " | ".join("{:.2f} / {:.2f}".format(*results.get((n, kind), (0, 0)))
                                                 for n in names) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
