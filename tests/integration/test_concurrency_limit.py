"""concurrency_limit: at most N requests in flight per key, exact across
two workers; over the cap 429 (gRPC RESOURCE_EXHAUSTED) at once, or a
FIFO wait bounded by queue and queue_timeout. A slot is given back
exactly once on every path: the response ends, the client goes away
mid-request, the upstream resets, a WebSocket closes, a gRPC call ends —
and across a reload. A waiter sleeps until the release wakes it. Each
wait is bounded and polls for its effect."""
import asyncio
import concurrent.futures
import os
import socket
import time

import grpc
import requests
import websockets

import harness

SVC = "/test.v1.Echo/"
ADMIN = {"X-Tollgate-Admin": "1"}


def wait_for(fn, want, timeout=30):
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
        cls.gateway = harness.Gateway(cls.config(2), port=cls.port, log_level="debug")  # queued lines

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

    def get(self, user, path="/whoami", queue=None, timeout=15):
        h = {"x-user": user}
        if queue:
            h["x-queue"] = queue
        return requests.get(self.gateway.url(path), headers=h, timeout=timeout)

    def hold(self, user, n, queue=None):
        """n requests in flight for user, held at a gate on the upstream
        until gate.release(); returns the pool, the futures and the gate."""
        gate = harness.Gate(self.app.port)
        pool = concurrent.futures.ThreadPoolExecutor(n)
        futs = [pool.submit(self.get, user, gate.path(i), queue) for i in range(n)]
        gate.wait_held(n)
        return pool, futs, gate

    def queued_lines(self):
        return self.gateway.proc.output().count("concurrency_limit: queued")

    def wait_queued(self, n):
        harness.wait_until(lambda: self.queued_lines() >= n, what=f"{n} requests queued (debug log)")

    def metric(self, name, route):
        m = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text
        return harness.metric(m, name, route=route)

    def raw_get(self, user, path, queue=None):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        q = f"x-queue: {queue}\r\n" if queue else ""
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nx-user: {user}\r\n{q}\r\n".encode())
        return s

    def test_cap_is_exact_and_slots_come_back(self):
        limited0 = self.metric("tollgate_concurrency_limited_total", "capped")
        pool, futs, gate = self.hold("cap-a", 2)
        r = self.get("cap-a")
        self.assertEqual(r.status_code, 429)
        self.assertFalse(any(f.done() for f in futs))  # at once, not after the others
        self.assertEqual(r.headers["retry-after"], "1")
        self.assertEqual(self.get("cap-b").status_code, 200)  # another key
        gate.release()
        self.assertEqual([f.result().status_code for f in futs], [200, 200])
        pool.shutdown()
        self.assertEqual([self.get("cap-a").status_code for _ in range(3)], [200] * 3)
        self.assertEqual(self.metric("tollgate_concurrency_limited_total", "capped"), limited0 + 1)

    def test_exact_across_workers_under_a_burst(self):
        gate = harness.Gate(self.app.port)
        with concurrent.futures.ThreadPoolExecutor(12) as ex:
            futs = [ex.submit(self.get, "burst", gate.path(i)) for i in range(12)]
            # while two are held upstream, the other ten are refused
            harness.wait_until(lambda: sum(f.done() for f in futs) >= 10, what="ten refusals")
            self.assertEqual(gate.held(), 2)
            self.assertEqual(sorted(f.result().status_code for f in futs if f.done()), [429] * 10)
            gate.release()
            codes = sorted(f.result().status_code for f in futs)
        self.assertEqual(codes, [200] * 2 + [429] * 10)
        self.assertEqual(len(gate.arrivals()), 2)

    def test_client_abort_gives_the_slot_back(self):
        gate = harness.Gate(self.app.port)
        socks = [self.raw_get("abort", gate.path(i)) for i in range(2)]
        gate.wait_held(2)
        self.assertEqual(self.get("abort").status_code, 429)
        for s in socks:
            s.close()  # the clients go away mid-request
        self.assertEqual(wait_for(lambda: self.get("abort").status_code, 200), 200)
        self.assertEqual(wait_for(lambda: self.get("abort").status_code, 200), 200)
        gate.release()

    def test_upstream_reset_gives_the_slot_back(self):
        self.assertEqual([self.get("rst", "/reset").status_code for _ in range(3)], [502] * 3)

    def test_queue_waits_in_order_and_times_out(self):
        queued0 = self.metric("tollgate_concurrency_queued_total", "queued")
        lines0 = self.queued_lines()
        pool, first, gate = self.hold("q", 1, queue="long")
        order = harness.Gate(self.app.port)
        order.release()  # open: it only records the order the waiters reach the upstream in
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            waiting = []
            for i in range(2):  # one after the other, each in the queue before the next
                waiting.append(ex.submit(self.get, "q", order.path(f"w{i}"), "long"))
                self.wait_queued(lines0 + i + 1)
            r = self.get("q", "/whoami", "long")
            self.assertEqual(r.status_code, 429)  # the queue is full: at once
            self.assertIn("too many requests", r.json()["error"])
            self.assertFalse(any(f.done() for f in waiting))
            gate.release()  # the slot passes to the waiters, first come first served
            self.assertEqual([f.result().status_code for f in waiting], [200, 200])
        self.assertEqual(order.arrivals(), ["w0", "w1"])
        self.assertEqual(first[0].result().status_code, 200)
        pool.shutdown()
        self.assertEqual(self.metric("tollgate_concurrency_queued_total", "queued"), queued0 + 2)
        # queue_timeout: refused after waiting, the slot holder unharmed
        pool, first, gate = self.hold("q2", 1, queue="short")
        t0 = time.monotonic()
        r = self.get("q2", "/whoami", "short")
        waited = time.monotonic() - t0
        self.assertEqual(r.status_code, 429)
        self.assertIn("waited too long", r.json()["error"])
        self.assertGreaterEqual(waited, 0.29)  # it waited its queue_timeout (300ms) first
        self.assertFalse(first[0].done())      # and gave up while the holder still held the slot
        gate.release()
        self.assertEqual(first[0].result().status_code, 200)
        pool.shutdown()
        self.assertEqual(self.get("q2", "/whoami", "short").status_code, 200)

    def context_switches(self):
        """Voluntary context switches of every gateway thread so far: a
        thread that sleeps in its loop until woken adds none."""
        total, pid = 0, self.gateway.proc.p.pid
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    total += next(int(l.split()[1]) for l in f if l.startswith("voluntary_ctxt_switches"))
            except (FileNotFoundError, StopIteration):
                pass
        return total

    def test_waiter_sleeps_until_a_release_wakes_it(self):
        """A queued request costs nothing while it waits (no polling: a
        poll every few ms would wake its worker hundreds of times in the
        second it waits here), and the release wakes it at once."""
        lines0 = self.queued_lines()
        pool, first, gate = self.hold("sl", 1, queue="long")
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            waiting = ex.submit(self.get, "sl", "/whoami", "long")
            self.wait_queued(lines0 + 1)
            before = self.context_switches()
            time.sleep(1.0)
            woke = self.context_switches() - before
            self.assertLess(woke, 100, "the gateway's threads woke up while a request only waited")
            self.assertFalse(waiting.done())
            gate.release()
            self.assertEqual(waiting.result().status_code, 200)
        self.assertEqual(first[0].result().status_code, 200)
        pool.shutdown()

    def test_queued_client_that_leaves_frees_its_place(self):
        lines0 = self.queued_lines()
        pool, first, gate = self.hold("qa", 1, queue="long")
        s = self.raw_get("qa", "/whoami", "long")
        self.wait_queued(lines0 + 1)
        s.close()  # gave up while waiting
        # its place is free again: two more wait (the queue holds 2), and a third is refused
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            rs = []
            for i in range(2):
                rs.append(ex.submit(self.get, "qa", "/whoami", "long"))
                self.wait_queued(lines0 + 2 + i)
            self.assertEqual(self.get("qa", "/whoami", "long").status_code, 429)
            gate.release()
            self.assertEqual([f.result().status_code for f in rs], [200, 200])
        self.assertEqual(first[0].result().status_code, 200)
        pool.shutdown()

    def test_grpc_calls(self):
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as ch:
            hold, sleep = ch.unary_unary(SVC + "Hold"), ch.unary_unary(SVC + "Sleep")
            md = (("x-user", "grpc-u"),)
            fut = hold.future(b"conc-grpc", metadata=md, timeout=60)
            with grpc.insecure_channel(f"127.0.0.1:{self.echo.port}") as direct:
                held = direct.unary_unary(SVC + "Held")
                harness.wait_until(lambda: held(b"conc-grpc", timeout=5) == b"1", what="the call held upstream")
                with self.assertRaises(grpc.RpcError) as e:
                    sleep(b"0", metadata=md, timeout=5)
                self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
                self.assertFalse(fut.done())
                direct.unary_unary(SVC + "Release")(b"conc-grpc", timeout=5)
            self.assertEqual(fut.result(), b"released")
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
        pool, futs, gate = self.hold("rl", 2)
        with open(self.gateway.path + ".tmp", "w") as f:
            f.write(self.config(2) + "# reloaded\n")
        os.replace(self.gateway.path + ".tmp", self.gateway.path)
        r = requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers=ADMIN, timeout=10)
        self.assertEqual(r.json()["status"], "ok")
        self.assertEqual(self.get("rl").status_code, 429)  # the two started before still count
        gate.release()
        self.assertEqual([f.result().status_code for f in futs], [200, 200])
        pool.shutdown()
        # given back to the same table: both slots free again, two held at once
        pool, futs, gate = self.hold("rl", 2)
        self.assertEqual(self.get("rl").status_code, 429)
        gate.release()
        self.assertEqual([f.result().status_code for f in futs], [200, 200])
        pool.shutdown()


if __name__ == "__main__":
    harness.main()
