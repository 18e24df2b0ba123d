"""Backpressure keeps memory bounded: a 1 GiB upload to a slow upstream and
a 1 GiB download to a slow client go through the gateway while its RSS
stays within a few MiB of idle. The peers are raw sockets (fast, exact) so
the gateway is the only thing being measured."""
import os
import socket
import threading
import time

import harness

GIB = 1024 * 1024 * 1024
BLOCK = bytes(range(256)) * 4096  # 1 MiB


def sink_source_handler(c):
    """Upstream: a POST body is read slowly for the first seconds, then
    fast, and answered with its byte count; a GET gets 1 GiB as fast as
    the gateway takes it."""
    head = b""
    while b"\r\n\r\n" not in head:
        b = c.recv(65536)
        if not b:
            return
        head += b
    head, _, rest = head.partition(b"\r\n\r\n")
    if head.startswith(b"POST"):
        length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
        got = len(rest)
        t0 = time.time()
        while got < length:
            b = c.recv(1 << 20)
            if not b:
                break
            got += len(b)
            if time.time() - t0 < 3:
                time.sleep(0.05)  # slow reader for the first seconds
        body = str(got).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    else:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % GIB)
        for _ in range(GIB // len(BLOCK)):
            c.sendall(BLOCK)


class BackpressureTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.up = harness.ScriptedServer(sink_source_handler)
        cls.port = harness.free_port()
        # AddressSanitizer keeps freed memory in a 256 MiB quarantine, which
        # would show up as RSS growth of its own; shrink it so the figure
        # measures the gateway's buffering (ASan stays fully active).
        asan = os.environ.get("ASAN_OPTIONS", "")
        env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=1"}
        # The route timeout is not under test: made long, so that a machine
        # busy enough to stall the transfer for 15 s cannot turn it into a 504.
        cls.gateway = harness.Gateway(harness.simple_config(cls.port, [f"127.0.0.1:{cls.up.port}"], workers=1,
                                                            route_extra="    timeout: 5m"),
                                      port=cls.port, env_extra=env)
        time.sleep(0.3)

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        cls.finish()

    def sample(self, stop, peak):
        while not stop.is_set():
            peak[0] = max(peak[0], harness.rss_kib(self.gateway.proc.pid))
            time.sleep(0.05)

    def measure(self, fn):
        # warm up allocator pools with one small exchange, then take the idle figure
        harness.raw_request(self.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx")
        idle = harness.rss_kib(self.gateway.proc.pid)
        stop, peak = threading.Event(), [idle]
        t = threading.Thread(target=self.sample, args=(stop, peak))
        t.start()
        try:
            fn()
        finally:
            stop.set()
            t.join()
        return idle, peak[0]

    def test_upload_1gib_slow_upstream(self):
        result = {}

        def upload():
            s = socket.create_connection(("127.0.0.1", self.port), timeout=120)
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % GIB)
            for _ in range(GIB // len(BLOCK)):
                s.sendall(BLOCK)
            resp = b""
            while not resp.endswith(str(GIB).encode()):
                b = s.recv(65536)
                if not b:
                    break
                resp += b
            s.close()
            result["resp"] = resp
        idle, peak = self.measure(upload)
        self.assertTrue(result["resp"].startswith(b"HTTP/1.1 200"), result["resp"][:200])
        self.assertTrue(result["resp"].endswith(str(GIB).encode()))
        print(f"upload: idle RSS {idle} KiB, peak {peak} KiB", flush=True)
        self.assertLess(peak - idle, 16 * 1024)

    def test_download_1gib_slow_client(self):
        result = {}

        def download():
            s = socket.create_connection(("127.0.0.1", self.port), timeout=120)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
            got = 0
            t0 = time.time()
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            head, _, rest = head.partition(b"\r\n\r\n")
            got = len(rest)
            while got < GIB:
                b = s.recv(1 << 20)
                if not b:
                    break
                got += len(b)
                if time.time() - t0 < 3:
                    time.sleep(0.05)  # slow reader for the first seconds
            s.close()
            result["got"] = got
        idle, peak = self.measure(download)
        self.assertEqual(result["got"], GIB)
        print(f"download: idle RSS {idle} KiB, peak {peak} KiB", flush=True)
        self.assertLess(peak - idle, 16 * 1024)


if __name__ == "__main__":
    harness.main()
