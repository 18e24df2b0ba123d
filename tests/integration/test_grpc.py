"""gRPC through tollgate with real python3-grpcio backends and clients:
all four call kinds over h2c, TLS and mTLS (and h2 over TLS upstream),
status codes and trailing metadata, 8 MiB messages, deadlines enforced by
the gateway (grpc-timeout) in bounded time, client cancellation reaching
the backend, 200 concurrent calls on one channel, per-call round-robin
over three backends, a backend killed mid-stream, health-check calls,
and the gateway's own errors as trailers-only gRPC statuses."""
import concurrent.futures
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings

import harness

SVC = "/test.v1.Echo/"
MIB = 1024 * 1024
OPTS = [("grpc.max_receive_message_length", 32 * MIB), ("grpc.max_send_message_length", 32 * MIB)]


def wait_for(pred, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


class GrpcTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tg-grpc-")
        c = cls.c = harness.make_certs(cls.dir)
        cls.b = [harness.start_grpc_backend(f"b{i}") for i in range(3)]
        cls.tlsb = harness.start_grpc_backend("tls-b", extra=("--tls", c["server.crt"], c["server.key"]))
        cls.victim = harness.start_grpc_backend("victim")
        cls.procs = cls.b + [cls.tlsb, cls.victim]
        cls.port, cls.tport, cls.mport, cls.aport = (harness.free_port() for _ in range(4))
        eps = ", ".join(f"127.0.0.1:{b.port}" for b in cls.b)
        cfg = f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.aport} }}
limits: {{ max_body_bytes: 4MiB }}   # HTTP bodies; gRPC streams are limited per message
filters:
  - access_log: {{ path: {cls.dir}/access.log }}
listeners:
  - name: plain
    listen: 127.0.0.1:{cls.port}
  - name: tls
    listen: 127.0.0.1:{cls.tport}
    tls: {{ certificates: [{{ cert: {c['server.crt']}, key: {c['server.key']} }}] }}
  - name: mtls
    listen: 127.0.0.1:{cls.mport}
    tls:
      certificates: [{{ cert: {c['server.crt']}, key: {c['server.key']} }}]
      client_auth: require
      client_ca: {c['ca.crt']}
routes:
  - name: secured
    match: {{ grpc_service: test.v1.Echo, grpc_method: Secured }}
    cluster: echo
    filters:
      - auth: {{ bearer_tokens: [{{ name: alice, token: s3cret }}] }}
      - rate_limit: {{ key: identity, limit: 2, window: 1m }}
  - name: victim
    match: {{ grpc_service: test.v1.Echo, headers: [{{ name: x-target, value: victim }}] }}
    cluster: victim
  - name: tls-upstream
    match: {{ grpc_service: test.v1.Echo, headers: [{{ name: x-target, value: tls }}] }}
    cluster: tls-echo
    max_grpc_request_message: 32MiB   # the 8 MiB messages below; the default is 4 MiB, like gRPC's
  - name: down
    match: {{ grpc_service: test.v1.Down }}
    cluster: down
  - name: health
    match: {{ grpc_service: grpc.health.v1.Health }}
    cluster: echo
  - name: message-limit
    match: {{ grpc_service: test.v1.Echo, headers: [{{ name: x-target, value: limited }}] }}
    cluster: echo
    filters:
      - grpc_message_limit: {{ max_request_message: 1MiB }}
  - name: short-timeout
    match: {{ grpc_service: test.v1.Echo, headers: [{{ name: x-target, value: short }}] }}
    cluster: echo
    timeout: 1s
    idle_timeout: 3s
  - name: echo
    match: {{ grpc_service: test.v1.Echo }}
    cluster: echo
    timeout: 30s
    max_grpc_request_message: 32MiB
  - name: http1-bridge   # gRPC's content-type over HTTP/1.1 is no gRPC call: routed by path
    match: {{ path_separated_prefix: /test.v1.Echo }}
    cluster: echo
