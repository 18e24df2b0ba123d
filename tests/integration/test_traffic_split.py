"""Traffic splitting: a route's weighted clusters share its requests
exactly (one smooth weighted round-robin sequence for all workers), a
header pins a request to a cluster, a weight of 0 takes pinned requests
only, the split holds across a reload, and endpoints carry weights of
their own. Counted by the upstream that answered (x-upstream)."""
import collections
import concurrent.futures
import os
import signal
import subprocess
import tempfile
import time
import unittest

import requests

import harness


def count(url, n, threads=4, headers=None):
    """n GETs over `threads` keep-alive connections; answers by upstream."""
    def worker(k):
        s = requests.Session()
        c = collections.Counter()
        for _ in range(k):
            r = s.get(url, headers=headers or {}, timeout=10)
            assert r.status_code == 200, r.status_code
            c[r.headers["x-upstream"]] += 1
        return c
    total = collections.Counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for c in pool.map(worker, [n // threads] * threads):
            total += c
    return total


class TrafficSplitTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.v1, cls.v2, cls.a, cls.b = (harness.start_app(n) for n in ("v1", "v2", "ep-a", "ep-b"))
        cls.procs = [cls.v1, cls.v2, cls.a, cls.b]
        cls.port = harness.free_port()
        cls.gateway = harness.Gateway(cls.config(95, 5), port=cls.port)

    @classmethod
    def config(cls, w1, w2):
        return f"""
workers: 2
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
clusters:
  - {{ name: v1, endpoints: [127.0.0.1:{cls.v1.port}] }}
  - {{ name: v2, endpoints: [127.0.0.1:{cls.v2.port}] }}
  - name: weighted
    endpoints:
      - {{ address: 127.0.0.1:{cls.a.port}, weight: 3 }}
      - 127.0.0.1:{cls.b.port}
routes:
  - name: canary
    match: {{ path_prefix: /whoami }}
    clusters:
      - {{ name: v1, weight: {w1} }}
      - {{ name: v2, weight: {w2}, headers: [{{ name: x-canary, value: "1" }}] }}
  - name: dark
    match: {{ path_prefix: /items }}
    clusters:
      - {{ name: v1, weight: 1 }}
      - {{ name: v2, weight: 0, headers: [{{ name: x-dark }}] }}
  - name: weighted
    match: {{ path_prefix: /stats }}
    cluster: weighted
"""

    def test_1_split_is_exact(self):
        c = count(self.gateway.url("/whoami"), 10000)
        self.assertEqual(sum(c.values()), 10000)
        # exact over every period of 100 requests, so exactly 95% / 5%
        self.assertEqual(c["v1"], 9500, c)
        self.assertEqual(c["v2"], 500, c)

    def test_2_header_pins(self):
        c = count(self.gateway.url("/whoami"), 200, headers={"x-canary": "1"})
        self.assertEqual(c, {"v2": 200})
        c = count(self.gateway.url("/whoami"), 200, headers={"x-canary": "0"})  # another value: the weights
        self.assertEqual(c, {"v1": 190, "v2": 10})

    def test_3_weight_zero_takes_pinned_requests_only(self):
        self.assertEqual(count(self.gateway.url("/items"), 100), {"v1": 100})
        self.assertEqual(count(self.gateway.url("/items"), 100, headers={"x-dark": "yes"}), {"v2": 100})

    def test_4_endpoint_weights(self):
        c = count(self.gateway.url("/stats"), 400)
        self.assertEqual(c, {"ep-a": 300, "ep-b": 100})

    def test_5_split_survives_reloads(self):
        try:
            for w1, w2 in ((50, 50), (80, 20)):
                with open(self.gateway.path, "w") as f:
                    f.write(self.config(w1, w2))
                before = self.gateway.proc.output().count("configuration reloaded")
                self.gateway.proc.p.send_signal(signal.SIGHUP)
                deadline = time.time() + 30
                while time.time() < deadline and self.gateway.proc.output().count("configuration reloaded") == before:
                    time.sleep(0.05)
                c = count(self.gateway.url("/whoami"), 1000)
                self.assertEqual(c, {"v1": w1 * 10, "v2": w2 * 10})
        finally:
            with open(self.gateway.path, "w") as f:
                f.write(self.config(95, 5))
            self.gateway.proc.p.send_signal(signal.SIGHUP)


class SplitConfigErrorsTest(unittest.TestCase):
    def check(self, body, want, clusters="[{ name: c1, endpoints: [127.0.0.1:9001] }, "
                                         "{ name: c2, endpoints: [127.0.0.1:9002] }]"):
        d = tempfile.mkdtemp(prefix="tg-split-")
        p = os.path.join(d, "t.yaml")
        with open(p, "w") as f:
            f.write(f"listeners: [{{ name: a, listen: 127.0.0.1:8080 }}]\nclusters: {clusters}\n" + body)
        r = subprocess.run([harness.BIN, "-t", "-c", p], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(want, r.stderr)

    def test_errors(self):
        self.check("routes: [{ name: r, cluster: c1, clusters: [{ name: c2 }] }]\n",
                   "t.yaml:3:44: route 'r': give cluster or clusters, not both")
        self.check("routes: [{ name: r, clusters: [{ name: c1, weight: 0 }] }]\n",
                   "t.yaml:3:31: clusters: at least one weight must be above 0")
        self.check("routes: [{ name: r, clusters: [{ name: c3 }] }]\n", "t.yaml:3:40: route 'r': unknown cluster 'c3'")
        self.check("routes: [{ name: r, clusters: [{ name: c1, weight: 10001 }] }]\n", "weight: '10001'")
        self.check("routes: [{ name: r, clusters: [] }]\n", "clusters: give 1 to 16 clusters")
        self.check("routes: [{ name: r }]\n", "route: missing required key 'cluster'")
        self.check("routes: [{ name: r, cluster: w }]\n", "t.yaml:2:67: endpoint weight: '0' is not an integer in [1, 10000]",
                   clusters="[{ name: w, endpoints: [{ address: 127.0.0.1:1, weight: 0 }] }]")


if __name__ == "__main__":
    harness.main()
