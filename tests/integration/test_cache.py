"""The cache filter against a FastAPI upstream that counts its calls and
answers with the caching headers each test names (apps/app.py /cached):
one case per rule of RFC 9111 a shared cache follows (what may be stored,
freshness from s-maxage / max-age / Expires and Age, Vary, credentials,
revalidation with ETag and Last-Modified, the client's conditions and
ranges answered from an entry, stale-while-revalidate and stale-if-error,
the request's own directives, unsafe methods invalidating), collapsed
misses counted at the upstream, purging from the admin listener, the
memory cap under a flood of keys, Cache-Status (RFC 9211) and the metrics;
the main cases over HTTP/1.1 and HTTP/2.

Freshness is never raced: a fresh entry lives for 600 s, a stale one is
made with max-age=1 and waited past; concurrency is synchronised on the
upstream's gates, never on sleeps."""
import concurrent.futures
import json
import os
import socket
import time
import unittest
import urllib.parse
import urllib.request

import httpx

import harness

FRESH = "max-age%3D600"


def cc(s):
    return urllib.parse.quote(s, safe="")


class Client:
    def __init__(self, port, h2):
        self.port = port
        self.h2 = h2
        self.c = httpx.Client(http2=h2, http1=not h2, timeout=20)

    def close(self):
        self.c.close()

    def req(self, method, path, headers=None):
        r = self.c.request(method, f"http://127.0.0.1:{self.port}{path}", headers=headers or {})
        assert r.http_version == ("HTTP/2" if self.h2 else "HTTP/1.1"), r.http_version
        return r


