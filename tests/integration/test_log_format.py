"""log_format: json — the process log as one JSON object a line (time,
level, message), every line parseable by a log shipper, quotes,
backslashes and control characters escaped; a reload switches the format
back to text."""
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

import harness

CONFIG = """
log_format: {fmt}
workers: 1
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
routes: [{{ name: r, cluster: dead }}]
clusters: [{{ name: dead, endpoints: [127.0.0.1:{dead}] }}]
"""


class LogFormatTest(unittest.TestCase):
    def test_json_lines_then_text_after_reload(self):
        d = tempfile.mkdtemp(prefix='tg-log"dir\\x-')  # the config path, logged, needs escaping
        path = os.path.join(d, "t.yaml")
        port, dead = harness.free_port(), harness.dead_port()
        with open(path, "w") as f:
            f.write(CONFIG.format(fmt="json", port=port, dead=dead))
        p = harness.Proc([harness.BIN, "-c", path], name="tollgate")
        try:
            harness.wait_port(port, proc=p.p)
            rc, _, _ = harness.curl(f"http://127.0.0.1:{port}/x")  # a dead upstream: a warn line
            self.assertEqual(rc, 0)
            with open(path, "w") as f:
                f.write(CONFIG.format(fmt="text", port=port, dead=dead))
            p.p.send_signal(signal.SIGHUP)
            deadline = time.time() + 30
            while time.time() < deadline and "configuration reloaded" not in p.output():
                time.sleep(0.05)
        finally:
            self.assertEqual(p.stop(), 0)
        lines = p.output().splitlines()
        cut = next(i for i, l in enumerate(lines) if "configuration reloaded" in l)
        objs = [json.loads(l) for l in lines[:cut]]  # every line before the reload is JSON
        for o in objs:
            self.assertEqual(sorted(o), ["level", "message", "time"])
            self.assertRegex(o["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertTrue(any(o["level"] == "info" and path in o["message"] for o in objs), objs)
        self.assertTrue(any(o["level"] == "warn" and "upstream" in o["message"] for o in objs), objs)
        # after the reload: text again
        self.assertRegex(lines[cut], r"^\d{4}-\d\d-\d\dT\S+Z info +configuration reloaded from ")
        self.assertFalse(lines[-1].startswith("{"), lines[-1])

    def test_unknown_format_is_a_config_error(self):
        d = tempfile.mkdtemp(prefix="tg-log-")
        path = os.path.join(d, "t.yaml")
        with open(path, "w") as f:
            f.write(CONFIG.format(fmt="xml", port=1, dead=2))
        out = subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 1)
        self.assertIn("log_format: 'xml' is not one of text, json", out.stderr)


if __name__ == "__main__":
    harness.main()
