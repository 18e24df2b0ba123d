"""The proto3 JSON mapping (filters/pbjson.c, driven by descriptors from
filters/pbdesc.c) against protobuf's own json_format (Debian's
python3-protobuf), on thousands of messages generated at random from the
descriptors of tests/pbjson/transcode.proto — every scalar type singular
and repeated, enums, maps of every key type, oneofs, proto3 optional,
recursion and the well-known types — both ways: protobuf -> JSON equals
MessageToJson's (parsed), and MessageToJson's JSON -> protobuf parses
back to the same message. Then the edges: refusals json_format also makes,
limits, and hostile wire bytes (never a crash, never a hang)."""
import base64
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import harness

TOOL = os.environ.get("TOLLGATE_PBJSON_TOOL") or os.path.join(os.path.dirname(harness.BIN), "tests", "pbjson_tool")
PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pbjson")
PROTOC = shutil.which("protoc")
SEED = int(os.environ.get("TOLLGATE_PBJSON_SEED", "20261205"))
COUNT = int(os.environ.get("TOLLGATE_PBJSON_COUNT", "1500"))


def compile_protos(out):
    subprocess.run([PROTOC, "-I", PROTO_DIR, "-I", "/usr/include", f"--descriptor_set_out={out}/set.pb",
                    "--include_imports", f"--python_out={out}", "transcode.proto", "google/api/http.proto",
                    "google/api/annotations.proto"], check=True)
    sys.path.insert(0, out)
    import transcode_pb2  # noqa: E402 (generated just now)
    return transcode_pb2