def app_state(app, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{app.port}/cached-state/{name}", timeout=10) as r:
        return json.loads(r.read())


def app_set(app, name, **kw):
    q = urllib.parse.urlencode(kw)
    with urllib.request.urlopen(f"http://127.0.0.1:{app.port}/cached-set/{name}?{q}", timeout=10) as r:
        r.read()


def small_quarantine():
    """A sanitizer build keeps freed memory in quarantine: kept small, RSS
    tells what the gateway holds."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=1"}


def wait_stale():
    """Past a max-age=1 entry's freshness (a lower bound: never raced)."""
    time.sleep(2.2)


CONFIG = """
admin: {{ listen: 127.0.0.1:{admin} }}
routes:
  - name: limited
    match: {{ path_prefix: /cached/rl- }}
    cluster: app
    filters:
      - rate_limit: {{ key: "header:x-client", limit: 3, window: 1m }}
      - cache: {{ zone: rl }}
  - name: compressed
    match: {{ path_prefix: /cached/gz- }}
    cluster: app
    filters:
      - compress: {{ min_size: 0, content_types: [text/*] }}
      - cache: {{ zone: gz }}
  - name: sorted
    match: {{ path_prefix: /cached/q- }}
    cluster: app
    filters: [{{ cache: {{ zone: q, sort_query: true, ignore_query_params: [utm_source, cc] }} }}]
  - name: small
    match: {{ path_prefix: /cached/small- }}
    cluster: app
    filters: [{{ cache: {{ zone: small, max_size: 256KiB, max_object_size: 16KiB }} }}]
  - name: impatient
    match: {{ path_prefix: /cached/impatient- }}
    cluster: app
    filters: [{{ cache: {{ zone: impatient, collapse_timeout: 200ms }} }}]
  - name: dying
    match: {{ path_prefix: /cached/dying- }}
    cluster: dying
    filters: [{{ cache: {{ zone: dying }} }}]
  - name: cached
    match: {{ path_prefix: /cached/ }}
    cluster: app
    filters: [{{ cache: {{ max_size: 8MiB, max_object_size: 256KiB, collapse_timeout: 60s }} }}]
  - name: rest
    cluster: app
"""


class CacheRules:
    """The RFC's rules, run over HTTP/1.1 (CacheTest) and HTTP/2 (CacheH2Test)."""

    H2 = False

    @classmethod
    def setUpClass(cls):
        cls.admin, cls.port = harness.free_port(), harness.free_port()
        cls.app = harness.start_app("cache")
        cls.dying = harness.start_app("dying")
        cls.procs = [cls.app, cls.dying]
        cls.gateway = harness.Gateway(
            f"workers: 2\nlisteners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]\n"
            f"clusters:\n  - {{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}\n"
            f"  - {{ name: dying, endpoints: [127.0.0.1:{cls.dying.port}] }}\n" + CONFIG.format(admin=cls.admin),
            port=cls.port, env_extra=small_quarantine())
        cls.client = Client(cls.port, cls.H2)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.finish()

    def name(self, tag=""):
        return f"{'h2' if self.H2 else 'h1'}-{self._testMethodName}{tag}"

    def get(self, path, headers=None, method="GET"):
        return self.client.req(method, path, headers)

    def calls(self, name):
        return app_state(self.app, name)["calls"]

    def status_of(self, r):
        return r.headers.get("cache-status", "")

    # ---- what is stored ----

    def test_fresh_response_is_a_hit(self):
        n = self.name()
        p = f"/cached/{n}?cc={FRESH}"
        r1 = self.get(p)
        self.assertEqual(r1.status_code, 200)
        self.assertIn("fwd=uri-miss", self.status_of(r1))
        self.assertIn("stored", self.status_of(r1))
        r2 = self.get(p)
        self.assertEqual(r2.status_code, 200)
        self.assertEqual(r2.text, r1.text)
        self.assertTrue(self.status_of(r2).startswith("tollgate; hit; ttl="), self.status_of(r2))
        self.assertGreaterEqual(int(r2.headers["age"]), 0)
        self.assertEqual(r2.headers["content-length"], str(len(r1.content)))
        self.assertEqual(self.calls(n), 1)

    def test_not_stored_no_store_private_set_cookie_vary_star(self):
        for i, q in enumerate(["cc=no-store", "cc=private", f"cc={FRESH}&cookie=1", f"cc={FRESH}&vary=*",
                               f"cc={cc('no-store, max-age=600')}", "cc=" + cc("private, max-age=600")]):
            n = self.name(str(i))
            self.get(f"/cached/{n}?{q}")
            r = self.get(f"/cached/{n}?{q}")
            self.assertNotIn("hit", self.status_of(r), q)
            self.assertEqual(self.calls(n), 2, q)

    def test_must_understand_stores_despite_no_store(self):
        n = self.name()
        q = "cc=" + cc("no-store, must-understand, max-age=600")
        self.get(f"/cached/{n}?{q}")
        self.assertIn("hit", self.status_of(self.get(f"/cached/{n}?{q}")))
        self.assertEqual(self.calls(n), 1)

    def test_no_cache_is_stored_and_revalidated_each_time(self):
        n = self.name()
        p = f"/cached/{n}?cc=no-cache&etag=v1"
        self.get(p)
        r = self.get(p)
        self.assertEqual(r.status_code, 200)
        self.assertIn("fwd-status=304", self.status_of(r))
        self.assertEqual(self.calls(n), 2)
        self.assertEqual(app_state(self.app, n)["seen"][-1].get("if-none-match"), '"v1"')
        self.assertIn("call=1", r.text)  # the stored body

    def test_authorization_needs_public_s_maxage_or_must_revalidate(self):
        auth = {"authorization": "Bearer secret"}
        cases = [(FRESH, 2), (cc("public, max-age=600"), 1), ("s-maxage%3D600", 1),
                 (cc("must-revalidate, max-age=600"), 1)]
        for i, (q, calls) in enumerate(cases):
            n = self.name(str(i))
            self.get(f"/cached/{n}?cc={q}", auth)
            self.get(f"/cached/{n}?cc={q}", auth)
            self.assertEqual(self.calls(n), calls, q)

    def test_s_maxage_wins_over_max_age(self):
        n = self.name()
        p = f"/cached/{n}?cc={cc('max-age=0, s-maxage=600')}"
        self.get(p)
        self.assertIn("hit", self.status_of(self.get(p)))
        self.assertEqual(self.calls(n), 1)

    def test_expires(self):
        future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3600))
        n = self.name("future")
        p = f"/cached/{n}?expires={cc(future)}"
        self.get(p)
        self.assertIn("hit", self.status_of(self.get(p)))
        self.assertEqual(self.calls(n), 1)
        n = self.name("invalid")  # an invalid Expires is in the past: stale at once
        p = f"/cached/{n}?expires=0&etag=x"
        self.get(p)
        self.assertIn("fwd=stale", self.status_of(self.get(p)))
        self.assertEqual(self.calls(n), 2)

    def test_age_from_upstream_counts(self):
        n = self.name("young")
        p = f"/cached/{n}?cc={FRESH}&age=590"
        self.get(p)
        r = self.get(p)
        self.assertIn("hit", self.status_of(r))
        self.assertGreaterEqual(int(r.headers["age"]), 590)
        ttl = int(self.status_of(r).split("ttl=")[1])
        self.assertLessEqual(ttl, 10)
        n = self.name("old")  # older than its max-age when it came: never fresh
        p = f"/cached/{n}?cc={FRESH}&age=700&etag=y"
        self.get(p)
        self.assertNotIn("hit", self.status_of(self.get(p)))
        self.assertEqual(self.calls(n), 2)

    def test_vary_one_entry_per_variant(self):
        n = self.name()
        p = f"/cached/{n}?cc={FRESH}&vary=accept-language"
        en = self.get(p, {"accept-language": "en"})
        fr = self.get(p, {"accept-language": "fr"})
        self.assertIn("accept-language=en", en.text)
        self.assertIn("accept-language=fr", fr.text)
        for lang, first in (("en", en), ("fr", fr)):
            r = self.get(p, {"accept-language": lang})
            self.assertIn("hit", self.status_of(r))
            self.assertEqual(r.text, first.text)
        r = self.get(p)  # no Accept-Language: a third variant
        self.assertIn("fwd=uri-miss", self.status_of(r))
        self.assertEqual(self.calls(n), 3)

    def test_head_answered_from_a_get_entry(self):
        n = self.name()
        p = f"/cached/{n}?cc={FRESH}&size=1000"
        body = self.get(p).content
        r = self.get(p, method="HEAD")
        self.assertEqual(r.status_code, 200)
        self.assertIn("hit", self.status_of(r))
        self.assertEqual(r.headers["content-length"], str(len(body)))
        self.assertEqual(r.content, b"")
        self.assertEqual(self.calls(n), 1)

    def test_chunked_body_is_stored_whole(self):
        n = self.name()
        p = f"/cached/{n}?cc={FRESH}&size=20000&chunked=1"
        first = self.get(p)
        r = self.get(p)
        self.assertIn("hit", self.status_of(r))
        self.assertEqual(r.content, first.content)
        self.assertEqual(len(r.content), 20000)
        self.assertEqual(r.headers["content-length"], "20000")
        self.assertEqual(self.calls(n), 1)

    def test_larger_than_max_object_size_passes(self):
        n = self.name()
        p = f"/cached/{n}?cc={FRESH}&size={300 * 1024}"  # the route's max_object_size is 256KiB
        self.get(p)
        r = self.get(p)
        self.assertEqual(len(r.content), 300 * 1024)
        self.assertNotIn("hit", self.status_of(r))
        self.assertEqual(self.calls(n), 2)

    # ---- the key ----

    def test_query_sorted_and_parameters_ignored(self):
        n = self.name()
        self.get(f"/cached/q-{n}?a=1&b=2&cc={FRESH}")
        for q in (f"b=2&a=1&cc={FRESH}", f"a=1&utm_source=x&b=2&cc={FRESH}"):
            self.assertIn("hit", self.status_of(self.get(f"/cached/q-{n}?{q}")), q)
        self.assertNotIn("hit", self.status_of(self.get(f"/cached/q-{n}?a=2&b=2&cc={FRESH}")))
        self.assertEqual(self.calls(f"q-{n}"), 2)
        # the default route keeps the query as it came
        self.get(f"/cached/{n}?a=1&b=2&cc={FRESH}")
        self.assertNotIn("hit", self.status_of(self.get(f"/cached/{n}?b=2&a=1&cc={FRESH}")))

    # ---- revalidation ----

    def test_stale_entry_revalidated_with_etag(self):
        n = self.name()
        p = f"/cached/{n}?cc=max-age%3D1&etag=e1"
        first = self.get(p)
        wait_stale()
        r = self.get(p)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.text, first.text)
        self.assertIn("fwd=stale; fwd-status=304", self.status_of(r))
        self.assertEqual(app_state(self.app, n)["seen"][-1].get("if-none-match"), '"e1"')
        self.assertEqual(self.calls(n), 2)
        self.assertIn("call=1", self.get(p).text)  # freshened: the stored body still

    def test_stale_entry_revalidated_with_last_modified(self):
        n = self.name()
        lm = "Tue, 01 Dec 2026 10:00:00 GMT"
        p = f"/cached/{n}?cc=max-age%3D1&lm={cc(lm)}"
        self.get(p)
        wait_stale()
        r = self.get(p)
        self.assertIn("fwd-status=304", self.status_of(r))
        self.assertEqual(app_state(self.app, n)["seen"][-1].get("if-modified-since"), lm)

    def test_changed_resource_replaces_the_entry(self):
        n = self.name()
        p = f"/cached/{n}?cc=max-age%3D1&etag=e1"
        self.get(p)
        wait_stale()
        app_set(self.app, n, etag="e2")
        r = self.get(p)
        self.assertIn("call=2", r.text)
        self.assertEqual(r.headers["etag"], '"e2"')
        self.assertIn("stored", self.status_of(r))
        # the new one is what a revalidation now asks about
        wait_stale()
        self.get(p)
        self.assertEqual(app_state(self.app, n)["seen"][-1].get("if-none-match"), '"e2"')

    def test_client_conditions_answered_from_the_entry(self):
        n = self.name()
        lm = "Tue, 01 Dec 2026 10:00:00 GMT"
        p = f"/cached/{n}?cc={FRESH}&etag=t1&lm={cc(lm)}"
        self.get(p)
        r = self.get(p, {"if-none-match": 'W/"t1"'})
        self.assertEqual(r.status_code, 304)
        self.assertEqual(r.content, b"")
        self.assertEqual(r.headers["etag"], '"t1"')
        self.assertNotIn("content-type", r.headers)
        self.assertEqual(self.get(p, {"if-none-match": '"other"'}).status_code, 200)
        self.assertEqual(self.get(p, {"if-modified-since": lm}).status_code, 304)
        self.assertEqual(self.get(p, {"if-modified-since": "Mon, 30 Nov 2026 10:00:00 GMT"}).status_code, 200)
        self.assertEqual(self.calls(n), 1)

    def test_ranges_from_a_full_entry(self):
        n = self.name()
        p = f"/cached/{n}?cc={FRESH}&etag=r1&size=1000"
        full = self.get(p).content
        r = self.get(p, {"range": "bytes=10-19"})
        self.assertEqual(r.status_code, 206)
        self.assertEqual(r.content, full[10:20])
        self.assertEqual(r.headers["content-range"], "bytes 10-19/1000")
        r = self.get(p, {"range": "bytes=-5"})
        self.assertEqual((r.status_code, r.content), (206, full[-5:]))
        r = self.get(p, {"range": "bytes=990-"})
        self.assertEqual((r.status_code, r.content), (206, full[990:]))
        r = self.get(p, {"range": "bytes=5000-"})
        self.assertEqual(r.status_code, 416)
        self.assertEqual(r.headers["content-range"], "bytes */1000")
        r = self.get(p, {"range": "bytes=0-1,5-6"})  # several ranges: the whole representation
        self.assertEqual((r.status_code, r.content), (200, full))
        r = self.get(p, {"range": "bytes=0-1", "if-range": '"other"'})
        self.assertEqual((r.status_code, r.content), (200, full))
        r = self.get(p, {"range": "bytes=0-1", "if-range": '"r1"'})
        self.assertEqual((r.status_code, r.content), (206, full[:2]))
        self.assertEqual(self.calls(n), 1)

    # ---- serving stale ----

    def test_stale_while_revalidate_answers_at_once_and_refreshes(self):
        n = self.name()
        p = f"/cached/{n}?cc={cc('max-age=1, stale-while-revalidate=600')}&etag=s1"
        self.get(p)
        wait_stale()
        app_set(self.app, n, etag="s2")
        r = self.get(p)
        self.assertEqual(r.status_code, 200)
        self.assertIn("call=1", r.text)  # the stale entry, at once
        self.assertIn("hit; ttl=-", self.status_of(r))
        harness.wait_until(lambda: self.calls(n) == 2, what="the background revalidation")
        self.assertEqual(app_state(self.app, n)["seen"][-1].get("if-none-match"), '"s1"')
        # the refreshed entry answers from now on (served fresh, or stale
        # again while it is revalidated: max-age=1 may be past already)
        r = harness.wait_until(lambda: (lambda x: x if "call=2" in x.text else None)(self.get(p)),
                               what="the refreshed entry")
        self.assertEqual(r.headers["etag"], '"s2"')
        self.assertIn("hit", self.status_of(r))

    def test_stale_if_error_on_5xx(self):
        n = self.name()
        p = f"/cached/{n}?cc={cc('max-age=1, stale-if-error=600')}"
        first = self.get(p)
        wait_stale()
        app_set(self.app, n, fail=503)
        r = self.get(p)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.text, first.text)
        self.assertIn("fwd=stale; fwd-status=503", self.status_of(r))
        app_set(self.app, n, fail=0)

    def test_must_revalidate_never_served_stale(self):
        n = self.name()
        p = f"/cached/{n}?cc={cc('max-age=1, must-revalidate, stale-if-error=600')}"
        self.get(p)
        wait_stale()
        app_set(self.app, n, fail=503)
        self.assertEqual(self.get(p).status_code, 503)
        self.assertEqual(self.get(p, {"cache-control": "max-stale=600"}).status_code, 503)
        app_set(self.app, n, fail=0)

    # ---- the request's directives ----

    def test_request_no_cache_and_max_age_0_go_upstream(self):
        n = self.name()
        p = f"/cached/{n}?cc={FRESH}&etag=n1"
        self.get(p)
        for h in ({"cache-control": "no-cache"}, {"pragma": "no-cache"}, {"cache-control": "max-age=0"}):
            r = self.get(p, h)
            self.assertEqual(r.status_code, 200)
            self.assertIn("call=1", r.text)  # revalidated: the stored body
            self.assertIn("fwd-status=304", self.status_of(r))
        self.assertEqual(self.calls(n), 4)

    def test_request_no_store_is_not_stored(self):
        n = self.name()
        p = f"/cached/{n}?cc={FRESH}"
        self.get(p, {"cache-control": "no-store"})
        self.assertNotIn("hit", self.status_of(self.get(p)))
        self.assertEqual(self.calls(n), 2)

    def test_request_max_stale_and_min_fresh(self):
        n = self.name()
        p = f"/cached/{n}?cc=max-age%3D1"
        self.get(p)
        wait_stale()
        r = self.get(p, {"cache-control": "max-stale=600"})
        self.assertIn("hit; ttl=-", self.status_of(r))
        self.assertEqual(self.calls(n), 1)
        n = self.name("fresh")
        p = f"/cached/{n}?cc={FRESH}"
        self.get(p)
        self.assertNotIn("hit", self.status_of(self.get(p, {"cache-control": "min-fresh=3600"})))
        self.assertEqual(self.calls(n), 2)

    def test_only_if_cached(self):
        n = self.name()
        r = self.get(f"/cached/{n}?cc={FRESH}", {"cache-control": "only-if-cached"})
        self.assertEqual(r.status_code, 504)
        self.assertEqual(self.calls(n), 0)
        self.get(f"/cached/{n}?cc={FRESH}")
        r = self.get(f"/cached/{n}?cc={FRESH}", {"cache-control": "only-if-cached"})
        self.assertEqual(r.status_code, 200)

    # ---- invalidation ----

    def test_unsafe_method_invalidates(self):
        n = self.name()
        p = f"/cached/{n}?cc={FRESH}"
        self.get(p)
        self.assertIn("hit", self.status_of(self.get(p)))
        r = self.get(p, method="POST")
        self.assertIn("fwd=method", self.status_of(r))
        self.assertIn("fwd=uri-miss", self.status_of(self.get(p)))
        self.assertEqual(self.calls(n), 3)

    # ---- composition ----

    def test_hit_compressed_per_request(self):
        n = self.name()
        p = f"/cached/gz-{n}?cc={FRESH}&size=5000"
        plain = self.get(p, {"accept-encoding": "identity"})
        self.assertNotIn("content-encoding", plain.headers)
        gz = self.get(p, {"accept-encoding": "gzip"})
        self.assertEqual(gz.headers.get("content-encoding"), "gzip")
        self.assertIn("hit", self.status_of(gz))
        self.assertEqual(gz.content, plain.content)  # httpx decodes it
        self.assertEqual(self.calls(f"gz-{n}"), 1)

    def test_rate_limit_before_the_cache_counts_hits(self):
        n = self.name()
        p = f"/cached/rl-{n}?cc={FRESH}"
        statuses = [self.get(p, {"x-client": n}).status_code for _ in range(4)]
        self.assertEqual(statuses[:3], [200, 200, 200])
        self.assertEqual(statuses[3], 429)
        self.assertEqual(self.calls(f"rl-{n}"), 1)


