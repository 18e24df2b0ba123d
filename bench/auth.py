"""What authentication costs per request (bench/RESULTS.md, "Identity
providers: what each check costs"). One tollgate (one worker, CPU 0) in
front of one nginx (CPU 1) that is also the identity provider (a JWKS at
/certs) and the auth service (/check answers 200 with x-user); wrk on
CPU 1. Routes, one per way of checking the client:

  none          no filter
  static        auth: bearer_tokens (a SHA-256 and a compare)
  jwt-nocache   auth: jwt with jwks_file, cache: 0 (an ES256 signature check each request)
  jwt-file      auth: jwt with jwks_file (verified tokens remembered: the default)
  jwt-remote    auth: jwt with jwks_uri (the same key, fetched and kept fresh)
  ext-auth-hit  ext_auth with cache (the decision from the worker's cache)
  ext-auth-miss ext_auth without cache (one call to the auth service per request)

Reported: req/s, p99 and the gateway's CPU per request (utime + stime
over the run / requests), medians of --rounds; CPU as a ratio to `none`
and to `static`."""
import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

import jwt  # noqa: E402  (python3-jwt)
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402


def b64(n, length):
    return base64.urlsafe_b64encode(n.to_bytes(length, "big")).rstrip(b"=").decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-bench-auth-")
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key().public_numbers()
    jwks = json.dumps({"keys": [{"kty": "EC", "kid": "b1", "crv": "P-256", "x": b64(pub.x, 32), "y": b64(pub.y, 32)}]})
    with open(os.path.join(d, "jwks.json"), "w") as f:
        f.write(jwks)
    token = jwt.encode({"iss": "bench", "sub": "alice", "aud": "api", "exp": int(time.time()) + 3600}, key,
                       algorithm="ES256", headers={"kid": "b1"})
    nport = run.free_port()
    nginx = run.start(["nginx", "-c", run.nginx_conf(d, nport, f"""
  server {{ listen 127.0.0.1:{nport} reuseport backlog=4096;
    location = /certs {{ default_type application/json; add_header cache-control "max-age=300";
                        return 200 '{jwks}'; }}
    location = /check {{ add_header x-user alice; add_header cache-control "max-age=60"; return 200 ""; }}
    location / {{ return 200 "ok\\n"; }} }}""")], run.LOAD_CPU)
    run.wait_port(nport)
    port = run.free_port()
    cfg = os.path.join(d, "tollgate.yaml")
    with open(cfg, "w") as f:
        f.write(f"""workers: 1
admin: {{ listen: 127.0.0.1:{run.free_port()} }}
listeners: [{{ name: bench, listen: '127.0.0.1:{port}' }}]
clusters:
  - {{ name: backend, endpoints: ['127.0.0.1:{nport}'], pool_size: 256 }}
  - {{ name: authsvc, endpoints: ['127.0.0.1:{nport}'], pool_size: 256 }}
routes:
  - {{ name: static, match: {{ path_prefix: /static }}, cluster: backend,
      filters: [{{ auth: {{ bearer_tokens: [{{ name: bench, token: bench-token }}] }} }}] }}
  - {{ name: jwt-nocache, match: {{ path_prefix: /jwt-nocache }}, cluster: backend,
      filters: [{{ auth: {{ jwt: {{ jwks_file: jwks.json, issuer: bench, audiences: [api], cache: 0 }} }} }}] }}
  - {{ name: jwt-file, match: {{ path_prefix: /jwt-file }}, cluster: backend,
      filters: [{{ auth: {{ jwt: {{ jwks_file: jwks.json, issuer: bench, audiences: [api] }} }} }}] }}
  - {{ name: jwt-remote, match: {{ path_prefix: /jwt-remote }}, cluster: backend,
      filters: [{{ auth: {{ jwt: {{ jwks_uri: 'http://127.0.0.1:{nport}/certs', issuer: bench, audiences: [api] }} }} }}] }}
  - {{ name: ext-auth-hit, match: {{ path_prefix: /ext-auth-hit }}, cluster: backend,
      filters: [{{ ext_auth: {{ cluster: authsvc, path: /check, upstream_headers: [x-user], cache: {{ max_entries: 1000 }} }} }}] }}
  - {{ name: ext-auth-miss, match: {{ path_prefix: /ext-auth-miss }}, cluster: backend,
      filters: [{{ ext_auth: {{ cluster: authsvc, path: /check, upstream_headers: [x-user] }} }}] }}
  - {{ name: none, cluster: backend }}
""")
    gw = run.start([run.TOLLGATE, "-c", cfg], run.PROXY_CPU)
    run.wait_port(port)
    cases = [("none", "/none", None), ("static", "/static", "bench-token"),
             ("jwt-nocache", "/jwt-nocache", token), ("jwt-file", "/jwt-file", token),
             ("jwt-remote", "/jwt-remote", token), ("ext-auth-hit", "/ext-auth-hit", token),
             ("ext-auth-miss", "/ext-auth-miss", token)]
    results = {name: [] for name, _, _ in cases}
    try:
        for _ in range(args.rounds):
            for name, path, tok in cases:
                extra = ["-H", f"Authorization: Bearer {tok}"] if tok else []
                url = f"http://127.0.0.1:{port}{path}"
                # (the warm-up also makes the first key set fetch)
                results[name].append(run.cpu_run(name, url, [gw.pid], args.connections, args.duration, extra))
    finally:
        run.stop(gw)
        run.stop(nginx)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p99", "cpu")} for n, rs in results.items()}
    print()
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, medians of {args.rounds} rounds; tollgate (1 worker) on "
          f"CPU {run.PROXY_CPU}, wrk + nginx on CPU {run.LOAD_CPU}.")
    print()
    print("| route | req/s | p99 ms | CPU µs/req | CPU vs none | CPU vs static |")
    print("|---|---|---|---|---|---|")
    for name, _, _ in cases:
        m = med[name]
        print(f"| {name} | {m['rps']:.0f} | {m['p99']:.2f} | {m['cpu']:.2f} | {m['cpu'] / med['none']['cpu']:.2f} | "
              f"{m['cpu'] / med['static']['cpu']:.2f} |")


if __name__ == "__main__":
    main()
