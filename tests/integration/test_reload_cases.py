"""Reload cases beyond route swaps: removing a listener, its route and its
cluster while a request on them is in flight; a `workers` change (kept
until restart, said so); a listener's TLS settings; new contents of
bearer_tokens_file and jwks_file; a reload while draining; two reloads at
once; and a Kubernetes-style symlink swap under --watch. Each waits for
the effect (bounded) rather than for an amount of time."""
import base64
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec

import harness

ADMIN = {"X-Tollgate-Admin": "1"}


def b64(n, length):
    return base64.urlsafe_b64encode(n.to_bytes(length, "big")).rstrip(b"=").decode()


def jwks(key, kid):
    pub = key.public_key().public_numbers()
    return json.dumps({"keys": [{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(pub.x, 32),
                                 "y": b64(pub.y, 32)}]})


def wait_for(fn, want, timeout=10):
    deadline, got = time.time() + timeout, None
    while time.time() < deadline:
        got = fn()
        if got == want:
            return got
        time.sleep(0.05)
    return got


class ReloadCasesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("reload-cases")

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tg-reload-")
        self.port, self.admin, self.port2 = harness.free_port(), harness.free_port(), harness.free_port()

    def start(self, text, args=()):
        gw = harness.Gateway(text, port=self.port, args=args)
        self.addCleanup(self.finish, gw)
        return gw

    def finish(self, gw):
        if gw.proc.p.poll() is None:
            rc, out = gw.stop()
            self.assertEqual(rc, 0, out[-3000:])
        out = gw.proc.output()
        for marker in harness.SANITIZER_MARKERS:
            self.assertNotIn(marker, out)

    def reload(self, gw, text):
        with open(gw.path + ".tmp", "w") as f:
            f.write(text)
        os.replace(gw.path + ".tmp", gw.path)
        return requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers=ADMIN, timeout=10)

    def base(self, extra_listeners="", routes="", clusters="", workers=2, filters=""):
        return f"""
workers: {workers}
admin: {{ listen: 127.0.0.1:{self.admin} }}
listeners:
  - {{ name: main, listen: 127.0.0.1:{self.port} }}
{extra_listeners}
{filters}
routes:
{routes}
  - {{ name: default, cluster: app }}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{self.app.port}] }}
{clusters}
"""

    def slow_started(self):
        return requests.get(f"http://127.0.0.1:{self.app.port}/stats", timeout=5).json()["slow_started"]

    def test_removing_listener_route_and_cluster_in_flight(self):
        with_all = self.base(extra_listeners=f"  - {{ name: side, listen: 127.0.0.1:{self.port2} }}",
                             routes="  - { name: side-route, listeners: [side], cluster: side-cluster }",
                             clusters=f"  - {{ name: side-cluster, endpoints: [127.0.0.1:{self.app.port}] }}")
        gw = self.start(with_all)
        harness.wait_port(self.port2)
        result, started = {}, self.slow_started()

        def slow():
            result["r"] = requests.get(f"http://127.0.0.1:{self.port2}/slow?delay=2", timeout=15)
        t = threading.Thread(target=slow)
        t.start()
        self.assertEqual(wait_for(self.slow_started, started + 1), started + 1)  # in flight upstream
        r = self.reload(gw, self.base())  # all three gone
        self.assertEqual(r.json()["status"], "ok")

        def refused():
            try:
                requests.get(f"http://127.0.0.1:{self.port2}/whoami", timeout=2)
                return False
            except requests.ConnectionError:
                return True
        self.assertTrue(wait_for(refused, True))
        t.join(15)
        self.assertEqual((result["r"].status_code, result["r"].json()), (200, {"slept": 2.0}))
        self.assertEqual(requests.get(gw.url("/whoami"), timeout=5).status_code, 200)

    def test_workers_change_waits_for_restart(self):
        gw = self.start(self.base(workers=2))
        r = self.reload(gw, self.base(workers=3))
        self.assertEqual(r.json()["status"], "ok")
        m = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text
        self.assertEqual(harness.metric(m, "tollgate_workers"), 2)
        said = "a change of 'workers' takes effect on restart"
        self.assertTrue(wait_for(lambda: said in gw.proc.output(), True), gw.proc.output()[-2000:])
        self.assertEqual(requests.get(gw.url("/whoami"), timeout=5).status_code, 200)

    def test_listener_tls_settings_change(self):
        c = harness.make_certs(self.dir)

        def cfg(version):
            return self.base(extra_listeners=f"  - {{ name: tls, listen: 127.0.0.1:{self.port2}, tls: {{ "
                                             f"certificates: [{{ cert: {c['server.crt']}, key: {c['server.key']} }}], "
                                             f"min_version: \"{version}\" }} }}")

        def tls12_ok():
            p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.port2}", "-tls1_2", "-brief"],
                               input=b"", capture_output=True, timeout=30)
            return b"CONNECTION ESTABLISHED" in p.stdout + p.stderr
        gw = self.start(cfg("1.2"))
        harness.wait_port(self.port2)
        self.assertTrue(tls12_ok())
        self.assertEqual(self.reload(gw, cfg("1.3")).json()["status"], "ok")
        self.assertFalse(wait_for(tls12_ok, False))

    def test_token_and_jwks_files_reread(self):
        tokens, keys = os.path.join(self.dir, "tokens.txt"), os.path.join(self.dir, "jwks.json")
        k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        with open(tokens, "w") as f:
            f.write("alice t-one\n")
        with open(keys, "w") as f:
            f.write(jwks(k1, "k"))
        text = self.base(routes=f"""  - name: guarded
    match: {{ path_prefix: /echo }}
    cluster: app
    filters:
      - auth: {{ bearer_tokens_file: {tokens}, jwt: {{ jwks_file: {keys} }} }}""")
        gw = self.start(text)

        def status(token):
            return requests.get(gw.url("/echo/headers"), headers={"Authorization": f"Bearer {token}"},
                                timeout=5).status_code
        exp = int(time.time()) + 600
        jwt1 = jwt.encode({"sub": "one", "exp": exp}, k1, algorithm="ES256", headers={"kid": "k"})
        jwt2 = jwt.encode({"sub": "two", "exp": exp}, k2, algorithm="ES256", headers={"kid": "k"})
        self.assertEqual([status(x) for x in ("t-one", "t-two", jwt1, jwt2)], [200, 401, 200, 401])
        with open(tokens, "w") as f:
            f.write("alice t-two\n")
        with open(keys, "w") as f:
            f.write(jwks(k2, "k"))
        self.assertEqual(self.reload(gw, text).json()["status"], "ok")  # same config, new file contents
        self.assertEqual(wait_for(lambda: [status(x) for x in ("t-one", "t-two", jwt1, jwt2)], [401, 200, 401, 200]),
                         [401, 200, 401, 200])

    def test_reload_while_draining(self):
        gw = self.start(self.base())
        result, started = {}, self.slow_started()

        def slow():
            result["r"] = requests.get(gw.url("/slow?delay=2"), timeout=15)
        t = threading.Thread(target=slow)
        t.start()
        self.assertEqual(wait_for(self.slow_started, started + 1), started + 1)
        gw.proc.p.send_signal(signal.SIGTERM)
        # the signal is handled on the gateway's next loop turn: wait until it
        # says it is draining (/ready 503) before asking for a reload
        ready = lambda: requests.get(f"http://127.0.0.1:{self.admin}/ready", timeout=5).status_code  # noqa: E731
        self.assertEqual(wait_for(ready, 503), 503)
        try:  # the admin listener may answer (refusing) or be gone: never a crash
            r = requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers=ADMIN, timeout=10)
            self.assertEqual((r.status_code, r.json()["errors"]), (409, ["draining: reload refused"]))
        except requests.ConnectionError:
            pass
        gw.proc.p.send_signal(signal.SIGHUP)
        t.join(15)
        self.assertEqual(result["r"].status_code, 200)
        self.assertEqual(gw.proc.p.wait(15), 0)

    def test_two_reloads_at_once(self):
        tagged = lambda tag: self.base().replace("  - { name: default, cluster: app }",  # noqa: E731
                                                 "  - { name: default, cluster: app, response_headers: "
                                                 f"{{ set: {{ x-config: {tag} }} }} }}")
        gw = self.start(tagged("a"))
        with open(gw.path, "w") as f:
            f.write(tagged("b"))
        codes = []

        def post():
            codes.append(requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers=ADMIN, timeout=10)
                         .status_code)
        ts = [threading.Thread(target=post) for _ in range(2)]
        for t in ts:
            t.start()
        gw.proc.p.send_signal(signal.SIGHUP)  # and a third, by signal
        for t in ts:
            t.join(15)
        self.assertEqual(sorted(codes), [200, 200])
        self.assertEqual(wait_for(lambda: requests.get(gw.url("/whoami"), timeout=5).headers.get("x-config"), "b"),
                         "b")
        m = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text
        self.assertEqual(harness.metric(m, "tollgate_config_reloads_total", result="failure"), 0)

    def test_symlink_swap_under_watch(self):
        """The Kubernetes ConfigMap layout: tollgate.yaml -> ..data/tollgate.yaml,
        ..data -> a versioned directory swapped atomically on update."""
        tagged = lambda tag: self.base().replace("  - { name: default, cluster: app }",  # noqa: E731
                                                 "  - { name: default, cluster: app, response_headers: "
                                                 f"{{ set: {{ x-config: {tag} }} }} }}")
        k = os.path.join(self.dir, "configmap")
        for v, tag in (("v1", "one"), ("v2", "two")):
            os.makedirs(os.path.join(k, v))
            with open(os.path.join(k, v, "tollgate.yaml"), "w") as f:
                f.write(tagged(tag))
        os.symlink("v1", os.path.join(k, "..data"))
        os.symlink("..data/tollgate.yaml", os.path.join(k, "tollgate.yaml"))
        gw = self.start(tagged("unused"), args=("-c", os.path.join(k, "tollgate.yaml"), "--watch"))
        tag = lambda: requests.get(gw.url("/whoami"), timeout=5).headers.get("x-config")  # noqa: E731
        self.assertEqual(tag(), "one")
        os.symlink("v2", os.path.join(k, "..data_tmp"))
        os.rename(os.path.join(k, "..data_tmp"), os.path.join(k, "..data"))  # the atomic swap
        self.assertEqual(wait_for(tag, "two"), "two")


