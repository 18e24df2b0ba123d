"""Load balancing: `lb: least_request` (the power of two choices on the
requests in flight, counted over all workers) and `lb: peak_ewma` (the
same, weighed by each endpoint's latency average) send less to an
endpoint while it is slow — here one of three uvicorn instances answering ten to a
hundred times slower — where round_robin gives it its third whatever; `lb:
random` spreads over every endpoint. Shares are counted from the
instances' own x-upstream headers."""
import collections
import concurrent.futures

import requests

import harness

N = 90


class LoadBalancingTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.fast = [harness.start_app(f"fast{i}") for i in range(2)]
        cls.slow = harness.start_app("slow", env_extra={"APP_DELAY": "0.25"})
        cls.procs = [*cls.fast, cls.slow]
        eps = ", ".join(f"127.0.0.1:{a.port}" for a in (*cls.fast, cls.slow))
        cls.start_gateway(f"""
routes:
  - {{ name: lr, match: {{ headers: [{{ name: x-lb, value: least }}] }}, cluster: least }}
  - {{ name: rand, match: {{ headers: [{{ name: x-lb, value: random }}] }}, cluster: random }}
  - {{ name: ewma, match: {{ headers: [{{ name: x-lb, value: ewma }}] }}, cluster: ewma }}
  - {{ name: rr, cluster: rr }}
clusters:
  - {{ name: least, lb: least_request, endpoints: [{eps}] }}
  - {{ name: random, lb: random, endpoints: [{eps}] }}
  - {{ name: ewma, lb: peak_ewma, endpoints: [{eps}] }}
  - {{ name: rr, endpoints: [{eps}] }}
""")

    @classmethod
    def tearDownClass(cls):
        cls.finish()

    def shares(self, lb, concurrency):
        def one(_):
            r = requests.get(self.gateway.url("/whoami"), headers={"x-lb": lb}, timeout=30)
            self.assertEqual(r.status_code, 200)
            return r.headers["x-upstream"]
        with concurrent.futures.ThreadPoolExecutor(concurrency) as ex:
            return collections.Counter(ex.map(one, range(N)))

    def test_least_request_sends_less_to_a_slow_endpoint(self):
        rr = self.shares("roundrobin", 6)
        self.assertEqual(rr["slow"], N // 3)  # round_robin: its third, exactly (one cursor for all workers)
        least = self.shares("least", 6)
        self.assertEqual(sum(least.values()), N)
        self.assertLess(least["slow"], N // 4, least)  # far under its third: it is busy while the others are free
        self.assertGreater(least["fast0"] + least["fast1"], N * 3 // 4, least)

    def test_peak_ewma_sends_less_to_a_slow_endpoint(self):
        """Once it has answered slowly, its latency average outweighs the
        others' whatever their load: it gets a try now and then, no more."""
        got = self.shares("ewma", 6)
        self.assertEqual(sum(got.values()), N)
        self.assertLess(got["slow"], N // 4, got)
        self.assertGreater(got["fast0"], N // 5, got)  # the fast ones share the rest
        self.assertGreater(got["fast1"], N // 5, got)

    def test_random_spreads_over_every_endpoint(self):
        got = self.shares("random", 6)
        self.assertEqual(sum(got.values()), N)
        for name in ("fast0", "fast1", "slow"):
            self.assertGreater(got[name], N // 10, got)


if __name__ == "__main__":
    harness.main()
