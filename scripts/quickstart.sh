#!/usr/bin/env bash
# Runs tollgate on examples/quickstart.yaml in front of two demo FastAPI
# instances that this script starts itself. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null

# A throwaway certificate for the TLS listener (examples/certs/, not in git).
mkdir -p examples/certs
if [ ! -s examples/certs/demo.crt ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout examples/certs/demo.key -out examples/certs/demo.crt -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
fi

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

tollgate is listening on http://127.0.0.1:8080 and https://localhost:8443
(HTTP/1.1 and HTTP/2 on both; Ctrl-C to stop). Try:

  curl -s http://127.0.0.1:8080/whoami; curl -s http://127.0.0.1:8080/whoami
  curl -s --http2-prior-knowledge http://127.0.0.1:8080/whoami -w ' %{http_version}\n'
  curl -s --cacert examples/certs/demo.crt https://localhost:8443/echo/headers -w ' %{http_version}\n'
  curl -s -X POST -H 'content-type: application/json' -d '{"name":"widget"}' http://127.0.0.1:8080/items
  curl -sN http://127.0.0.1:8080/sse?n=5
  curl -s http://127.0.0.1:9901/metrics | grep tollgate_requests_total

MSG
wait "${pids[-1]}"
