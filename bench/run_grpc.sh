#!/usr/bin/env bash
# gRPC-shaped unary calls over h2c: tollgate, nginx (grpc_pass) and HAProxy
# (proto h2) in front of nghttpd, one worker each on CPU 0; h2load and
# nghttpd on CPU 1. Writes bench/out/grpc.md; see bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --bench
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null
exec /usr/bin/python3 bench/grpc_bench.py "$@"
