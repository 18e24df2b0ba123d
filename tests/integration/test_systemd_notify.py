"""systemd's sd_notify protocol, spoken by tollgate itself (no libsystemd),
driven here with a Unix datagram socket as systemd would listen: READY=1
only once the listener accepts; RELOADING=1 with MONOTONIC_USEC, then
READY=1 with the outcome, around a reload (good and bad); STOPPING=1 when
a drain starts; WATCHDOG=1 at half the WatchdogSec period; a socket
nobody listens on is harmless."""
import os
import signal
import socket
import tempfile
import time
import unittest

import harness


class Listener:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tg-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(self.path)
        self.s.settimeout(0.2)
        self.got = []  # (monotonic time received, {key: value})

    def poll(self, until, timeout=10):
        """Reads messages until until(messages) or the timeout."""
        deadline = time.monotonic() + timeout
        while not until(self.got) and time.monotonic() < deadline:
            try:
                data = self.s.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.got.append((time.monotonic(), fields))
        return until(self.got)

    def close(self):
        self.s.close()


def has(key, value=None, after=0):
    return lambda got: any(key in f and (value is None or f[key] == value) for _, f in got[after:])


class NotifyTest(unittest.TestCase):
    def setUp(self):
        self.app = harness.start_app("notified")
        self.addCleanup(self.app.stop)
        self.n = Listener()
        self.addCleanup(self.n.close)
        self.port = harness.free_port()

    def start(self, env):
        cfg = harness.simple_config(self.port, [f"127.0.0.1:{self.app.port}"], workers=1)
        return harness.Gateway(cfg, env_extra=env)  # no port wait: READY=1 is the signal

    def test_ready_reload_stopping_watchdog(self):
        gw = self.start({"NOTIFY_SOCKET": self.n.path, "WATCHDOG_USEC": "400000"})
        self.assertTrue(self.n.poll(has("READY", "1")), self.n.got)
        # READY means accepting: a connection succeeds at once, no retry
        socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
        first = next(f for _, f in self.n.got if f.get("READY") == "1")
        self.assertIn("serving 1 listener(s) with 1 worker(s)", first.get("STATUS", ""))
        # the watchdog: WATCHDOG=1 about every 200 ms
        k = len(self.n.got)
        self.assertTrue(self.n.poll(lambda got: sum(1 for _, f in got[k:] if "WATCHDOG" in f) >= 3), self.n.got)
        # a good reload: RELOADING=1 (with a monotonic timestamp now), then READY=1
        k = len(self.n.got)
        t0 = time.monotonic()
        gw.proc.p.send_signal(signal.SIGHUP)
        t1 = None
        self.assertTrue(self.n.poll(has("READY", "1", k)), self.n.got[k:])
        msgs = [f for _, f in self.n.got[k:] if "WATCHDOG" not in f]
        self.assertEqual(msgs[0].get("RELOADING"), "1")
        stamp = int(msgs[0]["MONOTONIC_USEC"]) / 1e6
        t1 = time.monotonic()
        self.assertTrue(t0 <= stamp <= t1, (t0, stamp, t1))  # CLOCK_MONOTONIC, as time.monotonic(), at the reload
        self.assertIn("config reloaded", msgs[1]["STATUS"])
        # a bad reload: still READY=1 afterwards, the status says it failed
        with open(gw.path, "w") as f:
            f.write("workers: [\n")
        k = len(self.n.got)
        gw.proc.p.send_signal(signal.SIGHUP)
        self.assertTrue(self.n.poll(has("READY", "1", k)), self.n.got[k:])
        self.assertIn("reload failed", [f for _, f in self.n.got[k:] if "READY" in f][0]["STATUS"])
        # the drain
        k = len(self.n.got)
        gw.proc.p.send_signal(signal.SIGTERM)
        self.assertTrue(self.n.poll(has("STOPPING", "1", k)), self.n.got[k:])
        self.assertEqual(gw.proc.p.wait(15), 0)

    def test_unreachable_notify_socket_is_harmless(self):
        """A NOTIFY_SOCKET nobody listens on (systemd gone, a stale
        environment) must not stop tollgate from serving or exiting."""
        gw = self.start({"NOTIFY_SOCKET": os.path.join(self.n.dir, "nobody.sock"), "WATCHDOG_USEC": "200000"})
        harness.wait_port(self.port)
        rc, out, err = harness.curl(f"http://127.0.0.1:{self.port}/whoami")
        self.assertEqual((rc, out), (0, b'{"name":"notified"}'), err)
        gw.proc.p.send_signal(signal.SIGHUP)
        rc, out = gw.stop()
        self.assertEqual(rc, 0, out[-2000:])


if __name__ == "__main__":
    harness.main()
