"""gRPC requests are bounded message by message, by default: a route with
no limit configured refuses a message over 4 MiB (gRPC's own default) with
RESOURCE_EXHAUSTED, while a stream of small messages may run past
limits.max_body_bytes. Only a gRPC call proper is exempt from the body
limit: an HTTP/2 request that merely claims a gRPC-like content-type
(gRPC-Web, "application/grpcfoo", or a GET) keeps it (it used to lift it),
and is answered as the HTTP request it is: one rule (tg_grpc_classify)
decides "gRPC call" for routing, the limits and the reply form."""
import os
import subprocess
import tempfile

import grpc

import harness

SVC = "/test.v1.Echo/"
MIB = 1024 * 1024
OPTS = [("grpc.max_receive_message_length", 32 * MIB), ("grpc.max_send_message_length", 32 * MIB)]


class GrpcLimitsTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.b = harness.start_grpc_backend("b0")
        cls.app = harness.start_app("limits-app")  # reads a whole upload before it answers
        cls.procs = [cls.b, cls.app]
        cls.port = harness.free_port()
        cfg = f"""
workers: 1
limits: {{ max_body_bytes: 64KiB }}
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
  - name: small
    match: {{ grpc_service: test.v1.Echo, headers: [{{ name: x-target, value: small }}] }}
    cluster: echo
    max_grpc_request_message: 100KiB
  - name: grpc-default
    match: {{ grpc_service: test.v1.Echo }}
    cluster: echo
  - name: app
    match: {{ path: /upload }}
    cluster: app
  - name: rest
    cluster: echo
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
  - name: echo
    protocol: h2c
    endpoints: [127.0.0.1:{cls.b.port}]
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)
        cls.ch = grpc.insecure_channel(f"127.0.0.1:{cls.port}", options=OPTS)

    @classmethod
    def tearDownClass(cls):
        cls.ch.close()
        cls.finish()

    def test_default_message_limit_is_4mib(self):
        echo = self.ch.unary_unary(SVC + "Echo")
        ok = os.urandom(3 * MIB)
        self.assertEqual(echo(ok, timeout=30), ok)  # over max_body_bytes, under the message limit
        with self.assertRaises(grpc.RpcError) as cm:
            echo(b"x" * (4 * MIB + 1), timeout=30)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

    def test_route_message_limit_and_streams_of_small_messages(self):
        md = (("x-target", "small"),)
        part = b"m" * (60 * 1024)
        r = self.ch.stream_unary(SVC + "ClientStream")(iter([part] * 20), timeout=30, metadata=md)
        self.assertEqual(r, f"20,{20 * len(part)}".encode())  # 1.2 MB in all: no body limit on gRPC
        with self.assertRaises(grpc.RpcError) as cm:
            self.ch.stream_unary(SVC + "ClientStream")(iter([part, b"y" * (101 * 1024)]), timeout=30, metadata=md)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

    def test_limit_is_on_the_message_as_sent(self):
        """With grpc-encoding gzip the limit applies to each message as it
        travels (compressed): 200 KiB of zeros compress far under the 100 KiB
        limit and pass (the backend decompresses and echoes them); 200 KiB of
        random bytes do not compress and are refused. Bounding the
        decompressed size is the backend's own receive limit."""
        md = (("x-target", "small"),)
        echo = self.ch.unary_unary(SVC + "Echo")
        zeros = b"\0" * (200 * 1024)
        self.assertEqual(echo(zeros, timeout=30, metadata=md, compression=grpc.Compression.Gzip), zeros)
        with self.assertRaises(grpc.RpcError) as cm:
            echo(os.urandom(200 * 1024), timeout=30, metadata=md, compression=grpc.Compression.Gzip)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

    def test_response_messages_are_not_limited_by_the_gateway(self):
        """The request limits do not touch responses: a 6 MiB response
        message (over the 4 MiB default request limit) reaches a client
        that accepts it."""
        msgs = list(self.ch.unary_stream(SVC + "ServerStream")(b"2,%d" % (6 * MIB), timeout=30))
        self.assertEqual([len(m) for m in msgs], [6 * MIB, 6 * MIB])
        self.assertEqual((msgs[0][:1], msgs[1][:1]), (b"\x00", b"\x01"))

    def curl_h2(self, method, content_type, size):
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"\0" * size)
            f.flush()
            p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
                                "--http2-prior-knowledge", "-X", method, "-H", f"content-type: {content_type}",
                                "--data-binary", f"@{f.name}", f"http://127.0.0.1:{self.port}/upload"],
                               capture_output=True, text=True, timeout=30)
        return p.stdout

    def head_h2(self, content_type, size, http="--http2-prior-knowledge", path="/upload"):
        """The response head to a POST of one gRPC-framed message of size
        bytes, streamed (no content-length: the limit trips mid-body)."""
        body = b"\0" + size.to_bytes(4, "big") + b"\0" * size
        p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-", "--max-time", "20", http, "-X", "POST",
                            "-H", f"content-type: {content_type}", "-T", "-", f"http://127.0.0.1:{self.port}{path}"],
                           input=body, capture_output=True, timeout=30)
        heads = p.stdout.decode().lower().split("\r\n\r\n")
        return [h for h in heads if h and not h.startswith("http/1.1 100")][-1]  # the final head

    def test_one_rule_for_the_reply_form(self):
        """Regression (#26): "is this gRPC?" was decided by two rules in
        four places — an HTTP/2 POST with "application/grpc-not-really" was
        held to the body limit (the strict rule) but refused in gRPC form,
        HTTP 200 + grpc-status 8 (the loose rule), to a client that is not
        gRPC. Now it gets HTTP 413; and gRPC's content-type over HTTP/1.1
        is no gRPC call either (gRPC needs HTTP/2)."""
        for ct, http in (("application/grpc-not-really", "--http2-prior-knowledge"),
                         ("application/grpcx+proto", "--http2-prior-knowledge"),
                         ("application/grpc", "--http1.1")):
            with self.subTest(ct=ct, http=http):
                head = self.head_h2(ct, 512 * 1024, http)
                self.assertRegex(head, r"^http/[12](\.1)? 413", head)
                self.assertNotIn("grpc-status", head)
                self.assertIn("content-type: application/json", head)
        # (a call proper is answered in gRPC form: test_default_message_limit_is_4mib)

    def test_claiming_grpc_does_not_lift_the_body_limit(self):
        for method, ct in (("POST", "application/grpc-web"), ("POST", "application/grpc-web-text"),
                           ("POST", "application/grpcfoo"), ("PUT", "application/grpc"),
                           ("GET", "application/grpc")):
            with self.subTest(f"{method} {ct}"):
                self.assertEqual(self.curl_h2(method, ct, 512 * 1024), "413")


if __name__ == "__main__":
    harness.main()
