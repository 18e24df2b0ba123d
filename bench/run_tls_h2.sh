#!/usr/bin/env bash
# TLS and HTTP/2 side-by-side benchmark: tollgate, nginx, HAProxy and h2o
# (one worker each, CPU 0) in front of the same nginx backend (CPU 1); wrk
# and h2load on CPU 1. Writes bench/out/tls_h2.md; see bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --bench
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null
exec /usr/bin/python3 bench/tls_h2.py "$@"
