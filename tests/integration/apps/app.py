"""FastAPI upstream used by the integration tests and the quickstart demo.

Every response names the instance (APP_NAME) so tests can see where
round-robin sent a request. Runs under uvicorn (Debian python3-uvicorn).
"""
import asyncio
import hashlib
import os
import time

from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

NAME = os.environ.get("APP_NAME", "app")
app = FastAPI()
ITEMS = {}
STATS = {"requests": 0, "uploads": 0, "slow_started": 0}
GATES = {}      # name -> asyncio.Event: /hold waits until /release opens it
HELD = {}       # name -> requests waiting at that gate now
ARRIVALS = {}   # name -> tags of /hold requests, in the order they arrived


DELAY = float(os.environ.get("APP_DELAY", "0"))  # a slow instance: every /whoami waits this long


@app.middleware("http")
async def count(request: Request, call_next):
    STATS["requests"] += 1
    if DELAY and request.url.path == "/whoami":
        await asyncio.sleep(DELAY)
    response = await call_next(request)
    response.headers["x-upstream"] = NAME
    return response


@app.get("/whoami")
async def whoami():
    return {"name": NAME}


@app.get("/named/{rest:path}")
async def named(rest: str):
    """Any path: who answered it (hash_on: path)."""
    return {"name": NAME, "path": rest}


PROBES = []     # the HTTP versions health checks came in, newest last (/probe, /probes)


@app.get("/probe")
async def probe(request: Request):
    PROBES.append(request.scope.get("http_version", "?"))
    del PROBES[:-20]
    return {"name": NAME}


@app.get("/probes")
async def probes():
    return {"versions": PROBES}


@app.get("/stats")
async def stats():
    return {"name": NAME, **STATS}


@app.get("/items")
async def list_items():
    return {"items": list(ITEMS.values())}


@app.post("/items", status_code=201)
async def create_item(item: dict):
    item_id = str(len(ITEMS) + 1)
    while item_id in ITEMS:
        item_id = str(int(item_id) + 1)
    ITEMS[item_id] = {"id": item_id, **item}
    return ITEMS[item_id]


@app.get("/items/{item_id}")
async def get_item(item_id: str):
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="no such item")
    return ITEMS[item_id]


@app.put("/items/{item_id}")
async def put_item(item_id: str, item: dict):
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="no such item")
    ITEMS[item_id] = {"id": item_id, **item}
    return ITEMS[item_id]


@app.delete("/items/{item_id}", status_code=204)
async def delete_item(item_id: str):
    if ITEMS.pop(item_id, None) is None:
        raise HTTPException(status_code=404, detail="no such item")


@app.api_route("/echo/headers", methods=["GET", "POST", "HEAD", "DELETE", "PUT", "OPTIONS"])
async def echo_headers(request: Request):
    return {"method": request.method, "path": request.url.path, "query": request.url.query,
            "headers": [[k, v] for k, v in request.headers.items()]}


@app.get("/stream")
async def stream(n: int = 5, delay: float = 0.2):
    async def gen():
        for i in range(n):
            yield f"chunk {i} {time.time():.3f}\n"
            await asyncio.sleep(delay)
    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/sse")
async def sse(n: int = 3, delay: float = 0.5):
    async def gen():
        for i in range(n):
            yield f"id: {i}\ndata: {time.time():.3f}\n\n"
            await asyncio.sleep(delay)
    return StreamingResponse(gen(), media_type="text/event-stream")


@app.post("/upload")
async def upload(request: Request):
    h = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        h.update(chunk)
        size += len(chunk)
    STATS["uploads"] += 1  # a whole body arrived
    return {"sha256": h.hexdigest(), "size": size}


@app.get("/download")
async def download(size: int = 1024 * 1024):
    block = bytes(range(256)) * 256  # 64 KiB pattern

    async def gen():
        left = size
        while left > 0:
            part = block[: min(left, len(block))]
            left -= len(part)
            yield part
    return StreamingResponse(gen(), media_type="application/octet-stream",
                             headers={"content-length": str(size)})


@app.get("/slow")
async def slow(delay: float = 1.0):
    STATS["slow_started"] += 1  # tests wait for this rather than sleep
    await asyncio.sleep(delay)
    return {"slept": delay}


@app.get("/hold")
async def hold(gate: str, tag: str = "", limit: float = 120.0):
    """Answers only once /release?gate=... is called (or after `limit`
    seconds, a bound for a test that died): a request the test knows is
    still in flight, whatever the machine's speed."""
    ev = GATES.setdefault(gate, asyncio.Event())
    ARRIVALS.setdefault(gate, []).append(tag)
    HELD[gate] = HELD.get(gate, 0) + 1
    try:
        await asyncio.wait_for(ev.wait(), limit)
        released = True
    except asyncio.TimeoutError:
        released = False
    finally:
        HELD[gate] -= 1
    return {"gate": gate, "tag": tag, "released": released}


@app.get("/release")
async def release(gate: str):
    GATES.setdefault(gate, asyncio.Event()).set()
    return {"gate": gate}


@app.get("/gate")
async def gate_state(gate: str):
    return {"held": HELD.get(gate, 0), "arrivals": ARRIVALS.get(gate, [])}


