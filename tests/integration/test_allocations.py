"""No heap allocation per request after warm-up: keep-alive HTTP/1.1,
HTTP/2 streams to an HTTP/1.1 upstream, and gRPC unary calls over h2c both
ways. The real binary runs with an LD_PRELOAD counter of every
malloc/calloc/realloc (apps/alloc_count.c: tollgate's and its libraries'),
and each load runs twice after a warm-up, with 1,000 and 5,000 requests.
What a run may allocate is bounded by what it opened — client
connections, and the upstream connections the adaptive pool opened in
that run (read from /metrics outside the counted window) — never by how
fast the machine was: a busy machine makes the pool open more
connections, and each may take a block from the C library.

The counter must come first in the process, which AddressSanitizer's
runtime forbids: this runs on the release binary (scripts/test.sh), and a
sanitizer build reports it as skipped."""
import os
import re
import subprocess
import tempfile
import time
import unittest

import harness

EXTRA = 4000         # requests of the second run beyond the first
PER_REQUEST = 0.01   # at most one allocation in a hundred requests (occasional growth of a cache)
PER_CONNECTION = 4   # a connection's structs come from slabs, its buffers from the block cache
PER_IN_FLIGHT = 2    # a request in flight holds blocks: a new peak of them may take new ones


def sanitized():
    out = subprocess.run(["ldd", harness.BIN], capture_output=True, text=True).stdout
    return "libasan" in out or "libubsan" in out


class AllocationsTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        if sanitized():
            raise unittest.SkipTest("[sanitizer-preload] the allocation counter cannot be preloaded before AddressSanitizer")
        cls.dir = tempfile.mkdtemp(prefix="tg-allocs-")
        cls.so = os.path.join(cls.dir, "alloc_count.so")
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", cls.so, os.path.join(harness.APPS, "alloc_count.c"),
                        "-ldl"], check=True)
        cls.count_file = os.path.join(cls.dir, "count")
        cls.app = harness.start_app("alloc-app")
        cls.grpc = harness.start_grpc_backend("alloc-grpc")
        cls.procs = [cls.app, cls.grpc]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.frame = os.path.join(cls.dir, "frame")
        with open(cls.frame, "wb") as f:
            f.write(harness.grpc_frame(b"x" * 16))
        cls.gateway = harness.Gateway(f"""
workers: 1
admin: {{ listen: 127.0.0.1:{cls.admin} }}
listeners:
  - {{ name: main, listen: 127.0.0.1:{cls.port} }}
routes:
  - {{ name: grpc, match: {{ grpc_service: test.v1.Echo }}, cluster: grpc }}
  - {{ name: web, cluster: web }}
clusters:
  - {{ name: web, endpoints: [127.0.0.1:{cls.app.port}] }}
  - {{ name: grpc, protocol: h2c, endpoints: [127.0.0.1:{cls.grpc.port}] }}
""", port=cls.port, log_level="warn", env_extra={"LD_PRELOAD": cls.so, "ALLOC_COUNT_FILE": cls.count_file})

    @classmethod
    def tearDownClass(cls):
        cls.finish()

    def count(self):
        os.kill(self.gateway.proc.pid, 28)  # SIGWINCH: the library writes its count
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with open(self.count_file) as f:
                    text = f.read().strip()
                if text:  # "ALLOCATIONS BYTES_COPIED"
                    os.unlink(self.count_file)
                    return int(text.split()[0])
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        self.fail("the allocation counter did not answer")

    def h2load(self, n, args, path):
        p = subprocess.run(["h2load", "-n", str(n), *args, f"http://127.0.0.1:{self.port}{path}"],
                           capture_output=True, text=True, timeout=300)
        m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", p.stdout)
        self.assertIsNotNone(m, p.stdout + p.stderr)
        self.assertEqual(int(m.group(2)), n, p.stdout)

    def upstream_opened(self):
        text = harness.scrape(self.admin)
        return sum(float(v) for v in re.findall(r"^tollgate_upstream_connections_opened_total\{[^}]*\} (\S+)$",
                                                  text, re.M))

    def run_counted(self, n, args, path):
        """(allocations, upstream connections opened) for one load of n
        requests; the metrics are read outside the counted window."""
        u0 = self.upstream_opened()
        c0 = self.count()
        self.h2load(n, args, path)
        c1 = self.count()
        return c1 - c0, self.upstream_opened() - u0

    def check(self, clients, in_flight, args, path="/whoami", n=1000):
        """What a run may allocate is a count of what it opened and held,
        never of how fast the machine was: up to PER_CONNECTION for each
        client connection and each upstream connection the pool opened in
        that run (a busy machine makes the adaptive pool open more, and a
        cache may grow to a new peak for each), PER_IN_FLIGHT for each
        request the load keeps in flight (the peak of blocks in use, which
        the cache's periodic trim may have given back, varies with timing
        but never past that), plus PER_REQUEST per request. One allocation
        per request would show as 1,000 and 5,000."""
        self.h2load(n, args, path)  # warm-up: pools, caches, buffers
        for requests in (n, n + EXTRA):
            allocs, opened = self.run_counted(requests, args, path)
            bound = PER_CONNECTION * (clients + opened) + PER_IN_FLIGHT * in_flight + PER_REQUEST * requests
            print(f"\n{args} {path}: {allocs} allocations for {requests} requests on {clients} connections "
                  f"({opened:.0f} upstream connections opened); bound {bound:.0f}", flush=True)
            self.assertLessEqual(allocs, bound)

    def test_http1_keep_alive(self):
        self.check(8, 8, ["--h1", "-c", "8"])

    def test_h2c_streams(self):
        self.check(2, 32, ["-c", "2", "-m", "16"])

    def test_grpc_unary_h2c_both_ways(self):
        self.check(2, 32, ["-c", "2", "-m", "16", "-d", self.frame, "-H", "content-type: application/grpc",
                       "-H", "te: trailers"], path="/test.v1.Echo/Who")

    def test_counter_counts(self):
        # the instrument is not blind: start-up (config, listeners, caches) allocated
        self.assertGreater(self.count(), 100)


if __name__ == "__main__":
    harness.main()
