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
  them, replaced for anyone else; the client address filters see follows;
- the other headers a proxy in front uses to describe the client and the
  request (Forwarded, X-Real-IP, X-Forwarded-Host/-Proto/-Port,
  X-Original-URL, X-Rewrite-URL) pass from trusted proxies only;
- header names with '_' (read by CGI/WSGI upstreams as the name with '-')
  follow headers_with_underscores, and never alias a trust or forwarding
  header;
- forwarded_header: forwarded / both read RFC 7239 Forwarded for= the same
  way, and set_x_real_ip sends the address tollgate established.
"""
import os
import socket
import subprocess
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
        cls.allow_port, cls.reject_port = harness.free_port(), harness.free_port()
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
  - name: us-allow
    listen: 127.0.0.1:{cls.allow_port}
    headers_with_underscores: allow
  - name: us-reject
    listen: 127.0.0.1:{cls.reject_port}
    headers_with_underscores: reject
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
        for p in (cls.lb_port, cls.allow_port, cls.reject_port):
            harness.wait_port(p)

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

    FORWARDING = ["Forwarded: for=6.6.6.6;proto=https", "X-Real-IP: 6.6.6.6", "X-Forwarded-Host: evil.example",
                  "X-Forwarded-Proto: https", "X-Forwarded-Port: 443", "X-Original-URL: /admin/secret",
                  "X-Rewrite-URL: /admin/secret"]

    def test_forwarding_headers_pass_from_trusted_proxies_only(self):
        """Regression (#26): Forwarded, X-Real-IP, X-Forwarded-Host/-Proto/
        -Port, X-Original-URL and X-Rewrite-URL passed unchanged from any
        client, and upstream frameworks believe them (Django's
        USE_X_FORWARDED_HOST, uvicorn's --proxy-headers, IIS URL
        rewriting)."""
        status, got, head = self.forwarded(self.port, ["Authorization: Bearer t-alice"] + self.FORWARDING)
        self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
        for gone in (b"forwarded:", b"x-real-ip", b"x-forwarded-port", b"x-original-url", b"x-rewrite-url",
                     b"6.6.6.6", b"evil", b"/admin"):
            self.assertNotIn(b"\r\n" + gone if gone.endswith(b":") else gone, head)
        self.assertIn(b"\r\nx-forwarded-host: x\r\n", head + b"\r\n")  # tollgate's own, from Host
        self.assertIn(b"\r\nx-forwarded-proto: http\r\n", head + b"\r\n")
        # from a trusted proxy every one of them passes as it came
        status, got, head = self.forwarded(self.lb_port, ["Authorization: Bearer t-alice"] + self.FORWARDING)
        self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
        for line in self.FORWARDING:
            self.assertIn(b"\r\n" + line.lower().encode() + b"\r\n", head + b"\r\n")
        self.assertEqual(head.count(b"\r\nx-forwarded-proto:"), 1)
        self.assertEqual(head.count(b"\r\nx-forwarded-host:"), 1)

    def test_underscore_names_follow_the_setting(self):
        """Regression (#26): X_Auth_Identity reached a WSGI upstream as the
        same variable (HTTP_X_AUTH_IDENTITY) as the identity tollgate set.
        Names with '_' are dropped by default (as nginx ignores them),
        passed or refused as the listener says — and a name that equals a
        trust or forwarding header once '_' is read as '-' never passes."""
        aliases = ["X_Auth_Identity: root", "x-auth_identity: root", "X_Forwarded_Client_Cert: forged",
                   "X_Real_IP: 6.6.6.6", "X_Forwarded_For: 6.6.6.6", "X_Forwarded_Host: evil.example"]
        for port, custom in ((self.port, False), (self.allow_port, True), (self.lb_port, False)):
            with self.subTest(port=port):
                status, got, head = self.forwarded(port, ["Authorization: Bearer t-alice", "X_Custom: 1"] + aliases)
                self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
                self.assertNotIn(b"root", head)
                self.assertNotIn(b"forged", head)
                self.assertNotIn(b"6.6.6.6", head)
                self.assertNotIn(b"evil", head)
                self.assertIn(b"\r\nx-auth-identity: alice", head)
                self.assertEqual(b"\r\nx_custom: 1" in head, custom)
                self.assertEqual(head.count(b"_"), 1 if custom else 0)
        status, got, _ = self.forwarded(self.reject_port, ["Authorization: Bearer t-alice", "X_Custom: 1"])
        self.assertTrue(status.startswith(b"HTTP/1.1 400"), status)
        self.assertEqual(got, [])
        status, got, _ = self.forwarded(self.reject_port, ["Authorization: Bearer t-alice", "X-Custom: 1"])
        self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)

    def test_underscore_names_over_http2(self):
        """The same rule for an HTTP/2 request (h2c prior knowledge)."""
        out = subprocess.run(["nghttp", "-v", "-H", "authorization: Bearer t-alice", "-H", "x_auth_identity: root",
                              "-H", "x_custom: 1", "-H", "x-real-ip: 6.6.6.6", f"http://127.0.0.1:{self.port}/h2"],
                             capture_output=True, timeout=20)
        self.assertIn(b":status: 200", out.stdout)
        with self.up.lock:
            got = [r for r in self.up.complete if r.startswith(b"GET /h2 ")]
        self.assertTrue(got)
        head = got[-1].split(b"\r\n\r\n")[0].lower()
        self.assertNotIn(b"root", head)
        self.assertNotIn(b"x_custom", head)
        self.assertNotIn(b"x-real-ip", head)
        self.assertIn(b"\r\nx-auth-identity: alice", head)


class ForwardedHeaderTest(harness.GatewayTest):
    """forwarded_header: forwarded and both, set_x_real_ip: the client
    address is read from RFC 7239 for= parameters (in `both`, only where
    the two lists agree hop by hop), the upstream gets the Forwarded chain
    extended with this hop, and X-Real-IP carries the established client."""

    def run_mode(self, mode, cases):
        up = harness.RecordingUpstream()
        port = harness.free_port()
        try:
            self.gateway = harness.Gateway(f"""
workers: 1
trusted_proxies: [127.0.0.0/8]
forwarded_header: {mode}
set_x_real_ip: true
listeners:
  - {{ name: main, listen: 127.0.0.1:{port} }}
filters:
  - headers: {{ request: {{ set: {{ x-seen-client: "%{{client_address}}" }} }} }}
routes:
  - {{ name: r, cluster: up }}
clusters:
  - {{ name: up, endpoints: [127.0.0.1:{up.port}] }}
""", port=port)
            for lines, client, want in cases:
                with self.subTest(mode=mode, lines=lines):
                    raw = ("GET /f HTTP/1.1\r\nHost: api.example:8443\r\nConnection: close\r\n" +
                           "".join(l + "\r\n" for l in lines) + "\r\n").encode()
                    with up.lock:
                        before = len(up.complete)
                    out = send(port, raw)
                    self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:100])
                    with up.lock:
                        head = up.complete[before].split(b"\r\n\r\n")[0].lower() + b"\r\n"
                    self.assertIn(f"\r\nx-seen-client: {client}\r\n".encode(), head)
                    self.assertIn(f"\r\nx-real-ip: {client}\r\n".encode(), head)
                    for w in want:
                        self.assertIn(b"\r\n" + w.encode() + b"\r\n", head)
                    self.assertEqual(head.count(b"\r\nx-real-ip:"), 1)
        finally:
            self.stop_gateway()
            up.stop()

    def test_forwarded(self):
        self.run_mode("forwarded", [
            (["Forwarded: for=6.6.6.6", "Forwarded: for=1.2.3.4;proto=https", "X-Forwarded-For: 9.9.9.9",
              "X-Real-IP: 7.7.7.7"], "1.2.3.4",
             ['forwarded: for=6.6.6.6, for=1.2.3.4;proto=https, for=127.0.0.1;proto=http;host="api.example:8443"',
              "x-forwarded-for: 9.9.9.9, 127.0.0.1"]),
            (['Forwarded: for="[2001:db8::7]:4711", for=unknown'], "127.0.0.1", []),
            ([], "127.0.0.1", ['forwarded: for=127.0.0.1;proto=http;host="api.example:8443"']),
        ])

    def test_both(self):
        self.run_mode("both", [
            (["Forwarded: for=1.2.3.4", "X-Forwarded-For: 1.2.3.4"], "1.2.3.4", []),
            (["Forwarded: for=6.6.6.6", "X-Forwarded-For: 1.2.3.4"], "127.0.0.1", []),
            (["X-Forwarded-For: 1.2.3.4"], "127.0.0.1", ["x-forwarded-for: 1.2.3.4, 127.0.0.1"]),
        ])


if __name__ == "__main__":
    harness.main()