clusters:
  - name: echo
    protocol: h2c
    endpoints: [{eps}]
  - name: victim
    protocol: h2c
    endpoints: [127.0.0.1:{cls.victim.port}]
  - name: tls-echo
    protocol: h2
    endpoints: [127.0.0.1:{cls.tlsb.port}]
    tls: {{ ca: {c['ca.crt']}, server_name: localhost }}
  - name: down
    protocol: h2c
    endpoints: [127.0.0.1:{harness.dead_port()}]
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)
        harness.wait_port(cls.tport)
        cls.ch = grpc.insecure_channel(f"127.0.0.1:{cls.port}", options=OPTS)

    @classmethod
    def tearDownClass(cls):
        cls.ch.close()
        cls.finish()

    def channels(self):
        c = self.c
        def read(name):
            with open(c[name], "rb") as f:
                return f.read()
        ca = read("ca.crt")
        override = OPTS + [("grpc.ssl_target_name_override", "localhost")]
        tls = grpc.secure_channel(f"127.0.0.1:{self.tport}", grpc.ssl_channel_credentials(ca), options=override)
        mtls = grpc.secure_channel(f"127.0.0.1:{self.mport}",
                                   grpc.ssl_channel_credentials(ca, read("client.key"), read("client.crt")),
                                   options=override)
        return {"h2c": self.ch, "tls": tls, "mtls": mtls}

    def call_kinds(self, ch, md=()):
        r, call = ch.unary_unary(SVC + "Echo").with_call(b"ping", timeout=10, metadata=md)
        self.assertEqual(r, b"ping")
        self.assertIn(("x-initial", "hello"), [(m.key, m.value) for m in call.initial_metadata()])
        trailers = {m.key: m.value for m in call.trailing_metadata()}
        self.assertEqual(trailers["x-trailer"], "bye")
        self.assertEqual(trailers["x-bin-bin"], b"\x00\x01\x02")
        out = list(ch.unary_stream(SVC + "ServerStream")(b"5,1000", timeout=10, metadata=md))
        self.assertEqual([len(m) for m in out], [1000] * 5)
        self.assertEqual(out[3], b"\x03" * 1000)
        r = ch.stream_unary(SVC + "ClientStream")(iter([b"a" * 10, b"b" * 20, b"c" * 30]), timeout=10, metadata=md)
        self.assertEqual(r, b"3,60")
        replies = list(ch.stream_stream(SVC + "Bidi")(iter([b"one", b"two", b"three"]), timeout=10, metadata=md))
        self.assertEqual([x.split(b":", 1)[1] for x in replies], [b"one", b"two", b"three"])

    def test_all_call_kinds_h2c_tls_mtls(self):
        for name, ch in self.channels().items():
            with self.subTest(listener=name):
                self.call_kinds(ch)

    def bounded(self, fn, limit):
        """Runs fn in a thread; fails the test if it takes longer than limit."""
        box = {}

        def run():
            try:
                box["value"] = fn()
            except Exception as e:  # noqa: BLE001 - handed to the test
                box["error"] = e
        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(limit)
        self.assertFalse(t.is_alive(), f"call still running after {limit}s")
        return box

    def test_long_lived_stream_not_cut_by_route_timeout(self):
        # No grpc-timeout (no client deadline): the route's 1s timeout does
        # not apply to the call; its 3s idle_timeout does.
        md = (("x-target", "short"),)

        def slow_messages():
            time.sleep(1.6)
            yield b"late"
            time.sleep(1.6)
            yield b"later"
        box = self.bounded(lambda: list(self.ch.stream_stream(SVC + "Bidi")(slow_messages(), metadata=md)), 15)
        self.assertNotIn("error", box)
        self.assertEqual([r.split(b":", 1)[1] for r in box["value"]], [b"late", b"later"])

        def silent():
            time.sleep(30)
            yield b"too late"
        box = self.bounded(lambda: list(self.ch.stream_stream(SVC + "Bidi")(silent(), metadata=md)), 15)
        # silent for 30 s otherwise, past the 15 s bound: no error in the box
        self.assertIsInstance(box.get("error"), grpc.RpcError)
        self.assertEqual(box["error"].code(), grpc.StatusCode.DEADLINE_EXCEEDED)  # an upstream timeout
        # with a client deadline, the smaller of it and the route timeout wins
        with self.assertRaises(grpc.RpcError) as cm:
            self.ch.unary_unary(SVC + "Sleep")(b"10", timeout=20, metadata=md)
        # the route's 1 s: the backend would answer "slept" after 10 s, before the client's 20 s
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)

    def test_h2_over_tls_upstream(self):
        self.call_kinds(self.ch, md=(("x-target", "tls"),))
        r = self.ch.unary_unary(SVC + "Who")(b"", timeout=10, metadata=(("x-target", "tls"),))
        self.assertEqual(r, b"tls-b")

    def test_status_codes_and_trailing_metadata(self):
        for code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAVAILABLE,
                     grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INTERNAL):
            with self.subTest(code=code):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.ch.unary_unary(SVC + "Fail")(str(code.value[0]).encode(), timeout=10)
                self.assertEqual(cm.exception.code(), code)
                self.assertEqual(cm.exception.details(), "failed on purpose")
                self.assertIn(("x-why", "asked-to-fail"),
                              [(m.key, m.value) for m in cm.exception.trailing_metadata()])

    def test_access_log_records_grpc_status(self):
        import json
        with self.assertRaises(grpc.RpcError):
            self.ch.unary_unary(SVC + "Fail")(b"9", timeout=10, metadata=(("x-request-id", "fail-9"),))
        self.ch.unary_unary(SVC + "Echo")(b"x", timeout=10, metadata=(("x-request-id", "echo-ok"),))

        def lines():
            try:
                with open(os.path.join(self.dir, "access.log")) as f:
                    return {e["request_id"]: e for e in map(json.loads, f) if e["request_id"] in ("fail-9", "echo-ok")}
            except FileNotFoundError:
                return {}
        self.assertTrue(wait_for(lambda: len(lines()) == 2))
        got = lines()
        self.assertEqual(got["fail-9"]["grpc_status"], "9")
        self.assertEqual(got["echo-ok"]["grpc_status"], "0")
        self.assertEqual(got["echo-ok"]["protocol"], "HTTP/2")
        self.assertEqual(got["echo-ok"]["status"], 200)

    def test_grpc_metrics(self):
        with self.assertRaises(grpc.RpcError):
            self.ch.unary_unary(SVC + "Fail")(b"5", timeout=10)
        with self.assertRaises(grpc.RpcError):
            self.ch.unary_unary("/nope.v1.Svc/M")(b"", timeout=10)
        self.ch.unary_unary(SVC + "Echo")(b"x", timeout=10)
        text = harness.curl(f"http://127.0.0.1:{self.aport}/metrics")[1].decode()
        self.assertGreaterEqual(harness.metric(text, "tollgate_grpc_responses_total", route="echo", grpc_code="NOT_FOUND"), 1)
        self.assertGreaterEqual(harness.metric(text, "tollgate_grpc_responses_total", route="echo", grpc_code="OK"), 1)
        self.assertGreaterEqual(harness.metric(text, "tollgate_grpc_responses_total", route="", grpc_code="UNIMPLEMENTED"), 1)
        self.assertGreaterEqual(harness.metric(text, "tollgate_http2_streams_total", listener="plain"), 1)
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_large_messages(self):
        big = os.urandom(8 * MIB)
        self.assertEqual(self.ch.unary_unary(SVC + "Echo")(big, timeout=60), big)
        out = list(self.ch.unary_stream(SVC + "ServerStream")(f"4,{8 * MIB}".encode(), timeout=60))
        self.assertEqual([len(m) for m in out], [8 * MIB] * 4)
        r = self.ch.stream_unary(SVC + "ClientStream")(iter([big, big]), timeout=60)
        self.assertEqual(r, f"2,{16 * MIB}".encode())

    def test_message_size_limit_is_per_message(self):
        md = (("x-target", "limited"),)
        part = b"m" * (512 * 1024)
        # 24 messages of 512 KiB: 12 MiB in all, over max_body_bytes, each under the limit
        r = self.ch.stream_unary(SVC + "ClientStream")(iter([part] * 24), timeout=60, metadata=md)
        self.assertEqual(r, f"24,{24 * len(part)}".encode())
        with self.assertRaises(grpc.RpcError) as cm:
            self.ch.stream_unary(SVC + "ClientStream")(iter([part, b"x" * (2 * MIB)]), timeout=60, metadata=md)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        with self.assertRaises(grpc.RpcError) as cm:
            self.ch.unary_unary(SVC + "Echo")(b"y" * (2 * MIB), timeout=60, metadata=md)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

    def test_200_concurrent_calls_one_channel(self):
        unary = self.ch.unary_unary(SVC + "Echo")
        futs = [unary.future(f"m{i}".encode(), timeout=30) for i in range(200)]
        self.assertEqual([f.result() for f in futs], [f"m{i}".encode() for i in range(200)])

    def test_round_robin_per_call(self):
        who = self.ch.unary_unary(SVC + "Who")
        counts = {}
        for _ in range(300):
            r = who(b"", timeout=10).decode()
            counts[r] = counts.get(r, 0) + 1
        self.assertEqual(counts, {"b0": 100, "b1": 100, "b2": 100})

    def raw_call(self, path, body, headers=(), timeout=10):
        """A gRPC call with the h2 library: no client-side deadline, so what
        ends the call is the gateway. Returns (headers, data, trailers)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "x"),
                              ("content-type", "application/grpc"), ("te", "trailers"), *headers])
        conn.send_data(1, harness.grpc_frame(body), end_stream=True)
        s.sendall(conn.data_to_send())
        head, data, trailers, deadline = None, b"", None, time.time() + timeout
        try:
            while time.time() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                for ev in conn.receive_data(chunk):
                    if isinstance(ev, h2.events.ResponseReceived):
                        head = dict(ev.headers)
                    elif isinstance(ev, h2.events.DataReceived):
                        data += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, 1)
                    elif isinstance(ev, h2.events.TrailersReceived):
                        trailers = dict(ev.headers)
                    elif isinstance(ev, h2.events.StreamEnded):
                        return head, data, trailers
                s.sendall(conn.data_to_send())
        finally:
            s.close()
        return head, data, trailers

    def cancelled_count(self, backend_md=()):
        return int(self.ch.unary_unary(SVC + "Cancelled")(b"", timeout=10, metadata=backend_md))

    def test_deadline_enforced_by_gateway(self):
        md = (("x-target", "victim"),)
        before = self.cancelled_count(md)
        head, data, trailers = self.raw_call(SVC + "Sleep", b"5", headers=[("grpc-timeout", "400m"),
                                                                           ("x-target", "victim")])
        # trailers-only (the backend would answer "slept" after 5 s otherwise): the status is in the only HEADERS frame
        self.assertIsNotNone(head)
        self.assertEqual(head[":status"], "200")
        self.assertEqual(head.get("grpc-status"), "4", head)
        self.assertEqual(data, b"")
        self.assertTrue(wait_for(lambda: self.cancelled_count(md) > before), "the backend never saw the cancel")

    def test_grpc_timeout_forwarded(self):
        # the backend sees the time left: the client's 5 s ...
        left = float(self.ch.unary_unary(SVC + "Remaining")(b"", timeout=5))
        self.assertTrue(1.05 < left <= 5.05, left)  # not the route's 1 s; the backend's clock reading adds a few ms
        # ... or the route's 1 s timeout when that is smaller
        left = float(self.ch.unary_unary(SVC + "Remaining")(b"", timeout=5, metadata=(("x-target", "short"),)))
        self.assertTrue(0 < left <= 1.05, left)
        # without a client deadline, none is invented (grpcio reports "infinite" as a huge number)
        left = self.ch.unary_unary(SVC + "Remaining")(b"", timeout=None)
        self.assertTrue(left == b"none" or float(left) > 1e6, left)

    def test_client_cancel_reaches_backend(self):
        md = (("x-target", "victim"),)
        before = self.cancelled_count(md)
        it = self.ch.unary_stream(SVC + "SlowStream")(b"", timeout=30, metadata=md)
        self.assertEqual(next(it), b"tick")
        self.assertEqual(next(it), b"tick")
        it.cancel()
        self.assertTrue(wait_for(lambda: self.cancelled_count(md) > before), "the backend never saw the cancel")

    def test_health_check_call(self):
        r = self.ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=10)
        self.assertEqual(r, b"\x08\x01")

    def test_gateway_errors_are_grpc_statuses(self):
        cases = [
            ("/nope.v1.Svc/Method", (), grpc.StatusCode.UNIMPLEMENTED),
            ("/test.v1.Down/Method", (), grpc.StatusCode.UNAVAILABLE),
            (SVC + "Secured", (), grpc.StatusCode.UNAUTHENTICATED),
            (SVC + "Secured", (("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED),
        ]
        for path, md, code in cases:
            with self.subTest(path=path, code=code):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.ch.unary_unary(path)(b"", timeout=10, metadata=md)
                self.assertEqual(cm.exception.code(), code)
        ok = (("authorization", "Bearer s3cret"),)
        codes = []
        for _ in range(3):
            try:
                self.ch.unary_unary(SVC + "Secured")(b"", timeout=10, metadata=ok)
                codes.append("ok")
            except grpc.RpcError as e:
                codes.append(e.code())
        # the backend has no Secured method: UNIMPLEMENTED from it, twice; then the limit
        self.assertEqual(codes, [grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNIMPLEMENTED,
                                 grpc.StatusCode.RESOURCE_EXHAUSTED])

    def raw_frames(self, path, body):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "x"),
                              ("content-type", "application/grpc"), ("te", "trailers")])
        conn.send_data(1, harness.grpc_frame(body), end_stream=True)
        s.sendall(conn.data_to_send())
        try:
            return [(t, f & 1) for t, f, _ in read_frames(s, 1)]  # (type, END_STREAM)
        finally:
            s.close()

    def test_frames_passed_through_exactly(self):
        HEADERS, DATA = 1, 0
        # message then trailers: no empty DATA frame, END_STREAM on the trailers
        self.assertEqual(self.raw_frames(SVC + "Echo", b"hi"), [(HEADERS, 0), (DATA, 0), (HEADERS, 1)])
        # trailers-only stays trailers-only
        self.assertEqual(self.raw_frames(SVC + "Fail", b"5"), [(HEADERS, 1)])
        # headers, then trailers without any message
        self.assertEqual(self.raw_frames(SVC + "FailAfterHeaders", b""), [(HEADERS, 0), (HEADERS, 1)])

    def test_http1_client_to_h2_upstream(self):
        """gRPC's content-type over HTTP/1.1 is not a gRPC call (gRPC needs
        HTTP/2): grpc_service routes do not take it, a path route does, and
        the h2c upstream gets it."""
        framed = harness.grpc_frame(b"over-http1")
        path = os.path.join(self.dir, "req.bin")
        with open(path, "wb") as f:
            f.write(framed)
        rc, out, err = harness.curl("--http1.1", "-X", "POST", "-H", "content-type: application/grpc",
                                    "-H", "te: trailers", "--data-binary", f"@{path}", "-D", "-",
                                    f"http://127.0.0.1:{self.port}{SVC}Echo")
        self.assertEqual(rc, 0, err)
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertIn(b"HTTP/1.1 200", head)
        self.assertIn(b"transfer-encoding: chunked", head.lower())
        self.assertTrue(body.startswith(framed), body[:80])

    def test_backend_killed_mid_stream(self):
        victim2 = harness.start_grpc_backend("victim2")
        port = harness.free_port()
        gw = harness.Gateway(f"""
