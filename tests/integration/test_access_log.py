"""access_log: one JSON line per exchange with the request id, route,
method, path, status, byte counts, identity, upstream, attempts and
latencies; a template format; reopen on SIGUSR1 after logrotate moves the
file away."""
import json
import os
import signal
import tempfile
import time

import requests

import harness


def wait_line(path, text, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                lines = f.read().splitlines()
            if text in lines:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never logged in {path}")


def read_lines(path, n, timeout=5):
    deadline = time.time() + timeout
    lines = []
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                lines = [l for l in f.read().splitlines() if l]
            if len(lines) >= n:
                return lines
        time.sleep(0.05)
    return lines


class AccessLogTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("logged")
        cls.procs = [cls.app]
        cls.port = harness.free_port()
        cls.dir = tempfile.mkdtemp(prefix="tg-logs-")
        cls.json_log = os.path.join(cls.dir, "access.json")
        cls.text_log = os.path.join(cls.dir, "access.log")
        cls.raw_log = os.path.join(cls.dir, "raw.log")
        cfg = f"""
workers: 2
path_normalization: {{ backslashes: keep }}  # a raw backslash reaches the log (refused by default)
filters:
  - access_log: {{ path: {cls.json_log} }}
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
  - name: secured
    match: {{ path_prefix: /secure }}
    cluster: app
    filters:
      - auth: {{ bearer_tokens: [{{ name: alice, token: t-alice }}] }}
      - access_log: {{ path: {cls.text_log}, format: "{{method}} {{path}} {{status}} {{identity}} {{attempts}}" }}
  - name: open
    cluster: app
    filters:
      - access_log: {{ path: {cls.raw_log}, format: "{{request_id}} {{method}} {{path}} {{status}}" }}
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    def test_json_lines(self):
        start = len(read_lines(self.json_log, 0, timeout=0.2))
        requests.get(self.gateway.url("/whoami"), headers={"X-Request-Id": "rid-1"}, timeout=5)
        requests.post(self.gateway.url("/upload"), data=b"x" * 1234, headers={"X-Request-Id": "rid-2"}, timeout=5)
        requests.get(self.gateway.url("/secure/x"), headers={"X-Request-Id": "rid-3"}, timeout=5)  # 401
        requests.get(self.gateway.url("/secure/y"), headers={"Authorization": "Bearer t-alice",
                                                             "X-Request-Id": "rid-4"}, timeout=5)
        lines = read_lines(self.json_log, start + 4)[start:]
        self.assertEqual(len(lines), 4, lines)
        recs = {r["request_id"]: r for r in map(json.loads, lines)}
        self.assertEqual(set(recs), {"rid-1", "rid-2", "rid-3", "rid-4"})
        r = recs["rid-1"]
        self.assertEqual((r["route"], r["method"], r["path"], r["status"], r["protocol"]),
                         ("open", "GET", "/whoami", 200, "HTTP/1.1"))
        self.assertEqual(r["listener"], "main")
        self.assertEqual(r["client"], "127.0.0.1")
        self.assertEqual(r["upstream"], f"127.0.0.1:{self.app.port}")
        self.assertEqual(r["attempts"], 1)
        self.assertGreater(r["bytes_out"], 0)
        self.assertRegex(r["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        for k in ("duration_ms", "upstream_connect_ms", "upstream_ttfb_ms", "upstream_ms"):
            self.assertIsInstance(r[k], float)
            self.assertGreaterEqual(r[k], 0)
        self.assertGreaterEqual(r["duration_ms"], r["upstream_ttfb_ms"])
        self.assertEqual(recs["rid-2"]["bytes_in"], 1234)
        self.assertEqual(recs["rid-3"]["status"], 401)
        self.assertIsNone(recs["rid-3"]["identity"])
        self.assertIsNone(recs["rid-3"]["upstream"])
        self.assertEqual(recs["rid-3"]["attempts"], 0)
        self.assertEqual(recs["rid-4"]["identity"], "alice")

    def test_template_and_reopen(self):
        requests.get(self.gateway.url("/secure/a"), headers={"Authorization": "Bearer t-alice"}, timeout=5)
        wait_line(self.text_log, "GET /secure/a 404 alice 1")  # the app's own 404
        rotated = self.text_log + ".1"
        os.rename(self.text_log, rotated)  # what logrotate does
        self.gateway.proc.p.send_signal(signal.SIGUSR1)
        # the writer reopens on its next turn, creating the file anew: wait for
        # that (bounded) rather than for an amount of time
        deadline = time.time() + 30
        while not os.path.exists(self.text_log) and time.time() < deadline:
            time.sleep(0.02)
        self.assertTrue(os.path.exists(self.text_log), "the log was not reopened after SIGUSR1")
        requests.get(self.gateway.url("/secure/b"), timeout=5)
        self.assertEqual(wait_line(self.text_log, "GET /secure/b 401 - 0"), ["GET /secure/b 401 - 0"])
        with open(rotated) as f:
            self.assertNotIn("/secure/b", f.read())

    def test_text_fields_are_escaped(self):
        """Client-controlled fields cannot forge a line or a field of the
        text format: '"', '\\', control bytes and bytes >= 0x7f are
        written as \\xHH, like nginx."""
        raw = (b'GET /a"b\\c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
               b'X-Request-Id: id" 200 "forged\t\xff\r\n\r\n')
        out = harness.raw_request(self.port, raw)
        self.assertTrue(out.startswith(b"HTTP/1.1 404"), out[:100])  # the app has no such path
        want = r"id\x22 200 \x22forged\x09\xFF GET /a\x22b\x5Cc 404"
        self.assertIn(want, wait_line(self.raw_log, want))


if __name__ == "__main__":
    harness.main()
