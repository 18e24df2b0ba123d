"""Keys from an identity provider: OpenID discovery and a remote JWKS
(apps/idp.py, whose published keys the test sets), fetched through
tollgate's own client and kept fresh without a reload — rotations with
no false 401, one refetch for a burst of tokens with a new kid, the last
good keys kept up to max_stale while the provider is down, the first set
waited for at start-up, two providers on one route, HTTPS verified
against ca_file, shared sets across a reload, and the metrics."""
import base64
import concurrent.futures
import json
import os
import subprocess
import tempfile
import time
import urllib.request

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import harness


def b64(n, length=None):
    raw = n.to_bytes(length or (n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Key:
    """A signing key the test holds; its public half goes to the IdP."""

    def __init__(self, kid, kind="rsa"):
        self.kid = kid
        self.kind = kind
        if kind == "rsa":
            self.priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.priv = ec.generate_private_key(ec.SECP256R1())

    def jwk(self):
        pub = self.priv.public_key().public_numbers()
        if self.kind == "rsa":
            return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": b64(pub.n), "e": b64(pub.e)}
        return {"kty": "EC", "kid": self.kid, "use": "sig", "crv": "P-256", "x": b64(pub.x, 32), "y": b64(pub.y, 32)}

    def token(self, iss, sub="alice", aud="api", ttl=300):
        now = int(time.time())
        alg = "RS256" if self.kind == "rsa" else "ES256"
        return jwt.encode({"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + ttl}, self.priv,
                          algorithm=alg, headers={"kid": self.kid})


def idp_set(idp, base="http", **state):
    req = urllib.request.Request(f"{base}://127.0.0.1:{idp.port}/admin/state", data=json.dumps(state).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    ctx = None
    if base == "https":
        import ssl
        ctx = ssl._create_unverified_context()
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        assert r.status == 200


def idp_state(idp, base="http"):
    ctx = None
    if base == "https":
        import ssl
        ctx = ssl._create_unverified_context()
    with urllib.request.urlopen(f"{base}://127.0.0.1:{idp.port}/admin/state", timeout=10, context=ctx) as r:
        return json.loads(r.read())


def get(port, token, path="/whoami"):
    return requests.get(f"http://127.0.0.1:{port}{path}", headers={"authorization": f"Bearer {token}"}, timeout=30)


def one_route(cls, app_name, filters, workers=2):
    """cls.app (a test app) and a gateway with one route `r` to it through
    `filters` (YAML flow list items, one per line)."""
    cls.app = harness.start_app(app_name)
    cls.procs = getattr(cls, "procs", []) + [cls.app]
    items = "".join(f"      - {f}\n" for f in filters)
    cls.start_gateway(f"""
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
routes:
  - name: r
    match: {{ path_prefix: / }}
    cluster: app
    filters:
{items}""", workers=workers)


class OidcTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.idp = harness.start_idp("idp")
        cls.issuer = f"http://127.0.0.1:{cls.idp.port}/realms/test"
        cls.k1 = Key("k1")
        idp_set(cls.idp, keys=[cls.k1.jwk()], cache_control="max-age=300")
        cls.procs = [cls.idp]
        one_route(cls, "oidc-app", [f'auth: {{ jwt: {{ issuer: "{cls.issuer}", audiences: [api], refetch_interval: 1s }} }}'])

    @classmethod
    def tearDownClass(cls):
        cls.finish()

    def test_discovery_then_keys(self):
        r = get(self.port, self.k1.token(self.issuer))
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(dict(get(self.port, self.k1.token(self.issuer), "/echo/headers").json()["headers"]).get("x-auth-identity"),
                         "alice")
        st = idp_state(self.idp)
        self.assertGreaterEqual(st["discovery_fetches"], 1)
        self.assertGreaterEqual(st["jwks_fetches"], 1)
        # a token from another issuer, or for another audience, is refused as before
        self.assertEqual(get(self.port, self.k1.token("http://evil.example/realms/test")).status_code, 401)
        self.assertEqual(get(self.port, self.k1.token(self.issuer, aud="other")).status_code, 401)
        # a token signed by a key the provider never published: 401, not a crash or a hang
        stranger = Key("k1")  # same kid, other key
        r = get(self.port, stranger.token(self.issuer))
        self.assertEqual(r.status_code, 401)
        self.assertIn("bad signature", r.text)

    def test_rotations_without_reload(self):
        """Three rotations, each announced only in the JWKS (max-age 300:
        no scheduled refresh comes): the first token with the new kid
        fetches the set once, and no request gets a false 401."""
        old = self.k1
        statuses = []
        for n in range(3):
            new = Key(f"rot{n}", "ec" if n % 2 else "rsa")
            before = idp_state(self.idp)["jwks_fetches"]
            idp_set(self.idp, keys=[old.jwk(), new.jwk()])
            # refetches are at most one a second per URL (refetch_interval: 1s)
            time.sleep(1.1)
            tok = new.token(self.issuer, sub=f"user{n}")
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                statuses += [r.status_code for r in pool.map(lambda _: get(self.port, tok), range(32))]
            statuses += [get(self.port, old.token(self.issuer)).status_code]  # the old key still listed: still good
            after = idp_state(self.idp)["jwks_fetches"]
            self.assertEqual(after - before, 1, "one fetch for a burst of 32 tokens with a new kid")
            old = new
        self.assertEqual([s for s in statuses if s != 200], [], "false refusals across three rotations")
        text = harness.scrape(self.admin)
        self.assertGreaterEqual(harness.metric(text, "tollgate_jwks_unknown_kid_refetches_total", url=self.issuer), 3)
        idp_set(self.idp, keys=[self.k1.jwk(), old.jwk()])

    def test_removed_key_is_refused_despite_memory(self):
        """Verified tokens are remembered, but only against the key sets
        they were checked with: once a set without their key is in force,
        they are checked again, and refused."""
        gone, newer = Key("gone", "ec"), Key("newer")
        time.sleep(1.1)
        idp_set(self.idp, keys=[self.k1.jwk(), gone.jwk()])
        tok = gone.token(self.issuer)
        self.assertEqual([get(self.port, tok).status_code for _ in range(3)], [200] * 3)
        time.sleep(1.1)
        idp_set(self.idp, keys=[self.k1.jwk(), newer.jwk()])
        self.assertEqual(get(self.port, newer.token(self.issuer)).status_code, 200)  # the new set is in force
        r = get(self.port, tok)
        self.assertEqual(r.status_code, 401, "a token of a key rotated out was accepted from memory")
        self.assertIn("no key for this token", r.text)
        idp_set(self.idp, keys=[self.k1.jwk()])

    def test_unknown_kid_refetch_is_rate_limited(self):
        """A kid the provider does not have: one refetch, then refusals
        at once (no fetch storm) until refetch_interval has passed."""
        time.sleep(1.1)
        ghost = Key("ghost")
        before = idp_state(self.idp)["jwks_fetches"]
        codes = [get(self.port, ghost.token(self.issuer)).status_code for _ in range(20)]
        self.assertEqual(codes, [401] * 20)
        self.assertLessEqual(idp_state(self.idp)["jwks_fetches"] - before, 1)

    def test_metrics(self):
        get(self.port, self.k1.token(self.issuer))
        text = harness.scrape(self.admin)
        self.assertGreaterEqual(harness.metric(text, "tollgate_jwks_fetches_total", url=self.issuer), 2)
        self.assertGreaterEqual(harness.metric(text, "tollgate_jwks_keys", url=self.issuer), 1)
        self.assertGreaterEqual(harness.metric(text, "tollgate_jwks_age_seconds", url=self.issuer), 0)
        with tempfile.NamedTemporaryFile("w", suffix=".prom") as f:
            f.write(text)
            f.flush()
            p = subprocess.run(["promtool", "check", "metrics"], stdin=open(f.name), capture_output=True, text=True,
                               timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_implicit_cluster_not_in_config_dump(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/config", timeout=10) as r:
            cfg = json.loads(r.read())
        self.assertEqual([c["name"] for c in cfg["clusters"]], ["app"])


class OidcOutageTest(harness.GatewayTest):
    """The provider down: the last good keys serve up to max_stale, then
    tokens are refused; back up, keys come back without a reload."""

    @classmethod
    def setUpClass(cls):
        cls.idp = harness.start_idp("idp-outage")
        cls.key = Key("o1", "ec")
        idp_set(cls.idp, keys=[cls.key.jwk()], cache_control="max-age=1")
        cls.procs = [cls.idp]
        cls.jwks = f"http://127.0.0.1:{cls.idp.port}/realms/test/protocol/openid-connect/certs"
        one_route(cls, "oidc-outage-app", [f'auth: {{ jwt: {{ jwks_uri: "{cls.jwks}", issuer: idp-o, min_refresh: 1s, '
                                           f'max_refresh: 1s, max_stale: 8s }} }}'])

    MAX_STALE = 8.0

    def judged_fresh(self, tok):
        """A request's status, if the keys it was judged by were younger than
        max_stale: the age is read after the answer, so it bounds the age at
        the request from above; None when even that bound is past max_stale
        (only a machine stalled for seconds gets there)."""
        status = get(self.port, tok).status_code
        age = harness.metric(harness.scrape(self.admin), "tollgate_jwks_age_seconds", url=self.jwks)
        return status if age is not None and age < self.MAX_STALE else None

    def test_outage(self):
        tok = self.key.token("idp-o")
        self.assertEqual(get(self.port, tok).status_code, 200)
        harness.wait_metric(self.admin, "tollgate_jwks_fetches_total", 2, url=self.jwks)  # refreshing each second
        idp_set(self.idp, fail=500)
        # the last good set still serves: judged by the keys' age, never by
        # the wall clock, so a loaded machine cannot change the verdict
        first = self.judged_fresh(tok)
        harness.wait_metric(self.admin, "tollgate_jwks_fetch_failures_total", 1, url=self.jwks)
        after = self.judged_fresh(tok)
        self.assertTrue(first is not None or after is not None,
                        "the keys went past max_stale before any request could be judged by them")
        for status in (first, after):
            if status is not None:
                self.assertEqual(status, 200, "a failed refresh keeps the last good keys")
        # past max_stale: refused, saying why
        r = harness.wait_until(lambda: (lambda r: [r] if r.status_code == 401 else None)(get(self.port, tok)),
                               30, "a refusal once the keys are older than max_stale")[0]
        self.assertIn("no keys from the identity provider", r.text)
        scraped = harness.scrape(self.admin)
        self.assertEqual(harness.metric(scraped, "tollgate_jwks_keys", url=self.jwks), 0)
        self.assertGreater(harness.metric(scraped, "tollgate_jwks_age_seconds", url=self.jwks), self.MAX_STALE)
        idp_set(self.idp, fail=0)
        harness.wait_until(lambda: get(self.port, tok).status_code == 200, 30, "keys again once the provider is back")


class OidcStartupTest(harness.GatewayTest):
    """Requests that come before the first set wait for it (startup_wait);
    with no set at all they get no_keys_status."""

    @classmethod
    def setUpClass(cls):
        cls.idp = harness.start_idp("idp-startup")
        cls.key = Key("s1")
        idp_set(cls.idp, keys=[cls.key.jwk()], delay=1.5)
        cls.app = harness.start_app("oidc-startup-app")
        cls.procs = [cls.idp, cls.app]
        cls.issuer = f"http://127.0.0.1:{cls.idp.port}/realms/test"
        cls.dead = harness.dead_port()
        cls.start_gateway(f"""
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
routes:
  - name: slow-idp
    match: {{ path_prefix: /named/slow }}
    cluster: app
    filters:
      - auth: {{ jwt: {{ issuer: "{cls.issuer}" }} }}
  - name: no-idp
    match: {{ path_prefix: /named/none }}
    cluster: app
    filters:
      - auth: {{ jwt: {{ issuer: "http://127.0.0.1:{cls.dead}/realms/x", startup_wait: 1s, no_keys_status: 503 }} }}
""")

    def test_first_request_waits_for_the_keys(self):
        r = get(self.port, self.key.token(self.issuer), "/named/slow")
        self.assertEqual(r.status_code, 200, r.text)

    def test_no_provider_answers_503_after_startup_wait(self):
        r = get(self.port, self.key.token(f"http://127.0.0.1:{self.dead}/realms/x"), "/named/none")
        self.assertEqual(r.status_code, 503, r.text)
        self.assertEqual(r.headers.get("retry-after"), "1")
        self.assertIn("no keys from the identity provider", r.text)


class OidcProvidersTest(harness.GatewayTest):
    """Two identity providers on one route (providers:), one discovered
    over HTTPS with its CA in ca_file, one by jwks_uri; a reload that
    keeps both URLs keeps their keys (no new fetch needed)."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tg-oidc-")
        cls.certs = harness.make_certs(cls.dir)
        cls.idp_a = harness.start_idp("idp-a", tls={"cert": cls.certs["server.crt"], "key": cls.certs["server.key"]})
        cls.idp_b = harness.start_idp("idp-b")
        cls.ka, cls.kb = Key("a1"), Key("b1", "ec")
        idp_set(cls.idp_a, base="https", keys=[cls.ka.jwk()])
        idp_set(cls.idp_b, keys=[cls.kb.jwk()])
        cls.app = harness.start_app("oidc-providers-app")
        cls.procs = [cls.idp_a, cls.idp_b, cls.app]
        cls.iss_a = f"https://localhost:{cls.idp_a.port}/realms/test"
        cls.jwks_b = f"http://127.0.0.1:{cls.idp_b.port}/realms/test/protocol/openid-connect/certs"
        cls.body = f"""
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
routes:
  - name: both
    match: {{ path_prefix: / }}
    cluster: app
    filters:
      - auth:
          jwt:
            providers:
              - {{ issuer: "{cls.iss_a}", ca_file: "{cls.certs['ca.crt']}", audiences: [api-a] }}
              - {{ issuer: idp-b, jwks_uri: "{cls.jwks_b}", audiences: [api-b], identity_claim: email }}
"""
        cls.start_gateway(cls.body)

    def test_each_provider_with_its_own_rules(self):
        ra = get(self.port, self.ka.token(self.iss_a, aud="api-a"))
        self.assertEqual(ra.status_code, 200, ra.text)
        now = int(time.time())
        tb = jwt.encode({"iss": "idp-b", "sub": "x", "email": "bob@example.com", "aud": "api-b", "exp": now + 60},
                        self.kb.priv, algorithm="ES256", headers={"kid": "b1"})
        rb = get(self.port, tb)
        self.assertEqual(rb.status_code, 200, rb.text)
        self.assertEqual(dict(get(self.port, tb, "/echo/headers").json()["headers"]).get("x-auth-identity"), "bob@example.com")
        # A's audience is not B's; a key of B under A's issuer is not A's
        self.assertEqual(get(self.port, self.ka.token(self.iss_a, aud="api-b")).status_code, 401)
        forged = jwt.encode({"iss": self.iss_a, "sub": "x", "aud": "api-a", "exp": now + 60}, self.kb.priv,
                            algorithm="ES256", headers={"kid": "b1"})
        self.assertEqual(get(self.port, forged).status_code, 401)
        self.assertEqual(get(self.port, self.ka.token("idp-c", aud="api-a")).status_code, 401)

    def test_reload_keeps_the_sets(self):
        self.assertEqual(get(self.port, self.ka.token(self.iss_a, aud="api-a")).status_code, 200)
        before_a = idp_state(self.idp_a, "https")["jwks_fetches"]
        before_b = idp_state(self.idp_b)["jwks_fetches"]
        with open(self.gateway.path, "w") as f:
            f.write(f"workers: 2\nadmin: {{ listen: 127.0.0.1:{self.admin} }}\n"
                    f"listeners: [{{ name: main, listen: 127.0.0.1:{self.port} }}]\n{self.body}"
                    "  - name: extra\n    match: { path_prefix: /extra }\n    cluster: app\n")
        r = requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers={"x-tollgate-admin": "1"}, timeout=30)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(get(self.port, self.ka.token(self.iss_a, aud="api-a")).status_code, 200)
        self.assertEqual(idp_state(self.idp_a, "https")["jwks_fetches"], before_a, "the reload fetched A again")
        self.assertEqual(idp_state(self.idp_b)["jwks_fetches"], before_b, "the reload fetched B again")


class OidcTlsRefusedTest(harness.GatewayTest):
    """HTTPS to a provider whose certificate the trust store does not
    know: no keys (a verified fetch or none), the failure counted."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tg-oidc-tls-")
        cls.certs = harness.make_certs(cls.dir)
        cls.idp = harness.start_idp("idp-tls", tls={"cert": cls.certs["server.crt"], "key": cls.certs["server.key"]})
        cls.key = Key("t1")
        idp_set(cls.idp, base="https", keys=[cls.key.jwk()])
        cls.procs = [cls.idp]
        cls.jwks = f"https://localhost:{cls.idp.port}/realms/test/protocol/openid-connect/certs"
        one_route(cls, "oidc-tls-app", [f'auth: {{ jwt: {{ jwks_uri: "{cls.jwks}", startup_wait: 0s }} }}'])

    def test_unverified_provider_gives_no_keys(self):
        harness.wait_metric(self.admin, "tollgate_jwks_fetch_failures_total", 1, url=self.jwks)
        r = get(self.port, self.key.token("any"))
        self.assertEqual(r.status_code, 401)
        self.assertIn("no keys from the identity provider", r.text)
        self.assertEqual(idp_state(self.idp, "https")["jwks_fetches"], 0, "a fetch got past an unverified handshake")


class OidcIntrospectionTest(harness.GatewayTest):
    """Opaque tokens checked at the provider's introspection endpoint
    (RFC 7662): claims from the answer, verdicts cached (good ones and
    refusals), each on_error path."""

    @classmethod
    def setUpClass(cls):
        cls.idp = harness.start_idp("idp-intro")
        cls.procs = [cls.idp]
        cls.iss = f"http://127.0.0.1:{cls.idp.port}/realms/test"
        cls.endpoint = cls.iss + "/protocol/openid-connect/token/introspect"
        now = int(time.time())
        idp_set(cls.idp, opaque={
            "tok-olga": {"active": True, "sub": "olga", "scope": "read write", "client_id": "app1", "plan": "pro",
                         "aud": "api", "iss": cls.iss, "exp": now + 600},
            "tok-old": {"active": True, "sub": "old", "exp": now - 600},
            "tok-noscope": {"active": True, "sub": "nos", "scope": "read", "aud": "api"},
            "tok-wrongaud": {"active": True, "sub": "wa", "scope": "write", "aud": "other"},
        })
        secret_file = os.path.join(tempfile.mkdtemp(prefix="tg-oidc-sec-"), "secret")
        with open(secret_file, "w") as f:
            f.write("s3cret:&/\n")
        intro = (f"introspection: {{ endpoint: '{cls.endpoint}', client_id: gateway, client_secret_file: "
                 f"'{secret_file}', negative_ttl: 1m }}")
        one_route(cls, "oidc-intro-app", [
            f'auth: {{ jwt: {{ issuer: "{cls.iss}", audiences: [api], scopes: [write], {intro} }} }}',
            "rate_limit: { key: identity, limit: 1000, window: 1m, response_headers: true, "
            "overrides: [{ name: pro, claim: { plan: pro }, limit: 5000, window: 1m }] }"], workers=1)

    def intro_calls(self, tok):
        return idp_state(self.idp).get("introspections", {}).get(tok, 0)

    def test_active_token_and_cache(self):
        r = get(self.port, "tok-olga", "/echo/headers")
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(dict(r.json()["headers"]).get("x-auth-identity"), "olga")
        self.assertIn("q=5000", r.headers.get("ratelimit-policy", ""), "the answer's claims feed plans")
        for _ in range(5):
            self.assertEqual(get(self.port, "tok-olga").status_code, 200)
        self.assertEqual(self.intro_calls("tok-olga"), 1, "the verdict is cached (one worker)")

    def test_refusals_are_negative_cached(self):
        cases = {"tok-unknown": "token not active", "tok-old": "token expired", "tok-noscope": "missing scope",
                 "tok-wrongaud": "wrong audience"}
        for tok, why in cases.items():
            for _ in range(3):
                r = get(self.port, tok)
                self.assertEqual(r.status_code, 401, tok)
                self.assertIn(why, r.text, tok)
            self.assertEqual(self.intro_calls(tok), 1, tok)

    def test_a_jwt_is_not_introspected(self):
        r = get(self.port, Key("j1").token(self.iss))
        self.assertEqual(r.status_code, 401)
        self.assertEqual(self.intro_calls(Key("j1").token(self.iss)), 0)

    def test_on_error(self):
        idp_set(self.idp, fail=500)
        try:
            r = get(self.port, "tok-fresh-1")
            self.assertEqual(r.status_code, 503, r.text)
            self.assertIn("the introspection endpoint is unavailable", r.text)
            self.assertEqual(r.headers.get("retry-after"), "1")
        finally:
            idp_set(self.idp, fail=0)
        # a wrong client secret is no usable answer either (the endpoint says 401)
        idp_set(self.idp, client=["gateway", "other"])
        try:
            self.assertEqual(get(self.port, "tok-fresh-2").status_code, 503)
        finally:
            idp_set(self.idp, client=["gateway", "s3cret:&/"])

    def test_on_error_allow(self):
        port = harness.free_port()
        gw = harness.Gateway(f"""workers: 1
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
clusters: [{{ name: app, endpoints: [127.0.0.1:{self.app.port}] }}]
routes:
  - name: r
    cluster: app
    filters:
      - auth: {{ jwt: {{ introspection: {{ endpoint: 'http://127.0.0.1:{harness.dead_port()}/x', client_id: g,
                                           client_secret: s, on_error: allow }} }} }}
""", port=port)
        r = requests.get(f"http://127.0.0.1:{port}/echo/headers", headers={"authorization": "Bearer opaque-x"},
                         timeout=30)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertNotIn("x-auth-identity", dict(r.json()["headers"]))
        harness.assert_clean_exit(self, gw)


class OidcConfigTest(harness.GatewayTest):
    def check(self, jwt_block):
        d = tempfile.mkdtemp(prefix="tg-oidc-cfg-")
        path = os.path.join(d, "t.yaml")
        with open(path, "w") as f:
            f.write("listeners: [{ name: m, listen: 127.0.0.1:1 }]\nclusters: [{ name: c, endpoints: [127.0.0.1:2] }]\n"
                    "routes: [{ name: r, match: { path_prefix: / }, cluster: c, filters: [{ auth: { jwt: "
                    + jwt_block + " } }] }]\n")
        p = subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout + p.stderr

    def test_errors(self):
        cases = {
            '{ jwks_uri: "ftp://idp/certs" }': "is not an http:// or https:// URL",
            '{ jwks_uri: "https://user@idp/certs" }': "no user info",
            '{ jwks_uri: "https://idp:99999/certs" }': "is not HOST or HOST:PORT",
            '{ issuer: "https://idp", no_keys_status: 404 }': "no_keys_status: 401 or 503",
            '{ issuer: "https://idp", min_refresh: 1h, max_refresh: 1m }': "min_refresh is longer than max_refresh",
            '{ providers: [] }': "a list of one or more provider sections",
            '{ providers: [{ issuer: a, secret: "0123456789abcdef0" }, { issuer: a, secret: "0123456789abcdef0" }] }':
                "issuer 'a' twice",
            '{ providers: [{ providers: [] }] }': "unknown key 'providers'",
        }
        for block, want in cases.items():
            rc, out = self.check(block)
            self.assertEqual(rc, 1, block)
            self.assertIn(want, out, block)
        rc, out = self.check('{ issuer: "https://idp.example.com/realms/main", audiences: [api] }')
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    harness.main()
