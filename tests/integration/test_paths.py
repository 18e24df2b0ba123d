"""Routes match on the normalized path, and the upstream receives it: with
/admin protected and / open, "/x/../admin", "//admin", "/%61dmin" and
their HTTP/2 forms take the protected route (they used to take the open
one), and path_separated_prefix /api never matches /apix. Path variants
that Java, IIS and WSGI upstreams read differently — path parameters
("..;", ";jsessionid="), raw backslashes, case — are resolved, stripped,
refused or matched as path_normalization and match.ignore_case say. A
recording upstream shows the path it was sent."""
import socket
import subprocess

import harness


def raw_get(port, path, extra=""):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode())
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


def status_of(out):
    return int(out.split(b" ", 2)[1])


class PathNormalizationTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.up = harness.RecordingUpstream()
        cls.port = harness.free_port()
        cfg = f"""
workers: 1
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
  - name: admin
    match: {{ path_separated_prefix: /admin }}
    cluster: up
    request_headers: {{ set: {{ x-route: admin }} }}
    filters:
      - auth: {{ bearer_tokens: [{{ name: ops, token: t-ops }}] }}
  - name: api
    match: {{ path_separated_prefix: /api }}
    cluster: up
    request_headers: {{ set: {{ x-route: api }} }}
  - name: legacy
    match: {{ path_prefix: /old }}
    cluster: up
    request_headers: {{ set: {{ x-route: legacy }} }}
  - name: open
    cluster: up
    request_headers: {{ set: {{ x-route: open }} }}
clusters:
  - name: up
    endpoints: [127.0.0.1:{cls.up.port}]
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        cls.finish()

    def last_forwarded(self, before):
        with self.up.lock:
            got = self.up.complete[before:]
        self.assertEqual(len(got), 1, got)
        head = got[0].split(b"\r\n\r\n")[0]
        line = head.split(b"\r\n")[0]
        route = [h.split(b":", 1)[1].strip() for h in head.split(b"\r\n")[1:] if h.lower().startswith(b"x-route:")]
        return line.split(b" ")[1].decode(), route[0].decode()

    def count(self):
        with self.up.lock:
            return len(self.up.complete)

    def test_spellings_of_admin_take_the_protected_route(self):
        for path in ("/admin", "/x/../admin", "//admin", "/%61dmin", "/%2e%2e/admin", "/./admin", "/admin/",
                     "/api/../admin/users", "///admin//users"):
            with self.subTest(path):
                before = self.count()
                out = raw_get(self.port, path)
                self.assertEqual(status_of(out), 401, (path, out[:200]))
                self.assertEqual(self.count(), before)

    def test_the_upstream_gets_the_normalized_path(self):
        for path, want in (("/x/../admin/users?q=/../x", "/admin/users?q=/../x"), ("//admin//a/./b", "/admin/a/b"),
                           ("/%61dmin/%7e%41", "/admin/~A")):
            with self.subTest(path):
                before = self.count()
                out = raw_get(self.port, path, "Authorization: Bearer t-ops\r\n")
                self.assertEqual(status_of(out), 200, out[:200])
                self.assertEqual(self.last_forwarded(before), (want, "admin"))

    def test_separated_prefix_respects_segments(self):
        for path, route in (("/api", "api"), ("/api/v1", "api"), ("/api/", "api"), ("/apix", "open"),
                            ("/api-docs", "open"), ("/old", "legacy"), ("/older", "legacy")):
            with self.subTest(path):
                before = self.count()
                out = raw_get(self.port, path)
                self.assertEqual(status_of(out), 200, out[:200])
                self.assertEqual(self.last_forwarded(before), (path, route))

    def test_escaped_slashes_and_bad_escapes_are_refused(self):
        for path in ("/admin%2Fusers", "/x%2F..%2Fadmin", "/a%5C..%5Cadmin", "/a%zz", "/a%4"):
            with self.subTest(path):
                before = self.count()
                out = raw_get(self.port, path)
                self.assertEqual(status_of(out), 400, out[:200])
                self.assertEqual(self.count(), before)

    def test_http2_forms(self):
        for path in ("/x/../admin", "//admin", "/%61dmin"):
            with self.subTest(path):
                before = self.count()
                p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                                    "--http2-prior-knowledge", "--path-as-is",
                                    f"http://127.0.0.1:{self.port}{path}"], capture_output=True, text=True,
                                   timeout=20)
                self.assertEqual(p.stdout, "401", (path, p.stderr))
                self.assertEqual(self.count(), before)
        before = self.count()
        p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                            "--http2-prior-knowledge", "--path-as-is", "-H", "Authorization: Bearer t-ops",
                            f"http://127.0.0.1:{self.port}/x/../admin/y"], capture_output=True, text=True,
                           timeout=20)
        self.assertEqual(p.stdout, "200", p.stderr)
        self.assertEqual(self.last_forwarded(before), ("/admin/y", "admin"))


class ForwardOriginalTest(harness.GatewayTest):
    """path_normalization: { forward: original, escaped_slashes: keep,
    merge_slashes: false } — routing still uses the normalized path, the
    upstream gets the bytes the client sent."""

    @classmethod
    def setUpClass(cls):
        cls.up = harness.RecordingUpstream()
        cls.port = harness.free_port()
        cfg = f"""
