"""`tollgate -t -c FILE` checks a config like `nginx -t`: exit 0 for a good
file, 1 with FILE:LINE:COL: message lines for a broken one; the gateway
refuses to start on a broken file or a busy port; --version and --help."""
import os
import signal
import urllib.error
import urllib.request
import socket
import subprocess
import tempfile
import unittest

import harness


class _Status:
    def __init__(self, code):
        self.status_code = code


def requests_get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return _Status(r.status)
    except urllib.error.HTTPError as e:
        return _Status(e.code)


def check(text):
    d = tempfile.mkdtemp(prefix="tg-check-")
    path = os.path.join(d, "t.yaml")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr, path


GOOD = """
workers: 2
listeners:
  - name: main
    listen: 127.0.0.1:8080
routes:
  - name: r
    match: { path_prefix: /api }
    cluster: c
clusters:
  - name: c
    endpoints: [127.0.0.1:9000]
"""


class ConfigCheckTest(unittest.TestCase):
    def test_shipped_example_configs(self):
        # examples/quickstart.yaml, with the certificate quickstart.sh makes
        d = tempfile.mkdtemp(prefix="tg-example-")
        with open(os.path.join(harness.HERE, "..", "..", "examples", "quickstart.yaml")) as f:
            text = f.read()
        with open(os.path.join(d, "quickstart.yaml"), "w") as f:
            f.write(text)
        os.makedirs(os.path.join(d, "certs"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "2", "-keyout", os.path.join(d, "certs", "demo.key"),
                        "-out", os.path.join(d, "certs", "demo.crt"), "-subj", "/CN=localhost"],
                       check=True, capture_output=True, timeout=30)
        p = subprocess.run([harness.BIN, "-t", "-c", os.path.join(d, "quickstart.yaml")], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        for example in ("grpc.yaml", "oidc.yaml", "ext-auth/tollgate.yaml"):
            p = subprocess.run([harness.BIN, "-t", "-c", os.path.join(harness.HERE, "..", "..", "examples", example)],
                               capture_output=True, text=True, timeout=30, env=dict(os.environ, USERS_TOKEN="t"))
            self.assertEqual(p.returncode, 0, example + ": " + p.stderr)

    def test_good(self):
        rc, err, path = check(GOOD)
        self.assertEqual(rc, 0, err)
        self.assertIn(f"configuration file {path} test is successful", err)

    def test_errors_have_line_and_column(self):
        broken = GOOD.replace("cluster: c\n", "cluster: nope\n").replace("workers: 2", "workers: lots") + "extra: 1\n"
        rc, err, path = check(broken)
        self.assertEqual(rc, 1)
        self.assertIn(f"{path}:2:10: workers: 'lots' is not an integer in [1, 256]", err)
        self.assertIn(f"{path}:9:14: route 'r': unknown cluster 'nope'", err)
        self.assertIn(f"{path}:13:1: unknown key 'extra' in the top level", err)
        self.assertIn("test failed", err)

    def test_yaml_syntax_error(self):
        rc, err, path = check("listeners: [\n")
        self.assertEqual(rc, 1)
        self.assertIn(f"{path}:2:1: YAML syntax error", err)

    def test_unsupported_features_rejected_not_ignored(self):
        rc, err, path = check(GOOD.replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:8080\n    tls: {}"))
        self.assertEqual(rc, 1)
        self.assertIn(f"{path}:6:10: tls: missing required key 'certificates'", err)
        rc, err, path = check(GOOD.replace("endpoints:", "protocol: h2\n    endpoints:"))
        self.assertEqual(rc, 1)
        self.assertIn("protocol: 'h2' is HTTP/2 over TLS and needs a tls block", err)

    def test_names_are_not_looked_up_by_check(self):
        """-t checks the file, not the network: a name endpoint passes
        whatever DNS says of it (the resolver here answers nothing), while
        the same config with on_failure: fail refuses to start, saying why."""
        dead = f"127.0.0.1:{harness.free_port()}"
        text = GOOD.replace("127.0.0.1:9000", "no-such-host.invalid:9000").replace(
            "routes:", f"dns: {{ resolvers: ['{dead}'], timeout: 300ms, on_failure: fail }}\nroutes:", 1)
        rc, err, path = check(text)
        self.assertEqual(rc, 0, err)
        p = subprocess.run([harness.BIN, "-c", path], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cluster 'c': endpoint 'no-such-host.invalid:9000' does not resolve", p.stderr)

    def test_missing_file(self):
        p = subprocess.run([harness.BIN, "-t", "-c", "/nonexistent.yaml"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("/nonexistent.yaml: cannot open", p.stderr)

    def test_run_refuses_broken_config(self):
        rc, _, path = check("listeners: 3\n")
        p = subprocess.run([harness.BIN, "-c", path], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("listener must be a list", p.stderr)

    def test_check_creates_no_file(self):
        """-t reads what the config names but creates nothing: an access
        log's file appears when the gateway starts, not when it is checked;
        a log the check cannot see failing (a directory) fails the start."""
        d = tempfile.mkdtemp(prefix="tg-check-log-")
        log = os.path.join(d, "access.log")
        text = GOOD.replace("    cluster: c\n", f"    cluster: c\n    filters: [{{ access_log: {{ path: {log} }} }}]\n", 1)
        text = text.replace("8080", str(harness.free_port()))
        rc, err, path = check(text)
        self.assertEqual(rc, 0, err)
        self.assertFalse(os.path.exists(log), "tollgate -t created the access log")
        rc, err, _ = check(text.replace(log, os.path.join(d, "missing", "a.log")))
        self.assertEqual(rc, 1)
        self.assertIn("access_log path: cannot open", err)
        gw = subprocess.Popen([harness.BIN, "-c", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            harness.wait_until(lambda: os.path.exists(log), what="the access log created at start-up")
        finally:
            gw.terminate()
            gw.communicate(timeout=30)
        with open(path, "w") as f:
            f.write(text.replace(log, d))  # a directory: writable, but no file to append to
        p = subprocess.run([harness.BIN, "-c", path], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"access_log path: cannot open {d}: Is a directory", p.stderr)
        # the same at a reload: refused, the running config stays
        port = harness.free_port()
        good = text.replace(text.split("listen: 127.0.0.1:")[1].split("\n")[0], str(port), 1)
        gw = harness.Gateway(good, port=port)
        self.addCleanup(gw.stop)
        with open(gw.path, "w") as f:
            f.write(good.replace(log, d))
        gw.proc.p.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: "reload failed" in gw.proc.output(), what="the reload refused")
        self.assertIn(f"access_log path: cannot open {d}: Is a directory", gw.proc.output())
        self.assertEqual(requests_get(f"http://127.0.0.1:{port}/").status_code, 404)  # still serving: no route for /
        harness.assert_clean_exit(self, gw)

    def test_busy_port_is_an_error(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        _, _, path = check(GOOD.replace("8080", str(port)))
        p = subprocess.run([harness.BIN, "-c", path], capture_output=True, text=True, timeout=30)
        s.close()
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"cannot listen on 127.0.0.1:{port}", p.stderr)

    def test_version_and_help(self):
        p = subprocess.run([harness.BIN, "--version"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"^tollgate \d+\.\d+\.\d+")
        p = subprocess.run([harness.BIN, "--help"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0)
        self.assertIn("-t, --test", p.stdout)
        p = subprocess.run([harness.BIN, "--bogus"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    harness.main()


class ConcurrencyLimitMaxTest(unittest.TestCase):
    """concurrency_limit takes `max` as another name for `limit` (the
    config shape operators are shown spells it `max: 4`); both at once is
    an error."""

    def test_max_is_limit(self):
        base = GOOD.replace("    cluster: c\n", "    cluster: c\n    filters:\n      - concurrency_limit: BODY\n", 1)
        rc, err, _ = check(base.replace("BODY", "{ key: identity, max: 4 }"))
        self.assertEqual(rc, 0, err)
        rc, err, path = check(base.replace("BODY", "{ key: identity, max: 4, limit: 4 }"))
        self.assertEqual(rc, 1)
        self.assertIn("give limit or max (the same thing), not both", err)
        rc, err, _ = check(base.replace("BODY", "{ key: identity, max: 0 }"))
        self.assertEqual(rc, 1)
