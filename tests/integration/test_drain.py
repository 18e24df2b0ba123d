"""SIGTERM drains: the listener stops accepting, an in-flight slow request
still completes, idle keep-alive connections are closed, the process exits
0 — and a drain that outlasts drain_timeout is cut short."""
import signal
import socket
import threading
import time
import unittest

import requests

import harness


class DrainTest(unittest.TestCase):
    def setUp(self):
        self.app = harness.start_app("drain")

    def tearDown(self):
        self.app.stop()

    def slow_started(self):
        return requests.get(f"http://127.0.0.1:{self.app.port}/stats", timeout=5).json()["slow_started"]

    def wait_slow_started(self, n):
        """Waits (bounded) until the app has started n /slow requests: the
        one under test is in flight upstream, not merely sent."""
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.slow_started() >= n:
                return
            time.sleep(0.02)
        self.fail("the slow request never reached the upstream")

    def start(self, drain="10s"):
        port = harness.free_port()
        cfg = harness.simple_config(port, [f"127.0.0.1:{self.app.port}"]).replace("drain_timeout: 10s",
                                                                                  f"drain_timeout: {drain}")
        return harness.Gateway(cfg, port=port), port

    def test_in_flight_request_finishes(self):
        gw, port = self.start()
        result = {}

        def slow():
            result["r"] = requests.get(gw.url("/slow?delay=1.5"), timeout=10)
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        before = self.slow_started()
        t = threading.Thread(target=slow)
        t.start()
        self.wait_slow_started(before + 1)
        t0 = time.time()
        gw.proc.p.send_signal(signal.SIGTERM)
        deadline, refused = time.time() + 5, False
        while not refused and time.time() < deadline:  # the listener closes at once
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                time.sleep(0.02)
            except OSError:
                refused = True
        self.assertTrue(refused, "still accepting after SIGTERM")
        self.assertEqual(idle.recv(10), b"")  # the idle connection was closed
        idle.close()
        t.join(10)
        self.assertEqual(result["r"].status_code, 200)
        self.assertEqual(result["r"].json(), {"slept": 1.5})
        self.assertEqual(gw.proc.p.wait(10), 0)
        self.assertLess(time.time() - t0, 5)
        self.assertIn("drained, exiting", gw.proc.output())

    def test_http2_goaway_then_in_flight_stream_finishes(self):
        import h2.config
        import h2.connection
        import h2.events
        gw, port = self.start()
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":path", "/slow?delay=1.5"), (":scheme", "http"),
                              (":authority", "x")], end_stream=True)
        before = self.slow_started()
        s.sendall(conn.data_to_send())
        self.wait_slow_started(before + 1)
        gw.proc.p.send_signal(signal.SIGTERM)
        # Frames are parsed by hand: the h2 library refuses frames after a
        # GOAWAY, which is exactly what must still arrive here.
        buf, frames, deadline = b"", [], time.time() + 10
        while time.time() < deadline:
            data = s.recv(65536)
            if not data:
                break
            buf += data
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                ftype, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                frames.append((ftype, flags, sid, buf[9:9 + length]))
                buf = buf[9 + length:]
        s.close()
        goaways = [i for i, f in enumerate(frames) if f[0] == 7]
        self.assertTrue(goaways, frames)
        payload = frames[goaways[0]][3]
        self.assertEqual(int.from_bytes(payload[:4], "big") & 0x7FFFFFFF, 1)  # stream 1 is still served
        self.assertEqual(int.from_bytes(payload[4:8], "big"), 0)              # NO_ERROR
        data = [f for f in frames if f[0] == 0 and f[2] == 1]
        self.assertEqual(b"".join(f[3] for f in data), b'{"slept":1.5}')
        ends = [i for i, f in enumerate(frames) if f[2] == 1 and f[0] in (0, 1) and f[1] & 1]
        self.assertTrue(ends and ends[0] > goaways[0], frames)
        self.assertEqual(gw.proc.p.wait(10), 0)

    def test_ready_is_503_while_draining(self):
        """Load balancers stop sending as soon as the drain starts: /ready
        turns 503 while a request still finishes; /healthz stays 200."""
        port, admin = harness.free_port(), harness.free_port()
        cfg = harness.simple_config(port, [f"127.0.0.1:{self.app.port}"]).replace(
            "drain_timeout: 10s", f"drain_timeout: 10s\nadmin: {{ listen: 127.0.0.1:{admin} }}")
        gw = harness.Gateway(cfg, port=port)
        probe = lambda p: requests.get(f"http://127.0.0.1:{admin}{p}", timeout=5)  # noqa: E731
        self.assertEqual((probe("/ready").status_code, probe("/ready").json()), (200, {"ready": True}))
        before, result = self.slow_started(), {}

        def slow():
            result["r"] = requests.get(gw.url("/slow?delay=2"), timeout=15)
        t = threading.Thread(target=slow)
        t.start()
        self.wait_slow_started(before + 1)
        gw.proc.p.send_signal(signal.SIGTERM)
        deadline, r = time.time() + 5, None
        while time.time() < deadline:
            r = probe("/ready")
            if r.status_code == 503:
                break
            time.sleep(0.02)
        self.assertEqual((r.status_code, r.json()), (503, {"ready": False}))
        self.assertEqual(probe("/healthz").status_code, 200)
        self.assertNotIn("r", result)  # said while the request was still in flight
        t.join(15)
        self.assertEqual(result["r"].status_code, 200)
        self.assertEqual(gw.proc.p.wait(15), 0)

    def test_drain_timeout_cuts_long_requests(self):
        gw, port = self.start(drain="500ms")
        done = {}

        def slow():
            try:
                done["r"] = requests.get(gw.url("/slow?delay=5"), timeout=10).status_code
            except requests.RequestException as e:
                done["r"] = type(e).__name__
        before = self.slow_started()
        t = threading.Thread(target=slow)
        t.start()
        self.wait_slow_started(before + 1)
        t0 = time.time()
        gw.proc.p.send_signal(signal.SIGTERM)
        self.assertEqual(gw.proc.p.wait(10), 0)
        self.assertLess(time.time() - t0, 3)  # 6x the 500 ms drain_timeout; the request has 5 s to go
        t.join(10)
        self.assertNotEqual(done.get("r"), 200)
        out = gw.proc.output()
        self.assertIn("drain timeout", out)
        self.assertNotIn("AddressSanitizer", out)


if __name__ == "__main__":
    harness.main()
