"""Load balancing: `lb: least_request` (the power of two choices on the
requests in flight, counted over all workers) and `lb: peak_ewma` (the
same, weighed by each endpoint's latency average) send less to an
endpoint while it is slow — here one of three uvicorn instances answering ten to a
hundred times slower — where round_robin gives it its third whatever; `lb:
random` spreads over every endpoint. Shares are counted from the
instances' own x-upstream headers.

Consistent hashing (`ring_hash`, `maglev`): each key — a header, a
cookie, the path — goes to one endpoint, from any connection and worker,
before and after a reload; keys spread over every endpoint; a request
without its key goes round-robin. `slow_start`: an endpoint a reload adds
gets a small share at first and its full share once the window is over.

A large cluster (203 endpoints, 200 of them refusing connections and
failed by health checks) is balanced from each worker's view of its
usable endpoints: round robin, least_request and ring_hash send every
request to the three that answer."""
import collections
import concurrent.futures
import time
import urllib.request

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
  - {{ name: ring, match: {{ headers: [{{ name: x-lb, value: ring }}] }}, cluster: ring }}
  - {{ name: maglev, match: {{ headers: [{{ name: x-lb, value: maglev }}] }}, cluster: maglev }}
  - {{ name: path, match: {{ headers: [{{ name: x-lb, value: path }}] }}, cluster: path }}
  - {{ name: rr, cluster: rr }}
clusters:
  - {{ name: least, lb: least_request, endpoints: [{eps}] }}
  - {{ name: random, lb: random, endpoints: [{eps}] }}
  - {{ name: ewma, lb: peak_ewma, endpoints: [{eps}] }}
  - {{ name: rr, endpoints: [{eps}] }}
  - {{ name: ring, lb: ring_hash, hash_on: 'header:X-User', endpoints: [{eps}] }}
  - {{ name: maglev, lb: maglev, hash_on: 'cookie:session', endpoints: [{eps}] }}
  - {{ name: path, lb: ring_hash, hash_on: path, endpoints: [{eps}] }}
""", workers=2)

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


    def keyed(self, lb, keys, **kw):
        """Who answers each key, each key asked three times on fresh connections."""
        def one(k):
            headers = {"x-lb": lb}
            path = "/whoami"
            if lb == "ring":
                headers["x-user"] = k
            elif lb == "maglev":
                headers["cookie"] = f"theme=dark; session={k}; x=1"
            else:
                path = f"/named/same?k={k}" if kw.get("query") else f"/named/{k}"
            got = set()
            for _ in range(3):
                r = requests.get(self.gateway.url(path), headers=headers, timeout=30)
                self.assertEqual(r.status_code, 200, r.text)
                got.add(r.headers["x-upstream"])
            return k, got
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            return dict(ex.map(one, keys))

    def check_hashing(self, lb):
        keys = [f"user-{i}" for i in range(30)]
        first = self.keyed(lb, keys)
        for k, got in first.items():
            self.assertEqual(len(got), 1, f"{lb}: key {k} went to {got}")
        spread = collections.Counter(next(iter(g)) for g in first.values())
        self.assertEqual(set(spread), {"fast0", "fast1", "slow"}, spread)
        return first

    def test_ring_hash_and_maglev_keep_each_key_on_one_endpoint(self):
        ring = self.check_hashing("ring")
        maglev = self.check_hashing("maglev")
        # a reload (same config: a new snapshot) changes no key's endpoint
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}/-/reload", method="POST",
                                     headers={"x-tollgate-admin": "1"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            self.assertEqual(resp.status, 200)
        self.assertEqual(self.keyed("ring", list(ring)), ring)
        self.assertEqual(self.keyed("maglev", list(maglev)), maglev)
        # without the key: round-robin over all three
        got = collections.Counter(requests.get(self.gateway.url("/whoami"), headers={"x-lb": "ring"},
                                               timeout=30).headers["x-upstream"] for _ in range(9))
        self.assertEqual(got, {"fast0": 3, "fast1": 3, "slow": 3})

    def test_hash_on_path(self):
        paths = [f"p{i}" for i in range(30)]
        self.check_hashing("path")
        # the query is not part of the key: /named/same?k=... is one key, one endpoint
        got = self.keyed("path", paths[:5], query=True)
        self.assertEqual(len({next(iter(g)) for g in got.values()}), 1, got)


class LargeClusterTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.apps = [harness.start_app(f"big{i}") for i in range(3)]
        cls.procs = list(cls.apps)
        live = [f"127.0.0.1:{a.port}" for a in cls.apps]
        dead = [f"127.0.0.3:{21000 + i}" for i in range(200)]
        eps = ", ".join(dead[:100] + live[:1] + dead[100:150] + live[1:] + dead[150:])
        hc = "health_check: { path: /whoami, interval: 300ms, timeout: 1s, unhealthy_threshold: 1 }"
        cls.start_gateway(f"""
