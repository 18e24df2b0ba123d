"""rate_limit with store: redis against a real redis-server on loopback:
three gateway instances share one limit exactly, whatever instance and
worker a request arrives on; plans, cost and reconcile count in Redis;
Redis killed or paused (SIGSTOP) answers every request within the
timeout by on_store_error, and limits are exact again once Redis is
back; AUTH, the script reloaded after SCRIPT FLUSH, keys that expire,
the deny cache, and the metrics (promtool-clean)."""
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import unittest

import requests

import harness


def redis_now_ms(port, password=None):
    sec, usec = harness.redis_cli(port, "TIME", password=password).split()
    return int(sec) * 1000 + int(usec) // 1000


def wait_fresh_window(port, window_ms, need_ms, password=None):
    """Waits until the current fixed window (Redis's clock) has need_ms
    left, so that a burst does not straddle two windows."""
    deadline = time.time() + window_ms / 1000 + 5
    while time.time() < deadline:
        left = window_ms - redis_now_ms(port, password) % window_ms
        if left >= need_ms:
            return
        time.sleep(left / 1000 + 0.05)
    raise AssertionError("no fresh window")


def fire(urls, n, headers, path="/whoami", threads=12):
    """n requests spread round-robin over the gateways (urls), concurrently;
    their status codes in order."""
    def one(i):
        return requests.get(urls[i % len(urls)] + path, headers=headers, timeout=10).status_code
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        return list(ex.map(one, range(n)))


def metrics(admin):
    return requests.get(f"http://127.0.0.1:{admin}/metrics", timeout=5).text


def wait_connected(admin, n, timeout=15):
    """Waits until the gateway's workers have n connections to Redis up."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if harness.metric(metrics(admin), "tollgate_redis_connections_active") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} Redis connections after {timeout}s")


def start_gateways(n, make_config, workers=2):
    """n gateways, each on make_config(port, admin); returns (gateways,
    admin ports, base URLs) once each has its workers connected to Redis."""
    gws, admins = [], []
    for _ in range(n):
        port, admin = harness.free_port(), harness.free_port()
        gws.append(harness.Gateway(make_config(port, admin), port=port))
        admins.append(admin)
    for a in admins:
        wait_connected(a, workers)
    return gws, admins, [f"http://127.0.0.1:{g.port}" for g in gws]


def stop_checked(gw):
    """Stops a gateway; the problems found (exit code, sanitizer report)."""
    rc, out = gw.stop()
    problems = [] if rc == 0 else [f"tollgate exited with {rc}"]
    problems += [f"sanitizer report ({m})" for m in harness.SANITIZER_MARKERS
                 if m in out]
    return problems


def stop_all(gws, procs):
    """Stops the gateways (checked) and the other processes; raises if a
    gateway did not end cleanly."""
    problems = []
    for g in gws:
        problems += stop_checked(g)
    for p in procs:
        p.stop()
    if problems:
        raise AssertionError("; ".join(problems))


def config(port, admin, app_port, redis_block, routes, workers=2):
    return f"""
workers: {workers}
admin: {{ listen: 127.0.0.1:{admin} }}
redis: {redis_block}
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
routes:
{routes}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{app_port}] }}
"""


ROUTES = """
  - name: long
    match: { headers: [{ name: x-long, value: "1" }] }
    cluster: app
    filters:
      - rate_limit: { key: "header:x-user", limit: 1, window: 1m, store: redis }
  - name: usage
    match: { path_prefix: /usage }
    cluster: app
    filters:
      - rate_limit: { key: "header:x-user", limit: 100, window: 1m, store: redis, cost: "header:x-estimate",
                      max_cost: 100, reconcile: "header:x-tokens-used", response_headers: true }
  - name: plans
    match: { path_prefix: /items }
    cluster: app
    filters:
      - auth: { api_keys: { keys: [{ name: gold-user, key: gold-key-0123456789 }, { name: free-user, key: free-key-0123456789 }] } }
      - rate_limit: { key: identity, limit: 2, window: 1m, store: redis, response_headers: true,
                      overrides: [{ name: gold, identities: [gold-user], limit: 5, window: 1m }] }
  - name: quota
    match: { path_prefix: /stats }
    cluster: app
    filters:
      - quota: { key: "header:x-user", limit: 7, period: day, tz: Asia/Tokyo, store: redis, response_headers: true }
  - name: deny
    match: { path_prefix: /echo }
    cluster: app
    filters:
      - rate_limit: { key: "header:x-user", limit: 1000, window: 1m, store: redis, on_store_error: deny }
  - name: shared
    cluster: app
    filters:
      - rate_limit: { key: "header:x-user", limit: 50, window: 10s, store: redis, response_headers: true }
