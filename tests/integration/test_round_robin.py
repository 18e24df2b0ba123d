"""Round-robin over three FastAPI backends with two workers: the cursor is
shared by all workers, so 300 requests land exactly 100/100/100 — whether
they come on one keep-alive connection or on many."""
import collections
import concurrent.futures

import requests

import harness


class RoundRobinTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.apps = [harness.start_app(f"rr{i}") for i in range(3)]
        cls.procs = list(cls.apps)
        cls.port = harness.free_port()
        cls.gateway = harness.Gateway(
            harness.simple_config(cls.port, [f"127.0.0.1:{a.port}" for a in cls.apps], workers=2), port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.finish()

    def test_even_spread_one_connection(self):
        s = requests.Session()
        counts = collections.Counter(s.get(self.gateway.url("/whoami"), timeout=5).json()["name"] for _ in range(300))
        self.assertEqual(counts, {"rr0": 100, "rr1": 100, "rr2": 100})

    def test_even_spread_many_connections(self):
        def one(_):
            return requests.get(self.gateway.url("/whoami"), timeout=5).json()["name"]
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            counts = collections.Counter(ex.map(one, range(300)))
        self.assertEqual(counts, {"rr0": 100, "rr1": 100, "rr2": 100})


if __name__ == "__main__":
    harness.main()
