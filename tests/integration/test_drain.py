"""SIGTERM drains: the listener stops accepting, an in-flight slow request
still completes, idle keep-alive connections are closed, the process exits
0 — and a drain that outlasts drain_timeout is cut short."""
import json
import signal
import socket
import threading
import unittest

import requests

import harness


class DrainTest(unittest.TestCase):
    """In-flight requests are held at a gate on the upstream (apps/app.py
    /hold) and released by the test: each step is checked while they are
    provably still in flight, whatever the machine's speed."""

    def setUp(self):
        self.app = harness.start_app("drain")

    def tearDown(self):
        self.app.stop()

    def start(self, drain="1h"):
        port = harness.free_port()
        cfg = harness.simple_config(port, [f"127.0.0.1:{self.app.port}"]).replace("drain_timeout: 10s",
                                                                                  f"drain_timeout: {drain}")
        return harness.Gateway(cfg, port=port), port

    def test_in_flight_request_finishes(self):
        gw, port = self.start()  # a drain_timeout of an hour: only the request's end lets it exit
        gate = harness.Gate(self.app.port)
        result = {}

        def slow():
            result["r"] = requests.get(gw.url(gate.path("in-flight")), timeout=60)
        idle = socket.create_connection(("127.0.0.1", port), timeout=30)
        t = threading.Thread(target=slow)
        t.start()
        gate.wait_held(1)
        gw.proc.p.send_signal(signal.SIGTERM)

        def refused():  # the listener closes at once
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                return False
            except OSError:
                return True
        harness.wait_until(refused, what="the listener to close after SIGTERM")
        self.assertEqual(idle.recv(10), b"")  # the idle connection was closed
        idle.close()
        self.assertIsNone(gw.proc.p.poll())  # still draining: the request is held
        self.assertNotIn("r", result)
        gate.release()
        t.join(30)
        self.assertEqual(result["r"].status_code, 200)
        self.assertEqual(result["r"].json()["released"], True)
        self.assertEqual(gw.proc.p.wait(30), 0)
        self.assertIn("drained, exiting", gw.proc.output())

    def test_http2_goaway_then_in_flight_stream_finishes(self):
        import h2.config
        import h2.connection
        import h2.events
        gw, port = self.start()
        gate = harness.Gate(self.app.port)
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":path", gate.path("h2")), (":scheme", "http"),
                              (":authority", "x")], end_stream=True)
        s.sendall(conn.data_to_send())
        gate.wait_held(1)
        gw.proc.p.send_signal(signal.SIGTERM)
        # Frames are parsed by hand: the h2 library refuses frames after a
        # GOAWAY, which is exactly what must still arrive here. The stream
        # is released once the GOAWAY is in.
        buf, frames, released = b"", [], False
        while True:
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
            if not released and any(f[0] == 7 for f in frames):
                gate.release()
                released = True
        s.close()
        goaways = [i for i, f in enumerate(frames) if f[0] == 7]
        self.assertTrue(goaways, frames)
        payload = frames[goaways[0]][3]
        self.assertEqual(int.from_bytes(payload[:4], "big") & 0x7FFFFFFF, 1)  # stream 1 is still served
        self.assertEqual(int.from_bytes(payload[4:8], "big"), 0)              # NO_ERROR
        data = [f for f in frames if f[0] == 0 and f[2] == 1]
        self.assertEqual(json.loads(b"".join(f[3] for f in data))["released"], True)
        ends = [i for i, f in enumerate(frames) if f[2] == 1 and f[0] in (0, 1) and f[1] & 1]
        self.assertTrue(ends and ends[0] > goaways[0], frames)
        self.assertEqual(gw.proc.p.wait(30), 0)

    def test_ready_is_503_while_draining(self):
        """Load balancers stop sending as soon as the drain starts: /ready
        turns 503 while a request still finishes; /healthz stays 200."""
        port, admin = harness.free_port(), harness.free_port()
        cfg = harness.simple_config(port, [f"127.0.0.1:{self.app.port}"]).replace(
            "drain_timeout: 10s", f"drain_timeout: 1h\nadmin: {{ listen: 127.0.0.1:{admin} }}")
        gw = harness.Gateway(cfg, port=port)
        harness.wait_port(admin, proc=gw.proc.p)
        probe = lambda p: requests.get(f"http://127.0.0.1:{admin}{p}", timeout=5)  # noqa: E731
        self.assertEqual((probe("/ready").status_code, probe("/ready").json()), (200, {"ready": True}))
        gate, result = harness.Gate(self.app.port), {}

        def slow():
            result["r"] = requests.get(gw.url(gate.path("ready")), timeout=60)
        t = threading.Thread(target=slow)
        t.start()
        gate.wait_held(1)
        gw.proc.p.send_signal(signal.SIGTERM)
        # (a 503 Response is falsy: wait_until gets it in a list)
        r, = harness.wait_until(lambda: (lambda r: [r] if r.status_code == 503 else None)(probe("/ready")),
                                what="/ready to say 503")
        self.assertEqual((r.status_code, r.json()), (503, {"ready": False}))
        self.assertEqual(probe("/healthz").status_code, 200)
        self.assertNotIn("r", result)  # said while the request was still in flight
        gate.release()
        t.join(30)
        self.assertEqual(result["r"].status_code, 200)
        self.assertEqual(gw.proc.p.wait(30), 0)

    def test_drain_timeout_cuts_long_requests(self):
        gw, port = self.start(drain="500ms")
        gate, done = harness.Gate(self.app.port), {}

        def slow():
            try:
                done["r"] = requests.get(gw.url(gate.path("cut")), timeout=60).status_code
            except requests.RequestException as e:
                done["r"] = type(e).__name__
        t = threading.Thread(target=slow)
        t.start()
        gate.wait_held(1)
        gw.proc.p.send_signal(signal.SIGTERM)
        # the request is never released: only the drain_timeout can end the drain
        self.assertEqual(gw.proc.p.wait(60), 0)
        t.join(30)
        gate.release()
        self.assertNotEqual(done.get("r"), 200)
        out = gw.proc.output()
        self.assertIn("drain timeout", out)
        self.assertNotIn("AddressSanitizer", out)


if __name__ == "__main__":
    harness.main()
