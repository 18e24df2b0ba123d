#!/usr/bin/env bash
# The io_uring question, measured before it is built: bench/uring_proto.c
# (one forwarder, an epoll and an io_uring I/O layer) beside tollgate.
# See bench/RESULTS.md, "io_uring: measured first".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --bench
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null
cc -O2 -Wall -Wextra -o build-release/uring_proto bench/uring_proto.c -luring
cd bench && exec /usr/bin/python3 uring_proto.py "$@"
