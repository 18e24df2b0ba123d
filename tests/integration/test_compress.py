"""The compress filter against a real FastAPI upstream, decoded with
Python's own zlib, brotli and zstandard: each algorithm chosen by
Accept-Encoding with q-values and the configured preference; only allowed
content types above min_size; SSE streamed event by event (each one
readable before the next exists); never gRPC, an encoded body, HEAD or
no-transform; Vary added, strong ETags weakened, Content-Length dropped;
over HTTP/1.1 and HTTP/2."""
import os
import socket
import subprocess
import tempfile
import time
import unittest
import zlib

import brotli
import httpx
import requests
import zstandard

import harness

BIG = "/compressible?size=20000"  # a text/plain body that compresses well


def decode(enc, data):
    if enc == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if enc == "br":
        return brotli.decompress(data)
    if enc == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def raw_get(url, accept_encoding, method="GET", headers=None):
    """The body as sent (requests would decode gzip itself)."""
    r = requests.request(method, url, headers={"accept-encoding": accept_encoding, **(headers or {})}, stream=True,
                         timeout=10)
    body = r.raw.read(decode_content=False)
    return r, body


class CompressTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.start_app_and_gateway("compress", """
routes:
  - name: gz
    match: { headers: [{ name: x-route, value: gz }] }
    cluster: app
    filters: [{ compress: { algorithms: [gzip], gzip_level: 9, content_types: [text/*] } }]
  - name: inflate-capped
    match: { path_prefix: /upload, headers: [{ name: x-route, value: capped }] }
    cluster: app
    filters: [{ compress: { decompress_requests: true, max_request_ratio: 100000, max_decompressed_bytes: 1MiB } }]
  - name: inflate
    match: { path_prefix: /upload }
    cluster: app
    filters: [{ compress: { decompress_requests: true, max_request_ratio: 50 } }]
  - name: everything
    match: { headers: [{ name: x-route, value: everything }] }
    cluster: app
    filters: [{ compress: { min_size: 0, content_types: ["application/*", "text/*"] } }]
  - name: low
    match: { headers: [{ name: x-route, value: low }] }
    cluster: app
    filters: [{ compress: { brotli_quality: 0, zstd_level: 1, gzip_level: 1 } }]
  - name: high
    match: { headers: [{ name: x-route, value: high }] }
    cluster: app
    filters: [{ compress: { brotli_quality: 11, zstd_level: 19, gzip_level: 9 } }]
  - name: all
    match: { path_prefix: / }
    cluster: app
    filters: [{ compress: { min_size: 1KiB } }]
""")
        cls.expected = requests.get(f"http://127.0.0.1:{cls.app.port}{BIG}", timeout=10).content

    def test_each_algorithm_by_accept_encoding(self):
        for ae, want in (("gzip", "gzip"), ("br", "br"), ("zstd", "zstd"), ("gzip, br, zstd", "zstd"),
                         ("gzip;q=1, br;q=0.5, zstd;q=0.1", "gzip"), ("br;q=0.9, *;q=0.1", "br"),
                         ("*", "zstd"), ("x-gzip", "gzip"), ("zstd;q=0, gzip", "gzip")):
            r, body = raw_get(self.gateway.url(BIG), ae)
            self.assertEqual(r.status_code, 200)
            self.assertEqual(r.headers.get("content-encoding"), want, ae)
            self.assertNotIn("content-length", r.headers)
            self.assertIn("Accept-Encoding", r.headers.get("vary", ""))
            self.assertLess(len(body), len(self.expected) / 3)
            self.assertEqual(decode(want, body), self.expected, ae)

    def test_levels_are_the_configured_ones(self):
        """brotli_quality and zstd_level reach the encoders: the same body
        at the lowest and the highest setting decodes the same and comes
        out smaller at the highest (gzip's levels 1 and 9 differ by a few
        bytes either way on this text: not a measure)."""
        sizes = {}
        for enc in ("br", "zstd"):
            for route in ("low", "high"):
                r, body = raw_get(self.gateway.url(BIG), enc, headers={"x-route": route})
                self.assertEqual(r.headers.get("content-encoding"), enc)
                self.assertEqual(decode(enc, body), self.expected)
                sizes[enc, route] = len(body)
            self.assertLess(sizes[enc, "high"], sizes[enc, "low"], sizes)

    def test_no_encoding_for_204_and_206(self):
        for code, compressed in ((200, True), (204, False), (206, False)):
            r, body = raw_get(self.gateway.url(f"/status/{code}"), "gzip", headers={"x-route": "everything"})
            self.assertEqual(r.status_code, code)
            self.assertEqual(r.headers.get("content-encoding") == "gzip", compressed, (code, dict(r.headers)))
            if code == 206:
                self.assertEqual(body, b'{"code":206}')  # passed on untouched
            if code == 204:
                self.assertEqual(body, b"")

    def test_identity_when_nothing_acceptable(self):
        for ae in ("identity", "deflate", "gzip;q=0, br;q=0, zstd;q=0", "*;q=0"):
            r, body = raw_get(self.gateway.url(BIG), ae)
            self.assertNotIn("content-encoding", r.headers, ae)
            self.assertEqual(body, self.expected)
            self.assertEqual(r.headers["content-length"], str(len(self.expected)))
            self.assertIn("Accept-Encoding", r.headers.get("vary", ""))  # it could have been encoded
        r = requests.get(self.gateway.url(BIG), headers={"accept-encoding": ""}, timeout=10)
        self.assertNotIn("content-encoding", r.headers)

    def test_small_and_disallowed_types_pass_as_they_are(self):
        r, body = raw_get(self.gateway.url("/compressible?size=100"), "gzip")  # under min_size
        self.assertNotIn("content-encoding", r.headers)
        self.assertEqual(len(body), 100)
        r, body = raw_get(self.gateway.url("/download?size=50000"), "gzip")  # application/octet-stream
        self.assertNotIn("content-encoding", r.headers)
        self.assertEqual(len(body), 50000)
        self.assertNotIn("Accept-Encoding", r.headers.get("vary", ""))

    def test_never_recompress_nor_no_transform_nor_head(self):
        r, body = raw_get(self.gateway.url("/compressible?size=5000&encoded=1"), "gzip, br")  # upstream sent gzip itself
        self.assertEqual(r.headers["content-encoding"], "gzip")
        self.assertEqual(zlib.decompress(body, 16 + zlib.MAX_WBITS), b"x" * 5000)
        r, body = raw_get(self.gateway.url("/compressible?size=5000&no_transform=1"), "gzip")
        self.assertNotIn("content-encoding", r.headers)
        self.assertEqual(len(body), 5000)
        r = requests.head(self.gateway.url(BIG), headers={"accept-encoding": "gzip"}, timeout=10)
        self.assertNotIn("content-encoding", r.headers)

    def test_etag_weakened(self):
        r, body = raw_get(self.gateway.url(BIG + "&etag=1"), "br")
        self.assertEqual(r.headers["content-encoding"], "br")
        self.assertEqual(r.headers["etag"], 'W/"v1"')
        r, body = raw_get(self.gateway.url(BIG + "&etag=1"), "identity")
        self.assertEqual(r.headers["etag"], '"v1"')

    def test_route_settings(self):
        r, body = raw_get(self.gateway.url(BIG), "zstd, br, gzip", headers={"x-route": "gz"})
        self.assertEqual(r.headers["content-encoding"], "gzip")  # the only one offered there
        self.assertEqual(decode("gzip", body), self.expected)
        r, body = raw_get(self.gateway.url("/items"), "gzip", headers={"x-route": "gz"})  # JSON: not in its list
        self.assertNotIn("content-encoding", r.headers)

    def test_sse_is_streamed_event_by_event(self):
        """Each event is decodable on its own before the next one is made."""
        for enc in ("gzip", "br", "zstd"):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            s.sendall(f"GET /sse?n=3&delay=0.5 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {enc}\r\n\r\n".encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, rest = buf.split(b"\r\n\r\n", 1)
            self.assertIn(f"content-encoding: {enc}".encode(), head.lower())
            self.assertIn(b"transfer-encoding: chunked", head.lower())
            dec = {"gzip": zlib.decompressobj(16 + zlib.MAX_WBITS), "br": brotli.Decompressor(),
                   "zstd": zstandard.ZstdDecompressor().decompressobj()}[enc]
            text, raw, t0 = b"", rest, time.monotonic()
            seen_first_at = None
            while b"id: 2" not in text and time.monotonic() - t0 < 10:
                # de-chunk what has arrived
                while True:
                    if b"\r\n" not in raw:
                        break
                    size_line, after = raw.split(b"\r\n", 1)
                    size = int(size_line, 16)
                    if len(after) < size + 2:
                        break
                    chunk, raw = after[:size], after[size + 2:]
                    text += dec.process(chunk) if enc == "br" else dec.decompress(chunk)
                if b"id: 0" in text and seen_first_at is None:
                    seen_first_at = time.monotonic()
                    self.assertNotIn(b"id: 1", text)  # the first arrived alone, half a second early
                if b"id: 2" in text:
                    break
                raw += s.recv(65536)
            s.close()
            self.assertIn(b"id: 2", text, enc)
            self.assertIsNotNone(seen_first_at)

    def test_http2(self):
        with httpx.Client(http2=True, http1=False, timeout=10) as c:
            r = c.get(self.gateway.url(BIG), headers={"accept-encoding": "br"})
            self.assertEqual(r.http_version, "HTTP/2")
            self.assertEqual(r.headers["content-encoding"], "br")
            self.assertNotIn("content-length", r.headers)
            self.assertEqual(r.content, self.expected)  # httpx decodes br itself

    def test_grpc_untouched(self):
        """gRPC frames its own messages (and compresses them itself): a gRPC
        response passes as it is even where every application/* type is
        compressed."""
        hdr = {"x-route": "everything"}
        r, body = raw_get(self.gateway.url(BIG + "&ctype=application/grpc"), "gzip", headers=hdr)
        self.assertEqual(r.headers["content-type"], "application/grpc")
        self.assertNotIn("content-encoding", r.headers)
        self.assertEqual(body, self.expected)
        r, body = raw_get(self.gateway.url(BIG + "&ctype=application/octet-stream"), "gzip", headers=hdr)
        self.assertEqual(r.headers["content-encoding"], "gzip")  # the same route does compress the rest


    # decompress_requests (route "inflate"): the upstream gets the body decompressed

    def upload(self, body, encoding, chunked=False, headers=None):
        data = (body[i:i + 700] for i in range(0, len(body), 700)) if chunked else body
        return requests.post(self.gateway.url("/upload"), data=data, timeout=60,
                             headers=dict({"content-encoding": encoding} if encoding else {}, **(headers or {})))

    def uploads(self):
        return requests.get(f"http://127.0.0.1:{self.app.port}/stats", timeout=10).json()["uploads"]

    @staticmethod
    def pack(enc, *parts):
        """One compressed stream of the parts, fast settings."""
        if enc == "gzip":
            co = zlib.compressobj(1, zlib.DEFLATED, 31)
            return b"".join(co.compress(p) for p in parts) + co.flush()
        if enc == "br":
            co = brotli.Compressor(quality=1)
            return b"".join(co.process(p) for p in parts) + co.finish()
        co = zstandard.ZstdCompressor(level=1).compressobj()
        return b"".join(co.compress(p) for p in parts) + co.flush()

    def test_incompressible_start_earns_no_allowance(self):
        """Regression (#26): the ratio was checked on the totals, so 1 MiB
        of incompressible bytes (ratio 50) earned 50 MiB of allowance that
        the next small piece could spend at once: a 30 MiB bomb after it
        reached the upstream whole. The ratio now holds for each piece as
        it arrives (a piece is at most 128 KiB): the bomb is refused, for
        gzip, br and zstd alike, and the upstream never gets a body."""
        prefix = os.urandom(1024 * 1024)
        for enc in ("gzip", "br", "zstd"):
            with self.subTest(enc):
                body = self.pack(enc, prefix, b"\0" * (30 * 1024 * 1024))
                before = self.uploads()
                r = self.upload(body, enc)
                self.assertEqual(r.status_code, 413, r.text[:200])
                self.assertEqual(self.uploads(), before)
                # the same prefix followed by ordinary data passes
                ok = self.pack(enc, prefix, b"x" * 4096)
                r = self.upload(ok, enc)
                self.assertEqual(r.status_code, 200, r.text[:200])
                self.assertEqual(r.json()["size"], len(prefix) + 4096)

    def test_max_decompressed_bytes(self):
        """An absolute cap whatever the ratio (and the body limit) allow."""
        for enc in ("gzip", "br", "zstd"):
            with self.subTest(enc):
                before = self.uploads()
                r = self.upload(self.pack(enc, b"a" * (2 * 1024 * 1024)), enc, headers={"x-route": "capped"})
                self.assertEqual(r.status_code, 413, r.text[:200])
                self.assertIn("max_decompressed_bytes", r.text)
                self.assertEqual(self.uploads(), before)
                r = self.upload(self.pack(enc, b"a" * (1024 * 1024 - 1)), enc, headers={"x-route": "capped"})
                self.assertEqual(r.status_code, 200, r.text[:200])

    def test_zstd_window_is_bounded(self):
        """A zstd frame that needs a window over 8 MiB (decoder memory the
        client would choose) is refused as invalid."""
        params = zstandard.ZstdCompressionParameters.from_level(1, window_log=27)
        co = zstandard.ZstdCompressor(compression_params=params).compressobj()
        body = co.compress(b"w" * 1000) + co.flush()
        r = self.upload(body, "zstd")
        self.assertEqual(r.status_code, 400, r.text[:200])

    def test_each_encoding_is_inflated(self):
        import hashlib
        plain = b"".join(b"record %d: something worth compressing\n" % i for i in range(5000))
        for enc, packed in (("gzip", zlib.compress(plain, 6, 31)), ("br", brotli.compress(plain)),
                            ("zstd", zstandard.ZstdCompressor().compress(plain))):
            for chunked in (False, True):
                r = self.upload(packed, enc, chunked)
                self.assertEqual(r.status_code, 200, (enc, r.text))
                self.assertEqual(r.json(), {"sha256": hashlib.sha256(plain).hexdigest(), "size": len(plain)}, enc)

    def test_zip_bomb_is_refused_as_it_streams(self):
        co = zlib.compressobj(9, zlib.DEFLATED, 31)
        bomb = co.compress(b"\0" * (50 * 1024 * 1024)) + co.flush()  # 50 MiB of zeros, about 50 KiB packed
        before = requests.get(f"http://127.0.0.1:{self.app.port}/stats", timeout=10).json()["uploads"]
        r = self.upload(bomb, "gzip", chunked=True)
        self.assertEqual(r.status_code, 413)
        self.assertIn("max_request_ratio", r.text)
        after = requests.get(f"http://127.0.0.1:{self.app.port}/stats", timeout=10).json()["uploads"]
        self.assertEqual(after, before)  # the upstream never got a whole body

    def test_corrupt_and_truncated(self):
        co = zlib.compressobj(6, zlib.DEFLATED, 31)
        packed = co.compress(b"hello " * 1000) + co.flush()
        self.assertEqual(self.upload(b"not gzip at all", "gzip").status_code, 400)
        r = self.upload(packed[:len(packed) // 2], "gzip")
        self.assertEqual(r.status_code, 400)
        self.assertIn("truncated", r.text)
        self.assertEqual(self.upload(packed + b"trailing junk", "gzip").status_code, 400)
        # identity and unknown codings pass as they are
        r = self.upload(b"plain body", None)
        self.assertEqual(r.json()["size"], 10)
        r = self.upload(b"xyz", "deflate-unknown")
        self.assertEqual(r.json()["size"], 3)


class CompressNegotiationTest(unittest.TestCase):
    def test_config_errors(self):
        d = tempfile.mkdtemp(prefix="tg-compress-")
        p = os.path.join(d, "t.yaml")
        with open(p, "w") as f:
            f.write("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\n"
                    "filters: [{ compress: { algorithms: [gzip, lz4], gzip_level: 12 } }]\n")
        r = subprocess.run([harness.BIN, "-t", "-c", p], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("algorithms: 'lz4' is not one of zstd, br, gzip", r.stderr)
        self.assertIn("gzip_level: '12' is not an integer in [1, 9]", r.stderr)


if __name__ == "__main__":
    harness.main()