class RegistrySlotsTest(unittest.TestCase):
    """Names that come and go across reloads do not grow the process's
    slot tables: a slot that no live config uses passes to a new name, with
    its counters starting at zero. Five configs of 700 routes and 1100
    endpoints, each with new names, end with the slots of two
    (tollgate_slots), not of five."""

    N_ROUTES, N_ENDPOINTS = 700, 1100

    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("slots-a")
        cls.app2 = harness.start_app("slots-b")

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()
        cls.app2.stop()

    def config(self, prefix, side_cluster, host):
        routes = "\n".join(f"  - {{ name: {prefix}{i}, match: {{ host: {prefix}{i}.test }}, cluster: app }}"
                           for i in range(self.N_ROUTES)) if prefix else ""
        many = ", ".join(f"'{host}:{20000 + i}'" for i in range(self.N_ENDPOINTS)) if host else ""
        return f"""
workers: 2
admin: {{ listen: 127.0.0.1:{self.admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{self.port} }}]
routes:
{routes}
  - {{ name: side, match: {{ host: side.test }}, cluster: {side_cluster} }}
  - {{ name: default, cluster: app }}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{self.app.port}] }}
  - {{ name: {side_cluster}, endpoints: [127.0.0.1:{self.app2.port}] }}
""" + (f"  - {{ name: many, endpoints: [{many}] }}\n" if many else "")

    def reload(self, text):
        with open(self.gw.path + ".tmp", "w") as f:
            f.write(text)
        os.replace(self.gw.path + ".tmp", self.gw.path)
        r = requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers=ADMIN, timeout=30)
        return r.json()

    def metrics(self):
        return requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=10).text

    def get(self, host):
        return requests.get(self.gw.url("/whoami"), headers={"Host": f"{host}.test"}, timeout=5)

    def test_slots_of_removed_names_are_reused(self):
        self.port, self.admin = harness.free_port(), harness.free_port()
        self.gw = harness.Gateway(self.config("a", "x", "127.0.0.2"), port=self.port)
        self.addCleanup(self.gw.stop)  # a second stop is harmless
        for _ in range(3):
            self.assertEqual(self.get("a0").status_code, 200)
        for _ in range(2):
            self.assertEqual(self.get("side").json()["name"], "slots-b")
        m = self.metrics()
        self.assertEqual(harness.metric(m, "tollgate_requests_total", route="a0", cluster="app", code="2xx"), 3)
        self.assertEqual(harness.metric(m, "tollgate_upstream_requests_total", cluster="x",
                                        endpoint=f"127.0.0.1:{self.app2.port}"), 2)
        # the a-routes, cluster x and the 1100 endpoints leave ...
        self.assertEqual(self.reload(self.config("", "y", ""))["status"], "ok")
        # ... and new names arrive once nothing uses the old ones any more
        # (each worker switches at its next turn; bounded)
        deadline, got = time.time() + 30, None
        while time.time() < deadline:
            got = self.reload(self.config("b", "y", "127.0.0.3"))
            if got["status"] == "ok":
                break
            time.sleep(0.2)
        self.assertEqual(got["status"], "ok", got)
        m = self.metrics()
        # counters of reused slots start at zero
        for i in (0, 1, self.N_ROUTES - 1):
            self.assertEqual(harness.metric(m, "tollgate_requests_total", route=f"b{i}", cluster="app", code="2xx"), 0)
        self.assertEqual(harness.metric(m, "tollgate_upstream_requests_total", cluster="y",
                                        endpoint=f"127.0.0.1:{self.app2.port}"), 0)
        self.assertEqual(harness.metric(m, "tollgate_upstream_requests_total", cluster="many",
                                        endpoint="127.0.0.3:20000"), 0)
        self.assertEqual(self.get("b0").status_code, 200)
        self.assertEqual(self.get("side").json()["name"], "slots-b")
        m = self.metrics()
        self.assertEqual(harness.metric(m, "tollgate_requests_total", route="b0", cluster="app", code="2xx"), 1)
        self.assertEqual(harness.metric(m, "tollgate_upstream_requests_total", cluster="y",
                                        endpoint=f"127.0.0.1:{self.app2.port}"), 1)
        # and the gateway keeps going with new names: once the config that
        # used the old ones is gone (one snapshot left), they take its slots
        for prefix, host in (("c", "127.0.0.4"), ("d", "127.0.0.5"), ("e", "127.0.0.6")):
            self.assertEqual(self.reload(self.config("", "y", ""))["status"], "ok")
            deadline = time.time() + 30
            while time.time() < deadline and harness.metric(self.metrics(), "tollgate_config_snapshots") != 1:
                time.sleep(0.1)
            self.assertEqual(self.reload(self.config(prefix, "y", host))["status"], "ok")
            self.assertEqual(self.get(f"{prefix}5").status_code, 200)
        m = self.metrics()
        self.assertLessEqual(harness.metric(m, "tollgate_slots", table="routes"), 2 * self.N_ROUTES + 10)
        self.assertLessEqual(harness.metric(m, "tollgate_slots", table="endpoints"), 2 * self.N_ENDPOINTS + 10)
        self.assertGreater(harness.metric(m, "tollgate_stats_memory_bytes"), 0)
        rc, out = self.gw.stop()
        self.assertEqual(rc, 0, out[-3000:])
        for marker in harness.SANITIZER_MARKERS:
            self.assertNotIn(marker, out)


if __name__ == "__main__":
    harness.main()
