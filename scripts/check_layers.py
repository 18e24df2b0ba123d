#!/usr/bin/env python3
"""Checks that tollgate's dependencies point one way (docs/architecture.md).

1. Folders: each may include only what its layer allows —
     proxy/base  -> proxy/base
     config      -> config, proxy/base
     tls         -> tls, config, proxy/base
     filters     -> filters, tls, config, proxy/base
     proxy       -> anything of ours
2. Modules inside proxy/ (a module is a .c and its .h; exchange_int.h and
   exchange_upstream.c belong to the exchange) include each other without
   a circle: the worker knows the protocols only through its setup table
   (proxy/stack.c).
3. Source files call each other without a circle, in every folder: a
   function of one .c calling a function another .c defines is an edge
   (calls through pointers — vtables, callbacks — are not: they are how a
   lower layer reports to a higher one). Here each .c is its own unit, so
   the two halves of the exchange count apart.

Exit status 0 when both hold; otherwise each violation is printed.
`--self-test` checks the checker on small trees that break each rule.
"""
import os
import re
import sys
import tempfile

ALLOWED = {
    "proxy/base": {"proxy/base"},
    "config": {"config", "proxy/base"},
    "tls": {"tls", "config", "proxy/base"},
    "filters": {"filters", "tls", "config", "proxy/base"},
}
MODULE_ALIASES = {"exchange_int": "exchange", "exchange_upstream": "exchange"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
# A function defined at file level: a line starting with its return type,
# the name, then "(" ... and the body's "{" at the start of a later line.
DEFINITION = re.compile(r'^(?!static\b)[A-Za-z_][\w \t\*]*?\b([A-Za-z_]\w*)\s*\([^;{]*?\)\s*\n\{', re.M)
CALL = re.compile(r'(?<!->)(?<!\.)\b([A-Za-z_]\w*)\s*\(')
COMMENTS = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"', re.S)


def sources(root):
    for folder in ("proxy", "config", "tls", "filters"):
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            for f in files:
                if f.endswith((".c", ".h")):
                    path = os.path.join(dirpath, f)
                    yield os.path.relpath(path, root), open(path, encoding="utf-8").read()


def folder_of(rel):
    return "proxy/base" if rel.startswith("proxy/base/") else rel.split("/", 1)[0]


def check(root):
    problems = []
    edges = {}
    for rel, text in sources(root):
        here = folder_of(rel)
        for inc in INCLUDE.findall(text):
            if "/" not in inc:
                continue
            there = folder_of(inc)
            if here in ALLOWED and there not in ALLOWED[here]:
                problems.append(f"{rel}: includes {inc} ({here} may use only {', '.join(sorted(ALLOWED[here]))})")
            if here == "proxy" and there == "proxy":
                a = os.path.splitext(os.path.basename(rel))[0]
                b = os.path.splitext(os.path.basename(inc))[0]
                a, b = MODULE_ALIASES.get(a, a), MODULE_ALIASES.get(b, b)
                if a != b:
                    edges.setdefault(a, set()).add(b)
    problems += [f"proxy/: include circle {' -> '.join(c + [c[0]])}" for c in cycles(edges)]
    problems += call_circles(root)
    return problems


def call_circles(root):
    """Rule 3: which .c defines each exported function, who calls it."""
    texts = {rel: COMMENTS.sub(" ", text) for rel, text in sources(root) if rel.endswith(".c")}
    owner = {}
    for rel, text in texts.items():
        for name in DEFINITION.findall(text):
            owner.setdefault(name, rel)
    edges = {}
    for rel, text in texts.items():
        for name in CALL.findall(text):
            there = owner.get(name)
            if there is not None and there != rel:
                edges.setdefault(rel, set()).add(there)
    return [f"call circle {' -> '.join(c + [c[0]])}" for c in cycles(edges)]


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def self_test():
    cases = {
        "clean": ({"proxy/a.c": '#include "proxy/b.h"', "proxy/b.h": '#include "proxy/base/x.h"',
                   "config/c.c": '#include "proxy/base/x.h"', "proxy/base/x.h": ""}, 0),
        "config uses filters": ({"config/c.c": '#include "filters/filter.h"', "filters/filter.h": ""}, 1),
        "base uses config": ({"proxy/base/x.c": '#include "config/config.h"', "config/config.h": ""}, 1),
        "tls uses proxy": ({"tls/t.c": '#include "proxy/sock.h"', "proxy/sock.h": ""}, 1),
        "circle in proxy": ({"proxy/worker.c": '#include "proxy/h1_server.h"',
                             "proxy/h1_server.c": '#include "proxy/worker.h"',
                             "proxy/worker.h": "", "proxy/h1_server.h": ""}, 1),
        "exchange halves": ({"proxy/exchange.c": '#include "proxy/exchange_int.h"',
                             "proxy/exchange_int.h": '#include "proxy/exchange.h"', "proxy/exchange.h": ""}, 0),
        "calls one way": ({"proxy/a.c": "int a(void)\n{\n    return b();\n}",
                           "proxy/b.c": "int b(void)\n{\n    return 0;\n}"}, 0),
        "calls in a circle": ({"proxy/a.c": "int a(void)\n{\n    return b();\n}",
                               "proxy/b.c": "int b(void)\n{\n    return a(); /* back */\n}"}, 1),
        "a call through a pointer": ({"proxy/a.c": "int a(void)\n{\n    return b();\n}",
                                      "proxy/b.c": "int b(void)\n{\n    return ops->a() + o.a();\n}"}, 0),
    }
    failed = 0
    for name, (files, want) in cases.items():
        with tempfile.TemporaryDirectory() as d:
            for rel, text in files.items():
                os.makedirs(os.path.join(d, os.path.dirname(rel)), exist_ok=True)
                with open(os.path.join(d, rel), "w") as f:
                    f.write(text + "\n")
            got = len(check(d))
            if (got > 0) != (want > 0):
                print(f"self-test {name!r}: {got} problem(s), expected {'some' if want else 'none'}")
                failed += 1
    return failed


def main():
    if "--self-test" in sys.argv:
        failed = self_test()
        print("self-test:", "failed" if failed else "ok")
        return 1 if failed else 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems = check(root)
    for p in problems:
        print(p)
    print(f"layers: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
