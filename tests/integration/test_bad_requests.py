"""Bad input never reaches an upstream: malformed or ambiguous requests get
a JSON 400 and the connection closes; oversized headers 431; oversized
bodies 413; a client that dribbles its headers is cut off (408) at the
header timeout; the upstream's request counter does not move."""
import json
import socket
import subprocess
import time

import requests

import harness

BAD = {
    "cl_and_te": b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "differing_cl": b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "bad_cl": b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\nabcd",
    "obs_fold": b"GET /stats HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "bare_cr": b"GET /stats HTTP/1.1\r\nHost: x\rX-A: a\r\n\r\n",
    "bare_lf": b"GET /stats HTTP/1.1\nHost: x\n\n",
    "bad_header_name": b"GET /stats HTTP/1.1\r\nHost: x\r\nX A: a\r\n\r\n",
    "colon_space_name": b"GET /stats HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n",
    "ctl_in_value": b"GET /stats HTTP/1.1\r\nHost: x\r\nX-A: a\x07b\r\n\r\n",
    "no_host": b"GET /stats HTTP/1.1\r\n\r\n",
    "two_hosts": b"GET /stats HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad_version": b"GET /stats HTTP/1.2\r\nHost: x\r\n\r\n",
    "bad_method": b"G(T /stats HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad_target": b"GET stats HTTP/1.1\r\nHost: x\r\n\r\n",
    "space_in_target": b"GET /st ats HTTP/1.1\r\nHost: x\r\n\r\n",
    "te_gzip": b"POST /stats HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "te_http10": b"POST /stats HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "nul": b"GET /stats HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
}


