"""ext_auth against a FastAPI auth service (apps/authsvc.py) that counts
its calls: exactly one call per request over HTTP/1.1, HTTP/2 and gRPC
(also when the request is retried upstream), allow-listed headers both
ways (a client cannot forge what the service says), the login redirect
and the challenge passed to the client, each on_error path (service
down, 5xx, timeout), the decision cache, and the service's identity
used by rate_limit."""
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

import grpc
import requests

import harness

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
sys.path.insert(0, APPS)


def start_authsvc(name="authsvc"):
    port = harness.free_port()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=APPS)
    proc = harness.Proc([harness.PYTHON, "-m", "uvicorn", "authsvc:app", "--app-dir", APPS, "--host", "127.0.0.1",
                         "--port", str(port), "--log-level", "warning", "--no-access-log"], env=env, name=name)
    harness.wait_port(port, proc=proc.p)
    proc.port = port
    return proc


def refused(test, config, want):
    """`tollgate -t` refuses the config with an error that contains want."""
    d = tempfile.mkdtemp(prefix="tg-ea-")
    path = os.path.join(d, "t.yaml")
    with open(path, "w") as f:
        f.write(config)
    p = subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=30)
    test.assertEqual(p.returncode, 1, config)
    test.assertIn(want, p.stderr, config)


def calls(svc):
    with urllib.request.urlopen(f"http://127.0.0.1:{svc.port}/admin/calls", timeout=10) as r:
        return json.loads(r.read())


def reset(svc):
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{svc.port}/admin/reset", method="POST"),
                           timeout=10).read()


class ExtAuthTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.svc = start_authsvc()
        cls.app = harness.start_app("ea-app")
        cls.grpc = harness.start_grpc_backend("ea-grpc")
        cls.procs = [cls.svc, cls.app, cls.grpc]
        dead = harness.dead_port()
        ea = (f"ext_auth: {{ cluster: authsvc, path: /check, request_headers: [authorization, cookie], "
              f"upstream_headers: [x-user, x-tenant], identity_header: x-user }}")
        cls.start_gateway(f"""
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
  - name: flaky
    endpoints: [127.0.0.1:{dead}, 127.0.0.1:{cls.app.port}]
    lb: round_robin
  - name: grpc
    protocol: h2c
    endpoints: [127.0.0.1:{cls.grpc.port}]
  - name: authsvc
    endpoints: [127.0.0.1:{cls.svc.port}]
  - name: nowhere
    endpoints: [127.0.0.1:{dead}]
routes:
  - name: grpc
    match: {{ grpc_service: test.v1.Echo }}
    cluster: grpc
    filters:
      - {ea}
  - name: retried
    match: {{ path_prefix: /retried }}
    cluster: flaky
    filters:
      - {ea}
      - retry: {{ attempts: 3, on: [connect-failure] }}
  - name: limited
    match: {{ path_prefix: /limited }}
    cluster: app
    filters:
      - {ea}
      - rate_limit: {{ key: identity, limit: 2, window: 1m }}
  - name: cached
    match: {{ path_prefix: /cached }}
    cluster: app
    filters:
      - ext_auth: {{ cluster: authsvc, path: /check, upstream_headers: [x-user], cache: {{ max_entries: 100 }} }}
  - name: down-deny
    match: {{ path_prefix: /down-deny }}
    cluster: app
    filters:
      - ext_auth: {{ cluster: nowhere, timeout: 2s }}
  - name: down-allow
    match: {{ path_prefix: /down-allow }}
    cluster: app
    filters:
      - ext_auth: {{ cluster: nowhere, on_error: allow, upstream_headers: [x-user] }}
  - name: slow
    match: {{ path_prefix: /slow }}
    cluster: app
    filters:
      - ext_auth: {{ cluster: authsvc, path: /check, timeout: 300ms }}
  - name: post
    match: {{ path_prefix: /post }}
    cluster: app
    filters:
      - ext_auth: {{ cluster: authsvc, path: /check, method: POST }}
  - name: body
    match: {{ path_prefix: /upload }}
    cluster: app
    timeout: 1500ms
    filters:
      - ext_auth: {{ cluster: authsvc, path: /check-body, method: POST, body_bytes: 16,
                    request_headers: [content-type], upstream_headers: [x-user], cache: {{ max_entries: 100 }} }}
  - name: main
    match: {{ path_prefix: / }}
    cluster: app
    filters:
      - {ea}
""")

    def setUp(self):
        reset(self.svc)

    def get(self, path, token=None, **kw):
        h = kw.pop("headers", {})
        if token:
            h["authorization"] = f"Bearer {token}"
        return requests.get(self.gateway.url(path), headers=h, allow_redirects=False, timeout=30, **kw)

    def test_one_call_per_request_http1(self):
        for i in range(20):
            r = self.get(f"/echo/headers?i={i}", "good-alice")
            self.assertEqual(r.status_code, 200, r.text)
        c = calls(self.svc)
        self.assertEqual(c["n"], 20)
        self.assertEqual(sorted(c["by_uri"].values()), [1] * 20)
        seen = c["last"]["headers"]
        self.assertEqual(seen["x-forwarded-method"], "GET")
        self.assertEqual(seen["x-forwarded-uri"], "/echo/headers?i=19")
        self.assertEqual(seen["x-forwarded-host"], f"127.0.0.1:{self.port}")
        self.assertEqual(seen["x-forwarded-proto"], "http")
        self.assertEqual(seen["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(seen["authorization"], "Bearer good-alice")
        self.assertEqual(c["last"]["method"], "GET")

    def test_one_call_per_request_http2(self):
        p = subprocess.run(["h2load", "-n", "30", "-c", "2", "-m", "5", "-H", "authorization: Bearer good-h2",
                            self.gateway.url("/whoami")], capture_output=True, text=True, timeout=120)
        self.assertIn("30 succeeded", p.stdout, p.stdout + p.stderr)
        self.assertIn("status codes: 30 2xx", p.stdout)
        self.assertEqual(calls(self.svc)["n"], 30)

    def test_one_call_per_grpc_call(self):
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as ch:
            echo = ch.unary_unary("/test.v1.Echo/Echo")
            for _ in range(10):
                self.assertEqual(echo(b"ping", timeout=10, metadata=[("authorization", "Bearer good-g")]), b"ping")
            with self.assertRaises(grpc.RpcError) as e:
                echo(b"ping", timeout=10, metadata=[("authorization", "Bearer nope")])
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(calls(self.svc)["n"], 11)

    def test_one_call_when_retried_upstream(self):
        """Round robin over a dead endpoint and a live one: half the first
        tries fail to connect and are retried; the service is asked once
        per request all the same."""
        for i in range(8):
            r = self.get(f"/retried?i={i}", "good-r")
            self.assertEqual(r.status_code, 404)  # the app has no /retried: it answered
        self.assertEqual(calls(self.svc)["n"], 8, "ext_auth asked again on a retry")
        text = harness.scrape(self.admin)
        self.assertGreaterEqual(harness.metric(text, "tollgate_ext_auth_decisions_total", route="retried",
                                               decision="allowed"), 8)

    def test_headers_both_ways(self):
        r = self.get("/echo/headers", "good-bob", headers={"x-user": "mallory", "x-tenant": "evil"})
        self.assertEqual(r.status_code, 200)
        up = dict(r.json()["headers"])
        self.assertEqual(up.get("x-user"), "bob")
        self.assertEqual(up.get("x-tenant"), "t1")
        self.assertNotIn("x-secret", up)
        self.assertEqual([v for k, v in r.json()["headers"] if k == "x-user"], ["bob"], "a client's x-user passed")
        # refused: the client's forged headers do not reach the service's decision either way
        r = self.get("/echo/headers", headers={"x-user": "mallory"})
        self.assertEqual(r.status_code, 401)
        self.assertEqual(r.headers.get("www-authenticate"), 'Bearer realm="svc"')
        self.assertEqual(r.json(), {"error": "denied by the auth service", "status": 401})

    def test_login_redirect_passed_to_client(self):
        r = self.get("/app", "redirect")
        self.assertEqual(r.status_code, 302)
        self.assertEqual(r.headers.get("location"), "/login")
        self.assertEqual(r.headers.get("set-cookie"), "next=/app; Path=/")
        self.assertNotIn("x-other", r.headers)

    def test_identity_for_rate_limit(self):
        codes = [self.get("/limited", "good-carol").status_code for _ in range(3)]
        self.assertEqual(codes[2], 429)
        self.assertNotEqual(self.get("/limited", "good-dave").status_code, 429)

    def test_on_error(self):
        r = self.get("/down-deny/x", "good-x")
        self.assertEqual(r.status_code, 503)
        self.assertEqual(r.headers.get("retry-after"), "1")
        self.assertEqual(r.json()["error"], "the auth service is unavailable")
        r = self.get("/echo/headers", "boom")  # a 5xx from the service is an error too
        self.assertEqual(r.status_code, 503)
        r = self.get("/slow", "slow")  # past timeout
        self.assertEqual(r.status_code, 503)
        r = requests.get(self.gateway.url("/down-allow/echo"), headers={"x-user": "mallory"}, timeout=30)
        self.assertEqual(r.status_code, 404)  # let through to the app (no such path there), no identity
        text = harness.scrape(self.admin)
        self.assertGreaterEqual(harness.metric(text, "tollgate_ext_auth_decisions_total", route="down-deny",
                                               decision="error_denied"), 1)
        self.assertGreaterEqual(harness.metric(text, "tollgate_ext_auth_decisions_total", route="down-allow",
                                               decision="error_allowed"), 1)

    def test_post_method(self):
        self.assertEqual(self.get("/post", "good-p").status_code, 404)  # allowed, the app has no /post
        self.assertEqual(calls(self.svc)["last"]["method"], "POST")

    def post(self, body, **kw):
        return requests.post(self.gateway.url("/upload"), data=body, timeout=30, **kw)

    def test_body_bytes(self):
        """The service sees the first body_bytes of the body and whether
        that is all of it; the upstream gets the whole body, unchanged."""
        r = self.post(b"hello", headers={"content-type": "text/plain"})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["size"], 5)
        last = calls(self.svc)["last"]
        self.assertEqual(last["body"], "hello")
        self.assertEqual(last["headers"]["x-forwarded-body"], "whole")
        self.assertEqual(last["headers"]["content-type"], "text/plain")
        big = bytes(range(256)) * 400 + b"forbidden"  # past the first 16 bytes: not seen
        r = self.post(big)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json(), {"sha256": hashlib.sha256(big).hexdigest(), "size": len(big)})
        last = calls(self.svc)["last"]
        self.assertEqual(last["body"], bytes(range(16)).decode("latin-1"))
        self.assertEqual(last["headers"]["x-forwarded-body"], "partial")
        n = calls(self.svc)["n"]
        r = self.post(b"forbidden: this body")
        self.assertEqual(r.status_code, 403)
        self.assertEqual(calls(self.svc)["n"], n + 1)
        # exactly 16 bytes is whole; 17 is partial
        self.post(b"x" * 16)
        self.assertEqual(calls(self.svc)["last"]["headers"]["x-forwarded-body"], "whole")
        self.post(b"x" * 17)
        self.assertEqual(calls(self.svc)["last"]["headers"]["x-forwarded-body"], "partial")

    def test_body_bytes_framings(self):
        """Chunked over HTTP/1.1, Expect: 100-continue, HTTP/2, and no body."""
        def chunks():
            for part in (b"ab", b"cd" * 10, b"ef" * 5000):
                yield part
        r = self.post(chunks())
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["size"], 2 + 20 + 10000)
        self.assertEqual(calls(self.svc)["last"]["body"], "ab" + "cd" * 7)
        p = subprocess.run(["curl", "-sS", "--max-time", "20", "-H", "Expect: 100-continue", "--data-binary",
                            "@-", self.gateway.url("/upload")], input=b"q" * 5000, capture_output=True, timeout=30)
        self.assertEqual(json.loads(p.stdout)["size"], 5000, p.stderr)
        self.assertEqual(calls(self.svc)["last"]["body"], "q" * 16)
        p = subprocess.run(["nghttp", "-d", "-", self.gateway.url("/upload")], input=b"h2-body-" * 1000,
                           capture_output=True, timeout=30)
        self.assertEqual(json.loads(p.stdout)["size"], 8000, p.stderr)
        self.assertEqual(calls(self.svc)["last"]["body"], "h2-body-h2-body-")
        r = requests.post(self.gateway.url("/upload"), timeout=30)
        self.assertEqual(r.json()["size"], 0)
        self.assertEqual(calls(self.svc)["last"]["body"], "")
        self.assertEqual(calls(self.svc)["last"]["headers"]["x-forwarded-body"], "whole")

    def test_body_bytes_cache_is_per_body(self):
        for _ in range(4):
            self.assertEqual(self.post(b"cache me A").status_code, 200)
        n = calls(self.svc)["n"]
        self.assertLessEqual(n, 2, "one call per worker at most")
        self.assertEqual(self.post(b"cache me B").status_code, 200)
        self.assertEqual(calls(self.svc)["n"], n + 1, "another body is another question")

    def test_body_bytes_client_stalls(self):
        """A body that stops coming before body_bytes: 408 at the route's
        timeout, the service never asked."""
        import socket
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            data = b""
            while b"\r\n\r\n" not in data:
                part = s.recv(4096)
                if not part:
                    break
                data += part
        self.assertTrue(data.startswith(b"HTTP/1.1 408"), data)
        self.assertEqual(calls(self.svc)["n"], 0)

    def test_body_bytes_needs_post(self):
        refused(self, "listeners: [{ name: m, listen: 127.0.0.1:1 }]\nfilters:\n  - ext_auth: { cluster: c, "
                      "body_bytes: 10 }\nclusters: [{ name: c, endpoints: [127.0.0.1:2] }]\n",
                "body_bytes: the body goes with method: POST")

    def test_cache(self):
        for _ in range(6):
            self.assertNotEqual(self.get("/cached", "cached-erin").status_code, 401)
        n = calls(self.svc)["n"]
        self.assertGreaterEqual(n, 1)
        self.assertLessEqual(n, 2, "one call per worker at most, the rest from the cache")
        self.assertEqual(self.get("/cached", "cached-frank").status_code, 404)  # another key: asked
        self.assertEqual(calls(self.svc)["n"], n + 1)
        for _ in range(3):  # not cacheable (no max-age): asked each time
            self.get("/cached", "good-gina")
        self.assertEqual(calls(self.svc)["n"], n + 4)
        text = harness.scrape(self.admin)
        self.assertGreaterEqual(harness.metric(text, "tollgate_ext_auth_cache_hits_total", route="cached"), 4)

    def test_unknown_cluster_is_a_config_error(self):
        refused(self, "listeners: [{ name: m, listen: 127.0.0.1:1 }]\nfilters:\n  - ext_auth: { cluster: nope }\n"
                      "clusters: [{ name: c, endpoints: [127.0.0.1:2] }]\n", "t.yaml:3:26: unknown cluster 'nope'")


