"""Dead and misbehaving upstreams: connect failures fail over to the next
endpoint, all endpoints down is a JSON 503, a reset before any response
byte moves a body-less request on, a reset after the body went up is a 502,
an upstream slower than the route timeout is a 504, and a truncated
upstream response cuts the client off instead of pretending success."""
import socket
import time

import requests

import harness


def truncating_handler(c):
    """Promises a Content-Length it never fulfils, then closes."""
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial")


def close_after_response_handler(c):
    """Answers one request with keep-alive framing, then closes without
    saying so: every pooled connection to it goes stale."""
    head, body = harness.read_request(c)
    if head:
        reply = b"got %d" % len(body)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(reply), reply))


class UpstreamFailureTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("alive")
        cls.procs = [cls.app]
        cls.reset = harness.ScriptedServer(harness.reset_handler)
        cls.trunc = harness.ScriptedServer(truncating_handler)
        cls.hole = harness.BlackHole()
        cls.closer = harness.ScriptedServer(close_after_response_handler)
        cls.dead1, cls.dead2 = harness.dead_port(), harness.dead_port()
        cls.port = harness.free_port()
        cfg = f"""
workers: 2
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
  - name: failover
    match: {{ path_prefix: /failover }}
    cluster: mixed
    request_headers: {{ set: {{ x-route: failover }} }}
  - name: alldown
    match: {{ path_prefix: /alldown }}
    cluster: dead
  - name: resetfirst
    match: {{ path_prefix: /resetfirst }}
    cluster: resetfirst
  - name: reset
    match: {{ path_prefix: /reset }}
    cluster: reset
  - name: slow
    match: {{ path_prefix: /slow }}
    cluster: alive
    timeout: 500ms
  - name: trunc
    match: {{ path_prefix: /trunc }}
    cluster: trunc
  - name: stale
    match: {{ path_prefix: /stale }}
    cluster: stale
  - name: holefirst
    match: {{ path_prefix: /holefirst }}
    cluster: holefirst
  - name: hole
    match: {{ path_prefix: /hole }}
    cluster: hole
clusters:
  - name: stale
    endpoints: [127.0.0.1:{cls.closer.port}]
  - name: hole
    endpoints: [127.0.0.1:{cls.hole.port}]
    connect_timeout: 300ms
  - name: holefirst
    endpoints: [127.0.0.1:{cls.hole.port}, 127.0.0.1:{cls.app.port}]
    connect_timeout: 300ms
  - name: mixed
    endpoints: [127.0.0.1:{cls.dead1}, 127.0.0.1:{cls.app.port}, 127.0.0.1:{cls.dead2}]
  - name: dead
    endpoints: [127.0.0.1:{cls.dead1}, 127.0.0.1:{cls.dead2}]
  - name: reset
    endpoints: [127.0.0.1:{cls.reset.port}]
  - name: resetfirst
    endpoints: [127.0.0.1:{cls.reset.port}, 127.0.0.1:{cls.app.port}]
  - name: alive
    endpoints: [127.0.0.1:{cls.app.port}]
  - name: trunc
    endpoints: [127.0.0.1:{cls.trunc.port}]
"""
        cfg = cfg.replace("match: { path_prefix: /failover }", "match: { path_regex: '^/(failover|whoami)' }")
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.reset.stop()
        cls.trunc.stop()
        cls.hole.stop()
        cls.closer.stop()
        cls.finish()

    def test_connect_failure_fails_over(self):
        for _ in range(12):
            r = requests.get(self.gateway.url("/whoami"), timeout=5)
            self.assertEqual(r.status_code, 200)
            self.assertEqual(r.json(), {"name": "alive"})

    def test_all_endpoints_down_is_503_json(self):
        r = requests.get(self.gateway.url("/alldown"), timeout=5)
        self.assertEqual(r.status_code, 503)
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertEqual(r.json(), {"error": "no upstream endpoint available", "status": 503})

    def test_reset_only_endpoint_is_502(self):
        r = requests.get(self.gateway.url("/reset"), timeout=5)
        self.assertEqual(r.status_code, 502)
        self.assertEqual(r.json(), {"error": "upstream connection failed", "status": 502})

    def test_reset_moves_bodyless_request_to_next_endpoint(self):
        for _ in range(6):
            r = requests.get(self.gateway.url("/resetfirst"), timeout=5)
            # the app has no such path: its 404 proves the request reached it
            self.assertEqual(r.status_code, 404)
            self.assertEqual(r.headers.get("x-upstream"), "alive")

    def test_reset_after_body_sent_is_502(self):
        # The whole request in one write: its body reaches whichever endpoint
        # round-robin picks first. The resetting one must not cause a replay
        # (the upstream may have acted on it): 502. Two requests alternate.
        raw = (b"POST /resetfirst HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
               b"Connection: close\r\n\r\n" + b"x" * 1000)
        statuses = sorted(int(harness.raw_request(self.port, raw).split(b" ")[1]) for _ in range(2))
        self.assertEqual(statuses, [404, 502])  # the app's own 404, and the reset's 502
        r = requests.post(self.gateway.url("/reset"), data=b"x" * 1000, timeout=5)
        self.assertEqual(r.status_code, 502)

    def test_route_timeout_is_504(self):
        # the route's 500 ms: the upstream would answer 200 after 10 s
        r = requests.get(self.gateway.url("/slow?delay=10"), timeout=30)
        self.assertEqual(r.status_code, 504)
        self.assertEqual(r.json(), {"error": "upstream timed out", "status": 504})
        r = requests.get(self.gateway.url("/slow?delay=0.1"), timeout=10)
        self.assertEqual(r.status_code, 200)

    def test_connect_timeout_is_504(self):
        r = requests.get(self.gateway.url("/hole"), timeout=60)  # the kernel's SYN retries take minutes
        self.assertEqual(r.status_code, 504)
        self.assertEqual(r.json(), {"error": "upstream connect timed out", "status": 504})

    def test_connect_timeout_fails_over(self):
        for _ in range(4):
            r = requests.get(self.gateway.url("/holefirst"), timeout=10)
            self.assertEqual(r.status_code, 404)  # the app's own 404
            self.assertEqual(r.headers.get("x-upstream"), "alive")

    def test_stale_pooled_connections_are_not_errors(self):
        # regression: a pooled connection the upstream closed must never
        # turn into a 502, with or without a body, small or streamed
        s = requests.Session()
        for i in range(40):
            if i % 3 == 0:
                r = s.get(self.gateway.url("/stale"), timeout=5)
                self.assertEqual(r.content, b"got 0")
            elif i % 3 == 1:
                r = s.post(self.gateway.url("/stale"), data=b"x" * 1000, timeout=5)
                self.assertEqual(r.content, b"got 1000")
            else:
                r = s.post(self.gateway.url("/stale"), data=b"y" * 400_000, timeout=5)
                self.assertEqual(r.content, b"got 400000")
            self.assertEqual(r.status_code, 200)

    def test_truncated_upstream_body_cuts_client(self):
        """The upstream promises 100000 bytes, sends 7 and closes: the client
        must see an aborted response, never a complete one (nor a 502 once
        the head is out, nor a hang)."""
        # HTTP/1.1: the head with the promised length, the bytes that came,
        # then the connection closes before the body is complete
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(b"GET /trunc HTTP/1.1\r\nHost: x\r\n\r\n")
        got = harness.read_to_close(s)  # a socket.timeout here: the gateway never closed it
        s.close()
        head, _, body = got.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), got[:200])
        if b"transfer-encoding: chunked" in head.lower():
            self.assertNotIn(b"\r\n0\r\n\r\n", b"\r\n" + body)  # no final chunk
        else:
            self.assertIn(b"content-length: 100000", head.lower())
            self.assertTrue(b"partial".startswith(body), body[:100])  # what came (or less), never more
        # HTTP/2: the stream is reset, which curl reports as an error
        rc, out, err = harness.curl("--http2-prior-knowledge", self.gateway.url("/trunc"), timeout=10)
        self.assertNotEqual(rc, 0, "curl took the truncated response as complete")
        self.assertIn(rc, (18, 92), err)  # partial file / HTTP/2 stream error
        self.assertTrue(b"partial".startswith(out), out[:100])


if __name__ == "__main__":
    harness.main()
