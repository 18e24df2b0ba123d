"""examples/cluster/run.sh --check, as an operator would run it from a
fresh clone: Redis, three tollgate instances with the one shared config
in examples/cluster/, HAProxy in TCP mode sending PROXY v2 in front; the
script proves one exact limit across the instances and that the
upstream sees each client's own address, and exits 0 only then."""
import os
import random
import socket
import subprocess
import unittest

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_base():
    """A base port with base..base+21 free."""
    for _ in range(100):
        base = random.randrange(20000, 29000)
        ok = True
        for p in range(base, base + 22):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


class ExampleClusterTest(unittest.TestCase):
    def test_run_check(self):
        env = dict(os.environ, TOLLGATE_BIN=harness.BIN, BASE_PORT=str(free_base()))
        p = subprocess.run(["bash", os.path.join(ROOT, "examples/cluster/run.sh"), "--check"], env=env,
                           capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stdout[-3000:] + p.stderr[-5000:])
        self.assertIn("cluster check: passed", p.stdout)
        self.assertIn("client 127.0.0.2: 50 of 60 passed, seen as 127.0.0.2 upstream", p.stdout)


if __name__ == "__main__":
    harness.main()
