"""rate_limit `mode: shadow`, `on_limit: tag` and plans, over HTTP/1.1,
HTTP/2 and gRPC. Shadow: a limit tried in
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
import subprocess
import tempfile
import time

import grpc
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
        deadline, got = time.time() + 30, None
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
        deadline, lines = time.time() + 30, []
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
        deadline, code = time.time() + 30, None
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


class OverHttp2AndGrpcTest(harness.GatewayTest):
    """The same features over HTTP/2 and gRPC: shadow mode (counted, never
    refused), on_limit: tag (the marked call reaches the service with the
    header as metadata), and plans by identity (a RESOURCE_EXHAUSTED at the
    plan's limit, not the default's)."""

    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("shadow-h2")
        cls.echo = harness.start_grpc_backend("shadow-grpc")
        cls.procs = [cls.app, cls.echo]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.gateway = harness.Gateway(f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
routes:
  - name: g-shadow
    match: {{ grpc_service: test.v1.Echo, grpc_method: Who }}
    cluster: echo
    filters: [{{ rate_limit: {{ key: "header:x-client", limit: 2, window: 1m, mode: shadow }} }}]
  - name: g-tag
    match: {{ grpc_service: test.v1.Echo, grpc_method: Echo }}
    cluster: echo
    filters: [{{ rate_limit: {{ key: "header:x-client", limit: 1, window: 1m, on_limit: tag }} }}]
  - name: g-plans
    match: {{ grpc_service: test.v1.Echo, grpc_method: Usage }}
    cluster: echo
    filters:
      - auth: {{ bearer_tokens: [{{ name: pro-client, token: t-pro }}, {{ name: free-client, token: t-free }}] }}
      - rate_limit:
          key: identity
          limit: 1
          window: 1m
          overrides: [{{ name: pro, identities: [pro-client], limit: 3, window: 1m }}]
  - name: g-other
    match: {{ grpc_service: test.v1.Echo }}
    cluster: echo
  - name: h2-shadow
    cluster: app
    filters: [{{ rate_limit: {{ key: "header:x-client", limit: 1, window: 1m, mode: shadow, response_headers: true }} }}]
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}
  - {{ name: echo, protocol: h2c, endpoints: [127.0.0.1:{cls.echo.port}] }}
""", port=cls.port)

    def decisions(self, route):
        m = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text
        return {d: harness.metric(m, "tollgate_ratelimit_decisions_total", route=route, decision=d)
                for d in ("allowed", "limited", "shadow_limited", "tagged")}

    def test_grpc(self):
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as ch:
            who = ch.unary_unary("/test.v1.Echo/Who")
            echo = ch.unary_unary("/test.v1.Echo/Echo")
            usage = ch.unary_unary("/test.v1.Echo/Usage")
            metadata = ch.unary_unary("/test.v1.Echo/Metadata")
            md = (("x-client", "g1"),)
            self.assertEqual([who(b"", metadata=md, timeout=5) for _ in range(4)], [b"shadow-grpc"] * 4)
            self.assertEqual(self.decisions("g-shadow"),
                             {"allowed": 2, "limited": 0, "shadow_limited": 2, "tagged": 0})
            echo(b"a", metadata=md, timeout=5)
            self.assertNotIn("x-ratelimit-exceeded", metadata(b"", timeout=5).decode())
            echo(b"b", metadata=md + (("x-ratelimit-exceeded", "forged"),), timeout=5)  # over: tagged by us
            seen = metadata(b"", timeout=5).decode()
            self.assertIn("('x-ratelimit-exceeded', '\"default\";q=1;w=60')", seen)
            self.assertNotIn("forged", seen)
            pro = (("authorization", "Bearer t-pro"),)
            self.assertEqual([usage(b"1", metadata=pro, timeout=5) for _ in range(3)], [b"done"] * 3)
            with self.assertRaises(grpc.RpcError) as e:
                usage(b"1", metadata=pro, timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            free = (("authorization", "Bearer t-free"),)
            usage(b"1", metadata=free, timeout=5)
            with self.assertRaises(grpc.RpcError) as e:
                usage(b"1", metadata=free, timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

    def test_http2_shadow(self):
        outs = []
        for _ in range(3):
            outs.append(subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-", "--http2-prior-knowledge",
                                        "-H", "x-client: h2", self.gateway.url("/whoami")],
                                       capture_output=True, text=True, timeout=10).stdout.lower())
        self.assertTrue(all(o.startswith("http/2 200") for o in outs), outs)
        self.assertIn('ratelimit: "default";r=0', outs[1])  # what an enforced limit would say
        self.assertEqual(self.decisions("h2-shadow")["shadow_limited"], 2)


if __name__ == "__main__":
    harness.main()