class CacheTest(CacheRules, harness.GatewayTest):
    def admin_post(self, path, headers=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}{path}", method="POST", data=b"",
                                     headers=headers if headers is not None else {"x-tollgate-admin": "1"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def test_large_hit_to_a_slow_reader_and_pipelined_hits(self):
        """A hit goes out as one write when the socket takes it; what it
        does not take waits by reference. A 200 KB hit to a reader that
        takes 4 KB at a time arrives whole, and hits pipelined on one
        connection come back in order, each whole."""
        n = self.name()
        p = f"/cached/{n}?cc={FRESH}&size=200000"
        first = self.get(p)
        self.assertEqual(len(first.content), 200000)
        host = f"127.0.0.1:{self.port}"
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET {p} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            time.sleep(0.3)  # the gateway meets a full socket
            got = b""
            deadline = time.monotonic() + 30
            while b"\r\n\r\n" not in got or len(got) < got.index(b"\r\n\r\n") + 4 + 200000:
                self.assertLess(time.monotonic(), deadline, "the hit did not arrive whole")
                chunk = s.recv(4096)
                self.assertTrue(chunk, "connection closed mid-body")
                got += chunk
                time.sleep(0.001)
            head, body = got.split(b"\r\n\r\n", 1)
            self.assertIn(b"hit", head)
            self.assertEqual(body, first.content)
            # three hits pipelined, then the large one again, in one write
            names = [f"{n}-p{i}" for i in range(3)]
            for m in names:
                self.get(f"/cached/{m}?cc={FRESH}")
            reqs = "".join(f"GET /cached/{m}?cc={FRESH} HTTP/1.1\r\nHost: {host}\r\n\r\n" for m in names)
            reqs += f"GET {p} HTTP/1.1\r\nHost: {host}\r\n\r\n"
            s.sendall(reqs.encode())
            f = s.makefile("rb")
            for m in names + [None]:
                status = f.readline()
                self.assertIn(b" 200 ", status)
                length, cs = None, b""
                while True:
                    line = f.readline()
                    if line in (b"\r\n", b""):
                        break
                    k, _, v = line.partition(b":")
                    if k.lower() == b"content-length":
                        length = int(v)
                    if k.lower() == b"cache-status":
                        cs = v
                self.assertIn(b"hit", cs)
                body = f.read(length)
                if m is None:
                    self.assertEqual(body, first.content)
                else:
                    self.assertTrue(body.startswith(f"{m} call=1".encode()), body[:40])
            for m in names:
                self.assertEqual(self.calls(m), 1)
        self.assertEqual(self.calls(n), 1)

    def test_concurrent_misses_make_one_upstream_call(self):
        n = self.name()
        p = f"/cached/{n}?cc={FRESH}&gate={n}"
        url = f"http://127.0.0.1:{self.port}{p}"

        def one(_):
            with httpx.Client(timeout=60) as c:
                r = c.get(url)
                return r.status_code, r.text, r.headers.get("cache-status", "")

        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            futs = [pool.submit(one, i) for i in range(100)]
            harness.wait_until(lambda: app_state(self.app, n)["held"] == 1, what="the first request upstream")
            harness.wait_until(
                lambda: harness.metric_or(harness.scrape(self.admin), "tollgate_cache_waiting", zone="default") == 99,
                what="99 requests waiting on the first", timeout=60)
            urllib.request.urlopen(f"http://127.0.0.1:{self.app.port}/release?gate={n}", timeout=10).read()
            results = [f.result() for f in futs]
        self.assertEqual({s for s, _, _ in results}, {200})
        self.assertEqual(len({t for _, t, _ in results}), 1)
        self.assertEqual(self.calls(n), 1)
        self.assertEqual(sum("hit" in cs for _, _, cs in results), 99)
        m = harness.scrape(self.admin)
        self.assertGreaterEqual(harness.metric(m, "tollgate_cache_requests_total", route="cached", result="collapsed"), 99)

    def test_collapse_timeout_lets_waiters_go(self):
        n = self.name()
        url = f"http://127.0.0.1:{self.port}/cached/impatient-{n}?cc={FRESH}&gate=impatient-{n}"
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(lambda: httpx.get(url, timeout=60))
            harness.wait_until(lambda: app_state(self.app, f"impatient-{n}")["held"] == 1, what="the first")
            second = pool.submit(lambda: httpx.get(url, timeout=60))
            # the second waits 200ms on the first, then goes upstream itself
            harness.wait_until(lambda: app_state(self.app, f"impatient-{n}")["held"] == 2, what="the second")
            urllib.request.urlopen(f"http://127.0.0.1:{self.app.port}/release?gate=impatient-{n}", timeout=10).read()
            self.assertEqual((first.result().status_code, second.result().status_code), (200, 200))

    def test_stale_if_error_with_the_upstream_killed(self):
        n = self.name()
        p = f"/cached/dying-{n}?cc={cc('max-age=1, stale-if-error=600')}"
        q = f"/cached/dying-{n}x?cc=max-age%3D1"
        first = self.get(p)
        self.get(q)
        wait_stale()
        self.dying.stop()
        r = self.get(p)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.text, first.text)
        self.assertRegex(self.status_of(r), "fwd=stale; fwd-status=50[23]")  # refused, or no endpoint left
        r = self.get(q)
        self.assertIn(r.status_code, (502, 503))  # no stale-if-error: the error, which says so
        self.assertEqual(self.status_of(r), "tollgate; fwd=stale; detail=no-answer", (r.status_code, r.headers, r.text))

    def test_purge_by_key_and_prefix(self):
        n = self.name()
        for i in range(3):
            self.get(f"/cached/{n}-{i}?cc={FRESH}")
        host = f"127.0.0.1:{self.port}"
        key = urllib.parse.quote(f"{host}/cached/{n}-0?cc={FRESH}", safe="")  # the query as it came
        self.assertEqual(self.admin_post(f"/-/cache/purge?key={key}", {})[0], 403)
        self.assertEqual(self.admin_post(f"/-/cache/purge?key={key}"), (200, {"purged": 1}))
        self.assertIn("fwd=uri-miss", self.status_of(self.get(f"/cached/{n}-0?cc={FRESH}")))
        self.assertIn("hit", self.status_of(self.get(f"/cached/{n}-1?cc={FRESH}")))
        status, body = self.admin_post(f"/-/cache/purge?prefix=/cached/{n}-&host={host}")
        self.assertEqual((status, body["purged"]), (200, 3))
        self.assertIn("fwd=uri-miss", self.status_of(self.get(f"/cached/{n}-1?cc={FRESH}")))
        self.assertEqual(self.admin_post("/-/cache/purge")[0], 400)
        self.assertEqual(self.admin_post("/-/cache/purge?prefix=nope")[0], 400)
        m = harness.scrape(self.admin)
        self.assertGreaterEqual(harness.metric(m, "tollgate_cache_purged_total", zone="default"), 4)

    def test_ctl_purge(self):
        import subprocess
        n = self.name()
        for i in range(2):
            self.get(f"/cached/{n}-{i}?cc={FRESH}")

        def ctl(*args):
            p = subprocess.run([harness.BIN, "-c", self.gateway.path, "ctl", "purge", *args], capture_output=True,
                               text=True, timeout=30)
            return p.returncode, p.stdout + p.stderr
        rc, out = ctl(f"127.0.0.1:{self.port}/cached/{n}-0?cc={FRESH}")  # one key, as the gateway makes keys
        self.assertEqual(rc, 0, out)
        self.assertEqual(json.loads(out), {"purged": 1})
        rc, out = ctl(f"/cached/{n}-", f"127.0.0.1:{self.port}")
        self.assertEqual((rc, json.loads(out)), (0, {"purged": 1}))
        self.assertIn("fwd=uri-miss", self.status_of(self.get(f"/cached/{n}-1?cc={FRESH}")))
        self.assertEqual(ctl("key-without-a-slash", "host")[0], 2)  # usage

    def test_memory_cap_under_a_flood_of_keys(self):
        n = self.name()
        rss0 = harness.rss_kib(self.gateway.proc.pid)
        with httpx.Client(timeout=20) as c:
            for i in range(1500):
                r = c.get(f"http://127.0.0.1:{self.port}/cached/small-{n}-{i}?cc={FRESH}&size=8000")
                self.assertEqual(r.status_code, 200)
        m = harness.scrape(self.admin)
        used = harness.metric(m, "tollgate_cache_bytes", zone="small")
        self.assertLessEqual(used, 256 * 1024)
        self.assertGreater(harness.metric(m, "tollgate_cache_evictions_total", zone="small"), 1000)
        self.assertLess(harness.metric(m, "tollgate_cache_entries", zone="small"), 40)
        # 12 MB went through; what stays is the budget, not the flood
        self.assertLess(harness.rss_kib(self.gateway.proc.pid) - rss0, 8 * 1024)
        # the newest keys are still there, the first long gone
        self.assertIn("hit", self.status_of(self.get(f"/cached/small-{n}-1499?cc={FRESH}&size=8000")))
        self.assertNotIn("hit", self.status_of(self.get(f"/cached/small-{n}-0?cc={FRESH}&size=8000")))

    def test_metrics(self):
        n = self.name()
        p = f"/cached/{n}?cc={FRESH}"
        before = harness.scrape(self.admin)
        self.get(p)
        self.get(p)
        self.get(p, method="DELETE")
        after = harness.scrape(self.admin)

        def delta(result):
            return (harness.metric_or(after, "tollgate_cache_requests_total", route="cached", result=result) -
                    harness.metric_or(before, "tollgate_cache_requests_total", route="cached", result=result))
        self.assertEqual((delta("miss"), delta("hit"), delta("bypass")), (1, 1, 1))
        self.assertGreater(harness.metric(after, "tollgate_cache_entries", zone="default"), 0)
        self.assertEqual(harness.metric(after, "tollgate_cache_max_bytes", zone="default"), 8 * 1024 * 1024)