workers: 1
path_normalization: {{ forward: original, escaped_slashes: keep, merge_slashes: false }}
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
  - name: admin
    match: {{ path_separated_prefix: /admin }}
    cluster: up
    filters:
      - auth: {{ bearer_tokens: [{{ name: ops, token: t-ops }}] }}
  - name: open
    cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:{cls.up.port}]
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        cls.finish()

    def test_original_path_forwarded(self):
        with self.up.lock:
            before = len(self.up.complete)
        out = raw_get(self.port, "/x/../admin/a%2fb?q=1", "Authorization: Bearer t-ops\r\n")
        self.assertEqual(status_of(out), 200, out[:200])
        self.assertEqual(status_of(raw_get(self.port, "/x/../admin")), 401)
        # no merging: "//admin" is not "/admin" here (an empty first segment)
        self.assertEqual(status_of(raw_get(self.port, "//admin")), 200)
        with self.up.lock:
            line = self.up.complete[before].split(b"\r\n")[0]
        self.assertEqual(line, b"GET /x/../admin/a%2fb?q=1 HTTP/1.1")


def h2_get(port, path, *headers):
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                        "--http2-prior-knowledge", "--path-as-is"] + [a for h in headers for a in ("-H", h)] +
                       [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=20)
    return int(p.stdout or 0)


