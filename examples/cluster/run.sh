#!/usr/bin/env bash
# Three tollgate instances with one shared config (tollgate.yaml) and one
# Redis for their rate limits, behind HAProxy in TCP mode that sends the
# PROXY protocol v2 — the layout of a scaled-out deployment, all on
# loopback. A demo FastAPI app is the upstream.
#
#   bash examples/cluster/run.sh            # run until Ctrl-C; prints what to try
#   bash examples/cluster/run.sh --check    # start, prove it works, stop (exit 0/1)
#
# BASE_PORT (default 8090): HAProxy listens on BASE_PORT, the instances on
# BASE_PORT+1..3 (admin on BASE_PORT+11..13), Redis on BASE_PORT+20, the
# app on BASE_PORT+21. TOLLGATE_BIN: a tollgate binary to use instead of
# building one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
check=0
[ "${1:-}" = "--check" ] && check=1
base="${BASE_PORT:-8090}"
lb=$base redis_port=$((base + 20)) app_port=$((base + 21))

bin="${TOLLGATE_BIN:-}"
if [ -z "$bin" ]; then
  bash "$root/scripts/deps.sh"
  cmake -S "$root" -B "$root/build-release" -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_TESTS=OFF >/dev/null
  cmake --build "$root/build-release" -j"$(nproc)" >/dev/null
  bin="$root/build-release/tollgate"
fi

work="$(mktemp -d -t tollgate-cluster-XXXXXX)"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on port $1" >&2
  return 1
}

/usr/bin/redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 &
pids+=($!)
APP_NAME=cluster-demo /usr/bin/python3 -m uvicorn app:app --app-dir "$root/tests/integration/apps" \
  --host 127.0.0.1 --port "$app_port" --log-level warning >"$work/app.log" 2>&1 &
pids+=($!)
wait_port "$redis_port"
wait_port "$app_port"

for i in 1 2 3; do
  TG_PORT=$((base + i)) TG_ADMIN_PORT=$((base + 10 + i)) REDIS_ADDRESS="127.0.0.1:$redis_port" \
    APP_ADDRESS="127.0.0.1:$app_port" "$bin" -c "$here/tollgate.yaml" >"$work/tollgate-$i.log" 2>&1 &
  pids+=($!)
done

cat >"$work/haproxy.cfg" <<CFG
global
  maxconn 2000
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend gateways
  bind 127.0.0.1:$lb
  default_backend tollgate
backend tollgate
  balance roundrobin
  server gw1 127.0.0.1:$((base + 1)) send-proxy-v2
  server gw2 127.0.0.1:$((base + 2)) send-proxy-v2
  server gw3 127.0.0.1:$((base + 3)) send-proxy-v2
CFG
/usr/sbin/haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)
for p in $((base + 1)) $((base + 2)) $((base + 3)) "$lb"; do wait_port "$p"; done

if [ "$check" = 0 ]; then
  cat <<MSG

HAProxy on http://127.0.0.1:$lb in front of three tollgate instances
(:$((base + 1)) :$((base + 2)) :$((base + 3)), admin :$((base + 11)) :$((base + 12)) :$((base + 13))) that share one
limit of 50 requests per 10 s per client in Redis (:$redis_port). Try:

  for i in \$(seq 60); do curl -s -o /dev/null -w '%{http_code} ' http://127.0.0.1:$lb/whoami; done; echo
  curl -s --interface 127.0.0.2 http://127.0.0.1:$lb/echo/headers    # the upstream sees x-forwarded-for: 127.0.0.2
  curl -s http://127.0.0.1:$((base + 11))/metrics | grep -E 'ratelimit_decisions|redis_'
  redis-cli -p $redis_port keys 'tollgate:*'

Logs are in $work. Ctrl-C stops everything.
MSG
  wait "${pids[-1]}"
  exit 0
fi

# --check: the same client through any instance shares one exact budget,
# and each instance sees the client's own address (127.0.0.2 / 127.0.0.3,
# not HAProxy's 127.0.0.1).
fail() { echo "cluster check: FAILED: $*" >&2; tail -n 20 "$work"/*.log >&2; exit 1; }
for i in 1 2 3; do  # every instance connected to Redis (two workers each)
  for _ in $(seq 100); do
    curl -s "http://127.0.0.1:$((base + 10 + i))/metrics" | grep -q '^tollgate_redis_connections_active 2' && break
    sleep 0.1
  done
done
# a burst within one 10 s window (Redis's clock): start with 8 s of it left
for _ in 1 2 3; do
  t=$(redis-cli -p "$redis_port" time | tr '\n' ' ')
  set -- $t
  left=$(( 10000 - ($1 * 1000 + $2 / 1000) % 10000 ))
  [ "$left" -ge 8000 ] && break
  sleep "$(( left / 1000 )).$(( left % 1000 / 100 + 1 ))"
done
for client in 127.0.0.2 127.0.0.3; do
  xff=$(curl -s --interface "$client" "http://127.0.0.1:$lb/echo/headers" -o - | tr -d ' ')
  case "$xff" in *"[\"x-forwarded-for\",\"$client\"]"*) ;; *) fail "upstream saw: $xff" ;; esac
  # 59 more on one keep-alive connection (one curl): quick, well within the window
  urls=()
  for _ in $(seq 59); do urls+=(-o /dev/null "http://127.0.0.1:$lb/whoami"); done
  ok=$(( 1 + $(curl -s -w '%{http_code}\n' --interface "$client" "${urls[@]}" | grep -c '^200$') ))
  [ "$ok" = 50 ] || fail "client $client: $ok of 60 passed, want exactly 50"
  echo "cluster check: client $client: 50 of 60 passed, seen as $client upstream"
done
served=0
for i in 1 2 3; do
  n=$(curl -s "http://127.0.0.1:$((base + 10 + i))/metrics" |
    awk '/^tollgate_ratelimit_decisions_total\{route="api",decision="allowed"\}/ {print $2}')
  [ "${n:-0}" -gt 0 ] || fail "instance $i served nothing"
  served=$((served + n))
done
[ "$served" = 100 ] || fail "allowed decisions add up to $served, want 100"
echo "cluster check: passed (three instances, one limit, client addresses through PROXY v2)"
