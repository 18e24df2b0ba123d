"""concurrency_limit: at most N requests in flight per key, exact across
two workers; over the cap 429 (gRPC RESOURCE_EXHAUSTED) at once, or a
FIFO wait bounded by queue and queue_timeout. A slot is given back
exactly once on every path: the response ends, the client goes away
mid-request, the upstream resets, a WebSocket closes, a gRPC call ends —
and across a reload. Each wait is bounded and polls for its effect."""
import asyncio
import concurrent.futures
import os
import socket
import threading
import time
import unittest

import grpc
import requests
import websockets

import harness

SVC = "/test.v1.Echo/"
ADMIN = {"X-Tollgate-Admin": "1"}


def wait_for(fn, want, timeout=10):
    deadline, got = time.time() + timeout, None
    while time.time() < deadline:
        got = fn()
        if got == want:
            return got
        time.sleep(0.05)
    return got


class ConcurrencyLimitTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("conc")
        cls.echo = harness.start_grpc_backend("conc-echo")
        cls.reset = harness.ScriptedServer(harness.reset_handler)
        cls.procs = [cls.app, cls.echo]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.gateway = harness.Gateway(cls.config(2), port=cls.port)

    @classmethod
    def config(cls, limit):
        return f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
routes:
  - name: grpc
    match: {{ grpc_service: test.v1.Echo }}
    cluster: echo
    filters: [{{ concurrency_limit: {{ key: "header:x-user", limit: 1 }} }}]
  - name: queued
    match: {{ headers: [{{ name: x-queue, value: "long" }}] }}
    cluster: app
    filters: [{{ concurrency_limit: {{ key: "header:x-user", limit: 1, queue: 2, queue_timeout: 10s }} }}]
  - name: impatient
    match: {{ headers: [{{ name: x-queue, value: "short" }}] }}
    cluster: app
    filters: [{{ concurrency_limit: {{ key: "header:x-user", limit: 1, queue: 1, queue_timeout: 300ms }} }}]
  - name: resets
    match: {{ path_prefix: /reset }}
    cluster: rst
    filters: [{{ concurrency_limit: {{ key: "header:x-user", limit: 1 }} }}]
  - name: ws
    match: {{ path_prefix: /ws }}
    cluster: app
    filters: [{{ concurrency_limit: {{ key: client_address, limit: 1 }} }}]
  - name: capped
    cluster: app
    filters: [{{ concurrency_limit: {{ key: "header:x-user", limit: {limit} }} }}]
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}
  - {{ name: echo, protocol: h2c, endpoints: [127.0.0.1:{cls.echo.port}] }}
  - {{ name: rst, endpoints: [127.0.0.1:{cls.reset.port}] }}