class PathVariantsTest(harness.GatewayTest):
    """Regression (#26): with /admin protected and / open, "/public/..;/
    admin/secret" took the open route and reached the upstream as is (a
    Tomcat or Spring upstream serves /admin/secret); "/admin;x=1/secret"
    missed path_separated_prefix /admin; a raw backslash passed while %5C
    was refused; and "/ADMIN/secret" missed the route that a case-
    insensitive upstream (IIS) serves it from. One gateway per setting:
    the defaults (semicolons: keep, backslashes: reject), strip, reject,
    backslashes: decode. HTTP/1.1 and HTTP/2 alike."""

    ROUTES = """
routes:
  - name: admin
    match: {{ path_separated_prefix: /admin, ignore_case: true }}
    cluster: up
    filters: [{{ auth: {{ bearer_tokens: [{{ name: ops, token: t-ops }}] }} }}]
  - name: open
    cluster: up
clusters: [{{ name: up, endpoints: [127.0.0.1:{up} ] }}]
"""

    def gateway_with(self, paths):
        self.stop_gateway()  # the previous setting's
        if getattr(self, "up", None) is None:
            self.up = harness.RecordingUpstream()
        port = harness.free_port()
        self.gateway = harness.Gateway(f"""
workers: 1
path_normalization: {paths}
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
""" + self.ROUTES.format(up=self.up.port), port=port)
        return port

    def tearDown(self):
        self.stop_gateway()
        if getattr(self, "up", None) is not None:
            self.up.stop()
            self.up = None

    def check(self, port, cases):
        """cases: (path, status without a token, path the upstream gets with one or None)."""
        for path, status, forwarded in cases:
            with self.subTest(path=path):
                self.assertEqual(status_of(raw_get(port, path)), status)
                self.assertEqual(h2_get(port, path), status)
                if forwarded is None:
                    continue
                with self.up.lock:
                    before = len(self.up.complete)
                out = raw_get(port, path, "Authorization: Bearer t-ops\r\n")
                self.assertEqual(status_of(out), 200, out[:200])
                with self.up.lock:
                    line = self.up.complete[before].split(b"\r\n")[0]
                self.assertEqual(line, f"GET {forwarded} HTTP/1.1".encode())

    def test_defaults(self):
        port = self.gateway_with("{}")
        self.check(port, [
            ("/public/..;/admin/secret", 401, "/admin/secret"),
            ("/public/..;x=1/admin/secret", 401, "/admin/secret"),
            ("/public/.;/../admin", 401, "/admin"),
            ("/admin;x=1/secret", 401, "/admin;x=1/secret"),
            ("/ADMIN/secret", 401, "/ADMIN/secret"),
            ("/Admin;jsessionid=1", 401, "/Admin;jsessionid=1"),
            ("/adminx", 200, "/adminx"),
            ("/public\\..\\admin", 400, None),
            ("/public%5C..%5Cadmin", 400, None),
            ("/public;x/file", 200, "/public;x/file"),
        ])

    def test_strip(self):
        port = self.gateway_with("{ semicolons: strip }")
        self.check(port, [
            ("/public/..;/admin/secret", 401, "/admin/secret"),
            ("/admin;x=1/secret;jsessionid=2", 401, "/admin/secret"),
            ("/public;x/file?a=1;2", 200, "/public/file?a=1;2"),
            ("/public/;x/file", 200, "/public/file"),
            ("/public/%3B/file", 200, "/public/%3B/file"),
        ])

    def test_reject(self):
        port = self.gateway_with("{ semicolons: reject }")
        self.check(port, [
            ("/public/..;/admin/secret", 400, None),
            ("/admin;x=1/secret", 400, None),
            ("/public/%3b/file", 400, None),
            ("/public/file?a=1;2", 200, "/public/file?a=1;2"),
        ])

    def test_backslashes_decoded(self):
        port = self.gateway_with("{ backslashes: decode }")
        self.check(port, [
            ("/public\\..\\admin\\secret", 401, "/admin/secret"),
            ("/public\\file", 200, "/public/file"),
        ])

    def test_backslashes_kept(self):
        port = self.gateway_with("{ backslashes: keep }")
        self.check(port, [("/public\\..\\admin", 200, "/public\\..\\admin")])


class DecodeEscapedSlashesTest(harness.GatewayTest):
    """path_normalization: { escaped_slashes: decode } — %2F and %5C are
    decoded before the dot-segments go, so an encoded slash cannot walk
    around a route: "/public/..%2Fadmin" is "/admin", on HTTP/1.1 and
    HTTP/2, and the upstream receives the decoded path."""

    @classmethod
    def setUpClass(cls):
        cls.up = harness.RecordingUpstream()
        cls.port = harness.free_port()
        cls.gateway = harness.Gateway(f"""
workers: 1
path_normalization: {{ escaped_slashes: decode }}
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
routes:
  - name: admin
    match: {{ path_separated_prefix: /admin }}
    cluster: up
    filters: [{{ auth: {{ bearer_tokens: [{{ name: ops, token: t-ops }}] }} }}]
  - name: open
    cluster: up
clusters: [{{ name: up, endpoints: [127.0.0.1:{cls.up.port}] }}]
""", port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        cls.finish()

    def test_encoded_slashes_decoded_before_routing(self):
        for path in ("/admin%2Fsecret", "/public/..%2Fadmin%2Fsecret", "/public%2F..%2Fadmin/secret"):
            with self.subTest(path=path):
                self.assertEqual(status_of(raw_get(self.port, path)), 401)  # the protected route
                p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--http2-prior-knowledge",
                                    "--path-as-is", f"http://127.0.0.1:{self.port}{path}"], capture_output=True,
                                   text=True, timeout=20)
                self.assertEqual(p.stdout, "401", p.stderr)
                with self.up.lock:
                    before = len(self.up.complete)
                out = raw_get(self.port, path, "Authorization: Bearer t-ops\r\n")
                self.assertEqual(status_of(out), 200, out[:200])
                with self.up.lock:
                    line = self.up.complete[before].split(b"\r\n")[0]
                self.assertEqual(line, b"GET /admin/secret HTTP/1.1")


if __name__ == "__main__":
    harness.main()
