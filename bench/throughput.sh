#!/usr/bin/env bash
# Throughput through the built nginx, as a ratio against nginx's own
# "hash $arg_room consistent" measured in the same run (the machines are
# shared and noisy: only ratios of interleaved runs mean something).
#
#   bench/throughput.sh [rounds] [seconds]
#
# One backend nginx (4 server blocks answering 200), one front nginx with
# three upstreams over the same 4 backends: room_affinity, hash consistent,
# round robin; HAProxy (url_param room + hash-type consistent +
# hash-balance-factor 125) when it is installed. wrk asks for 100,000
# distinct rooms, round after round, the policies interleaved.
# BENCH_DIRECTORY=on|off: a redis-server too, and the front with
# "room_affinity_redis ... directory=on|off" (the room directory, or Redis
# without it: the same links, to tell the directory's cost from Redis's).

set -euo pipefail

ROUNDS=${1:-5}
SECONDS_PER_RUN=${2:-5}
CONNS=${BENCH_CONNECTIONS:-64}
BASE=${BENCH_PORT:-18080}

. "$(dirname "$0")/lib.sh"
bench_init bench
SO=$TOP/build/ngx_http_room_affinity_module.so
bench_need_file "$SO" "build the module first: make"
bench_need_cmd wrk "wrk is missing: make deps"

B1=$((BASE + 1)); B2=$((BASE + 2)); B3=$((BASE + 3)); B4=$((BASE + 4))
P_RA=$((BASE + 10)); P_HASH=$((BASE + 11)); P_RR=$((BASE + 12))
P_HA=$((BASE + 13))

BACK=$(bench_prefix back)
FRONT=$(bench_prefix front)

# Idle upstream connections kept: room for every client connection's
# request to each backend.  With 64 (as this script had until December
# 2026) the cache, shared by the 4 backends, overflowed: about one request
# in eight opened a new connection to a backend (46,000 sockets in
# TIME-WAIT after a run), the kernel took 70 % of the front's time, and
# the rounds measured how each policy's sequence of backends churned the
# cache more than the policies themselves.
KEEPALIVE=${BENCH_KEEPALIVE:-$((CONNS * 4))}
REDIS_CONF=""
if [ -n "${BENCH_DIRECTORY:-}" ]; then
    P_REDIS=$((BASE + 20))
    bench_redis "$P_REDIS"
    REDIS_CONF="room_affinity_redis 127.0.0.1:$P_REDIS"
    REDIS_CONF="$REDIS_CONF directory=$BENCH_DIRECTORY;"
fi

cat > "$BACK/conf/nginx.conf" <<END
worker_processes 1;
daemon off;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000;
    server { listen 127.0.0.1:$B1; return 200 "b1\n"; }
    server { listen 127.0.0.1:$B2; return 200 "b2\n"; }
    server { listen 127.0.0.1:$B3; return 200 "b3\n"; }
    server { listen 127.0.0.1:$B4; return 200 "b4\n"; }
}
END

servers="server 127.0.0.1:$B1; server 127.0.0.1:$B2;
        server 127.0.0.1:$B3; server 127.0.0.1:$B4;"

cat > "$FRONT/conf/nginx.conf" <<END
load_module $SO;
worker_processes 1;
daemon off;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000;
    $REDIS_CONF
    upstream ra {
        room_affinity \$arg_room zone=bench_rooms:64m;
        $servers
        keepalive $KEEPALIVE;
    }
    upstream hash {
        hash \$arg_room consistent;
        $servers
        keepalive $KEEPALIVE;
    }
    upstream rr {
        $servers
        keepalive $KEEPALIVE;
    }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server { listen 127.0.0.1:$P_RA; location / { proxy_pass http://ra; } }
    server { listen 127.0.0.1:$P_HASH; location / { proxy_pass http://hash; } }
    server { listen 127.0.0.1:$P_RR; location / { proxy_pass http://rr; } }
}
END

bench_nginx "$BACK"
bench_nginx "$FRONT"

POLICIES="ra hash rr"

if command -v haproxy >/dev/null; then
    cat > "$DIR/haproxy.cfg" <<END
global
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    option http-keep-alive
frontend f
    bind 127.0.0.1:$P_HA
    default_backend b
backend b
    balance url_param room
    hash-type consistent
    hash-balance-factor 125
    server b1 127.0.0.1:$B1
    server b2 127.0.0.1:$B2
    server b3 127.0.0.1:$B3
    server b4 127.0.0.1:$B4
END
    bench_bg haproxy -f "$DIR/haproxy.cfg" -db >/dev/null 2>&1
    POLICIES="$POLICIES haproxy"
fi

cat > "$DIR/rooms.lua" <<'END'
-- 100,000 distinct rooms, each thread walking its own sequence
local counter = 0
function setup(thread)
    counter = counter + 1
    thread:set("id", counter)
end
function init(args)
    n = id * 7919
end
function request()
    n = (n * 48271) % 2147483647
    return wrk.format("GET", "/?room=room" .. (n % 100000))
end
END

for p in $B1 $B2 $B3 $B4 $P_RA $P_HASH $P_RR; do bench_wait_port "$p"; done
case $POLICIES in *haproxy*) bench_wait_port "$P_HA" ;; esac

port_of() {
    case $1 in
        ra) echo $P_RA ;; hash) echo $P_HASH ;; rr) echo $P_RR ;;
        haproxy) echo $P_HA ;;
    esac
}

