#!/usr/bin/env bash
# One command: install missing Debian packages; fuzz every parser entry
# point for a bounded time (libFuzzer, clang build, FUZZ_SECONDS each);
# build tollgate with AddressSanitizer + UBSan and run every test (cmocka
# unit tests and the integration tests against the real binary) through
# ctest, whose summary ends the output.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

FUZZ=${FUZZ_BUILD_DIR:-build-fuzz}
CC=clang cmake -S . -B "$FUZZ" -DTOLLGATE_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
  -DTOLLGATE_FUZZ_SECONDS="${FUZZ_SECONDS:-30}" >/dev/null
cmake --build "$FUZZ" -j"$(nproc)"
(cd "$FUZZ" && ctest --output-on-failure -j2)

# the optimised build that quickstart.sh and bench/ use must compile too
# (-O2 enables warnings that -O0 does not); its unit tests run as well:
# some check memory (RSS) that the sanitizer's quarantine would hide
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_TESTS=ON >/dev/null
cmake --build build-release -j"$(nproc)"
(cd build-release && ctest -R '^unit\.' --output-on-failure)

# The release build's block cache and slabs reuse freed memory (sanitizer
# builds turn that off so that ASan sees every free): the HTTP/2 and gRPC
# suites also run on the release binary, and so does the allocation count
# (its LD_PRELOAD counter cannot run under ASan).
(cd tests/integration && TOLLGATE_BIN="$(pwd)/../../build-release/tollgate" \
  /usr/bin/python3 -m unittest test_http2 test_grpc test_allocations)

BUILD=${BUILD_DIR:-build-test}
cmake -S . -B "$BUILD" -DTOLLGATE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
cd "$BUILD"
ctest --output-on-failure --timeout 600 -j2
