"""headers (edits with per-request variables, on requests and responses)
and cors (preflight answered locally; CORS fields on allowed origins only)
— what FastAPI users would otherwise do with CORSMiddleware."""

import requests

import harness


class HeadersCorsTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.start_app_and_gateway("hdrs", f"""
filters:
  - cors:
      allow_origins: ["https://app.example.com", "*.trusted.test"]
      allow_methods: [GET, POST, DELETE]
      allow_headers: [authorization, content-type]
      expose_headers: [x-served-for]
      allow_credentials: true
      max_age: 5m
  - auth: {{ bearer_tokens: [{{ name: alice, token: t-alice }}] }}
  - headers:
      request:
        set: {{ x-client: "%{{client_address}}", x-who: "user=%{{identity}} route=%{{route}}" }}
        remove: [x-internal]
      response:
        set: {{ x-served-for: "%{{identity}}" }}
        remove: [server]
routes:
  - name: api
    cluster: app
""")

    def test_request_and_response_edits(self):
        r = requests.get(self.gateway.url("/echo/headers"),
                         headers={"Authorization": "Bearer t-alice", "x-internal": "secret"}, timeout=5)
        h = {k: v for k, v in r.json()["headers"]}
        self.assertEqual(h["x-client"], "127.0.0.1")
        self.assertEqual(h["x-who"], "user=alice route=api")
        self.assertNotIn("x-internal", h)
        self.assertEqual(r.headers["x-served-for"], "alice")
        self.assertNotIn("server", r.headers)  # uvicorn's Server header removed

    def test_preflight_answered_locally(self):
        r = requests.options(self.gateway.url("/items"), headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "authorization"}, timeout=5)
        self.assertEqual(r.status_code, 204)
        self.assertEqual(r.content, b"")
        self.assertEqual(r.headers["access-control-allow-origin"], "https://app.example.com")
        self.assertEqual(r.headers["access-control-allow-methods"], "GET, POST, DELETE")
        self.assertEqual(r.headers["access-control-allow-headers"], "authorization, content-type")
        self.assertEqual(r.headers["access-control-allow-credentials"], "true")
        self.assertEqual(r.headers["access-control-max-age"], "300")
        self.assertEqual(r.headers["vary"], "Origin")
        self.assertNotIn("x-upstream", r.headers)  # never reached the app (nor auth: cors runs first)

    def test_preflight_from_unknown_origin_refused(self):
        r = requests.options(self.gateway.url("/items"), headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "GET",
            "Authorization": "Bearer t-alice"}, timeout=5)
        self.assertEqual(r.status_code, 403)
        self.assertEqual(r.json(), {"error": "CORS origin not allowed", "status": 403})

    def test_actual_request_gets_cors_fields(self):
        auth = {"Authorization": "Bearer t-alice"}
        r = requests.get(self.gateway.url("/whoami"), headers={**auth, "Origin": "https://x.trusted.test"}, timeout=5)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers["access-control-allow-origin"], "https://x.trusted.test")
        self.assertEqual(r.headers["access-control-expose-headers"], "x-served-for")
        r = requests.get(self.gateway.url("/whoami"), headers={**auth, "Origin": "https://evil.example"}, timeout=5)
        self.assertEqual(r.status_code, 200)
        self.assertNotIn("access-control-allow-origin", r.headers)
        r = requests.get(self.gateway.url("/whoami"), headers=auth, timeout=5)  # same-origin: untouched
        self.assertNotIn("access-control-allow-origin", r.headers)

    def test_wildcard_origin_keeps_its_scheme(self):
        """"*.trusted.test" admits https subdomains only: a plain-http page
        (anybody's on the path) gets no CORS grant, credentials or not."""
        auth = {"Authorization": "Bearer t-alice"}
        for origin, granted in (("https://a.trusted.test", True), ("http://a.trusted.test", False),
                                ("https://trusted.test", False), ("https://a.trusted.test:8443", False),
                                ("https://a.trusted.test.evil", False), ("ftp://a.trusted.test", False)):
            with self.subTest(origin):
                r = requests.get(self.gateway.url("/whoami"), headers={**auth, "Origin": origin}, timeout=5)
                self.assertEqual(r.headers.get("access-control-allow-origin") == origin, granted, r.headers)
                r = requests.options(self.gateway.url("/items"), headers={
                    "Origin": origin, "Access-Control-Request-Method": "GET", **auth}, timeout=5)
                self.assertEqual(r.status_code, 204 if granted else 403)


if __name__ == "__main__":
    harness.main()
