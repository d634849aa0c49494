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
BASE=${STRESS_PORT:-28000}
REDIS=$((BASE + 399))
FRONT=$((BASE + 80))

. "$(dirname "$0")/lib.sh"
bench_init stress
SO=$TOP/build-asan/ngx_http_room_affinity_module.so
bench_need_file "$SO" "build it first: make asan"
bench_need_cmd wrk "wrk is missing: make deps"
bench_need_cmd redis-server "redis-server is missing: make deps"

P=$(bench_prefix nginx)

backend() {
    printf '    server { listen 127.0.0.1:%d; %s return 200 "%d\\n"; }\n' \
        $((BASE + $1)) "${2:-}" "$1"
}

cat > "$P/conf/nginx.conf" <<END
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

bench_redis "$REDIS"

export RA_ASAN_LOG=$P/logs/asan
BENCH_NGINX_BIN=$TOP/t/tools/asan-nginx bench_nginx "$P"
NGINX_PID=$BENCH_PID
bench_wait_http "http://127.0.0.1:$FRONT/status"

# a report per backend every 50 ms
feed() {
    while :; do
        for i in 1 2 3 4 5 6; do
            redis-cli -p "$REDIS" publish signaling \
                "{\"url\":\"ws://127.0.0.1:$((BASE + i))\",\"connections\":$((RANDOM % 200)),\"capacity\":1000}" \
                >/dev/null
        done
        sleep 0.05
    done
}
bench_bg feed
FEED=$BENCH_PID

wrk -t 2 -c 32 -d "${SECONDS_RUN}s" -s "$DIR/rooms.lua" \
    "http://127.0.0.1:$FRONT/" | grep -E "requests in|Requests/sec"

bench_stop "$FEED"
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

bench_stop "$NGINX_PID"

if grep -E "\[(alert|crit|emerg)\]" "$P/logs/error.log"; then
    echo "stress: alerts in the error log" >&2
    exit 1
fi

if ls "$P"/logs/asan.* >/dev/null 2>&1; then
    cat "$P"/logs/asan.*
    echo "stress: sanitizer reports" >&2
    exit 1
fi

echo "stress: no alert, no sanitizer report, every live count back to 0"
