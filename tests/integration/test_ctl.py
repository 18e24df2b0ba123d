"""`tollgate ctl` (the admin client in the binary) and `tollgate -T` (the
effective config): each command against a live gateway, its exit status,
what it prints, and every way it can fail (a refused reload, a wrong
token, no admin listener, nobody listening, a broken file)."""
import json
import os
import re
import subprocess
import tempfile
import unittest

import requests

import harness

TOKEN = "ctl-admin-token-0123456789"


def run(*args, env=None, timeout=60):
    r = subprocess.run([harness.BIN, *args], capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    return r.returncode, r.stdout, r.stderr


class CtlTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("ctl")
        cls.procs = [cls.app]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.dead = harness.dead_port()
        cls.env = {"TG_CTL_TOKEN": TOKEN, "TG_CTL_PORT": str(cls.port)}
        cls.cfg = cls.config()
        cls.gateway = harness.Gateway(cls.cfg, port=cls.port, env_extra=cls.env)
        cls.path = cls.gateway.path

    @classmethod
    def config(cls, extra_route=""):
        return f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.admin}, token: "${{TG_CTL_TOKEN}}" }}
listeners:
  - name: main
    listen: "127.0.0.1:${{TG_CTL_PORT}}"
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}, 127.0.0.1:{cls.dead}]
routes:
{extra_route}
  - name: default
    match: {{ path_prefix: / }}
    cluster: app
    request_headers: {{ set: {{ x-api-key: header-secret-value }} }}
"""

    def ctl(self, *args, path=None):
        return run("-c", path or self.path, "ctl", *args, env=self.env)

    def other_config(self, text):
        d = tempfile.mkdtemp(prefix="tg-ctl-")
        p = os.path.join(d, "tollgate.yaml")
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_health(self):
        rc, out, err = self.ctl("health")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "live: yes\nready: yes\n")

    def test_endpoints_table_counts_traffic(self):
        for _ in range(6):
            self.assertEqual(requests.get(self.gateway.url("/items"), timeout=10).status_code, 200)
        rc, out, err = self.ctl("endpoints")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertTrue(lines[0].split()[:3] == ["CLUSTER", "ENDPOINT", "STATE"], out)
        rows = {l.split()[1]: l.split() for l in lines[1:]}
        live, dead = rows[f"127.0.0.1:{self.app.port}"], rows[f"127.0.0.1:{self.dead}"]
        self.assertEqual(live[0], "app")
        self.assertEqual(live[2], "up")
        self.assertGreaterEqual(int(live[3]), 6)  # requests sent to it
        self.assertGreater(int(dead[4]), 0)       # the dead one refused connections

    def test_config_is_redacted_json(self):
        rc, out, err = self.ctl("config")
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertEqual(doc["admin"]["token"], "<redacted>")
        self.assertEqual(doc["listeners"][0]["listen"], f"127.0.0.1:{self.port}")  # ${VAR} expanded
        self.assertNotIn(TOKEN, out)
        self.assertNotIn("header-secret-value", out)
        self.assertIn("\n  ", out)  # indented for people

    def test_status_json(self):
        rc, out, err = self.ctl("status")
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertEqual([c["name"] for c in doc["clusters"]], ["app"])
        self.assertEqual([r["name"] for r in doc["routes"]], ["default"])

    def test_reload_applies_and_refusal_is_reported(self):
        try:
            with open(self.path, "w") as f:
                f.write(self.config(extra_route="  - { name: added, match: { path_prefix: /added }, cluster: app }"))
            rc, out, err = self.ctl("reload")
            self.assertEqual(rc, 0, err)
            self.assertEqual(json.loads(out)["status"], "ok")
            rc, out, _ = self.ctl("config")
            self.assertIn("added", [r["name"] for r in json.loads(out)["routes"]])
            # a broken route: the gateway refuses, ctl says why and exits 1
            with open(self.path, "w") as f:
                f.write(self.config(extra_route="  - { name: bad, match: { path_prefx: /x }, cluster: app }"))
            rc, out, err = self.ctl("reload")
            self.assertEqual(rc, 1)
            self.assertIn("path_prefx", err)
            self.assertRegex(err, r"tollgate\.yaml:\d+:\d+")
            # the admin section alone is read: health still works on the broken file
            rc, out, err = self.ctl("health")
            self.assertEqual(rc, 0, err)
            self.assertEqual(requests.get(self.gateway.url("/items"), timeout=10).status_code, 200)
        finally:
            with open(self.path, "w") as f:
                f.write(self.cfg)
            self.assertEqual(self.ctl("reload")[0], 0)

    def test_wrong_token_is_refused(self):
        p = self.other_config(f"admin: {{ listen: 127.0.0.1:{self.admin}, token: wrong-token-0123456789 }}\n")
        rc, out, err = self.ctl("config", path=p)
        self.assertEqual(rc, 1)
        self.assertIn("admin token", err)
        self.assertEqual(out, "")

    def test_no_admin_listener(self):
        p = self.other_config("listeners: []\n")
        rc, _, err = self.ctl("health", path=p)
        self.assertEqual(rc, 2)
        self.assertIn("no admin listener", err)

    def test_nobody_listening(self):
        p = self.other_config(f"admin: {{ listen: 127.0.0.1:{self.dead} }}\n")
        rc, _, err = self.ctl("health", path=p)
        self.assertEqual(rc, 3)
        self.assertIn("cannot reach the admin listener", err)

    def test_usage_errors(self):
        rc, _, err = self.ctl("frobnicate")
        self.assertEqual(rc, 2)
        self.assertIn("unknown command 'frobnicate'", err)
        rc, _, err = self.ctl()
        self.assertEqual(rc, 2)
        self.assertIn("usage:", err)
        rc, _, err = self.ctl("health", path="/nonexistent/tollgate.yaml")
        self.assertEqual(rc, 2)
        self.assertIn("cannot open", err)
        p = self.other_config(f"admin: {{ listen: 127.0.0.1:{self.admin}, token: [1, 2] }}\n")
        rc, _, err = self.ctl("health", path=p)
        self.assertEqual(rc, 2)
        self.assertRegex(err, r":1:\d+: admin token")


class DumpTest(unittest.TestCase):
    """`tollgate -T -c FILE`: checks, then prints the effective config."""

    def test_effective_config(self):
        d = tempfile.mkdtemp(prefix="tg-dump-")
        p = os.path.join(d, "tollgate.yaml")
        with open(p, "w") as f:
            f.write("""
