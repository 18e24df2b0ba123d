"""Metrics checked against what the test did: the duration histogram's
buckets, sum and count agree with each other and with the requests made;
aborted requests, upstream resets and timeouts, active and HTTP/2
connections and streams move by exactly what the test caused; the workers
gauge and the start time are right."""
import socket
import subprocess
import time

import requests

import harness


class MetricsTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("metered")
        cls.reset = harness.ScriptedServer(harness.reset_handler)
        cls.procs = [cls.app]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cfg = f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
  - name: hist
    match: {{ headers: [{{ name: x-route, value: hist }}] }}
    cluster: app
  - name: abort
    match: {{ headers: [{{ name: x-route, value: abort }}] }}
    cluster: app
  - name: timed
    match: {{ headers: [{{ name: x-route, value: timed }}] }}
    cluster: app
    timeout: 300ms
  - name: reset
    match: {{ path_prefix: /reset }}
    cluster: rst
  - name: default
    cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
  - name: rst
    endpoints: [127.0.0.1:{cls.reset.port}]
"""
        cls.t_before = time.time()
        cls.gateway = harness.Gateway(cfg, port=cls.port)
        cls.t_after = time.time()
        cls.app_ep = f"127.0.0.1:{cls.app.port}"

    @classmethod
    def tearDownClass(cls):
        cls.reset.stop()
        cls.finish()

    def metrics(self):
        return requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text

    def value(self, name, **labels):
        return harness.metric(self.metrics(), name, **labels)

    def wait_value(self, want, name, **labels):
        """Workers count an exchange as it ends, which may be just after the
        client has its answer: wait (bounded) for the value."""
        deadline, got = time.time() + 30, None
        while time.time() < deadline:
            got = self.value(name, **labels)
            if got == want:
                return
            time.sleep(0.02)
        self.assertEqual(got, want, f"{name}{labels}")

    def slow_started(self):
        return requests.get(f"http://127.0.0.1:{self.app.port}/stats", timeout=5).json()["slow_started"]

    def test_process_gauges(self):
        m = self.metrics()
        self.assertEqual(harness.metric(m, "tollgate_workers"), 2)
        start = harness.metric(m, "tollgate_start_time_seconds")
        self.assertTrue(int(self.t_before) - 1 <= start <= self.t_after + 1, (self.t_before, start, self.t_after))

    def test_duration_histogram_is_consistent(self):
        """20 requests, each held 50 ms by the upstream: count 20, +Inf 20,
        cumulative buckets, none at or under 25 ms, and a sum between the
        upstream's 20 x 50 ms and the clients' own wall time."""
        t0 = time.time()
        s = requests.Session()
        for _ in range(20):
            self.assertEqual(s.get(self.gateway.url("/slow?delay=0.05"), headers={"x-route": "hist"}, timeout=10).status_code, 200)
        wall = time.time() - t0
        self.wait_value(20, "tollgate_request_duration_seconds_count", route="hist")
        m = self.metrics()
        les = ["0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
        buckets = [harness.metric(m, "tollgate_request_duration_seconds_bucket", route="hist", le=le) for le in les]
        self.assertEqual(buckets, sorted(buckets))  # cumulative
        self.assertEqual(buckets[-1], 20)
        self.assertEqual(buckets[les.index("0.025")], 0)
        total = harness.metric(m, "tollgate_request_duration_seconds_sum", route="hist")
        self.assertTrue(20 * 0.05 <= total <= wall, (total, wall))

    def test_aborted_request_counted(self):
        before = self.value("tollgate_requests_aborted_total", route="abort")
        started = self.slow_started()
        c = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        c.sendall(b"GET /slow?delay=3 HTTP/1.1\r\nHost: x\r\nx-route: abort\r\n\r\n")
        deadline = time.time() + 30
        while self.slow_started() == started and time.time() < deadline:  # in flight upstream
            time.sleep(0.02)
        c.close()  # the client leaves before the answer
        self.wait_value(before + 1, "tollgate_requests_aborted_total", route="abort")

    def test_upstream_timeout_counted(self):
        before = self.value("tollgate_upstream_timeouts_total", cluster="app", endpoint=self.app_ep)
        r = requests.get(self.gateway.url("/slow?delay=5"), headers={"x-route": "timed"}, timeout=10)
        self.assertEqual(r.status_code, 504)
        self.wait_value(before + 1, "tollgate_upstream_timeouts_total", cluster="app", endpoint=self.app_ep)

    def test_upstream_reset_counted(self):
        ep = f"127.0.0.1:{self.reset.port}"
        before = self.value("tollgate_upstream_resets_total", cluster="rst", endpoint=ep)
        r = requests.get(self.gateway.url("/reset"), timeout=10)
        self.assertEqual(r.status_code, 502)
        self.wait_value(before + 1, "tollgate_upstream_resets_total", cluster="rst", endpoint=ep)

    def test_active_downstream_connections(self):
        base = self.value("tollgate_downstream_connections_active", listener="main")
        socks = []
        try:
            for _ in range(3):
                c = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                c.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertTrue(c.recv(65536).startswith(b"HTTP/1.1 200"))  # accepted and kept open
                socks.append(c)
            self.wait_value(base + 3, "tollgate_downstream_connections_active", listener="main")
        finally:
            for c in socks:
                c.close()
        self.wait_value(base, "tollgate_downstream_connections_active", listener="main")

    def test_http2_connections_and_streams(self):
        conns = self.value("tollgate_http2_connections_total", listener="main")
        streams = self.value("tollgate_http2_streams_total", listener="main")
        p = subprocess.run(["h2load", "-n", "2", "-c", "1", "-m", "1", self.gateway.url("/whoami")],
                           capture_output=True, text=True, timeout=60)  # two requests, one connection
        self.assertIn("2 succeeded", p.stdout, p.stdout + p.stderr)
        self.wait_value(conns + 1, "tollgate_http2_connections_total", listener="main")
        self.wait_value(streams + 2, "tollgate_http2_streams_total", listener="main")


if __name__ == "__main__":
    harness.main()