# the front worker's CPU time (user + system, clock ticks)
FRONT_WORKER=""
front_ticks() {
    if [ -z "$FRONT_WORKER" ]; then
        FRONT_WORKER=$(pgrep -P "$(cat "$FRONT/logs/nginx.pid")" | head -1)
    fi
    awk '{ print $14 + $15 }' "/proc/$FRONT_WORKER/stat"
}

# "requests/s µs-of-front-CPU-per-request" of one run of one policy
run() {
    local t0 t1 out

    t0=$(front_ticks)
    out=$(wrk -t 1 -c "$CONNS" -d "${SECONDS_PER_RUN}s" -s "$DIR/rooms.lua" \
          "http://127.0.0.1:$(port_of "$1")/" 2>/dev/null)
    t1=$(front_ticks)
    echo "$out" | awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" '
        /requests in/ { n = $1 }
        /^Requests\/sec/ { rps = $2 }
        END { printf "%s %.1f\n", rps, n ? t * 1e6 / hz / n : 0 }'
}

# warm up: every room placed once, every connection opened (with the
# directory, long enough that the rounds measure known rooms: a new room
# waits for Redis)
WARMUP=${BENCH_WARMUP:-2}
if [ -n "${BENCH_DIRECTORY:-}" ]; then WARMUP=${BENCH_WARMUP:-15}; fi
for p in $POLICIES; do
    wrk -t 1 -c "$CONNS" -d "${WARMUP}s" -s "$DIR/rooms.lua" \
        "http://127.0.0.1:$(port_of "$p")/" >/dev/null 2>&1
done

echo "# requests/s, $ROUNDS rounds of ${SECONDS_PER_RUN}s, $CONNS connections,"
echo "# keepalive $KEEPALIVE, 100000 rooms, 4 backends," \
     "nginx $("$NGINX" -v 2>&1 | sed 's/.*\///')"
echo "# cpu: the front worker's CPU time per request (µs), ours and hash's"
printf "%-6s" round
for p in $POLICIES; do printf " %10s" "$p"; done
printf " %12s %8s %8s %10s\n" "ra/hash" "ra-cpu" "hash-cpu" "cpu-ratio"

median() {
    sort -n | awk '
        { a[NR] = $1 }
        END { if (NR % 2) print a[(NR + 1) / 2];
              else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

ratios=()
cpus=()
for r in $(seq 1 "$ROUNDS"); do
    printf "%-6s" "$r"
    declare -A rps cpu
    for p in $POLICIES; do
        read -r rps[$p] cpu[$p] < <(run "$p")
        printf " %10s" "${rps[$p]}"
    done
    ratio=$(awk -v a="${rps[ra]}" -v b="${rps[hash]}" \
            'BEGIN { printf "%.3f", a / b }')
    cratio=$(awk -v a="${cpu[ra]}" -v b="${cpu[hash]}" \
             'BEGIN { printf "%.3f", b ? a / b : 0 }')
    ratios+=("$ratio")
    cpus+=("$cratio")
    printf " %12s %8s %8s %10s\n" "$ratio" "${cpu[ra]}" "${cpu[hash]}" \
           "$cratio"
done

echo "median ra/hash ratio: $(printf "%s\n" "${ratios[@]}" | median)"
echo "median ra/hash front CPU per request: $(printf "%s\n" "${cpus[@]}" \
                                               | median)"
