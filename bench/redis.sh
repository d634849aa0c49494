#!/usr/bin/env bash
# The Redis path, measured through a real nginx and a real redis-server:
#
#   1. latency: 1,000 PUBLISHes of a signaling report, one at a time, each
#      with a new "connections" value; the time from PUBLISH returning to
#      the status endpoint showing the value (polled), median and p99;
#   2. absorption: redis-benchmark publishes N reports as fast as it can
#      (pipelined); the time until nginx has applied all N gives the rate
#      one nginx absorbs (one worker subscribes; each message is parsed
#      and applied to the zone under its lock), and none may be lost.
#
#   bench/redis.sh [messages for the absorption run]

set -euo pipefail

N=${1:-200000}
PORT=${BENCH_PORT:-18280}
RPORT=${BENCH_REDIS_PORT:-16480}

. "$(dirname "$0")/lib.sh"
bench_init redis-bench
SO=$TOP/build/ngx_http_room_affinity_module.so
bench_need_file "$SO" "build the module first: make"
bench_need_cmd redis-server "redis-server is missing: make deps"

bench_redis "$RPORT"

P=$(bench_prefix nginx)
cat > "$P/conf/nginx.conf" <<END
load_module $SO;
worker_processes 2;
daemon off;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    room_affinity_redis 127.0.0.1:$RPORT;
    upstream chat {
        room_affinity \$arg_room zone=rb:1m;
        server 127.0.0.1:$((PORT + 1));
    }
    server { listen 127.0.0.1:$((PORT + 1)); return 200 "b1\n"; }
    server {
        listen 127.0.0.1:$PORT;
        location = /status { room_affinity_status; }
    }
}
END

bench_nginx "$P"
bench_wait_redis_link "http://127.0.0.1:$PORT/status"

/usr/bin/python3 - "$PORT" "$RPORT" <<'PY'
import socket, sys, time, http.client

port, rport = int(sys.argv[1]), int(sys.argv[2])
url = "ws://127.0.0.1:%d" % (port + 1)

r = socket.create_connection(("127.0.0.1", rport))
rf = r.makefile("rb")

def publish(msg):
    args = [b"PUBLISH", b"signaling", msg.encode()]
    r.sendall(b"*%d\r\n" % len(args)
              + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    rf.readline()

h = http.client.HTTPConnection("127.0.0.1", port)

def status():
    h.request("GET", "/status")
    return h.getresponse().read().decode()

lat = []
for i in range(1, 1001):
    needle = '"connections":%d,' % (100000 + i)
    publish('{"url":"%s","connections":%d}' % (url, 100000 + i))
    t0 = time.perf_counter()
    while needle not in status():
        pass
    lat.append((time.perf_counter() - t0) * 1000)

lat.sort()
print("publish -> applied (status shows it), 1000 messages:")
print("  median %.3f ms, p99 %.3f ms, max %.3f ms"
      % (lat[499], lat[989], lat[-1]))
PY

before=$(curl -s "http://127.0.0.1:$PORT/status" \
         | sed 's/.*"applied":\([0-9]*\).*/\1/')

start=$(date +%s.%N)
redis-benchmark -p "$RPORT" -n "$N" -c 4 -P 32 -q \
    PUBLISH signaling "{\"url\":\"ws://127.0.0.1:$((PORT + 1))\",\"connections\":7}" \
    | tr '\r' '\n' | grep -v '^$' | tail -1
end=$(date +%s.%N)
# poll until nginx has applied every message: the time it takes is what
# one nginx absorbs
while :; do
    now=$(date +%s.%N)
    got=$(curl -s "http://127.0.0.1:$PORT/status" \
          | sed 's/.*"applied":\([0-9]*\).*/\1/')
    [ $((got - before)) -ge "$N" ] && break
    awk -v s="$start" -v t="$now" 'BEGIN { exit !(t - s > 30) }' && break
    sleep 0.01
done

awk -v n="$N" -v a="$((got - before))" -v s="$start" -v e="$end" \
    -v t="$now" 'BEGIN {
    printf "absorption: %d published in %.2f s (%.0f/s); nginx applied %d "\
           "in %.2f s: %.0f messages/s%s\n", n, e - s, n / (e - s), a,
           t - s, a / (t - s), (a == n) ? ", none lost" : ", LOST " (n - a) }'