admin: { listen: "127.0.0.1:${TG_DUMP_ADMIN}", token: "${TG_DUMP_TOKEN}" }
listeners: [{ name: main, listen: 127.0.0.1:8080 }]
clusters: [{ name: app, endpoints: [127.0.0.1:9000] }]
routes:
  - name: r
    cluster: app
    filters:
      - auth: { api_keys: { keys: [{ name: ci, key: "${TG_DUMP_KEY}" }] } }
""")
        env = {"TG_DUMP_ADMIN": "9999", "TG_DUMP_TOKEN": "dump-token-0123456789abc", "TG_DUMP_KEY": "key-7f3a9c"}
        rc, out, err = run("-T", "-c", p, env=env)
        self.assertEqual(rc, 0, err)
        self.assertIn("test is successful", err)
        doc = json.loads(out)
        self.assertEqual(doc["admin"]["listen"], "127.0.0.1:9999")             # expanded
        self.assertEqual(doc["drain_timeout_ms"], 30000)                       # a default filled in
        self.assertEqual(doc["limits"]["max_header_bytes"], 65536)
        self.assertEqual(doc["clusters"][0]["connect_timeout_ms"] > 0, True)
        self.assertEqual(doc["admin"]["token"], "<redacted>")
        self.assertEqual(doc["document"]["routes"][0]["filters"][0]["auth"]["api_keys"]["keys"][0]["key"], "<redacted>")
        for secret in env.values():
            if secret != "9999":
                self.assertNotIn(secret, out)

    def test_every_path_match_kind_is_printed_under_its_key(self):
        """Regression (found by fuzz_config's round-trip oracle): the path
        kinds were named from a table without path_separated_prefix, so a
        path_separated_prefix route printed as path_regex and a path_regex
        route read past the table's end."""
        d = tempfile.mkdtemp(prefix="tg-dump-")
        p = os.path.join(d, "tollgate.yaml")
        with open(p, "w") as f:
            f.write("""
listeners: [{ name: main, listen: 127.0.0.1:8080 }]
clusters: [{ name: app, endpoints: [127.0.0.1:9000] }]
routes:
  - { name: exact, match: { path: /a }, cluster: app }
  - { name: prefix, match: { path_prefix: /b }, cluster: app }
  - { name: separated, match: { path_separated_prefix: /c }, cluster: app }
  - { name: regex, match: { path_regex: "^/d[0-9]+$" }, cluster: app }
""")
        rc, out, err = run("-T", "-c", p)
        self.assertEqual(rc, 0, err)
        matches = {r["name"]: r["match"] for r in json.loads(out)["routes"]}
        self.assertEqual(matches, {"exact": {"path": "/a"}, "prefix": {"path_prefix": "/b"},
                                   "separated": {"path_separated_prefix": "/c"}, "regex": {"path_regex": "^/d[0-9]+$"}})

    def test_invalid_config_prints_errors_only(self):
        d = tempfile.mkdtemp(prefix="tg-dump-")
        p = os.path.join(d, "tollgate.yaml")
        with open(p, "w") as f:
            f.write("listeners: [{ name: main, listen: nowhere }]\n")
        rc, out, err = run("-T", "-c", p)
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertTrue(re.search(r"tollgate\.yaml:1:\d+: .*nowhere", err), err)
        self.assertIn("test failed", err)


if __name__ == "__main__":
    harness.main()
