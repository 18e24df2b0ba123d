"""rate_limit by cost: a fixed cost per filter or per route, a cost the
client declares (clamped to [min_cost, max_cost]), and reconciling the
charge from a response header (FastAPI) or a gRPC trailer once the
response ends — estimate first, then correct — over HTTP/1.1, HTTP/2 and
gRPC. Each case shows what would happen without the feature: a request
that passes only because a charge was given back, one refused only
because a charge was raised."""
import subprocess

import grpc
import requests

import harness

SVC = "/test.v1.Echo/"


def policy(r):
    """The RateLimit remaining units of a response (draft header)."""
    v = r.headers.get("ratelimit", "")
    return int(v.split(";r=")[1].split(";")[0]) if ";r=" in v else None


class RateLimitCostTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("costly")
        cls.echo = harness.start_grpc_backend("cost-echo")
        cls.procs = [cls.app, cls.echo]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.gateway = harness.Gateway(f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
routes:
  - name: grpc
    match: {{ grpc_service: test.v1.Echo }}
    cluster: echo
    filters:
      - rate_limit: {{ key: "header:x-user", limit: 100, window: 1m, cost: 20, reconcile: "header:x-tokens-used" }}
  - name: chat
    match: {{ path_prefix: /usage }}
    cluster: app
    filters:
      - rate_limit:
          key: "header:x-user"
          limit: 100
          window: 1m
          cost: "header:x-estimate"
          min_cost: 5
          max_cost: 50
          reconcile: "header:x-tokens-used"
          response_headers: true
  - name: fixed
    cluster: app
    filters:
      - rate_limit: {{ key: "header:x-user", limit: 10, window: 1m, cost: 4, response_headers: true }}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}
  - {{ name: echo, protocol: h2c, endpoints: [127.0.0.1:{cls.echo.port}] }}
""", port=cls.port)

    def chat(self, user, estimate, tokens):
        return requests.get(self.gateway.url(f"/usage?tokens={tokens}"), timeout=5,
                            headers={"x-user": user, "x-estimate": str(estimate)})

    def test_fixed_cost_http1_and_http2(self):
        rs = [requests.get(self.gateway.url("/whoami"), headers={"x-user": "fixed-1"}, timeout=5) for _ in range(3)]
        self.assertEqual([r.status_code for r in rs], [200, 200, 429])
        self.assertEqual([policy(r) for r in rs[:2]], [6, 2])  # units, not requests
        self.assertEqual(rs[0].headers["ratelimit-policy"], '"default";q=10;w=60')
        # HTTP/2 (h2c prior knowledge): the same cost on the same counters
        codes = []
        for user in ("fixed-2", "fixed-2", "fixed-2", "fixed-1"):
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                                  "--http2-prior-knowledge", "-H", f"x-user: {user}", self.gateway.url("/whoami")],
                                 capture_output=True, text=True, timeout=10).stdout
            codes.append(out)
        self.assertEqual(codes, ["2 200", "2 200", "2 429", "2 429"])

    def test_declared_cost_is_clamped_and_reconciled(self):
        u = "chat-1"
        r = self.chat(u, 1000, 50)  # declared 1000: clamped to max_cost 50
        self.assertEqual((r.status_code, policy(r)), (200, 50))
        r = self.chat(u, 60, 10)    # 50 charged, it cost 10: 40 given back at the end
        self.assertEqual((r.status_code, policy(r)), (200, 0))
        r = self.chat(u, 40, 40)    # passes only because of the 40 given back
        self.assertEqual((r.status_code, policy(r)), (200, 0))
        r = self.chat(u, "lots", 1)  # not a number: min_cost 5, over the limit
        self.assertEqual(r.status_code, 429)
        self.assertEqual(r.headers["ratelimit"].split(";")[0], '"default"')
        # reconciled upwards: 5 declared, 90 used; 20 more no longer fit
        self.assertEqual(self.chat("chat-2", 1, 90).status_code, 200)
        self.assertEqual(self.chat("chat-2", 20, 0).status_code, 429)
        self.assertEqual(self.chat("chat-2", 5, 0).status_code, 200)  # 95 + 5
        # a response without the header keeps the estimate
        self.assertEqual(requests.get(self.gateway.url("/usage/none"), timeout=5,
                                      headers={"x-user": "chat-3", "x-estimate": "50"}).status_code, 404)
        self.assertEqual(self.chat("chat-3", 50, 50).status_code, 200)
        self.assertEqual(self.chat("chat-3", 5, 0).status_code, 429)

    def test_grpc_reconciled_from_a_trailer(self):
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as ch:
            usage = ch.unary_unary(SVC + "Usage")
            md = (("x-user", "grpc-1"),)
            # 20 charged per call, 1 used (the trailer): 8 calls fit in 100
            for _ in range(8):
                self.assertEqual(usage(b"1", metadata=md, timeout=5), b"done")
            # one that used 90: 8 + 90 = 98; the next estimate of 20 does not fit
            usage(b"90", metadata=md, timeout=5)
            with self.assertRaises(grpc.RpcError) as e:
                usage(b"1", metadata=md, timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)


class RouteCostTest(harness.GatewayTest):
    """One global limit, costed per route."""

    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("route-cost")
        cls.procs = [cls.app]
        cls.port = harness.free_port()
        cls.gateway = harness.Gateway(f"""
workers: 2
filters:
  - rate_limit: {{ key: "header:x-user", limit: 30, window: 1m, route_costs: {{ heavy: 10 }} }}
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
routes:
  - {{ name: heavy, match: {{ path_prefix: /text }}, cluster: app }}
  - {{ name: light, cluster: app }}
clusters: [{{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}]
""", port=cls.port)

    def test_route_costs(self):
        def get(path):
            return requests.get(self.gateway.url(path), headers={"x-user": "rc"}, timeout=5).status_code
        self.assertEqual([get("/text"), get("/text")], [200, 200])        # 20
        self.assertEqual([get("/whoami") for _ in range(10)], [200] * 10)  # 30
        self.assertEqual([get("/whoami"), get("/text")], [429, 429])


if __name__ == "__main__":
    harness.main()
