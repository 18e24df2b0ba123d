"""retry: a flaky upstream (503s, resets, dead endpoints) is retried with
backoff for idempotent requests and a replayable body; POST is not retried
unless configured; a body over the replay buffer is not retried, and that
is counted; the retry budget caps retries when everything fails."""
import concurrent.futures
import threading
import time

import requests

import harness


class Flaky:
    """Answers 503 to the first `fail` requests, then 200 with the body
    length; counts every request it sees."""

    def __init__(self, fail):
        self.fail = fail
        self.seen = 0
        self.lock = threading.Lock()
        self.server = harness.ScriptedServer(self.handle)
        self.port = self.server.port

    def handle(self, c):
        while True:
            head, body = harness.read_request(c)
            if not head:
                return
            with self.lock:
                self.seen += 1
                n = self.seen
            if n <= self.fail:
                c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
            else:
                reply = b"ok %d" % len(body)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(reply), reply))

    def reset(self, fail):
        with self.lock:
            self.fail, self.seen = fail, 0


class RetryTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.flaky = Flaky(0)
        cls.dead = harness.dead_port()
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cfg = f"""
workers: 1
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
routes:
  - name: get
    match: {{ path_prefix: /get }}
    cluster: flaky
    filters:
      - retry: {{ attempts: 3, on: [503], backoff: {{ base: 10ms, max: 50ms }} }}
  - name: post
    match: {{ path_prefix: /post }}
    cluster: flaky
    filters:
      - retry: {{ attempts: 3, on: [503], methods: [POST], backoff: {{ base: 10ms, max: 50ms }} }}
  - name: dead
    match: {{ path_prefix: /dead }}
    cluster: dead
    filters:
      - retry: {{ attempts: 3, on: [connect-failure], backoff: {{ base: 300ms, max: 300ms }} }}
  - name: budget
    match: {{ path_prefix: /budget }}
    cluster: flaky
    filters:
      - retry: {{ attempts: 2, on: [503], backoff: {{ base: 200ms, max: 200ms }}, budget: {{ percent: 0, min_retries: 2 }} }}
  - name: noretry
    cluster: flaky
clusters:
  - name: flaky
    endpoints: [127.0.0.1:{cls.flaky.port}]
  - name: dead
    endpoints: [127.0.0.1:{cls.dead}]
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.flaky.server.stop()
        cls.finish()

    def metrics(self):
        return requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text

    def test_get_recovers_from_503s(self):
        self.flaky.reset(fail=2)
        before = int(harness.metric(self.metrics(), "tollgate_retries_total", route="get"))
        r = requests.get(self.gateway.url("/get"), timeout=5)
        self.assertEqual((r.status_code, r.text), (200, "ok 0"))
        self.assertEqual(self.flaky.seen, 3)
        self.assertEqual(int(harness.metric(self.metrics(), "tollgate_retries_total", route="get")) - before, 2)

    def test_last_attempt_answer_reaches_client(self):
        self.flaky.reset(fail=10)
        r = requests.get(self.gateway.url("/get"), timeout=5)
        self.assertEqual((r.status_code, r.text), (503, "busy"))  # the upstream's own last answer
        self.assertEqual(self.flaky.seen, 3)  # attempts: 3

    def test_post_not_retried_by_default(self):
        self.flaky.reset(fail=1)
        r = requests.post(self.gateway.url("/other"), data=b"x" * 10, timeout=5)
        self.assertEqual(r.status_code, 503)
        self.assertEqual(self.flaky.seen, 1)

    def test_post_retried_when_configured_body_replayed(self):
        self.flaky.reset(fail=1)
        r = requests.post(self.gateway.url("/post"), data=b"y" * 5000, timeout=5)
        self.assertEqual((r.status_code, r.text), (200, "ok 5000"))
        self.assertEqual(self.flaky.seen, 2)

    def test_body_over_replay_buffer_not_retried_and_counted(self):
        self.flaky.reset(fail=1)
        before = int(harness.metric(self.metrics(), "tollgate_retries_skipped_total", route="post"))
        r = requests.post(self.gateway.url("/post"), data=b"z" * 1_000_000, timeout=10)
        self.assertEqual(r.status_code, 503)
        self.assertEqual(self.flaky.seen, 1)
        self.assertEqual(int(harness.metric(self.metrics(), "tollgate_retries_skipped_total", route="post")) - before, 1)

    def test_connect_failure_rounds_with_backoff(self):
        """Each retry waits a full-jitter backoff, uniform in [0, 300 ms] here:
        ten of them cannot add up to under 300 ms unless no backoff is
        applied (odds 1 in 10! otherwise), while connection refusals on
        loopback take well under a millisecond each."""
        before = int(harness.metric(self.metrics(), "tollgate_retries_total", route="dead"))
        t0 = time.time()
        for _ in range(5):
            r = requests.get(self.gateway.url("/dead"), timeout=10)
            self.assertEqual(r.status_code, 503)
        elapsed = time.time() - t0
        self.assertGreater(elapsed, 0.3, "retries went out without waiting")
        after = int(harness.metric(self.metrics(), "tollgate_retries_total", route="dead"))
        self.assertEqual(after - before, 10)  # 3 attempts: 2 retries per request

    def test_budget_caps_retries(self):
        self.flaky.reset(fail=1000)
        before = int(harness.metric(self.metrics(), "tollgate_retries_skipped_total", route="budget"))

        def one(_):
            return requests.get(self.gateway.url("/budget"), timeout=10).status_code
        with concurrent.futures.ThreadPoolExecutor(10) as ex:
            codes = list(ex.map(one, range(10)))
        self.assertEqual(codes, [503] * 10)
        m = self.metrics()
        # only 2 exchanges may be retrying at once; the others fail at once
        self.assertGreater(int(harness.metric(m, "tollgate_retries_skipped_total", route="budget")) - before, 0)
        self.assertLess(self.flaky.seen, 20)


if __name__ == "__main__":
    harness.main()
