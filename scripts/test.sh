#!/usr/bin/env bash
# One command: install missing Debian packages, build tollgate with
# AddressSanitizer + UBSan, and run every test (cmocka unit tests and the
# integration tests against the real binary) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
BUILD=${BUILD_DIR:-build-test}
cmake -S . -B "$BUILD" -DTOLLGATE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
cd "$BUILD"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --output-on-failure --timeout 600 -j2
