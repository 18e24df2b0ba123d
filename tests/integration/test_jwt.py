"""JWT verification in the auth filter, with tokens minted by PyJWT:
HS256, RS256 and ES256 (PEM keys and a JWKS file with kids), exp/nbf with
leeway, issuer, audience and scope checks, and the classic attacks
(alg none, an HS256 token keyed with the RSA public key, a foreign key)."""
import base64
import json
import os
import tempfile
import time

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import harness

SECRET = "a-very-long-hmac-secret-for-tests"


def b64(n, length=None):
    raw = n.to_bytes(length or (n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class JwtTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tg-jwt-")
        cls.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.ec = ec.generate_private_key(ec.SECP256R1())
        cls.jwks_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.jwks_ec = ec.generate_private_key(ec.SECP256R1())
        cls.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = serialization.Encoding.PEM
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        cls.rsa_pub = cls.rsa.public_key().public_bytes(pem, spki)
        with open(os.path.join(cls.dir, "rsa.pem"), "wb") as f:
            f.write(cls.rsa_pub)
        with open(os.path.join(cls.dir, "ec.pem"), "wb") as f:
            f.write(cls.ec.public_key().public_bytes(pem, spki))
        rn = cls.jwks_rsa.public_key().public_numbers()
        en = cls.jwks_ec.public_key().public_numbers()
        with open(os.path.join(cls.dir, "jwks.json"), "w") as f:
            json.dump({"keys": [
                {"kty": "RSA", "kid": "r1", "alg": "RS256", "n": b64(rn.n), "e": b64(rn.e)},
                {"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(en.x, 32), "y": b64(en.y, 32)},
            ]}, f)
        # rsa.pem is given relative to the config file, ec.pem absolute
        cls.start_app_and_gateway("jwt", f"""
routes:
  - name: plans
    match: {{ headers: [{{ name: x-plan-test, value: "1" }}] }}
    cluster: app
    filters:
      - auth: {{ jwt: {{ secret: "{SECRET}" }} }}
      - rate_limit:
          key: identity
          limit: 1
          window: 1m
          response_headers: true
          overrides:
            - {{ name: partner, identities: [partner-a], limit: 5, window: 1m }}
            - {{ name: enterprise, claim: {{ seats: 100, verified: true }}, limit: 4, window: 1m }}
            - {{ name: pro, claim: {{ plan: pro }}, limit: 3, window: 1m }}
  - name: scoped
    match: {{ path_prefix: /items }}
    cluster: app
    filters:
      - auth:
          jwt: {{ jwks_file: {cls.dir}/jwks.json, issuer: https://idp.test, audiences: [orders], scopes: [items:read] }}
  - name: api
    cluster: app
    filters:
      - auth:
          jwt:
            secret: "{SECRET}"
            keys: [{{ file: rsa.pem }}, {{ file: {cls.dir}/ec.pem }}]
            leeway: 30s
""", files={"rsa.pem": cls.rsa_pub})

    def call(self, token, path="/echo/headers"):
        return requests.get(self.gateway.url(path), headers={"Authorization": f"Bearer {token}"}, timeout=5)

    def ok(self, token, sub, path="/echo/headers"):
        r = self.call(token, path)
        self.assertEqual(r.status_code, 200 if path == "/echo/headers" else 404, r.text)
        if path == "/echo/headers":
            h = {k: v for k, v in r.json()["headers"]}
            self.assertEqual(h["x-auth-identity"], sub)
            self.assertNotIn("authorization", h)

    def refused(self, token, reason, path="/echo/headers"):
        r = self.call(token, path)
        self.assertEqual(r.status_code, 401, r.text)
        self.assertEqual(r.json()["error"], f"invalid token: {reason}")
        self.assertEqual(r.headers["www-authenticate"], 'Bearer realm="tollgate"')

    def plan_codes(self, claims, n):
        token = jwt.encode({**claims, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
        rs = [requests.get(self.gateway.url("/whoami"), timeout=5,
                           headers={"Authorization": f"Bearer {token}", "x-plan-test": "1"}) for _ in range(n)]
        policies = {r.headers.get("ratelimit-policy", "").split(";")[0] for r in rs}
        return [r.status_code for r in rs], policies

    def test_rate_limit_plans_by_claim(self):
        """rate_limit overrides pick a plan from the verified token's claims
        (every named claim must hold; numbers and booleans compare as text;
        names are case-sensitive), after identities in file order: first
        match wins."""
        self.assertEqual(self.plan_codes({"sub": "u-free", "plan": "free"}, 2), ([200, 429], {'"default"'}))
        self.assertEqual(self.plan_codes({"sub": "u-pro", "plan": "pro"}, 4), ([200] * 3 + [429], {'"pro"'}))
        self.assertEqual(self.plan_codes({"sub": "u-ent", "plan": "pro", "seats": 100, "verified": True}, 5),
                         ([200] * 4 + [429], {'"enterprise"'}))
        # not every claim of the enterprise plan: the next that applies
        self.assertEqual(self.plan_codes({"sub": "u-ent2", "plan": "pro", "seats": 100, "verified": False}, 4),
                         ([200] * 3 + [429], {'"pro"'}))
        # the partner identity comes first, whatever its claims
        self.assertEqual(self.plan_codes({"sub": "partner-a", "plan": "pro"}, 6), ([200] * 5 + [429], {'"partner"'}))
        self.assertEqual(self.plan_codes({"sub": "u-case", "Plan": "pro"}, 2), ([200, 429], {'"default"'}))
        # claims of a token that does not verify count for nothing: refused first
        forged = jwt.encode({"sub": "u-forged", "plan": "pro", "exp": int(time.time()) + 60}, "wrong-secret-wrong",
                            algorithm="HS256")
        r = requests.get(self.gateway.url("/whoami"), timeout=5,
                         headers={"Authorization": f"Bearer {forged}", "x-plan-test": "1"})
        self.assertEqual(r.status_code, 401)

    def test_algorithms(self):
        now = int(time.time())
        self.ok(jwt.encode({"sub": "hs-user", "exp": now + 60}, SECRET, algorithm="HS256"), "hs-user")
        self.ok(jwt.encode({"sub": "rs-user", "exp": now + 60}, self.rsa, algorithm="RS256"), "rs-user")
        self.ok(jwt.encode({"sub": "es-user", "exp": now + 60}, self.ec, algorithm="ES256"), "es-user")

    def test_time_claims_and_leeway(self):
        now = int(time.time())
        self.refused(jwt.encode({"sub": "u", "exp": now - 120}, SECRET, algorithm="HS256"), "token expired")
        self.ok(jwt.encode({"sub": "u", "exp": now - 10}, SECRET, algorithm="HS256"), "u")  # within leeway
        self.refused(jwt.encode({"sub": "u", "nbf": now + 120, "exp": now + 600}, SECRET, algorithm="HS256"),
                     "token not yet valid")

    def test_attacks(self):
        now = int(time.time())
        self.refused(jwt.encode({"sub": "u", "exp": now + 60}, self.other, algorithm="RS256"), "bad signature")
        self.refused(jwt.encode({"sub": "u", "exp": now + 60}, "wrong-secret-wrong-secret", algorithm="HS256"),
                     "bad signature")
        none = jwt.encode({"sub": "admin"}, None, algorithm="none")
        self.refused(none, "unsupported algorithm")
        # HS256 keyed with the RSA public key (algorithm confusion): HMAC keys are only the secret
        header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
        body = base64.urlsafe_b64encode(json.dumps({"sub": "admin", "exp": now + 60}).encode()).rstrip(b"=")
        import hmac, hashlib
        sig = base64.urlsafe_b64encode(hmac.new(self.rsa_pub, header + b"." + body, hashlib.sha256).digest()).rstrip(b"=")
        self.refused((header + b"." + body + b"." + sig).decode(), "bad signature")
        self.refused("not.a.jwt", "malformed token")
        # a token that verifies but has no identity claim
        self.refused(jwt.encode({"exp": now + 60}, SECRET, algorithm="HS256"), "token has no identity claim")

    def test_jwks_issuer_audience_scopes(self):
        now = int(time.time())
        good = {"sub": "svc", "iss": "https://idp.test", "aud": ["orders", "other"], "scope": "items:read items:write",
                "exp": now + 60}
        self.ok(jwt.encode(good, self.jwks_rsa, algorithm="RS256", headers={"kid": "r1"}), "svc", "/items/x")
        self.ok(jwt.encode(good, self.jwks_ec, algorithm="ES256", headers={"kid": "e1"}), "svc", "/items/x")
        self.refused(jwt.encode(good, self.jwks_rsa, algorithm="RS256", headers={"kid": "nope"}),
                     "no key for this token", "/items/x")
        self.refused(jwt.encode({**good, "iss": "https://evil.test"}, self.jwks_rsa, algorithm="RS256",
                                headers={"kid": "r1"}), "wrong issuer", "/items/x")
        self.refused(jwt.encode({**good, "aud": "billing"}, self.jwks_rsa, algorithm="RS256", headers={"kid": "r1"}),
                     "wrong audience", "/items/x")
        self.refused(jwt.encode({**good, "scope": "items:write"}, self.jwks_rsa, algorithm="RS256",
                                headers={"kid": "r1"}), "missing scope", "/items/x")
        self.ok(jwt.encode({**good, "scope": None, "scp": ["items:read"]}, self.jwks_rsa, algorithm="RS256",
                           headers={"kid": "r1"}), "svc", "/items/x")


if __name__ == "__main__":
    harness.main()
