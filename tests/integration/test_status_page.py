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


class DrivenGateway(harness.GatewayTest):
    """A gateway of two workers over two health-checked apps, with the
    subclass's routes, and a thread sending requests (path(i)) every
    PAUSE seconds until the class ends."""
    APPS = ("a", "b")
    ROUTES = ""
    PAUSE = 0.01

    @classmethod
    def path(cls, i):
        return "/items"

    @classmethod
    def setUpClass(cls):
        cls.a, cls.b = harness.start_app(cls.APPS[0]), harness.start_app(cls.APPS[1])
        cls.procs = [cls.a, cls.b]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.cfg = f"""
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
""" + cls.ROUTES
        cls.gateway = harness.Gateway(cls.cfg, port=cls.port)
        cls.stop_traffic = threading.Event()
        cls.traffic = threading.Thread(target=cls.drive, daemon=True)
        cls.traffic.start()

    @classmethod
    def drive(cls):
        s = requests.Session()
        i = 0
        while not cls.stop_traffic.is_set():
            try:
                s.get(cls.gateway.url(cls.path(i)), timeout=5)
            except requests.RequestException:
                pass
            i += 1
            time.sleep(cls.PAUSE)

    @classmethod
    def tearDownClass(cls):
        cls.stop_traffic.set()
        cls.traffic.join(timeout=10)
        cls.finish()


class StatusPageTest(DrivenGateway):
    APPS = ("status-a", "status-b")
    ROUTES = """  - name: items
    match: { path_prefix: /items }
    cluster: app
  - name: errors
    match: { path_prefix: /status }
    cluster: app
"""

    @classmethod
    def path(cls, i):
        return "/items" if i % 4 else "/status/503"

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
        # (the SVG namespace is a name, never fetched: the one URL allowed)
        self.assertNotRegex(page.replace('"http://www.w3.org/2000/svg"', ""), r"https?://")
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


def assert_in_dom(test, pattern, dom, present=True):
    """A regex over the rendered DOM; a failure names the pattern, not the page."""
    found = re.search(pattern, dom) is not None
    if found != present:
        test.fail(f"{'no' if present else 'unexpected'} match for {pattern!r} in the rendered page")


def dom_charts(dom, route):
    """The charts of a route as the page drew them: kind -> (points, max)."""
    m = re.search(rf'data-route-charts="{re.escape(route)}".*?</tr>', dom, re.S)
    assert m, f"no charts for route {route}"
    return {k: (int(p), float(x)) for k, p, x in
            re.findall(r'data-chart="(\w+)" data-points="(\d+)" data-max="([\d.e+-]+)"', m.group(0))}


