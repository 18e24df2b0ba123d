"""TLS settings enforced at runtime, not only parsed: a listener's
min_version, ciphers and groups refuse clients outside them;
handshake_timeout disconnects a silent client (and counts it);
verify_depth bounds client chains with intermediates. Toward upstreams: an
expired certificate fails the handshake, `verify: false` accepts any, and
the SNI sent is the cluster's server_name whatever the request's Host."""
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import requests

import harness


def s_client(port, *args, data=b""):
    """openssl s_client against 127.0.0.1:port; (handshake ok, output)."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                        "-brief", *args], input=data, capture_output=True, timeout=30)
    out = (p.stdout + p.stderr).decode(errors="replace")
    return "CONNECTION ESTABLISHED" in out, out


def session(port, *args):
    """A TLS 1.2 handshake with openssl s_client (full output, no -brief):
    (whether it resumed, output)."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                        "-tls1_2", *args], input=b"", capture_output=True, timeout=30)
    out = (p.stdout + p.stderr).decode(errors="replace")
    if "Reused, TLSv1.2" not in out and "New, TLSv1.2" not in out:
        raise AssertionError(f"no TLS 1.2 session: {out[-2000:]}")
    return "Reused, TLSv1.2" in out, out


class ListenerTlsSettingsTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        d = cls.dir = tempfile.mkdtemp(prefix="tg-pki-")
        c = cls.c = harness.make_certs(d)
        # a client chain with two intermediates: root -> int1 -> int2 -> leaf
        harness.make_ca(d, "int1", "intermediate one", "ca")
        harness.make_ca(d, "int2", "intermediate two", "int1")
        harness.issue_cert(d, "deep", "int2", "/O=Acme/CN=deep-client", "extendedKeyUsage=clientAuth\n")
        with open(os.path.join(d, "deep-chain.crt"), "w") as out:
            for n in ("deep", "int2", "int1"):
                out.write(open(os.path.join(d, f"{n}.crt")).read())
        cls.app = harness.start_app("tls-settings")
        cls.procs = [cls.app]
        cls.ports = {k: harness.free_port() for k in ("v13", "cipher", "groups", "hs", "hs-long", "depth1", "depth3",
                                                       "suites", "noticket", "shortlived", "nocache")}
        cls.admin = harness.free_port()
        cert = f"certificates: [{{ cert: {c['server.crt']}, key: {c['server.key']} }}]"
        mtls = f"client_auth: require, client_ca: {c['ca.crt']}"
        p = cls.ports
        cfg = f"""
workers: 1
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners:
  - {{ name: v13, listen: 127.0.0.1:{p['v13']}, tls: {{ {cert}, min_version: "1.3" }} }}
  - {{ name: cipher, listen: 127.0.0.1:{p['cipher']}, tls: {{ {cert}, ciphers: ECDHE-ECDSA-AES128-GCM-SHA256 }} }}
  - {{ name: groups, listen: 127.0.0.1:{p['groups']}, tls: {{ {cert}, groups: P-384 }} }}
  - {{ name: hs, listen: 127.0.0.1:{p['hs']}, tls: {{ {cert}, handshake_timeout: 500ms }} }}
  - {{ name: hs-long, listen: 127.0.0.1:{p['hs-long']}, tls: {{ {cert}, handshake_timeout: 1h }} }}
  - {{ name: depth1, listen: 127.0.0.1:{p['depth1']}, tls: {{ {cert}, {mtls}, verify_depth: 1 }} }}
  - {{ name: depth3, listen: 127.0.0.1:{p['depth3']}, tls: {{ {cert}, {mtls}, verify_depth: 3 }} }}
  - {{ name: suites, listen: 127.0.0.1:{p['suites']}, tls: {{ {cert}, ciphersuites: TLS_CHACHA20_POLY1305_SHA256 }} }}
  - {{ name: noticket, listen: 127.0.0.1:{p['noticket']}, tls: {{ {cert}, session_tickets: false, session_timeout: 1h }} }}
  - {{ name: shortlived, listen: 127.0.0.1:{p['shortlived']}, tls: {{ {cert}, session_tickets: false, session_timeout: 1s }} }}
  - {{ name: nocache, listen: 127.0.0.1:{p['nocache']}, tls: {{ {cert}, session_tickets: false, session_cache_size: 0 }} }}
routes:
  - {{ name: r, cluster: app }}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}
"""
        cls.gateway = harness.Gateway(cfg, port=p["v13"])
        for port in p.values():
            harness.wait_port(port)

    def test_min_version(self):
        ok, out = s_client(self.ports["v13"], "-tls1_2")
        self.assertFalse(ok, out)
        ok, out = s_client(self.ports["v13"], "-tls1_3")
        self.assertTrue(ok, out)
        self.assertIn("TLSv1.3", out)

    def test_ciphers(self):
        ok, out = s_client(self.ports["cipher"], "-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305")
        self.assertFalse(ok, out)
        ok, out = s_client(self.ports["cipher"], "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
        self.assertTrue(ok, out)
        self.assertIn("ECDHE-ECDSA-AES128-GCM-SHA256", out)

    def test_groups(self):
        ok, out = s_client(self.ports["groups"], "-groups", "X25519")
        self.assertFalse(ok, out)
        ok, out = s_client(self.ports["groups"], "-groups", "P-384")
        self.assertTrue(ok, out)

    def test_tls13_ciphersuites(self):
        ok, out = s_client(self.ports["suites"], "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
        self.assertFalse(ok, out)
        ok, out = s_client(self.ports["suites"], "-tls1_3", "-ciphersuites",
                           "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256")
        self.assertTrue(ok, out)
        self.assertIn("TLS_CHACHA20_POLY1305_SHA256", out)

    def test_session_cache_tickets_and_timeout(self):
        """session_tickets: false issues no ticket, and the server's session
        cache still resumes, for session_timeout (an hour: resumed; a second,
        asked again after a wait of 2.5 s: not); with session_cache_size: 0
        as well, nothing resumes."""
        f = os.path.join(self.dir, "sess")
        for name, resumes in (("noticket", True), ("shortlived", False), ("nocache", False)):
            with self.subTest(name):
                reused, out = session(self.ports[name], "-sess_out", f)
                self.assertFalse(reused)
                self.assertNotIn("TLS session ticket:", out)  # no ticket issued
                if name == "shortlived":
                    time.sleep(2.5)  # a lower bound: at least this long has passed, however slow the machine
                reused, out = session(self.ports[name], "-sess_in", f)
                self.assertEqual(reused, resumes, out[-1500:])

    def test_handshake_timeout(self):
        m = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text
        before = harness.metric(m, "tollgate_tls_handshake_failures_total", listener="hs")
        # the listener's 500 ms handshake_timeout (10 s by default): a client
        # that says nothing is disconnected, while one that came first to a
        # listener with an hour's handshake_timeout is still connected
        patient = socket.create_connection(("127.0.0.1", self.ports["hs-long"]), timeout=30)
        s = socket.create_connection(("127.0.0.1", self.ports["hs"]), timeout=30)
        try:
            self.assertEqual(s.recv(10), b"")  # says nothing: disconnected
        except ConnectionResetError:
            pass
        s.close()
        patient.setblocking(False)
        with self.assertRaises(BlockingIOError):
            patient.recv(10)  # still open: nothing read, no close
        patient.close()
        deadline = time.time() + 30
        while time.time() < deadline:
            m = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text
            if harness.metric(m, "tollgate_tls_handshake_failures_total", listener="hs") == before + 1:
                break
            time.sleep(0.05)
        self.assertEqual(harness.metric(m, "tollgate_tls_handshake_failures_total", listener="hs"), before + 1)

    def https_status(self, port, cert, key):
        ctx = ssl.create_default_context(cafile=self.c["ca.crt"])
        ctx.load_cert_chain(cert, key)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    out = harness.read_to_close(s)
            return out.split(b" ", 2)[1].decode() if out else "closed"
        except (ssl.SSLError, OSError):
            return "refused"

    def test_verify_depth_with_intermediates(self):
        chain, key = os.path.join(self.dir, "deep-chain.crt"), os.path.join(self.dir, "deep.key")
        self.assertEqual(self.https_status(self.ports["depth3"], chain, key), "200")  # two intermediates fit in 3
        self.assertEqual(self.https_status(self.ports["depth1"], chain, key), "refused")  # not in 1
        # a certificate straight from the CA fits either
        self.assertEqual(self.https_status(self.ports["depth1"], self.c["client.crt"], self.c["client.key"]), "200")


class SniServer:
    """A TLS upstream in-process that records the SNI each handshake sent
    and the Host of each request, and answers 200."""

    def __init__(self, cert, key):
        self.snis, self.hosts = [], []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.sni_callback = lambda sock, name, ctx: self.snis.append(name)
        self.server = harness.ScriptedServer(self.handle)
        self.port = self.server.port

    def handle(self, c):
        try:
            s = self.ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError):
            return
        head, _ = harness.read_request(s)
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"host:"):
                self.hosts.append(line.split(b":", 1)[1].strip().decode())
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        s.close()


class UpstreamTlsSettingsTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        d = cls.dir = tempfile.mkdtemp(prefix="tg-pki-")
        c = cls.c = harness.make_certs(d)
        harness.issue_cert(d, "server-expired", "ca", "/CN=localhost",
                           "subjectAltName=DNS:localhost,IP:127.0.0.1\n", days="-1")
        cls.expired = SniServer(os.path.join(d, "server-expired.crt"), os.path.join(d, "server-expired.key"))
        cls.sni = SniServer(c["server.crt"], c["server.key"])
        cls.procs = []
        cls.port = harness.free_port()
        cfg = f"""
workers: 1
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
routes:
  - {{ name: expired, match: {{ path_prefix: /expired }}, cluster: expired }}
  - {{ name: unverified, match: {{ path_prefix: /unverified }}, cluster: unverified }}
  - {{ name: named, match: {{ path_prefix: /named }}, cluster: named }}
clusters:
  - name: expired
    endpoints: [127.0.0.1:{cls.expired.port}]
    tls: {{ ca: {c['ca.crt']} }}
  - name: unverified
    endpoints: [127.0.0.1:{cls.expired.port}]
    tls: {{ ca: {c['other-ca.crt']}, verify: false }}
  - name: named
    endpoints: [127.0.0.1:{cls.sni.port}]
    tls: {{ ca: {c['ca.crt']}, server_name: api.test }}
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.expired.server.stop()
        cls.sni.server.stop()
        cls.finish()

    def test_expired_upstream_certificate_fails(self):
        r = requests.get(self.gateway.url("/expired"), timeout=10)
        self.assertEqual(r.status_code, 503)  # the handshake failed: a connect failure
        self.assertIn("certificate has expired", self.gateway.proc.output())

    def test_verify_false_accepts_any_certificate(self):
        # the same expired certificate, from a CA the cluster does not trust
        r = requests.get(self.gateway.url("/unverified"), timeout=10)
        self.assertEqual((r.status_code, r.text), (200, "ok"))

    def test_sni_is_the_server_name_whatever_the_host(self):
        n = len(self.sni.snis)
        r = requests.get(self.gateway.url("/named"), headers={"Host": "shop.example"}, timeout=10)
        self.assertEqual((r.status_code, r.text), (200, "ok"))
        self.assertEqual(self.sni.snis[n:], ["api.test"])
        self.assertEqual(self.sni.hosts[-1], "shop.example")


if __name__ == "__main__":
    harness.main()
