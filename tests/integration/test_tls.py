"""TLS and mutual TLS termination in front of a FastAPI app: certificates
made by the openssl CLI for this run; curl and Python's ssl module as
clients; SNI picks the certificate; client certificates are verified
against the CA (good one accepted; none, another CA's or an expired one
refused), and the verified identity reaches the app in the forwarded
header while a client-sent copy does not. Config errors for bad TLS
files are caught by `tollgate -t`."""
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import unittest

import harness


class TlsTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tg-pki-")
        cls.c = harness.make_certs(cls.dir)
        c = cls.c
        cls.app = harness.start_app("tls-app")
        cls.procs = [cls.app]
        cls.port, cls.mport, cls.oport = harness.free_port(), harness.free_port(), harness.free_port()
        cfg = f"""
workers: 2
admin: {{ listen: 127.0.0.1:{harness.free_port()} }}
listeners:
  - name: tls
    listen: 127.0.0.1:{cls.port}
    tls:
      certificates:
        - {{ cert: {c['server.crt']}, key: {c['server.key']} }}
        - {{ cert: {c['other.crt']}, key: {c['other.key']} }}
  - name: mtls
    listen: 127.0.0.1:{cls.mport}
    tls:
      certificates: [ {{ cert: {c['server.crt']}, key: {c['server.key']} }} ]
      client_auth: require
      client_ca: {c['ca.crt']}
      client_cert_header: x-client-cert
  - name: optional
    listen: 127.0.0.1:{cls.oport}
    tls:
      certificates: [ {{ cert: {c['server.crt']}, key: {c['server.key']} }} ]
      client_auth: optional
      client_ca: {c['ca.crt']}
      alpn: [http/1.1]
routes:
  - name: mtls-only
    listeners: [optional]
    match: {{ path_prefix: /private }}
    cluster: app
    filters:
      - auth: {{ client_cert: true, allow: ["CN=client-a,O=Acme"] }}
  - name: all
    cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
"""
        cls.admin_port = int(cfg.split("admin: { listen: 127.0.0.1:")[1].split(" ")[0])
        cls.gateway = harness.Gateway(cfg, port=cls.port)
        harness.wait_port(cls.mport)

    def get(self, port, path, *extra, host="localhost"):
        return harness.curl("--cacert", self.c["ca.crt"], "--resolve", f"{host}:{port}:127.0.0.1",
                            f"https://{host}:{port}{path}", *extra)

    def headers_seen(self, out):
        return {k: v for k, v in json.loads(out)["headers"]}

    def test_https_http1_and_http2(self):
        for flag, version in (("--http1.1", "1.1"), ("--http2", "2")):
            rc, out, err = self.get(self.port, "/whoami", flag, "-w", "\n%{http_version}")
            self.assertEqual(rc, 0, err)
            body, ver = out.decode().rsplit("\n", 1)
            self.assertEqual(json.loads(body), {"name": "tls-app"})
            self.assertEqual(ver, version)

    def test_forwarded_proto_is_https(self):
        rc, out, err = self.get(self.port, "/echo/headers")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.headers_seen(out)["x-forwarded-proto"], "https")

    def peer_cert_names(self, server_name):
        ctx = ssl.create_default_context(cafile=self.c["ca.crt"])
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname=server_name) as t:
                cert = t.getpeercert()
        return [v for k, v in cert["subjectAltName"] if k == "DNS"]

    def test_sni_picks_certificate(self):
        self.assertIn("localhost", self.peer_cert_names("localhost"))
        self.assertIn("api.test", self.peer_cert_names("api.test"))
        self.assertIn("other.test", self.peer_cert_names("other.test"))
        self.assertIn("*.wild.test", self.peer_cert_names("a.wild.test"))
        # a wildcard covers one label only; unknown names get the default
        self.assertIn("localhost", self.peer_cert_names("a.b.wild.test"))
        self.assertIn("localhost", self.peer_cert_names("unknown.example"))
        rc, out, err = self.get(self.port, "/whoami", host="other.test")
        self.assertEqual(rc, 0, err)

    def test_mtls_good_client_identity_forwarded(self):
        rc, out, err = self.get(self.mport, "/echo/headers", "--cert", self.c["client.crt"], "--key",
                                self.c["client.key"], "-H", "x-client-cert: Hash=forged",
                                "-H", "x-forwarded-client-cert: forged")
        self.assertEqual(rc, 0, err)
        seen = json.loads(out)["headers"]
        values = [v for k, v in seen if k == "x-client-cert"]
        self.assertEqual(len(values), 1, seen)
        v = values[0]
        self.assertNotIn("forged", v)
        self.assertIn('Subject="CN=client-a,O=Acme"', v)
        self.assertIn("URI=spiffe://test/client-a", v)
        self.assertIn("DNS=client-a.test", v)
        fp = subprocess.run(["openssl", "x509", "-in", self.c["client.crt"], "-noout", "-fingerprint", "-sha256"],
                            capture_output=True, text=True, check=True).stdout
        fp = fp.split("=", 1)[1].strip().replace(":", "").lower()
        self.assertIn(f"Hash={fp}", v)
        self.assertNotIn("x-forwarded-client-cert", [k for k, _ in seen])

    def test_mtls_refuses_bad_clients(self):
        cases = {
            "no certificate": (),
            "another CA": ("--cert", self.c["stranger.crt"], "--key", self.c["stranger.key"]),
            "expired": ("--cert", self.c["expired.crt"], "--key", self.c["expired.key"]),
        }
        for what, args in cases.items():
            with self.subTest(what):
                rc, out, err = self.get(self.mport, "/whoami", *args)
                self.assertNotEqual(rc, 0, f"{what}: accepted: {out!r}")
                self.assertEqual(out, b"")
        text = harness.curl(f"http://127.0.0.1:{self.admin_port}/metrics")[1].decode()
        self.assertGreaterEqual(harness.metric(text, "tollgate_tls_handshake_failures_total", listener="mtls"), 3)

    def test_optional_client_auth_and_auth_filter(self):
        # without a certificate: served, but the mTLS-only route refuses
        rc, out, err = self.get(self.oport, "/whoami")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.get(self.oport, "/private", "-w", "%{http_code}", "-o", "/dev/null")
        self.assertEqual(out, b"401")
        rc, out, err = self.get(self.oport, "/private", "--cert", self.c["client.crt"], "--key",
                                self.c["client.key"], "-w", "%{http_code}", "-o", "/dev/null")
        self.assertEqual(out, b"404")  # allowed through to the app, which has no /private
        # the ALPN list of this listener has no h2
        rc, out, err = self.get(self.oport, "/whoami", "--http2", "-w", "%{http_version}", "-o", "/dev/null")
        self.assertEqual(out, b"1.1")

    def test_cleartext_to_tls_port_fails_cleanly(self):
        data = harness.raw_request(self.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
        self.assertNotIn(b"HTTP/1.1 200", data)
        rc, out, err = self.get(self.port, "/whoami")
        self.assertEqual(rc, 0, err)

    def test_session_resumption(self):
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with self.subTest(version=version):
                ctx = ssl.create_default_context(cafile=self.c["ca.crt"])
                ctx.maximum_version = version
                session, reused = None, []
                for _ in range(2):
                    with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
                        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as t:
                            t.sendall(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                            data = b""
                            while True:
                                b = t.recv(65536)
                                if not b:
                                    break
                                data += b
                            self.assertIn(b"200 OK", data)
                            session = t.session
                            reused.append(t.session_reused)
                self.assertEqual(reused, [False, True])
        text = harness.curl(f"http://127.0.0.1:{self.admin_port}/metrics")[1].decode()
        self.assertGreaterEqual(harness.metric(text, "tollgate_tls_sessions_resumed_total", listener="tls"), 2)

    def test_config_endpoint_shows_tls(self):
        rc, out, err = harness.curl(f"http://127.0.0.1:{self.admin_port}/config")
        cfg = json.loads(out)
        tls = {l["name"]: l["tls"] for l in cfg["listeners"]}
        self.assertEqual(tls["mtls"]["client_auth"], "require")
        self.assertEqual(tls["mtls"]["client_cert_header"], "x-client-cert")
        self.assertEqual(tls["tls"]["alpn"], ["h2", "http/1.1"])
        self.assertEqual(len(tls["tls"]["certificates"]), 2)
        self.assertEqual(tls["optional"]["alpn"], ["http/1.1"])
        self.assertTrue(all(l["http2"]["enabled"] for l in cfg["listeners"]))

    def test_handshake_metrics(self):
        self.get(self.port, "/whoami")
        text = harness.curl(f"http://127.0.0.1:{self.admin_port}/metrics")[1].decode()
        self.assertGreaterEqual(harness.metric(text, "tollgate_tls_handshakes_total", listener="tls"), 1)

    @classmethod
    def tearDownClass(cls):
        cls.finish()


class UpstreamTlsTest(harness.GatewayTest):
    """TLS toward upstreams: a uvicorn app serving HTTPS (one of them
    requiring a client certificate); clusters verify the upstream's
    certificate and host name by default, and fail over cleanly when the
    handshake fails."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tg-pki-")
        c = cls.c = harness.make_certs(cls.dir)
        tls = ("--ssl-certfile", c["server.crt"], "--ssl-keyfile", c["server.key"])
        cls.app = harness.start_app("tls-upstream", extra=tls)
        cls.mapp = harness.start_app("mtls-upstream", extra=tls + ("--ssl-ca-certs", c["ca.crt"], "--ssl-cert-reqs", "2"))
        cls.procs = [cls.app, cls.mapp]
        cls.port = harness.free_port()
        cfg = f"""
workers: 1
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
  - {{ name: verified, match: {{ path_prefix: /verified/ }}, cluster: verified,
       request_headers: {{ set: {{ x-route: verified }} }} }}
  - {{ name: by-name, match: {{ path_prefix: /by-name/ }}, cluster: by-name }}
  - {{ name: wrong-ca, match: {{ path_prefix: /wrong-ca/ }}, cluster: wrong-ca }}
  - {{ name: wrong-name, match: {{ path_prefix: /wrong-name/ }}, cluster: wrong-name }}
  - {{ name: plain-to-tls, match: {{ path_prefix: /plain/ }}, cluster: plain }}
  - {{ name: mtls, match: {{ path_prefix: /mtls/ }}, cluster: mtls }}
  - {{ name: mtls-nocert, match: {{ path_prefix: /mtls-nocert/ }}, cluster: mtls-nocert }}
clusters:
  - name: verified
    endpoints: [127.0.0.1:{cls.app.port}]
    tls: {{ ca: {c['ca.crt']} }}
  - name: by-name
    endpoints: [localhost:{cls.app.port}]
    tls: {{ ca: {c['ca.crt']} }}
  - name: wrong-ca
    endpoints: [127.0.0.1:{cls.app.port}]
    tls: {{ ca: {c['other-ca.crt']} }}
  - name: wrong-name
    endpoints: [127.0.0.1:{cls.app.port}]
    tls: {{ ca: {c['ca.crt']}, server_name: not-this.test }}
  - name: plain
    endpoints: [127.0.0.1:{cls.app.port}]
  - name: mtls
    endpoints: [127.0.0.1:{cls.mapp.port}]
    tls: {{ ca: {c['ca.crt']}, cert: {c['client.crt']}, key: {c['client.key']} }}
  - name: mtls-nocert
    endpoints: [127.0.0.1:{cls.mapp.port}]
    tls: {{ ca: {c['ca.crt']} }}
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    def status(self, path):
        rc, out, err = harness.curl(f"http://127.0.0.1:{self.port}{path}", "-o", "/dev/null", "-w", "%{http_code}")
        return out.decode()

    def test_verified_upstream(self):
        for prefix in ("/verified", "/by-name"):
            self.assertEqual(self.status(f"{prefix}/x"), "404")  # the app answered (it has no such path)
        # many requests reuse pooled TLS connections
        for _ in range(20):
            self.assertEqual(self.status("/verified/x"), "404")

    def test_verification_failures(self):
        # a failed handshake is a connect failure: 503 once no endpoint is left
        self.assertEqual(self.status("/wrong-ca/x"), "503")
        self.assertEqual(self.status("/wrong-name/x"), "503")
        self.assertIn(self.status("/plain/x"), ("502", "400"))  # cleartext to a TLS port
        self.assertIn("certificate verify failed", self.gateway.proc.output())

    def test_upstream_mtls(self):
        self.assertEqual(self.status("/mtls/x"), "404")
        self.assertIn(self.status("/mtls-nocert/x"), ("502", "503"))


class TlsReloadAndIdentityTest(harness.GatewayTest):
    """Certificates are re-read on reload (a broken one leaves the old in
    place); the mTLS identity keys rate limits when no auth filter set one."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tg-pki-")
        c = cls.c = harness.make_certs(cls.dir)
        cls.app = harness.start_app("reload-app")
        cls.procs = [cls.app]
        cls.live_crt, cls.live_key = os.path.join(cls.dir, "live.crt"), os.path.join(cls.dir, "live.key")
        shutil.copy(c["server.crt"], cls.live_crt)
        shutil.copy(c["server.key"], cls.live_key)
        cls.port, cls.aport = harness.free_port(), harness.free_port()
        cfg = f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.aport} }}
listeners:
  - name: tls
    listen: 127.0.0.1:{cls.port}
    tls:
      certificates: [ {{ cert: {cls.live_crt}, key: {cls.live_key} }} ]
      client_auth: optional
      client_ca: {c['ca.crt']}
routes:
  - name: limited
    match: {{ path_prefix: /whoami }}
    cluster: app
    filters:
      - rate_limit: {{ key: identity, limit: 2, window: 1m }}
  - name: all
    cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    def served_names(self):
        ctx = ssl.create_default_context(cafile=self.c["ca.crt"])
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                return [v for k, v in t.getpeercert()["subjectAltName"] if k == "DNS"]

    def reload(self):
        rc, out, err = harness.curl("-X", "POST", "-H", "X-Tollgate-Admin: 1", f"http://127.0.0.1:{self.aport}/-/reload")
        return out.decode()

    def test_certificates_reread_on_reload(self):
        self.assertIn("localhost", self.served_names())
        # a broken pair: the reload fails, naming the file, and the old one stays
        shutil.copy(self.c["client.key"], self.live_key)
        out = self.reload()
        self.assertIn('"status": "failed"', out)
        self.assertIn("live.key", out)
        self.assertIn("localhost", self.served_names())
        # a renewed certificate: new connections get it
        shutil.copy(self.c["other.crt"], self.live_crt)
        shutil.copy(self.c["other.key"], self.live_key)
        out = self.reload()
        self.assertIn('"status": "ok"', out)
        self.assertIn("other.test", self.served_names())
        shutil.copy(self.c["server.crt"], self.live_crt)
        shutil.copy(self.c["server.key"], self.live_key)
        self.reload()

    def test_rate_limit_keyed_by_client_certificate(self):
        def status(cert):
            args = ["--cert", self.c[f"{cert}.crt"], "--key", self.c[f"{cert}.key"]] if cert else []
            rc, out, err = harness.curl("--cacert", self.c["ca.crt"], "--resolve", f"localhost:{self.port}:127.0.0.1",
                                        f"https://localhost:{self.port}/whoami", "-o", "/dev/null",
                                        "-w", "%{http_code}", *args)
            return out.decode()
        self.assertEqual([status("client") for _ in range(3)], ["200", "200", "429"])
        self.assertEqual([status("client2") for _ in range(3)], ["200", "200", "429"])
        self.assertEqual(status(None), "200")  # no certificate: keyed by address, its own budget


class TlsConfigErrorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tg-pki-")
        cls.c = harness.make_certs(cls.dir)

    def check(self, tls_block, expect):
        path = os.path.join(self.dir, "bad.yaml")
        with open(path, "w") as f:
            f.write("listeners:\n  - name: l\n    listen: 127.0.0.1:1\n    tls:\n" + tls_block +
                    "routes:\n  - name: r\n    cluster: c\nclusters:\n  - name: c\n    endpoints: [127.0.0.1:2]\n")
        p = subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(p.stderr, expect)
        return p.stderr

    def test_missing_cert_file(self):
        self.check(f"      certificates: [ {{ cert: {self.dir}/nope.crt, key: {self.c['server.key']} }} ]\n",
                   r"bad\.yaml:5:\d+: cert '.*nope\.crt': No such file or directory")

    def test_key_does_not_match(self):
        self.check(f"      certificates: [ {{ cert: {self.c['server.crt']}, key: {self.c['client.key']} }} ]\n",
                   r"bad\.yaml:5:\d+: key '.*client\.key' does not match certificate")

    def test_not_a_certificate(self):
        self.check(f"      certificates: [ {{ cert: {self.c['server.key']}, key: {self.c['server.key']} }} ]\n",
                   r"cert '.*server\.key' is not valid")

    def test_bad_client_ca(self):
        self.check(f"      certificates: [ {{ cert: {self.c['server.crt']}, key: {self.c['server.key']} }} ]\n"
                   f"      client_auth: require\n      client_ca: {self.c['server.key']}\n",
                   r"bad\.yaml:7:\d+: client_ca '.*server\.key'")

    def test_require_needs_ca(self):
        self.check(f"      certificates: [ {{ cert: {self.c['server.crt']}, key: {self.c['server.key']} }} ]\n"
                   f"      client_auth: require\n", r"needs client_ca")

    def test_unknown_key_and_bad_version(self):
        err = self.check(f"      certificates: [ {{ cert: {self.c['server.crt']}, key: {self.c['server.key']} }} ]\n"
                         f"      min_version: 1.1\n      colour: blue\n", r"min_version: '1.1'")
        self.assertIn("unknown key 'colour'", err)

    def test_expired_certificate_is_a_warning(self):
        path = os.path.join(self.dir, "warn.yaml")
        with open(path, "w") as f:
            f.write(f"listeners:\n  - name: l\n    listen: 127.0.0.1:1\n    tls:\n"
                    f"      certificates: [ {{ cert: {self.c['expired.crt']}, key: {self.c['expired.key']} }} ]\n"
                    "routes:\n  - name: r\n    cluster: c\nclusters:\n  - name: c\n    endpoints: [127.0.0.1:2]\n")
        p = subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("has expired", p.stderr)


if __name__ == "__main__":
    harness.main()
