"""The admin listener as a trust boundary: it answers only to the names it
is known by (its address, loopback names, admin.allowed_hosts: a DNS
rebinding page sends its own name and gets 421); a state-changing request
needs the admin token or a non-simple header (a cross-site form POST to
/-/reload gets 403); with admin.token (or token_file) every endpoint but
the probes needs `Authorization: Bearer`; /config never shows the token;
admin.max_connections caps the open connections (a flood of idle ones
cannot take the process's descriptors), counted and reloadable."""
import os
import socket
import tempfile

import requests

import harness

TOKEN = "admin-token-0123456789abcdef"


class AdminOpenTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("admin-open")
        cls.procs = [cls.app]
        cls.port, cls.aport = harness.free_port(), harness.free_port()
        cfg = harness.simple_config(cls.port, [f"127.0.0.1:{cls.app.port}"]) + (
            f"admin: {{ listen: 127.0.0.1:{cls.aport}, allowed_hosts: [admin.internal] }}\n")
        cls.gateway = harness.Gateway(cfg, port=cls.port)
        harness.wait_port(cls.aport)

    def url(self, path):
        return f"http://127.0.0.1:{self.aport}{path}"

    def test_host_allow_list(self):
        for host, want in ((f"127.0.0.1:{self.aport}", 200), (f"localhost:{self.aport}", 200), ("localhost", 200),
                           ("admin.internal", 200), (f"ADMIN.internal:{self.aport}", 200),
                           ("evil.example", 421), (f"evil.example:{self.aport}", 421),
                           (f"localhost:{self.aport + 1}", 421), ("127.0.0.1.evil.example", 421)):
            with self.subTest(host):
                r = requests.get(self.url("/metrics"), headers={"Host": host}, timeout=5)
                self.assertEqual(r.status_code, want, r.text[:200])

    def test_cross_site_form_post_cannot_reload(self):
        # what a browser sends for <form method=post action=http://127.0.0.1:9901/-/reload>
        r = requests.post(self.url("/-/reload"), data={"x": "1"},
                          headers={"Origin": "https://evil.example"}, timeout=10)
        self.assertEqual(r.status_code, 403)
        self.assertIn("X-Tollgate-Admin", r.json()["error"])
        r = requests.post(self.url("/-/reload"), headers={"X-Tollgate-Admin": "1"}, timeout=10)
        self.assertEqual(r.status_code, 200, r.text)


class AdminTokenTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("admin-token")
        cls.procs = [cls.app]
        cls.port, cls.aport = harness.free_port(), harness.free_port()
        cls.dir = tempfile.mkdtemp(prefix="tg-admin-")
        with open(os.path.join(cls.dir, "admin.token"), "w") as f:
            f.write(TOKEN + "\n")
        cfg = harness.simple_config(cls.port, [f"127.0.0.1:{cls.app.port}"]) + (
            f"admin: {{ listen: 127.0.0.1:{cls.aport}, token_file: {cls.dir}/admin.token }}\n")
        cls.gateway = harness.Gateway(cfg, port=cls.port)
        harness.wait_port(cls.aport)

    def url(self, path):
        return f"http://127.0.0.1:{self.aport}{path}"

    def test_token_required_except_probes(self):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/metrics", "/config"):
            with self.subTest(path):
                self.assertEqual(requests.get(self.url(path), timeout=5).status_code, 401)
                self.assertEqual(requests.get(self.url(path), headers={"Authorization": "Bearer wrong"},
                                              timeout=5).status_code, 401)
                self.assertEqual(requests.get(self.url(path), headers=auth, timeout=5).status_code, 200)
        self.assertEqual(requests.get(self.url("/healthz"), timeout=5).status_code, 200)
        self.assertEqual(requests.get(self.url("/ready"), timeout=5).status_code, 200)
        self.assertEqual(requests.post(self.url("/-/reload"), timeout=10).status_code, 401)
        self.assertEqual(requests.post(self.url("/-/reload"), headers=auth, timeout=10).status_code, 200)
        cfg = requests.get(self.url("/config"), headers=auth, timeout=5)
        self.assertNotIn(TOKEN, cfg.text)
        self.assertEqual(cfg.json()["admin"]["token"], "<redacted>")


def admin_answers(port):
    """True if a /healthz on a new connection is answered, False if the
    connection is closed without an answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        try:
            return s.recv(64).startswith(b"HTTP/1.1 200")
        except ConnectionResetError:
            return False
    finally:
        s.close()


class AdminConnectionCapTest(harness.GatewayTest):
    """Regression (#26): the admin listener had no connection cap."""

    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("admin-cap")
        cls.procs = [cls.app]
        cls.port, cls.aport = harness.free_port(), harness.free_port()
        cls.gateway = harness.Gateway(harness.simple_config(cls.port, [f"127.0.0.1:{cls.app.port}"]) +
                                      f"admin: {{ listen: 127.0.0.1:{cls.aport}, max_connections: 4 }}\n",
                                      port=cls.port)
        # listening, seen without connecting: no connection of ours but the
        # test's may be open on the admin listener
        harness.wait_until(lambda: harness.accept_queue(cls.aport) is not None, what="the admin listener")

    def test_idle_connections_cannot_take_the_listener(self):
        held = [socket.create_connection(("127.0.0.1", self.aport), timeout=10) for _ in range(4)]
        try:
            # the four accepted (the accept queue empty): every new connection is closed unanswered
            harness.wait_until(lambda: harness.accept_queue(self.aport) == 0, what="the four accepted")
            for _ in range(4):
                self.assertFalse(admin_answers(self.aport))
        finally:
            for s in held:
                s.close()
        harness.wait_until(lambda: admin_answers(self.aport), what="the admin listener answering again")
        self.assertGreaterEqual(harness.metric(harness.scrape(self.aport), "tollgate_admin_connections_rejected_total"),
                                4)
        self.assertEqual(requests.get(f"http://127.0.0.1:{self.aport}/config", timeout=5).json()["admin"]
                         ["max_connections"], 4)


if __name__ == "__main__":
    harness.main()