routes:
  - {{ name: lr, match: {{ headers: [{{ name: x-lb, value: least }}] }}, cluster: least }}
  - {{ name: ring, match: {{ headers: [{{ name: x-lb, value: ring }}] }}, cluster: ring }}
  - {{ name: rr, cluster: rr }}
clusters:
  - {{ name: rr, endpoints: [{eps}], {hc} }}
  - {{ name: least, lb: least_request, endpoints: [{eps}], {hc} }}
  - {{ name: ring, lb: ring_hash, hash_on: 'header:X-User', endpoints: [{eps}], {hc} }}
""", workers=2)
        cls.live = live

    @classmethod
    def tearDownClass(cls):
        cls.finish()

    def test_requests_go_to_the_endpoints_that_answer(self):
        def settled():
            text = harness.scrape(self.admin)
            ups = [line for line in text.splitlines()
                   if line.startswith("tollgate_upstream_endpoint_healthy{") and line.endswith(" 1")]
            return len(ups) == 9  # the three live endpoints of each cluster; the 600 dead ones down
        harness.wait_until(settled, timeout=30, what="the dead endpoints failed by health checks")
        got = collections.Counter()
        for _ in range(60):
            r = requests.get(self.gateway.url("/whoami"), timeout=30)
            self.assertEqual(r.status_code, 200)
            got[r.headers["x-upstream"]] += 1
        self.assertEqual(set(got), {"big0", "big1", "big2"})
        self.assertTrue(all(n >= 10 for n in got.values()), got)
        for _ in range(30):
            r = requests.get(self.gateway.url("/whoami"), headers={"x-lb": "least"}, timeout=30)
            self.assertEqual(r.status_code, 200)
        seen = {}
        for user in [f"u{i}" for i in range(12)] * 3:
            r = requests.get(self.gateway.url("/whoami"), headers={"x-lb": "ring", "x-user": user}, timeout=30)
            self.assertEqual(r.status_code, 200)
            seen.setdefault(user, set()).add(r.headers["x-upstream"])
        self.assertTrue(all(len(v) == 1 for v in seen.values()), seen)


class SlowStartTest(harness.GatewayTest):
    """slow_start: 6s — an endpoint a reload adds to two others takes
    a small share while it ramps and its third once the window is over
    (round_robin: each pick accepts a ramping endpoint with probability
    its ramp, a tenth to one)."""

    @classmethod
    def setUpClass(cls):
        cls.procs = [harness.start_app(f"s{i}") for i in range(3)]
        cls.conf = "routes: [{{ name: r, cluster: c }}]\nclusters:\n  - {{ name: c, slow_start: 6s, endpoints: [{}] }}\n"
        cls.start_gateway(cls.conf.format(", ".join(f"127.0.0.1:{a.port}" for a in cls.procs[:2])))

    @classmethod
    def tearDownClass(cls):
        cls.finish()

    def test_a_new_endpoint_ramps_up(self):
        body = self.conf.format(", ".join(f"127.0.0.1:{a.port}" for a in self.procs))
        with open(self.gateway.path) as f:
            head = f.read().split("routes:")[0]
        with open(self.gateway.path, "w") as f:
            f.write(head + body)
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}/-/reload", method="POST",
                                     headers={"x-tollgate-admin": "1"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            self.assertEqual(resp.status, 200)
        t0 = time.monotonic()
        seen = []  # (seconds since the reload, upstream)
        s = requests.Session()
        while time.monotonic() - t0 < 9:
            r = s.get(self.gateway.url("/whoami"), timeout=30)
            self.assertEqual(r.status_code, 200)
            seen.append((time.monotonic() - t0, r.headers["x-upstream"]))

        def share(lo, hi):
            w = [u for t, u in seen if lo <= t < hi]
            return (sum(u == "s2" for u in w) / len(w) if w else None), len(w)

        early, n_early = share(0, 1.5)  # ramp at most 0.25 (plus the time the reload answer took)
        late, n_late = share(6.5, 9)    # window over: its third
        print(f"slow_start share of the new endpoint: {early:.3f} of {n_early} in the first 1.5 s, "
              f"{late:.3f} of {n_late} after the window")
        self.assertGreater(n_early, 10)
        self.assertGreater(n_late, 10)
        self.assertLess(early, 0.2)
        self.assertGreater(late, 0.25)
        self.assertLess(early, late / 2)


if __name__ == "__main__":
    harness.main()
