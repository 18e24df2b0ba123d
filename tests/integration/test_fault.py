"""The fault filter, and through it the filter chain's pause/resume: a
delayed request pauses without blocking its worker (another request on
the same single worker overtakes it); aborts answer locally; a client that
leaves during a pause is harmless; percentages hold roughly."""
import socket
import time

import requests

import harness


class FaultTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.start_app_and_gateway("faulty", f"""
routes:
  - name: slow
    match: {{ path_prefix: /slow-path }}
    cluster: app
    filters:
      - fault: {{ delay: {{ duration: 400ms }} }}
      - headers: {{ response: {{ set: {{ x-after-pause: "yes" }} }} }}
  - name: long-pause
    match: {{ path_prefix: /long-pause }}
    cluster: app
    filters:
      - fault: {{ delay: {{ duration: 3s }} }}
      - headers: {{ response: {{ set: {{ x-after-pause: "yes" }} }} }}
  - name: broken
    match: {{ path_prefix: /broken }}
    cluster: app
    filters:
      - fault: {{ abort: {{ status: 503 }} }}
  - name: slow-broken
    match: {{ path_prefix: /slowbroken }}
    cluster: app
    filters:
      - fault: {{ delay: {{ duration: 200ms }}, abort: {{ status: 500 }} }}
  - name: half
    match: {{ path_prefix: /half }}
    cluster: app
    filters:
      - fault: {{ abort: {{ status: 503, percent: 50 }} }}
  - name: fast
    cluster: app
""")

    def test_delay_pauses_without_blocking_the_worker(self):
        """One HTTP/2 connection, one write: stream 1 asks for the delayed
        route, stream 3 for a plain one. The gateway reads both in order, so
        stream 1 is paused before stream 3 is even looked at; stream 3's
        whole response must come back before stream 1's starts (a worker
        blocked by the pause would answer stream 1 first), and stream 1
        still goes upstream through the filters after the pause."""
        import h2.connection
        import h2.events
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        c = h2.connection.H2Connection()
        c.initiate_connection()
        for sid, path in ((1, "/long-pause"), (3, "/whoami")):  # a 3 s pause: far longer than any answer
            c.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "x")],
                           end_stream=True)
        t0 = time.time()
        s.sendall(c.data_to_send())
        order, heads, deadline = [], {}, time.time() + 10
        while len([e for e in order if e[1] == "end"]) < 2 and time.time() < deadline:
            d = s.recv(65536)
            if not d:
                break
            for ev in c.receive_data(d):
                if isinstance(ev, h2.events.ResponseReceived):
                    order.append((ev.stream_id, "head"))
                    heads[ev.stream_id] = dict(ev.headers)
                elif isinstance(ev, h2.events.StreamEnded):
                    order.append((ev.stream_id, "end"))
                    if ev.stream_id == 1:
                        took = time.time() - t0
            s.sendall(c.data_to_send())
        s.close()
        self.assertEqual(order, [(3, "head"), (3, "end"), (1, "head"), (1, "end")])
        self.assertEqual(heads[3][b":status"], b"200")
        self.assertEqual(heads[1][b":status"], b"404")  # the app's own answer: the chain resumed, went upstream
        self.assertEqual(heads[1][b"x-after-pause"], b"yes")  # ...through the filters after the pause
        self.assertGreaterEqual(took, 3)

    def test_abort(self):
        r = requests.get(self.gateway.url("/broken"), timeout=5)
        self.assertEqual(r.status_code, 503)
        self.assertEqual(r.json(), {"error": "fault injected", "status": 503})

    def test_delay_then_abort(self):
        t0 = time.time()
        r = requests.get(self.gateway.url("/slowbroken"), timeout=5)
        self.assertEqual(r.status_code, 500)
        self.assertGreaterEqual(time.time() - t0, 0.2)

    def test_client_leaving_during_pause(self):
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            s.sendall(b"GET /slow-path HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.05)
            s.close()  # gone before the pause ends
        time.sleep(1.2)  # 3x the 400 ms delay: the timers fire for exchanges that are over
        self.assertEqual(requests.get(self.gateway.url("/whoami"), timeout=5).status_code, 200)

    def test_percentages(self):
        codes = [requests.get(self.gateway.url("/half"), timeout=5).status_code for _ in range(200)]
        aborted = codes.count(503)
        self.assertGreater(aborted, 60)
        self.assertLess(aborted, 140)


if __name__ == "__main__":
    harness.main()