# A local answer to HEAD carried its JSON body: on a keep-alive HTTP/1.1
# connection the client read those bytes as the next response's start (a
# desync); over HTTP/2 the DATA after a HEAD's HEADERS was a stream error.
HEAD_THEN_GET = (b"HEAD /refused HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /refused HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


class BadRequestTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("guarded")
        cls.procs = [cls.app]
        cls.port = harness.free_port()
        limits = "limits: { max_header_bytes: 4KiB, max_body_bytes: 1MiB, header_timeout: 1s, idle_timeout: 5s }"
        refused = ("  - name: refused\n    match: { path_prefix: /refused }\n    cluster: app\n"
                   "    filters: [{ fault: { abort: { status: 503 } } }]\n")
        cls.gateway = harness.Gateway(harness.simple_config(cls.port, [f"127.0.0.1:{cls.app.port}"], limits=limits,
                                                            extra_routes=refused),
                                      port=cls.port)

    def test_local_answer_to_head_has_no_content(self):
        out = harness.raw_request(self.port, HEAD_THEN_GET, timeout=5)
        first, sep, rest = out.partition(b"\r\n\r\n")
        self.assertTrue(first.startswith(b"HTTP/1.1 503 "), out)
        self.assertIn(b"content-length: ", first.lower())  # what a GET would get
        # the next bytes are the GET's answer, not the HEAD's body
        self.assertTrue(rest.startswith(b"HTTP/1.1 503 "), out)
        head, _, body = rest.partition(b"\r\n\r\n")
        self.assertEqual(json.loads(body)["status"], 503)
        length = int([ln for ln in first.split(b"\r\n") if ln.lower().startswith(b"content-length:")][0].split(b":")[1])
        self.assertEqual(length, len(body))
        # over HTTP/2: HEADERS that end the stream, no DATA
        r = subprocess.run(["curl", "-sS", "-I", "--http2-prior-knowledge", "--max-time", "5",
                            f"http://127.0.0.1:{self.port}/refused"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("HTTP/2 503"), r.stdout)

    @classmethod
    def tearDownClass(cls):
        cls.finish()

    def upstream_count(self):
        return requests.get(f"http://127.0.0.1:{self.app.port}/stats", timeout=5).json()["requests"]

    def assert_local_error(self, raw, status, close=True):
        out = harness.raw_request(self.port, raw, timeout=5)
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 %d " % status), (raw, out))
        self.assertNotIn(b"x-upstream", head.lower(), out)
        if close:
            self.assertIn(b"connection: close", head.lower())
        self.assertEqual(json.loads(body)["status"], status)

    def test_malformed_requests_are_rejected_before_the_upstream(self):
        before = self.upstream_count()
        for name, raw in BAD.items():
            with self.subTest(name):
                want = 505 if name == "bad_version" else 501 if name == "te_gzip" else 400
                if name == "te_gzip":
                    want = 400  # Transfer-Encoding without chunked: the length is unknowable
                self.assert_local_error(raw, want)
        self.assertEqual(self.upstream_count(), before + 1)  # only our own /stats call

    def test_bad_chunk_size(self):
        before = self.upstream_count()
        out = harness.raw_request(self.port, b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out)
        self.assertEqual(self.upstream_count(), before + 1)

    def test_headers_too_large_431(self):
        raw = b"GET /stats HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
        self.assert_local_error(raw, 431)

    def test_body_too_large_413(self):
        before = self.upstream_count()
        raw = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"a" * 1000
        self.assert_local_error(raw, 413)
        self.assertEqual(self.upstream_count(), before + 1)

    def test_chunked_body_over_limit_413(self):
        """Past limits.max_body_bytes mid-stream: exactly the JSON 413 (none of
        the request's bytes in it, see test_body_limit.py), and the upstream
        never got a complete request: the app records no finished upload."""
        before = requests.get(f"http://127.0.0.1:{self.app.port}/stats", timeout=5).json()
        r = requests.post(self.gateway.url("/upload"), data=(b"a" * 100_000 for _ in range(30)), timeout=10)
        self.assertEqual(r.status_code, 413)
        self.assertEqual(r.json(), {"error": "request body too large", "status": 413})
        after = requests.get(f"http://127.0.0.1:{self.app.port}/stats", timeout=5).json()
        self.assertEqual(after.get("uploads"), before.get("uploads"))

    def test_slow_headers_cut_off_at_header_timeout(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(b"GET /stats HTTP/1.1\r\n")
        out = b""
        for _ in range(60):  # a header line every 0.3 s, for 18 s unless cut
            try:
                s.sendall(b"X-Drip: 1\r\n")
            except OSError:
                break
            time.sleep(0.3)
            s.settimeout(0.01)
            try:
                b = s.recv(65536)
                if not b:
                    break
                out += b
            except (socket.timeout, BlockingIOError):
                pass
            except ConnectionResetError:
                break
        s.close()
        # the drip goes on until the loop's own bound otherwise: a 408 says
        # the header timeout cut it
        self.assertTrue(out.startswith(b"HTTP/1.1 408"), out)

    def test_idle_connection_closed(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        t0 = time.time()
        self.assertEqual(s.recv(10), b"")  # closed by the gateway (open for good otherwise: recv's 30 s bound)
        self.assertGreater(time.time() - t0, 4)  # and not before the 5 s idle_timeout
        s.close()

    def test_idle_timeout_counts_from_the_last_request(self):
        """The idle timer is armed lazily (a request does not re-arm it): a
        connection used every 1.5 s outlives the 5 s idle_timeout, and it
        closes no sooner than 5 s after its last answer."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        f = s.makefile("rb")
        for _ in range(5):  # 6 s of use in all
            s.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(harness.read_response(f)[0], 200)
            last = time.time()
            time.sleep(1.5)
        self.assertEqual(s.recv(10), b"")  # closed by the gateway in the end
        self.assertGreater(time.time() - last, 4)  # counted from the last answer, not the first arming
        s.close()

    def test_good_request_after_bad_ones(self):
        r = requests.get(self.gateway.url("/whoami"), timeout=5)
        self.assertEqual(r.json(), {"name": "guarded"})


if __name__ == "__main__":
    harness.main()
