"""A filter is one file plus one line: tests/filters/stamp.c, registered by
tests/filters/stamp.def in the test binary tollgate_stamp, and nowhere
else. Through it, every surface a filter has: keys that parse themselves
(and show in --schema), its own metric families, per-worker state, a
pause with a cancel hook when the client leaves during it."""
import json
import os
import socket
import subprocess
import tempfile
import unittest

import jsonschema
import requests

import harness

STAMP_BIN = os.environ.get("TOLLGATE_STAMP_BIN", os.path.join(harness.HERE, "..", "..", "build", "tests",
                                                               "tollgate_stamp"))


def schema_of(binary):
    out = subprocess.run([binary, "--schema"], capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)


def check(binary, text):
    d = tempfile.mkdtemp(prefix="tg-plugin-")
    path = os.path.join(d, "t.yaml")
    with open(path, "w") as f:
        f.write(text)
    return subprocess.run([binary, "-t", "-c", path], capture_output=True, text=True, timeout=30)


class PluginFilterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(STAMP_BIN, os.X_OK):
            raise AssertionError(f"{STAMP_BIN}: not built (the tests target builds it)")
        cls.app = harness.start_app("plugin")

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def config(self, port, admin):
        return f"""
workers: 1
admin: {{ listen: 127.0.0.1:{admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
routes:
  - name: slow
    match: {{ path_prefix: /slow-stamp }}
    cluster: app
    filters: [{{ stamp: {{ value: late, delay: 3s }} }}]
  - name: stamped
    cluster: app
    filters: [{{ stamp: {{ value: v1, header: x-plugin }} }}]
clusters: [{{ name: app, endpoints: [127.0.0.1:{self.app.port}] }}]
"""

    def start(self):
        port, admin = harness.free_port(), harness.free_port()
        text = self.config(port, admin)
        gw = harness.Gateway(text, port=port, binary=STAMP_BIN)
        # the config is valid under the schema of the binary that has the filter
        gw.schema_problems = [e.message for e in
                              jsonschema.Draft202012Validator(schema_of(STAMP_BIN)).iter_errors(harness.yaml_load(text))]
        self.addCleanup(gw.stop)
        return gw, port, admin

    def test_registered_by_one_line(self):
        ours = schema_of(STAMP_BIN)
        text = json.dumps(ours)
        self.assertIn('"stamp"', text)
        self.assertIn("what the stamp says", text)  # its key rows' docs
        self.assertNotIn('"stamp"', json.dumps(schema_of(harness.BIN)))  # the shipped binary does not have it
        p = check(harness.BIN, self.config(8080, 8081))
        self.assertEqual(p.returncode, 1)
        self.assertIn("stamp", p.stderr)
        p = check(STAMP_BIN, self.config(8080, 8081))
        self.assertEqual(p.returncode, 0, p.stderr)
        # the rows check themselves: a required key, bounds, types
        p = check(STAMP_BIN, self.config(8080, 8081).replace("value: v1, ", ""))
        self.assertEqual(p.returncode, 1)
        self.assertIn("stamp: missing required key 'value'", p.stderr)
        p = check(STAMP_BIN, self.config(8080, 8081).replace("delay: 3s", "delay: 11s"))
        self.assertEqual(p.returncode, 1)
        self.assertIn("delay: must be between", p.stderr)
        p = check(STAMP_BIN, self.config(8080, 8081).replace("header: x-plugin", "header: 'x plugin'"))
        self.assertEqual(p.returncode, 1)
        self.assertIn("is not a header name", p.stderr)

    def test_stamps_counts_and_keeps_per_worker_state(self):
        gw, port, admin = self.start()
        for n in (1, 2, 3):
            r = requests.get(f"http://127.0.0.1:{port}/echo/headers", timeout=10)
            self.assertEqual(r.status_code, 200)
            self.assertEqual(r.headers["x-plugin"], f"v1; n={n}")  # the worker's own count
            self.assertIn(["x-plugin", f"v1; n={n}"], r.json()["headers"])  # the upstream saw it too
        text = harness.scrape(admin)
        self.assertEqual(harness.metric(text, "tollgate_stamp_requests_total", route="stamped"), 3)
        self.assertIn("# HELP tollgate_stamp_requests_total Requests the stamp filter stamped", text)
        self.assertEqual(harness.metric(text, "tollgate_stamp_cancelled_total", route="slow"), 0)
        harness.assert_clean_exit(self, gw)

    def test_cancel_hook_when_the_client_leaves_during_a_pause(self):
        """One HTTP/2 write: three streams to the delayed route, each reset
        right after its request, then a plain request. The gateway reads
        the frames in order, so each exchange starts, pauses in stamp and
        is cancelled before the plain stream is looked at."""
        import h2.connection
        import h2.events
        gw, port, admin = self.start()
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        c = h2.connection.H2Connection()
        c.initiate_connection()
        req = [(":method", "GET"), (":scheme", "http"), (":authority", "x")]
        for sid in (1, 3, 5):
            c.send_headers(sid, [*req, (":path", "/slow-stamp")], end_stream=True)
            c.reset_stream(sid)
        c.send_headers(7, [*req, (":path", "/echo/headers")], end_stream=True)
        s.sendall(c.data_to_send())
        got, deadline = {}, 20
        s.settimeout(deadline)
        while 7 not in got:
            d = s.recv(65536)
            self.assertTrue(d, "the gateway closed the connection")
            for ev in c.receive_data(d):
                if isinstance(ev, h2.events.ResponseReceived):
                    got[ev.stream_id] = dict(ev.headers)
            s.sendall(c.data_to_send())
        s.close()
        self.assertEqual(got[7][b":status"], b"200")
        self.assertEqual(got[7][b"x-plugin"], b"v1; n=1")
        text = harness.scrape(admin)
        self.assertEqual(harness.metric(text, "tollgate_stamp_cancelled_total", route="slow"), 3)
        self.assertEqual(harness.metric(text, "tollgate_stamp_requests_total", route="slow"), 0)
        harness.assert_clean_exit(self, gw)  # no timer fired into a recycled exchange (ASan would say)


if __name__ == "__main__":
    harness.main()
