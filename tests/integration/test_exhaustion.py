"""Resource exhaustion: at the process's descriptor limit the gateway
pauses accepting with a backoff, closes idle keep-alive connections to
make room, logs once per episode and recovers by itself (it used to spin
at 100% CPU writing "accept: Too many open files" ~165,000 times a
second); max_connections per listener and per process close connections
past the limit at once and count them."""
import re
import socket
import time

import requests

import harness


class DescriptorExhaustionTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("exhausted")
        cls.procs = [cls.app]
        cls.port = harness.free_port()
        cfg = harness.simple_config(cls.port, [f"127.0.0.1:{cls.app.port}"], workers=1,
                                    limits="limits: { idle_timeout: 60s }")
        # 96 descriptors: the process's own (logs, epoll, pipes, sanitizer) plus a few dozen connections
        cls.gateway = harness.Gateway(cfg, port=cls.port, prefix=("prlimit", "--nofile=96:96", "--"))

    def test_pauses_recovers_and_logs_once(self):
        clients = []
        try:
            for _ in range(150):  # more than the limit allows: accept() hits EMFILE
                clients.append(socket.create_connection(("127.0.0.1", self.port), timeout=5))
            harness.wait_until(lambda: "pausing accepts" in self.gateway.proc.output(), what="the pause")
            # spinning on a readable listening socket makes an accept() call
            # after another (it made ~165,000 a second); a paused listener
            # with a backoff (25 ms doubling to 1 s) a few dozen in 2 s
            calls, table = harness.syscalls_during(self.gateway.proc.pid, 2.0)
            self.assertLess(calls, 400, f"{calls} system calls in 2 s while out of descriptors:\n{table}")
            # idle connections were closed to make room (oldest first)
            closed = 0
            for c in clients:
                c.setblocking(False)
                try:
                    if c.recv(1) == b"":
                        closed += 1
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    closed += 1
            self.assertGreater(closed, 0)
        finally:
            for c in clients:
                c.close()
        # it recovers by itself: requests are served again
        deadline = time.time() + 30
        ok = False
        while time.time() < deadline and not ok:
            try:
                ok = requests.get(self.gateway.url("/whoami"), timeout=2).status_code == 200
            except requests.RequestException:
                time.sleep(0.1)
        self.assertTrue(ok)
        log = self.gateway.proc.output()
        episodes = len(re.findall(r"pausing accepts", log))
        self.assertGreaterEqual(episodes, 1, log[-2000:])
        self.assertLess(len(re.findall(r"accept", log)), 50, log[-3000:])  # not one line per failed accept


class LingerTest(harness.GatewayTest):
    """After the gateway's last bytes on a connection it must close (an
    error answer, a GOAWAY), it shuts its write side and waits a moment for
    the client to close first. It used to call shutdown() again on every
    write event, and each call raised a new one: the worker spun at 100%
    CPU for the whole linger while the client kept its socket open."""

    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("linger")
        cls.procs = [cls.app]
        cls.port = harness.free_port()
        cls.gateway = harness.Gateway(harness.simple_config(cls.port, [f"127.0.0.1:{cls.app.port}"], workers=1),
                                      port=cls.port)

    def test_lingering_connections_do_not_spin(self):
        bad = {"http1": b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
               # PRIORITY on stream 0: a connection error, GOAWAY then linger
               "http2": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                        b"\x00\x00\x05\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x10"}
        for proto, data in bad.items():
            with self.subTest(proto):
                socks = []
                try:
                    for _ in range(4):
                        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                        s.sendall(data)
                        got = b""
                        while True:  # everything up to the gateway's FIN; the socket stays open
                            d = s.recv(65536)
                            if not d:
                                break
                            got += d
                        self.assertTrue(got)
                        socks.append(s)
                    # within the 2 s linger: a shutdown() on every write event
                    # spins (thousands of calls); waiting for the client, none
                    calls, table = harness.syscalls_during(self.gateway.proc.pid, 1.0)
                    self.assertLess(calls, 100, f"{calls} system calls in 1 s with 4 lingering connections:\n{table}")
                finally:
                    for s in socks:
                        s.close()


class ConnectionLimitTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("limited")
        cls.procs = [cls.app]
        cls.port, cls.port2, cls.aport = harness.free_port(), harness.free_port(), harness.free_port()
        cfg = f"""
workers: 1
max_connections: 6
admin: {{ listen: 127.0.0.1:{cls.aport} }}
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
    max_connections: 3
  - name: other
    listen: 127.0.0.1:{cls.port2}
routes:
  - name: r
    cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)
        harness.wait_port(cls.port2)

    def rejected(self, listener):
        m = requests.get(f"http://127.0.0.1:{self.aport}/metrics", timeout=5).text
        return harness.metric(m, "tollgate_downstream_connections_rejected_total", listener=listener)

    def served(self, s):
        s.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(65536).startswith(b"HTTP/1.1 200")

    def test_listener_and_process_limits(self):
        before, before_other = self.rejected("main"), self.rejected("other")
        held = [socket.create_connection(("127.0.0.1", self.port), timeout=5) for _ in range(3)]
        for s in held:
            self.assertTrue(self.served(s))
        extra = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.assertEqual(extra.recv(1), b"")  # closed at once: the listener's limit
        extra.close()
        self.assertEqual(self.rejected("main") - before, 1)
        # the process limit (6) counts every listener
        others = [socket.create_connection(("127.0.0.1", self.port2), timeout=5) for _ in range(3)]
        for s in others:
            self.assertTrue(self.served(s))
        extra = socket.create_connection(("127.0.0.1", self.port2), timeout=5)
        self.assertEqual(extra.recv(1), b"")
        extra.close()
        self.assertEqual(self.rejected("other") - before_other, 1)
        self.assertEqual(self.rejected("main") - before, 1)  # counted where it was refused

        # room again once a connection closes (the worker sees the close on
        # its next loop turn: retried, bounded)
        def served_again():
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            try:
                return self.served(s)
            except OSError:
                return False
            finally:
                s.close()
        held.pop().close()
        harness.wait_until(served_again, what="a place after a close")
        for s in held + others:
            s.close()


if __name__ == "__main__":
    harness.main()