@app.get("/status/{code}")
async def status(code: int):
    return JSONResponse({"code": code}, status_code=code)


@app.get("/usage")
async def usage(tokens: str = "0"):
    # what the request "cost", for rate_limit reconcile
    return JSONResponse({"tokens": tokens}, headers={"x-tokens-used": tokens})


@app.get("/text")
async def text():
    return PlainTextResponse("hello from " + NAME + "\n")


@app.get("/compressible")
async def compressible(size: int = 20000, encoded: int = 0, no_transform: int = 0, etag: int = 0,
                       ctype: str = "text/plain"):
    """Text that compresses well, exactly `size` bytes (the compress filter's tests)."""
    import gzip as gz
    body = "".join(f"line {i} of a response that compresses well\n" for i in range(size // 20 + 1))[:size].encode()
    headers = {}
    if encoded:
        body = gz.compress(b"x" * size)
        headers["content-encoding"] = "gzip"
    if no_transform:
        headers["cache-control"] = "public, no-transform"
    if etag:
        headers["etag"] = '"v1"'
    return PlainTextResponse(body, headers=headers, media_type=ctype)


@app.websocket("/ws")
async def ws_echo(ws: WebSocket):
    await ws.accept()
    try:
        while True:
            msg = await ws.receive()
            if msg.get("type") == "websocket.disconnect":
                break
            if msg.get("text") is not None:
                await ws.send_text("echo: " + msg["text"])
            elif msg.get("bytes") is not None:
                await ws.send_bytes(msg["bytes"])
    except WebSocketDisconnect:
        pass


# ---- the cache filter's tests: responses whose caching headers the test
# chooses, an upstream that counts its calls and remembers what it saw ----

CACHE = {}      # name -> {"calls": n, "seen": [request headers, oldest first], "etag": current, "fail": status}


@app.api_route("/cached/{name}", methods=["GET", "HEAD", "POST", "PUT", "DELETE"])
async def cached(name: str, request: Request, cc: str = "", etag: str = "", lm: str = "", vary: str = "",
                 status: int = 200, size: int = 0, gate: str = "", cookie: int = 0, expires: str = "",
                 age: str = "", chunked: int = 0):
    """Counts the call, may wait at a gate, then answers with the caching
    headers the query names; a conditional request that matches the
    current validators gets a 304."""
    from fastapi.responses import Response
    st = CACHE.setdefault(name, {"calls": 0, "seen": [], "etag": None, "fail": 0})
    st["calls"] += 1
    st["seen"].append({k.lower(): v for k, v in request.headers.items()})
    del st["seen"][:-50]
    if gate:
        ev = GATES.setdefault(gate, asyncio.Event())
        HELD[gate] = HELD.get(gate, 0) + 1
        try:
            await asyncio.wait_for(ev.wait(), 120)
        finally:
            HELD[gate] -= 1
    if request.method in ("POST", "PUT", "DELETE"):
        data = await request.body()
        st["seen"][-1]["x-body-length"] = str(len(data))
        st["seen"][-1]["x-body-sha256"] = hashlib.sha256(data).hexdigest()
        return JSONResponse({"name": name, "method": request.method, "calls": st["calls"], "length": len(data)},
                            status_code=status)
    if st["fail"]:
        return JSONResponse({"failing": True}, status_code=st["fail"])
    headers = {}
    if cc:
        headers["cache-control"] = cc
    tag = st["etag"] or (f'"{etag}"' if etag else None)
    if tag:
        headers["etag"] = tag
    if lm:
        headers["last-modified"] = lm
    if expires:
        headers["expires"] = expires
    if age:
        headers["age"] = age
    varied = ""
    if vary:
        headers["vary"] = vary
        varied = "|".join(f"{h}={request.headers.get(h, '')}" for h in vary.split(","))
    if cookie:
        headers["set-cookie"] = "session=abc"
    inm = request.headers.get("if-none-match")
    ims = request.headers.get("if-modified-since")
    if (tag and inm and tag in [t.strip() for t in inm.split(",")]) or (not inm and lm and ims == lm):
        return Response(status_code=304, headers=headers)
    body = f"{name} call={st['calls']} {varied}\n"
    if size > len(body):
        body += "x" * (size - len(body))
    if chunked:  # no Content-Length: the length is known only at the end
        async def gen():
            for i in range(0, len(body), 1000):
                yield body[i:i + 1000].encode()
        return StreamingResponse(gen(), status_code=status, headers=headers, media_type="text/plain")
    return Response(body, status_code=status, headers=headers, media_type="text/plain")


@app.get("/cached-state/{name}")
async def cached_state(name: str):
    st = CACHE.get(name, {"calls": 0, "seen": [], "etag": None, "fail": 0})
    return {"calls": st["calls"], "seen": st["seen"][-5:], "held": HELD.get(name, 0)}


@app.get("/cached-set/{name}")
async def cached_set(name: str, etag: str = "", fail: int = 0):
    """Changes what the next answers say: a new entity tag, or failing with `fail`."""
    st = CACHE.setdefault(name, {"calls": 0, "seen": [], "etag": None, "fail": 0})
    if etag:
        st["etag"] = f'"{etag}"'
    st["fail"] = fail
    return {"ok": True}
