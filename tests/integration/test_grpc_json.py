"""The grpc_json filter: REST and JSON calls reach a Python grpcio service
(apps/transcode_server.py) as gRPC calls, mapped by the google.api.http
rules of tests/pbjson/transcode.proto or by POST /pkg.Service/Method;
answers are json_format's JSON, server streams arrive line by line as
they are sent, gRPC errors become HTTP statuses with google.rpc.Status
bodies, and limits refuse loudly. Native gRPC calls on the same route
pass untouched."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import requests

import harness
import test_pbjson

PROTOC = shutil.which("protoc")


def start_backend(gen_dir, *flags, port=None):
    """apps/transcode_server.py on a free port (or this one): (proc, port)."""
    port = port or harness.free_port()
    proc = harness.Proc([harness.PYTHON, os.path.join(harness.APPS, "transcode_server.py"), str(port), gen_dir,
                         *flags], env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), name="transcode")
    harness.wait_port(port, proc=proc.p)
    return proc, port


class GrpcJsonTest(harness.GatewayTest):
    """Every case below runs twice: with the descriptors from a file, and
    (GrpcJsonReflectionTest) learned from the service by reflection."""
    SOURCE = "descriptors: echo.pb"

    @classmethod
    def setUpClass(cls):
        assert PROTOC, "protoc is not installed (scripts/deps.sh installs protobuf-compiler)"
        cls.dir = tempfile.mkdtemp(prefix="tg-grpcjson-")
        cls.pb2 = test_pbjson.compile_protos(cls.dir)
        cls.backend, port = start_backend(cls.dir)
        cls.procs = [cls.backend]
        cls.port = harness.free_port()
        with open(os.path.join(cls.dir, "set.pb"), "rb") as f:
            descriptors = f.read()
        cfg = f"""
workers: 2
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
clusters:
  - name: grpc
    protocol: h2c
    endpoints: [127.0.0.1:{port}]
routes:
  - name: defaults-printed
    match: {{ path: /tg.test.Echo/Plain }}
    cluster: grpc
    filters:
      - grpc_json: {{ {cls.SOURCE}, print_options: {{ always_print_primitive_fields: true, preserve_proto_field_names: true }} }}
  - name: api
    match: {{ path_prefix: / }}
    cluster: grpc
    filters:
      - grpc_json: {{ {cls.SOURCE}, max_message_bytes: 64KiB, max_depth: 8 }}
