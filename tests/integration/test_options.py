"""Options that had no test of their own, each checked by its effect:
retry per_try_timeout (a hung endpoint costs one short try, not the route
timeout); auth strip_credentials (true and false) and a custom
identity_header; jwt identity_claim; a cluster's pool_size (idle
connections kept, reused, and the rest closed); an active health check
against an endpoint that accepts but never answers; an IPv6 listener."""
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import unittest

import requests

import harness

SECRET = "options-test-hmac-secret-0123456789"


def hs256(claims):
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=")
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(SECRET.encode(), head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


class Hang:
    """Accepts, reads, never answers; counts connections that ended."""

    def __init__(self):
        self.server = harness.ScriptedServer(self.handle)
        self.port = self.server.port

    def handle(self, c):
        c.settimeout(60)
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass


class Held:
    """Answers each request only once `n` requests are waiting at once
    (a barrier), so n concurrent client requests need n upstream
    connections; counts connections opened and closed."""

    def __init__(self, n):
        self.barrier = threading.Barrier(n, timeout=10)
        self.lock = threading.Lock()
        self.opened = self.closed = self.served = 0
        self.hold = True
        self.server = harness.ScriptedServer(self.handle)
        self.port = self.server.port

    def handle(self, c):
        with self.lock:
            self.opened += 1
        try:
            while True:
                head, _ = harness.read_request(c)
                if not head:
                    return
                if self.hold:
                    try:
                        self.barrier.wait()
                    except threading.BrokenBarrierError:
                        pass
                with self.lock:
                    self.served += 1
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        finally:
            with self.lock:
                self.closed += 1


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class OptionsTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("options")
        cls.hang = Hang()
        cls.held = Held(3)
        cls.procs = [cls.app]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.v6 = ipv6_loopback()
        cls.port6 = harness.free_port() if cls.v6 else None
        v6 = f"  - {{ name: v6, listen: '[::1]:{cls.port6}' }}\n" if cls.v6 else ""

        def route(name, cluster, extra=""):
            return (f"  - name: {name}\n    match: {{ headers: [{{ name: x-route, value: {name} }}] }}\n"
                    f"    cluster: {cluster}\n{extra}")
        cfg = f"""
workers: 1
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners:
  - {{ name: main, listen: 127.0.0.1:{cls.port} }}
{v6}routes:
{route("pertry", "hang_then_app", '''    timeout: 20s
    filters:
      - retry: { attempts: 2, on: [timeout], per_try_timeout: 300ms, backoff: { base: 1ms, max: 1ms } }
''')}{route("strip", "app", '''    filters:
      - auth: { bearer_tokens: [{ name: alice, token: t-alice }], identity_header: x-who }
''')}{route("keep", "app", '''    filters:
      - auth: { bearer_tokens: [{ name: alice, token: t-alice }], strip_credentials: false }
''')}{route("claim", "app", f'''    filters:
      - auth: {{ jwt: {{ secret: {SECRET}, identity_claim: email }} }}
''')}{route("pooled", "held")}{route("checked", "hc")}  - name: default
    cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
  - name: hang_then_app
    endpoints: [127.0.0.1:{cls.hang.port}, 127.0.0.1:{cls.app.port}]
  - name: held
    endpoints: [127.0.0.1:{cls.held.port}]
    pool_size: 1
  - name: hc
    endpoints: [127.0.0.1:{cls.hang.port}, 127.0.0.1:{cls.app.port}]
    health_check: {{ path: /whoami, interval: 200ms, timeout: 300ms, unhealthy_threshold: 1, healthy_threshold: 1 }}
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.hang.server.stop()
        cls.held.server.stop()
        cls.finish()

    def metrics(self):
        return requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text

    def echo(self, route, headers=None):
        return requests.get(self.gateway.url("/echo/headers"), headers={"x-route": route, **(headers or {})},
                            timeout=10)

    def test_per_try_timeout(self):
        """Round-robin over [hang, app] with one worker: two of four requests
        start on the hung endpoint, give up after 300 ms and are retried on
        the app; none waits for the 20 s route timeout."""
        before = harness.metric(self.metrics(), "tollgate_retries_total", route="pertry")
        for _ in range(4):  # without per_try_timeout: 504 after the 20 s route timeout
            r = requests.get(self.gateway.url("/whoami"), headers={"x-route": "pertry"}, timeout=60)
            self.assertEqual((r.status_code, r.json()), (200, {"name": "options"}))
        deadline = time.time() + 30
        while time.time() < deadline:
            after = harness.metric(self.metrics(), "tollgate_retries_total", route="pertry")
            if after == before + 2:
                break
            time.sleep(0.02)
        self.assertEqual(after - before, 2)

    def test_strip_credentials_and_identity_header(self):
        got = dict(self.echo("strip", {"Authorization": "Bearer t-alice"}).json()["headers"])
        self.assertNotIn("authorization", got)  # stripped by default
        self.assertEqual(got.get("x-who"), "alice")  # the configured identity_header
        self.assertNotIn("x-auth-identity", got)
        got = dict(self.echo("keep", {"Authorization": "Bearer t-alice"}).json()["headers"])
        self.assertEqual(got.get("authorization"), "Bearer t-alice")  # strip_credentials: false
        self.assertEqual(got.get("x-auth-identity"), "alice")

    def test_identity_claim(self):
        token = hs256({"sub": "u-123", "email": "bob@example.test", "exp": int(time.time()) + 300})
        got = dict(self.echo("claim", {"Authorization": f"Bearer {token}"}).json()["headers"])
        self.assertEqual(got.get("x-auth-identity"), "bob@example.test")
        token = hs256({"sub": "u-123", "exp": int(time.time()) + 300})  # no email claim: no identity
        self.assertEqual(self.echo("claim", {"Authorization": f"Bearer {token}"}).status_code, 401)

    def test_pool_size_keeps_one_idle_connection(self):
        """Three requests at once need three upstream connections; with
        pool_size 1 one is kept and two closed once they are done; the next
        requests one at a time reuse the kept one."""
        def one():
            return requests.get(self.gateway.url("/x"), headers={"x-route": "pooled"}, timeout=15).status_code
        ts = [threading.Thread(target=lambda: results.append(one())) for _ in range(3)]
        results = []
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        self.assertEqual(results, [200, 200, 200])
        deadline = time.time() + 30
        while self.held.closed < 2 and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual((self.held.opened, self.held.closed), (3, 2))
        self.held.hold = False
        for _ in range(3):
            self.assertEqual(one(), 200)
        self.assertEqual((self.held.opened, self.held.closed), (3, 2))  # all three on the kept connection

    def test_hanging_health_check_endpoint(self):
        """An endpoint that accepts but never answers fails its checks by
        timeout and leaves the rotation; the other serves everything."""
        m = f"127.0.0.1:{self.hang.port}"
        deadline, healthy = time.time() + 30, None
        while time.time() < deadline:
            healthy = harness.metric(self.metrics(), "tollgate_upstream_endpoint_healthy", cluster="hc", endpoint=m)
            if healthy == 0:
                break
            time.sleep(0.05)
        self.assertEqual(healthy, 0)
        for _ in range(6):
            r = requests.get(self.gateway.url("/whoami"), headers={"x-route": "checked"}, timeout=5)
            self.assertEqual(r.json(), {"name": "options"})

    @unittest.skipUnless(ipv6_loopback(), "[ipv6] no IPv6 loopback on this machine")
    def test_ipv6_listener(self):
        rc, out, err = harness.curl("-g", f"http://[::1]:{self.port6}/whoami")
        self.assertEqual((rc, json.loads(out or b"{}")), (0, {"name": "options"}), err)


if __name__ == "__main__":
    harness.main()
