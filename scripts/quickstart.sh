#!/usr/bin/env bash
# Runs tollgate on examples/quickstart.yaml in front of two demo FastAPI
# instances that this script starts itself. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
for i in 1 2; do
  APP_NAME="demo-$i" /usr/bin/python3 -m uvicorn app:app --app-dir tests/integration/apps \
    --host 127.0.0.1 --port "800$i" --log-level warning &
  pids+=($!)
done
for _ in $(seq 50); do
  curl -s -o /dev/null http://127.0.0.1:8001/whoami && curl -s -o /dev/null http://127.0.0.1:8002/whoami && break
  sleep 0.2
done
./build-release/tollgate -c examples/quickstart.yaml &
pids+=($!)
sleep 0.5
cat <<MSG

tollgate is listening on http://127.0.0.1:8080 (Ctrl-C to stop). Try:

  curl -s http://127.0.0.1:8080/whoami; curl -s http://127.0.0.1:8080/whoami
  curl -s -X POST -H 'content-type: application/json' -d '{"name":"widget"}' http://127.0.0.1:8080/items
  curl -sN http://127.0.0.1:8080/sse?n=5
  curl -s http://127.0.0.1:9901/metrics | grep tollgate_requests_total

MSG
wait "${pids[-1]}"
