"""Strict HTTP/1.1 framing end to end, over raw sockets, with a recording
upstream: a request the parser refuses never reaches the upstream as a
request, and its client gets the error status and a closed connection.

Refused in the head: the upstream receives no byte of it. Refused in the
body (chunk framing): the head may already be on its way (bodies stream),
but the upstream never receives a complete request: its connection is cut
before the body ends. Each case holds the raw bytes that a lenient parser
let through (Debian's http-parser forwarded several of them)."""
import socket
import struct
import threading
import time

import harness

H = b"Host: x\r\n"
CHUNKED = b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"

HEAD_ERRORS = {
    "bare_lf_request_line": (b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    "bare_lf_header": (b"GET / HTTP/1.1\r\nHost: x\n\r\n", 400),
    "bare_cr_header": (b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400),
    "bare_cr_end": (b"GET / HTTP/1.1\r\n" + H + b"\rX\r\n", 400),
    "tab_in_target": (b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n", 400),
    "form_feed_in_target": (b"GET /a\x0cb HTTP/1.1\r\n" + H + b"\r\n", 400),
    "del_in_target": (b"GET /a\x7f HTTP/1.1\r\n" + H + b"\r\n", 400),
    "non_ascii_target": (b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    "double_space": (b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "method_not_token": (b"GE(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "version_2": (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    "version_garbage": (b"GET / HTTP/1.1x\r\n" + H + b"\r\n", 400),
    "obs_fold": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n", 400),
    "space_before_colon": (b"GET / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    "ctl_in_value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x0bb\r\n\r\n", 400),
    "cl_list_differs": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 4\r\n\r\nabcd", 400),
    "cl_plus": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc", 400),
    "cl_and_te": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "te_not_final_chunked": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    "te_chunked_twice": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "te_with_param": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n", 400),
    "te_gzip_chunked": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    "te_vertical_tab": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400),
    "absolute_userinfo": (b"GET http://u@x/ HTTP/1.1\r\n" + H + b"\r\n", 400),
}

BODY_ERRORS = {
    # chunk data not followed by CRLF: http-parser forwarded this as a complete request
    "no_crlf_after_chunk_data": CHUNKED + b"5\r\nhelloXY0\r\n\r\n",
    "bare_lf_after_chunk_data": CHUNKED + b"5\r\nhello\n0\r\n\r\n",
    "bare_lf_in_chunk_size": CHUNKED + b"5\nhello\r\n0\r\n\r\n",
    "bare_cr_in_chunk_size": CHUNKED + b"5\rhello\r\n0\r\n\r\n",
    "bare_cr_in_chunk_ext": CHUNKED + b"5;a\rb\r\nhello\r\n0\r\n\r\n",
    "bare_lf_in_chunk_ext": CHUNKED + b"5;a=\"b\nc\"\r\nhello\r\n0\r\n\r\n",
    "space_after_chunk_size": CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n",
    "chunk_size_17_digits": CHUNKED + b"00000000000000005\r\nhello\r\n0\r\n\r\n",
    "chunk_size_overflow": CHUNKED + b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    "bare_lf_in_trailer": CHUNKED + b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
    "obs_fold_in_trailer": CHUNKED + b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n",
}


def exchange(port, data, timeout=10):
    """Sends data; returns (bytes read, whether the gateway closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        s.sendall(data)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                return out, True
            except socket.timeout:
                return out, False
            if not b:
                return out, True
            out += b
        return out, False
    finally:
        s.close()


class StrictFramingTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.up = harness.RecordingUpstream()
        cls.port = harness.free_port()
        cls.gateway = harness.Gateway(harness.simple_config(cls.port, [f"127.0.0.1:{cls.up.port}"], workers=1),
                                      port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        cls.finish()

    def snapshot(self):
        with self.up.lock:
            return len(self.up.raw), len(self.up.complete)

    def test_control_valid_requests_reach_the_upstream(self):
        """The recorder does see what the gateway forwards: valid chunked
        and Content-Length requests arrive complete."""
        _, before = self.snapshot()
        out, _ = exchange(self.port, CHUNKED.replace(H, H + b"Connection: close\r\n") + b"5;ext=\"q\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out)
        out, _ = exchange(self.port, b"POST /cl HTTP/1.1\r\n" + H + b"Connection: close\r\nContent-Length: 5, 5\r\n\r\nhello")
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out)
        with self.up.lock:
            got = self.up.complete[before:]
        self.assertEqual(len(got), 2, got)
        self.assertTrue(got[0].endswith(b"5\r\nhello\r\n0\r\n\r\n"), got[0])
        self.assertTrue(got[1].endswith(b"\r\n\r\nhello"), got[1])

    def test_head_errors_send_nothing_upstream(self):
        for name, (raw, status) in HEAD_ERRORS.items():
            with self.subTest(name):
                before_raw, before_complete = self.snapshot()
                out, closed = exchange(self.port, raw)
                self.assertTrue(out.startswith(b"HTTP/1.1 %d " % status), (name, out))
                self.assertIn(b"connection: close", out.lower())
                self.assertTrue(closed, f"{name}: the gateway kept the connection open")
                self.assertEqual(self.snapshot(), (before_raw, before_complete), f"{name} reached the upstream")

    def test_body_errors_never_complete_upstream(self):
        for name, raw in BODY_ERRORS.items():
            with self.subTest(name):
                _, before = self.snapshot()
                out, closed = exchange(self.port, raw)
                self.assertTrue(out.startswith(b"HTTP/1.1 400 "), (name, out))
                self.assertTrue(closed, f"{name}: the gateway kept the connection open")
                time.sleep(0.05)
                with self.up.lock:
                    got = self.up.complete[before:]
                self.assertEqual(got, [], f"{name} reached the upstream as a complete request")

    def test_smuggled_second_request_is_not_forwarded(self):
        """The classic shape: the bytes after a malformed chunk hold a
        second request; neither it nor the first reaches the upstream."""
        _, before = self.snapshot()
        raw = CHUNKED + b"5\r\nhelloGET /admin HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n"
        out, closed = exchange(self.port, raw)
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out)
        self.assertTrue(closed)
        self.assertEqual(out.count(b"HTTP/1.1"), 1, out)
        time.sleep(0.05)
        with self.up.lock:
            self.assertNotIn(b"/admin", self.up.raw)
            self.assertEqual(self.up.complete[before:], [])


BAD_RESPONSE_HEADS = {
    "bare_lf_status_line": b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok",
    "bare_cr_header": b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 2\r\n\r\nok",
    "cl_and_te": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "te_not_chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
    "cl_differs": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "status_two_digits": b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok",
    "te_in_http10": b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "oversized_head": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\nContent-Length: 2\r\n\r\nok",
}

BAD_RESPONSE_BODIES = {
    "no_crlf_after_chunk_data": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXY0\r\n\r\n",
    "bare_lf_chunk_size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n",
    "bad_trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX Y: 1\r\n\r\n",
}


class StrictUpstreamFramingTest(harness.GatewayTest):
    """An upstream response that cannot be framed exactly is never passed
    on as if it were whole, and its connection is closed, not pooled."""

    @classmethod
    def setUpClass(cls):
        cls.reply = b""
        cls.mode = "normal"  # "reset": RST right after the reply; "early": answer before reading the body
        cls.verdicts = []  # per upstream connection: did the gateway close it after the reply?
        cls.client_saw_head = threading.Event()  # "reset": the RST waits for it

        def handler(c):
            if cls.mode == "early":
                head = b""
                while b"\r\n\r\n" not in head:
                    d = c.recv(65536)
                    if not d:
                        return
                    head += d
            else:
                head, _ = harness.read_request(c)
            if not head:
                return
            c.sendall(cls.reply)
            if cls.mode == "reset":
                # the client has the head: the gateway read it before the RST
                # (a RST drops unread data)
                cls.client_saw_head.wait(20)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
                cls.verdicts.append(True)
                return
            c.settimeout(5)
            try:
                more = c.recv(65536)
                while cls.mode == "early" and more not in (b"", b"(timeout)"):
                    more = c.recv(65536)  # request body bytes still in flight: until the close
            except socket.timeout:
                more = b"(timeout)"
            except ConnectionResetError:
                more = b""
            cls.verdicts.append(more == b"")

        cls.up = harness.ScriptedServer(handler)
        cls.port = harness.free_port()
        cls.gateway = harness.Gateway(harness.simple_config(cls.port, [f"127.0.0.1:{cls.up.port}"], workers=1),
                                      port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        cls.finish()

    def wait_verdict(self, n):
        deadline = time.time() + 30
        while len(self.verdicts) < n and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(len(self.verdicts), n)
        return self.verdicts[n - 1]

    def test_bad_heads_are_502_and_not_reused(self):
        for name, reply in BAD_RESPONSE_HEADS.items():
            with self.subTest(name):
                type(self).reply = reply
                n = len(self.verdicts)
                out, _ = exchange(self.port, b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                self.assertTrue(out.startswith(b"HTTP/1.1 502 "), (name, out))
                self.assertTrue(self.wait_verdict(n + 1), f"{name}: the upstream connection was kept")

    def test_bad_bodies_abort_the_response_and_are_not_reused(self):
        for name, reply in BAD_RESPONSE_BODIES.items():
            with self.subTest(name):
                type(self).reply = reply
                n = len(self.verdicts)
                out, closed = exchange(self.port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10)
                self.assertTrue(out.startswith(b"HTTP/1.1 200 "), (name, out))
                self.assertTrue(closed, f"{name}: the client connection stayed open")
                self.assertFalse(out.endswith(b"0\r\n\r\n"), f"{name}: the client got a complete body: {out!r}")
                self.assertTrue(self.wait_verdict(n + 1), f"{name}: the upstream connection was kept")

    def tearDown(self):
        type(self).mode = "normal"

    def test_reset_after_a_partial_response(self):
        """The upstream sends its head and part of the body, then resets: the
        client sees the response cut short (connection closed before the
        promised length), never a complete one."""
        type(self).mode = "reset"
        type(self).reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"p" * 100
        self.client_saw_head.clear()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        out = b""
        while b"\r\n\r\n" not in out or len(out.partition(b"\r\n\r\n")[2]) < 100:
            d = s.recv(65536)
            self.assertTrue(d, out)
            out += d
        self.client_saw_head.set()
        closed = False
        try:
            out += harness.read_to_close(s)
            closed = True
        except ConnectionResetError:
            closed = True
        finally:
            s.close()
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), out)
        self.assertIn(b"content-length: 1000", head.lower())
        self.assertTrue(closed, out)
        self.assertEqual(body, b"p" * 100)  # cut short: what the upstream sent, then the close

    def test_early_answer_during_an_upload(self):
        """The upstream answers (413, closing) after the head, without reading
        the body: the client gets that answer, and the upstream connection
        is not reused (its unread body bytes would be the next request)."""
        type(self).mode = "early"
        type(self).reply = (b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"
                            b"nope")
        n = len(self.verdicts)
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        try:
            s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"b" * 65536)
            out = b""
            while b"nope" not in out:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        finally:
            s.close()
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:200])
        self.assertTrue(out.endswith(b"nope"), out[:200])
        self.assertTrue(self.wait_verdict(n + 1), "the upstream connection was kept")

    def test_interim_responses_are_skipped(self):
        """103 Early Hints and 100 Continue before the final response: the
        client gets the final response only, and the connection is reused."""
        type(self).reply = (b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                            b"HTTP/1.1 100 Continue\r\n\r\n"
                            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
        n = len(self.verdicts)
        out, _ = exchange(self.port, b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=10)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out)
        self.assertEqual(out.count(b"HTTP/1.1 "), 1, out)
        self.assertTrue(out.endswith(b"\r\n\r\nfinal"), out)
        self.assertFalse(self.wait_verdict(n + 1))  # pooled: the exchange ended cleanly

    def test_control_good_response_is_reused(self):
        """The recorder can tell a kept connection: a good response's
        connection goes back to the pool (the gateway does not close it)."""
        type(self).reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        n = len(self.verdicts)
        out, _ = exchange(self.port, b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=10)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out)
        self.assertTrue(out.endswith(b"0\r\n\r\n"), out)
        self.assertFalse(self.wait_verdict(n + 1))


if __name__ == "__main__":
    harness.main()
