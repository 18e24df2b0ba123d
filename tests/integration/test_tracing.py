"""W3C trace context and OTLP export: a valid traceparent keeps its trace
id and sampled flag while tollgate's span becomes the upstream's parent,
tracestate passes with it; an absent or invalid one is replaced by a new
trace (sampled by the ratio), an invalid one's tracestate dropped; the
access log carries trace_id and span_id; x-request-id is left alone;
sampled requests reach a small OTLP/HTTP receiver as spans in batches,
and a dead receiver costs dropped spans (counted), never requests."""
import http.server
import json
import os
import re
import threading
import time
import unittest

import requests

import harness

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Receiver(http.server.ThreadingHTTPServer):
    """A stand-in OTLP/HTTP collector: keeps each POSTed JSON body."""

    def __init__(self, status=200):
        self.bodies, self.status = [], status

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(h):
                body = h.rfile.read(int(h.headers["content-length"]))
                self.bodies.append((h.path, h.headers.get("content-type"), json.loads(body)))
                h.send_response(self.status)
                h.send_header("content-length", "0")
                h.end_headers()

            def log_message(h, *a):
                pass

        super().__init__(("127.0.0.1", harness.free_port()), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def spans(self):
        out = []
        for _, _, doc in list(self.bodies):
            for rs in doc["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    out += ss["spans"]
        return out


def upstream_headers(r):
    return {k: v for k, v in r.json()["headers"]}


class TracingTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.receiver = Receiver()
        cls.dir = harness.tempfile.mkdtemp(prefix="tg-tracing-")
        cls.log = os.path.join(cls.dir, "access.log")
        cls.admin = harness.free_port()
        cls.start_app_and_gateway("tracing", f"""
admin: {{ listen: 127.0.0.1:{cls.admin} }}
tracing:
  sample_ratio: 0.5
  service_name: edge
  otlp: {{ endpoint: "http://127.0.0.1:{cls.receiver.port}/v1/traces", batch_size: 50, flush_interval: 200ms }}
filters:
  - access_log: {{ path: {cls.log} }}
routes:
  - {{ name: echo, match: {{ path_prefix: /echo }}, cluster: app }}
  - {{ name: other, cluster: app }}
""", workers=2)

    @classmethod
    def tearDownClass(cls):
        cls.finish()
        cls.receiver.shutdown()

    def get(self, headers=None):
        return requests.get(self.gateway.url("/echo/headers"), headers=headers or {}, timeout=10)

    def test_continues_a_valid_trace(self):
        r = self.get({"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "vendor=abc,other=1"})
        h = upstream_headers(r)
        m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", h["traceparent"])
        self.assertTrue(m, h["traceparent"])
        self.assertEqual(m.group(1), TRACE)          # the same trace
        self.assertNotEqual(m.group(2), PARENT)      # tollgate's span is the upstream's parent
        self.assertEqual(m.group(3), "01")           # the caller's sampling decision holds
        self.assertEqual(h["tracestate"], "vendor=abc,other=1")
        # unsampled stays unsampled, whatever the ratio
        h = upstream_headers(self.get({"traceparent": f"00-{TRACE}-{PARENT}-00"}))
        self.assertTrue(h["traceparent"].endswith("-00"))
        # a later version's extra fields are understood, the upstream gets version 00
        h = upstream_headers(self.get({"traceparent": f"cc-{TRACE}-{PARENT}-01-what-ever"}))
        self.assertTrue(h["traceparent"].startswith(f"00-{TRACE}-"))

    def test_starts_a_trace_when_absent_or_invalid(self):
        seen = set()
        flags = []
        for _ in range(200):
            h = upstream_headers(self.get())
            m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])", h["traceparent"])
            self.assertTrue(m, h["traceparent"])
            seen.add(m.group(1))
            flags.append(m.group(3))
        self.assertEqual(len(seen), 200)  # a new trace each time
        sampled = flags.count("01")
        self.assertTrue(40 <= sampled <= 160, sampled)  # ratio 0.5 (binomial, 200 draws)
        for bad in (f"00-{TRACE}-{PARENT}-1", f"00-{'0' * 32}-{PARENT}-01", f"00-{TRACE}-{'0' * 16}-01",
                    f"ff-{TRACE}-{PARENT}-01", f"00-{TRACE.upper()}-{PARENT}-01", f"00-{TRACE}-{PARENT}-01-extra",
                    "garbage"):
            h = upstream_headers(self.get({"traceparent": bad, "tracestate": "vendor=abc"}))
            self.assertNotIn(TRACE, h["traceparent"], bad)
            self.assertRegex(h["traceparent"], r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$")
            self.assertNotIn("tracestate", h, bad)  # it belonged to the invalid parent

    def test_request_id_untouched_and_access_log_ids(self):
        r = self.get({"x-request-id": "my-request-1", "traceparent": f"00-{TRACE}-{PARENT}-01"})
        h = upstream_headers(r)
        self.assertEqual(h["x-request-id"], "my-request-1")
        span = h["traceparent"].split("-")[2]
        deadline = time.time() + 30
        line = None
        while time.time() < deadline and line is None:
            with open(self.log) as f:
                for l in f:
                    d = json.loads(l)
                    if d["request_id"] == "my-request-1":
                        line = d
            time.sleep(0.05)
        self.assertIsNotNone(line)
        self.assertEqual(line["trace_id"], TRACE)
        self.assertEqual(line["span_id"], span)

    def test_spans_are_exported_in_batches(self):
        before = len(self.receiver.spans())
        ids = []
        for i in range(120):
            parent = f"{i + 1:016x}"
            r = self.get({"traceparent": f"00-{TRACE}-{parent}-01", "x-request-id": f"export-{i}"})
            ids.append((parent, upstream_headers(r)["traceparent"].split("-")[2]))
        for _ in range(20):  # unsampled: never exported
            self.get({"traceparent": f"00-{TRACE}-{PARENT}-00", "x-request-id": "not-sampled"})
        deadline = time.time() + 30
        while time.time() < deadline:
            mine = [s for s in self.receiver.spans()[before:]
                    if any(a["key"] == "http.request.header.x-request-id" and
                           a["value"]["stringValue"].startswith("export-") for a in s["attributes"])]
            if len(mine) >= 120:
                break
            time.sleep(0.1)
        self.assertEqual(len(mine), 120)
        by_span = {s["spanId"]: s for s in mine}
        for parent, span in ids:
            s = by_span[span]
            self.assertEqual(s["traceId"], TRACE)
            self.assertEqual(s["parentSpanId"], parent)
            self.assertEqual(s["kind"], 2)
            self.assertEqual(s["name"], "GET echo")
            attrs = {a["key"]: a["value"] for a in s["attributes"]}
            self.assertEqual(attrs["http.response.status_code"], {"intValue": "200"})
            self.assertEqual(attrs["url.path"], {"stringValue": "/echo/headers"})
            self.assertEqual(attrs["http.route"], {"stringValue": "echo"})
            self.assertLess(int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"]))
        self.assertFalse([s for s in self.receiver.spans()
                          for a in s["attributes"] if a["value"].get("stringValue") == "not-sampled"])
        path, ctype, doc = self.receiver.bodies[-1]
        self.assertEqual((path, ctype), ("/v1/traces", "application/json"))
        res = doc["resourceSpans"][0]["resource"]["attributes"]
        self.assertIn({"key": "service.name", "value": {"stringValue": "edge"}}, res)
        self.assertLess(len(self.receiver.bodies), 120)  # batched, not one POST per span
        metrics = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=10).text
        self.assertGreaterEqual(harness.metric(metrics, "tollgate_tracing_spans_exported_total"), 120)


class DeadCollectorTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dead = harness.dead_port()
        cls.admin = harness.free_port()
        cls.start_app_and_gateway("tracing-dead", f"""
admin: {{ listen: 127.0.0.1:{cls.admin} }}
tracing:
  otlp: {{ endpoint: "http://127.0.0.1:{cls.dead}/v1/traces", batch_size: 10, flush_interval: 100ms, timeout: 500ms }}
routes:
  - {{ name: all, cluster: app }}
""")

    def test_requests_unaffected_drops_counted(self):
        for _ in range(30):
            self.assertEqual(requests.get(self.gateway.url("/whoami"), timeout=10).status_code, 200)
        deadline = time.time() + 30
        dropped = 0
        while time.time() < deadline and dropped < 30:
            metrics = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=10).text
            dropped = harness.metric(metrics, "tollgate_tracing_spans_dropped_total", reason="export_failed")
            time.sleep(0.1)
        self.assertEqual(dropped, 30)
        self.assertEqual(harness.metric(metrics, "tollgate_tracing_spans_exported_total"), 0)


def hanging_collector():
    """A collector that accepts, reads, and never answers until released."""
    release = threading.Event()

    def handler(c):
        c.settimeout(120)
        c.recv(65536)
        release.wait(120)
    srv = harness.ScriptedServer(handler)
    srv.release = release
    return srv


class TracingSettingsTest(unittest.TestCase):
    """otlp's flush_interval, queue_size and timeout, each by its effect."""

    def gateway(self, collector, settings, workers=1):
        """A gateway exporting to the collector on port `collector` with
        these otlp settings; (gateway, admin port)."""
        otlp = f'{{ endpoint: "http://127.0.0.1:{collector}/v1/traces", {settings} }}'
        app = harness.start_app("tracing-settings")
        self.addCleanup(app.stop)
        port, admin = harness.free_port(), harness.free_port()
        gw = harness.Gateway(f"""
workers: {workers}
admin: {{ listen: 127.0.0.1:{admin} }}
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
tracing:
  otlp: {otlp}
routes: [{{ name: all, cluster: app }}]
clusters: [{{ name: app, endpoints: [127.0.0.1:{app.port}] }}]
""", port=port)
        self.addCleanup(harness.assert_clean_exit, self, gw)
        return gw, admin

    def dropped(self, admin, reason):
        return harness.metric(harness.scrape(admin), "tollgate_tracing_spans_dropped_total", reason=reason)

    def test_flush_interval_sends_a_partial_batch(self):
        quick, slow = Receiver(), Receiver()
        for r in (quick, slow):
            self.addCleanup(r.shutdown)
        gq, _ = self.gateway(quick.port, "batch_size: 100, flush_interval: 300ms")
        gs, _ = self.gateway(slow.port, "batch_size: 100, flush_interval: 1h")
        for g in (gs, gq):
            for _ in range(3):
                self.assertEqual(requests.get(g.url("/whoami"), timeout=10).status_code, 200)
        harness.wait_until(lambda: len(quick.spans()) == 3, what="the partial batch after flush_interval")
        # partial batches (3 spans of 100; one POST, or two when the
        # requests straddled a flush on a busy machine), each within its
        # interval; the one with an hour to go has sent nothing yet (it went first)
        self.assertIn(len(quick.bodies), (1, 2, 3))
        self.assertEqual(slow.bodies, [])

    def test_hanging_collector_timeout_and_queue_size(self):
        """A collector that never answers: each POST gives up after
        `timeout` and its spans count as export_failed; while one hangs
        (a minute's timeout), spans past queue_size wait nowhere: dropped
        as queue_full. Requests are answered throughout."""
        hang, hang2 = hanging_collector(), hanging_collector()
        for h in (hang, hang2):
            self.addCleanup(h.stop)
        gt, at = self.gateway(hang.port, "batch_size: 5, flush_interval: 50ms, timeout: 300ms")
        gq, aq = self.gateway(hang2.port, "batch_size: 5, flush_interval: 50ms, timeout: 1m, queue_size: 16")
        # cleanups run last-first: the collectors answer before the gateways
        # stop (an exporter in a POST finishes it, up to `timeout`, on exit)
        self.addCleanup(hang.release.set)
        self.addCleanup(hang2.release.set)
        for _ in range(5):
            self.assertEqual(requests.get(gt.url("/whoami"), timeout=10).status_code, 200)
        harness.wait_until(lambda: self.dropped(at, "export_failed") == 5, what="the timed-out POST's spans")
        self.assertEqual(self.dropped(at, "queue_full"), 0)
        # the first batch of gq's spans goes into a POST that hangs; the
        # rest wait in the worker's queue of 16, and past it are dropped
        self.assertEqual(requests.get(gq.url("/whoami"), timeout=10).status_code, 200)
        harness.wait_until(lambda: hang2.accepted == 1, what="the second gateway's POST to hang")
        for _ in range(40):
            self.assertEqual(requests.get(gq.url("/whoami"), timeout=10).status_code, 200)
        self.assertEqual(self.dropped(aq, "queue_full"), 40 - 16)
        self.assertEqual(self.dropped(aq, "export_failed"), 0)


class TracingConfigTest(unittest.TestCase):
    def test_errors(self):
        import subprocess
        import tempfile
        d = tempfile.mkdtemp(prefix="tg-tracing-")
        p = os.path.join(d, "t.yaml")
        with open(p, "w") as f:
            f.write("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\n"
                    "tracing: { sample_ratio: 1.5, otlp: { endpoint: 'https://collector:4318/v1/traces' } }\n")
        r = subprocess.run([harness.BIN, "-t", "-c", p], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("sample_ratio: '1.5' is not a number from 0 to 1", r.stderr)
        self.assertIn("otlp endpoint: 'https://collector:4318/v1/traces' is not http://HOST:PORT/PATH", r.stderr)


if __name__ == "__main__":
    harness.main()
