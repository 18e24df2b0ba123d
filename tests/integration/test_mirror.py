"""The mirror filter with real peers: a FastAPI primary and a FastAPI
mirror that each count and record what reaches them (apps/app.py /cached),
a slow mirror (every /whoami held a minute) and a dead one (nothing
listening). Sampling (all, none, a share at random, whole sessions by a
header's hash), the copy's head (Host kept, x-tollgate-mirror: 1,
credentials stripped when asked) and body (teed whole, or over
max_body_bytes skipped or sent head-only), the concurrency cap, and the
shadow diff (matches and mismatches counted per route). The primary
never waits: with the mirror held or gone every primary request is
answered, which a primary that waited on its mirror could not do within
the test's bounds."""
import concurrent.futures
import hashlib
import json
import os
import urllib.request

import httpx

import harness


def state(app, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{app.port}/cached-state/{name}", timeout=10) as r:
        return json.loads(r.read())


class MirrorTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.admin, cls.port = harness.free_port(), harness.free_port()
        cls.app = harness.start_app("primary")
        cls.shadow = harness.start_app("shadow")
        cls.slow = harness.start_app("slow", env_extra={"APP_DELAY": "60"})
        cls.procs = [cls.app, cls.shadow, cls.slow]
        dead = harness.free_port()
        cls.gateway = harness.Gateway(f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}
  - {{ name: shadow, endpoints: [127.0.0.1:{cls.shadow.port}] }}
  - {{ name: slow, endpoints: [127.0.0.1:{cls.slow.port}] }}
  - {{ name: dead, endpoints: [127.0.0.1:{dead}] }}
  - {{ name: down, endpoints: [127.0.0.1:{cls.shadow.port}], health_check: {{ path: /status/503, interval: 200ms }} }}
routes:
  - name: all
    match: {{ path_prefix: /cached/all- }}
    cluster: app
    filters: [{{ mirror: {{ cluster: shadow, compare: true }} }}]
  - name: none
    match: {{ path_prefix: /cached/none- }}
    cluster: app
    filters: [{{ mirror: {{ cluster: shadow, percent: 0 }} }}]
  - name: half
    match: {{ path_prefix: /cached/half- }}
    cluster: app
    filters: [{{ mirror: {{ cluster: shadow, percent: 50 }} }}]
  - name: sessions
    match: {{ path_prefix: /cached/sess- }}
    cluster: app
    filters: [{{ mirror: {{ cluster: shadow, percent: 30, hash_on: "header:x-session" }} }}]
  - name: private
    match: {{ path_prefix: /cached/priv- }}
    cluster: app
    filters: [{{ mirror: {{ cluster: shadow, strip_credentials: true }} }}]
  - name: small
    match: {{ path_prefix: /cached/small- }}
    cluster: app
    filters: [{{ mirror: {{ cluster: shadow, max_body_bytes: 1KiB }} }}]
  - name: headonly
    match: {{ path_prefix: /cached/head- }}
    cluster: app
    filters: [{{ mirror: {{ cluster: shadow, max_body_bytes: 1KiB, on_large_body: headers_only }} }}]
  - name: slow
    match: {{ path_prefix: /whoami, headers: [{{ name: x-route, value: slow }}] }}
    cluster: app
    filters: [{{ mirror: {{ cluster: slow, max_concurrent: 5, timeout: 2m }} }}]
  - name: diff
    match: {{ path_prefix: /whoami }}
    cluster: app
    filters: [{{ mirror: {{ cluster: shadow, compare: true }} }}]
  - name: down
    match: {{ path_prefix: /cached/down- }}
    cluster: app
    filters: [{{ mirror: {{ cluster: down }} }}]
  - name: dead
    match: {{ path_prefix: /cached/dead- }}
    cluster: app
    filters: [{{ mirror: {{ cluster: dead, timeout: 2s }} }}]
""", port=cls.port)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def metrics(self):
        return harness.scrape(self.admin)

    def mirrored(self, route, result, cluster="shadow"):
        return harness.metric_or(self.metrics(), "tollgate_mirror_requests_total", route=route, mirror=cluster,
                                 result=result)

    def wait_answered(self, route, n, cluster="shadow"):
        harness.wait_until(lambda: self.mirrored(route, "answered", cluster) +
                           self.mirrored(route, "failed", cluster) >= n, what=f"{n} mirror answers on {route}")

    def test_every_request_copied_with_its_head(self):
        name = "all-head"
        with httpx.Client(timeout=10) as c:
            for i in range(10):
                r = c.get(self.url(f"/cached/{name}?i={i}"), headers={"x-trace": f"t{i}", "authorization": "Bearer a"})
                self.assertEqual(r.status_code, 200)
        self.wait_answered("all", 10)
        self.assertEqual(state(self.app, name)["calls"], 10)
        self.assertEqual(state(self.shadow, name)["calls"], 10)
        seen = state(self.shadow, name)["seen"][-1]
        self.assertEqual(seen["x-tollgate-mirror"], "1")
        self.assertEqual(seen["host"], f"127.0.0.1:{self.port}")  # Host as the client sent it
        self.assertEqual(seen["x-trace"], "t9")
        self.assertEqual(seen["authorization"], "Bearer a")
        self.assertNotIn("x-tollgate-mirror", state(self.app, name)["seen"][-1])

    def test_credentials_stripped_when_asked(self):
        name = "priv-creds"
        httpx.get(self.url(f"/cached/{name}"), headers={"authorization": "Bearer s", "cookie": "a=b"}, timeout=10)
        self.wait_answered("private", 1)
        seen = state(self.shadow, name)["seen"][-1]
        self.assertNotIn("authorization", seen)
        self.assertNotIn("cookie", seen)
        self.assertEqual(state(self.app, name)["seen"][-1]["authorization"], "Bearer s")

    def test_sampling(self):
        with httpx.Client(timeout=10) as c:
            for i in range(20):
                c.get(self.url(f"/cached/none-s?i={i}"))
            for i in range(200):
                c.get(self.url(f"/cached/half-s?i={i}"))
        harness.wait_until(lambda: self.mirrored("half", "sent") ==
                           self.mirrored("half", "answered") + self.mirrored("half", "failed"), what="half answered")
        self.assertEqual(self.mirrored("none", "sent"), 0)
        self.assertEqual(state(self.shadow, "none-s")["calls"], 0)
        half = state(self.shadow, "half-s")["calls"]
        self.assertEqual(half, self.mirrored("half", "sent"))
        self.assertTrue(60 <= half <= 140, half)  # 50% of 200, far from either end

    def test_sessions_mirrored_whole(self):
        with httpx.Client(timeout=10) as c:
            for s in range(40):
                for i in range(3):
                    r = c.get(self.url(f"/cached/sess-{s}?i={i}"), headers={"x-session": f"session-{s}"})
                    self.assertEqual(r.status_code, 200)
        harness.wait_until(lambda: self.mirrored("sessions", "sent") ==
                           self.mirrored("sessions", "answered"), what="sessions answered")
        counts = [state(self.shadow, f"sess-{s}")["calls"] for s in range(40)]
        self.assertTrue(all(n in (0, 3) for n in counts), counts)  # a session whole, or not at all
        whole = counts.count(3)
        self.assertTrue(3 <= whole <= 24, counts)  # about 30% of 40

    def test_body_teed(self):
        name = "all-body"
        body = os.urandom(200_000)
        r = httpx.post(self.url(f"/cached/{name}"), content=body, timeout=10)
        self.assertEqual(r.json()["length"], len(body))
        self.wait_answered("all", 1)
        harness.wait_until(lambda: state(self.shadow, name)["calls"] == 1, what="the copy")
        seen = state(self.shadow, name)["seen"][-1]
        self.assertEqual(seen["x-body-length"], str(len(body)))
        self.assertEqual(seen["x-body-sha256"], hashlib.sha256(body).hexdigest())

    def test_large_body_skipped_or_head_only(self):
        big = b"y" * 5000
        before = self.mirrored("small", "dropped_body")
        self.assertEqual(httpx.post(self.url("/cached/small-big"), content=big, timeout=10).json()["length"], 5000)
        self.assertEqual(httpx.post(self.url("/cached/small-fits"), content=b"z" * 100, timeout=10).status_code, 200)
        self.wait_answered("small", 1)
        self.assertEqual(self.mirrored("small", "dropped_body") - before, 1)
        self.assertEqual(state(self.shadow, "small-big")["calls"], 0)
        self.assertEqual(state(self.shadow, "small-fits")["seen"][-1]["x-body-length"], "100")
        httpx.post(self.url("/cached/head-big"), content=big, timeout=10)
        self.wait_answered("headonly", 1)
        self.assertEqual(self.mirrored("headonly", "headers_only"), 1)
        self.assertEqual(state(self.shadow, "head-big")["seen"][-1]["x-body-length"], "0")

    def test_slow_mirror_never_holds_the_primary(self):
        # each copy is held a minute by the slow mirror; the primary answers every request meanwhile
        with httpx.Client(timeout=30) as c:
            for i in range(20):
                r = c.get(self.url(f"/whoami?i={i}"), headers={"x-route": "slow"})
                self.assertEqual(r.json(), {"name": "primary"})
        m = self.metrics()
        self.assertEqual(harness.metric(m, "tollgate_mirror_in_flight", route="slow", mirror="slow"), 5)
        self.assertEqual(harness.metric(m, "tollgate_mirror_requests_total", route="slow", mirror="slow",
                                        result="dropped_concurrency"), 15)

    def test_dead_mirror(self):
        with httpx.Client(timeout=10) as c:
            for i in range(10):
                self.assertEqual(c.get(self.url(f"/cached/dead-{i}")).status_code, 200)
        harness.wait_until(lambda: self.mirrored("dead", "failed", "dead") == 10, what="10 failed copies")

    def test_mirror_down_by_health_checks_gets_no_copies(self):
        harness.wait_until(lambda: harness.metric_or(self.metrics(), "tollgate_upstream_endpoint_healthy",
                                                     cluster="down", endpoint=f"127.0.0.1:{self.shadow.port}",
                                                     default=1) == 0, what="the mirror marked down")
        with httpx.Client(timeout=10) as c:
            for i in range(10):
                self.assertEqual(c.get(self.url(f"/cached/down-{i}")).status_code, 200)
        harness.wait_until(lambda: self.mirrored("down", "failed", "down") == 10, what="10 failed copies")
        # failed at once: none reached the (running) mirror
        self.assertEqual(sum(state(self.shadow, f"down-{i}")["calls"] for i in range(10)), 0)

    def test_shadow_diff(self):
        with httpx.Client(timeout=10) as c:
            for i in range(5):
                c.get(self.url(f"/cached/all-diff{i}"))  # the same body from both: "all-diffN call=1"
            for i in range(3):
                c.get(self.url("/whoami"))  # {"name": "primary"} vs {"name": "shadow"}
        harness.wait_until(lambda: harness.metric_or(self.metrics(), "tollgate_mirror_compare_total", route="diff",
                                                     mirror="shadow", result="mismatch") == 3, what="3 mismatches")
        harness.wait_until(lambda: harness.metric_or(self.metrics(), "tollgate_mirror_compare_total", route="all",
                                                     mirror="shadow", result="match") >= 5, what="5 matches")

    def test_concurrent_copies(self):
        def one(i):
            return httpx.post(self.url(f"/cached/all-conc{i}"), content=b"q" * 3000, timeout=20).status_code
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            self.assertEqual(set(pool.map(one, range(60))), {200})
        harness.wait_until(lambda: all(state(self.shadow, f"all-conc{i}")["calls"] == 1 for i in range(60)),
                           what="60 copies")


if __name__ == "__main__":
    harness.main()
