"""Over TLS, only a close_notify says an upstream meant to end a
close-delimited body; a TCP close without one may be an attacker's reset
on the path. Such a body is a truncated response: the client sees it
aborted (its chunked body never gets the last chunk) and the upstream
reset counter moves. With close_notify the same body is complete."""
import socket
import ssl
import tempfile
import time

import requests

import harness

BODY = b"close-delimited body over TLS\n" * 100


class TlsTruncationTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tg-trunc-")
        c = harness.make_certs(cls.dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(c["server.crt"], c["server.key"])
        cls.clean = True

        def handler(raw):
            conn = ctx.wrap_socket(raw, server_side=True)
            head, _ = harness.read_request(conn)
            if not head:
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + BODY)
            if cls.clean:
                conn.unwrap()  # close_notify, then the TCP close
            else:
                raw.close()  # SSLSocket.close sends no close_notify either; closing the fd makes that explicit
            conn.close()

        cls.up = harness.ScriptedServer(handler)
        cls.port, cls.aport = harness.free_port(), harness.free_port()
        cfg = f"""
workers: 1
admin: {{ listen: 127.0.0.1:{cls.aport} }}
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
  - name: r
    cluster: tls-up
clusters:
  - name: tls-up
    endpoints: [127.0.0.1:{cls.up.port}]
    tls: {{ ca: {c['ca.crt']}, server_name: localhost }}
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        cls.finish()

    def resets(self):
        m = requests.get(f"http://127.0.0.1:{self.aport}/metrics", timeout=5).text
        return harness.metric(m, "tollgate_upstream_resets_total", cluster="tls-up",
                              endpoint=f"127.0.0.1:{self.up.port}")

    def fetch(self):
        return harness.raw_request(self.port, b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=10)

    def test_close_notify_ends_the_body(self):
        type(self).clean = True
        before = self.resets()
        out = self.fetch()
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:100])
        self.assertTrue(out.endswith(b"\r\n0\r\n\r\n"), out[-50:])  # the last chunk: complete
        self.assertEqual(self.resets(), before)

    def test_close_without_close_notify_is_truncation(self):
        type(self).clean = False
        before = self.resets()
        out = self.fetch()
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:100])
        self.assertFalse(out.endswith(b"\r\n0\r\n\r\n"), out[-50:])  # aborted, never complete
        deadline = time.time() + 30
        while self.resets() == before and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.resets(), before + 1)


if __name__ == "__main__":
    harness.main()
