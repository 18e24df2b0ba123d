"""A minimal auth service for tollgate's ext_auth filter (FastAPI).

    uvicorn authsvc:app --port 9000

tollgate calls GET /check for every request with the client's
Authorization and Cookie headers and X-Forwarded-Method/-Uri/-Host/-Proto/
-For. Answer 2xx to let the request on (x-user and x-tenant go upstream,
x-user is the identity rate limits count by); anything else goes back to
the client with WWW-Authenticate, Set-Cookie and Location passed on.
"""
from fastapi import FastAPI, Request, Response

app = FastAPI()

# Stand-ins for your session store and API-key table.
SESSIONS = {"s-123": ("alice", "acme")}
API_KEYS = {"k-456": ("reporting-bot", "acme")}


@app.get("/healthz")
async def healthz():
    return {"ok": True}


@app.get("/check")
async def check(request: Request):
    who = None
    session = request.cookies.get("session")
    if session in SESSIONS:
        who = SESSIONS[session]
    az = request.headers.get("authorization", "")
    if who is None and az.lower().startswith("bearer "):
        who = API_KEYS.get(az[7:])
    if who is None:
        if request.headers.get("x-forwarded-uri", "").startswith("/app"):
            # a browser page: send it to the login form, and back afterwards
            return Response(status_code=302, headers={"location": "/login",
                                                      "set-cookie": "next=" + request.headers["x-forwarded-uri"]})
        return Response(status_code=401, headers={"www-authenticate": 'Bearer realm="api"'})
    user, tenant = who
    # the same credentials get the same answer for a minute: tollgate may keep it
    return Response(status_code=204, headers={"x-user": user, "x-tenant": tenant, "cache-control": "max-age=60"})
