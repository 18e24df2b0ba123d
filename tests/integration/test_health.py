"""Health checks: active HTTP checks take a stopped backend out of
round-robin (no client request fails or even reaches it) and bring it back
when it recovers; every endpoint unhealthy is a 503 unless the cluster says
try_all; passive outlier detection ejects an endpoint that keeps failing,
for a while."""
import collections
import time
import unittest

import requests

import harness


def always_503(c):
    head, _ = harness.read_request(c)
    if head:
        c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nsick")


class HealthTest(unittest.TestCase):
    def start(self, cfg):
        port, admin = harness.free_port(), harness.free_port()
        gw = harness.Gateway(cfg.format(port=port, admin=admin), port=port)
        self.addCleanup(self.finish, gw)
        gw.admin = admin
        return gw

    def finish(self, gw):
        rc, out = gw.stop()
        self.assertEqual(rc, 0, out[-3000:])
        self.assertNotIn("Sanitizer", out)

    def metrics(self, gw):
        return requests.get(f"http://127.0.0.1:{gw.admin}/metrics", timeout=5).text

    def wait_healthy(self, gw, cluster, endpoint, value, timeout=8):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if harness.metric(self.metrics(gw), "tollgate_upstream_endpoint_healthy", cluster=cluster,
                      endpoint=endpoint) == value:
                return
            time.sleep(0.1)
        self.fail(f"{endpoint} never became healthy={value}")

    def test_active_checks_route_around_a_dead_backend(self):
        apps = [harness.start_app(f"hc{i}") for i in range(3)]
        self.addCleanup(lambda: [a.stop() for a in apps])
        eps = [f"127.0.0.1:{a.port}" for a in apps]
        gw = self.start(f"""
workers: 2
admin: {{{{ listen: 127.0.0.1:{{admin}} }}}}
listeners: [{{{{ name: main, listen: '127.0.0.1:{{port}}' }}}}]
routes: [{{{{ name: all, cluster: app }}}}]
clusters:
  - name: app
    endpoints: [{", ".join(eps)}]
    health_check: {{{{ path: /whoami, interval: 200ms, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2 }}}}
    outlier_detection: {{{{ consecutive_failures: 0 }}}}
""")
        s = requests.Session()
        counts = collections.Counter(s.get(gw.url("/whoami"), timeout=5).json()["name"] for _ in range(30))
        self.assertEqual(counts, {"hc0": 10, "hc1": 10, "hc2": 10})

        apps[1].stop()  # the backend goes away
        self.wait_healthy(gw, "app", eps[1], 0)
        before = self.metrics(gw)
        counts = collections.Counter()
        for _ in range(60):
            r = s.get(gw.url("/whoami"), timeout=5)
            self.assertEqual(r.status_code, 200)
            counts[r.json()["name"]] += 1
        self.assertEqual(counts, {"hc0": 30, "hc2": 30})
        after = self.metrics(gw)
        for name in ("tollgate_upstream_requests_total", "tollgate_upstream_connect_failures_total"):
            self.assertEqual(harness.metric(after, name, cluster="app", endpoint=eps[1]),
                             harness.metric(before, name, cluster="app", endpoint=eps[1]), name)
        self.assertGreater(harness.metric(after, "tollgate_health_checks_total", cluster="app", endpoint=eps[1],
                                  result="failure"), 0)

        apps[1] = harness.start_app("hc1", port=apps[1].port)  # it comes back
        self.wait_healthy(gw, "app", eps[1], 1)
        counts = collections.Counter(s.get(gw.url("/whoami"), timeout=5).json()["name"] for _ in range(60))
        self.assertEqual(counts, {"hc0": 20, "hc1": 20, "hc2": 20})

    def test_checks_speak_the_clusters_protocol(self):
        """A check goes through the cluster's own upstream protocol: over
        HTTP/2 to an h2c cluster (the app under hypercorn sees version 2),
        over HTTP/1.1 to an HTTP/1.1 one, each endpoint probed by one
        worker."""
        h2app = harness.start_app("probe-h2", server="hypercorn")
        self.addCleanup(h2app.stop)
        h1app = harness.start_app("probe-h1")
        self.addCleanup(h1app.stop)
        gw = self.start(f"""
workers: 2
admin: {{{{ listen: 127.0.0.1:{{admin}} }}}}
listeners: [{{{{ name: main, listen: 127.0.0.1:{{port}} }}}}]
routes: [{{{{ name: r, cluster: h2 }}}}]
clusters:
  - name: h2
    protocol: h2c
    endpoints: [127.0.0.1:{h2app.port}]
    health_check: {{{{ path: /probe, interval: 100ms, timeout: 2s }}}}
  - name: h1
    endpoints: [127.0.0.1:{h1app.port}]
    health_check: {{{{ path: /probe, interval: 100ms, timeout: 2s }}}}
""")
        def versions(app):
            return requests.get(f"http://127.0.0.1:{app.port}/probes", timeout=5).json()["versions"]
        harness.wait_until(lambda: len(versions(h2app)) >= 3 and len(versions(h1app)) >= 3, what="three rounds of checks")
        self.assertEqual(set(versions(h2app)), {"2"})
        self.assertEqual(set(versions(h1app)), {"1.1"})
        m = self.metrics(gw)
        self.assertGreaterEqual(harness.metric(m, "tollgate_health_checks_total", cluster="h2",
                                               endpoint=f"127.0.0.1:{h2app.port}", result="success"), 3)
        self.assertEqual(harness.metric(m, "tollgate_upstream_endpoint_healthy", cluster="h2",
                                        endpoint=f"127.0.0.1:{h2app.port}"), 1)

    def test_a_reload_keeps_each_endpoints_rhythm(self):
        """An endpoint the new config keeps is not probed again at once on
        a reload (or a DNS answer): only the endpoint it adds is. Checked
        with an hour-long interval: the kept endpoint's one probe at start
        stays one after the reload that adds the other, probed at once."""
        a = harness.start_app("rhythm-a")
        self.addCleanup(a.stop)
        b = harness.start_app("rhythm-b")
        self.addCleanup(b.stop)
        cfg = """
workers: 1
admin: {{ listen: 127.0.0.1:{admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
routes: [{{ name: r, cluster: c }}]
clusters:
  - name: c
    endpoints: [ENDPOINTS]
    health_check: {{ path: /probe, interval: 1h, timeout: 2s }}
"""
        gw = self.start(cfg.replace("ENDPOINTS", f"127.0.0.1:{a.port}"))

        def probes(app):
            return len(requests.get(f"http://127.0.0.1:{app.port}/probes", timeout=5).json()["versions"])
        harness.wait_until(lambda: probes(a) == 1, what="the first probe of a")
        with open(gw.path) as f:
            text = f.read()
        with open(gw.path, "w") as f:
            f.write(text.replace(f"endpoints: [127.0.0.1:{a.port}]", f"endpoints: [127.0.0.1:{a.port}, 127.0.0.1:{b.port}]"))
        r = requests.post(f"http://127.0.0.1:{gw.admin}/-/reload", headers={"x-tollgate-admin": "1"}, timeout=30)
        self.assertEqual(r.status_code, 200, r.text)
        harness.wait_until(lambda: probes(b) == 1, what="the added endpoint probed at once")
        self.assertEqual(probes(a), 1)

    def test_first_checks_spread_over_one_interval(self):
        """A large cluster's new endpoints are first checked within one
        interval, not 10 ms apart each (which put endpoint 300's first check
        3 s away): by the time the first endpoint has had ten checks, the
        last has had its first. Relative, so load on the machine delays both
        alike."""
        base = harness.free_port()
        eps = [f"127.0.0.1:{base + 1 + i}" for i in range(300)]  # nothing listens: refused at once
        gw = self.start(f"""
workers: 1
admin: {{{{ listen: 127.0.0.1:{{admin}} }}}}
listeners: [{{{{ name: main, listen: 127.0.0.1:{{port}} }}}}]
routes: [{{{{ name: r, cluster: big }}}}]
clusters:
  - name: big
    endpoints: [{", ".join(eps)}]
    health_check: {{{{ path: /probe, interval: 100ms, timeout: 1s }}}}
""")

        def checks(text, ep):
            return harness.metric(text, "tollgate_health_checks_total", cluster="big", endpoint=ep, result="failure")

        def first_has_ten():
            text = self.metrics(gw)
            return text if checks(text, eps[0]) >= 10 else None
        text = harness.wait_until(first_has_ten, what="ten checks of the first endpoint")
        self.assertGreaterEqual(checks(text, eps[-1]), 1)

    def test_all_unhealthy_fail_or_try_all(self):
        app = harness.start_app("sickcheck")
        self.addCleanup(app.stop)
        # the health endpoint answers 500, ordinary traffic is fine
        gw = self.start(f"""
workers: 1
admin: {{{{ listen: 127.0.0.1:{{admin}} }}}}
listeners: [{{{{ name: main, listen: '127.0.0.1:{{port}}' }}}}]
routes:
  - {{{{ name: strict, match: {{{{ path_prefix: /strict }}}}, cluster: strict }}}}
  - {{{{ name: lenient, match: {{{{ path_prefix: /lenient }}}}, cluster: lenient }}}}
clusters:
  - name: strict
    endpoints: [127.0.0.1:{app.port}]
    health_check: {{{{ path: /status/500, interval: 100ms, unhealthy_threshold: 1 }}}}
  - name: lenient
    endpoints: [127.0.0.1:{app.port}]
    health_check: {{{{ path: /status/500, interval: 100ms, unhealthy_threshold: 1 }}}}
    when_all_unhealthy: try_all
""")
        self.wait_healthy(gw, "strict", f"127.0.0.1:{app.port}", 0)
        self.wait_healthy(gw, "lenient", f"127.0.0.1:{app.port}", 0)
        r = requests.get(gw.url("/strict"), timeout=5)
        self.assertEqual(r.status_code, 503)
        self.assertEqual(r.json(), {"error": "no healthy upstream endpoint", "status": 503})
        r = requests.get(gw.url("/lenient"), timeout=5)
        self.assertEqual(r.status_code, 404)  # the app's own answer: it was tried anyway
        self.assertEqual(r.headers.get("x-upstream"), "sickcheck")

    def ejection_config(self, app, bad_ep, outlier):
        return self.start(f"""
workers: 1
admin: {{{{ listen: 127.0.0.1:{{admin}} }}}}
listeners: [{{{{ name: main, listen: '127.0.0.1:{{port}}' }}}}]
routes: [{{{{ name: all, cluster: app }}}}]
clusters:
  - name: app
    endpoints: [127.0.0.1:{app.port}, {bad_ep}]
    outlier_detection: {{{{ {outlier} }}}}
""")

    def test_passive_ejection(self):
        app = harness.start_app("good")
        self.addCleanup(app.stop)
        sick = harness.ScriptedServer(always_503)
        self.addCleanup(sick.stop)
        bad_ep = f"127.0.0.1:{sick.port}"
        # an hour, capped by the default max_ejection_time (5m): ejected for the whole test
        gw = self.ejection_config(app, bad_ep, "consecutive_failures: 3, base_ejection_time: 1h")
        statuses = [requests.get(gw.url("/whoami"), timeout=5).status_code for _ in range(6)]
        self.assertEqual(statuses.count(503), 3)  # three in a row from the sick one: ejected
        self.assertEqual([requests.get(gw.url("/whoami"), timeout=5).status_code for _ in range(10)], [200] * 10)
        m = self.metrics(gw)
        self.assertEqual(harness.metric(m, "tollgate_upstream_ejections_total", cluster="app", endpoint=bad_ep), 1)
        self.assertEqual(harness.metric(m, "tollgate_upstream_endpoint_healthy", cluster="app", endpoint=bad_ep), 0)
        self.assertIn("ejected for 300000 ms", gw.proc.output())

    def test_ejection_ends_at_max_ejection_time(self):
        """base_ejection_time an hour, max_ejection_time 500ms: the ejection
        ends after the cap and the endpoint gets traffic again (without the
        cap, not within the wait's bound)."""
        app = harness.start_app("good")
        self.addCleanup(app.stop)
        sick = harness.ScriptedServer(always_503)
        self.addCleanup(sick.stop)
        bad_ep = f"127.0.0.1:{sick.port}"
        gw = self.ejection_config(app, bad_ep, "consecutive_failures: 3, base_ejection_time: 1h, "
                                               "max_ejection_time: 500ms")
        statuses = [requests.get(gw.url("/whoami"), timeout=5).status_code for _ in range(6)]
        self.assertEqual(statuses.count(503), 3)
        self.assertIn("ejected for 500 ms", gw.proc.output())
        harness.wait_until(lambda: requests.get(gw.url("/whoami"), timeout=5).status_code == 503,
                           what="the sick endpoint back in rotation")


if __name__ == "__main__":
    harness.main()
