"""body_limit, and through it the request-body filter hook: a declared
Content-Length over the route's limit is refused before the body is read;
a chunked body is counted as it flows and cut off with 413 when it passes
the limit; bodies within the limit pass intact."""
import hashlib
import os
import socket
import time

import requests

import harness


class BodyLimitTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("limited-body")
        cls.rec = harness.RecordingUpstream()
        cls.procs = [cls.app]
        cls.port = harness.free_port()
        cls.gateway = harness.Gateway(f"""
workers: 1
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
routes:
  - name: small
    match: {{ path_prefix: /upload }}
    cluster: app
    filters:
      - body_limit: {{ max: 10KiB }}
  - name: recorded
    match: {{ path_prefix: /recorded }}
    cluster: rec
    filters:
      - body_limit: {{ max: 10KiB }}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}
  - {{ name: rec, endpoints: [127.0.0.1:{cls.rec.port}] }}
""", port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.rec.stop()
        cls.finish()

    def test_within_limit(self):
        data = os.urandom(8000)
        r = requests.post(self.gateway.url("/upload"), data=data, timeout=5)
        self.assertEqual(r.json(), {"sha256": hashlib.sha256(data).hexdigest(), "size": 8000})

    def test_declared_length_over_limit(self):
        r = requests.post(self.gateway.url("/upload"), data=b"x" * 20000, timeout=5)
        self.assertEqual(r.status_code, 413)
        self.assertEqual(r.json(), {"error": "request body too large", "status": 413})
        # refused on the declared length: not a byte went upstream
        before = len(self.rec.raw)
        r = requests.post(self.gateway.url("/recorded/declared"), data=b"x" * 20000, timeout=5)
        self.assertEqual(r.status_code, 413)
        self.assertEqual(self.rec.raw[before:], b"")

    def test_chunked_over_limit(self):
        """A chunked body streams upstream as it comes (no buffering); past the
        limit the client gets 413 and the upstream request is abandoned: the
        upstream never sees the bytes past the limit nor a final chunk, so it
        can never take the truncated body for a whole one."""
        def gen():
            for i in range(10):
                yield (b"y" * 2990 + b"-END%02d-" % i) if i == 9 else b"y" * 3000
        with self.rec.lock:
            before = len(self.rec.raw)
            n_complete = len(self.rec.complete)
        r = requests.post(self.gateway.url("/recorded/chunked"), data=gen(), timeout=5)
        self.assertEqual(r.status_code, 413)
        self.assertEqual(r.json(), {"error": "request body too large", "status": 413})
        r = requests.post(self.gateway.url("/upload"), data=gen(), timeout=5)  # and to a real app
        self.assertEqual(r.status_code, 413)
        with self.rec.lock:
            seen = self.rec.raw[before:]
            complete = self.rec.complete[n_complete:]
        self.assertNotIn(b"-END09-", seen)
        self.assertNotIn(b"\r\n0\r\n\r\n", seen)
        self.assertEqual(complete, [])
        self.assertLessEqual(len(seen), 10 * 1024 + 4096)  # the limit, plus the head and chunk framing

    def wait_upstream_sees(self, marker, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.rec.lock:
                if marker in self.rec.raw:
                    return
            time.sleep(0.01)
        self.fail(f"the upstream never received {marker!r}")

    def test_refused_body_never_reflected(self):
        """Regression: a 413 for a body that passed the limit once it was
        streaming upstream was written from the buffer that still held the
        offending piece of the request body: the client's own bytes came
        back as the response body and beyond (a body carrying a whole HTTP
        response became the next response on the connection). The refusal
        must be exactly one JSON 413, on HTTP/1.1 and on HTTP/2."""
        want = b'{"error": "request body too large", "status": 413}\n'
        payload = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nPWNED" + b"z" * 12000
        # HTTP/1.1: a first chunk goes upstream; the next one passes the limit
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(b"POST /recorded/reflect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"9\r\nfirst-h1!\r\n")
        self.wait_upstream_sees(b"first-h1!")
        s.sendall(b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n")
        out = harness.read_to_close(s)
        s.close()
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413 "), out[:200])
        self.assertEqual(body, want)
        # HTTP/2: the same, in DATA frames
        import h2.connection
        import h2.events
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        c = h2.connection.H2Connection()
        c.initiate_connection()
        c.send_headers(1, [(":method", "POST"), (":path", "/recorded/reflect-h2"), (":scheme", "http"),
                           (":authority", "x")])
        c.send_data(1, b"first-h2!")
        s.sendall(c.data_to_send())
        self.wait_upstream_sees(b"first-h2!")
        c.send_data(1, payload[:12000], end_stream=False)  # within the default windows
        s.sendall(c.data_to_send())
        status, body, ended, deadline = None, b"", False, time.time() + 10
        while not ended and time.time() < deadline:
            d = s.recv(65536)
            if not d:
                break
            for ev in c.receive_data(d):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[b":status"]
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == 1:
                    body += ev.data
                    c.acknowledge_received_data(ev.flow_controlled_length, 1)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)) and ev.stream_id == 1:
                    ended = True
            s.sendall(c.data_to_send())
        s.close()
        self.assertEqual((status, body), (b"413", want))

    def test_chunked_within_limit(self):
        def gen():
            for _ in range(3):
                yield b"z" * 3000
        r = requests.post(self.gateway.url("/upload"), data=gen(), timeout=5)
        self.assertEqual(r.json()["size"], 9000)


if __name__ == "__main__":
    harness.main()