"""


class SharedRedisTest(unittest.TestCase):
    """One Redis, three gateways with one config (two workers each)."""

    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("redis-app")
        cls.redis = harness.start_redis(name="redis-shared")
        cls.gws, cls.admins, cls.urls = start_gateways(3, lambda port, admin: config(
            port, admin, cls.app.port, f"{{ address: 127.0.0.1:{cls.redis.port}, timeout: 200ms }}", ROUTES))

    @classmethod
    def tearDownClass(cls):
        stop_all(cls.gws, [cls.redis, cls.app])

    def test_1_three_instances_enforce_one_exact_limit(self):
        wait_fresh_window(self.redis.port, 10000, 6000)
        codes = fire(self.urls, 90, {"x-user": "shared-1"})
        self.assertEqual(codes.count(200), 50, codes)
        self.assertEqual(codes.count(429), 40, codes)
        # every instance took part, and the decisions add up across them
        allowed = limited = 0
        for a in self.admins:
            m = metrics(a)
            allowed += harness.metric(m, "tollgate_ratelimit_decisions_total", route="shared", decision="allowed")
            limited += harness.metric(m, "tollgate_ratelimit_decisions_total", route="shared", decision="limited")
            self.assertGreater(harness.metric(m, "tollgate_redis_request_duration_seconds_count"), 0)
        self.assertEqual((allowed, limited), (50, 40))
        # another key has its own budget
        self.assertEqual(fire(self.urls, 3, {"x-user": "shared-2"}).count(200), 3)

    def test_2_refusal_carries_retry_after_and_deny_cache_answers(self):
        wait_fresh_window(self.redis.port, 10000, 6000)
        fire(self.urls[:1], 50, {"x-user": "cache-1"})
        r = requests.get(self.urls[0] + "/whoami", headers={"x-user": "cache-1"}, timeout=5)
        self.assertEqual(r.status_code, 429)
        self.assertGreaterEqual(int(r.headers["retry-after"]), 1)
        self.assertEqual(r.headers["ratelimit-policy"], '"default";q=50;w=10')
        before = harness.metric(metrics(self.admins[0]), "tollgate_ratelimit_deny_cache_hits_total", route="shared")
        codes = fire(self.urls[:1], 20, {"x-user": "cache-1"}, threads=1)
        self.assertEqual(set(codes), {429})
        after = harness.metric(metrics(self.admins[0]), "tollgate_ratelimit_deny_cache_hits_total", route="shared")
        self.assertGreaterEqual(after - before, 15)  # each worker asks Redis once, then knows

    def test_3_plans_count_in_redis_across_instances(self):
        gold = {"x-api-key": "gold-key-0123456789"}
        free = {"x-api-key": "free-key-0123456789"}
        g = [requests.get(self.urls[i % 3] + "/items", headers=gold, timeout=5) for i in range(7)]
        f = [requests.get(self.urls[i % 3] + "/items", headers=free, timeout=5) for i in range(4)]
        self.assertEqual([r.status_code for r in g], [200] * 5 + [429] * 2)
        self.assertEqual([r.status_code for r in f], [200] * 2 + [429] * 2)
        self.assertEqual(g[0].headers["ratelimit-policy"], '"gold";q=5;w=60')
        keys = harness.redis_cli(self.redis.port, "KEYS", "tollgate:rl:{gold:*").split()
        self.assertEqual(keys, ["tollgate:rl:{gold:5/60000:gold-user}"])

    def test_3b_client_keys_cannot_choose_the_slot_nor_share_a_counter(self):
        """Regression (#26): a '}' in a client's key part ended the Redis
        Cluster hash tag early ("rl:{NS:evil}1}": every "evil}..." key on
        one slot, the client's choice), and keys past 511 bytes were cut,
        so two clients whose long keys share a prefix shared one counter.
        Now braces are escaped (the tag is the whole key) and long keys
        are hashed whole."""
        r = requests.get(self.urls[0] + "/whoami", headers={"x-long": "1", "x-user": "evil}1{x"}, timeout=5)
        self.assertEqual(r.status_code, 200)
        keys = harness.redis_cli(self.redis.port, "KEYS", "tollgate:rl:{default:1/60000:evil*").split()
        self.assertEqual(keys, ["tollgate:rl:{default:1/60000:evil%7D1%7Bx}"])
        alice, bob = "P" * 600 + "-alice", "P" * 600 + "-bob"
        codes = [requests.get(self.urls[i % 3] + "/whoami", headers={"x-long": "1", "x-user": u}, timeout=5).status_code
                 for i, u in enumerate((alice, bob, alice, bob))]
        self.assertEqual(codes, [200, 200, 429, 429])
        hashed = harness.redis_cli(self.redis.port, "KEYS", "tollgate:rl:{default:1/60000:%H*").split()
        self.assertEqual(len(hashed), 2, hashed)
        self.assertTrue(all(len(k) == len("tollgate:rl:{default:1/60000:}") + 66 for k in hashed), hashed)

    def test_4_cost_and_reconcile_in_redis(self):
        u = {"x-user": "tokens-1"}
        # estimate 60, really 10: the 50 given back let the next 60 pass
        r1 = requests.get(self.urls[0] + "/usage?tokens=10", headers=dict(u, **{"x-estimate": "60"}), timeout=5)
        self.assertEqual(r1.status_code, 200)
        self.assertEqual(r1.headers["ratelimit"], '"default";r=40;t=' + r1.headers["ratelimit"].split("t=")[1])
        deadline = time.time() + 30
        while time.time() < deadline:  # the correction is sent once the response has ended
            c1 = harness.redis_cli(self.redis.port, "HGET", "tollgate:rl:{default:100/60000:tokens-1}", "c1")
            if c1 == "10":
                break
            time.sleep(0.05)
        self.assertEqual(c1, "10")
        r2 = requests.get(self.urls[1] + "/usage?tokens=60", headers=dict(u, **{"x-estimate": "60"}), timeout=5)
        self.assertEqual(r2.status_code, 200)  # 10 + 60 <= 100: passes only because of the correction
        r3 = requests.get(self.urls[2] + "/usage?tokens=1", headers=dict(u, **{"x-estimate": "60"}), timeout=5)
        self.assertEqual(r3.status_code, 429)

    def test_4b_quota_counts_in_redis_across_instances(self):
        codes = fire(self.urls, 10, {"x-user": "quota-1"}, path="/stats", threads=4)
        self.assertEqual(codes.count(200), 7, codes)
        r = requests.get(self.urls[0] + "/stats", headers={"x-user": "quota-1"}, timeout=5)
        self.assertEqual(r.status_code, 429)
        self.assertEqual(r.headers["ratelimit-policy"], '"quota";q=7;w=86400')
        keys = harness.redis_cli(self.redis.port, "KEYS", "tollgate:quota:*").split()
        self.assertEqual(len(keys), 1)
        self.assertTrue(keys[0].startswith("tollgate:quota:{day:Asia/Tokyo:quota-1}:"), keys)
        self.assertEqual(harness.redis_cli(self.redis.port, "GET", keys[0]), "7")
        ttl = int(harness.redis_cli(self.redis.port, "TTL", keys[0]))
        self.assertGreater(ttl, 86400)          # a day after the period's end...
        self.assertLessEqual(ttl, 2 * 86400)    # ...which is at most a day away

    def test_5_keys_expire_two_windows_after_last_use(self):
        fire(self.urls[:1], 1, {"x-user": "ttl-1"})
        ttl = int(harness.redis_cli(self.redis.port, "PTTL", "tollgate:rl:{default:50/10000:ttl-1}"))
        self.assertGreater(ttl, 15000)
        self.assertLessEqual(ttl, 20000)

    def test_6_script_reloaded_after_flush(self):
        self.assertEqual(harness.redis_cli(self.redis.port, "SCRIPT", "FLUSH"), "OK")
        self.assertIn("number_of_cached_scripts:0", harness.redis_cli(self.redis.port, "INFO", "memory"))
        wait_fresh_window(self.redis.port, 10000, 6000)
        codes = fire(self.urls, 60, {"x-user": "flush-1"})
        # NOSCRIPT -> SCRIPT LOAD -> the call again: still exact (were the calls failing,
        # on_store_error: allow would have let all 60 through)
        self.assertEqual(codes.count(200), 50, codes)
        self.assertNotIn("number_of_cached_scripts:0", harness.redis_cli(self.redis.port, "INFO", "memory"))

    def test_8_reload_that_changes_the_redis_section(self):
        """Requests keep flowing (on_store_error: deny would show any failed
        call as a 503) while the redis: section changes; the counts carry on."""
        gw, admin = self.gws[0], self.admins[0]
        stop = threading.Event()
        seen = []

        def load():
            while not stop.is_set():  # at most ~200 a second: under the route's 1000 a minute
                seen.append(requests.get(gw.url("/echo/headers"), headers={"x-user": "reload-1"}, timeout=10).status_code)
                time.sleep(0.02)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            with open(gw.path) as f:
                text = f.read()
            for timeout in ("150ms", "200ms"):
                text = re.sub(r"timeout: \d+ms", f"timeout: {timeout}", text)
                with open(gw.path, "w") as f:
                    f.write(text)
                before = harness.metric(metrics(admin), "tollgate_config_reloads_total", result="success")
                gw.proc.p.send_signal(signal.SIGHUP)
                deadline = time.time() + 30
                while time.time() < deadline and harness.metric(
                        metrics(admin), "tollgate_config_reloads_total", result="success") == before:
                    time.sleep(0.05)
                time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        self.assertGreater(len(seen), 20)
        self.assertEqual(set(seen), {200}, {c: seen.count(c) for c in set(seen)})
        used = int(harness.redis_cli(self.redis.port, "HGET", "tollgate:rl:{default:1000/60000:reload-1}", "c1"))
        self.assertGreaterEqual(used, len(seen) - 1)  # all counted (a window may have rolled over once)
        wait_connected(admin, 2)

    def test_7_metrics_are_promtool_clean(self):
        m = metrics(self.admins[0])
        for name in ("tollgate_redis_errors_total", "tollgate_redis_cluster_redirects_total",
                     "tollgate_redis_connections_active", "tollgate_ratelimit_store_error_decisions_total"):
            self.assertIn("# TYPE " + name, m)
        self.assertGreaterEqual(harness.metric(m, "tollgate_redis_connections_active"), 2)  # a connection per worker
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool is installed by scripts/deps.sh")
        p = subprocess.run([promtool, "check", "metrics"], input=m, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class RedisFailureTest(unittest.TestCase):
    """Redis paused, killed and brought back, under one gateway."""

    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("redis-fail-app")
        cls.redis = harness.start_redis(name="redis-fail")
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.gw = harness.Gateway(config(cls.port, cls.admin, cls.app.port,
                                        f"{{ address: 127.0.0.1:{cls.redis.port}, timeout: 100ms }}", ROUTES),
                                 port=cls.port)
        cls.url = f"http://127.0.0.1:{cls.port}"
        wait_connected(cls.admin, 2)

    @classmethod
    def tearDownClass(cls):
        stop_all([cls.gw], [cls.redis, cls.app])

    def timed(self, path, user):
        t0 = time.monotonic()
        r = requests.get(self.url + path, headers={"x-user": user}, timeout=10)
        return r.status_code, time.monotonic() - t0

    def test_paused_redis_answers_within_the_timeout(self):
        self.assertEqual(self.timed("/whoami", "pause-warm")[0], 200)
        os.kill(self.redis.pid, signal.SIGSTOP)
        try:
            allow = [self.timed("/whoami", f"pause-{i}") for i in range(5)]
            deny = [self.timed("/echo/headers", f"pause-d{i}") for i in range(3)]
        finally:
            os.kill(self.redis.pid, signal.SIGCONT)
        self.assertEqual([c for c, _ in allow], [200] * 5)  # on_store_error: allow (the default)
        self.assertEqual([c for c, _ in deny], [503] * 3)   # on_store_error: deny
        # 100 ms timeout: answered well within a second each, never hung
        self.assertLess(max(t for _, t in allow + deny), 2.0)
        m = metrics(self.admin)
        self.assertGreaterEqual(harness.metric(m, "tollgate_redis_errors_total", kind="timeout"), 8, m)
        self.assertGreaterEqual(harness.metric(m, "tollgate_ratelimit_store_error_decisions_total", route="shared",
                                               decision="allow"), 5)
        self.assertGreaterEqual(harness.metric(m, "tollgate_ratelimit_store_error_decisions_total", route="deny",
                                               decision="deny"), 3)
        # Redis answers again: counted again
        deadline = time.time() + 30
        while time.time() < deadline and self.timed("/echo/headers", "pause-back")[0] != 200:
            time.sleep(0.1)
        self.assertEqual(self.timed("/echo/headers", "pause-back")[0], 200)

    def test_killed_redis_then_back_limits_exact_again(self):
        port = self.redis.port
        self.redis.stop(signal.SIGKILL)
        try:
            allow = [self.timed("/whoami", "kill-1") for _ in range(60)]  # over the limit: none counted
            deny = [self.timed("/echo/headers", "kill-d") for _ in range(3)]
            self.assertEqual({c for c, _ in allow}, {200})
            self.assertEqual({c for c, _ in deny}, {503})
            self.assertLess(max(t for _, t in allow + deny), 2.0)
            self.assertIn("redis: 127.0.0.1:%d" % port, self.gw.proc.output())
        finally:
            type(self).redis = harness.start_redis(port=port, name="redis-fail-2")
        deadline = time.time() + 30  # reconnect backoff is at most 5 s; both workers' connections up
        while time.time() < deadline and harness.metric(metrics(self.admin), "tollgate_redis_connections_active") < 2:
            time.sleep(0.2)
        wait_fresh_window(port, 10000, 6000)
        codes = fire([self.url], 70, {"x-user": "kill-2"})
        self.assertEqual(codes.count(200), 50, codes)
        m = metrics(self.admin)
        self.assertGreater(harness.metric(m, "tollgate_redis_errors_total", kind="connect") +
                           harness.metric(m, "tollgate_redis_errors_total", kind="unavailable"), 0)


class RedisAuthTest(unittest.TestCase):
    """requirepass: the password from a file works; a wrong one is counted
    and every request is decided by on_store_error."""

    def test_password_file_and_wrong_password(self):
        app = harness.start_app("redis-auth-app")
        redis = harness.start_redis(name="redis-auth", args=("--requirepass", "s3cret-redis-pass"))
        gws = []
        try:
            for pw in ("s3cret-redis-pass", "wrong-password"):
                port, admin = harness.free_port(), harness.free_port()
                gw = harness.Gateway(config(port, admin, app.port,
                                            f"{{ address: 127.0.0.1:{redis.port}, password_file: redis.pass }}",
                                            ROUTES), port=port, files={"redis.pass": (pw + "\n").encode()})
                gws.append((gw, admin))
            good, bad = gws
            wait_connected(good[1], 2)
            wait_fresh_window(redis.port, 10000, 6000, password="s3cret-redis-pass")
            codes = fire([good[0].url("")], 55, {"x-user": "auth-1"})
            self.assertEqual(codes.count(200), 50)
            codes = fire([bad[0].url("")], 55, {"x-user": "auth-2"})
            self.assertEqual(codes.count(200), 55)  # nothing counted: on_store_error allow
            m = metrics(bad[1])
            self.assertGreater(harness.metric(m, "tollgate_redis_errors_total", kind="auth"), 0)
            self.assertIn("AUTH refused", bad[0].proc.output())
            self.assertNotIn("wrong-password", bad[0].proc.output())
        finally:
            stop_all([gw for gw, _ in gws], [redis, app])


class RedisSettingsTest(unittest.TestCase):
    """The redis section's keys, each by its effect: an ACL user by inline
    name or username_file with an inline password; key_prefix on every key
    written; pool connections per worker; connect_timeout as the point a
    hanging connect is given up (beside a gateway whose timeout is a
    minute); quota's on_store_error."""

    def test_acl_user_prefix_and_pool(self):
        app = harness.start_app("redis-acl-app")
        redis = harness.start_redis(name="redis-acl", args=("--user", "tg", "on", ">tg-pass-0123", "~*", "+@all"))
        gws = []
        try:
            blocks = [f"{{ address: 127.0.0.1:{redis.port}, username: tg, password: tg-pass-0123, "
                      f"key_prefix: 'app1:', pool: 3 }}",
                      f"{{ address: 127.0.0.1:{redis.port}, username_file: user.txt, password: tg-pass-0123 }}",
                      f"{{ address: 127.0.0.1:{redis.port}, username: tg, password: not-the-password }}"]
            for block in blocks:
                port, admin = harness.free_port(), harness.free_port()
                gws.append((harness.Gateway(config(port, admin, app.port, block, ROUTES), port=port,
                                            files={"user.txt": b"tg\n"}), admin))
            (pooled, pooled_admin), (fromfile, fromfile_admin), (wrong, wrong_admin) = gws
            wait_connected(pooled_admin, 2 * 3)  # two workers, three connections each
            self.assertEqual(harness.metric(metrics(pooled_admin), "tollgate_redis_connections_active"), 6)
            wait_connected(fromfile_admin, 2)
            self.assertEqual(harness.metric(metrics(fromfile_admin), "tollgate_redis_connections_active"), 2)
            # every key the prefixed gateway writes starts with its prefix
            self.assertEqual(requests.get(pooled.url("/whoami"), headers={"x-user": "pfx"}, timeout=5).status_code, 200)
            keys = harness.redis_cli(redis.port, "--user", "tg", "--pass", "tg-pass-0123", "--no-auth-warning",
                                     "KEYS", "*pfx*").split()
            self.assertEqual(keys, ["app1:rl:{default:50/10000:pfx}"])
            self.assertEqual(requests.get(fromfile.url("/whoami"), headers={"x-user": "ff"}, timeout=5).status_code,
                             200)
            keys = harness.redis_cli(redis.port, "--user", "tg", "--pass", "tg-pass-0123", "--no-auth-warning",
                                     "KEYS", "*ff*").split()
            self.assertEqual(keys, ["tollgate:rl:{default:50/10000:ff}"])  # the default prefix
            # a wrong password: AUTH refused, counted, never logged
            harness.wait_until(lambda: harness.metric(metrics(wrong_admin), "tollgate_redis_errors_total",
                                                      kind="auth") > 0, what="a refused AUTH")
            self.assertNotIn("not-the-password", wrong.proc.output())
        finally:
            stop_all([gw for gw, _ in gws], [redis, app])

    def test_connect_timeout(self):
        app = harness.start_app("redis-ct-app")
        hole = harness.BlackHole()
        gws = []
        try:
            for t in ("200ms", "1m"):
                port, admin = harness.free_port(), harness.free_port()
                block = f"{{ address: 127.0.0.1:{hole.port}, connect_timeout: {t} }}"
                gws.append((harness.Gateway(config(port, admin, app.port, block, ROUTES), port=port), admin))
            (short, short_admin), (long_, long_admin) = gws
            harness.wait_until(lambda: harness.metric(metrics(short_admin), "tollgate_redis_errors_total",
                                                      kind="connect") > 0, what="the 200ms connect to give up")
            self.assertEqual(harness.metric(metrics(long_admin), "tollgate_redis_errors_total", kind="connect"), 0)
            # meanwhile requests are decided by on_store_error (allow), at once
            self.assertEqual(requests.get(short.url("/whoami"), headers={"x-user": "ct"}, timeout=10).status_code, 200)
        finally:
            stop_all([gw for gw, _ in gws], [app])
            hole.stop()

    def test_quota_on_store_error(self):
        """With Redis unreachable, quota's on_store_error decides: deny
        answers 503, allow lets the request through."""
        app = harness.start_app("redis-q-app")
        port, admin = harness.free_port(), harness.free_port()
        routes = """
  - name: strict
    match: { path_prefix: /items }
    cluster: app
    filters: [{ quota: { key: "header:x-user", limit: 5, period: day, store: redis, on_store_error: deny } }]
  - name: lenient
    cluster: app
    filters: [{ quota: { key: "header:x-user", limit: 5, period: day, store: redis, on_store_error: allow } }]
"""
        gw = harness.Gateway(config(port, admin, app.port, f"{{ address: 127.0.0.1:{harness.dead_port()} }}",
                                    routes), port=port)
        try:
            r = requests.get(gw.url("/items"), headers={"x-user": "q"}, timeout=10)
            self.assertEqual(r.status_code, 503, r.text)
            self.assertEqual(requests.get(gw.url("/whoami"), headers={"x-user": "q"}, timeout=10).status_code, 200)
        finally:
            stop_all([gw], [app])


class RedisTlsTest(unittest.TestCase):
    """Redis over TLS with client certificates (tls-auth-clients yes), as
    managed Redis services require; a gateway that does not trust the
    server's certificate counts connect errors and falls back to
    on_store_error."""

    def test_tls_with_client_certificate(self):
        d = harness.tempfile.mkdtemp(prefix="tg-redis-tls-")
        certs = harness.make_certs(d)
        tls = {"cert": certs["server.crt"], "key": certs["server.key"], "ca": certs["ca.crt"],
               "auth_clients": "yes"}
        app = harness.start_app("redis-tls-app")
        redis = harness.start_redis(name="redis-tls", tls=tls)
        gws = []
        try:
            for ca in (certs["ca.crt"], certs["other-ca.crt"]):
                port, admin = harness.free_port(), harness.free_port()
                block = (f"{{ address: 127.0.0.1:{redis.port}, tls: {{ ca: {ca}, cert: {certs['client.crt']}, "
                         f"key: {certs['client.key']} }} }}")
                gws.append((harness.Gateway(config(port, admin, app.port, block, ROUTES), port=port), admin))
            (good, good_admin), (bad, bad_admin) = gws
            wait_connected(good_admin, 2)
            cli_tls = {"cert": certs["client.crt"], "key": certs["client.key"], "ca": certs["ca.crt"]}
            deadline = time.time() + 30
            while time.time() < deadline:
                sec_usec = harness.redis_cli(redis.port, "TIME", tls=cli_tls).split()
                left = 10000 - (int(sec_usec[0]) * 1000 + int(sec_usec[1]) // 1000) % 10000
                if left >= 6000:
                    break
                time.sleep(left / 1000 + 0.05)
            codes = fire([good.url("")], 60, {"x-user": "tls-1"})
            self.assertEqual(codes.count(200), 50, codes)
            self.assertEqual(harness.redis_cli(redis.port, "HGET", "tollgate:rl:{default:50/10000:tls-1}", "c1",
                                               tls=cli_tls), "50")
            codes = fire([bad.url("")], 60, {"x-user": "tls-2"})
            self.assertEqual(codes.count(200), 60)  # on_store_error: allow
            m = metrics(bad_admin)
            self.assertGreater(harness.metric(m, "tollgate_redis_errors_total", kind="connect"), 0)
            self.assertIn("connect failed", bad.proc.output())
        finally:
            stop_all([gw for gw, _ in gws], [redis, app])


class RedisConfigTest(unittest.TestCase):
    def check(self, text):
        d = harness.Gateway.__new__(harness.Gateway)
        path = os.path.join(harness.tempfile.mkdtemp(prefix="tg-test-"), "t.yaml")
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout + p.stderr

    def test_errors_name_the_line(self):
        base = "listeners: [{ name: m, listen: 127.0.0.1:1 }]\nclusters: [{ name: a, endpoints: [127.0.0.1:2] }]\n"
        rc, out = self.check(base + "routes:\n  - name: r\n    cluster: a\n    filters:\n"
                             "      - rate_limit: { key: route, limit: 1, window: 1s, store: redis }\n")
        self.assertEqual(rc, 1)
        self.assertIn("t.yaml:7:", out)
        self.assertIn("store: redis needs a top-level 'redis:' section", out)
        rc, out = self.check(base + "redis: { address: nowhere, timeout: 0ms, key_prefx: x }\n")
        self.assertEqual(rc, 1)
        self.assertIn("redis address: 'nowhere' is not HOST:PORT", out)
        self.assertIn("did you mean 'key_prefix'?", out)
        rc, out = self.check(base + "redis: { address: 127.0.0.1:6379, cluster: [127.0.0.1:7000] }\n")
        self.assertIn("give address (one Redis) or cluster", out)
        rc, out = self.check(base + "redis: { address: 127.0.0.1:6379, tls: { ca: /no/such/ca.pem } }\n")
        self.assertEqual(rc, 1)
        self.assertIn("/no/such/ca.pem", out)
        rc, out = self.check(base + "redis: { address: 127.0.0.1:6379 }\nroutes:\n  - name: r\n    cluster: a\n"
                             "    filters:\n      - rate_limit: { key: route, limit: 1, window: 1s, store: redis,"
                             " on_store_error: maybe }\n")
        self.assertIn("on_store_error: 'maybe' is not one of allow, deny", out)


if __name__ == "__main__":
    harness.main()