"""

    @classmethod
    def tearDownClass(cls):
        cls.reset.stop()
        cls.finish()

    def started(self):
        return requests.get(f"http://127.0.0.1:{self.app.port}/stats", timeout=5).json()["slow_started"]

    def get(self, user, path="/whoami", queue=None, timeout=15):
        h = {"x-user": user}
        if queue:
            h["x-queue"] = queue
        return requests.get(self.gateway.url(path), headers=h, timeout=timeout)

    def hold(self, user, n, delay, queue=None):
        """n slow requests in flight for user; returns the pool and futures."""
        before = self.started()
        pool = concurrent.futures.ThreadPoolExecutor(n)
        futs = [pool.submit(self.get, user, f"/slow?delay={delay}", queue) for _ in range(n)]
        self.assertEqual(wait_for(self.started, before + n), before + n)  # all upstream
        return pool, futs

    def metric(self, name, route):
        m = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text
        return harness.metric(m, name, route=route)

    def raw_slow(self, user, delay):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(f"GET /slow?delay={delay} HTTP/1.1\r\nHost: x\r\nx-user: {user}\r\n\r\n".encode())
        return s

    def test_cap_is_exact_and_slots_come_back(self):
        limited0 = self.metric("tollgate_concurrency_limited_total", "capped")
        pool, futs = self.hold("cap-a", 2, 1.5)
        t0 = time.time()
        r = self.get("cap-a")
        self.assertEqual(r.status_code, 429)  # at once, not after the others
        self.assertLess(time.time() - t0, 1.0)
        self.assertEqual(r.headers["retry-after"], "1")
        self.assertEqual(self.get("cap-b").status_code, 200)  # another key
        self.assertEqual([f.result().status_code for f in futs], [200, 200])
        pool.shutdown()
        self.assertEqual([self.get("cap-a").status_code for _ in range(3)], [200] * 3)
        self.assertEqual(self.metric("tollgate_concurrency_limited_total", "capped"), limited0 + 1)

    def test_exact_across_workers_under_a_burst(self):
        before = self.started()
        with concurrent.futures.ThreadPoolExecutor(12) as ex:
            futs = [ex.submit(self.get, "burst", "/slow?delay=1") for _ in range(12)]
            codes = sorted(f.result().status_code for f in futs)
        self.assertEqual(codes, [200] * 2 + [429] * 10)
        self.assertEqual(self.started(), before + 2)

    def test_client_abort_gives_the_slot_back(self):
        before = self.started()
        socks = [self.raw_slow("abort", 5) for _ in range(2)]
        self.assertEqual(wait_for(self.started, before + 2), before + 2)
        self.assertEqual(self.get("abort").status_code, 429)
        for s in socks:
            s.close()  # the clients go away mid-request
        self.assertEqual(wait_for(lambda: self.get("abort").status_code, 200), 200)
        self.assertEqual(wait_for(lambda: self.get("abort").status_code, 200), 200)

    def test_upstream_reset_gives_the_slot_back(self):
        self.assertEqual([self.get("rst", "/reset").status_code for _ in range(3)], [502] * 3)

    def test_queue_waits_in_order_and_times_out(self):
        queued0 = self.metric("tollgate_concurrency_queued_total", "queued")
        pool, first = self.hold("q", 1, 1.0, queue="long")
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            waiting = [ex.submit(self.get, "q", "/whoami", "long") for _ in range(2)]
            time.sleep(0.3)  # both in the queue (2 places)
            r = self.get("q", "/whoami", "long")
            self.assertEqual(r.status_code, 429)  # the queue is full: at once
            self.assertEqual([f.result().status_code for f in waiting], [200, 200])
        self.assertEqual(first[0].result().status_code, 200)
        pool.shutdown()
        self.assertEqual(self.metric("tollgate_concurrency_queued_total", "queued"), queued0 + 2)
        # queue_timeout: refused after waiting, the slot holder unharmed
        pool, first = self.hold("q2", 1, 1.5, queue="short")
        t0 = time.time()
        r = self.get("q2", "/whoami", "short")
        waited = time.time() - t0
        self.assertEqual(r.status_code, 429)
        self.assertIn("waited too long", r.json()["error"])
        self.assertGreater(waited, 0.25)
        self.assertLess(waited, 1.4)
        self.assertEqual(first[0].result().status_code, 200)
        pool.shutdown()
        self.assertEqual(self.get("q2", "/whoami", "short").status_code, 200)

    def test_queued_client_that_leaves_frees_its_place(self):
        pool, first = self.hold("qa", 1, 1.0, queue="long")
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\nx-user: qa\r\nx-queue: long\r\n\r\n")
        time.sleep(0.2)
        s.close()  # gave up while waiting
        with concurrent.futures.ThreadPoolExecutor(2) as ex:  # two places are free again
            rs = [ex.submit(self.get, "qa", "/whoami", "long") for _ in range(2)]
            self.assertEqual([f.result().status_code for f in rs], [200, 200])
        self.assertEqual(first[0].result().status_code, 200)
        pool.shutdown()

    def test_grpc_calls(self):
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as ch:
            sleep = ch.unary_unary(SVC + "Sleep")
            md = (("x-user", "grpc-u"),)
            fut = sleep.future(b"1", metadata=md, timeout=10)
            time.sleep(0.3)
            with self.assertRaises(grpc.RpcError) as e:
                sleep(b"0", metadata=md, timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            fut.result()
            self.assertEqual(sleep(b"0", metadata=md, timeout=5), b"slept")

    def test_websocket_holds_its_slot_until_closed(self):
        url = f"ws://127.0.0.1:{self.port}/ws"

        async def run():
            async with websockets.connect(url, open_timeout=5) as ws:
                await ws.send("hi")
                self.assertEqual(await ws.recv(), "echo: hi")
                with self.assertRaises(Exception) as e:  # a second tunnel from the same address
                    async with websockets.connect(url, open_timeout=5):
                        pass
                self.assertIn("429", str(e.exception))
            for _ in range(100):  # closed: the slot comes back
                try:
                    async with websockets.connect(url, open_timeout=5) as ws:
                        await ws.send("again")
                        return await ws.recv()
                except Exception:
                    await asyncio.sleep(0.05)
        self.assertEqual(asyncio.run(run()), "echo: again")

    def test_reload_keeps_in_flight_slots(self):
        pool, futs = self.hold("rl", 2, 1.5)
        with open(self.gateway.path + ".tmp", "w") as f:
            f.write(self.config(2) + "# reloaded\n")
        os.replace(self.gateway.path + ".tmp", self.gateway.path)
        r = requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers=ADMIN, timeout=10)
        self.assertEqual(r.json()["status"], "ok")
        self.assertEqual(self.get("rl").status_code, 429)  # the two started before still count
        self.assertEqual([f.result().status_code for f in futs], [200, 200])
        pool.shutdown()
        # given back to the same table: both slots free again
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            before = self.started()
            rs = [ex.submit(self.get, "rl", "/slow?delay=0.5") for _ in range(2)]
            self.assertEqual([f.result().status_code for f in rs], [200, 200])
            self.assertEqual(self.started(), before + 2)


if __name__ == "__main__":
    unittest.main()
