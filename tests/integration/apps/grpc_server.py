"""A gRPC backend for tollgate's tests, built on python3-grpcio's generic
handlers (raw bytes in and out, no protoc): every call kind, status codes
with trailing metadata, large messages, slow calls whose cancellation is
recorded, and the standard health-check service.

    python3 grpc_server.py PORT NAME [--tls CERT KEY [--client-ca CA]]
"""
import argparse
import threading
import time
from concurrent import futures

import grpc

SERVICE = "test.v1.Echo"
MAX = 32 * 1024 * 1024


class State:
    def __init__(self, name):
        self.name = name.encode()
        self.lock = threading.Lock()
        self.cancelled = 0
        self.calls = 0
        self.last_metadata = {}
        self.gates = {}     # name -> threading.Event: Hold waits until Release sets it
        self.held = {}      # name -> calls waiting at that gate now


def handlers(st):
    def count(ctx):
        with st.lock:
            st.calls += 1
            st.last_metadata = dict(ctx.invocation_metadata())

    def who(req, ctx):
        count(ctx)
        return st.name

    def echo(req, ctx):
        count(ctx)
        ctx.send_initial_metadata((("x-initial", "hello"),))
        ctx.set_trailing_metadata((("x-trailer", "bye"), ("x-bin-bin", b"\x00\x01\x02")))
        return req

    def usage(req, ctx):
        # what the call "cost": the request's bytes, as text, in a trailer
        count(ctx)
        ctx.set_trailing_metadata((("x-tokens-used", req.decode() if req else "0"),))
        return b"done"

    def fail(req, ctx):
        count(ctx)
        code = int(req.decode() or "2")
        ctx.set_trailing_metadata((("x-why", "asked-to-fail"),))
        ctx.abort(grpc.StatusCode([c for c in grpc.StatusCode if c.value[0] == code][0]), "failed on purpose")

    def fail_after_headers(req, ctx):
        count(ctx)
        ctx.send_initial_metadata((("x-initial", "hello"),))
        ctx.set_trailing_metadata((("x-why", "asked-to-fail"),))
        ctx.abort(grpc.StatusCode.ABORTED, "failed after headers")

    def sleep(req, ctx):
        count(ctx)
        seconds = float(req.decode() or "5")

        deadline = time.time() + seconds
        while time.time() < deadline:
            if not ctx.is_active():
                with st.lock:
                    st.cancelled += 1
                return b""
            time.sleep(0.02)
        return b"slept"

    def remaining(req, ctx):
        count(ctx)
        left = ctx.time_remaining()
        return b"none" if left is None else f"{left:.3f}".encode()

    def cancelled(req, ctx):
        with st.lock:
            return str(st.cancelled).encode()

    def metadata(req, ctx):
        with st.lock:
            return repr(sorted(st.last_metadata.items())).encode()

    def server_stream(req, ctx):
        count(ctx)
        n, size = (int(x) for x in req.decode().split(","))
        for i in range(n):
            yield bytes([i % 256]) * size
        ctx.set_trailing_metadata((("x-count", str(n)),))

    def client_stream(it, ctx):
        count(ctx)
        total, msgs = 0, 0
        for m in it:
            total += len(m)
            msgs += 1
        return f"{msgs},{total}".encode()

    def bidi(it, ctx):
        count(ctx)
        for m in it:
            yield st.name + b":" + m

    def slow_stream(req, ctx):
        count(ctx)
        finished = []

        def on_end():  # runs when the call ends, however it ends
            if not finished:
                with st.lock:
                    st.cancelled += 1
        # (after a cancel grpcio stops pulling from this generator, so the
        # generator itself may never get to see it)
        ctx.add_callback(on_end)
        for i in range(1000):
            yield b"tick"
            time.sleep(0.05)
        finished.append(True)

    def hold(req, ctx):
        # answers once Release(name) is called (or after 120 s, a bound for
        # a test that died): a call the test knows is still in flight
        count(ctx)
        name = req.decode()
        with st.lock:
            ev = st.gates.setdefault(name, threading.Event())
            st.held[name] = st.held.get(name, 0) + 1
        try:
            return b"released" if ev.wait(120) else b"expired"
        finally:
            with st.lock:
                st.held[name] -= 1

    def release(req, ctx):
        with st.lock:
            st.gates.setdefault(req.decode(), threading.Event()).set()
        return b""

    def held(req, ctx):
        with st.lock:
            return str(st.held.get(req.decode(), 0)).encode()

    def health(req, ctx):
        return b"\x08\x01"  # HealthCheckResponse { status: SERVING }

    methods = {
        "Who": grpc.unary_unary_rpc_method_handler(who),
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Usage": grpc.unary_unary_rpc_method_handler(usage),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "FailAfterHeaders": grpc.unary_unary_rpc_method_handler(fail_after_headers),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
        "Cancelled": grpc.unary_unary_rpc_method_handler(cancelled),
        "Remaining": grpc.unary_unary_rpc_method_handler(remaining),
        "Metadata": grpc.unary_unary_rpc_method_handler(metadata),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "SlowStream": grpc.unary_stream_rpc_method_handler(slow_stream),
        "Hold": grpc.unary_unary_rpc_method_handler(hold),
        "Release": grpc.unary_unary_rpc_method_handler(release),
        "Held": grpc.unary_unary_rpc_method_handler(held),
    }
    return (grpc.method_handlers_generic_handler(SERVICE, methods),
            grpc.method_handlers_generic_handler("grpc.health.v1.Health",
                                                 {"Check": grpc.unary_unary_rpc_method_handler(health)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("name")
    ap.add_argument("--tls", nargs=2)
    ap.add_argument("--client-ca")
    a = ap.parse_args()
    st = State(a.name)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64),
                         options=[("grpc.max_receive_message_length", MAX),
                                  ("grpc.max_send_message_length", MAX),
                                  ("grpc.max_concurrent_streams", 1000)])
    server.add_generic_rpc_handlers(handlers(st))
    addr = f"127.0.0.1:{a.port}"
    if a.tls:
        cert, key = (open(p, "rb").read() for p in a.tls)
        ca = open(a.client_ca, "rb").read() if a.client_ca else None
        creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
        server.add_secure_port(addr, creds)
    else:
        server.add_insecure_port(addr)
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
