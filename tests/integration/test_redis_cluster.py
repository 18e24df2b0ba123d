"""rate_limit with store: redis on a real three-node Redis Cluster (made
with redis-cli --cluster create) on loopback: three gateways that know
one seed enforce one exact limit for keys spread over all nodes; when the
slots of one node move to another (redis-cli --cluster reshard), MOVED
is followed and the counts carry on exactly; a slot being migrated
answers ASK, which is followed with ASKING."""
import os
import time
import unittest

import requests

import harness
from test_redis_store import fire, metrics, start_gateways, stop_all, wait_fresh_window


def cluster_port():
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        p = harness.free_port()
        if p + 10000 < 65536:
            import socket
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p + 10000))
                    return p
                except OSError:
                    continue
    raise RuntimeError("no port pair")


ROUTES = """
  - name: shared
    cluster: app
    filters:
      - rate_limit: { key: "header:x-user", limit: 50, window: 1m, store: redis }
"""


class RedisClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("cluster-app")
        cls.nodes = []
        for i in range(3):
            port = cluster_port()
            d = harness.tempfile.mkdtemp(prefix="tg-rcluster-")
            cls.nodes.append(harness.start_redis(port, name=f"rcluster-{i}", args=(
                "--cluster-enabled", "yes", "--cluster-config-file", os.path.join(d, "nodes.conf"),
                "--cluster-node-timeout", "5000")))
        ports = [n.port for n in cls.nodes]
        out = harness.subprocess.run([harness.REDIS_CLI, "--cluster", "create",
                                      *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                                      "--cluster-yes"], capture_output=True, text=True, timeout=60,
                                     stdin=harness.subprocess.DEVNULL)
        assert out.returncode == 0, out.stdout + out.stderr
        deadline = time.time() + 30
        while time.time() < deadline:
            if all("cluster_state:ok" in harness.redis_cli(p, "CLUSTER", "INFO") for p in ports):
                break
            time.sleep(0.2)
        cls.ids = {p: harness.redis_cli(p, "CLUSTER", "MYID") for p in ports}
        cls.gws, cls.admins, cls.urls = start_gateways(3, lambda port, admin: f"""
workers: 2
admin: {{ listen: 127.0.0.1:{admin} }}
redis: {{ cluster: [127.0.0.1:{ports[0]}], timeout: 250ms }}
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
routes:
{ROUTES}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}
""")

    @classmethod
    def tearDownClass(cls):
        stop_all(cls.gws, cls.nodes + [cls.app])

    def owner(self, slot):
        """The port of the node serving a slot."""
        for p in self.ids:
            for line in harness.redis_cli(p, "CLUSTER", "NODES").splitlines():
                f = line.split()
                if "myself" not in f[2]:
                    continue
                for r in f[8:]:
                    if "-" in r and not r.startswith("["):
                        a, b = map(int, r.split("-"))
                    elif r.isdigit():
                        a = b = int(r)
                    else:
                        continue
                    if a <= slot <= b:
                        return p
        return None

    def slot_of(self, user):
        return int(harness.redis_cli(self.nodes[0].port, "CLUSTER", "KEYSLOT",
                                     f"tollgate:rl:{{default:50/60000:{user}}}"))

    def users_on(self, port, n, prefix):
        out, i = [], 0
        while len(out) < n:
            u = f"{prefix}-{i}"
            if self.owner(self.slot_of(u)) == port:
                out.append(u)
            i += 1
        return out

    def test_1_one_exact_limit_over_all_nodes(self):
        wait_fresh_window(self.nodes[0].port, 60000, 30000)
        users = [u for p in self.ids for u in self.users_on(p, 1, f"spread-{p}")]
        for u in users:  # one key on each node
            codes = fire(self.urls, 70, {"x-user": u})
            self.assertEqual(codes.count(200), 50, (u, codes))
        for p in self.ids:
            self.assertEqual(harness.redis_cli(p, "DBSIZE"), "1")

    def test_2_moved_after_reshard_counts_carry_on(self):
        wait_fresh_window(self.nodes[0].port, 60000, 45000)
        src, dst = self.nodes[1].port, self.nodes[2].port
        users = self.users_on(src, 3, "moved")
        for u in users:
            self.assertEqual(fire(self.urls, 30, {"x-user": u}).count(200), 30)
        before = sum(harness.metric(metrics(a), "tollgate_redis_cluster_redirects_total", kind="moved")
                     for a in self.admins)
        out = harness.subprocess.run([harness.REDIS_CLI, "--cluster", "reshard", f"127.0.0.1:{src}",
                                      "--cluster-from", self.ids[src], "--cluster-to", self.ids[dst],
                                      "--cluster-slots", "16384", "--cluster-yes"],
                                     capture_output=True, text=True, timeout=120, stdin=harness.subprocess.DEVNULL)
        self.assertEqual(out.returncode, 0, out.stdout[-2000:] + out.stderr)
        for u in users:
            self.assertEqual(self.owner(self.slot_of(u)), dst)
        for u in users:  # 30 counted before the move: 20 more pass, whatever node holds them now
            codes = fire(self.urls, 30, {"x-user": u})
            self.assertEqual(codes.count(200), 20, (u, codes))
        after = sum(harness.metric(metrics(a), "tollgate_redis_cluster_redirects_total", kind="moved")
                    for a in self.admins)
        self.assertGreater(after, before)

    def test_3_ask_during_migration(self):
        wait_fresh_window(self.nodes[0].port, 60000, 30000)
        src, dst = self.nodes[0].port, self.nodes[2].port
        user = self.users_on(src, 1, "ask")[0]
        slot = self.slot_of(user)
        self.assertEqual(harness.redis_cli(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", self.ids[src]), "OK")
        self.assertEqual(harness.redis_cli(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", self.ids[dst]), "OK")
        try:
            codes = fire(self.urls[:1], 10, {"x-user": user}, threads=1)
            self.assertEqual(codes, [200] * 10)
            asks = harness.metric(metrics(self.admins[0]), "tollgate_redis_cluster_redirects_total", kind="ask")
            self.assertGreaterEqual(asks, 1)
        finally:
            for p in self.ids:
                harness.redis_cli(p, "CLUSTER", "SETSLOT", slot, "NODE", self.ids[dst])
        # a new key in a migrating slot was written where it was going
        self.assertEqual(harness.redis_cli(dst, "HGET", f"tollgate:rl:{{default:50/60000:{user}}}", "c1"), "10")
        codes = fire(self.urls, 50, {"x-user": user})
        self.assertEqual(codes.count(200), 40, codes)


class RedisClusterTlsTest(unittest.TestCase):
    """A Redis Cluster whose nodes speak TLS only (tls-cluster yes, client
    certificates required): the seed's slot map names TLS ports, and the
    gateway reaches every node with the redis section's tls settings and
    enforces one exact limit for keys on all three."""

    def test_exact_limit_over_tls_nodes(self):
        d = harness.tempfile.mkdtemp(prefix="tg-rcluster-tls-")
        certs = harness.make_certs(d)
        tls = {"cert": certs["server.crt"], "key": certs["server.key"], "ca": certs["ca.crt"], "auth_clients": "yes"}
        cli = {"cert": certs["client.crt"], "key": certs["client.key"], "ca": certs["ca.crt"]}
        app = harness.start_app("cluster-tls-app")
        nodes, gws = [], []
        try:
            for i in range(3):
                port = cluster_port()
                nd = harness.tempfile.mkdtemp(prefix="tg-rcluster-tls-")
                nodes.append(harness.start_redis(port, name=f"rcluster-tls-{i}", tls=tls, args=(
                    "--cluster-enabled", "yes", "--cluster-config-file", os.path.join(nd, "nodes.conf"),
                    "--cluster-node-timeout", "5000", "--cluster-port", str(port + 10000), "--tls-cluster", "yes")))
            ports = [n.port for n in nodes]
            out = harness.subprocess.run([harness.REDIS_CLI, "--tls", "--cacert", cli["ca"], "--cert", cli["cert"],
                                          "--key", cli["key"], "--cluster", "create",
                                          *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                                          "--cluster-yes"], capture_output=True, text=True, timeout=60,
                                         stdin=harness.subprocess.DEVNULL)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            harness.wait_until(lambda: all("cluster_state:ok" in harness.redis_cli(p, "CLUSTER", "INFO", tls=cli)
                                           for p in ports), what="the TLS cluster to form")
            ranges = []  # (first slot, last slot, port) from each node's own line
            for p in ports:
                for line in harness.redis_cli(p, "CLUSTER", "NODES", tls=cli).splitlines():
                    f = line.split()
                    if "myself" in f[2]:
                        ranges += [(int(r.split("-")[0]), int(r.split("-")[-1]), p) for r in f[8:]
                                   if r[0].isdigit()]

            def node_of(user):
                slot = int(harness.redis_cli(ports[0], "CLUSTER", "KEYSLOT", f"tollgate:rl:{{default:50/60000:{user}}}",
                                             tls=cli))
                return next(p for a, b, p in ranges if a <= slot <= b)
            users, i = {}, 0
            while len(users) < 3:  # one key on each node
                users.setdefault(node_of(f"tls-{i}"), f"tls-{i}")
                i += 1
            gws, admins, urls = start_gateways(1, lambda port, admin: f"""
workers: 2
admin: {{ listen: 127.0.0.1:{admin} }}
redis: {{ cluster: [127.0.0.1:{ports[0]}], timeout: 250ms,
         tls: {{ ca: {cli['ca']}, cert: {cli['cert']}, key: {cli['key']} }} }}
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
routes:
{ROUTES}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{app.port}] }}
""")

            def left_ms():
                sec, usec = harness.redis_cli(ports[0], "TIME", tls=cli).split()
                return 60000 - (int(sec) * 1000 + int(usec) // 1000) % 60000
            harness.wait_until(lambda: left_ms() >= 30000, timeout=45, what="a fresh minute", interval=0.5)
            for u in users.values():
                codes = fire(urls, 60, {"x-user": u})
                self.assertEqual(codes.count(200), 50, (u, codes))
            for p in ports:
                self.assertEqual(harness.redis_cli(p, "DBSIZE", tls=cli), "1")
        finally:
            stop_all(gws, nodes + [app])


if __name__ == "__main__":
    harness.main()
