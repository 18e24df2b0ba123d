"""docs/monitoring/ checked against the binary: the Prometheus rules pass
`promtool check rules` and their unit tests (`promtool test rules`), and
every metric, label matcher and `by` label that the rules and the Grafana
dashboard use is one a live gateway's /metrics exposes (a gateway with a
TLS listener, health checks, filters and a Redis store, so that every
family is there). The certificate expiry metric matches the file."""
import json
import os
import re
import subprocess
import tempfile

import requests
import yaml

import harness

DOCS = os.path.join(harness.HERE, "..", "..", "docs", "monitoring")
RULES = os.path.join(DOCS, "tollgate.rules.yml")
DASHBOARD = os.path.join(DOCS, "grafana-dashboard.json")
PROMTOOL = "/usr/bin/promtool"
# added by Prometheus at scrape time or by histogram_quantile, not by the gateway
SCRAPE_LABELS = {"job", "instance"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
                "bool", "le"}


def parse_metrics(text):
    """family name -> (type, set of label names seen on its samples)."""
    fams, types = {}, {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            types[m.group(1)] = m.group(2)
            fams[m.group(1)] = set()
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?", line)
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in fams else name
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
        fams.setdefault(base, set()).update(labels)
    return {n: (types.get(n, "untyped"), ls) for n, ls in fams.items()}


def rule_exprs():
    """(where, expr) of every rule; the recorded names."""
    doc = yaml.safe_load(open(RULES))
    out, recorded = [], set()
    for g in doc["groups"]:
        for r in g["rules"]:
            out.append((r.get("record") or r.get("alert"), r["expr"]))
            if "record" in r:
                recorded.add(r["record"])
    return out, recorded


def dashboard_exprs():
    d = json.load(open(DASHBOARD))
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            out.append((f"variable {v['name']}", v["definition"]))
    return d, out


class MonitoringTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tg-monitoring-")
        cls.certs = harness.make_certs(cls.dir)
        cls.app = harness.start_app("monitoring")
        cls.redis = harness.start_redis()
        cls.procs = [cls.app, cls.redis]
        cls.port, cls.tport, cls.admin = harness.free_port(), harness.free_port(), harness.free_port()
        c = cls.certs
        cfg = f"""
workers: 2
admin: {{ listen: 127.0.0.1:{cls.admin} }}
redis: {{ address: 127.0.0.1:{cls.redis.port} }}
tracing: {{ sample_ratio: 0, otlp: {{ endpoint: "http://127.0.0.1:{harness.dead_port()}/v1/traces" }} }}
listeners:
  - {{ name: main, listen: 127.0.0.1:{cls.port} }}
  - name: secure
    listen: 127.0.0.1:{cls.tport}
    tls:
      certificates:
        - {{ cert: {c['server.crt']}, key: {c['server.key']} }}
        - {{ cert: {c['other.crt']}, key: {c['other.key']} }}
clusters:
  - name: app
    endpoints: [127.0.0.1:{cls.app.port}]
    health_check: {{ path: /whoami, interval: 500ms }}
routes:
  - name: api
    match: {{ path_prefix: /items }}
    cluster: app
    filters:
      - auth: {{ api_keys: {{ keys: [{{ name: ci, key: monitoring-key-123 }}] }} }}
      - rate_limit: {{ key: identity, limit: 1000, window: 1m, store: redis }}
      - concurrency_limit: {{ key: identity, limit: 10 }}
  - name: other
    cluster: app
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port)
        for _ in range(3):
            requests.get(f"http://127.0.0.1:{cls.port}/items", headers={"x-api-key": "monitoring-key-123"}, timeout=10)
        requests.get(f"http://127.0.0.1:{cls.port}/items", timeout=10)  # an auth failure
        # a gRPC call refused by auth: UNAUTHENTICATED, so the grpc_code label has a sample
        rc, _, err = harness.curl("--http2-prior-knowledge", "-o", "/dev/null", "-H", "content-type: application/grpc",
                                  "--data-binary", "", f"http://127.0.0.1:{cls.port}/items")
        assert rc == 0, err
        cls.metrics = requests.get(f"http://127.0.0.1:{cls.admin}/metrics", timeout=10).text
        cls.families = parse_metrics(cls.metrics)

    def test_promtool_checks_and_unit_tests(self):
        p = subprocess.run([PROMTOOL, "check", "rules", RULES], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS", p.stdout)
        p = subprocess.run([PROMTOOL, "test", "rules", "tollgate.rules.test.yml"], cwd=DOCS, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS", p.stdout)
        tests = open(os.path.join(DOCS, "tollgate.rules.test.yml")).read()
        alerts = [a for w, a in [(w, w) for w, _ in rule_exprs()[0]] if a.startswith("Tollgate")]
        for a in alerts:  # every alert has a unit test that expects it to fire
            self.assertRegex(tests, rf"alertname: {a}\n\s+exp_alerts:\n\s+- exp_labels", a)

    def check_expr(self, where, expr, recorded):
        tokens = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", re.sub(r'"[^"]*"', '""', expr))
        used = []
        for t in tokens:
            if ":" in t:
                self.assertIn(t, recorded, f"{where}: recording rule {t} is not defined")
            elif t.startswith("tollgate_"):
                base = t if t in self.families else re.sub(r"_(bucket|sum|count)$", "", t)
                self.assertIn(base, self.families, f"{where}: /metrics has no {t}")
                if base != t:
                    self.assertEqual(self.families[base][0], "histogram", f"{where}: {t} of a non-histogram")
                used.append(base)
        # label matchers name labels the metric has
        for name, body in re.findall(r"(tollgate_[a-zA-Z0-9_]+)\{([^}]*)\}", expr):
            base = name if name in self.families else re.sub(r"_(bucket|sum|count)$", "", name)
            for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)", body):
                if label not in SCRAPE_LABELS:
                    self.assertIn(label, self.families[base][1], f"{where}: {name} has no label {label}")
        # `by (...)` labels exist on some metric of the expression
        have = set().union(SCRAPE_LABELS, {"le"}, *(self.families[b][1] for b in used))
        for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            for label in [l.strip() for l in group.split(",") if l.strip()]:
                self.assertIn(label, have, f"{where}: no metric of the expression has label {label}")
        return used

    def test_rules_name_only_exposed_metrics(self):
        exprs, recorded = rule_exprs()
        used = set()
        for where, expr in exprs:
            used.update(self.check_expr(where, expr, recorded))
        for m in ("tollgate_requests_total", "tollgate_upstream_endpoint_healthy", "tollgate_config_reloads_total",
                  "tollgate_ratelimit_decisions_total", "tollgate_tls_certificate_expiry_timestamp_seconds"):
            self.assertIn(m, used)

    def test_dashboard_names_only_exposed_metrics(self):
        d, exprs = dashboard_exprs()
        self.assertGreater(len(exprs), 20)
        _, recorded = rule_exprs()
        for where, expr in exprs:
            self.assertTrue(expr.strip(), where)
            self.check_expr(where, expr, recorded)
        # a well-formed dashboard: unique ids, non-overlapping panels, one data source variable
        ids = [p["id"] for p in d["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        cells = set()
        for p in d["panels"]:
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    self.assertNotIn((x, y), cells, f"panel {p['title']} overlaps another")
                    cells.add((x, y))
        for p in d["panels"]:
            for t in p.get("targets", []):
                self.assertEqual(t["datasource"]["uid"], "${datasource}")

    def test_certificate_expiry_metric_matches_the_files(self):
        for name, path in (("server", self.certs["server.crt"]), ("other", self.certs["other.crt"])):
            out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in", path],
                                 capture_output=True, text=True, timeout=30).stdout
            end = subprocess.run(["date", "-d", out.split("=", 1)[1].strip(), "+%s"], capture_output=True,
                                 text=True, timeout=30).stdout.strip()
            v = harness.metric(self.metrics, "tollgate_tls_certificate_expiry_timestamp_seconds", listener="secure",
                               cert=path)
            self.assertEqual(int(v), int(end), name)
        # cleartext listeners have no series
        self.assertNotIn('tollgate_tls_certificate_expiry_timestamp_seconds{listener="main"', self.metrics)


if __name__ == "__main__":
    harness.main()