class ExtAuthGrpcTest(harness.GatewayTest):
    """api: grpc against an Envoy Check service (apps/envoy_authz.py, the
    messages declared to python3-protobuf): what the CheckRequest says of
    the request, each kind of CheckResponse, one call per request over
    HTTP/1.1, HTTP/2 and gRPC, and every answer that is no answer."""

    @classmethod
    def setUpClass(cls):
        import envoy_authz
        port = harness.free_port()
        cls.server, cls.authz = envoy_authz.serve(port)
        cls.app = harness.start_app("eag-app")
        cls.grpc = harness.start_grpc_backend("eag-grpc")
        cls.procs = [cls.app, cls.grpc]
        dead = harness.dead_port()
        ea = ("ext_auth: { api: grpc, cluster: authz, request_headers: [authorization, cookie], "
              "upstream_headers: [x-user, x-tenant], identity_header: x-user, "
              "client_headers: [www-authenticate, set-cookie] }")
        cls.start_gateway(f"""
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
  - name: grpc
    protocol: h2c
    endpoints: [127.0.0.1:{cls.grpc.port}]
  - name: authz
    protocol: h2c
    endpoints: [127.0.0.1:{port}]
  - name: nowhere
    protocol: h2c
    endpoints: [127.0.0.1:{dead}]
routes:
  - name: grpc
    match: {{ grpc_service: test.v1.Echo }}
    cluster: grpc
    filters:
      - {ea}
  - name: body
    match: {{ path_prefix: /upload }}
    cluster: app
    filters:
      - ext_auth: {{ api: grpc, cluster: authz, body_bytes: 5 }}
  - name: down-allow
    match: {{ path_prefix: /down-allow }}
    cluster: app
    filters:
      - ext_auth: {{ api: grpc, cluster: nowhere, on_error: allow }}
  - name: main
    match: {{ path_prefix: / }}
    cluster: app
    filters:
      - {ea}
      - rate_limit: {{ key: identity, limit: 1000, window: 1m }}
""")

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.server.stop(None)

    def setUp(self):
        self.authz.reset()

    def get(self, path, token=None, **kw):
        h = kw.pop("headers", {})
        if token:
            h["authorization"] = f"Bearer {token}"
        return requests.get(self.gateway.url(path), headers=h, allow_redirects=False, timeout=30, **kw)

    def test_allowed(self):
        for i in range(10):
            r = self.get(f"/echo/headers?i={i}", "good-alice", headers={"x-user": "mallory", "x-secret": "s"})
            self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(self.authz.n, 10)
        seen = {k: v for k, v in r.json()["headers"]}
        self.assertEqual(seen.get("x-user"), "alice")  # the client's own x-user was removed on arrival
        self.assertEqual(seen.get("x-tenant"), "t1")
        self.assertNotIn("authorization", seen)  # headers_to_remove
        self.assertEqual(seen.get("x-secret"), "s")  # the service's x-secret is not on the allow-list
        self.assertEqual(r.headers.get("set-cookie"), "s=1; Path=/")  # response_headers_to_add, allow-listed
        self.assertNotIn("x-internal", r.headers)
        http = self.authz.last["attributes"]["request"]["http"]
        self.assertEqual(http["method"], "GET")
        self.assertEqual(http["path"], "/echo/headers?i=9")
        self.assertEqual(http["query"], "i=9")
        self.assertEqual(http["host"], f"127.0.0.1:{self.port}")
        self.assertEqual(http["scheme"], "http")
        self.assertEqual(http["protocol"], "HTTP/1.1")
        self.assertEqual(http["headers"], {"authorization": "Bearer good-alice"})  # only the listed ones
        self.assertTrue(http["id"])
        self.assertEqual(self.authz.last["attributes"]["source"]["address"]["socket_address"]["address"],
                         "127.0.0.1")
        self.assertGreater(int(self.authz.last["attributes"]["request"]["time"]["seconds"]), 1700000000)

    def test_one_call_per_request_http2_and_grpc(self):
        p = subprocess.run(["h2load", "-n", "30", "-c", "2", "-m", "5", "-H", "authorization: Bearer good-h2",
                            self.gateway.url("/whoami")], capture_output=True, text=True, timeout=120)
        self.assertIn("status codes: 30 2xx", p.stdout, p.stdout + p.stderr)
        self.assertEqual(self.authz.n, 30)
        self.assertEqual(self.authz.last["attributes"]["request"]["http"]["protocol"], "HTTP/2")
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as ch:
            echo = ch.unary_unary("/test.v1.Echo/Echo")
            for _ in range(5):
                self.assertEqual(echo(b"ping", timeout=10, metadata=[("authorization", "Bearer good-g")]), b"ping")
            with self.assertRaises(grpc.RpcError) as e:
                echo(b"ping", timeout=10, metadata=[("authorization", "Bearer plain")])
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(self.authz.n, 36)

    def test_denied(self):
        r = self.get("/echo/headers", "deny")
        self.assertEqual(r.status_code, 401)
        self.assertEqual(r.headers.get("www-authenticate"), 'Bearer realm="grpc"')
        self.assertNotIn("x-other", r.headers)
        self.assertEqual(self.get("/echo/headers", "plain").status_code, 403)  # no denied_response: 403
        self.assertEqual(self.get("/echo/headers").status_code, 403)
        text = harness.scrape(self.admin)
        self.assertGreaterEqual(harness.metric(text, "tollgate_ext_auth_decisions_total", route="main",
                                               decision="denied"), 3)

    def test_no_usable_answer(self):
        """A failed call, an answer that does not parse and one that would
        inject a header are all errors: on_error deny, 503."""
        for tok in ("unavailable", "garbage", "evil"):
            r = self.get("/echo/headers", tok)
            self.assertEqual(r.status_code, 503, tok)
            self.assertEqual(r.headers.get("retry-after"), "1")
        self.assertEqual(self.authz.n, 3)
        r = self.get("/down-allow/x")
        self.assertEqual(r.status_code, 404)  # on_error: allow lets it on to the app
        text = harness.scrape(self.admin)
        self.assertGreaterEqual(harness.metric(text, "tollgate_ext_auth_decisions_total", route="main",
                                               decision="error_denied"), 3)

    def test_body(self):
        r = requests.post(self.gateway.url("/upload"), data=b"hello world", timeout=30,
                          headers={"authorization": "Bearer body"})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["size"], 11)
        http = self.authz.last["attributes"]["request"]["http"]
        self.assertEqual(http["body"], "hello")
        self.assertEqual(http["headers"]["x-envoy-auth-partial-body"], "true")
        self.assertEqual(http["size"], "11")
        r = requests.post(self.gateway.url("/upload"), data=b"\xff\xfe\x00\x01", timeout=30,
                          headers={"authorization": "Bearer body"})
        self.assertEqual(r.status_code, 403)  # not "hello"
        http = self.authz.last["attributes"]["request"]["http"]
        self.assertNotIn("body", http)  # not UTF-8: raw_body
        self.assertEqual(base64.b64decode(http["raw_body"]), b"\xff\xfe\x00\x01")
        self.assertEqual(http["headers"]["x-envoy-auth-partial-body"], "false")

    def test_config_errors(self):
        cases = [
            ("ext_auth: { api: grpc, cluster: c }", "3:37: cluster 'c' speaks HTTP/1.1, and ext_auth api: grpc "
                                                    "needs HTTP/2 (protocol: h2c or h2)"),
            ("ext_auth: { api: grpc, cluster: g, cache: {} }", "a CheckResponse says nothing of how long it holds"),
            ("ext_auth: { api: grpc, cluster: g, path: /x }", "path: api: grpc always POSTs to "
                                                             "/envoy.service.auth.v3.Authorization/Check"),
        ]
        for filt, want in cases:
            refused(self, "listeners: [{ name: m, listen: 127.0.0.1:1 }]\nfilters:\n  - " + filt + "\n"
                          "clusters: [{ name: c, endpoints: [127.0.0.1:2] }, "
                          "{ name: g, protocol: h2c, endpoints: [127.0.0.1:3] }]\n", want)