workers: 1
listeners: [{{ name: l, listen: 127.0.0.1:{port} }}]
routes: [{{ name: r, cluster: c }}]
clusters: [{{ name: c, protocol: h2c, endpoints: [127.0.0.1:{victim2.port}] }}]
""", port=port)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                it = ch.unary_stream(SVC + "SlowStream")(b"", timeout=30)
                self.assertEqual(next(it), b"tick")
                victim2.p.kill()
                with self.assertRaises(grpc.RpcError) as cm:
                    for _ in it:
                        pass
                # (unnoticed, the stream would end at the client's 30 s deadline: DEADLINE_EXCEEDED)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
                # and a new call to the dead backend is UNAVAILABLE at once
                with self.assertRaises(grpc.RpcError) as cm:
                    ch.unary_unary(SVC + "Who")(b"", timeout=10)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        finally:
            victim2.stop()
            rc, out = gw.stop()
            self.assertEqual(rc, 0, out[-3000:])
            self.assertNotIn("AddressSanitizer", out)


class GrpcHealthCheckTest(unittest.TestCase):
    """Active gRPC health checks (grpc.health.v1.Health/Check): a backend
    that stops answering is taken out of the rotation without a failed
    client call once the checks noticed; back, it gets calls again."""

    def test_grpc_health_check_routes_around_dead_backend(self):
        a = harness.start_grpc_backend("ha")
        b = harness.start_grpc_backend("hb")
        port, aport = harness.free_port(), harness.free_port()
        gw = harness.Gateway(f"""