class Gen:
    """Random messages of a descriptor, bounded in depth and size."""

    def __init__(self, pb2, rnd):
        self.pb2, self.r = pb2, rnd

    def string(self, key=False):
        alphabet = "abcXYZ 09_-\"\\/\n\té€😀\u007f" + ("" if key else "\u0000")  # NUL: in values only
        return "".join(self.r.choice(alphabet) for _ in range(self.r.randrange(0, 8)))

    def scalar(self, f):
        from google.protobuf.descriptor import FieldDescriptor as F
        r, t = self.r, f.type
        if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
            return r.choice([0, 1, -1, 2**31 - 1, -2**31, r.randrange(-2**31, 2**31)])
        if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
            return r.choice([0, 1, 2**32 - 1, r.randrange(0, 2**32)])
        if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
            return r.choice([0, -1, 2**63 - 1, -2**63, 2**53 + 1, r.randrange(-2**63, 2**63)])
        if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
            return r.choice([0, 2**64 - 1, 2**53 + 1, r.randrange(0, 2**64)])
        if t == F.TYPE_BOOL:
            return r.random() < 0.5
        if t == F.TYPE_DOUBLE:
            return r.choice([0.0, -0.0, 1.5, -2.25e-300, 1e300, math.inf, -math.inf, math.nan, r.uniform(-1e6, 1e6),
                             0.1, 1 / 3])
        if t == F.TYPE_FLOAT:
            v = r.choice([0.0, 1.5, -3.4e38, 1e-40, math.inf, math.nan, r.uniform(-1e6, 1e6), 0.1])
            return struct.unpack("<f", struct.pack("<f", v))[0]
        if t == F.TYPE_STRING:
            return self.string()
        if t == F.TYPE_BYTES:
            return bytes(r.randrange(256) for _ in range(r.randrange(0, 9)))
        if t == F.TYPE_ENUM:
            values = [v.number for v in f.enum_type.values]
            return r.choice(values + [7]) if f.enum_type.full_name == "tg.test.Color" else r.choice(values)
        raise AssertionError(t)

    def well_known(self, m, depth):
        r, name = self.r, m.DESCRIPTOR.full_name
        if name == "google.protobuf.Timestamp":
            m.seconds = r.choice([0, -62135596800, 253402300799, r.randrange(-62135596800, 253402300800)])
            m.nanos = r.choice([0, 1000000, 1000, 1, 999999999, r.randrange(0, 10**9)])
        elif name == "google.protobuf.Duration":
            s = r.choice([0, 1, -1, 315576000000, -315576000000, r.randrange(-10**6, 10**6)])
            n = r.choice([0, 1000000, 1000, 1, 999999999, r.randrange(0, 10**9)])
            m.seconds, m.nanos = s, (-n if s < 0 else n) if s != 0 else r.choice([n, -n])
        elif name == "google.protobuf.FieldMask":
            m.paths.extend(r.choice(["foo", "foo_bar", "a.b_c", "x1.y2"]) for _ in range(r.randrange(0, 4)))
        elif name == "google.protobuf.Struct":
            for _ in range(r.randrange(0, 3)):
                m.fields[self.string(key=True)].CopyFrom(self.json_value(depth + 1))
        elif name == "google.protobuf.Value":
            m.CopyFrom(self.json_value(depth + 1))
        elif name == "google.protobuf.ListValue":
            for _ in range(r.randrange(0, 3)):
                m.values.add().CopyFrom(self.json_value(depth + 1))
        elif name == "google.protobuf.Any":
            inner = r.choice([self.pb2.EchoRequest, self.pb2.Scalars])()
            self.fill(inner, depth + 1)
            m.Pack(inner)
        elif name == "google.protobuf.Empty":
            pass
        else:  # wrappers
            f = m.DESCRIPTOR.fields_by_name["value"]
            if r.random() < 0.8:
                m.value = self.scalar(f)
        return m

    def json_value(self, depth):
        from google.protobuf import struct_pb2
        v, r = struct_pb2.Value(), self.r
        kind = r.choice(["null", "number", "string", "bool"] + (["struct", "list"] if depth < 4 else []))
        if kind == "null":
            v.null_value = 0
        elif kind == "number":
            v.number_value = r.choice([0.0, 1.5, -7.0, 1e21, r.uniform(-1e9, 1e9)])
        elif kind == "string":
            v.string_value = self.string()
        elif kind == "bool":
            v.bool_value = r.random() < 0.5
        elif kind == "struct":
            for _ in range(r.randrange(0, 3)):
                v.struct_value.fields[self.string(key=True)].CopyFrom(self.json_value(depth + 1))
        else:
            v.list_value.SetInParent()
            for _ in range(r.randrange(0, 3)):
                v.list_value.values.add().CopyFrom(self.json_value(depth + 1))
        return v

    def fill(self, m, depth=0):
        from google.protobuf.descriptor import FieldDescriptor as F
        d, r = m.DESCRIPTOR, self.r
        if d.full_name.startswith("google.protobuf."):
            return self.well_known(m, depth)
        chosen = {o.name: r.choice(o.fields) for o in d.oneofs if not o.name.startswith("_")}
        for f in d.fields:
            o = f.containing_oneof
            if o is not None and not o.name.startswith("_") and chosen[o.name] is not f:
                continue
            if r.random() < 0.35:
                continue
            if f.message_type is not None and f.message_type.GetOptions().map_entry:
                kf, vf = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
                mp = getattr(m, f.name)
                for _ in range(r.randrange(0, 4)):
                    k = self.string(key=True) if kf.type == kf.TYPE_STRING else self.scalar(kf)
                    if vf.message_type is not None:
                        self.fill(mp[k], depth + 1)
                    else:
                        mp[k] = self.scalar(vf)
            elif f.label == F.LABEL_REPEATED:
                lst = getattr(m, f.name)
                for _ in range(r.randrange(0, 4)):
                    if f.message_type is not None:
                        if depth < 3:
                            self.fill(lst.add(), depth + 1)
                    else:
                        lst.append(self.scalar(f))
            elif f.message_type is not None:
                if depth < 3 or f.message_type.full_name.startswith("google.protobuf."):
                    self.fill(getattr(m, f.name), depth + 1)
            else:
                setattr(m, f.name, self.scalar(f))
        return m


