"""The gateway as a trust boundary: nothing a client sends can make the
upstream believe something only tollgate may say. A recording upstream
shows exactly what was forwarded.

- a validly signed JWT whose identity claim holds CR LF is refused (401):
  the claim would otherwise be written raw into a header, smuggling a
  second request onto a pooled upstream connection;
- a client-sent copy of any auth filter's identity header, of any
  listener's client_cert_header and of x-forwarded-client-cert is removed
  on every listener, whatever the route's filters;
- Connection cannot remove Host, the framing headers or a trust header
  (400), and the headers it does name go before any filter runs;
- X-Forwarded-For is believed only from trusted_proxies: appended to for
  them, replaced for anyone else; the client address filters see follows.
"""
import os
import socket
import tempfile
import time

import jwt

import harness

SECRET = "trust-boundary-secret-0123456789"


def send(port, raw, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(raw)
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


class TrustBoundaryTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.up = harness.RecordingUpstream()
        cls.certdir = tempfile.mkdtemp(prefix="tg-trust-")
        certs = harness.make_certs(cls.certdir)
        cls.port, cls.tls_port, cls.lb_port = harness.free_port(), harness.free_port(), harness.free_port()
        cfg = f"""
workers: 1
trusted_proxies: [10.0.0.0/8]
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
  - name: tls
    listen: 127.0.0.1:{cls.tls_port}
    tls:
      certificates: [{{ cert: {certs['server.crt']}, key: {certs['server.key']} }}]
      client_auth: optional
      client_ca: {certs['ca.crt']}
      client_cert_header: x-client-cert
  - name: lb
    listen: 127.0.0.1:{cls.lb_port}
    trusted_proxies: [127.0.0.0/8]
filters:
  - auth:
      bearer_tokens: [{{ name: alice, token: t-alice }}]
      jwt: {{ secret: "{SECRET}" }}
  - headers: {{ request: {{ set: {{ x-seen-client: "%{{client_address}}" }} }} }}
routes:
  - name: double
    match: {{ path_prefix: /double }}
    cluster: up
    filters:
      - auth: {{ bearer_tokens: [{{ name: alice, token: t-alice }}], identity_header: x-route-identity }}
  - name: open
    cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:{cls.up.port}]
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)
        harness.wait_port(cls.lb_port)

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        cls.finish()

    def forwarded(self, port, head_lines, path="/x"):
        """Sends one request; returns (status line, the request the upstream got, lowercased head)."""
        with self.up.lock:
            before = len(self.up.complete)
        raw = (f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode() + b"".join(
            line.encode() + b"\r\n" for line in head_lines) + b"\r\n")
        out = send(port, raw)
        status = out.split(b"\r\n", 1)[0]
        with self.up.lock:
            got = self.up.complete[before:]
        return status, got, (got[0].split(b"\r\n\r\n")[0].lower() if got else b"")

    def test_jwt_identity_with_crlf_is_refused(self):
        now = int(time.time())
        smuggle = "bob\r\nContent-Length: 0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
        token = jwt.encode({"sub": smuggle, "exp": now + 60}, SECRET, algorithm="HS256")
        with self.up.lock:
            raw_before = len(self.up.raw)
        status, got, _ = self.forwarded(self.port, [f"Authorization: Bearer {token}"])
        self.assertTrue(status.startswith(b"HTTP/1.1 401"), status)
        self.assertEqual(got, [])
        with self.up.lock:
            self.assertNotIn(b"/admin", self.up.raw[raw_before:])
        # the same claim without the control characters is fine
        token = jwt.encode({"sub": "bob", "exp": now + 60}, SECRET, algorithm="HS256")
        status, got, head = self.forwarded(self.port, [f"Authorization: Bearer {token}"])
        self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
        self.assertIn(b"\r\nx-auth-identity: bob", head)

    def test_jwt_without_exp_is_refused(self):
        token = jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256")
        status, got, _ = self.forwarded(self.port, [f"Authorization: Bearer {token}"])
        self.assertTrue(status.startswith(b"HTTP/1.1 401"), status)
        self.assertEqual(got, [])

    def test_route_identity_header_cannot_be_spoofed(self):
        """A global auth establishes the identity; the route's auth has its
        own identity_header, whose client-sent copy must not survive."""
        status, got, head = self.forwarded(self.port, ["Authorization: Bearer t-alice", "X-Route-Identity: root",
                                                       "X-Auth-Identity: root"], path="/double")
        self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
        self.assertNotIn(b"root", head)
        self.assertIn(b"\r\nx-route-identity: alice", head)
        self.assertIn(b"\r\nx-auth-identity: alice", head)

    def test_client_cert_headers_removed_on_every_listener(self):
        status, got, head = self.forwarded(self.port, ["Authorization: Bearer t-alice", "X-Client-Cert: forged",
                                                       "X-Forwarded-Client-Cert: forged"])
        self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
        self.assertNotIn(b"forged", head)
        self.assertNotIn(b"x-client-cert", head)

    def test_connection_cannot_remove_protected_headers(self):
        for name in ("Host", "Content-Length", "Transfer-Encoding", "X-Auth-Identity", "x-route-identity",
                     "X-Client-Cert", "x-forwarded-client-cert"):
            with self.subTest(name):
                status, got, _ = self.forwarded(self.port, ["Authorization: Bearer t-alice",
                                                            f"Connection: keep-alive, {name}"])
                self.assertTrue(status.startswith(b"HTTP/1.1 400"), (name, status))
                self.assertEqual(got, [])

    def test_connection_named_headers_go_before_the_filters(self):
        """`Connection: x-seen-client` names a header that a filter sets:
        removing it after the filters (as before) dropped the filter's
        header; now only the client's copy goes."""
        status, got, head = self.forwarded(self.port, ["Authorization: Bearer t-alice",
                                                       "Connection: x-hop, x-seen-client", "X-Hop: 1",
                                                       "X-Seen-Client: 6.6.6.6"])
        self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
        self.assertNotIn(b"x-hop", head)
        self.assertIn(b"\r\nx-seen-client: 127.0.0.1", head)
        self.assertNotIn(b"6.6.6.6", head)

    def test_x_forwarded_for_from_an_untrusted_peer_is_replaced(self):
        status, got, head = self.forwarded(self.port, ["Authorization: Bearer t-alice",
                                                       "X-Forwarded-For: 1.2.3.4"])
        self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
        self.assertIn(b"\r\nx-forwarded-for: 127.0.0.1\r\n", head + b"\r\n")
        self.assertNotIn(b"1.2.3.4", head)
        self.assertIn(b"\r\nx-seen-client: 127.0.0.1", head)

    def test_x_forwarded_for_from_a_trusted_proxy_is_kept(self):
        # the lb listener trusts 127.0.0.0/8: the list grows and the client
        # is the rightmost address that is not itself a trusted proxy
        status, got, head = self.forwarded(self.lb_port, ["Authorization: Bearer t-alice",
                                                          "X-Forwarded-For: 6.6.6.6, 1.2.3.4, 127.0.0.9"])
        self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
        self.assertIn(b"\r\nx-forwarded-for: 6.6.6.6, 1.2.3.4, 127.0.0.9, 127.0.0.1\r\n", head + b"\r\n")
        self.assertIn(b"\r\nx-seen-client: 1.2.3.4", head)
        # garbage in the list stops the walk: the last readable hop stands
        status, got, head = self.forwarded(self.lb_port, ["Authorization: Bearer t-alice",
                                                          "X-Forwarded-For: 1.2.3.4, bogus"])
        self.assertIn(b"\r\nx-seen-client: 127.0.0.1", head)

    def test_every_x_forwarded_for_line_is_one_list(self):
        """Regression (#26): only the first X-Forwarded-For line was read. A
        client's own line followed by its balancer's (HAProxy's option
        forwardfor adds a line) made the client's value the address, and
        the balancer's line vanished from the chain sent upstream. The lines
        are one list (RFC 9110 5.3): the rightmost untrusted hop is the
        client, and the chain keeps every hop."""
        for n in range(3):
            status, got, head = self.forwarded(self.lb_port, ["Authorization: Bearer t-alice",
                                                              f"X-Forwarded-For: 6.6.6.{n}",
                                                              "X-Forwarded-For: 9.9.9.9"])
            self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
            self.assertIn(f"\r\nx-forwarded-for: 6.6.6.{n}, 9.9.9.9, 127.0.0.1\r\n".encode(), head + b"\r\n")
            self.assertEqual(head.count(b"\r\nx-forwarded-for:"), 1)
            self.assertIn(b"\r\nx-seen-client: 9.9.9.9", head)


if __name__ == "__main__":
    harness.main()
