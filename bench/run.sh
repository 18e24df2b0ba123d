#!/usr/bin/env bash
# Side-by-side HTTP/1.1 reverse-proxy benchmark: tollgate, nginx and HAProxy
# (one worker each, pinned to CPU 0) in front of the same nginx backend,
# with wrk and the backend on CPU 1, plus wrk straight at the backend.
# Writes bench/out/latest.md; copy the table into bench/RESULTS.md.
# `bash bench/run.sh --all [--write]`: every workload in one run (bench/all.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --bench
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null
if [ "${1:-}" = "--all" ]; then  # every workload beside nginx, HAProxy and h2o (bench/all.py)
  shift
  exec /usr/bin/python3 bench/all.py "$@"
fi
if [ "${1:-}" = "--compress" ]; then  # response compression beside nginx's gzip (bench/compress.py)
  shift
  exec /usr/bin/python3 bench/compress.py --results bench/out/compress.md "$@"
fi
exec /usr/bin/python3 bench/run.py "$@"