class StatusHistoryTest(DrivenGateway):
    """The last 15 minutes on the page: during a test that kills an
    endpoint, bursts errors on one route and floods a rate-limited one,
    the first page loaded once the gateway has seen it shows the error
    spike, the endpoint's down mark on the time axis and the limited key
    (it does not wait for a 10-second bucket to close: the current one is
    drawn as it fills)."""

    APPS = ("hist-a", "hist-b")
    PAUSE = 0.02
    ROUTES = """  - name: items
    match: { path_prefix: /items }
    cluster: app
  - name: api
    match: { path_prefix: /status }
    cluster: app
  - name: limited
    match: { path_prefix: /whoami }
    cluster: app
    filters:
      - rate_limit: { key: header:x-api-key, limit: 1000000, window: 60s, mode: shadow }
      - rate_limit: { key: header:x-api-key, limit: 2, window: 60s, mode: shadow }
      - rate_limit: { key: header:x-tenant, limit: 3, window: 60s, show_keys: plain }
"""

    def history(self):
        r = requests.get(f"http://127.0.0.1:{self.admin}/status.json?history=15m", timeout=10)
        self.assertEqual(r.status_code, 200)
        return r.json()

    def test_1_history_json(self):
        s = harness.wait_until(lambda: (lambda s: s if s["history"]["routes"][0]["requests"][-1] else None)(
            self.history()), what="traffic in the current bucket")
        h = s["history"]
        self.assertEqual(h["bucket_ms"], 10000)
        self.assertEqual(h["buckets"], 90)
        self.assertLessEqual(h["start_ms"] + 89 * 10000, h["now_ms"])  # the last bucket holds now
        self.assertLess(h["now_ms"], h["start_ms"] + 90 * 10000)
        routes = {r["name"]: r for r in h["routes"]}
        self.assertEqual(list(routes), ["items", "api", "limited"])
        for r in routes.values():
            for col in ("requests", "4xx", "5xx", "aborted", "p50_us", "p99_us"):
                self.assertEqual(len(r[col]), 90, col)
        items = routes["items"]
        self.assertIsNone(items["requests"][0])  # before the gateway started: no data, not zero
        self.assertGreater(items["requests"][-1], 0)
        self.assertGreater(items["p99_us"][-1], 0)
        self.assertGreaterEqual(items["p99_us"][-1], items["p50_us"][-1])
        app = h["clusters"][0]
        self.assertEqual(app["name"], "app")
        self.assertEqual(app["endpoints"][-1], 2)
        # the window is a parameter; a bad one is refused
        short = requests.get(f"http://127.0.0.1:{self.admin}/status.json?history=1m", timeout=10).json()["history"]
        self.assertEqual(short["buckets"], 6)
        bad = requests.get(f"http://127.0.0.1:{self.admin}/status.json?history=soon", timeout=10)
        self.assertEqual(bad.status_code, 400)
        self.assertNotIn("history", requests.get(f"http://127.0.0.1:{self.admin}/status.json", timeout=10).json())

    def test_2_page_shows_spike_down_mark_and_limited_key(self):
        self.assertIsNotNone(CHROMIUM, "chromium-headless-shell is not installed (scripts/deps.sh installs it)")
        b = f"127.0.0.1:{self.b.port}"
        before = dom_charts(browser(self.admin_url("/#route=api"), "--dump-dom"), "api")
        self.assertEqual(before["errors"][1], 0.0)  # no 5xx yet on api
        t0 = time.time()
        self.b.stop()
        s = requests.Session()
        for _ in range(30):  # the error spike
            s.get(self.gateway.url("/status/503"), timeout=5)
        codes = [s.get(self.gateway.url("/whoami"), headers={"x-tenant": "tenant-flood", "x-api-key": "sk-live-0123456789"},
                       timeout=5).status_code for _ in range(12)]
        self.assertEqual(codes.count(429), 9)
        # the gateway has seen it all once its history lists the down change (ticks are a second apart)
        harness.wait_until(lambda: any(e.get("endpoint") == b and e["to"] == "down"
                                       for e in self.history()["history"]["events"]), what="the down event")
        dom = browser(self.admin_url("/#route=api"), "--dump-dom")
        elapsed = time.time() - t0
        print(f"\n  page showed the spike, the down mark and the limited key {elapsed:.1f} s after the kill")
        charts = dom_charts(dom, "api")
        self.assertGreater(charts["errors"][1], 50.0)  # the spike: 5xx % of api's requests in the current bucket
        self.assertGreater(charts["requests"][0], 0)
        self.assertGreater(charts["latency"][0], 0)
        assert_in_dom(self, rf'data-mark="down" data-endpoint="app/{re.escape(b)}"', dom)
        assert_in_dom(self, rf'data-change="app/{re.escape(b)}" data-to="down"', dom)
        assert_in_dom(self, r'data-limited-key="tenant-flood" data-refusals="9"', dom)
        # shadow mode: would-be refusals listed; a key from a header is hashed by default, never shown
        assert_in_dom(self, r'data-limited-key="hash:[0-9a-f]{12}" data-refusals="10" data-shadow="true"', dom)
        self.assertFalse("sk-live-0123456789" in dom, "the raw API key is on the page")
        # every route has its charts (closed unless asked for), with data points
        for route in ("items", "limited"):
            self.assertGreater(dom_charts(dom, route)["requests"][0], 0)
        assert_in_dom(self, r'data-route-charts="items" hidden', dom)
        assert_in_dom(self, r'data-route-charts="api" hidden', dom, present=False)  # #route=api opened it
        shot = os.environ.get("TOLLGATE_STATUS_SCREENSHOT")
        if shot:
            browser(self.admin_url("/#route=api"), "--window-size=1200,1100", "--hide-scrollbars", f"--screenshot={shot}")
            self.assertTrue(os.path.getsize(shot) > 0)

    def test_3_limits_in_status_json(self):
        limits = self.history()["limits"]
        self.assertEqual([(f["route"], f["filter"], f["index"]) for f in limits],
                         [("limited", "rate_limit", 0), ("limited", "rate_limit", 1), ("limited", "rate_limit", 2)])
        big, small, tenant = limits
        self.assertEqual((tenant["mode"], tenant["show_keys"], tenant["key"]), ("enforce", "plain", "header:x-tenant"))
        plan = tenant["plans"][0]
        self.assertEqual(plan["name"], "default")
        self.assertEqual(plan["limits"][0]["limit"], 3)
        self.assertEqual(plan["limits"][0]["busiest"], 3)   # the flooding tenant is at its limit ...
        self.assertEqual(plan["limits"][0]["at_limit"], 1)  # ... and the only one
        self.assertEqual(big["limited"], [])                # never near its limit: nobody listed
        self.assertEqual(small["mode"], "shadow")
        self.assertEqual(small["show_keys"], "hash")
        self.assertEqual(len(small["limited"]), 1)
        # /metrics has no per-key series
        metrics = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=10).text
        self.assertNotIn("tenant-flood", metrics)

    def test_4_reload_keeps_history_and_is_marked(self):
        def closed_bucket():  # a 10-second bucket of items that is over (the current one still grows)
            h = self.history()["history"]
            items = {r["name"]: r for r in h["routes"]}["items"]["requests"]
            return h if sum(v is not None for v in items[:-1]) >= 1 else None
        before = harness.wait_until(closed_bucket, timeout=30, what="a closed bucket")
        self.assertFalse(any(e["kind"] == "reload" for e in before["events"]))
        r = requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers={"X-Tollgate-Admin": "1"}, timeout=30)
        self.assertEqual(r.json()["status"], "ok")
        after = harness.wait_until(lambda: (lambda h: h if any(e["kind"] == "reload" for e in h["events"]) else None)(
            self.history()["history"]), what="the reload event")
        # the buckets closed before the reload are the same after it: the route kept its name, so its history
        shift = (after["start_ms"] - before["start_ms"]) // before["bucket_ms"]
        for name in ("items", "api", "limited"):
            b = {r["name"]: r for r in before["routes"]}[name]
            a = {r["name"]: r for r in after["routes"]}[name]
            for col in ("requests", "5xx", "p99_us"):
                self.assertEqual(a[col][:len(b[col]) - 1 - shift], b[col][shift:-1], (name, col))
        # the limited keys are still listed (the recorder passed to the new config)
        limits = self.history()["limits"]
        self.assertEqual(limits[2]["limited"][0]["key"], "tenant-flood")
        dom = browser(self.admin_url("/#route=items"), "--dump-dom")
        assert_in_dom(self, r'data-mark="reload"', dom)

    def test_5_ctl_top(self):
        """The same view in a terminal: two frames, routes by error ratio."""
        def top(*args):
            r = subprocess.run([harness.BIN, "-c", self.gateway.path, "ctl", "top", *args], capture_output=True,
                               text=True, timeout=60)
            return r.returncode, r.stdout, r.stderr
        s = requests.Session()
        for _ in range(5):  # 5xx on api in the current bucket: first by errors
            s.get(self.gateway.url("/status/503"), timeout=5)
        rc, out, err = top("errors", "-n", "2")
        self.assertEqual(rc, 0, err)
        frames = [f for f in out.split("\ntollgate ") if f.strip()]
        self.assertEqual(len(frames), 2, out)
        frame = frames[-1]
        lines = frame.splitlines()
        self.assertRegex(lines[0], r"2 workers, reloads \d+ ok 0 failed")
        head = next(i for i, l in enumerate(lines) if l.startswith("ROUTE"))
        rows = [l.split()[0] for l in lines[head + 1:head + 4]]
        self.assertEqual(sorted(rows), ["api", "items", "limited"])
        self.assertEqual(rows[0], "api", frame)  # sorted by errors
        self.assertGreater(float(lines[head + 1].split()[4]), 0)  # its 5XX%
        self.assertRegex(frame, rf"app\s+1/2 .*127\.0\.0\.1:{self.b.port} up->down")
        self.assertRegex(frame, r"limited/rate_limit#2\s+tenant-flood: 9")
        self.assertRegex(frame, r"limited/rate_limit#1 \(shadow\)\s+hash:[0-9a-f]{12}: 10")
        self.assertNotIn("sk-live-0123456789", out)
        # by requests/s: items (the steady traffic) leads
        rc, out, _ = top("-n", "1")
        self.assertEqual(rc, 0)
        lines = out.splitlines()
        head = next(i for i, l in enumerate(lines) if l.startswith("ROUTE"))
        self.assertEqual(lines[head + 1].split()[0], "items", out)
        # usage errors
        self.assertEqual(top("sideways")[0], 2)
        self.assertEqual(top("-n", "0")[0], 2)
        self.assertEqual(top("-n")[0], 2)

    def admin_url(self, path):
        return f"http://127.0.0.1:{self.admin}{path}"


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
