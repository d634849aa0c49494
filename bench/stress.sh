#!/usr/bin/env bash
# Stress of the balancer under the sanitizers: the module built with ASan
# and UBSan ("make asan" builds it), two workers, seven servers (one dead,
# one failing the requests that ask it to, one backup), a real
# redis-server receiving a report per backend every 50 ms, and wrk asking
# for 50,000 rooms for 15 s.  Fails when the error log has an alert or
# worse, when a sanitizer reports, or when a live count is not back to 0.
#
#   bench/stress.sh [seconds]

set -euo pipefail

SECONDS_RUN=${1:-15}
TOP=$(cd "$(dirname "$0")/.." && pwd)
SO=$TOP/build-asan/ngx_http_room_affinity_module.so
BASE=${STRESS_PORT:-28000}
REDIS=$((BASE + 399))
FRONT=$((BASE + 80))
DIR=$(mktemp -d /tmp/ra-stress.XXXXXX)
PID=
FEED=

cleanup() {
    [ -n "$FEED" ] && kill "$FEED" 2>/dev/null || true
    [ -n "$PID" ] && kill -QUIT "$PID" 2>/dev/null && wait "$PID" || true
    redis-cli -p "$REDIS" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

[ -f "$SO" ] || { echo "build it first: make asan" >&2; exit 1; }

mkdir -p "$DIR/logs" "$DIR/conf"

backend() {
    printf '    server { listen 127.0.0.1:%d; %s return 200 "%d\\n"; }\n' \
        $((BASE + $1)) "${2:-}" "$1"
}

cat > "$DIR/conf/nginx.conf" <<END
load_module $SO;
worker_processes 2;
daemon off;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    room_affinity_redis 127.0.0.1:$REDIS;
    upstream chat {
        room_affinity \$arg_room zone=stress:16m stale=2s;
        server 127.0.0.1:$((BASE + 1));
        server 127.0.0.1:$((BASE + 2));
        server 127.0.0.1:$((BASE + 3));
        server 127.0.0.1:$((BASE + 4)) max_fails=1 fail_timeout=1s;
        server 127.0.0.1:$((BASE + 5));
        server 127.0.0.1:$((BASE + 6));
        server 127.0.0.1:$((BASE + 99)) max_fails=1 fail_timeout=1s;
        server 127.0.0.1:$((BASE + 7)) backup;
        keepalive 16;
    }
$(for i in 1 2 3 5 6 7; do backend "$i"; done)
$(backend 4 'if ($arg_fail) { return 502; }')
    server {
        listen 127.0.0.1:$FRONT;
        location / {
            proxy_next_upstream error http_502;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://chat;
        }
        location = /status { room_affinity_status; }
    }
}
END

cat > "$DIR/rooms.lua" <<'END'
counter = 0
request = function()
    counter = counter + 1
    local fail = ""
    if counter % 50 == 0 then fail = "&fail=1" end
    return wrk.format("GET", "/?room=s" .. math.random(1, 50000) .. fail)
end
END

redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --logfile "$DIR/logs/redis.log"

RA_ASAN_LOG=$DIR/logs/asan "$TOP/t/tools/asan-nginx" -p "$DIR/" \
    -c conf/nginx.conf > "$DIR/logs/stdout" 2>&1 & PID=$!

for i in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$FRONT/status" && break
    sleep 0.05
done

(
    while :; do
        for i in 1 2 3 4 5 6; do
            redis-cli -p "$REDIS" publish signaling \
                "{\"url\":\"ws://127.0.0.1:$((BASE + i))\",\"connections\":$((RANDOM % 200)),\"capacity\":1000}" \
                >/dev/null
        done
        sleep 0.05
    done
) & FEED=$!

wrk -t 2 -c 32 -d "${SECONDS_RUN}s" -s "$DIR/rooms.lua" \
    "http://127.0.0.1:$FRONT/" | grep -E "requests in|Requests/sec"

kill "$FEED" 2>/dev/null || true
wait "$FEED" 2>/dev/null || true
FEED=
sleep 0.5

STATUS=$(curl -s "http://127.0.0.1:$FRONT/status")

echo "$STATUS" | python3 -c '
import json, sys
d = json.load(sys.stdin)["upstreams"]["chat"]
z = d["zone"]
print("rooms %d, moved %d, placements: %d from the kept view, %d full passes"
      % (z["rooms"], z["moved"], z["placements"]["reused_view"],
         z["placements"]["full_pass"]))
for b in d["backends"]:
    print("  %-16s %-6s rooms %6d live %d"
          % (b["server"], b["state"], b["rooms"], b["live"]))
if any(b["live"] for b in d["backends"]):
    sys.exit("a live count is not back to 0")
'

kill -QUIT "$PID"
wait "$PID" || true
PID=

if grep -E "\[(alert|crit|emerg)\]" "$DIR/logs/error.log"; then
    echo "stress: alerts in the error log" >&2
    exit 1
fi

if ls "$DIR"/logs/asan.* >/dev/null 2>&1; then
    cat "$DIR"/logs/asan.*
    echo "stress: sanitizer reports" >&2
    exit 1
fi

echo "stress: no alert, no sanitizer report, every live count back to 0"