class CacheH2Test(CacheRules, harness.GatewayTest):
    H2 = True


class CacheReloadTest(harness.GatewayTest):
    """Entries live across a reload that keeps the zone's sizes; a reload
    that changes them starts the zone empty."""

    BODY = """
admin: {{ listen: 127.0.0.1:{admin} }}
routes:
  - name: cached
    cluster: app
    filters: [{{ cache: {{ max_size: {size} }} }}]
"""

    @classmethod
    def setUpClass(cls):
        cls.admin = harness.free_port()
        cls.start_app_and_gateway("cachereload", cls.BODY.format(admin=cls.admin, size="4MiB"))

    def reload_with(self, size):
        cfg = open(self.gateway.path).read().split("routes:")[0].rsplit("admin:", 1)[0]
        with open(self.gateway.path, "w") as f:
            f.write(cfg + self.BODY.format(admin=self.admin, size=size))
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}/-/reload", method="POST", data=b"",
                                     headers={"x-tollgate-admin": "1"})
        with urllib.request.urlopen(req, timeout=30) as r:
            self.assertEqual(r.status, 200)

    def test_reload(self):
        p = f"http://127.0.0.1:{self.port}/cached/reload?cc={FRESH}"
        httpx.get(p, timeout=10)
        self.reload_with("4MiB")
        self.assertIn("hit", httpx.get(p, timeout=10).headers["cache-status"])
        self.reload_with("5MiB")
        self.assertIn("fwd=uri-miss", httpx.get(p, timeout=10).headers["cache-status"])
        self.assertEqual(app_state(self.app, "reload")["calls"], 2)


if __name__ == "__main__":
    harness.main()
