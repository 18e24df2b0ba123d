"""The config's JSON Schema, generated from the key tables the loader
checks with: `tollgate --schema` is the committed docs/tollgate.schema.json,
a valid draft 2020-12 schema; the examples validate and carry the editor
modeline; invalid configs are refused by the schema and by `tollgate -t`
alike; the docs tables and tollgate.yaml(5) are what scripts/gen_docs.py
makes of the schema; tollgate(8) names every option of --help. (Every
config an integration test runs the gateway on is validated too: see
harness.schema_problems.)"""
import glob
import json
import os
import re
import subprocess
import tempfile
import unittest

import jsonschema

import harness

ROOT = os.path.abspath(os.path.join(harness.HERE, "..", ".."))

# (config, what `tollgate -t` says): each is refused by both.
INVALID = [
    ("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\nworkerz: 2\n", "unknown key 'workerz' in the top level; did you mean 'workers'?"),
    ("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\nroutes: [{ name: r, cluster: c, match: { path_prefx: /a } }]\n"
     "clusters: [{ name: c, endpoints: [127.0.0.1:9000] }]\n", "did you mean 'path_prefix'?"),
    ("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\ndrain_timeout: 10 seconds\n", "drain_timeout"),
    ("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\nlimits: { max_body_bytes: 10 megabytes }\n", "max_body_bytes"),
    ("listeners: { name: a, listen: 127.0.0.1:8080 }\n", "must be a list"),
    ("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\nlog_format: xml\n", "log_format"),
    ("listeners: [{ name: a, listen: 127.0.0.1:8080, proxy_protocol: maybe }]\n", "proxy_protocol"),
    ("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\nworkers: 999\n", "workers"),
    ("listeners: [{ name: a }]\n", "listen"),
    ("listeners: [{ name: a, listen: nowhere }]\n", "nowhere"),
    ("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\nfilters: [{ magic: {} }]\n", "unknown filter 'magic'"),
    ("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\nfilters: [{ rate_limit: { limit: 5, window: 1m, mode: dry } }]\n",
     "mode"),
    ("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\nfilters: [{ retry: { backoff: { base: 10ms, cap: 1s } } }]\n",
     "unknown key 'cap' in backoff"),
    ("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\nfilters: [{ auth: { api_keys: { keys: [{ name: x, secret: y }] } } }]\n",
     "unknown key 'secret'"),
    ("listeners: [{ name: a, listen: 127.0.0.1:8080 }]\nclusters: [{ name: c, endpoints: [127.0.0.1:9000], protocol: h3 }]\n",
     "protocol"),
]

VALID = [
    # env references in typed places, every boolean spelling the loader takes
    "listeners: [{ name: a, listen: \"127.0.0.1:${PORT}\", proxy_protocol: off }]\n"
    "trusted_proxies: [10.0.0.0/8]\nworkers: auto\ndrain_timeout: 0\n"
    "limits: { max_body_bytes: 10MiB, header_timeout: \"${HT}\" }\n",
    "listeners: [{ name: a, listen: \"[::1]:8443\", tls: { certificates: [{ cert: c.pem, key: k.pem }], min_version: 1.3 } }]\n",
    "listeners: [{ name: a, listen: 127.0.0.1:8080 }]\nfilters:\n  - retry: { on: [503, connect-failure], attempts: 2 }\n"
    "  - auth: { bearer_tokens: [plain-token, { name: ci, token: t }] }\n"
    "  - rate_limit: { key: [identity, route], cost: header:x-cost, limit: 10, window: 1s }\n",
]


def example_value(var):
    """A value of the kind an example's ${VAR} stands for, by its name."""
    if var.endswith("_PORT"):
        return "18080"
    if var.endswith("_ADDRESS"):
        return "127.0.0.1:9000"
    return "example-secret-0123456789"


def run(*args, **kw):
    return subprocess.run([harness.BIN, *args], capture_output=True, text=True, timeout=60, **kw)


class SchemaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        p = run("--schema")
        assert p.returncode == 0, p.stderr
        cls.text = p.stdout
        cls.schema = json.loads(cls.text)
        cls.validator = jsonschema.Draft202012Validator(cls.schema)

    def problems(self, text):
        return list(self.validator.iter_errors(harness.yaml_load(text)))

    def test_committed_copy_is_the_binarys(self):
        with open(os.path.join(ROOT, "docs", "tollgate.schema.json")) as f:
            self.assertEqual(f.read(), self.text,
                             "docs/tollgate.schema.json is stale: tollgate --schema > docs/tollgate.schema.json")

    def test_valid_draft_2020_12_with_every_key_described(self):
        self.assertEqual(self.schema["$schema"], "https://json-schema.org/draft/2020-12/schema")
        jsonschema.Draft202012Validator.check_schema(self.schema)
        n = 0
        for name, d in self.schema["$defs"].items():
            for key, k in d.get("properties", {}).items():
                if name == "filters":
                    continue
                n += 1
                for field in ("description", "x-tollgate-type", "x-tollgate-default"):
                    self.assertTrue(k.get(field), f"{name}.{key}: no {field}")
                if k["x-tollgate-type"].startswith("duration"):
                    self.assertIn({"$ref": "#/$defs/duration"}, k["allOf"], f"{name}.{key}")
                if k["x-tollgate-type"].startswith("size"):
                    self.assertIn({"$ref": "#/$defs/size"}, k["allOf"], f"{name}.{key}")
            if "properties" in d and name != "filters":
                self.assertIs(d["additionalProperties"], False, name)
        self.assertGreater(n, 200)
        self.assertEqual(self.schema["$defs"]["top"]["properties"]["drain_timeout"]["default"], "30s")
        self.assertEqual(self.schema["$defs"]["listener"]["properties"]["listen_backlog"]["default"], 4096)

    def test_defaults_schema_and_dump_agree(self):
        """Every key of these sections: the default the schema states (and
        the docs show) is the value `tollgate -T` reports for a config that
        does not set it — the same rows parse, document and dump."""
        d = tempfile.mkdtemp(prefix="tg-rows-")
        path = os.path.join(d, "t.yaml")
        with open(path, "w") as f:
            f.write("admin: { listen: '127.0.0.1:19901' }\n"
                    "listeners: [{ name: l, listen: '127.0.0.1:18080' }]\n"
                    "routes: [{ name: r, cluster: c }]\n"
                    "clusters: [{ name: c, endpoints: ['api.test:8000'] },\n"
                    "           { name: g, protocol: h2, endpoints: ['api.test:8001'], health_check: { type: grpc },\n"
                    "             outlier_detection: {}, tls: {} }]\n")
        p = subprocess.run([harness.BIN, "-T", "-c", path], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        dump = json.loads(p.stdout)
        sections = {"top": dump, "limits": dump["limits"], "path_normalization": dump["path_normalization"],
                    "dns": dump["dns"], "cluster": dump["clusters"][0], "cluster.dns": dump["clusters"][0]["dns"],
                    "route": dump["routes"][0], "listener": dump["listeners"][0],
                    "listener.http2": dump["listeners"][0]["http2"], "admin": dump["admin"],
                    "cluster.health_check": dump["clusters"][1]["health_check"],
                    "cluster.outlier_detection": dump["clusters"][1]["outlier_detection"],
                    "cluster.tls": dump["clusters"][1]["tls"]}
        units = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "B": 1, "KiB": 1024, "MiB": 1 << 20, "GiB": 1 << 30}
        checked = 0
        given = {("cluster.health_check", "type"), ("admin", "listen")}  # set by the config above
        for ks, obj in sections.items():
            for key, k in self.schema["$defs"][ks]["properties"].items():
                if "default" not in k or (ks, key) in given:
                    continue  # said in words ("the top level's", "none")
                want = k["default"]
                typ = k["x-tollgate-type"]
                name = key + "_ms" if typ.startswith("duration") else key
                if name not in obj or want == "auto":
                    continue  # read by the section itself, dumped in its own form (workers: 0 is auto)
                if isinstance(want, str) and (typ.startswith("duration") or typ.startswith("size")):
                    m = re.fullmatch(r"(\d+)(ms|s|m|h|B|KiB|MiB|GiB)?", want)
                    if m is None:
                        continue  # another key's value ("`limits.max_header_bytes`")
                    want = int(m.group(1)) * units[m.group(2) or "B"]
                self.assertEqual(obj[name], want, f"{ks}.{key}: schema says {k['default']!r}, -T says {obj[name]!r}")
                checked += 1
        self.assertGreaterEqual(checked, 49)

    def test_examples_validate_and_name_the_schema(self):
        files = glob.glob(os.path.join(ROOT, "examples", "*.yaml")) + \
            glob.glob(os.path.join(ROOT, "examples", "*", "*.yaml"))
        self.assertGreaterEqual(len(files), 4)
        for path in files:
            text = open(path).read()
            self.assertEqual(self.problems(text), [], path)
            m = re.match(r"# yaml-language-server: \$schema=(\S+)\n", text)
            self.assertTrue(m, f"{path}: no yaml-language-server modeline on the first line")
            target = os.path.normpath(os.path.join(os.path.dirname(path), m.group(1)))
            self.assertEqual(target, os.path.join(ROOT, "docs", "tollgate.schema.json"), path)
            env = dict(os.environ, **{v: example_value(v) for v in re.findall(r"\$\{(\w+)\}", text)})
            p = run("-t", "-c", path, env=env)
            # the quickstart's demo certificates are made by scripts/quickstart.sh
            errors = [l for l in p.stderr.splitlines() if re.match(r"/\S+:\d+:\d+: ", l)]
            missing_demo_certs = errors and all("examples/certs/demo." in l for l in errors)
            # grpc_json reflection: -t asks the service, which is not running here (the refusal
            # says so; the rest of the file was checked before it)
            no_service = "reflection: true" in text and not errors and \
                re.search(r"grpc_json: no descriptors: reflection from cluster '\w+' failed: connect to "
                          r"\S+: Connection refused", p.stderr)
            self.assertTrue(p.returncode == 0 or missing_demo_certs or no_service, f"{path}: {p.stderr}")

    def test_valid_configs_validate(self):
        for text in VALID:
            self.assertEqual([e.message for e in self.problems(text)], [], text)

    def test_invalid_configs_are_refused_by_both(self):
        d = tempfile.mkdtemp(prefix="tg-schema-")
        for i, (text, says) in enumerate(INVALID):
            self.assertNotEqual(self.problems(text), [], f"the schema accepts:\n{text}")
            path = os.path.join(d, f"bad{i}.yaml")
            with open(path, "w") as f:
                f.write(text)
            p = run("-t", "-c", path)
            self.assertEqual(p.returncode, 1, text)
            self.assertIn(says, p.stderr, text)
            self.assertRegex(p.stderr, rf"bad{i}\.yaml:\d+:\d+: ", text)

    def test_check_lists_errors_in_file_order_with_certificate_files(self):
        """`tollgate -t` reports every error top to bottom, the certificate
        files' included, although the file has other errors."""
        d = tempfile.mkdtemp(prefix="tg-schema-")
        certs = harness.make_certs(d)
        path = os.path.join(d, "tollgate.yaml")
        with open(path, "w") as f:
            f.write(f"""workers: many
listeners:
  - name: secure
    listen: 127.0.0.1:8443
    tls:
      certificates:
        - {{ cert: {d}/missing.crt, key: {certs['server.key']} }}
        - {{ cert: {certs['server.crt']}, key: {certs['other.key']} }}
routes:
  - {{ name: r, cluster: app, match: {{ path_prefx: /a }} }}
clusters:
  - {{ name: app, endpoints: [127.0.0.1:9000], protocol: h2x }}
log_format: jsno
""")
        p = run("-t", "-c", path)
        self.assertEqual(p.returncode, 1)
        lines = [l for l in p.stderr.splitlines() if l.startswith(path)]
        places = [tuple(map(int, re.match(re.escape(path) + r":(\d+):(\d+): ", l).groups())) for l in lines]
        self.assertEqual(places, sorted(places), p.stderr)
        text = "\n".join(lines)
        for want in ("workers: 'many' is not an integer", "missing.crt': No such file or directory",
                     "does not match certificate", "did you mean 'path_prefix'?", "did you mean 'h2c'?",
                     "did you mean 'json'?"):
            self.assertIn(want, text)
        self.assertEqual([pl[0] for pl in places], [1, 7, 8, 10, 12, 13], p.stderr)

    def test_docs_and_man_page_are_generated_from_it(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(self.text)
        p = subprocess.run([harness.PYTHON, os.path.join(ROOT, "scripts", "gen_docs.py"), "--schema", f.name,
                            "--check"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # every keyset has its table in the docs
        docs = open(os.path.join(ROOT, "docs", "configuration.md")).read() + \
            open(os.path.join(ROOT, "docs", "filters.md")).read()
        for name, d in self.schema["$defs"].items():
            if d.get("properties") and name != "filters":  # a filter without settings has no table
                self.assertIn(f"<!-- keys: {name} -->", docs, name)
        man = subprocess.run(["man", "-l", "-Tutf8", os.path.join(ROOT, "docs", "man", "tollgate.yaml.5")],
                             capture_output=True, text=True, timeout=60, env=dict(os.environ, MANWIDTH="200"))
        self.assertEqual(man.returncode, 0, man.stderr)
        text = re.sub(".\b", "", man.stdout)  # overstrike bold
        self.assertIn("listen_backlog", text)
        self.assertIn("rate_limit", text)
        self.assertNotIn("\\f", text)

    def test_tollgate_8_names_every_option(self):
        helptext = run("--help").stdout
        page = open(os.path.join(ROOT, "docs", "man", "tollgate.8")).read().replace("\\-", "-")
        options = re.findall(r"(--[a-z-]+)", helptext)
        self.assertGreaterEqual(len(options), 7)
        for opt in options:
            self.assertIn(opt, page, opt)
        for word in ("SIGHUP", "SIGTERM", "SIGUSR1", "EXIT STATUS", "FILES", "ctl"):
            self.assertIn(word, page)


if __name__ == "__main__":
    harness.main()
