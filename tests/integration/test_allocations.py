"""No heap allocation per request after warm-up: keep-alive HTTP/1.1,
HTTP/2 streams to an HTTP/1.1 upstream, and gRPC unary calls over h2c both
ways. The real binary runs with an LD_PRELOAD counter of every
malloc/calloc/realloc (apps/alloc_count.c: tollgate's and its libraries'),
and each load runs twice on the same number of connections with different
request counts, so what a connection costs (its structs, its session)
cancels out and the difference is what requests cost.

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

EXTRA = 4000        # requests of the second run beyond the first
PER_REQUEST = 0.01  # at most one allocation in a hundred requests (occasional growth of a cache)


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
        cls.port = harness.free_port()
        cls.frame = os.path.join(cls.dir, "frame")
        with open(cls.frame, "wb") as f:
            f.write(harness.grpc_frame(b"x" * 16))
        cls.gateway = harness.Gateway(f"""
workers: 1
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
        deadline = time.time() + 10
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

    def per_request(self, args, path="/whoami", n=1000):
        self.h2load(n, args, path)                 # warm-up: pools, caches, buffers
        c0 = self.count()
        self.h2load(n, args, path)                 # n requests + the connections
        c1 = self.count()
        self.h2load(n + EXTRA, args, path)         # the same connections, EXTRA more requests
        c2 = self.count()
        slope = ((c2 - c1) - (c1 - c0)) / EXTRA
        print(f"\n{args} {path}: {c1 - c0} allocations for {n} requests, {c2 - c1} for {n + EXTRA}: "
              f"{slope:.4f} per request", flush=True)
        return slope, c1 - c0

    # New connections after warm-up take their structs from the worker's
    # slabs and their buffers and HTTP/2 sessions from its block cache:
    # a run of 1000 requests on fresh connections allocates at most about
    # one block per connection (a cache growing to a new peak).

    def test_http1_keep_alive(self):
        slope, first = self.per_request(["--h1", "-c", "8"])
        self.assertLessEqual(slope, PER_REQUEST)
        self.assertLessEqual(first, 8 + 4)

    def test_h2c_streams(self):
        slope, first = self.per_request(["-c", "2", "-m", "16"])
        self.assertLessEqual(slope, PER_REQUEST)
        self.assertLessEqual(first, 2 + 4)

    def test_grpc_unary_h2c_both_ways(self):
        slope, first = self.per_request(["-c", "2", "-m", "16", "-d", self.frame, "-H", "content-type: application/grpc",
                                         "-H", "te: trailers"], path="/test.v1.Echo/Who")
        self.assertLessEqual(slope, PER_REQUEST)
        self.assertLessEqual(first, 2 + 4)

    def test_counter_counts(self):
        # the instrument is not blind: start-up (config, listeners, caches) allocated
        self.assertGreater(self.count(), 100)


if __name__ == "__main__":
    harness.main()
