"""The upstream pool adapts: without pool_size, a worker keeps as many idle
connections to an endpoint as the recent peak of requests in flight to it,
so load that comes back (200 concurrent HTTP/2 streams, over the old fixed
default of 64) finds its connections instead of opening one per request;
tollgate_upstream_connections_opened_total shows it. With an explicit
small pool_size the same load churns — the counter catches that too."""
import re
import subprocess

import requests

import harness


def opened(admin):
    text = requests.get(f"http://127.0.0.1:{admin}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(r'^tollgate_upstream_connections_opened_total\{[^}]*\} (\S+)$', text,
                                            re.M))


def load(port, n=2000):
    """n requests over 4 h2c connections x 50 concurrent streams."""
    p = subprocess.run(["h2load", "-n", str(n), "-c", "4", "-m", "50", f"http://127.0.0.1:{port}/whoami"],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", p.stdout)
    return int(m.group(2)) if m else 0


class AdaptivePoolTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("pool-app")
        cls.procs = [cls.app]
        cls.port, cls.port2, cls.admin = harness.free_port(), harness.free_port(), harness.free_port()
        cls.gateway = harness.Gateway(f"""
workers: 1
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners:
  - {{ name: adaptive, listen: 127.0.0.1:{cls.port} }}
  - {{ name: fixed, listen: 127.0.0.1:{cls.port2} }}
routes:
  - {{ name: fixed, match: {{ host: fixed.test }}, cluster: small }}
  - {{ name: adaptive, cluster: app }}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}
  - {{ name: small, endpoints: [127.0.0.1:{cls.app.port}], pool_size: 8 }}
""", port=cls.port)

    def test_no_churn_when_load_comes_back(self):
        self.assertEqual(load(self.port), 2000)  # warms the pool up to the peak
        before = opened(self.admin)
        self.assertEqual(load(self.port), 2000)
        churn = opened(self.admin) - before
        # 200 streams in flight: the fixed default of 64 opened >1000 connections here
        self.assertLess(churn, 20, f"{churn} connections opened for 2000 requests")
        print(f"adaptive: {churn} connections opened for 2000 requests")

    def test_explicit_small_pool_churns(self):
        before = opened(self.admin)
        p = subprocess.run(["h2load", "-n", "1000", "-c", "4", "-m", "50", "-H", "host: fixed.test",
                            f"http://127.0.0.1:{self.port2}/whoami"], capture_output=True, text=True, timeout=120)
        self.assertIn("1000 succeeded", p.stdout)
        churn = opened(self.admin) - before
        print(f"pool_size 8: {churn} connections opened for 1000 requests")
        self.assertGreater(churn, 100)  # pool_size: 8 caps what is kept: more than the adaptive pool's bound


if __name__ == "__main__":
    harness.main()
