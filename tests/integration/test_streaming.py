"""Streaming through the gateway: chunked responses and SSE reach the client
as the upstream writes them (not buffered), a 20 MiB upload arrives intact
(checked by hash, both Content-Length and chunked), downloads are intact."""
import hashlib
import os
import socket
import subprocess
import threading
import time

import requests

import harness


class Lockstep:
    """An upstream that streams in lockstep with the client: it sends event
    i, then waits (up to 10 s) until the test has seen event i before it
    sends the next, and ends the stream only after the last. A gateway that
    buffered the response would hold event 0 back until the stream ended,
    which never happens: the wait times out and the stream is cut short.
    So the test proves the events arrive as sent, by causality, not by
    timing."""

    EVENTS = 3

    def __init__(self):
        self.lock = threading.Lock()
        self.acks = {}  # request path -> [threading.Event] * EVENTS
        self.server = harness.ScriptedServer(self.handle)
        self.port = self.server.port

    def acks_for(self, path):
        with self.lock:
            return self.acks.setdefault(path, [threading.Event() for _ in range(self.EVENTS)])

    def handle(self, c):
        head, _ = harness.read_request(c)
        if not head:
            return
        acks = self.acks_for(head.split(b" ")[1].decode())
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(self.EVENTS):
            event = b"data: event-%d\n\n" % i
            c.sendall(b"%x\r\n%s\r\n" % (len(event), event))
            if not acks[i].wait(10):
                return  # the client never saw it: cut the stream short
        c.sendall(b"0\r\n\r\n")


class StreamingTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.lockstep = Lockstep()
        cls.start_with_app("stream", extra_routes="  - name: lockstep\n    match: { path_prefix: /lockstep }\n"
                                                  "    cluster: lockstep\n",
                           cluster_extra=f"  - name: lockstep\n    endpoints: [127.0.0.1:{cls.lockstep.port}]\n")

    @classmethod
    def tearDownClass(cls):
        cls.lockstep.server.stop()
        cls.finish()

    def test_sse_events_arrive_as_sent_http1(self):
        """Each event reaches an HTTP/1.1 client before the upstream sends the
        next one (see Lockstep), and the stream then ends cleanly."""
        acks = self.lockstep.acks_for("/lockstep/h1")
        s = socket.create_connection(("127.0.0.1", self.port), timeout=15)
        s.sendall(b"GET /lockstep/h1 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        buf = b""
        while not buf.endswith(b"\r\n0\r\n\r\n"):
            b = s.recv(65536)
            if not b:
                break
            buf += b
            for i in range(Lockstep.EVENTS):
                if b"event-%d" % i in buf:
                    acks[i].set()
        s.close()
        self.assertIn(b"text/event-stream", buf.lower())
        self.assertTrue(all(a.is_set() for a in acks), buf[-300:])
        self.assertTrue(buf.endswith(b"\r\n0\r\n\r\n"), buf[-100:])  # complete: no wait timed out

    def test_sse_events_arrive_as_sent_http2(self):
        """The same over HTTP/2: each event in a DATA frame as it is sent."""
        import h2.connection
        import h2.events
        acks = self.lockstep.acks_for("/lockstep/h2")
        s = socket.create_connection(("127.0.0.1", self.port), timeout=15)
        c = h2.connection.H2Connection()
        c.initiate_connection()
        c.send_headers(1, [(":method", "GET"), (":path", "/lockstep/h2"), (":scheme", "http"), (":authority", "x")],
                       end_stream=True)
        s.sendall(c.data_to_send())
        body, ended, reset = b"", False, False
        while not ended and not reset:
            d = s.recv(65536)
            if not d:
                break
            for ev in c.receive_data(d):
                if isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended = True
                elif isinstance(ev, h2.events.StreamReset):
                    reset = True
            for i in range(Lockstep.EVENTS):
                if b"event-%d" % i in body:
                    acks[i].set()
            s.sendall(c.data_to_send())
        s.close()
        self.assertTrue(ended, body)  # complete, not reset: no wait timed out
        self.assertEqual(body, b"".join(b"data: event-%d\n\n" % i for i in range(Lockstep.EVENTS)))

    def test_chunked_stream_from_the_app(self):
        """The FastAPI app's chunked stream arrives whole, chunked."""
        with requests.get(self.gateway.url("/stream?n=4&delay=0.05"), stream=True, timeout=10) as r:
            self.assertEqual(r.status_code, 200)
            self.assertEqual(r.headers.get("transfer-encoding"), "chunked")
            lines = [line for line in r.iter_lines() if line]
        self.assertEqual(len(lines), 4)

    def test_upload_20mib_content_length(self):
        data = os.urandom(20 * 1024 * 1024)
        r = requests.post(self.gateway.url("/upload"), data=data, timeout=60)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json(), {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})

    def test_upload_20mib_chunked(self):
        data = os.urandom(20 * 1024 * 1024)

        def gen():
            for i in range(0, len(data), 300_000):
                yield data[i:i + 300_000]
        r = requests.post(self.gateway.url("/upload"), data=gen(), timeout=60)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json(), {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})

    def test_download_intact(self):
        size = 8 * 1024 * 1024 + 123
        out = subprocess.run(["curl", "-sS", "--max-time", "30", self.gateway.url(f"/download?size={size}")],
                             capture_output=True, check=True).stdout
        block = bytes(range(256)) * 256
        expected = (block * (size // len(block) + 1))[:size]
        self.assertEqual(len(out), size)
        self.assertEqual(hashlib.sha256(out).hexdigest(), hashlib.sha256(expected).hexdigest())


if __name__ == "__main__":
    harness.main()
