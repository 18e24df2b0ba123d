#!/usr/bin/env bash
# The cost of each filter alone, in-process (bench/filter_bench.c): the
# request and completion hooks of one filter at a time against an empty
# chain and against access_log, on the Release build's core library.
# Pinned to one CPU. No network, so the figures are the filters' own.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" --target tollgate_core >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# shellcheck disable=SC2046
cc -O2 -std=gnu11 -D_GNU_SOURCE -I. bench/filter_bench.c build-release/libtollgate_core.a -o "$out/filter_bench" \
  $(pkg-config --libs libevent_core libevent_openssl libevent_pthreads libnghttp2 openssl yaml-0.1) -lpthread -lm
taskset -c 0 "$out/filter_bench" "$out/access.log"
