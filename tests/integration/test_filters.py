"""Filter chains through the real binary: auth (bearer tokens, API keys in
a header or the query string, allow-lists, identity forwarded and not
spoofable, credentials stripped) and rate_limit (429 after exactly N, with
Retry-After and RateLimit fields; exact under a concurrent hammer across
workers; keyed by the auth identity)."""
import concurrent.futures
import os
import re
import tempfile

import requests

import harness


class FilterTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("filtered")
        cls.procs = [cls.app]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        d = tempfile.mkdtemp(prefix="tg-tokens-")
        with open(os.path.join(d, "tokens.txt"), "w") as f:
            f.write("# name token\nbob t-bob\n\ncarol t-carol\n")
        os.environ["TG_TEST_ALICE_TOKEN"] = "t-alice"
        cfg = f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.admin} }}
filters:
  - auth:
      bearer_tokens: [{{ name: alice, token: "${{TG_TEST_ALICE_TOKEN}}" }}]
      bearer_tokens_file: {d}/tokens.txt
      api_keys: {{ header: x-api-key, query: api_key, keys: [{{ name: svc, key: k-svc }}] }}
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
  - name: admin-only
    match: {{ path_prefix: /items }}
    cluster: app
    filters:
      - auth: {{ allow: [alice] }}
  - name: limited
    match: {{ path_prefix: /status }}
    cluster: app
    filters:
      - rate_limit: {{ key: identity, limit: 5, window: 1m, response_headers: true }}
  - name: plans
    match: {{ path_prefix: /whoami }}
    cluster: app
    filters:
      - rate_limit:
          key: identity
          limit: 2
          window: 1m
          response_headers: true
          overrides:
            - {{ name: partner, identities: [alice], limit: 4, window: 1m }}
            - {{ name: trial, identities: [carol, alice], limits: [{{ limit: 1, window: 1m }}] }}
  - name: hammered
    match: {{ path_prefix: /text }}
    cluster: app
    filters:
      - rate_limit: {{ key: route, limits: [{{ limit: 40, window: 1m }}, {{ limit: 1000, window: 1h }}], header_style: legacy }}
  - name: open
    cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    def get(self, path, headers=None):
        return requests.get(self.gateway.url(path), headers=headers or {}, timeout=5)

    def echoed(self, r):
        self.assertEqual(r.status_code, 200, r.text)
        return {k: v for k, v in r.json()["headers"]}

    def test_missing_and_wrong_credentials_401(self):
        r = self.get("/echo/headers")
        self.assertEqual(r.status_code, 401)
        self.assertEqual(r.headers["www-authenticate"], 'Bearer realm="tollgate"')
        self.assertEqual(r.json(), {"error": "missing credentials", "status": 401})
        r = self.get("/echo/headers", {"Authorization": "Bearer nope"})
        self.assertEqual(r.status_code, 401)
        self.assertEqual(r.json()["error"], "invalid credentials")
        r = self.get("/echo/headers", {"x-api-key": "nope"})
        self.assertEqual(r.status_code, 401)
        m = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text
        line = next(l for l in m.splitlines() if l.startswith('tollgate_auth_failures_total{route="open"}'))
        self.assertGreaterEqual(int(line.split()[-1]), 3)

    def test_bearer_token_identity_forwarded_and_stripped(self):
        h = self.echoed(self.get("/echo/headers", {"Authorization": "Bearer t-alice", "x-auth-identity": "root"}))
        self.assertEqual(h["x-auth-identity"], "alice")  # the client's copy was dropped
        self.assertNotIn("authorization", h)
        h = self.echoed(self.get("/echo/headers", {"Authorization": "Bearer t-carol"}))  # from the file
        self.assertEqual(h["x-auth-identity"], "carol")

    def test_api_key_header_and_query(self):
        h = self.echoed(self.get("/echo/headers", {"x-api-key": "k-svc"}))
        self.assertEqual(h["x-auth-identity"], "svc")
        self.assertNotIn("x-api-key", h)
        r = self.get("/echo/headers?a=1&api_key=k-svc&b=2")
        self.assertEqual(self.echoed(r)["x-auth-identity"], "svc")
        self.assertEqual(r.json()["query"], "a=1&b=2")  # the key never reaches the upstream

    def test_allow_list_403(self):
        r = self.get("/items", {"Authorization": "Bearer t-bob"})
        self.assertEqual(r.status_code, 403)
        self.assertEqual(r.json(), {"error": "not allowed", "status": 403})
        r = self.get("/items", {"Authorization": "Bearer t-alice"})
        self.assertEqual(r.status_code, 200)

    def test_rate_limit_after_exactly_n_per_identity(self):
        bob = {"Authorization": "Bearer t-bob"}
        codes, remaining = [], []
        for _ in range(5):
            r = self.get("/status/200", bob)
            codes.append(r.status_code)
            self.assertEqual(r.headers["ratelimit-policy"], '"default";q=5;w=60')
            m = re.fullmatch(r'"default";r=(\d+);t=(\d+)', r.headers["ratelimit"])
            self.assertIsNotNone(m, r.headers["ratelimit"])
            remaining.append(int(m.group(1)))
            self.assertTrue(1 <= int(m.group(2)) <= 60, r.headers["ratelimit"])  # seconds until a slot frees
        self.assertEqual(codes, [200] * 5)
        self.assertEqual(remaining, [4, 3, 2, 1, 0])  # each request spends one of the 5
        r = self.get("/status/200", bob)
        self.assertEqual(r.status_code, 429)
        self.assertEqual(r.json(), {"error": "rate limited", "status": 429})
        self.assertGreaterEqual(int(r.headers["retry-after"]), 1)
        self.assertEqual(r.headers["ratelimit-policy"], '"default";q=5;w=60')
        self.assertTrue(r.headers["ratelimit"].startswith('"default";r=0;t='))
        # another identity has its own budget
        self.assertEqual(self.get("/status/200", {"Authorization": "Bearer t-carol"}).status_code, 200)

    def test_plans_by_identity(self):
        """overrides pick a limit set by identity (first match wins: alice is
        a partner, not a trial user), each with its own counters and its
        name in the RateLimit headers; everyone else gets the default."""
        def codes(token, n):
            rs = [self.get("/whoami", {"Authorization": f"Bearer {token}"}) for _ in range(n)]
            return [r.status_code for r in rs], rs
        got, rs = codes("t-alice", 5)
        self.assertEqual(got, [200] * 4 + [429])
        self.assertEqual(rs[0].headers["ratelimit-policy"], '"partner";q=4;w=60')
        got, rs = codes("t-carol", 2)
        self.assertEqual(got, [200, 429])
        self.assertEqual(rs[0].headers["ratelimit-policy"], '"trial";q=1;w=60')
        got, rs = codes("t-bob", 3)
        self.assertEqual(got, [200, 200, 429])
        self.assertEqual(rs[0].headers["ratelimit-policy"], '"default";q=2;w=60')

    def test_concurrent_hammer_never_over_admits(self):
        def one(_):
            return requests.get(self.gateway.url("/text"), headers={"x-api-key": "k-svc"}, timeout=10)
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            rs = list(ex.map(one, range(200)))
        ok = [r for r in rs if r.status_code == 200]
        limited = [r for r in rs if r.status_code == 429]
        self.assertEqual(len(ok), 40)
        self.assertEqual(len(limited), 160)
        self.assertEqual(limited[0].headers["ratelimit-limit"], "40")  # legacy fields
        # the decisions are counted per route
        m = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text
        self.assertIn('tollgate_ratelimit_decisions_total{route="hammered",decision="allowed"} 40', m)
        self.assertIn('tollgate_ratelimit_decisions_total{route="hammered",decision="limited"} 160', m)
        self.assertEqual(limited[0].headers["ratelimit-remaining"], "0")
        self.assertIn("ratelimit-reset", limited[0].headers)


if __name__ == "__main__":
    harness.main()
