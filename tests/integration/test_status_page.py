"""The admin listener's status page (`/`) and `/status.json`: one
self-contained HTML document under a strict Content-Security-Policy,
loaded in a real browser (headless Chromium) against a live gateway with
traffic; the rendered DOM shows an endpoint down once its backend stops.
Set TOLLGATE_STATUS_SCREENSHOT=FILE to also save a screenshot."""
import base64
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import requests

import harness

CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")
TOKEN = "status-admin-token-0123456789"


def browser(url, *extra, timeout=90):
    """The page as Chromium rendered it, after its script ran a few refreshes
    (virtual time: the 2 s refresh timers fire without waiting)."""
    profile = tempfile.mkdtemp(prefix="tg-chromium-")
    try:
        r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            f"--user-data-dir={profile}", "--virtual-time-budget=6000", *extra, url],
                           capture_output=True, text=True, timeout=timeout)
        return r.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def states(dom):
    return dict(re.findall(r'data-endpoint="([^"]+)" data-state="([^"]+)"', dom))


class StatusPageTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.a, cls.b = harness.start_app("status-a"), harness.start_app("status-b")
        cls.procs = [cls.a, cls.b]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cfg = f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.a.port}, 127.0.0.1:{cls.b.port}]
    health_check: {{ path: /whoami, interval: 200ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1 }}
routes:
  - name: items
    match: {{ path_prefix: /items }}
    cluster: app
  - name: errors
    match: {{ path_prefix: /status }}
    cluster: app
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)
        cls.stop_traffic = threading.Event()
        cls.traffic = threading.Thread(target=cls.drive, daemon=True)
        cls.traffic.start()

    @classmethod
    def drive(cls):
        s = requests.Session()
        i = 0
        while not cls.stop_traffic.is_set():
            try:
                s.get(cls.gateway.url("/items" if i % 4 else "/status/503"), timeout=5)
            except requests.RequestException:
                pass
            i += 1
            time.sleep(0.01)

    @classmethod
    def tearDownClass(cls):
        cls.stop_traffic.set()
        cls.traffic.join(timeout=10)
        cls.finish()

    def admin_url(self, path):
        return f"http://127.0.0.1:{self.admin}{path}"

    def status(self):
        return requests.get(self.admin_url("/status.json"), timeout=10).json()

    def test_1_page_is_self_contained_under_a_strict_csp(self):
        r = requests.get(self.admin_url("/"), timeout=10)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers["content-type"], "text/html; charset=utf-8")
        self.assertEqual(r.headers["x-content-type-options"], "nosniff")
        self.assertEqual(r.headers["x-frame-options"], "DENY")
        csp = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
        self.assertEqual(csp["default-src"], "'none'")
        self.assertEqual(csp["connect-src"], "'self'")
        self.assertEqual(csp["frame-ancestors"], "'none'")
        page = r.text
        # no asset from anywhere: no src/href attributes, no URL but the JSON endpoint
        self.assertNotRegex(page, r"\b(src|href)\s*=")
        self.assertNotRegex(page, r"https?://")
        # the one inline script and style are allowed by their hashes, nothing else
        for tag, directive in (("script", "script-src"), ("style", "style-src")):
            blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S)
            self.assertEqual(len(blocks), 1)
            digest = base64.b64encode(hashlib.sha256(blocks[0].encode()).digest()).decode()
            self.assertEqual(csp[directive], f"'sha256-{digest}'")
        self.assertNotIn("unsafe-inline", r.headers["content-security-policy"])

    def test_2_status_json_counts_traffic(self):
        def counted():  # the traffic thread has run long enough to be seen
            s = self.status()
            routes = {r["name"]: r for r in s["routes"]}
            return (s, routes) if routes["items"]["requests"] > 10 and routes["errors"]["classes"][4] > 0 else None
        s, routes = harness.wait_until(counted, what="traffic counted in /status.json")
        self.assertGreater(routes["items"]["requests"], 10)
        self.assertEqual(routes["items"]["classes"][1], routes["items"]["requests"])   # all 2xx
        self.assertGreater(routes["errors"]["classes"][4], 0)                          # the 503s
        self.assertEqual(sum(routes["items"]["buckets"]), routes["items"]["requests"])
        self.assertEqual(len(s["bucket_le_us"]), len(routes["items"]["buckets"]))
        eps = {e["address"]: e for e in s["clusters"][0]["endpoints"]}
        self.assertEqual(eps[f"127.0.0.1:{self.a.port}"]["state"], "up")
        self.assertGreater(eps[f"127.0.0.1:{self.a.port}"]["requests"], 0)
        self.assertEqual(s["listeners"][0]["name"], "main")
        self.assertEqual(s["workers"], 2)

    def test_3_browser_shows_an_endpoint_go_down(self):
        self.assertIsNotNone(CHROMIUM, "chromium-headless-shell is not installed (scripts/deps.sh installs it)")
        a, b = f"app/127.0.0.1:{self.a.port}", f"app/127.0.0.1:{self.b.port}"
        dom = browser(self.admin_url("/"), "--dump-dom")
        self.assertIn('data-loaded="true"', dom)  # the script ran: the CSP hash admits it
        self.assertEqual(states(dom), {a: "up", b: "up"})
        self.assertRegex(dom, r'data-route="items"')
        self.b.stop()
        deadline = time.time() + 30
        while time.time() < deadline:
            eps = {e["address"]: e["state"] for e in self.status()["clusters"][0]["endpoints"]}
            if eps[f"127.0.0.1:{self.b.port}"] == "down":
                break
            time.sleep(0.1)
        dom = browser(self.admin_url("/"), "--dump-dom")
        self.assertEqual(states(dom), {a: "up", b: "down"})
        self.assertIn("1 of 2 up", dom)
        shot = os.environ.get("TOLLGATE_STATUS_SCREENSHOT")
        if shot:
            browser(self.admin_url("/"), "--window-size=1200,760", "--hide-scrollbars", f"--screenshot={shot}")
            self.assertTrue(os.path.getsize(shot) > 0)


class StatusPageTokenTest(harness.GatewayTest):
    """With an admin token, the page itself is served (it holds nothing)
    and asks for the token; its data is not."""

    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("status-token")
        cls.procs = [cls.app]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cfg = harness.simple_config(cls.port, [f"127.0.0.1:{cls.app.port}"])
        cfg = f"admin: {{ listen: 127.0.0.1:{cls.admin}, token: {TOKEN} }}\n" + cfg
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    def test_data_needs_the_token(self):
        base = f"http://127.0.0.1:{self.admin}"
        self.assertEqual(requests.get(base + "/", timeout=10).status_code, 200)
        self.assertEqual(requests.get(base + "/status.json", timeout=10).status_code, 401)
        self.assertEqual(requests.get(base + "/endpoints", timeout=10).status_code, 401)
        r = requests.get(base + "/status.json", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json()["routes"][0]["name"], "default")
        self.assertIsNotNone(CHROMIUM, "chromium-headless-shell is not installed (scripts/deps.sh installs it)")
        dom = browser(base + "/", "--dump-dom")
        self.assertRegex(dom, r'id="login" style="display: block;"')
        self.assertIn("needs its token", dom)
        self.assertNotIn("data-endpoint=", dom)


if __name__ == "__main__":
    harness.main()
