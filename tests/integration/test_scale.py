"""Past what used to be compile-time caps (1024 routes, 2048 endpoints):
5,000 routes and 2,500 endpoints in one cluster load, route, count and
reload; tollgate -t takes the file; the slots and the counters' memory
are in /metrics, and the memory follows the slots used, not the slots
numbered."""
import os
import subprocess
import time
import unittest

import requests

import harness

ADMIN = {"X-Tollgate-Admin": "1"}


class ScaleTest(unittest.TestCase):
    N_ROUTES, N_ENDPOINTS = 5000, 2500

    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("scale")

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def config(self, prefix):
        routes = "\n".join(f"  - {{ name: {prefix}{i}, match: {{ host: {prefix}{i}.test }}, cluster: app }}"
                           for i in range(self.N_ROUTES))
        many = ", ".join(f"'127.0.0.2:{20000 + i}'" for i in range(self.N_ENDPOINTS))
        return f"""
workers: 2
admin: {{ listen: 127.0.0.1:{self.admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{self.port} }}]
routes:
{routes}
  - {{ name: many, match: {{ host: many.test }}, cluster: many, timeout: 5s }}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{self.app.port}] }}
  - {{ name: many, endpoints: [{many}] }}
"""

    def metrics(self):
        return requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=60).text

    def get(self, host):
        return requests.get(self.gw.url("/whoami"), headers={"Host": host}, timeout=30)

    def test_many_routes_and_endpoints(self):
        self.port, self.admin = harness.free_port(), harness.free_port()
        self.gw = harness.Gateway(self.config("a"), port=self.port)
        self.addCleanup(self.gw.stop)
        last = f"a{self.N_ROUTES - 1}"
        for host in (f"{last}.test", "a0.test", f"{last}.test"):
            self.assertEqual(self.get(host).status_code, 200, host)
        self.assertEqual(self.get("nowhere.test").status_code, 404)
        self.assertEqual(self.get("many.test").status_code, 503)  # no endpoint of `many` listens
        m = self.metrics()
        self.assertEqual(harness.metric(m, "tollgate_requests_total", route=last, cluster="app", code="2xx"), 2)
        self.assertEqual(harness.metric(m, "tollgate_requests_total", route="a0", cluster="app", code="2xx"), 1)
        self.assertGreaterEqual(harness.metric(m, "tollgate_slots", table="routes"), self.N_ROUTES + 1)
        self.assertGreaterEqual(harness.metric(m, "tollgate_slots", table="endpoints"), self.N_ENDPOINTS + 1)
        self.assertIn(f'endpoint="127.0.0.2:{20000 + self.N_ENDPOINTS - 1}"', m)
        # counters were made for the few slots used: a chunk of 256 routes
        # per worker that counted, not 5,000 routes' worth
        self.assertLess(harness.metric(m, "tollgate_stats_memory_bytes"), 2 * 1024 * 1024)

        t0 = time.monotonic()
        r = requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers=ADMIN, timeout=60)
        self.assertEqual(r.json()["status"], "ok", r.text)
        with open(self.gw.path + ".tmp", "w") as f:
            f.write(self.config("b"))
        os.replace(self.gw.path + ".tmp", self.gw.path)
        r = requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers=ADMIN, timeout=60)
        self.assertEqual(r.json()["status"], "ok", r.text)
        print(f"two reloads of {self.N_ROUTES} routes: {time.monotonic() - t0:.2f} s (not a verdict)")
        self.assertEqual(self.get(f"b{self.N_ROUTES - 1}.test").status_code, 200)
        self.assertEqual(self.get(f"{last}.test").status_code, 404)

        p = subprocess.run([harness.BIN, "-t", "-c", self.gw.path], capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        rc, out = self.gw.stop()
        self.assertEqual(rc, 0, out[-3000:])
        for marker in harness.SANITIZER_MARKERS:
            self.assertNotIn(marker, out)


if __name__ == "__main__":
    harness.main()
