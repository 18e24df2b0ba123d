"""HTTP/1.1 proxying against a real FastAPI upstream: JSON CRUD, forwarding
headers, hop-by-hop removal, request ids, routing and header rules, HTTP/1.0
clients, keep-alive, pipelining and Expect: 100-continue."""
import json
import socket
import subprocess
import threading
import time

import requests

import harness


class Http1ProxyTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("crud")
        cls.procs = [cls.app]
        cls.port = harness.free_port()
        cls.cancelled = threading.Event()
        cls.waiter = harness.ScriptedServer(cls.wait_for_cancel)
        routes = f"""
  - name: waiter
    match: {{ path_prefix: /waiter }}
    cluster: waiter"""
        routes += """
  - name: api-only-post
    match: { path_prefix: /echo, methods: [POST], headers: [{ name: x-route, value: special }] }
    cluster: app
    request_headers: { set: { x-special: "yes" }, remove: [x-drop-me] }
    response_headers: { add: { x-route-name: api-only-post } }
  - name: host-wild
    match: { host: "*.example.test", path: /whoami }
    cluster: app
    response_headers: { set: { x-route-name: host-wild } }
  - name: regex
    match: { path_regex: "^/items/[0-9]+$" }
    cluster: app
    response_headers: { set: { x-route-name: regex } }
  - name: nothing-else
    match: { path_prefix: /nope }
    cluster: app
"""
        cfg = f"""
workers: 2
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
{routes}
  - name: default
    match: {{ path_prefix: / }}
    cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
  - name: waiter
    endpoints: [127.0.0.1:{cls.waiter.port}]
"""
        # "/nope" is routed, everything under "/" too; 404 needs a miss:
        cfg = cfg.replace("match: { path_prefix: / }", "match: { path_regex: \"^/(items|echo|stream|sse|upload|download|whoami|stats|slow|status|text|ws)\" }")
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.waiter.stop()
        cls.finish()

    @classmethod
    def wait_for_cancel(cls, c):
        """An upstream that never answers: it reads the request, then waits
        (up to 20 s) for the gateway to give up on it."""
        harness.read_request(c)
        c.settimeout(20)
        try:
            if c.recv(1) == b"":
                cls.cancelled.set()
        except OSError:
            cls.cancelled.set()

    def test_client_gone_cancels_the_upstream_request(self):
        """A client that closes while its request waits for the upstream is
        gone: the gateway drops the upstream request at once (as nginx does,
        499) instead of holding it until the upstream answers."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(b"GET /waiter HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.time() + 30
        while self.waiter.accepted == 0 and time.time() < deadline:
            time.sleep(0.01)
        s.close()
        self.assertTrue(self.cancelled.wait(10), "the upstream request outlived its client")

    def url(self, p):
        return self.gateway.url(p)

    def test_json_crud(self):
        s = requests.Session()
        r = s.post(self.url("/items"), json={"name": "widget", "qty": 3}, timeout=5)
        self.assertEqual(r.status_code, 201)
        item = r.json()
        self.assertEqual(item["name"], "widget")
        r = s.get(self.url(f"/items/{item['id']}"), timeout=5)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json()["qty"], 3)
        self.assertEqual(r.headers["x-route-name"], "regex")
        r = s.put(self.url(f"/items/{item['id']}"), json={"name": "widget", "qty": 4}, timeout=5)
        self.assertEqual(r.json()["qty"], 4)
        r = s.get(self.url("/items"), timeout=5)
        self.assertIn(item["id"], [i["id"] for i in r.json()["items"]])
        r = s.delete(self.url(f"/items/{item['id']}"), timeout=5)
        self.assertEqual(r.status_code, 204)
        self.assertEqual(r.content, b"")
        r = s.get(self.url(f"/items/{item['id']}"), timeout=5)
        self.assertEqual(r.status_code, 404)
        self.assertEqual(r.json()["detail"], "no such item")

    def echo(self, headers=None, method="GET", path="/echo/headers", **kw):
        r = requests.request(method, self.url(path), headers=headers or {}, timeout=5, **kw)
        self.assertEqual(r.status_code, 200, r.text)
        return r, {k: v for k, v in r.json()["headers"]}

    def test_forwarding_headers(self):
        r, h = self.echo({"X-Forwarded-For": "10.1.1.1", "Via": "1.1 edge"})
        # no trusted_proxies: a client's X-Forwarded-For is replaced, not extended
        # (test_trust_boundary covers trusted proxies)
        self.assertEqual(h["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(h["x-forwarded-proto"], "http")
        self.assertEqual(h["x-forwarded-host"], f"127.0.0.1:{self.port}")
        self.assertEqual(h["via"], "1.1 edge, 1.1 tollgate")
        self.assertEqual(h["host"], f"127.0.0.1:{self.port}")

    def test_request_id_generated_and_passed_through(self):
        _, h = self.echo()
        rid = h["x-request-id"]
        self.assertRegex(rid, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        _, h2 = self.echo()
        self.assertNotEqual(rid, h2["x-request-id"])
        _, h3 = self.echo({"X-Request-Id": "client-chosen-id"})
        self.assertEqual(h3["x-request-id"], "client-chosen-id")

    def test_hop_by_hop_removed(self):
        _, h = self.echo({"Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1",
                          "Keep-Alive": "timeout=5", "Proxy-Connection": "keep-alive", "TE": "trailers",
                          "X-Kept": "yes"})
        for name in ("x-secret-hop", "keep-alive", "proxy-connection", "te"):
            self.assertNotIn(name, h)
        self.assertEqual(h["x-kept"], "yes")

    def test_route_match_and_header_rules(self):
        r, h = self.echo({"x-route": "special", "x-drop-me": "1"}, method="POST")
        self.assertEqual(h["x-special"], "yes")
        self.assertNotIn("x-drop-me", h)
        self.assertEqual(r.headers["x-route-name"], "api-only-post")
        # same path, other method: default route, no rules
        r, h = self.echo({"x-route": "special", "x-drop-me": "1"})
        self.assertIn("x-drop-me", h)
        self.assertNotIn("x-route-name", r.headers)

    def test_wildcard_host(self):
        r = requests.get(self.url("/whoami"), headers={"Host": "api.example.test"}, timeout=5)
        self.assertEqual(r.headers.get("x-route-name"), "host-wild")
        r = requests.get(self.url("/whoami"), headers={"Host": "example.test"}, timeout=5)
        self.assertNotEqual(r.headers.get("x-route-name"), "host-wild")

    def test_no_route_is_json_404(self):
        r = requests.get(self.url("/definitely/not/routed"), timeout=5)
        self.assertEqual(r.status_code, 404)
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertEqual(r.json(), {"error": "no route", "status": 404})

    def test_http10_client(self):
        out = harness.raw_request(self.port, b"GET /text HTTP/1.0\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), out)
        self.assertEqual(body, b"hello from crud\n")
        self.assertIn(b"connection: close", head.lower())
        # HTTP/1.0 keep-alive, then a streamed (close-delimited) body
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"GET /text HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = s.recv(65536)
        self.assertIn(b"connection: keep-alive", first.lower())
        s.sendall(b"GET /stream?n=2&delay=0.01 HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        s.close()
        self.assertNotIn(b"transfer-encoding", data.lower())
        self.assertIn(b"chunk 0", data)
        self.assertIn(b"chunk 1", data)

    def test_keep_alive_reuses_connection(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        f = s.makefile("rb")
        for i in range(5):
            s.sendall(b"GET /text HTTP/1.1\r\nHost: x\r\n\r\n")
            status = f.readline()
            self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
            length = None
            while True:
                line = f.readline()
                if line == b"\r\n":
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            self.assertEqual(f.read(length), b"hello from crud\n")
        s.close()

    def test_pipelined_requests_in_order(self):
        reqs = b"".join(b"GET /echo/headers?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(4))
        reqs += b"GET /text HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        out = harness.raw_request(self.port, reqs, timeout=10)
        self.assertEqual(out.count(b"HTTP/1.1 200 OK"), 5, out)
        positions = [out.find(b'"query":"n=%d"' % i) for i in range(4)]
        self.assertTrue(all(p >= 0 for p in positions), out)
        self.assertEqual(positions, sorted(positions))
        self.assertTrue(out.endswith(b"hello from crud\n"))

    def test_expect_100_continue(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        body = b"x" * 5000
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        interim = s.recv(65536)
        self.assertTrue(interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim)
        s.sendall(body)
        resp = b""
        while b"}" not in resp:
            b = s.recv(65536)
            if not b:
                break
            resp += b
        s.close()
        self.assertIn(b"HTTP/1.1 200", resp)
        self.assertIn(b'"size":5000', resp)

    def test_curl_expect_large_post(self):
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "-H", "Expect: 100-continue",
                              "--data-binary", "@-", self.url("/upload")],
                             input=b"a" * 2_000_000, capture_output=True, check=True).stdout
        self.assertEqual(json.loads(out)["size"], 2_000_000)

    def test_head_request(self):
        """A HEAD response has a head only: on a raw keep-alive connection the
        bytes after it are the next response's, not a body (the upstream's
        Content-Length describes the GET body and must not be waited for)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        try:
            s.sendall(b"HEAD /echo/headers HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                self.assertTrue(d, "closed before the HEAD response head")
                buf += d
            head, _, rest = buf.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            self.assertRegex(head.lower(), rb"content-length: [1-9]")  # the GET body's length, announced
            s.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
            while len(rest) < 12:
                d = s.recv(65536)
                self.assertTrue(d, "the connection did not survive the HEAD")
                rest += d
            self.assertTrue(rest.startswith(b"HTTP/1.1 200"), rest[:80])  # no body bytes in between
        finally:
            s.close()


if __name__ == "__main__":
    harness.main()
