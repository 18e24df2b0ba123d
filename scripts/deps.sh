#!/usr/bin/env bash
# Installs the Debian packages tollgate needs to build, test and benchmark,
# skipping what is already there. Safe to run repeatedly; needs root for apt.
set -euo pipefail

BUILD_PKGS="build-essential cmake pkg-config libevent-dev libnghttp2-dev libssl-dev
  libyaml-dev libcmocka-dev clang libclang-rt-14-dev zlib1g-dev libbrotli-dev libzstd-dev
  libc-ares-dev liburing-dev"
TEST_PKGS="curl openssl python3 python3-fastapi python3-uvicorn python3-websockets
  python3-httpx python3-h2 python3-requests python3-jwt python3-cryptography procps prometheus
  nghttp2-client python3-grpcio haproxy tzdata redis-server iproute2 strace
  chromium-headless-shell python3-yaml python3-jsonschema python3-brotli python3-zstandard python3-hypercorn
  python3-dnslib lintian protobuf-compiler libprotobuf-dev python3-protobuf"
BENCH_PKGS="nginx wrk h2o nghttp2-server valgrind"

want="$BUILD_PKGS $TEST_PKGS"
case "${1:-}" in
  --bench) want="$want $BENCH_PKGS" ;;
esac

missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "deps: installing:$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q </dev/null
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q --no-install-recommends $missing </dev/null
else
  echo "deps: all present"
fi
