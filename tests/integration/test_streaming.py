"""Streaming through the gateway: chunked responses and SSE reach the client
as the upstream writes them (not buffered), a 20 MiB upload arrives intact
(checked by hash, both Content-Length and chunked), downloads are intact."""
import hashlib
import os
import socket
import subprocess
import time
import unittest

import requests

import harness


class StreamingTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.start_with_app("stream")

    def test_streaming_response_not_buffered(self):
        t0 = time.time()
        arrivals = []
        with requests.get(self.gateway.url("/stream?n=4&delay=0.4"), stream=True, timeout=10) as r:
            self.assertEqual(r.status_code, 200)
            self.assertEqual(r.headers.get("transfer-encoding"), "chunked")
            for line in r.iter_lines():
                if line:
                    arrivals.append(time.time() - t0)
        self.assertEqual(len(arrivals), 4)
        # the first chunk arrives long before the upstream finishes (~1.6 s)
        self.assertLess(arrivals[0], 1.0)
        self.assertGreater(arrivals[-1] - arrivals[0], 0.8)

    def test_sse_events_arrive_as_sent(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(b"GET /sse?n=3&delay=0.6 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        t0 = time.time()
        buf = b""
        seen = []  # arrival time of each event
        while len(seen) < 3 and time.time() - t0 < 10:
            b = s.recv(65536)
            if not b:
                break
            buf += b
            now = time.time() - t0
            seen += [now] * (buf.count(b"data:") - len(seen))
        s.close()
        self.assertIn(b"text/event-stream", buf)
        self.assertEqual(len(seen), 3)
        self.assertLess(seen[0], 0.5)
        self.assertGreater(seen[2] - seen[0], 0.9)

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
    unittest.main()
