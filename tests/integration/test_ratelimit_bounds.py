"""A rate_limit table is bounded (max_keys): a client that invents a new
key per request cannot grow the gateway's memory. Keys over their limit
are never evicted to make room (that would hand their owners a fresh
budget), so when only such keys remain the table is full and on_full
decides new keys: deny (429, the default) or allow (uncounted); either
way tollgate_ratelimit_table_full_total counts them."""

import requests

import harness


class RateLimitBoundsTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("bounded")
        cls.procs = [cls.app]
        cls.port, cls.aport = harness.free_port(), harness.free_port()
        cfg = f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.aport} }}
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
  - name: deny
    match: {{ headers: [{{ name: x-route, value: deny }}] }}
    cluster: app
    filters:
      - rate_limit: {{ key: "header:x-key", limit: 1, window: 1m, max_keys: 20 }}
  - name: allow
    match: {{ headers: [{{ name: x-route, value: allow }}] }}
    cluster: app
    filters:
      - rate_limit: {{ key: "header:x-key", limit: 1, window: 1m, max_keys: 20, on_full: allow }}
  - name: rest
    cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    def get(self, route, key):
        return requests.get(f"http://127.0.0.1:{self.port}/whoami", headers={"x-key": key, "x-route": route[1:]},
                            timeout=5)

    def table_full(self, route):
        m = requests.get(f"http://127.0.0.1:{self.aport}/metrics", timeout=5).text
        return harness.metric(m, "tollgate_ratelimit_table_full_total", route=route)

    def fill(self, prefix):
        for i in range(20):  # 20 keys, each over its limit of 1
            self.assertEqual(self.get(prefix, f"k{i}").status_code, 200)
            self.assertEqual(self.get(prefix, f"k{i}").status_code, 429)

    def test_full_table_denies_new_keys_and_keeps_limited_ones(self):
        self.fill("/deny")
        refused = [self.get("/deny", f"new{i}") for i in range(50)]
        self.assertTrue(all(r.status_code == 429 for r in refused), [r.status_code for r in refused])
        self.assertEqual(refused[0].json()["error"], "rate limiter is full")
        self.assertGreaterEqual(self.table_full("deny"), 50)
        for i in range(20):  # nobody got a fresh budget
            self.assertEqual(self.get("/deny", f"k{i}").status_code, 429)

    def test_full_table_on_full_allow(self):
        self.fill("/allow")
        before = self.table_full("allow")
        for i in range(30):
            self.assertEqual(self.get("/allow", f"new{i}").status_code, 200)
        self.assertGreaterEqual(self.table_full("allow") - before, 30)
        self.assertEqual(self.get("/allow", "k3").status_code, 429)


if __name__ == "__main__":
    harness.main()
