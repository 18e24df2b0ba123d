#!/usr/bin/env bash
# Micro-benchmark of the HTTP/1.1 head parser: ns per head for tollgate's
# parser and, where Debian's libhttp-parser-dev is installed (it is no
# longer a dependency: `apt-get install libhttp-parser-dev` for the
# comparison column), for http-parser. Pinned to one CPU; -O2 like the
# Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
extra=()
if [ -f /usr/include/http_parser.h ]; then
  extra=(-DWITH_HTTP_PARSER -lhttp_parser)
else
  echo "(libhttp-parser-dev not installed: tollgate's parser only)" >&2
fi
cc -O2 -std=gnu11 -D_GNU_SOURCE -I. bench/h1_parse_bench.c proxy/base/h1_parse.c -o "$out/h1_parse_bench" "${extra[@]}"
taskset -c 0 "$out/h1_parse_bench"
