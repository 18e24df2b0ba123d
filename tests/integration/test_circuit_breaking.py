"""Circuit breaking per cluster: past max_requests (in flight),
max_connections (open) or max_pending (waiting for a connection to open)
a request gets 503 at once with x-tollgate-overloaded: true (gRPC:
UNAVAILABLE), counted by cause, while other routes stay responsive; the
counts come back down, so the cluster serves again afterwards. Slow and
unreachable upstreams drive each limit."""
import concurrent.futures
import json
import subprocess
import time
import unittest

import requests

import harness


def app_stats(app):
    return requests.get(f"http://127.0.0.1:{app.port}/stats", timeout=10).json()


class CircuitBreakingTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.slow, cls.one, cls.fast = harness.start_app("cb-slow"), harness.start_app("cb-one"), harness.start_app("cb-fast")
        cls.hole = harness.BlackHole()
        cls.procs = [cls.slow, cls.one, cls.fast]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        route = lambda name: (f"  - {{ name: {name}, match: {{ headers: [{{ name: x-cluster, value: {name} }}] }}, "
                              f"cluster: {name} }}\n")
        cfg = f"""
workers: 1
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
clusters:
  - {{ name: slow, protocol: http1, endpoints: [127.0.0.1:{cls.slow.port}], max_requests: 2 }}
  - {{ name: one, endpoints: [127.0.0.1:{cls.one.port}], max_connections: 1 }}
  - {{ name: hole, endpoints: [127.0.0.1:{cls.hole.port}], max_pending: 1, connect_timeout: 1500ms }}
  - {{ name: fast, endpoints: [127.0.0.1:{cls.fast.port}] }}
routes:
{route("slow")}{route("one")}{route("hole")}{route("fast")}"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)
        cls.pool = concurrent.futures.ThreadPoolExecutor(8)

    @classmethod
    def tearDownClass(cls):
        cls.pool.shutdown(wait=True)
        cls.hole.stop()
        cls.finish()

    def get(self, cluster, path="/whoami", **kw):
        return requests.get(self.gateway.url(path), headers={"x-cluster": cluster, **kw.pop("headers", {})},
                            timeout=20, **kw)

    def wait_started(self, app, n):
        deadline = time.time() + 10
        while app_stats(app)["slow_started"] < n:
            self.assertLess(time.time(), deadline, "slow requests did not reach the upstream")
            time.sleep(0.02)

    def assert_overloaded(self, r, cause):
        self.assertEqual(r.status_code, 503, r.text)
        self.assertEqual(r.headers.get("x-tollgate-overloaded"), "true")
        self.assertEqual(r.json()["error"], f"cluster {cause} reached")

    def overloaded_total(self, route, cause):
        text = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=10).text
        return harness.metric(text, "tollgate_overloaded_total", route=route, cause=cause)

    def test_max_requests(self):
        start = app_stats(self.slow)["slow_started"]
        held = [self.pool.submit(self.get, "slow", "/slow?delay=2") for _ in range(2)]
        self.wait_started(self.slow, start + 2)
        t0 = time.monotonic()
        self.assert_overloaded(self.get("slow", "/slow?delay=0"), "max_requests")
        self.assertLess(time.monotonic() - t0, 1.0)  # at once, not after the slow ones
        # gRPC gets UNAVAILABLE, with the same header
        rc, out, err = harness.curl("--http2-prior-knowledge", "-sS", "-D", "-", "-o", "/dev/null",
                                    "-H", "content-type: application/grpc", "-H", "x-cluster: slow",
                                    "--data-binary", "", self.gateway.url("/x.Y/Z"))
        head = out.decode().lower()
        self.assertEqual(rc, 0, err)
        self.assertIn("grpc-status: 14", head)
        self.assertIn("x-tollgate-overloaded: true", head)
        # the gateway and the other clusters stay responsive meanwhile
        self.assertEqual(self.get("fast").status_code, 200)
        self.assertEqual([f.result().status_code for f in held], [200, 200])
        self.assertGreaterEqual(self.overloaded_total("slow", "max_requests"), 2)
        # the count came back down: two at once pass again
        again = [self.pool.submit(self.get, "slow", "/slow?delay=0.2") for _ in range(2)]
        self.assertEqual([f.result().status_code for f in again], [200, 200])

    def test_max_connections(self):
        start = app_stats(self.one)["slow_started"]
        held = self.pool.submit(self.get, "one", "/slow?delay=2")
        self.wait_started(self.one, start + 1)
        # the one connection is busy: a second would be needed
        self.assert_overloaded(self.get("one"), "max_connections")
        self.assertEqual(self.get("fast").status_code, 200)
        self.assertEqual(held.result().status_code, 200)
        # the connection is back in the pool: the next request reuses it
        self.assertEqual(self.get("one").status_code, 200)
        self.assertEqual(self.overloaded_total("one", "max_connections"), 1)

    def test_max_pending(self):
        first = self.pool.submit(self.get, "hole")  # its connect hangs: pending
        time.sleep(0.3)
        t0 = time.monotonic()
        self.assert_overloaded(self.get("hole"), "max_pending")
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(self.get("fast").status_code, 200)
        self.assertEqual(first.result().status_code, 504)  # connect timed out
        # no longer pending: the next one waits for its own connect (and times out), not refused
        self.assertEqual(self.get("hole").status_code, 504)
        self.assertEqual(self.overloaded_total("hole", "max_pending"), 1)


class BreakerConfigTest(unittest.TestCase):
    def test_bounds(self):
        import os
        import tempfile
        d = tempfile.mkdtemp(prefix="tg-cb-")
        p = os.path.join(d, "t.yaml")
        with open(p, "w") as f:
            f.write("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\n"
                    "clusters: [{ name: c, endpoints: [127.0.0.1:9000], max_requests: 0, max_pendng: 3 }]\n")
        r = subprocess.run([harness.BIN, "-t", "-c", p], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("max_requests: '0' is not an integer in [1, 1000000]", r.stderr)
        self.assertIn("unknown key 'max_pendng' in cluster; did you mean 'max_pending'?", r.stderr)


if __name__ == "__main__":
    unittest.main()
