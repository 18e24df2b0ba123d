"""The fault filter, and through it the filter chain's pause/resume: a
delayed request pauses without blocking its worker (another request on
the same single worker overtakes it); aborts answer locally; a client that
leaves during a pause is harmless; percentages hold roughly."""
import socket
import threading
import time
import unittest

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
        done = {}

        def slow():
            t0 = time.time()
            r = requests.get(self.gateway.url("/slow-path"), timeout=5)
            done["slow"] = (r.status_code, r.headers.get("x-after-pause"), time.time() - t0)
        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.1)
        t0 = time.time()
        r = requests.get(self.gateway.url("/whoami"), timeout=5)
        fast = time.time() - t0
        self.assertEqual(r.status_code, 200)
        self.assertLess(fast, 0.25)  # served while the other request is paused
        self.assertNotIn("slow", done)
        t.join(5)
        status, header, took = done["slow"]
        self.assertEqual(status, 404)  # the app's own answer: the chain resumed and went upstream
        self.assertEqual(header, "yes")  # ...through the filters after the pause
        self.assertGreaterEqual(took, 0.4)

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
        time.sleep(0.6)  # the timers fire for exchanges that are over
        self.assertEqual(requests.get(self.gateway.url("/whoami"), timeout=5).status_code, 200)

    def test_percentages(self):
        codes = [requests.get(self.gateway.url("/half"), timeout=5).status_code for _ in range(200)]
        aborted = codes.count(503)
        self.assertGreater(aborted, 60)
        self.assertLess(aborted, 140)


if __name__ == "__main__":
    unittest.main()
