#!/usr/bin/env bash
# One command: install missing Debian packages; fuzz every parser entry
# point for a bounded time (libFuzzer, clang build, FUZZ_SECONDS each);
# build tollgate with AddressSanitizer + UBSan and run every test (cmocka
# unit tests and the integration tests against the real binary) through
# ctest, whose summary ends the output, followed by every skipped test.
#
# Every step has a time bound (`timeout`; ctest's per-test --timeout), so
# a hang fails the run instead of stalling it. A skipped test is never a
# pass: tests may skip only for a reason listed in tests/skips.allowed
# (any other skip fails its file), and each skip is listed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

step() {  # step SECONDS DESCRIPTION COMMAND...: one bounded step
    local secs=$1 what=$2
    shift 2
    echo "== $what (at most ${secs}s)"
    local rc=0
    timeout --kill-after=30 "$secs" "$@" || rc=$?
    [ "$rc" -eq 124 ] && echo "test.sh: '$what' did not finish within ${secs}s" >&2
    return "$rc"
}

SKIP_LOG=$(mktemp /tmp/tollgate-skips.XXXXXX)
export TOLLGATE_SKIP_LOG=$SKIP_LOG
report_skips() {
    echo "== skipped tests (allowed reasons: tests/skips.allowed)"
    if [ -s "$SKIP_LOG" ]; then sed 's/^/  /' "$SKIP_LOG"; else echo "  none"; fi
    rm -f "$SKIP_LOG"
}
trap report_skips EXIT

step 1800 "install missing packages" bash scripts/deps.sh
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
J=$(nproc)

FUZZ=${FUZZ_BUILD_DIR:-build-fuzz}
CC=clang cmake -S . -B "$FUZZ" -DTOLLGATE_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
  -DTOLLGATE_FUZZ_SECONDS="${FUZZ_SECONDS:-30}" >/dev/null
step 1200 "fuzz build" cmake --build "$FUZZ" -j"$J"
(cd "$FUZZ" && step 1500 "fuzz targets" ctest --output-on-failure -j2 --timeout $(( ${FUZZ_SECONDS:-30} + 300 )))

# the optimised build that quickstart.sh and bench/ use must compile too
# (-O2 enables warnings that -O0 does not); its unit tests run as well:
# some check memory (RSS) that the sanitizer's quarantine would hide.
# The release build's block cache and slabs reuse freed memory (sanitizer
# builds turn that off so that ASan sees every free): the HTTP/2 and gRPC
# suites also run on the release binary, and so does the allocation count
# (its LD_PRELOAD counter cannot run under ASan).
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_TESTS=ON >/dev/null
step 1200 "release build" cmake --build build-release -j"$J"
(cd build-release && step 1200 "release: unit tests, HTTP/2, gRPC and allocation suites" \
  ctest --output-on-failure --timeout 600 \
    -R '^(unit\..*|integration\.test_(http2|grpc|allocations))$')

BUILD=${BUILD_DIR:-build-test}
cmake -S . -B "$BUILD" -DTOLLGATE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
step 1200 "sanitizer build" cmake --build "$BUILD" -j"$J"
cd "$BUILD"
step 3000 "every test (ASan + UBSan)" ctest --output-on-failure --timeout 600 -j2
