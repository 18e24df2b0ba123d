"""Redis as an untrusted peer: a fake Redis Cluster node (the only seed)
behaves as a hijacked server would, and tollgate must not follow it.

- A MOVED (or ASK) redirect to a node that no slot map named is not
  followed — the configured password is never sent there — and is counted
  (kind="redirect"); a fresh slot map is asked for instead.
- A CLUSTER SLOTS entry that names a host instead of an address is not
  followed either: no lookup on the worker's loop, no connection, no AUTH.
- A reply past redis.max_reply_bytes closes its connection, counted
  (kind="reply_size").
- A large reply that arrives in small pieces is read where it stopped
  (tg_resp_scan), not re-parsed from its start each time: it is taken
  whole, the connection stays, and nothing is counted as a protocol error.
Every request is still answered (on_store_error: allow)."""
import socket
import threading
import time

import requests

import harness

PASSWORD = "hostile-redis-password-0123"


def resp_read(f):
    """One RESP command (an array of bulk strings) from a file, or None."""
    line = f.readline()
    if not line:
        return None
    assert line.startswith(b"*"), line
    args = []
    for _ in range(int(line[1:])):
        n = int(f.readline()[1:])
        args.append(f.read(n + 2)[:-2])
    return args


def bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)


class FakeRedis:
    """A RESP speaker that records every command and every connection, and
    answers as self.mode says."""

    def __init__(self):
        self.lock = threading.Lock()
        self.commands, self.connections, self.closed = [], 0, 0
        self.mode = "ok"
        self.slots_host = None  # CLUSTER SLOTS names this host (with slots_port)
        self.slots_port = None
        self.moved_to = None
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def answer(self, args):
        cmd = args[0].upper()
        if cmd == b"AUTH":
            return b"+OK\r\n"
        if cmd == b"CLUSTER":
            host = (self.slots_host or "127.0.0.1").encode()
            port = self.slots_port or self.port
            return b"*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n" + bulk(host) + b":%d\r\n" % port + bulk(b"id1")
        if cmd == b"SCRIPT":
            return bulk(b"0" * 40)
        if self.mode == "moved":
            return b"-MOVED 866 127.0.0.1:%d\r\n" % self.moved_to
        if self.mode == "huge":
            return bulk(b"x" * 200000)
        if self.mode == "dribble":
            return [bulk(b"y" * 40000)]  # sent in small pieces
        return b"-ERR fake\r\n"

    def serve(self, c):
        f = c.makefile("rb")
        try:
            while True:
                args = resp_read(f)
                if args is None:
                    break
                with self.lock:
                    self.commands.append(args)
                out = self.answer(args)
                if isinstance(out, list):
                    for i in range(0, len(out[0]), 100):
                        c.sendall(out[0][i:i + 100])
                        time.sleep(0.0005)
                else:
                    c.sendall(out)
        except OSError:
            pass
        finally:
            with self.lock:
                self.closed += 1
            c.close()

    def seen(self):
        with self.lock:
            return self.connections, list(self.commands)

    def stop(self):
        self.sock.close()


class HostileRedisTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("redis-hostile")
        cls.procs = [cls.app]
        cls.seed, cls.elsewhere, cls.named = FakeRedis(), FakeRedis(), FakeRedis()
        cls.seed.slots_host, cls.seed.slots_port = "localhost", cls.named.port
        cls.seed.moved_to = cls.elsewhere.port
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.gateway = harness.Gateway(f"""
workers: 1
admin: {{ listen: 127.0.0.1:{cls.admin} }}
redis: {{ cluster: [127.0.0.1:{cls.seed.port}], password: {PASSWORD}, timeout: 500ms, max_reply_bytes: 64KiB }}
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
routes:
  - name: limited
    cluster: app
    filters: [{{ rate_limit: {{ key: client_address, limit: 1000, window: 1m, store: redis }} }}]
clusters: [{{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}]
""", port=cls.port)

    @classmethod
    def tearDownClass(cls):
        for f in (cls.seed, cls.elsewhere, cls.named):
            f.stop()
        cls.finish()

    def get(self):
        r = requests.get(f"http://127.0.0.1:{self.port}/whoami", timeout=10)
        self.assertEqual(r.status_code, 200)  # on_store_error: allow — answered whatever Redis does

    def errors(self, kind):
        return harness.metric_or(harness.scrape(self.admin), "tollgate_redis_errors_total", kind=kind)

    def test_1_names_and_unknown_nodes_are_not_followed(self):
        self.seed.mode = "moved"
        self.get()
        # the slot map named "localhost", and the redirect a node no map named: both counted
        harness.wait_until(lambda: self.errors("redirect") >= 2, what="the redirects counted")
        for _ in range(3):
            self.get()
        self.assertEqual(self.elsewhere.seen(), (0, []))  # never connected: no AUTH with the password
        self.assertEqual(self.named.seen(), (0, []))
        conns, cmds = self.seed.seen()
        self.assertIn([b"AUTH", PASSWORD.encode()], cmds)  # the seed itself is trusted with it
        self.assertIn([b"CLUSTER", b"SLOTS"], cmds)

    def test_2_reply_past_the_bound_closes_the_connection(self):
        self.seed.mode = "huge"
        before_closed, before = self.seed.closed, self.errors("reply_size")
        self.get()
        harness.wait_until(lambda: self.errors("reply_size") > before, what="reply_size counted")
        harness.wait_until(lambda: self.seed.closed > before_closed, what="the connection closed")

    def evalshas(self):
        return sum(1 for c in self.seed.seen()[1] if c[0] == b"EVALSHA")

    def test_3_a_reply_in_small_pieces_is_read_where_it_stopped(self):
        self.seed.mode = "ok"

        def one_call():  # a request whose call reaches the seed (after any reconnect backoff)
            n = self.evalshas()
            self.get()
            return self.evalshas() > n
        harness.wait_until(one_call, what="a connection to the seed")
        conns, closed = self.seed.seen()[0], self.seed.closed
        proto, size = self.errors("protocol"), self.errors("reply_size")
        self.seed.mode = "dribble"
        n = self.evalshas()
        for _ in range(3):
            self.get()
        harness.wait_until(lambda: self.evalshas() >= n + 3, what="three calls")
        self.seed.mode = "ok"
        harness.wait_until(one_call, what="the next call on the same connection")
        self.assertEqual((self.errors("protocol"), self.errors("reply_size")), (proto, size))
        self.assertEqual(self.seed.seen()[0], conns)  # no new connection: none was closed
        self.assertEqual(self.seed.closed, closed)

if __name__ == "__main__":
    harness.main()
