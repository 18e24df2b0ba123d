#!/usr/bin/env python3
"""The JSON <-> protobuf codec's cost (filters/pbjson.c): CPU per message
both ways on the randomized messages of tests/pbjson/transcode.proto,
measured on tests/pbjson/pbjson_tool fed in batches (its start-up measured
apart and taken off), beside Debian's python3-protobuf json_format doing
the same work in the same process (a reference for scale, not a peer: the
transcoding peers, Envoy's grpc_json_transcoder and grpc-gateway, are not
Debian packages).

    python3 bench/pbjson.py [--count N] [--tool PATH]

Prints one line per direction: µs per message, MB/s of protobuf.
"""
import argparse
import base64
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("TOLLGATE_BIN", os.path.join(HERE, "..", "build-release", "tollgate"))
import test_pbjson as T  # noqa: E402 (the generator the tests use)


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def tool_cpu(tool, set_pb, mode, lines):
    before = child_cpu()
    subprocess.run([tool, set_pb, "tg.test.Everything", mode], input="".join(l + "\n" for l in lines),
                   capture_output=True, text=True, check=True)
    return child_cpu() - before


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--tool", default=os.path.join(HERE, "..", "build-release", "tests", "pbjson_tool"))
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tg-bench-pbjson-")
    pb2 = T.compile_protos(d)
    from google.protobuf import json_format
    gen = T.Gen(pb2, random.Random(1))
    msgs = [gen.fill(pb2.Everything()) for _ in range(a.count)]
    bins = [m.SerializeToString() for m in msgs]
    texts = [json_format.MessageToJson(m, indent=None) for m in msgs]
    total = sum(len(b) for b in bins)
    set_pb = os.path.join(d, "set.pb")
    empty = min(tool_cpu(a.tool, set_pb, "to-json", []) for _ in range(3))  # start-up and descriptor load
    print(f"{a.count} messages, {total / a.count:.0f} bytes of protobuf each on average")
    for mode, lines in (("to-json", [base64.b64encode(b).decode() for b in bins]), ("from-json", texts)):
        cpu = min(tool_cpu(a.tool, set_pb, mode, lines) for _ in range(3)) - empty
        t0 = time.process_time()
        if mode == "to-json":
            for m in msgs:
                json_format.MessageToJson(m, indent=None)
        else:
            for t in texts:
                json_format.Parse(t, pb2.Everything())
        ref = time.process_time() - t0
        print(f"{mode:9}  pbjson {cpu / a.count * 1e6:7.1f} us/message ({total / cpu / 1e6:6.1f} MB/s of protobuf)"
              f"   json_format {ref / a.count * 1e6:7.1f} us/message   ratio {cpu / ref:.3f}")


if __name__ == "__main__":
    main()
