"""The admin listener: /healthz, /ready, /config (secrets redacted),
/metrics (valid for promtool, counters that match the traffic sent),
POST /-/reload; never reachable through a proxy listener."""
import json
import shutil
import subprocess
import time

import requests

import harness

ADMIN = {"X-Tollgate-Admin": "1"}  # state-changing admin requests need it (CSRF)


class AdminTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("admin")
        cls.procs = [cls.app]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.dead = harness.dead_port()
        cfg = f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
  - name: items
    match: {{ path_prefix: /items }}
    cluster: app
    request_headers: {{ set: {{ authorization: "Bearer very-secret", x-plain: visible }} }}
  - name: other
    match: {{ path_prefix: /w }}
    cluster: app
  - name: secured
    match: {{ path_prefix: /secured, headers: [{{ name: x-route-key, value: route-key-secret }}] }}
    cluster: app
    filters:
      - auth:
          bearer_tokens: [{{ name: ci, token: tok-123-secret }}, plain-token-secret]
          api_keys: {{ keys: [{{ name: partner, key: key-xyz-secret }}] }}
          jwt: {{ secret: jwt-secret-0123456789abcdef }}
          identity_header: x-who
      - headers: {{ request: {{ set: {{ x-upstream-key: upstream-key-secret }} }} }}
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}, 127.0.0.1:{cls.dead}]
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    def admin_get(self, path, **kw):
        return requests.get(f"http://127.0.0.1:{self.admin}{path}", timeout=5, **kw)

    def test_healthz_and_ready(self):
        r = self.admin_get("/healthz")
        self.assertEqual((r.status_code, r.json()), (200, {"status": "ok"}))
        r = self.admin_get("/ready")
        self.assertEqual((r.status_code, r.json()), (200, {"ready": True}))

    def test_config_is_effective_and_redacted(self):
        r = self.admin_get("/config")
        self.assertEqual(r.status_code, 200)
        cfg = r.json()
        self.assertEqual(cfg["workers"], 2)
        self.assertEqual(cfg["limits"]["max_header_bytes"], 65536)  # a default, made explicit
        items = next(x for x in cfg["routes"] if x["name"] == "items")
        # header values are read as secrets, whatever the header's name
        self.assertEqual(items["request_headers"]["set"], {"authorization": "<redacted>", "x-plain": "<redacted>"})
        # the document as loaded carries the filters: every value read as a
        # secret is redacted where it was read, the rest is shown
        doc = cfg["document"]
        secured = next(x for x in doc["routes"] if x["name"] == "secured")
        auth = secured["filters"][0]["auth"]
        self.assertEqual(auth["bearer_tokens"], [{"name": "ci", "token": "<redacted>"}, "<redacted>"])
        self.assertEqual(auth["api_keys"], {"keys": [{"name": "partner", "key": "<redacted>"}]})
        self.assertEqual(auth["jwt"], {"secret": "<redacted>"})
        self.assertEqual(auth["identity_header"], "x-who")
        self.assertEqual(secured["filters"][1]["headers"]["request"]["set"]["x-upstream-key"], "<redacted>")
        self.assertEqual(secured["match"]["headers"], [{"name": "x-route-key", "value": "<redacted>"}])
        self.assertEqual(doc["workers"], "2")
        for secret in ("very-secret", "tok-123-secret", "plain-token-secret", "key-xyz-secret", "jwt-secret-0123",
                       "upstream-key-secret", "route-key-secret", "visible"):
            self.assertNotIn(secret, r.text)

    def test_metrics_count_traffic_and_pass_promtool(self):
        before = self.admin_get("/metrics").text
        s = requests.Session()
        for _ in range(7):
            self.assertEqual(s.get(self.gateway.url("/whoami"), timeout=5).status_code, 200)
        for _ in range(3):
            self.assertEqual(s.get(self.gateway.url("/items/none"), timeout=5).status_code, 404)
        self.assertEqual(s.get(self.gateway.url("/unrouted"), timeout=5).status_code, 404)
        # a worker counts an exchange as it ends, which may be just after its
        # client has the response: wait (bounded) for the last one to land
        def landed():
            r = self.admin_get("/metrics")
            done = (harness.metric(r.text, "tollgate_requests_total", route="", cluster="", code="4xx") -
                    harness.metric(before, "tollgate_requests_total", route="", cluster="", code="4xx"))
            return r if done >= 1 else None
        r = harness.wait_until(landed, what="the last exchange counted")
        after = r.text
        self.assertEqual(r.status_code, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/plain; version=0.0.4"))

        def delta(name, **labels):
            return harness.metric(after, name, **labels) - harness.metric(before, name, **labels)
        self.assertEqual(delta("tollgate_requests_total", route="other", cluster="app", code="2xx"), 7)
        self.assertEqual(delta("tollgate_requests_total", route="items", cluster="app", code="4xx"), 3)
        self.assertEqual(delta("tollgate_requests_total", route="", cluster="", code="4xx"), 1)
        # one keep-alive session: one pooled connection to the live endpoint
        self.assertEqual(harness.metric(after, "tollgate_upstream_connections_active", cluster="app",
                                        endpoint=f"127.0.0.1:{self.app.port}"), 1)
        self.assertEqual(delta("tollgate_request_duration_seconds_count", route="other"), 7)
        self.assertEqual(delta("tollgate_upstream_requests_total", cluster="app",
                               endpoint=f"127.0.0.1:{self.app.port}"), 10)
        # round-robin put half the 10 picks on the dead endpoint; each failed over
        self.assertEqual(delta("tollgate_upstream_connect_failures_total", cluster="app",
                               endpoint=f"127.0.0.1:{self.dead}"), 5)
        self.assertEqual(delta("tollgate_downstream_connections_total", listener="main"), 1)  # the one session
        self.assertEqual(harness.metric(after, "tollgate_build_info", version="0.1.0"), 1)
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool (Debian package prometheus) is required")
        p = subprocess.run([promtool, "check", "metrics"], input=after, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_reload_endpoint(self):
        """POST /-/reload applies what the file now says (a new route), counts
        it, and stamps the time of the last successful reload."""
        with open(self.gateway.path) as f:
            original = f.read()
        changed = original.replace("routes:\n", "routes:\n  - name: reloaded\n    match: { path_prefix: /reloaded }\n"
                                   "    cluster: app\n    response_headers: { set: { x-reloaded: 'yes' } }\n", 1)
        self.assertNotEqual(changed, original)
        m0 = self.admin_get("/metrics").text
        before = harness.metric(m0, "tollgate_config_reloads_total", result="success")
        t0 = time.time()
        try:
            with open(self.gateway.path, "w") as f:
                f.write(changed)
            r = requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers=ADMIN, timeout=10)
            self.assertEqual((r.status_code, r.json()), (200, {"status": "ok", "errors": []}))
            deadline, seen = time.time() + 30, None
            while time.time() < deadline:  # workers apply a published config on their next loop turn
                seen = requests.get(self.gateway.url("/reloaded/whoami"), timeout=5).headers.get("x-reloaded")
                if seen == "yes":
                    break
                time.sleep(0.05)
            self.assertEqual(seen, "yes")
            self.assertIn("reloaded", [x["name"] for x in self.admin_get("/config").json()["routes"]])
            m1 = self.admin_get("/metrics").text
            self.assertEqual(harness.metric(m1, "tollgate_config_reloads_total", result="success"), before + 1)
            stamp = harness.metric(m1, "tollgate_config_last_reload_success_timestamp_seconds")
            self.assertTrue(t0 - 1 <= stamp <= time.time() + 1, (t0, stamp))
        finally:
            with open(self.gateway.path, "w") as f:
                f.write(original)
            requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers=ADMIN, timeout=10)
        self.assertEqual(self.admin_get("/-/reload").status_code, 405)

    def test_unknown_and_wrong_method(self):
        self.assertEqual(self.admin_get("/nope").status_code, 404)
        self.assertEqual(requests.post(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).status_code, 405)

    def test_not_reachable_from_proxy_listener(self):
        r = requests.get(self.gateway.url("/metrics"), timeout=5)
        self.assertNotIn("tollgate_build_info", r.text)
        self.assertEqual(r.status_code, 404)


if __name__ == "__main__":
    harness.main()