workers: 2
admin: {{ listen: 127.0.0.1:{aport} }}
listeners: [{{ name: l, listen: 127.0.0.1:{port} }}]
routes: [{{ name: r, match: {{ grpc_service: test.v1.Echo }}, cluster: c }}]
clusters:
  - name: c
    protocol: h2c
    endpoints: [127.0.0.1:{a.port}, 127.0.0.1:{b.port}]
    health_check: {{ type: grpc, interval: 200ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2 }}
""", port=port)
        try:
            def healthy(ep):
                text = harness.curl(f"http://127.0.0.1:{aport}/metrics")[1].decode()
                return harness.metric(text, "tollgate_upstream_endpoint_healthy", cluster="c", endpoint=ep)
            self.assertTrue(wait_for(lambda: healthy(f"127.0.0.1:{a.port}") == 1))
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                who = ch.unary_unary(SVC + "Who")
                seen = {who(b"", timeout=5) for _ in range(10)}
                self.assertEqual(seen, {b"ha", b"hb"})
                a.p.kill()
                a.p.wait(5)
                self.assertTrue(wait_for(lambda: healthy(f"127.0.0.1:{a.port}") == 0), "never marked unhealthy")
                self.assertEqual({who(b"", timeout=5) for _ in range(20)}, {b"hb"})  # no call fails
                a2 = harness.start_grpc_backend("ha", port=a.port)
                try:
                    self.assertTrue(wait_for(lambda: healthy(f"127.0.0.1:{a.port}") == 1), "never healthy again")
                    self.assertEqual({who(b"", timeout=5) for _ in range(10)}, {b"ha", b"hb"})
                finally:
                    a2.stop()
        finally:
            b.stop()
            a.stop()
            rc, out = gw.stop()
            self.assertEqual(rc, 0, out[-3000:])
            self.assertNotIn("AddressSanitizer", out)


def tg_timeout_us(v):
    """A grpc-timeout value in microseconds."""
    unit = {"H": 3600e6, "M": 60e6, "S": 1e6, "m": 1e3, "u": 1, "n": 1e-3}[v[-1]]
    return int(v[:-1]) * unit


class ScriptedH2Backend:
    """A raw HTTP/2 backend (h2 library, one thread per connection) whose
    behaviour a test chooses: `plan(conn_index, stream_id, conn, send)` is
    called per request and answers it. Counts connections; `errors` holds
    every exception but the peer going away (a protocol error from the
    gateway, e.g. more streams than allowed, lands there)."""

    def __init__(self, plan, max_streams=100, freeze=False):
        self.plan, self.max_streams, self.freeze = plan, max_streams, freeze
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.errors = []
        self.requests = []  # (time, headers dict) of each request, in arrival order
        self.bodies = {}  # (conn_index, stream_id) -> the body bytes received so far
        self.ended = set()  # (conn_index, stream_id) of the requests whose body ended
        self.stop_flag = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stop_flag:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve, args=(c, self.connections - 1), daemon=True).start()

    def serve(self, c, index):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        # in the first SETTINGS frame, as real servers announce it
        conn.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        conn.initiate_connection()
        lock = threading.Lock()

        def send():
            with lock:
                data = conn.data_to_send()
                if data:
                    c.sendall(data)
        try:
            send()
            while True:
                data = c.recv(65536)
                if not data:
                    return
                with lock:
                    events = conn.receive_data(data)
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        self.requests.append((time.time(), dict(ev.headers)))
                        if self.freeze:  # a hung server: stops reading (and answering PINGs)
                            time.sleep(30)
                            return
                        threading.Thread(target=self.plan, args=(index, ev.stream_id, conn, send, lock),
                                         daemon=True).start()
                    elif isinstance(ev, h2.events.DataReceived):
                        self.bodies[(index, ev.stream_id)] = self.bodies.get((index, ev.stream_id), b"") + ev.data
                        with lock:
                            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        self.ended.add((index, ev.stream_id))
                send()
        except (ConnectionError, OSError):
            pass  # the gateway closed or reset the connection
        except Exception as e:  # noqa: BLE001 (recorded for the test to assert on)
            self.errors.append(repr(e))
        finally:
            c.close()

    def close(self):
        self.stop_flag = True
        self.sock.close()


def read_frames(s, stream_id, timeout=5):
    """Raw frames of one stream until it ends or resets: (type, flags, payload)."""
    buf, frames, deadline = b"", [], time.time() + timeout
    while time.time() < deadline:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        if not d:
            break
        buf += d
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            ftype, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            if sid == stream_id:
                frames.append((ftype, flags, buf[9:9 + length]))
            buf = buf[9 + length:]
        if any(f[0] == 3 or (f[0] in (0, 1) and f[1] & 1) for f in frames):
            break
    return frames


class Http2UpstreamTest(unittest.TestCase):
    """HTTP/2 upstream semantics with scripted backends: RST_STREAM codes
    relayed as they are, GOAWAY'd streams retried on a new connection, the
    upstream's MAX_CONCURRENT_STREAMS respected, and the exact frames of
    responses with trailers (no empty DATA frame before them)."""

    def gateway_for(self, backend_port, extra=""):
        port = harness.free_port()
        gw = harness.Gateway(f"""
