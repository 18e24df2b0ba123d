"""Endpoint names that DNS follows: a real DNS server in the test (dnslib,
on a loopback port the gateway is pointed at with dns.resolvers) whose
answers the test changes, and uvicorn instances on 127.0.0.1, .2 and .3
(and ::1) behind one name.

- a name moved between the three instances every couple of seconds is
  followed, with every request answered 200 throughout (vanished
  addresses drain, new ones join within the TTL);
- a DNS server that answers SERVFAIL, or is gone, keeps the last set
  (on_failure: keep), counted; on_failure: fail drops it (503) until it
  resolves again;
- a name that does not resolve at start-up starts with no endpoint (503)
  and joins when it does; IPv6 answers with lookup_family v6 and auto;
- a new address is health-checked before it gets requests;
- /metrics and /status.json show the names, their addresses and counts.
"""
import concurrent.futures
import json
import shutil
import subprocess
import threading
import time
import urllib.request

import requests
from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer

import harness
from test_status_page import CHROMIUM, browser

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


class Zone(BaseResolver):
    """Answers from a table the test edits: name -> list of addresses
    (A and AAAA as their form says), TTL 1 s; `fail` names answer
    SERVFAIL; any other name NXDOMAIN."""

    def __init__(self):
        self.lock = threading.Lock()
        self.names = {}
        self.fail = set()
        self.queries = 0

    def set(self, name, addrs):
        with self.lock:
            self.names[name] = list(addrs)
            self.fail.discard(name)

    def servfail(self, name):
        with self.lock:
            self.fail.add(name)

    def resolve(self, request, handler):
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries += 1
            if qname in self.fail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            addrs = self.names.get(qname)
        if addrs is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for a in addrs:
            if qtype == "A" and ":" not in a:
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(a), ttl=1))
            elif qtype == "AAAA" and ":" in a:
                reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(a), ttl=1))
        return reply


class Quiet:
    """dnslib's logger, silenced (its default prints every query)."""

    def __getattr__(self, name):
        return lambda *a, **k: None


class CutHandler(DNSHandler):
    """UDP answers longer than 512 bytes are cut (TC set, the question
    kept, as servers do; dnslib's own cut drops the question, which a
    resolver cannot match): the resolver asks again over TCP."""

    def get_reply(self, data):
        request = DNSRecord.parse(data)
        rdata = self.server.resolver.resolve(request, self).pack()
        if self.protocol == "udp" and len(rdata) > 512:
            cut = request.reply()
            cut.header.tc = 1
            rdata = cut.pack()
        return rdata


class Servers:
    """The zone on UDP and TCP, one port."""

    def __init__(self, zone, port):
        self.all = [DNSServer(zone, port=port, address="127.0.0.1", logger=Quiet(), tcp=tcp, handler=CutHandler)
                    for tcp in (False, True)]
        for srv in self.all:
            srv.start_thread()

    def stop(self):
        for srv in self.all:
            srv.stop()
            srv.server.server_close()  # the port is free for a server started again on it


def start_dns(zone, port):
    return Servers(zone, port)


class DnsTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app_port = harness.free_port()
        cls.apps = [harness.start_app(f"a{i}", port=cls.app_port, host=h) for i, h in enumerate(HOSTS)]
        cls.six = harness.start_app("six", host="::1")
        cls.procs = [*cls.apps, cls.six]
        cls.zone = Zone()
        cls.dns_port = harness.free_port()
        cls.dns = start_dns(cls.zone, cls.dns_port)
        z = cls.zone
        z.set("api.test", ["127.0.0.1"])
        z.set("keep.test", ["127.0.0.1"])
        z.set("strict.test", ["127.0.0.2"])
        z.set("six.test", ["::1"])
        z.set("both.test", ["127.0.0.3", "::1"])
        z.set("checked.test", ["127.0.0.1"])
        z.set("dual.test", ["127.0.0.2", "::1"])
        # 600 addresses (127.0.8.0 ...): an answer only TCP carries whole
        cls.many = [f"127.0.{8 + i // 250}.{i % 250 + 1}" for i in range(600)]
        z.set("many.test", list(reversed(cls.many)))
        # late.test does not exist yet: NXDOMAIN at start-up
        p = cls.app_port
        cls.start_gateway(f"""
dns: {{ resolvers: ['127.0.0.1:{cls.dns_port}'], min_ttl: 100ms, max_ttl: 1s, timeout: 2s }}
routes:
  - {{ name: keep, match: {{ headers: [{{ name: x-c, value: keep }}] }}, cluster: keep }}
  - {{ name: strict, match: {{ headers: [{{ name: x-c, value: strict }}] }}, cluster: strict }}
  - {{ name: late, match: {{ headers: [{{ name: x-c, value: late }}] }}, cluster: late }}
  - {{ name: six, match: {{ headers: [{{ name: x-c, value: six }}] }}, cluster: six }}
  - {{ name: both, match: {{ headers: [{{ name: x-c, value: both }}] }}, cluster: both }}
  - {{ name: checked, match: {{ headers: [{{ name: x-c, value: checked }}] }}, cluster: checked }}
  - {{ name: dual, match: {{ headers: [{{ name: x-c, value: dual }}] }}, cluster: dual }}
  - {{ name: hosts, match: {{ headers: [{{ name: x-c, value: hosts }}] }}, cluster: hosts }}
  - {{ name: api, cluster: api }}
clusters:
  - {{ name: api, endpoints: ['api.test:{p}'] }}
  - {{ name: keep, endpoints: ['keep.test:{p}'] }}
  - {{ name: strict, endpoints: ['strict.test:{p}'], dns: {{ on_failure: fail }} }}
  - {{ name: late, endpoints: ['late.test:{p}'] }}
  - {{ name: six, endpoints: ['six.test:{cls.six.port}'], dns: {{ lookup_family: v6 }} }}
  - {{ name: both, endpoints: ['both.test:{cls.six.port}'] }}
  - {{ name: dual, endpoints: ['dual.test:{p}'], dns: {{ lookup_family: all }} }}
  - {{ name: hosts, endpoints: ['localhost:{p}'] }}
  - {{ name: many, endpoints: ['many.test:{p}'] }}
  - {{ name: capped, endpoints: ['many.test:{p}'], dns: {{ max_addresses: 100 }} }}
  - name: checked
    endpoints: ['checked.test:{p}']
    health_check: {{ path: /whoami, interval: 300ms, timeout: 1s, healthy_threshold: 5 }}
""")

    @classmethod
    def tearDownClass(cls):
        cls.dns.stop()
        cls.finish()

    def get(self, path):
        """"/keep/whoami": /whoami through cluster keep (routes match x-c)."""
        parts = path.split("/")
        if len(parts) > 2:
            return requests.get(self.gateway.url("/" + parts[2]), headers={"x-c": parts[1]}, timeout=10)
        return requests.get(self.gateway.url(path), timeout=10)

    def who(self, path="/whoami"):
        r = self.get(path)
        return r.status_code, r.headers.get("x-upstream")

    def status(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/status.json", timeout=10) as r:
            return json.loads(r.read())

    def cluster(self, name):
        return next(c for c in self.status()["clusters"] if c["name"] == name)

    def metric(self, line_start):
        for line in harness.scrape(self.admin).splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return None

    def test_a_moving_name_is_followed_with_no_failed_request(self):
        """The issue's done-when: api.test moves between three uvicorn
        instances every two seconds while four clients keep calling; every
        request is answered 200, and each set is served once it is in DNS."""
        stop = threading.Event()
        results = []

        def client():
            s = requests.Session()
            while not stop.is_set():
                r = s.get(self.gateway.url("/whoami"), timeout=10)
                results.append((r.status_code, r.headers.get("x-upstream")))

        sets = [["127.0.0.2"], ["127.0.0.3"], ["127.0.0.1", "127.0.0.2", "127.0.0.3"], ["127.0.0.2"],
                ["127.0.0.1"]]
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(client) for _ in range(4)]
            try:
                for addrs in sets:
                    self.zone.set("api.test", addrs)
                    want = {f"a{HOSTS.index(a)}" for a in addrs}
                    # served by the new set only, within the TTL (1 s) and the lookup
                    harness.wait_until(lambda: all(self.who()[1] in want for _ in range(6)),
                                       what=f"api.test served by {sorted(want)}")
                    if len(addrs) == 3:
                        seen = set()
                        harness.wait_until(lambda: seen.update(self.who()[1] for _ in range(6)) or seen == want,
                                           what="every address of a three-address answer served")
                    time.sleep(1.0)
            finally:
                stop.set()
                for f in futs:
                    f.result()
        self.assertGreater(len(results), 50)
        self.assertEqual([r for r in results if r[0] != 200], [])
        self.assertEqual({u for _, u in results} >= {"a0", "a1", "a2"}, True)
        self.assertGreaterEqual(self.metric('tollgate_dns_changes_total{cluster="api",name="api.test"}'), 5)
        self.assertGreaterEqual(self.metric("tollgate_dns_updates_total"), 5)
        self.assertEqual(self.metric('tollgate_cluster_endpoints{cluster="api"}'), 1)

    def test_failures_keep_the_last_set_or_drop_it(self):
        """SERVFAIL: keep.test keeps its address (every request 200 for
        several TTLs), counted as failures; strict.test (on_failure: fail)
        drops its endpoint (503) until it resolves again."""
        self.assertEqual(self.who("/keep/whoami"), (200, "a0"))
        self.assertEqual(self.who("/strict/whoami"), (200, "a1"))
        before = self.metric('tollgate_dns_failures_total{cluster="keep",name="keep.test"}')
        self.zone.servfail("keep.test")
        self.zone.servfail("strict.test")
        harness.wait_until(lambda: self.metric('tollgate_dns_failures_total{cluster="keep",name="keep.test"}')
                           >= before + 2, what="two failed lookups of keep.test")
        harness.wait_until(lambda: self.get("/strict/whoami").status_code == 503, what="strict.test dropped")
        for _ in range(10):
            self.assertEqual(self.who("/keep/whoami"), (200, "a0"))
        names = {d["name"]: d for d in self.cluster("keep")["dns"]}
        self.assertEqual(names["keep.test"]["addresses"], ["127.0.0.1"])
        self.assertNotEqual(names["keep.test"]["last_error"], "")
        self.assertEqual(self.cluster("strict")["endpoints"], [])
        self.zone.set("keep.test", ["127.0.0.3"])
        self.zone.set("strict.test", ["127.0.0.2"])
        harness.wait_until(lambda: self.who("/keep/whoami") == (200, "a2"), what="keep.test followed again")
        harness.wait_until(lambda: self.who("/strict/whoami") == (200, "a1"), what="strict.test back")

    def test_a_name_unknown_at_start_joins_when_it_resolves(self):
        self.assertEqual(self.get("/late/whoami").status_code, 503)
        self.assertEqual(self.cluster("late")["dns"][0]["resolved"], False)
        self.zone.set("late.test", ["127.0.0.3"])
        harness.wait_until(lambda: self.who("/late/whoami") == (200, "a2"), what="late.test joined")
        ep = self.cluster("late")["endpoints"]
        self.assertEqual([(e["address"], e["name"]) for e in ep], [(f"127.0.0.3:{self.app_port}",
                                                                   f"late.test:{self.app_port}")])

    def test_ipv6_answers(self):
        """lookup_family v6 asks for AAAA only; auto takes the IPv4
        addresses when there are any, else the IPv6 ones."""
        self.assertEqual(self.who("/six/whoami"), (200, "six"))
        self.assertEqual(self.cluster("six")["endpoints"][0]["address"], f"[::1]:{self.six.port}")
        both = self.cluster("both")
        self.assertEqual(both["dns"][0]["addresses"], ["127.0.0.3"])  # auto: the IPv4 one
        self.assertEqual(self.get("/both/whoami").status_code, 503)  # nothing listens on 127.0.0.3 at that port
        self.assertEqual(self.cluster("both")["endpoints"][0]["connect_failures"], 1)
        self.zone.set("both.test", ["::1"])
        harness.wait_until(lambda: self.who("/both/whoami") == (200, "six"), what="both.test on its IPv6 address")

    def test_all_families_and_the_hosts_file(self):
        """lookup_family all: an IPv4 and an IPv6 address are two endpoints;
        /etc/hosts is read before the servers (localhost)."""
        dual = self.cluster("dual")
        self.assertEqual(sorted(e["address"] for e in dual["endpoints"]),
                         sorted([f"127.0.0.2:{self.app_port}", f"[::1]:{self.app_port}"]))
        self.assertEqual(dual["dns"][0]["addresses"], ["127.0.0.2", "::1"])
        self.assertEqual(self.who("/hosts/whoami"), (200, "a0"))
        self.assertEqual(self.cluster("hosts")["endpoints"][0]["address"], f"127.0.0.1:{self.app_port}")

    def test_a_new_address_is_checked_before_it_gets_requests(self):
        """checked.test gains an address where nothing listens: it waits for
        its first health check, which fails, so no request goes to it —
        while the address the cluster had keeps serving."""
        harness.wait_until(lambda: self.cluster("checked")["endpoints"][0]["state"] == "up", what="checked up")
        self.zone.set("checked.test", ["127.0.0.1", "127.0.0.4"])
        harness.wait_until(lambda: len(self.cluster("checked")["endpoints"]) == 2, what="the new address joined")
        for _ in range(20):
            self.assertEqual(self.who("/checked/whoami"), (200, "a0"))
        eps = {e["address"]: e for e in self.cluster("checked")["endpoints"]}
        new = eps[f"127.0.0.4:{self.app_port}"]
        self.assertIn(new["state"], ("checking", "down"))
        self.assertEqual(new["requests"], 0)
        self.assertEqual(new["connect_failures"], 0)
        # a new address that answers is let in by one passed check (healthy_threshold 5 is for recovery)
        self.zone.set("checked.test", ["127.0.0.1", "127.0.0.2"])
        harness.wait_until(lambda: {self.who("/checked/whoami")[1] for _ in range(8)} == {"a0", "a1"},
                           what="the answering new address served")

    def test_many_addresses_and_max_addresses(self):
        """An answer of 600 addresses (over TCP: the UDP one is cut) makes
        600 endpoints; a cluster's max_addresses: 100 keeps the lowest 100
        in address order, whatever order the server gives them in, and
        says so once."""
        def eps(name):
            return sorted(e["address"].rsplit(":", 1)[0] for e in self.cluster(name)["endpoints"])
        key = lambda a: tuple(int(x) for x in a.split("."))
        many = harness.wait_until(lambda: (lambda e: e if len(e) == 600 else None)(eps("many")), 30,
                                  "600 endpoints from one answer")
        self.assertEqual(sorted(many, key=key), sorted(self.many, key=key))
        capped = eps("capped")
        self.assertEqual(sorted(capped, key=key), sorted(self.many, key=key)[:100])
        time.sleep(0.5)  # several re-resolutions (TTL 1 s, min_ttl 100ms): still one warning
        log = self.gateway.proc.output()
        self.assertEqual(log.count("many.test: 600 addresses, more than max_addresses (100)"), 1, log[-2000:])

    def test_metrics_and_status(self):
        text = harness.scrape(self.admin)
        for fam in ("tollgate_dns_lookups_total", "tollgate_dns_failures_total", "tollgate_dns_changes_total",
                    "tollgate_dns_addresses", "tollgate_cluster_endpoints", "tollgate_dns_updates_total"):
            self.assertIn(f"# TYPE {fam} ", text)
        self.assertGreaterEqual(self.metric('tollgate_dns_lookups_total{cluster="six",name="six.test"}'), 1)
        self.assertEqual(self.metric('tollgate_dns_addresses{cluster="six",name="six.test"}'), 1)
        self.assertIn(f'endpoint="[::1]:{self.six.port}",name="six.test:{self.six.port}"', text)
        d = self.cluster("six")["dns"][0]
        self.assertEqual((d["name"], d["addresses"], d["resolved"], d["last_error"]), ("six.test", ["::1"], True, ""))
        self.assertGreaterEqual(d["ttl_ms"], 100)
        self.assertLessEqual(d["ttl_ms"], 1000)
        # the status page shows each cluster's resolved set
        self.assertIsNotNone(CHROMIUM, "chromium-headless-shell is not installed (scripts/deps.sh installs it)")
        dom = browser(f"http://127.0.0.1:{self.admin}/", "--dump-dom")
        self.assertIn('data-loaded="true"', dom)
        self.assertIn("DNS six.test: ::1", dom)
        self.assertIn(f'data-endpoint="six/[::1]:{self.six.port}"', dom)
        self.assertIn(f"[::1]:{self.six.port} (six.test:{self.six.port})", dom)
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool (Debian package prometheus) is required")
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class DnsServerGoneTest(harness.GatewayTest):
    """The resolver stops answering at all (its port closed): the last
    set stays, requests keep being answered; when it is back, moves are
    followed again. A reload keeps the answers of names it keeps and
    forgets names it drops."""

    @classmethod
    def setUpClass(cls):
        cls.app_port = harness.free_port()
        cls.apps = [harness.start_app(f"g{i}", port=cls.app_port, host=h) for i, h in enumerate(HOSTS[:2])]
        cls.procs = list(cls.apps)
        cls.zone = Zone()
        cls.zone.set("api.test", ["127.0.0.1"])
        cls.zone.set("other.test", ["127.0.0.2"])
        cls.dns_port = harness.free_port()
        cls.dns = start_dns(cls.zone, cls.dns_port)
        cls.body = f"""
dns: {{ resolvers: ['127.0.0.1:{cls.dns_port}'], min_ttl: 100ms, max_ttl: 500ms, timeout: 1s }}
routes: [{{ name: api, cluster: api }}]
clusters:
  - {{ name: api, endpoints: ['api.test:{cls.app_port}'] }}
"""
        cls.start_gateway(cls.body)

    @classmethod
    def tearDownClass(cls):
        if cls.dns is not None:
            cls.dns.stop()
        cls.finish()

    def metric(self, line_start):
        for line in harness.scrape(self.admin).splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return None

    def test_server_gone_keeps_the_last_set(self):
        r = requests.get(self.gateway.url("/whoami"), timeout=10)
        self.assertEqual(r.headers["x-upstream"], "g0")
        self.dns.stop()
        self.dns = None
        before = self.metric('tollgate_dns_failures_total{cluster="api",name="api.test"}')
        harness.wait_until(lambda: self.metric('tollgate_dns_failures_total{cluster="api",name="api.test"}')
                           >= before + 2, what="failed lookups while the server is gone")
        for _ in range(20):
            r = requests.get(self.gateway.url("/whoami"), timeout=10)
            self.assertEqual((r.status_code, r.headers["x-upstream"]), (200, "g0"))
        self.zone.set("api.test", ["127.0.0.2"])
        type(self).dns = start_dns(self.zone, self.dns_port)
        harness.wait_until(lambda: requests.get(self.gateway.url("/whoami"), timeout=10).headers["x-upstream"] == "g1",
                           what="the move followed once the server is back")
        # a reload that swaps the name: the old name is forgotten, the new one resolved at once
        with open(self.gateway.path, "w") as f:
            f.write(self.gateway_config().replace("api.test", "other.test"))
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}/-/reload", method="POST",
                                     headers={"x-tollgate-admin": "1"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            self.assertEqual(resp.status, 200)
        r = requests.get(self.gateway.url("/whoami"), timeout=10)
        self.assertEqual((r.status_code, r.headers["x-upstream"]), (200, "g1"))
        text = harness.scrape(self.admin)
        self.assertNotIn('name="api.test"', text)
        self.assertIn('tollgate_dns_addresses{cluster="api",name="other.test"} 1', text)

    def gateway_config(self):
        return (f"workers: 2\nadmin: {{ listen: 127.0.0.1:{self.admin} }}\n"
                f"listeners: [{{ name: main, listen: 127.0.0.1:{self.port} }}]\n{self.body}")


if __name__ == "__main__":
    harness.main()