class ExampleAuthServiceTest(harness.GatewayTest):
    """examples/ext-auth/authsvc.py behind the example's ext_auth settings."""

    @classmethod
    def setUpClass(cls):
        port = harness.free_port()
        ex = os.path.join(harness.HERE, "..", "..", "examples", "ext-auth")
        cls.svc = harness.Proc([harness.PYTHON, "-m", "uvicorn", "authsvc:app", "--app-dir", ex, "--host", "127.0.0.1",
                                "--port", str(port), "--log-level", "warning"],
                               env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), name="example-authsvc")
        harness.wait_port(port, proc=cls.svc.p)
        cls.app = harness.start_app("ea-example-app")
        cls.procs = [cls.svc, cls.app]
        cls.start_gateway(f"""
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
  - name: authsvc
    endpoints: [127.0.0.1:{port}]
    health_check: {{ path: /healthz, interval: 5s }}
routes:
  - name: app
    match: {{ path_prefix: / }}
    cluster: app
    filters:
      - ext_auth: {{ cluster: authsvc, path: /check, request_headers: [authorization, cookie],
                    upstream_headers: [x-user, x-tenant], identity_header: x-user, timeout: 2s,
                    cache: {{ max_entries: 100 }} }}
""")

    def test_example(self):
        r = requests.get(self.gateway.url("/echo/headers"), cookies={"session": "s-123"}, timeout=30)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(dict(r.json()["headers"]).get("x-tenant"), "acme")
        r = requests.get(self.gateway.url("/echo/headers"), headers={"authorization": "Bearer k-456"}, timeout=30)
        self.assertEqual(dict(r.json()["headers"]).get("x-user"), "reporting-bot")
        r = requests.get(self.gateway.url("/app/orders"), allow_redirects=False, timeout=30)
        self.assertEqual((r.status_code, r.headers.get("location")), (302, "/login"))
        self.assertEqual(r.headers.get("set-cookie"), "next=/app/orders")
        self.assertEqual(requests.get(self.gateway.url("/api"), timeout=30).status_code, 401)


if __name__ == "__main__":
    harness.main()