workers: 1
listeners: [{{ name: l, listen: 127.0.0.1:{port} }}]
routes: [{{ name: r, cluster: c {extra} }}]
clusters: [{{ name: c, protocol: h2c, endpoints: [127.0.0.1:{backend_port}] }}]
""", port=port)
        return gw, port

    def finish(self, gw):
        rc, out = gw.stop()
        self.assertEqual(rc, 0, out[-3000:])
        self.assertNotIn("AddressSanitizer", out)

    def raw(self, port, path):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "x")],
                          end_stream=True)
        s.sendall(conn.data_to_send())
        return s

    def test_rst_stream_code_relayed(self):
        def plan(index, sid, conn, send, lock):
            with lock:
                conn.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
                conn.send_data(sid, b"partial")
            send()
            time.sleep(0.2)
            with lock:
                conn.reset_stream(sid, error_code=self.code)
            send()
        b = ScriptedH2Backend(plan)
        gw, port = self.gateway_for(b.port)
        try:
            for code in (0, 0xB, 0x2):
                with self.subTest(code=code):
                    self.code = code
                    s = self.raw(port, "/partial")
                    frames = read_frames(s, 1)
                    s.close()
                    self.assertEqual([f[0] for f in frames][-1], 3, frames)  # RST_STREAM last
                    self.assertEqual(int.from_bytes(frames[-1][2][:4], "big"), code)
                    self.assertIn(b"partial", b"".join(f[2] for f in frames if f[0] == 0))
        finally:
            b.close()
            self.finish(gw)

    def test_goaway_streams_retried_on_new_connection(self):
        def plan(index, sid, conn, send, lock):
            with lock:
                if index == 0:  # the first connection refuses everything
                    conn.close_connection(error_code=0, last_stream_id=0)
                else:
                    conn.send_headers(sid, [(":status", "200")])
                    conn.send_data(sid, b"second connection", end_stream=True)
            send()
        b = ScriptedH2Backend(plan)
        gw, port = self.gateway_for(b.port)
        try:
            rc, out, err = harness.curl(f"http://127.0.0.1:{port}/x")
            self.assertEqual(rc, 0, err)
            self.assertEqual(out, b"second connection")
            self.assertEqual(b.connections, 2)
        finally:
            b.close()
            self.finish(gw)

    def test_refused_stream_replays_a_body_still_arriving(self):
        """An HTTP/2 upstream refuses a stream (REFUSED_STREAM: never
        processed) after the first part of a POST's body went and before
        the rest came from the client: the request goes again, with the
        whole body, and the client gets the answer (it was a 502 when only
        bodies that had all arrived were kept for replay)."""
        refused = threading.Event()

        def plan(index, sid, conn, send, lock):
            if index == 0 and sid == 1:
                wait_for(lambda: (0, sid) in b.bodies, 10)  # the first part reached the upstream
                with lock:
                    conn.reset_stream(sid, error_code=0x7)  # REFUSED_STREAM
                send()
                refused.set()
                return
            wait_for(lambda: (index, sid) in b.ended, 10)
            with lock:
                body = b.bodies.get((index, sid), b"")
                conn.send_headers(sid, [(":status", "200"), ("content-length", str(len(body)))])
                conn.send_data(sid, body, end_stream=True)
            send()
        b = ScriptedH2Backend(plan)
        gw, port = self.gateway_for(b.port)
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
            self.assertTrue(refused.wait(10), "the upstream never saw the first part")
            s.sendall(b"world")
            resp = b""
            while b"\r\n\r\n" not in resp or not resp.endswith(b"helloworld"):
                d = s.recv(65536)
                if not d:
                    break
                resp += d
            s.close()
            self.assertTrue(resp.startswith(b"HTTP/1.1 200"), resp)
            self.assertTrue(resp.endswith(b"\r\n\r\nhelloworld"), resp)
            self.assertEqual(len(b.requests), 2)
            self.assertEqual(b.errors, [])
        finally:
            b.close()
            self.finish(gw)

    def test_idle_upstream_connections_close(self):
        def plan(index, sid, conn, send, lock):
            with lock:
                conn.send_headers(sid, [(":status", "200")])
                conn.send_data(sid, b"ok", end_stream=True)
            send()
        b = ScriptedH2Backend(plan)
        port, aport = harness.free_port(), harness.free_port()
        gw = harness.Gateway(f"""
