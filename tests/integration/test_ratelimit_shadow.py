"""rate_limit `mode: shadow` and `on_limit: tag`. Shadow: a limit tried in
production without refusing anyone. On the same traffic a shadow filter decides exactly as its
enforced twin (the same requests allowed, the same ones it would refuse),
never refuses, says so in the metrics (decision="shadow_limited"), in the
access log (rl_decision) and, if asked, in the RateLimit headers; switched
to enforce by a reload it keeps its counters, so the next request over the
limit is refused at once. Tag: what is over the limit goes upstream
marked with x-ratelimit-exceeded (the policy it is over), for the upstream
to decide; a client cannot send that header itself."""
import json
import os
import tempfile
import time
import unittest

import requests

import harness

ADMIN = {"X-Tollgate-Admin": "1"}


def config(port, admin, app, log, mode):
    return f"""
workers: 2
admin: {{ listen: 127.0.0.1:{admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
filters:
  - access_log: {{ path: {log}, format: json }}
routes:
  - name: tried
    match: {{ headers: [{{ name: x-route, value: tried }}] }}
    cluster: app
    filters: [{{ rate_limit: {{ key: "header:x-client", limit: 3, window: 1m, mode: {mode}, response_headers: true }} }}]
  - name: twin
    match: {{ headers: [{{ name: x-route, value: twin }}] }}
    cluster: app
    filters: [{{ rate_limit: {{ key: "header:x-client", limit: 3, window: 1m }} }}]
  - name: tagged
    match: {{ headers: [{{ name: x-route, value: tagged }}] }}
    cluster: app
    filters: [{{ rate_limit: {{ key: "header:x-client", limit: 2, window: 1m, on_limit: tag }} }}]
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{app}] }}
"""


class ShadowModeTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("shadowed")
        cls.procs = [cls.app]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.log = os.path.join(tempfile.mkdtemp(prefix="tg-shadow-"), "access.log")
        cls.gateway = harness.Gateway(config(cls.port, cls.admin, cls.app.port, cls.log, "shadow"), port=cls.port)

    def metrics(self):
        return requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text

    def decisions(self, route):
        m = self.metrics()
        return tuple(int(harness.metric(m, "tollgate_ratelimit_decisions_total", route=route, decision=d))
                     for d in ("allowed", "limited", "shadow_limited"))

    def wait_decisions(self, route, want):
        deadline, got = time.time() + 10, None
        while time.time() < deadline:
            got = self.decisions(route)
            if got == want:
                return
            time.sleep(0.02)
        self.assertEqual(got, want, route)

    def test_tag_marks_what_is_over_the_limit(self):
        s = requests.Session()
        seen = []
        for i in range(4):
            # a client claiming to be over the limit itself is not believed
            extra = {"x-ratelimit-exceeded": "forged"} if i == 0 else {}
            r = s.get(self.gateway.url("/echo/headers"), headers={"x-route": "tagged", "x-client": "t1", **extra},
                      timeout=5)
            self.assertEqual(r.status_code, 200)  # never refused
            seen.append(dict(r.json()["headers"]).get("x-ratelimit-exceeded"))
        self.assertEqual(seen, [None, None, '"default";q=2;w=60', '"default";q=2;w=60'])
        self.wait_decisions("tagged", (2, 0, 0))
        m = self.metrics()
        self.assertEqual(harness.metric(m, "tollgate_ratelimit_decisions_total", route="tagged", decision="tagged"), 2)

    def test_shadow_matches_its_enforced_twin_then_enforces_after_reload(self):
        s = requests.Session()
        tried = [s.get(self.gateway.url("/whoami"), headers={"x-route": "tried", "x-client": "c1"}, timeout=5)
                 for _ in range(6)]
        twin = [s.get(self.gateway.url("/whoami"), headers={"x-route": "twin", "x-client": "c1"}, timeout=5)
                for _ in range(6)]
        self.assertEqual([r.status_code for r in tried], [200] * 6)  # never refuses
        self.assertEqual([r.status_code for r in twin], [200] * 3 + [429] * 3)
        self.wait_decisions("twin", (3, 3, 0))
        self.wait_decisions("tried", (3, 0, 3))  # the same verdicts, none enforced
        # the RateLimit headers say what an enforced limit would
        self.assertEqual([r.headers["ratelimit"].split(";t=")[0] for r in tried[2:4]],
                         ['"default";r=0', '"default";r=0'])
        # the access log says which requests it would have refused
        deadline, lines = time.time() + 10, []
        while time.time() < deadline:
            if os.path.exists(self.log):
                lines = [json.loads(line) for line in open(self.log) if line.strip()]
                if all(len([x for x in lines if x["route"] == r]) == 6 for r in ("tried", "twin")):
                    break
            time.sleep(0.05)
        self.assertEqual([x["rl_decision"] for x in lines if x["route"] == "tried"],
                         ["allowed"] * 3 + ["shadow_limited"] * 3)
        self.assertEqual([x["rl_decision"] for x in lines if x["route"] == "twin"],
                         ["allowed"] * 3 + ["limited"] * 3)
        # enforce by reload: the counters carry over, c1 is over its limit
        with open(self.gateway.path, "w") as f:
            f.write(config(self.port, self.admin, self.app.port, self.log, "enforce"))
        r = requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers=ADMIN, timeout=10)
        self.assertEqual(r.json()["status"], "ok")
        deadline, code = time.time() + 10, None
        while time.time() < deadline:  # workers apply the new config on their next turn
            code = s.get(self.gateway.url("/whoami"), headers={"x-route": "tried", "x-client": "c1"},
                         timeout=5).status_code
            if code == 429:
                break
            time.sleep(0.05)
        self.assertEqual(code, 429)
        # a new client still has its full budget
        self.assertEqual(s.get(self.gateway.url("/whoami"), headers={"x-route": "tried", "x-client": "c2"},
                               timeout=5).status_code, 200)


if __name__ == "__main__":
    unittest.main()
