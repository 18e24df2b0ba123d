"""systemd socket activation: listening sockets bound by the test (as a
`.socket` unit would) and passed as descriptors 3.. with LISTEN_PID,
LISTEN_FDS and LISTEN_FDNAMES, the way systemd starts a service. A
listener takes the socket named like itself, else the one bound to its
address; others bind their own; reloads keep the inherited sockets."""
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import requests

import harness

BASH = "/bin/bash"
# The inherited sockets sit at 60+ in the test process; bash moves them to
# 3.. and sets LISTEN_PID to its own pid, which exec keeps.
LAUNCH = 'export LISTEN_PID=$$; exec "$@" 3<&60 4<&61 5<&62 60<&- 61<&- 62<&-'


def listening_socket(port):
    s = socket.socket()
    s.bind(("127.0.0.1", port))  # no SO_REUSEPORT: nobody else can bind this port while we hold it
    s.listen(64)
    return s


def listeners_on(port):
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=10).stdout
    return len([l for l in out.splitlines() if l.strip()])


class SocketActivationTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("activation")
        cls.procs = [cls.app]
        cls.web, cls.api, cls.own, cls.stray = (harness.free_port() for _ in range(4))
        cls.socks = [listening_socket(cls.web), listening_socket(cls.api), listening_socket(cls.stray)]
        for i, s in enumerate(cls.socks):
            os.dup2(s.fileno(), 60 + i, inheritable=True)
        cls.dir = tempfile.mkdtemp(prefix="tg-activation-")
        cls.path = os.path.join(cls.dir, "tollgate.yaml")
        cls.write(cls.config())
        cls.log = open(os.path.join(cls.dir, "tollgate.log"), "w+b")
        env = dict(os.environ, LISTEN_FDS="3", LISTEN_FDNAMES="web:unknown:stray")
        # "web" is found by name, though the config names a port nobody bound:
        # the name wins, as FileDescriptorName= is how units say which is which
        cls.proc = subprocess.Popen([BASH, "-c", LAUNCH, "bash", harness.BIN, "-c", cls.path, "-l", "info"],
                                    env=env, stdout=cls.log, stderr=subprocess.STDOUT, pass_fds=(60, 61, 62))
        harness.wait_port(cls.own, proc=cls.proc)
        for i in range(3):
            os.close(60 + i)

    @classmethod
    def config(cls, with_api=True):
        api = f"  - {{ name: api, listen: 127.0.0.1:{cls.api} }}\n" if with_api else ""
        return f"""
workers: 2
listeners:
  - {{ name: web, listen: 127.0.0.1:{harness.dead_port()} }}
{api}  - {{ name: own, listen: 127.0.0.1:{cls.own} }}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, cluster: app }}
"""

    @classmethod
    def write(cls, text):
        with open(cls.path, "w") as f:
            f.write(text)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.proc.send_signal(signal.SIGTERM)
            rc = cls.proc.wait(timeout=30)
            cls.log.seek(0)
            out = cls.log.read().decode(errors="replace")
            assert rc == 0, f"tollgate exited with {rc}:\n{out[-5000:]}"
            for marker in harness.SANITIZER_MARKERS:
                assert marker not in out, out[-20000:]
        finally:
            for s in cls.socks:
                s.close()
            for p in cls.procs:
                p.stop()

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def get(self, port, path="/items"):
        return requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)

    def test_1_each_listener_serves_on_its_socket(self):
        for port in (self.web, self.api, self.own):
            for _ in range(4):  # both workers accept on the shared socket
                self.assertEqual(self.get(port).status_code, 200)
        out = self.output()
        self.assertIn(f"listener 'web' on 127.0.0.1:", out)
        self.assertIn("(socket from systemd, matched by name)", out)
        self.assertIn(f"listener 'api' on 127.0.0.1:{self.api} (socket from systemd, matched by address)", out)
        self.assertRegex(out, rf"listener 'own' on 127.0.0.1:{self.own}\n")
        self.assertIn("descriptor 5 ('stray') matches no listener", out)

    def test_2_inherited_sockets_are_not_bound_again(self):
        # One listening socket each on the inherited ports (ours, shared by
        # the workers); the port tollgate bound itself has one per worker.
        self.assertEqual(listeners_on(self.web), 1)
        self.assertEqual(listeners_on(self.api), 1)
        self.assertEqual(listeners_on(self.own), 2)

    def test_3_reload_drops_and_finds_the_inherited_socket_again(self):
        probe = None
        try:
            self.write(self.config(with_api=False))
            self.proc.send_signal(signal.SIGHUP)
            harness.wait_until(lambda: self.output().count("configuration reloaded") == 1, what="the reload")

            # once the listener is gone from the workers, a connection waits in
            # the kept socket's accept queue, unanswered, while the workers go
            # on serving the other listeners (a worker that still watched the
            # socket would take it at its next loop turn). Until the workers
            # have applied the reload, a probe may still be answered: then
            # another one.
            def answered(s):
                s.setblocking(False)
                try:
                    s.recv(1, socket.MSG_PEEK)  # data or the close: either way, taken
                    return True
                except BlockingIOError:
                    return False
                finally:
                    s.setblocking(True)

            def queued_probe():
                nonlocal probe
                if probe is not None:
                    probe.close()
                probe = socket.create_connection(("127.0.0.1", self.api), timeout=30)
                probe.sendall(b"GET /items HTTP/1.1\r\nHost: x\r\n\r\n")
                state = harness.wait_until(lambda: "answered" if answered(probe) else
                                           "queued" if harness.accept_queue(self.api) else None,
                                           what="the probe to be answered or queued")
                return state == "queued"
            harness.wait_until(queued_probe, what="a connection left in the accept queue")
            for _ in range(8):
                self.assertEqual(self.get(self.web).status_code, 200)
            self.assertEqual(harness.accept_queue(self.api), 1)
            probe.setblocking(False)
            with self.assertRaises(BlockingIOError):
                probe.recv(1)  # no answer, not even a close
            probe.setblocking(True)
        finally:
            self.write(self.config(with_api=True))
            self.proc.send_signal(signal.SIGHUP)
        # the listener is back on the same socket: it takes the waiting
        # connection and answers it
        self.assertTrue(probe.recv(65536).startswith(b"HTTP/1.1 200"))
        probe.close()
        self.assertEqual(self.get(self.api).status_code, 200)
        self.assertEqual(listeners_on(self.api), 1)
        self.assertEqual(self.output().count("configuration reloaded"), 2)


class ActivationIgnoredTest(unittest.TestCase):
    """Variables meant for another process, or malformed, are ignored (and
    said so): the gateway binds its own sockets."""

    def run_with(self, env_extra, expect):
        port = harness.free_port()
        d = tempfile.mkdtemp(prefix="tg-activation-")
        p = os.path.join(d, "tollgate.yaml")
        with open(p, "w") as f:
            f.write(f"listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]\n")
        env = dict(os.environ, **env_extra)
        proc = subprocess.Popen([harness.BIN, "-c", p], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            harness.wait_port(port, proc=proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=30)[0].decode()
        self.assertEqual(proc.returncode, 0, out)
        self.assertIn(expect, out)
        self.assertNotIn("socket from systemd", out)

    def test_other_pid(self):
        self.run_with({"LISTEN_PID": "1", "LISTEN_FDS": "2"}, "meant for process 1, not this one: ignored")

    def test_malformed(self):
        self.run_with({"LISTEN_PID": "1", "LISTEN_FDS": "two"}, "are not valid: ignored")


if __name__ == "__main__":
    harness.main()
