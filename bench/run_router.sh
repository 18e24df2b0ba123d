#!/usr/bin/env bash
# Route matching, linear scan against the compiled router, 10 to 100,000
# routes (bench/router_bench.c). Needs the Release build (build-release);
# pinned to one CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cmake --build build-release --target tollgate_core -j2 >/dev/null
# shellcheck disable=SC2046
cc -O2 -std=gnu11 -D_GNU_SOURCE -I. bench/router_bench.c build-release/libtollgate_core.a -o "$out/router_bench" \
  $(pkg-config --libs libevent_core libevent_openssl libevent_pthreads libnghttp2 openssl yaml-0.1 zlib libbrotlienc \
    libbrotlidec libzstd libcares) -lpthread -lm
taskset -c 0 "$out/router_bench"
