"""body_limit, and through it the request-body filter hook: a declared
Content-Length over the route's limit is refused before the body is read;
a chunked body is counted as it flows and cut off with 413 when it passes
the limit; bodies within the limit pass intact."""
import hashlib
import os
import unittest

import requests

import harness


class BodyLimitTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.start_app_and_gateway("limited-body", f"""
routes:
  - name: small
    match: {{ path_prefix: /upload }}
    cluster: app
    filters:
      - body_limit: {{ max: 10KiB }}
""")

    def test_within_limit(self):
        data = os.urandom(8000)
        r = requests.post(self.gateway.url("/upload"), data=data, timeout=5)
        self.assertEqual(r.json(), {"sha256": hashlib.sha256(data).hexdigest(), "size": 8000})

    def test_declared_length_over_limit(self):
        r = requests.post(self.gateway.url("/upload"), data=b"x" * 20000, timeout=5)
        self.assertEqual(r.status_code, 413)
        self.assertEqual(r.json(), {"error": "request body too large", "status": 413})

    def test_chunked_over_limit(self):
        def gen():
            for _ in range(10):
                yield b"y" * 3000
        r = requests.post(self.gateway.url("/upload"), data=gen(), timeout=5)
        self.assertEqual(r.status_code, 413)

    def test_chunked_within_limit(self):
        def gen():
            for _ in range(3):
                yield b"z" * 3000
        r = requests.post(self.gateway.url("/upload"), data=gen(), timeout=5)
        self.assertEqual(r.json()["size"], 9000)


if __name__ == "__main__":
    unittest.main()