"""
        cls.gateway = harness.Gateway(cfg, port=cls.port, files={"echo.pb": descriptors})

    @classmethod
    def tearDownClass(cls):
        cls.finish()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def expect(self, msg):
        from google.protobuf import json_format
        return json.loads(json_format.MessageToJson(msg))

    def test_1_post_rule_and_auto_mapping(self):
        r = requests.post(self.url("/v1/echo"), json={"name": "x", "count": 2}, timeout=10)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertEqual(r.json(), self.expect(self.pb2.EchoReply(message="hello x", names=["x", "x"])))
        # a method without a rule: POST /pkg.Service/Method with the whole message (on a route whose
        # print_options write defaults too)
        r = requests.post(self.url("/tg.test.Echo/Plain"), data='{"name": "p"}', timeout=10)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json(), {"message": "hello p", "names": []})
        # the curl of the done-when
        out = subprocess.run(["curl", "-s", "-d", '{"name":"x"}', self.url("/v1/echo")], capture_output=True,
                             text=True, timeout=30).stdout
        self.assertEqual(json.loads(out), {"message": "hello x"})

    def test_2_get_with_path_and_query(self):
        r = requests.get(self.url("/v1/echo/al%20ice?count=3"), timeout=10)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json(), {"message": "hello al ice", "names": ["al ice"] * 3})
        r = requests.get(self.url("/v1/echo/bob?count=x"), timeout=10)
        self.assertEqual(r.status_code, 400, r.text)
        self.assertEqual(r.json()["code"], 3)
        self.assertIn("not an integer", r.json()["message"])

    def test_11_response_body(self):
        r = requests.post(self.url("/v1/things:scalars"), json={"scalars": {"fInt32": 5}, "optInt32": 1}, timeout=10)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json(), {"fInt32": 5})  # only the response_body field
        r = requests.post(self.url("/v1/things:scalars"), json={"optInt32": 1}, timeout=10)
        self.assertEqual(r.json(), {})  # absent: its default

    def test_3_body_field_and_path_variable(self):
        body = {"rString": ["a", "b"], "rInt64": ["9007199254740993"]}
        r = requests.put(self.url("/v1/things/thing-1"), json=body, timeout=10)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json(), {"scalars": {"fString": "thing-1"}, "repeated": body})

    def test_4_errors_map_to_http(self):
        for name, status, code, message in (("fail", 400, 3, "bad name: fail"), ("missing", 404, 5, "no such name"),
                                            ("deny", 403, 7, "not yours, ünïcode"), ("down", 503, 14, "try later")):
            r = requests.post(self.url("/v1/echo"), json={"name": name}, timeout=10)
            self.assertEqual(r.status_code, status, r.text)
            self.assertEqual(r.headers["content-type"], "application/json")
            self.assertEqual(r.json(), {"code": code, "message": message, "details": []})
            self.assertNotIn("grpc-status", r.headers)
        # google.rpc.Status details (grpc-status-details-bin): known types as JSON, unknown by name
        r = requests.post(self.url("/v1/echo"), json={"name": "detailed"}, timeout=10)
        self.assertEqual(r.status_code, 400, r.text)
        self.assertEqual(r.json(), {"code": 9, "message": "see details", "details": [
            {"@type": "type.googleapis.com/tg.test.EchoRequest", "name": "why"},
            {"@type": "type.googleapis.com/no.Such"}]})
        # JSON that does not make the message: INVALID_ARGUMENT, in the same google.rpc.Status form
        r = requests.post(self.url("/v1/echo"), data='{"name": "x", "nope": 1}', timeout=10)
        self.assertEqual(r.status_code, 400)
        self.assertEqual((r.json()["code"], r.json()["details"]), (3, []))
        self.assertIn("has no field named 'nope'", r.json()["message"])
        r = requests.post(self.url("/v1/echo"), data='{"name": ', timeout=10)
        self.assertEqual(r.status_code, 400)
        self.assertEqual(r.json()["code"], 3)
        r = requests.get(self.url("/v1/nothing/here"), timeout=10)
        self.assertEqual(r.status_code, 404)
        self.assertEqual(r.json()["code"], 5)


    def test_5_limits_refuse_loudly(self):
        r = requests.post(self.url("/v1/echo"), data=json.dumps({"name": "x" * 70000}), timeout=10)
        self.assertEqual(r.status_code, 413, r.text[:200])
        self.assertEqual(r.json(), {"code": 8, "message": "JSON body larger than max_message_bytes", "details": []})
        deep = '{"child": ' * 10 + "{}" + "}" * 10  # past max_depth: 8
        r = requests.post(self.url("/v1/things"), data=deep, timeout=10)
        self.assertEqual(r.status_code, 400, r.text)
        self.assertIn("nested deeper than 8", r.text)
        ok = '{"child": ' * 7 + '{"optInt32": 1}' + "}" * 7
        r = requests.post(self.url("/v1/things"), data=ok, timeout=10)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json(), json.loads(ok))
        # a method with a rule is not also on the automatic path
        r = requests.post(self.url("/tg.test.Echo/Nested"), data="{}", timeout=10)
        self.assertEqual(r.status_code, 404, r.text)

    def test_6_server_stream_line_by_line(self):
        """The first message arrives while the stream still waits at the
        server's gate: NDJSON is written as messages come."""
        with requests.get(self.url("/v1/echo/gated/stream?count=3"), stream=True, timeout=30) as r:
            self.assertEqual(r.status_code, 200)
            self.assertEqual(r.headers["content-type"], "application/x-ndjson")
            lines = r.iter_lines()
            self.assertEqual(json.loads(next(lines)), {"message": "gated 0"})
            # the stream is held at the gate until this call opens it
            self.assertEqual(requests.post(self.url("/v1/echo"), json={"name": "release"}, timeout=10).status_code, 200)
            rest = [json.loads(l) for l in lines if l]
        self.assertEqual(rest, [{"message": "gated 1"}, {"message": "gated 2"}])
        r = requests.get(self.url("/v1/echo/broken/stream?count=2"), timeout=10)
        lines = [json.loads(l) for l in r.text.splitlines()]
        self.assertEqual(lines[:2], [{"message": "broken 0"}, {"message": "broken 1"}])
        self.assertEqual(lines[2], {"code": 13, "message": "broke after the messages", "details": []})

    def test_10_randomized_corpus_through_the_gateway(self):
        """json_format's JSON of random messages, POSTed to a method that
        echoes its request: what comes back is json_format's JSON of the
        same message, over HTTP/1.1 (a session) and HTTP/2 (curl)."""
        import random
        from google.protobuf import json_format
        gen = test_pbjson.Gen(self.pb2, random.Random(test_pbjson.SEED + 9))
        s = requests.Session()
        n = 0
        for _ in range(300):
            m = gen.fill(self.pb2.Everything())
            if m.ByteSize() > 60000:
                continue
            text = json_format.MessageToJson(m, indent=None)
            r = s.post(self.url("/v1/things"), data=text, timeout=10)
            self.assertEqual(r.status_code, 200, r.text[:300])
            self.assertTrue(test_pbjson.same(r.json(), json.loads(text)), f"{text}\n{r.text}")
            n += 1
        m = gen.fill(self.pb2.Everything())
        text = json_format.MessageToJson(m, indent=None)
        out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "--data-binary", "@-", self.url("/v1/things")],
                             input=text, capture_output=True, text=True, timeout=30).stdout
        self.assertTrue(test_pbjson.same(json.loads(out), json.loads(text)))
        print(f"\n  {n + 1} random messages through the gateway and a grpcio echo: json_format's JSON back")

    def test_9_client_stream_and_sse(self):
        # a client stream: one JSON object a line (blank lines and a last line without newline are fine)
        r = requests.post(self.url("/tg.test.Echo/Collect"), data='{"name": "a"}\n\n{"name": "b"}\r\n{"name": "c"}',
                          timeout=10)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json(), {"names": ["a", "b", "c"]})
        r = requests.post(self.url("/tg.test.Echo/Collect"), data="", timeout=10)
        self.assertEqual(r.json(), {})
        r = requests.post(self.url("/tg.test.Echo/Collect"), data='{"name": "a"}\n{"nope": 1}\n', timeout=10)
        self.assertEqual(r.status_code, 400)
        self.assertEqual(r.json()["code"], 3)
        self.assertIn("has no field named 'nope'", r.json()["message"])
        # a server stream as server-sent events when Accept asks for them
        r = requests.get(self.url("/v1/echo/ev/stream?count=2"), headers={"accept": "text/event-stream"}, timeout=10)
        self.assertEqual(r.headers["content-type"], "text/event-stream")
        self.assertEqual(r.text, 'data: {"message":"ev 0"}\n\ndata: {"message":"ev 1"}\n\n')
        r = requests.get(self.url("/v1/echo/broken/stream?count=1"), headers={"accept": "text/event-stream"},
                         timeout=10)
        self.assertEqual(r.text, 'data: {"message":"broken 0"}\n\nevent: error\ndata: '
                                 '{"code":13,"message":"broke after the messages","details":[]}\n\n')

    def test_7_http2_and_native_grpc(self):
        out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-d", '{"name":"h2","count":1}',
                              self.url("/v1/echo")], capture_output=True, text=True, timeout=30).stdout
        self.assertEqual(json.loads(out), {"message": "hello h2", "names": ["h2"]})
        import grpc
        ch = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        call = ch.unary_unary("/tg.test.Echo/Say", request_serializer=self.pb2.EchoRequest.SerializeToString,
                              response_deserializer=self.pb2.EchoReply.FromString)
        self.assertEqual(call(self.pb2.EchoRequest(name="native"), timeout=10).message, "hello native")
        ch.close()

    def test_8_config_errors(self):
        bad = os.path.join(self.dir, "bad.yaml")
        for filt, why in (("{ descriptors: nope.pb }", "cannot read descriptors"),
                          ("{ descriptors: echo.pb, services: [no.Such] }", "no service no.Such"),
                          ("{ }", "descriptors")):
            with open(bad, "w") as f:
                f.write(f"""
listeners: [{{ name: m, listen: 127.0.0.1:1 }}]
clusters: [{{ name: c, protocol: h2c, endpoints: [127.0.0.1:2] }}]
routes: [{{ name: r, match: {{ path_prefix: / }}, cluster: c, filters: [{{ grpc_json: {filt} }}] }}]
""")
            shutil.copy(os.path.join(self.dir, "set.pb"), os.path.join(self.dir, "echo.pb"))
            r = subprocess.run([harness.BIN, "-t", "-c", bad], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(why, r.stderr)


class GrpcJsonReflectionTest(GrpcJsonTest):
    """The same cases, the descriptors fetched from the grpcio service by
    gRPC server reflection (grpc.reflection.v1, files with their imports)."""
    SOURCE = "reflection: true"


class GrpcJsonReflectionLifecycleTest(harness.GatewayTest):
    """Reflection as operators meet it: a server with only v1alpha that
    sends no imports (asked for by name), `-t` and start-up refused
    loudly when no descriptors can be had, a reload that fetches again,
    and a reload while the service is down keeping the last good
    descriptors. Unary calls carry the route's timeout as grpc-timeout."""

    @classmethod
    def setUpClass(cls):
        assert PROTOC, "protoc is not installed (scripts/deps.sh installs protobuf-compiler)"
        cls.dir = tempfile.mkdtemp(prefix="tg-grpcjson-refl-")
        cls.pb2 = test_pbjson.compile_protos(cls.dir)
        cls.backend, cls.bport = start_backend(cls.dir, "--reflection=v1alpha", "--no-imports")
        cls.procs = [cls.backend]
        cls.port, cls.admin = harness.free_port(), harness.free_port()
        cls.gateway = harness.Gateway(cls.config(cls.bport), port=cls.port)

    @classmethod
    def config(cls, bport, port=None, admin=None):
        return f"""
admin: {{ listen: 127.0.0.1:{admin or cls.admin} }}
listeners:
  - name: main
    listen: 127.0.0.1:{port or cls.port}
clusters:
  - name: grpc
    protocol: h2c
    endpoints: [127.0.0.1:{bport}]
routes:
  - name: api
    match: {{ path_prefix: / }}
    cluster: grpc
    timeout: 30s
    filters:
      - grpc_json: {{ reflection: true, reflection_timeout: 3s }}
"""

    @classmethod
    def tearDownClass(cls):
        cls.finish()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def call(self, name):
        return requests.post(f"http://127.0.0.1:{self.port}/tg.test.Echo/Plain", json={"name": name}, timeout=10)

    def reflections(self):
        r = self.call("reflections")
        self.assertEqual(r.status_code, 200, r.text)
        return int(r.json()["message"])

    def reload(self):
        return requests.post(f"http://127.0.0.1:{self.admin}/-/reload", headers={"X-Tollgate-Admin": "1"}, timeout=30)

    def check(self, bport):
        path = os.path.join(self.dir, f"check-{bport}.yaml")
        with open(path, "w") as f:
            f.write(self.config(bport, port=harness.free_port(), admin=harness.free_port()))
        return subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=60)

    def test_1_v1alpha_without_imports(self):
        r = self.call("x")
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json(), {"message": "hello x"})
        r = requests.get(f"http://127.0.0.1:{self.port}/v1/echo/bob", timeout=10)  # a google.api.http rule
        self.assertEqual((r.status_code, r.json()), (200, {"message": "hello bob"}))
        self.assertIn("by reflection (v1alpha)", self.gateway.proc.output())

    def test_2_check_and_start_fail_without_descriptors(self):
        ok = self.check(self.bport)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        dead = self.check(harness.dead_port())
        self.assertEqual(dead.returncode, 1, dead.stderr)
        self.assertIn("no descriptors: reflection from cluster 'grpc' failed", dead.stderr)
        self.assertIn("Connection refused", dead.stderr)
        plain, pport = start_backend(self.dir, "--reflection=none")
        try:
            none = self.check(pport)
            self.assertEqual(none.returncode, 1, none.stderr)
            self.assertIn("offers no reflection", none.stderr)
            # start-up refused too: the process exits 1 with the reason
            path = os.path.join(self.dir, "start.yaml")
            with open(path, "w") as f:
                f.write(self.config(pport, port=harness.free_port(), admin=harness.free_port()))
            r = subprocess.run([harness.BIN, "-c", path], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("offers no reflection", r.stderr)
        finally:
            plain.stop()

    def test_2b_reflection_needs_the_routes_one_cluster(self):
        for where, cfg in (("global", f"""
listeners: [{{ name: m, listen: 127.0.0.1:{harness.free_port()} }}]
filters: [{{ grpc_json: {{ reflection: true }} }}]
clusters: [{{ name: grpc, protocol: h2c, endpoints: [127.0.0.1:{self.bport}] }}]
routes: [{{ name: api, cluster: grpc }}]
"""), ("split", f"""
listeners: [{{ name: m, listen: 127.0.0.1:{harness.free_port()} }}]
clusters: [{{ name: a, protocol: h2c, endpoints: [127.0.0.1:{self.bport}] }},
           {{ name: b, protocol: h2c, endpoints: [127.0.0.1:{self.bport}] }}]
routes: [{{ name: api, clusters: [{{ name: a, weight: 1 }}, {{ name: b, weight: 1 }}],
           filters: [{{ grpc_json: {{ reflection: true }} }}] }}]
""")):
            path = os.path.join(self.dir, f"{where}.yaml")
            with open(path, "w") as f:
                f.write(cfg)
            r = subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("reflection needs the route's one cluster", r.stderr, where)

    def test_2c_a_chatty_upstream_cannot_hold_the_load(self):
        """An upstream that never answers the call but keeps sending (PING
        after PING): the fetch ends at reflection_timeout, saying so."""
        import socket
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        stop = threading.Event()

        def chatter():
            conn, _ = srv.accept()
            conn.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # SETTINGS
            try:
                while not stop.is_set():
                    conn.sendall(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"pingping")
                    time.sleep(0.005)
            except OSError:
                pass
            conn.close()
        t = threading.Thread(target=chatter, daemon=True)
        t.start()
        try:
            path = os.path.join(self.dir, "chatty.yaml")
            with open(path, "w") as f:
                f.write(self.config(srv.getsockname()[1], port=harness.free_port(), admin=harness.free_port())
                        .replace("reflection_timeout: 3s", "reflection_timeout: 1s"))
            r = subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("timed out", r.stderr)
        finally:
            stop.set()
            srv.close()
            t.join(10)

    def test_3_reload_fetches_again(self):
        before = self.reflections()
        r = self.reload()
        self.assertEqual(r.status_code, 200, r.text)
        # list, the symbol, then the imports by name: at least three streams
        self.assertGreaterEqual(self.reflections(), before + 3)

    def test_4_reload_with_the_service_down_keeps_the_last_good(self):
        self.backend.stop()
        try:
            r = self.reload()
            self.assertEqual(r.status_code, 200, r.text)
            self.assertIn("the last good descriptors stay", self.gateway.proc.output())
            # still mapped (not 404): the call goes, the service is down
            r = self.call("x")
            self.assertEqual(r.status_code, 503, r.text)
            self.assertEqual(r.json()["code"], 14)
        finally:
            type(self).backend, _ = start_backend(self.dir, "--reflection=v1alpha", "--no-imports", port=self.bport)
            self.procs[0] = self.backend
        r = harness.wait_until(lambda: (lambda r: r if r.status_code == 200 else None)(self.call("back")), 30,
                               "calls again once the service is back")
        self.assertEqual(r.json(), {"message": "hello back"})

    def test_6_over_tls(self):
        """A cluster of protocol h2 with tls: reflection speaks TLS with
        ALPN h2 and checks the certificate as the cluster says."""
        os.makedirs(os.path.join(self.dir, "certs"), exist_ok=True)
        certs = harness.make_certs(os.path.join(self.dir, "certs"))
        tls, tport = start_backend(self.dir, f"--tls={certs['server.crt']},{certs['server.key']}")
        try:
            for tls_conf, want in ((f"{{ ca: {certs['ca.crt']}, server_name: localhost }}", 0),
                                   ("{ server_name: localhost }", 1)):  # the system CAs do not know it
                path = os.path.join(self.dir, "tls.yaml")
                with open(path, "w") as f:
                    f.write(self.config(tport, port=harness.free_port(), admin=harness.free_port()).replace(
                        "protocol: h2c", f"protocol: h2\n    tls: {tls_conf}"))
                r = subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, want, r.stderr)
                self.assertIn("by reflection (v1)" if want == 0 else "TLS handshake failed", r.stderr)
        finally:
            tls.stop()

    def test_7_openapi(self):
        """/-/openapi.json describes the mappings the gateway serves, and
        what it answers validates against the schemas it describes
        (jsonschema, on random messages of every field type)."""
        import random
        import jsonschema
        from google.protobuf import json_format
        r = requests.get(f"http://127.0.0.1:{self.admin}/-/openapi.json", timeout=10)
        self.assertEqual(r.status_code, 200, r.text)
        doc = r.json()
        self.assertEqual(doc["openapi"], "3.0.3")
        paths = doc["paths"]
        say = paths["/v1/echo/{name}"]["get"]
        self.assertEqual(say["summary"], "/tg.test.Echo/Say")
        self.assertIn({"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                      say["parameters"])
        self.assertIn("count", [p["name"] for p in say["parameters"] if p["in"] == "query"])
        self.assertIn("post", paths["/tg.test.Echo/Plain"])  # no rule: the automatic mapping
        stream = paths["/v1/echo/{name}/stream"]["get"]["responses"]["200"]["content"]
        self.assertEqual(set(stream), {"application/x-ndjson", "text/event-stream"})
        self.assertEqual(paths["/tg.test.Echo/Collect"]["post"]["requestBody"]["content"].keys(),
                         {"application/x-ndjson"})
        schemas = doc["components"]["schemas"]
        self.assertEqual(schemas["tg.test.EchoReply"]["properties"]["names"],
                         {"type": "array", "items": {"type": "string"}})

        def validate(instance, schema):
            jsonschema.validate(instance, dict(schema, components=doc["components"]))
        things = paths["/v1/things"]["post"]
        body_schema = things["requestBody"]["content"]["application/json"]["schema"]
        answer_schema = things["responses"]["200"]["content"]["application/json"]["schema"]
        gen = test_pbjson.Gen(self.pb2, random.Random(test_pbjson.SEED + 11))
        n = 0
        for _ in range(60):
            m = gen.fill(self.pb2.Everything())
            if m.ByteSize() > 60000:
                continue
            text = json_format.MessageToJson(m, indent=None)
            validate(json.loads(text), body_schema)
            r = requests.post(f"http://127.0.0.1:{self.port}/v1/things", data=text, timeout=10)
            self.assertEqual(r.status_code, 200, r.text[:300])
            validate(r.json(), answer_schema)
            n += 1
        self.assertGreater(n, 30)
        r = requests.post(f"http://127.0.0.1:{self.port}/tg.test.Echo/Plain", json={"name": "missing"}, timeout=10)
        self.assertEqual(r.status_code, 404)
        validate(r.json(), {"$ref": "#/components/schemas/google.rpc.Status"})

    def test_5_unary_calls_carry_the_route_timeout(self):
        r = self.call("deadline")
        self.assertEqual(r.status_code, 200, r.text)
        left = float(r.json()["message"])
        # the route's 30 s, less the time the call took to get there
        self.assertLessEqual(left, 30.0)
        self.assertGreater(left, 10.0)


class GrpcJsonRefusedStreamTest(harness.GatewayTest):
    """An HTTP/2 upstream that ends its connections often (nginx,
    http2_max_requests 50: GOAWAY, then REFUSED_STREAM for what came
    after) under h2load's many concurrent streams: every transcoded call
    is sent again on a fresh connection, none is lost (before the JSON
    body was gathered first, 4-10% of such calls failed with 502)."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tg-grpcjson-refused-")
        os.chmod(cls.dir, 0o755)
        www = os.path.join(cls.dir, "www", "test.v1.Echo")
        os.makedirs(www)
        os.chmod(os.path.dirname(www), 0o755)
        os.chmod(www, 0o755)
        with open(os.path.join(www, "Json"), "wb") as f:
            f.write(b"\x00\x00\x00\x00\x07\x0a\x05hello")  # EchoReply { message: "hello" }, framed
        os.chmod(os.path.join(www, "Json"), 0o644)
        with open(os.path.join(cls.dir, "echo.proto"), "w") as f:
            f.write('syntax = "proto3"; package test.v1; message EchoRequest { string name = 1; } '
                    'message EchoReply { string message = 1; } service Echo { rpc Json(EchoRequest) returns (EchoReply); }')
        subprocess.run([PROTOC, "-I", cls.dir, f"--descriptor_set_out={cls.dir}/echo.pb", "echo.proto"], check=True)
        bport = harness.free_port()
        conf = os.path.join(cls.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {cls.dir}/nginx.pid; error_log {cls.dir}/nginx.err warn;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {cls.dir}/body;
  server {{ listen 127.0.0.1:{bport} http2; http2_max_requests 50; root {cls.dir}/www;
    default_type application/grpc; add_trailer grpc-status 0 always; error_page 405 =200 $uri; }} }}
""")
        cls.nginx = harness.Proc(["nginx", "-c", conf], name="nginx-grpc")
        harness.wait_port(bport, proc=cls.nginx.p)
        cls.procs = [cls.nginx]
        cls.port = harness.free_port()
        with open(os.path.join(cls.dir, "echo.pb"), "rb") as f:
            descriptors = f.read()
        cls.gateway = harness.Gateway(f"""
workers: 1
listeners: [{{ name: main, listen: 127.0.0.1:{cls.port} }}]
clusters: [{{ name: echo, protocol: h2c, endpoints: [127.0.0.1:{bport}] }}]
routes: [{{ name: api, match: {{ path_prefix: / }}, cluster: echo, filters: [{{ grpc_json: {{ descriptors: echo.pb }} }}] }}]
""", port=cls.port, files={"echo.pb": descriptors})

    @classmethod
    def tearDownClass(cls):
        cls.finish()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_refused_streams_are_sent_again(self):
        body = os.path.join(self.dir, "req.json")
        with open(body, "w") as f:
            f.write('{"name":"world"}')
        out = subprocess.run(["h2load", "-n", "3000", "-c", "4", "-m", "32", "-d", body, "-H",
                              "content-type: application/json", f"http://127.0.0.1:{self.port}/test.v1.Echo/Json"],
                             capture_output=True, text=True, timeout=120).stdout
        self.assertIn("status codes: 3000 2xx, 0 3xx, 0 4xx, 0 5xx", out, out[-800:])
        r = requests.post(f"http://127.0.0.1:{self.port}/test.v1.Echo/Json", json={"name": "x"}, timeout=10)
        self.assertEqual(r.json(), {"message": "hello"})


if __name__ == "__main__":
    harness.main()
