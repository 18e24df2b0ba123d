#!/bin/sh
# Builds the tollgate .deb: a Release build installed under /usr with its
# config in /etc, packed by cpack (see CMakeLists.txt). Prints the path.
#   scripts/package.sh [BUILD_DIR]      (default: build-deb)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-deb}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_TESTS=OFF \
  -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_SYSCONFDIR=/etc >/dev/null
cmake --build "$build" -j"$(nproc)" --target tollgate tollgate_gz >/dev/null
(cd "$build" && cpack -G DEB >/dev/null)
ls "$build"/tollgate_*.deb