def run_tool(set_pb, typ, mode, lines, *opts):
    r = subprocess.run([TOOL, set_pb, typ, mode, *opts], input="".join(l + "\n" for l in lines), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split("\n")[:-1]
    assert len(out) == len(lines), (len(out), len(lines), r.stderr[-2000:])
    return out


def same(a, b):
    """JSON values equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and
                                               not isinstance(a, bool) and not isinstance(b, bool) and a == b)


class PbJsonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        assert PROTOC, "protoc is not installed (scripts/deps.sh installs protobuf-compiler)"
        assert os.path.exists(TOOL), f"{TOOL}: build the tests (pbjson_tool)"
        cls.dir = tempfile.mkdtemp(prefix="tg-pbjson-")
        cls.pb2 = compile_protos(cls.dir)
        cls.set = os.path.join(cls.dir, "set.pb")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def corpus(self, seed, n):
        gen = Gen(self.pb2, random.Random(seed))
        return [gen.fill(self.pb2.Everything()) for _ in range(n)]

    def check_to_json(self, msgs, opts, **kw):
        from google.protobuf import json_format
        lines = [base64.b64encode(m.SerializeToString()).decode() for m in msgs]
        got = run_tool(self.set, "tg.test.Everything", "to-json", lines, *opts)
        bad = 0
        for m, line in zip(msgs, got):
            want = json.loads(json_format.MessageToJson(m, **kw))
            self.assertFalse(line.startswith("ERROR"), f"{line}\nfor {m}")
            if not same(json.loads(line), want):
                bad += 1
                if bad == 1:
                    self.fail(f"differs from json_format:\n ours: {line}\n want: {json.dumps(want)}")
        return len(msgs)

    def test_1_to_json_matches_json_format(self):
        msgs = self.corpus(SEED, COUNT)
        n = self.check_to_json(msgs, [])
        n += self.check_to_json(msgs[:300], ["preserve"], preserving_proto_field_name=True)
        n += self.check_to_json(msgs[:300], ["always"], including_default_value_fields=True)
        print(f"\n  {n} messages: protobuf -> JSON identical to json_format's")

    def test_2_from_json_round_trips(self):
        from google.protobuf import json_format
        msgs = self.corpus(SEED + 1, COUNT)
        texts = [json_format.MessageToJson(m, indent=None) for m in msgs]
        got = run_tool(self.set, "tg.test.Everything", "from-json", texts)
        for m, text, line in zip(msgs, texts, got):
            self.assertFalse(line.startswith("ERROR"), f"{line}\nfor {text}")
            back = self.pb2.Everything()
            back.ParseFromString(base64.b64decode(line))
            # NaN != NaN: compare the canonical JSON of both instead of the messages
            self.assertTrue(same(json.loads(json_format.MessageToJson(back)), json.loads(text)), f"{text}\n{back}")
        # original names are accepted too
        texts = [json_format.MessageToJson(m, indent=None, preserving_proto_field_name=True) for m in msgs[:300]]
        for text, line in zip(texts, run_tool(self.set, "tg.test.Everything", "from-json", texts)):
            self.assertFalse(line.startswith("ERROR"), f"{line}\nfor {text}")
        print(f"\n  {len(msgs) + 300} messages: JSON -> protobuf -> the same message")

    def from_json(self, text, *opts, typ="tg.test.Everything"):
        return run_tool(self.set, typ, "from-json", [text], *opts)[0]

    def test_3_refusals(self):
        """What json_format refuses is refused, with a reason."""
        cases = {
            '{"nope": 1}': "has no field named 'nope'",
            '{"scalars": {"fInt32": 2147483648}}': "out of range",
            '{"scalars": {"fInt32": 1.5}}': "not an integer",
            '{"scalars": {"fUint32": -1}}': "out of range",
            '{"scalars": {"fInt64": "12x"}}': "not an integer",
            '{"scalars": {"fEnum": "PURPLE"}}': "not a value of tg.test.Color",
            '{"scalars": {"fBool": "true"}}': "not true or false",
            '{"scalars": {"fBytes": "!!"}}': "not base64",
            '{"scalars": {"fFloat": 1e39}}': "out of range for a float",
            '{"scalars": {"fString": 5}}': "not a string",
            '{"scalars": {"fInt32": 1}, "scalars": {}}': "given twice",
            '{"optInt32": 1, "opt_int32": 2}': "given twice",
            '{"choiceName": "a", "choiceId": "1"}': "two fields of one oneof",
            '{"repeated": {"rInt32": [1, null]}}': "null in a list",
            '{"repeated": {"rInt32": 5}}': "not an array",
            '{"wellKnown": {"timestamp": "2026-13-01T00:00:00Z"}}': "not RFC 3339",
            '{"wellKnown": {"timestamp": "10000-01-01T00:00:00Z"}}': "not RFC 3339",
            '{"wellKnown": {"duration": "5"}}': "not like 1.5s",
            '{"wellKnown": {"duration": "315576000001s"}}': "out of range",
            '{"wellKnown": {"any": {"@type": "type.googleapis.com/no.Such", "x": 1}}}': "no message no.Such",
            '{"maps": {"mBool": {"yes": "x"}}}': "is not a bool",
            '[1, 2]': "not a JSON object",
            '{"scalars": ': "not JSON",
        }
        lines = run_tool(self.set, "tg.test.Everything", "from-json", list(cases))
        for (text, why), line in zip(cases.items(), lines):
            self.assertTrue(line.startswith("ERROR") and why in line, f"{text}: {line}")
        # ignore_unknown_fields: unknown names and enum values are left out
        self.assertFalse(self.from_json('{"nope": 1, "scalars": {"fEnum": "PURPLE"}}', "ignore").startswith("ERROR"))
        # accepted spellings: numbers for int64, strings for int32, integral floats, NaN, URL-safe base64
        ok = self.from_json('{"scalars": {"fInt64": 9007199254740993, "fInt32": "-7", "fUint32": 1e3, '
                            '"fDouble": "NaN", "fFloat": "-Infinity", "fBytes": "_-8", "fEnum": -3}}')
        m = self.pb2.Everything()
        m.ParseFromString(base64.b64decode(ok))
        self.assertEqual(m.scalars.f_int64, 9007199254740993)  # exact past 2^53
        self.assertEqual((m.scalars.f_int32, m.scalars.f_uint32), (-7, 1000))
        self.assertTrue(math.isnan(m.scalars.f_double))
        self.assertEqual(m.scalars.f_bytes, b"\xff\xef")
        self.assertEqual(m.scalars.f_enum, self.pb2.BLUE)

    def test_4_depth_limits_refuse_loudly(self):
        """Nesting past the limit is an error both ways, never an empty answer."""
        deep = self.pb2.Everything()
        m = deep
        for _ in range(70):
            m = m.child
        m.scalars.f_int32 = 1
        line = run_tool(self.set, "tg.test.Everything", "to-json", [base64.b64encode(deep.SerializeToString()).decode()])[0]
        self.assertTrue(line.startswith("ERROR messages nested deeper than 64"), line)
        line = run_tool(self.set, "tg.test.Everything", "to-json", [base64.b64encode(deep.SerializeToString()).decode()],
                        "depth=100")[0]
        self.assertTrue(line.startswith("{"), line)
        text = '{"child": ' * 20 + "{}" + "}" * 20
        self.assertTrue(self.from_json(text, "depth=10").startswith("ERROR messages nested deeper than 10"))
        self.assertFalse(self.from_json(text).startswith("ERROR"))
        text = '{"child": ' * 40 + "{}" + "}" * 40  # past what the JSON reader takes
        self.assertTrue(self.from_json(text).startswith("ERROR not JSON (or nested deeper than 32)"))

    def test_5_hostile_wire_bytes(self):
        """Bytes an upstream may send: cut, overlong, wrong wire types,
        invalid UTF-8, random. Each is JSON or a refusal; the tool never
        dies (a crash would lose the lines after it)."""
        good = self.corpus(SEED + 2, 200)
        r = random.Random(SEED + 3)
        lines = []
        for m in good:
            b = bytearray(m.SerializeToString())
            if b:
                lines.append(bytes(b[:r.randrange(len(b))]))            # cut
                i = r.randrange(len(b))
                b[i] ^= 1 << r.randrange(8)                              # one bit flipped
                lines.append(bytes(b))
            lines.append(bytes(r.randrange(256) for _ in range(r.randrange(1, 64))))  # noise
        lines.append(b"\x0a\x03\x4a\x01\xff")                            # scalars.f_string = "\xff"
        lines.append(b"\x0a\x0b" + b"\xff" * 11)                         # an 11-byte varint
        lines.append(b"\x5a\x80\x80\x80\x80\x10")                        # a length of 2^32
        got = run_tool(self.set, "tg.test.Everything", "to-json", [base64.b64encode(x).decode() for x in lines])
        errors = sum(1 for g in got if g.startswith("ERROR"))
        from google.protobuf import json_format
        agreed = 0
        for x, g in zip(lines, got):
            if g.startswith("ERROR"):
                continue
            ours = json.loads(g)  # whatever is not refused is JSON ...
            ref = self.pb2.Everything()
            try:
                ref.ParseFromString(x)
                want = json.loads(json_format.MessageToJson(ref))
            except Exception:  # noqa: BLE001 (what protobuf refuses, we may read: compared only where both read)
                continue
            self.assertTrue(same(ours, want), f"{x!r}:\n ours {g}\n want {json.dumps(want)}")  # ... and protobuf's
            agreed += 1
        # a oneof set twice on the wire: the member set last is the one set
        two = self.pb2.Everything(choice_id=5).SerializeToString() + self.pb2.Everything(choice_name="n").SerializeToString()
        self.assertEqual(json.loads(run_tool(self.set, "tg.test.Everything", "to-json", [base64.b64encode(two).decode()])[0]),
                         {"choiceName": "n"})
        self.assertIn("not UTF-8", got[-3])
        self.assertIn("malformed", got[-2])
        self.assertIn("malformed", got[-1])
        print(f"\n  {len(lines)} hostile inputs: {errors} refused, {len(lines) - errors} read as JSON ({agreed} also read "
              f"by protobuf: the same JSON), no crash")

    def test_7_fields_from_path_and_query(self):
        """Bindings from a path template or a query string set fields of
        the request message as json_format would from the same values."""
        from google.protobuf import json_format
        cases = [
            ([("scalars.f_string", "a b/é"), ("scalars.fInt64", "-9007199254740993")],
             {"scalars": {"fString": "a b/é", "fInt64": "-9007199254740993"}}),
            ([("scalars.f_enum", "GREEN"), ("opt_enum", "-3"), ("scalars.f_bool", "true"), ("scalars.f_bytes", "AP8")],
             {"scalars": {"fEnum": "GREEN", "fBool": True, "fBytes": "AP8="}, "optEnum": "BLUE"}),
            ([("repeated.r_string", "x"), ("repeated.r_string", "y"), ("repeated.rInt32", "7")],
             {"repeated": {"rString": ["x", "y"], "rInt32": [7]}}),
            ([("well_known.timestamp", "2026-12-05T07:00:00.5Z"), ("well_known.duration", "1.5s"),
              ("well_known.int64_value", "5"), ("well_known.bool_value", "false"), ("well_known.field_mask", "a.bC,d")],
             {"wellKnown": {"timestamp": "2026-12-05T07:00:00.500Z", "duration": "1.500s", "int64Value": "5",
                            "boolValue": False, "fieldMask": "a.bC,d"}}),
            ([("child.child.scalars.f_double", "2.5"), ("scalars.f_int32", "1"), ("scalars.f_int32", "2")],
             {"child": {"child": {"scalars": {"fDouble": 2.5}}}, "scalars": {"fInt32": 2}}),  # the last wins
        ]
        lines = ["\t".join(f"{k}={v}" for k, v in pairs) for pairs, _ in cases]
        for (pairs, want), line in zip(cases, run_tool(self.set, "tg.test.Everything", "set", lines)):
            self.assertFalse(line.startswith("ERROR"), f"{pairs}: {line}")
            got = self.pb2.Everything()
            got.ParseFromString(base64.b64decode(line))
            self.assertEqual(got, json_format.ParseDict(want, self.pb2.Everything()), pairs)
        refused = {
            "nope=1": "has no field named 'nope'",
            "scalars.nope=1": "has no field named 'nope'",
            "scalars.f_int32=x": "not an integer",
            "scalars.f_bool=yes": "not true or false",
            "scalars=1": "a message cannot be set from text",
            "maps.m_string=1": "a map cannot be set from text",
            "repeated.r_message.f_bool=true": "not a message field to go through",
            "well_known.timestamp=yesterday": "not RFC 3339",
            "scalars..f_int32=1": "is not a field path",
        }
        for (text, why), line in zip(refused.items(), run_tool(self.set, "tg.test.Everything", "set", list(refused))):
            self.assertTrue(line.startswith("ERROR") and why in line, f"{text}: {line}")

    def test_6_descriptor_sets(self):
        """What the pool reads of services and google.api.http, and how a
        broken set is refused."""
        bad = os.path.join(self.dir, "bad.pb")
        with open(bad, "wb") as f:
            f.write(b"\x0a\x05garbage")
        r = subprocess.run([TOOL, bad, "tg.test.Everything", "to-json"], input="", capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("bad.pb:", r.stderr)
        # the set without its imports: types that name nothing are refused at load
        partial = os.path.join(self.dir, "partial.pb")
        subprocess.run([PROTOC, "-I", PROTO_DIR, "-I", "/usr/include", f"--descriptor_set_out={partial}",
                        "transcode.proto"], check=True)
        r = subprocess.run([TOOL, partial, "tg.test.Everything", "to-json"], input="", capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no message .google.protobuf.", r.stderr)


if __name__ == "__main__":
    harness.main()
