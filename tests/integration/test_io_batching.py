"""Reads and writes batched through io_uring (`io_uring: auto`, the
default) and made one system call each (`io_uring: off`) carry the same
traffic the same way: keep-alive and pipelined HTTP/1.1, 4 MiB up and
down, HTTP/2 over h2c, local answers. strace shows where the calls went:
batched, the worker's socket reads and writes are gone and io_uring_enter
stands in for them, fewer than one per request; unbatched, there is no
ring and at least a read and a write per request on each side. The
start-up log says which mode runs."""
import hashlib
import socket
import subprocess
import threading
import unittest

import harness

BIG = 4 * 1024 * 1024


def pattern(n):
    block = bytes((i * 7 + 3) & 0xFF for i in range(65536))
    return (block * (n // len(block) + 1))[:n]


def upstream(c):
    """Keep-alive upstream: GET /big answers BIG bytes of pattern(), a POST
    the SHA-256 of its body, anything else its path."""
    c.settimeout(30)
    while True:
        head, body = harness.read_request(c)
        if not head:
            return
        line = head.split(b"\r\n")[0].split(b" ")
        method, path = line[0], line[1]
        if method == b"POST":
            out = hashlib.sha256(body).hexdigest().encode()
        elif path == b"/big":
            out = pattern(BIG)
        else:
            out = b"path:" + path
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(out) + out)


class Mode:
    MODE = None  # "auto" or "off"

    @classmethod
    def setUpClass(cls):
        cls.up = harness.ScriptedServer(upstream)
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.gateway = harness.Gateway(f"""
workers: 1
io_uring: {cls.MODE}
admin: {{ listen: '127.0.0.1:{cls.admin}' }}
listeners: [{{ name: main, listen: '127.0.0.1:{cls.port}' }}]
clusters: [{{ name: app, endpoints: ['127.0.0.1:{cls.up.port}'] }}]
routes:
  - {{ name: local, match: {{ path_prefix: /local }}, cluster: app, filters: [{{ fault: {{ abort: {{ status: 200 }} }} }}] }}
  - {{ name: app, cluster: app }}
""", port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        cls.finish()

    def keepalive(self, conns=3, rounds=20, pipeline=5):
        """conns connections at once, each sending rounds groups of pipeline
        requests at a time; every answer checked, in order."""
        errors = []

        def one(k):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
                    f = s.makefile("rb")
                    for r in range(rounds):
                        paths = [f"/c{k}/r{r}/p{i}" for i in range(pipeline)]
                        s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % p.encode() for p in paths))
                        for p in paths:
                            status, body = harness.read_response(f)
                            if (status, body) != (200, b"path:" + p.encode()):
                                errors.append((p, status, body[:100]))
            except OSError as e:
                errors.append(repr(e))
        threads = [threading.Thread(target=one, args=(k,)) for k in range(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        return conns * rounds * pipeline

    def test_keepalive_and_pipelined(self):
        self.keepalive()

    def test_big_bodies_both_ways(self):
        body = pattern(BIG)[::-1]
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            f = s.makefile("rb")
            s.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            self.assertEqual(harness.read_response(f), (200, hashlib.sha256(body).hexdigest().encode()))
            s.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            status, got = harness.read_response(f)
            self.assertEqual(status, 200)
            self.assertEqual(len(got), BIG)
            self.assertTrue(got == pattern(BIG), "the download's bytes differ")

    def test_h2c_multiplexed(self):
        # 20 streams at once on one connection (nghttp: prior knowledge, all sent together)
        urls = [f"http://127.0.0.1:{self.port}/h2/{i}" for i in range(20)]
        r = subprocess.run(["nghttp", "-n", "-s", "-t", "20", *urls], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        done = sorted(line.split()[-1] for line in r.stdout.splitlines() if " 200 " in line and "/h2/" in line)
        self.assertEqual(done, sorted(f"/h2/{i}" for i in range(20)))
        r = subprocess.run(["nghttp", "-t", "20", urls[7]], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.stdout, "path:/h2/7")

    def test_local_answers(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            f = s.makefile("rb")
            s.sendall(b"GET /local HTTP/1.1\r\nHost: t\r\n\r\n" * 10)
            for _ in range(10):  # the fault filter's own answer, made by the gateway
                status, body = harness.read_response(f)
                self.assertEqual(status, 200)
                self.assertIn(b"fault injected", body)

    def socket_calls(self, calls):
        return sum(calls.get(name, 0) for name in ("read", "recvfrom", "recvmsg", "readv",
                                                    "write", "sendto", "sendmsg", "writev"))

    def test_where_the_calls_go(self):
        self.keepalive()  # the pool's connections are open: the count below is steady state
        before = harness.scrape(self.admin)
        with harness.SyscallCounts(self.gateway.proc.pid) as counts:
            n = self.keepalive(conns=4, rounds=25, pipeline=1)
        self.check_calls(n, counts.calls)
        after = harness.scrape(self.admin)
        subs = [harness.metric(m, "tollgate_io_uring_submissions_total") for m in (before, after)]
        ops = [harness.metric(m, "tollgate_io_uring_operations_total") for m in (before, after)]
        self.check_metrics(n, harness.metric(after, "tollgate_io_uring_workers"), subs[1] - subs[0], ops[1] - ops[0],
                           counts.calls.get("io_uring_enter", 0))


class BatchedTest(Mode, harness.GatewayTest):
    MODE = "auto"

    def check_calls(self, n, calls):
        # each request: a read and a write downstream, the same upstream;
        # all four went through the ring (a handful of calls aside: the
        # loop's wake-up writes, a read the loop makes on its own turn)
        self.assertLess(self.socket_calls(calls), n / 10, calls)
        self.assertGreater(calls.get("io_uring_enter", 0), 0, calls)
        self.assertLess(calls.get("io_uring_enter", 0), 4 * n, calls)

    def check_metrics(self, n, workers, subs, ops, enters):
        # the worker's submissions are its io_uring_enter calls; each request
        # made four operations (a read and a write on each side). The scrapes
        # bracket strace's window from outside: the closing reads of the
        # connections (one each, 8 at most) may fall between the two
        self.assertEqual(workers, 1)
        self.assertTrue(enters <= subs <= enters + 8, (subs, enters))
        self.assertTrue(4 * n <= ops <= 4 * n + 8, (ops, n))

    def test_startup_log(self):
        self.assertIn("I/O: reads and writes batched through io_uring", self.gateway.proc.output())


class UnbatchedTest(Mode, harness.GatewayTest):
    MODE = "off"

    def check_calls(self, n, calls):
        self.assertEqual(calls.get("io_uring_enter", 0), 0, calls)
        self.assertGreaterEqual(self.socket_calls(calls), 4 * n, calls)

    def check_metrics(self, n, workers, subs, ops, enters):
        self.assertEqual((workers, subs, ops), (0, 0, 0))

    def test_startup_log(self):
        self.assertIn("I/O: one system call per read and write (io_uring: off)", self.gateway.proc.output())


if __name__ == "__main__":
    unittest.main()
