"""An auth service for ext_auth tests: decides by the Authorization
header it is sent, counts the calls and keeps what the last one saw.

  Bearer good-USER   -> 200, x-user: USER, x-tenant: t1 (+ x-secret, never to pass on)
  Bearer cached-USER -> 200 as above, Cache-Control: max-age=60
  Bearer redirect    -> 302 Location: /login, Set-Cookie, x-other
  Bearer boom        -> 500
  Bearer slow        -> 200 after 3 s
  anything else      -> 401, WWW-Authenticate

/check-body decides by the body it is sent (ext_auth body_bytes): 403 if
it holds "forbidden", else 200 with x-user: body (max-age=60 if it holds
"cache"); the body seen is kept.
"""
import asyncio

from fastapi import FastAPI, Request, Response

app = FastAPI()
calls = {"n": 0, "by_uri": {}, "last": {}}


@app.api_route("/check", methods=["GET", "POST"])
async def check(request: Request):
    calls["n"] += 1
    uri = request.headers.get("x-forwarded-uri", "")
    calls["by_uri"][uri] = calls["by_uri"].get(uri, 0) + 1
    calls["last"] = {"method": request.method, "headers": dict(request.headers)}
    az = request.headers.get("authorization", "")
    tok = az[7:] if az.lower().startswith("bearer ") else ""
    if tok.startswith("good-") or tok.startswith("cached-"):
        h = {"x-user": tok.split("-", 1)[1], "x-tenant": "t1", "x-secret": "do-not-forward"}
        if tok.startswith("cached-"):
            h["cache-control"] = "max-age=60"
        return Response(status_code=200, headers=h)
    if tok == "redirect":
        return Response(status_code=302, headers={"location": "/login", "set-cookie": "next=/app; Path=/",
                                                  "x-other": "not-for-the-client"})
    if tok == "boom":
        return Response(status_code=500)
    if tok == "slow":
        await asyncio.sleep(3)
        return Response(status_code=200, headers={"x-user": "slow"})
    return Response(status_code=401, headers={"www-authenticate": 'Bearer realm="svc"'})


@app.post("/check-body")
async def check_body(request: Request):
    body = await request.body()
    calls["n"] += 1
    calls["last"] = {"method": request.method, "headers": dict(request.headers), "body": body.decode("latin-1")}
    if b"forbidden" in body:
        return Response(status_code=403)
    h = {"x-user": "body"}
    if b"cache" in body:
        h["cache-control"] = "max-age=60"
    return Response(status_code=200, headers=h)


@app.get("/admin/calls")
async def get_calls():
    return calls


@app.post("/admin/reset")
async def reset():
    calls.update({"n": 0, "by_uri": {}, "last": {}})
    return {"ok": True}
