"""gRPC-Web through tollgate to a real grpcio backend (raw-bytes handlers),
requests framed by hand the way PROTOCOL-WEB.md says, over HTTP/1.1 and
HTTP/2: unary and server streaming in binary and text (base64) forms,
the text request split at every byte boundary, trailers as the final
0x80 frame (never HTTP trailers), trailers-only errors and deadlines as
grpc-status headers, and a CORS preflight for a browser origin."""
import base64
import socket
import struct

import httpx
import requests

import harness

SVC = "/test.v1.Echo"
ORIGIN = "https://app.example.com"


def frame(msg, flag=0):
    return struct.pack(">BI", flag, len(msg)) + msg


def parse_frames(body):
    """[(flag, payload)] of a gRPC-Web body; asserts it parses exactly."""
    out, i = [], 0
    while i < len(body):
        flag, n = struct.unpack(">BI", body[i:i + 5])
        out.append((flag, body[i + 5:i + 5 + n]))
        i += 5 + n
    assert i == len(body), "trailing bytes"
    return out


def trailers_of(frames):
    flag, payload = frames[-1]
    assert flag == 0x80, frames
    lines = [l for l in payload.decode().split("\r\n") if l]
    return dict(l.split(":", 1) for l in lines)


def b64_decode_segments(text):
    """A -text body may be several padded base64 segments in a row."""
    out, i = b"", 0
    while i < len(text):
        quad = text[i:i + 4]
        out += base64.b64decode(quad)
        i += 4
    return out


class GrpcWebTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.backend = harness.start_grpc_backend("gw-backend")
        cls.procs = [cls.backend]
        cls.port = harness.free_port()
        cls.gateway = harness.Gateway(f"""
workers: 2
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
clusters: [{{ name: grpc, protocol: h2c, endpoints: [127.0.0.1:{cls.backend.port}] }}]
routes:
  - name: web
    match: {{ path_prefix: {SVC}/ }}
    cluster: grpc
    filters:
      - cors: {{ allow_origins: ["{ORIGIN}"], allow_methods: [POST],
                 allow_headers: [content-type, x-grpc-web, x-user-agent, grpc-timeout],
                 expose_headers: [grpc-status, grpc-message] }}
      - grpc_web: {{}}
""", port=cls.port)

    def post(self, method, body, text=False, headers=None, http2=False):
        ctype = "application/grpc-web-text+proto" if text else "application/grpc-web+proto"
        h = {"content-type": ctype, "x-grpc-web": "1", "accept": ctype, **(headers or {})}
        if http2:
            with httpx.Client(http2=True, http1=False, timeout=10) as c:
                r = c.post(self.gateway.url(SVC + "/" + method), content=body, headers=h)
                return r.status_code, r.headers, r.content
        r = requests.post(self.gateway.url(SVC + "/" + method), data=body, headers=h, timeout=10)
        return r.status_code, r.headers, r.content

    def test_unary_binary_http1_and_http2(self):
        for http2 in (False, True):
            status, h, body = self.post("Echo", frame(b"hello web"), http2=http2)
            self.assertEqual(status, 200)
            self.assertEqual(h["content-type"], "application/grpc-web+proto")
            frames = parse_frames(body)
            self.assertEqual(frames[0], (0, b"hello web"))
            tr = trailers_of(frames)
            self.assertEqual(tr["grpc-status"], "0")
            self.assertEqual(tr["x-trailer"], "bye")
            self.assertEqual(h["x-initial"], "hello")  # initial metadata stays in the headers
            self.assertNotIn("grpc-status", h)          # the status came in the trailer frame
            # byte for byte: message frame, then 0x80 + length + the trailer lines
            payload = frames[-1][1]
            self.assertEqual(body, frame(b"hello web") + frame(payload, 0x80))
            self.assertIn(b"grpc-status:0\r\n", payload)

    def test_no_http_trailers_over_http1(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        msg = frame(b"x")
        s.sendall((f"POST {SVC}/Echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web+proto\r\n"
                   f"TE: trailers\r\nContent-Length: {len(msg)}\r\n\r\n").encode() + msg)
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertTrue(data.endswith(b"\r\n0\r\n\r\n"), data[-80:])  # the last chunk carries no trailer fields

    def test_unary_text_split_at_every_byte(self):
        msg = bytes(range(200)) + b"tollgate"
        encoded = base64.b64encode(frame(msg))
        for cut in range(1, len(encoded)):
            # two padded segments: each half is encoded on its own, as browsers may send
            first, second = frame(msg)[:cut], frame(msg)[cut:]
            body = base64.b64encode(first) + base64.b64encode(second)
            if cut % 9:
                continue  # every ninth cut over the wire; every cut in tests/unit/test_grpcweb.c
            status, h, out = self.post("Echo", body, text=True)
            self.assertEqual(status, 200)
            self.assertEqual(h["content-type"], "application/grpc-web-text+proto")
            frames = parse_frames(b64_decode_segments(out.decode()))
            self.assertEqual(frames[0], (0, msg))
            self.assertEqual(trailers_of(frames)["grpc-status"], "0")
        # the text request arriving in pieces at arbitrary boundaries (chunked upload)
        def pieces():
            for i in range(0, len(encoded), 7):
                yield encoded[i:i + 7]
        r = requests.post(self.gateway.url(SVC + "/Echo"), data=pieces(), timeout=10,
                          headers={"content-type": "application/grpc-web-text"})
        frames = parse_frames(b64_decode_segments(r.text))
        self.assertEqual(frames[0], (0, msg))
        self.assertEqual(r.headers["content-type"], "application/grpc-web-text")

    def test_server_streaming_binary_and_text(self):
        status, h, body = self.post("ServerStream", frame(b"4,1000"))
        frames = parse_frames(body)
        self.assertEqual([f for f in frames[:-1]], [(0, bytes([i]) * 1000) for i in range(4)])
        self.assertEqual(trailers_of(frames)["x-count"], "4")
        status, h, body = self.post("ServerStream", base64.b64encode(frame(b"3,10")), text=True, http2=True)
        frames = parse_frames(b64_decode_segments(body.decode()))
        self.assertEqual([f for f in frames[:-1]], [(0, bytes([i]) * 10) for i in range(3)])
        self.assertEqual(trailers_of(frames)["grpc-status"], "0")

    def test_errors_trailers_only_and_deadline(self):
        status, h, body = self.post("Fail", frame(b"7"))  # PERMISSION_DENIED, trailers-only
        self.assertEqual(status, 200)
        self.assertEqual(h["grpc-status"], "7")
        self.assertEqual(h["grpc-message"], "failed on purpose")
        self.assertEqual(h["content-type"], "application/grpc-web+proto")
        self.assertEqual(body, b"")
        status, h, body = self.post("FailAfterHeaders", frame(b""))  # status after headers: in the frame
        self.assertEqual(trailers_of(parse_frames(body))["grpc-status"], "10")
        status, h, body = self.post("Sleep", frame(b"5"), headers={"grpc-timeout": "200m"})
        self.assertEqual(status, 200)
        st = h.get("grpc-status") or trailers_of(parse_frames(body))["grpc-status"]
        self.assertEqual(st, "4")  # DEADLINE_EXCEEDED

    def test_cors_preflight_for_grpc_web(self):
        r = requests.options(self.gateway.url(SVC + "/Echo"), timeout=10, headers={
            "origin": ORIGIN, "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-grpc-web,x-user-agent"})
        self.assertEqual(r.status_code, 204)
        self.assertEqual(r.headers["access-control-allow-origin"], ORIGIN)
        self.assertIn("x-grpc-web", r.headers["access-control-allow-headers"])
        status, h, body = self.post("Echo", frame(b"cors"), headers={"origin": ORIGIN})
        self.assertEqual(h["access-control-allow-origin"], ORIGIN)
        self.assertIn("grpc-status", h["access-control-expose-headers"])

    def test_json_subtype_keeps_its_form(self):
        """application/grpc-web+json: the call goes upstream as gRPC (the
        grpcio backend answers it) and comes back as grpc-web+json, binary
        framing, trailers as the final frame."""
        h = {"content-type": "application/grpc-web+json", "x-grpc-web": "1", "accept": "application/grpc-web+json"}
        for http2 in (False, True):
            if http2:
                with httpx.Client(http2=True, http1=False, timeout=10) as c:
                    r = c.post(self.gateway.url(SVC + "/Echo"), content=frame(b'{"m":1}'), headers=h)
                status, rh, body = r.status_code, r.headers, r.content
            else:
                r = requests.post(self.gateway.url(SVC + "/Echo"), data=frame(b'{"m":1}'), headers=h, timeout=10)
                status, rh, body = r.status_code, r.headers, r.content
            self.assertEqual(status, 200)
            self.assertEqual(rh["content-type"], "application/grpc-web+json")
            frames = parse_frames(body)
            self.assertEqual(frames[0], (0, b'{"m":1}'))
            self.assertEqual(trailers_of(frames)["grpc-status"], "0")

    def test_bad_base64_is_refused(self):
        status, h, body = self.post("Echo", b"!!!not base64!!!", text=True)
        # a malformed request: INTERNAL, trailers-only, before the upstream
        self.assertEqual(status, 200)
        self.assertEqual((h.get("grpc-status"), h.get("grpc-message")), ("13", "grpc-web-text body is not base64"))
        self.assertEqual(body, b"")


if __name__ == "__main__":
    harness.main()
