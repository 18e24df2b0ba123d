"""The PROXY protocol on listeners (`proxy_protocol: true`): v1 and v2
headers from a trusted balancer name the client that filters, logs and
X-Forwarded-For see; LOCAL/UNKNOWN name no client, which is then
"unknown" (never the trusted balancer, whose X-Forwarded-For would be
believed); a peer
outside trusted_proxies, a malformed header or one that never completes
is disconnected; the header works in front of TLS and HTTP/2 and when it
arrives byte by byte; and a real HAProxy in TCP mode with send-proxy-v2
passes the real client through."""
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time

import harness

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(src, dst="10.0.0.1", sport=40000, dport=443, command=1, tlvs=b""):
    if ":" in src:
        body = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, "2001:db8::ff")
        fam = 0x21
        body += struct.pack("!HH", sport, dport)
    else:
        body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
        fam = 0x11
    body += tlvs
    return V2_SIG + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) + body


def exchange(port, data, chunks=None, timeout=10):
    """Sends data (whole, or in the given pieces), returns (bytes, closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        for piece in (chunks or [data]):
            s.sendall(piece)
            if chunks:
                time.sleep(0.01)
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True
            if not d:
                return out, True
            out += d
            if b"\r\n\r\n" in out and out.split(b"\r\n\r\n", 1)[1].rstrip().endswith(b"}"):
                return out, False
    finally:
        s.close()


def forwarded_for(out):
    head, _, body = out.partition(b"\r\n\r\n")
    headers = dict(json.loads(body)["headers"])
    return headers.get("x-forwarded-for")


REQ = b"GET /echo/headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


class ProxyProtocolTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tg-pp-")
        cls.c = harness.make_certs(cls.dir)
        cls.app = harness.start_app("behind-lb")
        cls.procs = [cls.app]
        cls.port, cls.strict, cls.tls_port = harness.free_port(), harness.free_port(), harness.free_port()
        c = cls.c
        cls.gateway = harness.Gateway(f"""
workers: 1
limits: {{ header_timeout: 1s }}
trusted_proxies: [127.0.0.1]
listeners:
  - {{ name: lb, listen: 127.0.0.1:{cls.port}, proxy_protocol: true }}
  - {{ name: strict, listen: 127.0.0.1:{cls.strict}, proxy_protocol: true, trusted_proxies: [10.0.0.0/8] }}
  - name: lbtls
    listen: 127.0.0.1:{cls.tls_port}
    proxy_protocol: true
    tls: {{ certificates: [{{ cert: {c['server.crt']}, key: {c['server.key']} }}] }}
routes:
  - {{ name: r, cluster: app }}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}
""", port=cls.port)
        harness.wait_port(cls.strict)
        harness.wait_port(cls.tls_port)

    def test_v1_and_v2_name_the_client(self):
        cases = {
            "v1 tcp4": (b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n", "203.0.113.7"),
            "v1 tcp6": (b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n", "2001:db8::7"),
            "v2 tcp4": (v2("198.51.100.9"), "198.51.100.9"),
            "v2 tcp6": (v2("2001:db8::9"), "2001:db8::9"),
            "v2 with TLVs": (v2("198.51.100.10", tlvs=b"\x04\x00\x03abc"), "198.51.100.10"),
            "v2 LOCAL": (v2("198.51.100.11", command=0), "unknown"),
            "v1 UNKNOWN": (b"PROXY UNKNOWN\r\n", "unknown"),
        }
        for name, (header, want) in cases.items():
            with self.subTest(name):
                out, _ = exchange(self.port, header + REQ)
                self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:200])
                self.assertEqual(forwarded_for(out), want)

    def test_local_and_unknown_do_not_vouch_for_forwarded_headers(self):
        """Regression (#26): a LOCAL or UNKNOWN header made the balancer
        (a trusted proxy) the peer, so whatever X-Forwarded-For the bytes
        behind it carried was believed — any client the balancer relays
        without naming could choose its address. Now the client is
        "unknown", an untrusted peer: its forwarding headers are replaced
        or removed."""
        spoof = (b"GET /echo/headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\r\n")
        for name, header in (("v2 LOCAL", v2("198.51.100.11", command=0)), ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n")):
            with self.subTest(name):
                out, _ = exchange(self.port, header + spoof)
                self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:200])
                self.assertEqual(forwarded_for(out), "unknown")
                self.assertNotIn(b"6.6.6.6", out)

    def test_header_split_byte_by_byte(self):
        header = v2("198.51.100.20")
        out, _ = exchange(self.port, None, chunks=[bytes([b]) for b in header] + [REQ])
        self.assertEqual(forwarded_for(out), "198.51.100.20")

    def test_bad_headers_are_disconnected(self):
        for name, data in {"no header": REQ,
                           "v1 missing a port": b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n" + REQ,
                           "v1 bad address": b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n" + REQ,
                           "v1 too long": b"PROXY TCP4 " + b"1" * 120 + b"\r\n" + REQ,
                           "v2 bad version": V2_SIG + b"\x11\x11\x00\x0c" + b"\0" * 12 + REQ,
                           "v2 too long": V2_SIG + b"\x21\x11\xff\xff" + REQ}.items():
            with self.subTest(name):
                out, closed = exchange(self.port, data)
                self.assertTrue(closed)
                self.assertEqual(out, b"")  # not a byte of HTTP to a client that is not a balancer

    def test_untrusted_peer_is_disconnected(self):
        out, closed = exchange(self.strict, b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n" + REQ)
        self.assertTrue(closed)
        self.assertEqual(out, b"")
        self.assertIn("not in trusted_proxies", self.gateway.proc.output())

    def test_incomplete_header_times_out(self):
        # header_timeout 1 s; open for good otherwise (then recv's 30 s bound fails the test)
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s.sendall(b"PROXY TCP4 203.0")
        try:
            self.assertEqual(s.recv(10), b"")
        except ConnectionResetError:
            pass
        s.close()

    def test_before_tls(self):
        ctx = ssl.create_default_context(cafile=self.c["ca.crt"])
        raw = socket.create_connection(("127.0.0.1", self.tls_port), timeout=10)
        raw.sendall(v2("192.0.2.44"))  # the header, then the ClientHello
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(REQ)
            out = harness.read_to_close(s)
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:200])
        self.assertEqual(forwarded_for(out), "192.0.2.44")

    def test_before_http2(self):
        rc, out, err = harness.curl("--haproxy-protocol", "--http2-prior-knowledge",
                                    f"http://127.0.0.1:{self.port}/echo/headers")
        self.assertEqual(rc, 0, err)
        self.assertEqual(dict(json.loads(out)["headers"]).get("x-forwarded-for"), "127.0.0.1")

    def test_real_haproxy_send_proxy_v2(self):
        """HAProxy in TCP mode in front, sending PROXY v2: a client from
        127.0.0.2 is 127.0.0.2 at the app, though tollgate's TCP peer is
        HAProxy on 127.0.0.1."""
        self.assertIsNotNone(shutil.which("haproxy"), "haproxy (Debian package haproxy) is required")
        hport = harness.free_port()
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
  maxconn 100
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:{hport}
  default_backend be
backend be
  server gw 127.0.0.1:{self.port} send-proxy-v2
""")
        hp = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            harness.wait_port(hport, proc=hp)
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.settimeout(10)
            s.connect(("127.0.0.1", hport))
            s.sendall(REQ)
            out = harness.read_to_close(s)
            s.close()
            self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:200])
            self.assertEqual(forwarded_for(out), "127.0.0.2")
        finally:
            hp.terminate()
            hp.wait(10)


if __name__ == "__main__":
    harness.main()