workers: 1
admin: {{ listen: 127.0.0.1:{aport} }}
listeners: [{{ name: l, listen: 127.0.0.1:{port} }}]
routes: [{{ name: r, cluster: c }}]
clusters: [{{ name: c, protocol: h2c, idle_timeout: 300ms, endpoints: [127.0.0.1:{b.port}] }}]
""", port=port)
        try:
            def active():
                text = harness.curl(f"http://127.0.0.1:{aport}/metrics")[1].decode()
                return harness.metric(text, "tollgate_upstream_connections_active", cluster="c",
                                      endpoint=f"127.0.0.1:{b.port}")
            self.assertEqual(harness.curl(f"http://127.0.0.1:{port}/a")[1], b"ok")
            self.assertEqual(harness.curl(f"http://127.0.0.1:{port}/b")[1], b"ok")
            self.assertEqual(b.connections, 1)  # both on one multiplexed connection
            self.assertTrue(wait_for(lambda: active() == 0, 30), "idle connection not closed")
            self.assertEqual(harness.curl(f"http://127.0.0.1:{port}/c")[1], b"ok")
            self.assertEqual(b.connections, 2)
        finally:
            b.close()
            self.finish(gw)

    def test_keepalive_ping_detects_a_hung_upstream(self):
        b = ScriptedH2Backend(lambda *a: None, freeze=True)
        port = harness.free_port()
        gw = harness.Gateway(f"""
