"""A small OpenID Connect provider for tests: discovery, a JWKS the test
sets (and rotates) through /admin, counters of what was fetched, and
failure switches. Tokens are minted by the test itself with the private
keys it holds; this provider only publishes the public halves.

Realm issuer: {BASE}/realms/test (BASE from the request, or IDP_BASE).
"""
import asyncio
import os

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

app = FastAPI()

state = {
    "keys": [],              # the JWKS's "keys"
    "cache_control": "max-age=300",
    "fail": 0,               # answer this status instead (0: serve)
    "delay": 0.0,            # seconds before answering a key set fetch
    "jwks_fetches": 0,
    "discovery_fetches": 0,
    "issuer": None,          # overrides the issuer the discovery document names
    "jwks_uri": None,        # overrides its jwks_uri
    "opaque": {},            # token -> its introspection answer (unknown: {"active": false})
    "client": ["gateway", "s3cret:&/"],  # the client allowed to introspect (id, secret)
    "introspections": {},    # token -> calls
}

REALM = "/realms/test"


def base(request: Request):
    return os.environ.get("IDP_BASE") or f"{request.url.scheme}://{request.headers['host']}"


@app.get(REALM + "/.well-known/openid-configuration")
async def discovery(request: Request):
    state["discovery_fetches"] += 1
    if state["fail"]:
        return Response(status_code=state["fail"])
    b = base(request) + REALM
    return {
        "issuer": state["issuer"] or b,
        "jwks_uri": state["jwks_uri"] or b + "/protocol/openid-connect/certs",
        "introspection_endpoint": b + "/protocol/openid-connect/token/introspect",
    }


@app.get(REALM + "/protocol/openid-connect/certs")
async def certs():
    state["jwks_fetches"] += 1
    if state["delay"]:
        await asyncio.sleep(state["delay"])
    if state["fail"]:
        return Response(status_code=state["fail"])
    return JSONResponse({"keys": state["keys"]}, headers={"cache-control": state["cache_control"]})


@app.post(REALM + "/protocol/openid-connect/token/introspect")
async def introspect(request: Request):
    """RFC 7662: a form POST with the client's Basic credentials."""
    import base64
    from urllib.parse import unquote_plus
    az = request.headers.get("authorization", "")
    try:
        cid, secret = base64.b64decode(az[6:]).decode().split(":", 1)
        ok = az.startswith("Basic ") and [unquote_plus(cid), unquote_plus(secret)] == state["client"]
    except Exception:
        ok = False
    if not ok:
        return Response(status_code=401)
    if request.headers.get("content-type") != "application/x-www-form-urlencoded":
        return Response(status_code=415)
    from urllib.parse import parse_qs
    form = parse_qs((await request.body()).decode())
    tok = form.get("token", [""])[0]
    state["introspections"][tok] = state["introspections"].get(tok, 0) + 1
    if state["fail"]:
        return Response(status_code=state["fail"])
    return state["opaque"].get(tok, {"active": False})


@app.post("/admin/state")
async def set_state(request: Request):
    state.update(await request.json())
    return {"ok": True}


@app.get("/admin/state")
async def get_state():
    return {k: v for k, v in state.items() if k != "keys"} | {"kids": [k.get("kid") for k in state["keys"]]}
