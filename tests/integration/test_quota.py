"""quota: a per-key budget per calendar day (or month), aligned to local
midnight in a time zone. The gateway's clock for quotas is set by the test
(the test hook TOLLGATE_QUOTA_CLOCK_FILE: a file holding the time) to four
seconds before a midnight in Berlin: the day's budget runs out, stays out
across a reload, and comes back when the test moves the clock past
midnight — over HTTP/1.1, HTTP/2 and gRPC, at any real hour."""
import os
import subprocess
import unittest
from datetime import datetime
from zoneinfo import ZoneInfo

import grpc
import requests

import harness

ADMIN = {"X-Tollgate-Admin": "1"}


# a local midnight in Berlin (summer time, UTC+2, far from a change), in June's quota month
MIDNIGHT = int(datetime(2026, 6, 15, 0, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp())


def set_clock(path, t):
    with open(path + ".tmp", "w") as f:
        f.write(f"{t}\n")
    os.replace(path + ".tmp", path)


class QuotaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("quota")

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def config(self):
        return f"""
workers: 2
admin: {{ listen: 127.0.0.1:{self.admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{self.port} }}]
routes:
  - name: monthly
    match: {{ path_prefix: /text }}
    cluster: app
    filters:
      - quota: {{ key: "header:x-user", limit: 2, period: month, tz: UTC, response_headers: true }}
  - name: daily
    cluster: app
    filters:
      - quota: {{ key: "header:x-user", limit: 3, period: day, tz: Europe/Berlin, response_headers: true }}
clusters: [{{ name: app, endpoints: [127.0.0.1:{self.app.port}] }}]
"""

    def get(self, user, path="/whoami"):
        return requests.get(f"http://127.0.0.1:{self.port}{path}", headers={"x-user": user}, timeout=5)

    def test_daily_budget_turns_over_at_local_midnight(self):
        self.port, self.admin = harness.free_port(), harness.free_port()
        clock = os.path.join(harness.tempfile.mkdtemp(prefix="tg-quota-clock-"), "now")
        set_clock(clock, MIDNIGHT - 4)  # the gateway's quota clock: 4 s before midnight
        gw = harness.Gateway(self.config(), port=self.port, env_extra={"TOLLGATE_QUOTA_CLOCK_FILE": clock})
        self.addCleanup(gw.stop)
        rs = [self.get("alice") for _ in range(4)]
        self.assertEqual([r.status_code for r in rs], [200, 200, 200, 429])
        self.assertEqual(rs[0].headers["ratelimit-policy"], '"quota";q=3;w=86400')
        self.assertEqual(rs[0].headers["ratelimit"], '"quota";r=2;t=4')
        self.assertEqual(rs[3].headers["retry-after"], "4")  # until midnight, not a whole day
        self.assertEqual(rs[3].json()["error"], "quota exceeded")
        self.assertEqual(self.get("bob").status_code, 200)  # another key
        # HTTP/2: the same budget
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                              "--http2-prior-knowledge", "-H", "x-user: alice", f"http://127.0.0.1:{self.port}/whoami"],
                             capture_output=True, text=True, timeout=10).stdout
        self.assertEqual(out, "2 429")
        # a reload keeps the count
        with open(gw.path + ".tmp", "w") as f:
            f.write(self.config() + "# reloaded\n")
        os.replace(gw.path + ".tmp", gw.path)
        r = requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers=ADMIN, timeout=10)
        self.assertEqual(r.json()["status"], "ok")
        set_clock(clock, MIDNIGHT - 1)
        self.assertEqual(self.get("alice").status_code, 429)  # the reloaded config kept the count
        # the day turns: the budget is back, a whole new day ahead
        set_clock(clock, MIDNIGHT + 1)
        r = self.get("alice")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers["ratelimit"], '"quota";r=2;t=86399')
        # the monthly quota is its own budget
        self.assertEqual([self.get("alice", "/text").status_code for _ in range(3)], [200, 200, 429])
        self.assertEqual(self.get("alice", "/text").headers["ratelimit-policy"], '"quota";q=2;w=2592000')
        # its own metric families, and the rate_limit names it used to count
        # under (kept as aliases for one release) say the same
        text = harness.scrape(self.admin)
        want = {("daily", "allowed"): 5, ("daily", "limited"): 3, ("monthly", "allowed"): 2, ("monthly", "limited"): 2}
        for (route, decision), n in want.items():
            self.assertEqual(harness.metric(text, "tollgate_quota_decisions_total", route=route, decision=decision), n)
            self.assertEqual(harness.metric(text, "tollgate_ratelimit_decisions_total", route=route,
                                            decision=decision), n)
        self.assertEqual(harness.metric(text, "tollgate_quota_table_full_total", route="daily"), 0)
        harness.assert_clean_exit(self, gw)

    def test_config_errors(self):
        port = harness.free_port()
        for body, said in (("{ limit: 3, period: week }", "period: 'week' is not one of day, month"),
                           ("{ limit: 3, period: day, tz: Mars/Olympus }", "tz: 'Mars/Olympus': unknown time zone"),
                           ("{ limit: 3, period: day, tz: ../../etc/passwd }", "not a time zone name"),
                           ("{ period: day }", "quota: missing required key 'limit'")):
            cfg = f"""
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
routes: [{{ name: r, cluster: app, filters: [{{ quota: {body} }}] }}]
clusters: [{{ name: app, endpoints: [127.0.0.1:{self.app.port}] }}]
"""
            path = os.path.join(harness.tempfile.mkdtemp(prefix="tg-quota-"), "t.yaml")
            with open(path, "w") as f:
                f.write(cfg)
            p = subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=10)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(said, p.stderr + p.stdout)


class QuotaGrpcTest(unittest.TestCase):
    """A day's budget on gRPC calls: RESOURCE_EXHAUSTED once it is spent."""

    def test_grpc(self):
        echo = harness.start_grpc_backend("quota-grpc")
        self.addCleanup(echo.stop)
        port = harness.free_port()
        gw = harness.Gateway(f"""
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
routes:
  - name: calls
    cluster: echo
    filters: [{{ quota: {{ key: "header:x-user", limit: 2, period: day, tz: Asia/Tokyo }} }}]
clusters: [{{ name: echo, protocol: h2c, endpoints: [127.0.0.1:{echo.port}] }}]
""", port=port)
        self.addCleanup(gw.stop)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            call = ch.unary_unary("/test.v1.Echo/Echo")
            md = (("x-user", "g"),)
            self.assertEqual([call(b"x", metadata=md, timeout=5) for _ in range(2)], [b"x", b"x"])
            with self.assertRaises(grpc.RpcError) as e:
                call(b"x", metadata=md, timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertEqual(call(b"y", metadata=(("x-user", "h"),), timeout=5), b"y")
        harness.assert_clean_exit(self, gw)


if __name__ == "__main__":
    harness.main()
