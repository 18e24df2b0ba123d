"""Circuit breaking per cluster: past max_requests (in flight),
max_connections (open) or max_pending (waiting for a connection to open)
a request gets 503 at once with x-tollgate-overloaded: true (gRPC:
UNAVAILABLE), counted by cause, while other routes stay responsive; the
counts come back down, so the cluster serves again afterwards. Slow and
unreachable upstreams drive each limit."""
import concurrent.futures
import subprocess
import unittest

import requests

import harness


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
  - {{ name: hole, endpoints: [127.0.0.1:{cls.hole.port}], max_pending: 1, connect_timeout: 5s }}
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


    def assert_overloaded(self, r, cause):
        self.assertEqual(r.status_code, 503, r.text)
        self.assertEqual(r.headers.get("x-tollgate-overloaded"), "true")
        self.assertEqual(r.json()["error"], f"cluster {cause} reached")

    def overloaded_total(self, route, cause):
        text = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=10).text
        return harness.metric(text, "tollgate_overloaded_total", route=route, cause=cause)

    def test_max_requests(self):
        before = self.overloaded_total("slow", "max_requests")
        gate = harness.Gate(self.slow.port)
        held = [self.pool.submit(self.get, "slow", gate.path(i)) for i in range(2)]
        gate.wait_held(2)
        self.assert_overloaded(self.get("slow", "/whoami"), "max_requests")
        # refused while both are still in flight: at once, not after them
        self.assertFalse(any(f.done() for f in held))
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
        self.assertFalse(any(f.done() for f in held))
        gate.release()
        self.assertEqual([f.result().json()["released"] for f in held], [True, True])
        self.assertEqual(self.overloaded_total("slow", "max_requests"), before + 2)  # the HTTP and the gRPC refusal
        # the count came back down: two at once reach the upstream again
        again = harness.Gate(self.slow.port)
        futs = [self.pool.submit(self.get, "slow", again.path(i)) for i in range(2)]
        again.wait_held(2)
        again.release()
        self.assertEqual([f.result().status_code for f in futs], [200, 200])
        self.assertEqual(self.overloaded_total("slow", "max_requests"), before + 2)

    def test_max_connections(self):
        gate = harness.Gate(self.one.port)
        held = self.pool.submit(self.get, "one", gate.path())
        gate.wait_held(1)
        # the one connection is busy: a second would be needed
        self.assert_overloaded(self.get("one"), "max_connections")
        self.assertEqual(self.get("fast").status_code, 200)
        self.assertFalse(held.done())
        gate.release()
        self.assertEqual(held.result().status_code, 200)
        # the connection is back in the pool: the next request reuses it
        self.assertEqual(self.get("one").status_code, 200)
        self.assertEqual(self.overloaded_total("one", "max_connections"), 1)

    def test_max_pending(self):
        syn0 = harness.syn_sent_to(self.hole.port)  # the black hole's own filling connects
        first = self.pool.submit(self.get, "hole")  # its connect hangs: pending
        harness.wait_until(lambda: harness.syn_sent_to(self.hole.port) > syn0, what="the gateway's connect to hang")
        self.assert_overloaded(self.get("hole"), "max_pending")
        self.assertFalse(first.done())  # refused while the first still waits for its connect
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
    harness.main()