workers: 1
listeners: [{{ name: l, listen: 127.0.0.1:{port} }}]
routes: [{{ name: r, cluster: c, timeout: 30s }}]
clusters: [{{ name: c, protocol: h2c, keepalive_interval: 300ms, keepalive_timeout: 300ms,
             endpoints: [127.0.0.1:{b.port}] }}]
""", port=port)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                with self.assertRaises(grpc.RpcError) as cm:
                    ch.unary_unary("/any.v1.Svc/Call")(b"x", timeout=20)
            # the PING went unanswered: UNAVAILABLE, not the route's 30 s (or the client's 20 s) DEADLINE_EXCEEDED
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        finally:
            b.close()
            self.finish(gw)

    def test_connect_timeout(self):
        hole = harness.BlackHole()
        port = harness.free_port()
        gw = harness.Gateway(f"""
workers: 1
listeners: [{{ name: l, listen: 127.0.0.1:{port} }}]
routes: [{{ name: r, cluster: c }}]
clusters: [{{ name: c, protocol: h2c, connect_timeout: 300ms, endpoints: [127.0.0.1:{hole.port}] }}]
""", port=port)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                with self.assertRaises(grpc.RpcError) as cm:
                    ch.unary_unary("/any.v1.Svc/Call")(b"x", timeout=20)
            # the gateway's 504 (connect timed out), not the client's own 20 s deadline
            self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
            self.assertEqual(cm.exception.details(), "upstream connect timed out")
        finally:
            hole.stop()
            self.finish(gw)

    def test_retry_on_grpc_unavailable(self):
        calls = []

        def plan(index, sid, conn, send, lock):
            calls.append(sid)
            with lock:
                if len(calls) == 1:  # the first call: trailers-only UNAVAILABLE
                    conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                            ("grpc-status", "14"), ("grpc-message", "try later")], end_stream=True)
                else:
                    conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                    conn.send_data(sid, harness.grpc_frame(b"second time"))
                    conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
            send()
        b = ScriptedH2Backend(plan)
        gw, port = self.gateway_for(b.port, extra=""", filters: [{ retry: { attempts: 3, on: [unavailable],
                                           backoff: { base: 10ms, max: 50ms }, methods: [POST] } }]""")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                self.assertEqual(ch.unary_unary("/any.v1.Svc/Call")(b"x", timeout=10), b"second time")
            self.assertEqual(len(calls), 2)
        finally:
            b.close()
            self.finish(gw)

    def test_retries_stay_within_the_deadline(self):
        """Every attempt answers UNAVAILABLE; with a 1 s grpc-timeout and up
        to 10 attempts with a full-jitter backoff of up to an hour, the call
        ends with DEADLINE_EXCEEDED at the deadline, not after a wait or
        after its attempts run out (the client here has no deadline of its
        own: it would wait for the hour), and each attempt forwards the
        time that is left, less at each try."""
        def plan(index, sid, conn, send, lock):
            with lock:
                conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                        ("grpc-status", "14"), ("grpc-message", "try later")], end_stream=True)
            send()
        b = ScriptedH2Backend(plan)
        gw, port = self.gateway_for(b.port, extra=""", filters: [{ retry: { attempts: 10, on: [unavailable],
                                           backoff: { base: 1h, max: 1h }, methods: [POST] } }]""")
        try:
            rc, out, err = harness.curl("--http2-prior-knowledge", "-sS", "-D", "-", "-o", "/dev/null",
                                        "-H", "content-type: application/grpc", "-H", "te: trailers",
                                        "-H", "grpc-timeout: 1S", "--data-binary", "@-",
                                        f"http://127.0.0.1:{port}/any.v1.Svc/Call", timeout=120,
                                        stdin_data=harness.grpc_frame(b"x"))
            self.assertEqual(rc, 0, err)
            head = out.decode().lower()
            self.assertIn("grpc-status: 4\r\n", head)  # the gateway's DEADLINE_EXCEEDED, not UNAVAILABLE
            # a wait of under 1 s out of an hour before a second attempt: 1 in 3600
            self.assertIn(len(b.requests), (1, 2))
            left = [tg_timeout_us(h["grpc-timeout"]) for _, h in b.requests]
            self.assertTrue(all(0 < x <= 1_000_000 for x in left), left)  # no attempt after the deadline
            self.assertEqual(left, sorted(left, reverse=True))  # what is left shrinks
        finally:
            b.close()
            self.finish(gw)

    def test_max_concurrent_streams_respected(self):
        """The upstream allows 2 streams per connection: the gateway never has
        more open on one (the h2 library would raise, recorded in errors),
        uses the 2 it may, and opens more connections for the rest."""
        active, peak = {}, {}
        guard = threading.Lock()

        def plan(index, sid, conn, send, lock):
            with guard:
                active[index] = active.get(index, 0) + 1
                peak[index] = max(peak.get(index, 0), active[index])
            time.sleep(0.3)
            with guard:
                active[index] -= 1
            with lock:
                conn.send_headers(sid, [(":status", "200")])
                conn.send_data(sid, b"ok", end_stream=True)
            send()
        b = ScriptedH2Backend(plan, max_streams=2)
        gw, port = self.gateway_for(b.port)
        try:
            p = subprocess.run(["h2load", "-n", "12", "-c", "1", "-m", "12", f"http://127.0.0.1:{port}/"],
                               capture_output=True, text=True, timeout=60)
            self.assertIn("12 succeeded", p.stdout, p.stdout)
            self.assertEqual(b.errors, [])
            self.assertEqual(max(peak.values()), 2, peak)  # the limit is used, never passed
            self.assertEqual(b.connections, 6)  # 12 concurrent streams, 2 per connection: none queued
        finally:
            b.close()
            self.finish(gw)


if __name__ == "__main__":
    harness.main()
