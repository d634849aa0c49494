#!/usr/bin/env bash
#
# make demo: the whole system on 127.0.0.1, in under a minute.
#
#   redis-server, three chat backends of different capacities reporting
#   their load to Redis, and nginx with ngx_http_room_affinity_module in
#   front of them; 60 WebSocket clients in 12 rooms talk through nginx,
#   then one backend is killed and its rooms move, each as a whole; then
#   a fourth backend starts and stops: the backends register themselves
#   through Redis (room_affinity ... register=), so nginx.conf is never
#   edited and nginx never reloaded.
#
#   DEMO_KEEP=1 make demo     leave everything running afterwards
#
# Settings (environment):
#   DEMO_PORT          nginx port (18080)
#   DEMO_BACKEND_PORT  first backend port; the next two are used too (18081)
#   DEMO_REDIS_PORT    redis-server port (16380)
#   DEMO_SIGNAL        how the backend is killed: KILL (a crash, default) or
#                      TERM (a graceful stop: it reports draining first)
#   DEMO_KEEP          1: keep the stack running, print how to poke it
#   NGINX_BIN          nginx binary (/usr/sbin/nginx)
#
# Everything it starts lives in a temporary directory (config, logs, pid
# files) and is stopped on exit, on error and on Ctrl-C.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/examples/demo"
PORT=${DEMO_PORT:-18080}
BPORT=${DEMO_BACKEND_PORT:-18081}
RPORT=${DEMO_REDIS_PORT:-16380}
SIGNAL=${DEMO_SIGNAL:-KILL}
KEEP=${DEMO_KEEP:-}
[ "$KEEP" = 0 ] && KEEP=
NGINX=${NGINX_BIN:-/usr/sbin/nginx}
MODULE="$ROOT/build/ngx_http_room_affinity_module.so"
BASE="http://127.0.0.1:$PORT"

NAMES=(b1 b2 b3)
CAPACITY=(20 40 80)                 # connections each backend can take
declare -A BPID BADDR

DIR=$(mktemp -d "${TMPDIR:-/tmp}/ra-demo.XXXXXX")
PIDS=()                             # everything started, in start order
DONE=

bold() { if [ -t 1 ]; then printf '\n\033[1m%s\033[0m\n' "$*"; else printf '\n%s\n' "$*"; fi; }
say()  { printf '%s\n' "$*"; }
die()  { printf 'demo: %s\n' "$*" >&2; exit 1; }
report() { node "$HERE/report.js" "$@"; }
# a client run ended by a signal (Ctrl-C reaches the whole process group,
# and bash does not always run its INT trap after "wait")
signalled() { if [ "$1" -gt 128 ]; then say ""; say "interrupted"; exit "$1"; fi; }

# ---- start and stop ----

spawn() {               # spawn LOGNAME COMMAND...: start in the background
    local log="$DIR/$1.log"; shift
    if [ -n "$KEEP" ]; then
        # its own session: it outlives this script and the terminal
        setsid "$@" > "$log" 2>&1 < /dev/null &
    else
        "$@" > "$log" 2>&1 < /dev/null &
    fi
    LAST=$!
    PIDS+=("$LAST")
}

stop_all() {
    local rc=$? p i
    trap - EXIT INT TERM
    if [ -n "$KEEP" ] && [ -n "$DONE" ]; then
        return
    fi
    if [ -n "${SWARM:-}" ]; then kill "$SWARM" 2> /dev/null || true; fi
    # the reverse of the start order: swarm, nginx, backends, redis
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        p=${PIDS[i]}
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ "$rc" = 0 ] && [ -z "$KEEP" ]; then
        rm -rf "$DIR"
        say ""; say "stopped everything the demo started"
    else
        say ""; say "stopped everything; logs kept in $DIR"
    fi
    exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for() {            # wait_for SECONDS COMMAND...: poll until it succeeds
    local end=$((SECONDS + $1)); shift
    until "$@" > /dev/null 2>&1; do
        [ $SECONDS -ge $end ] && return 1
        sleep 0.1
    done
}

wait_round() {          # wait_round N: the swarm finished round N, holds
    local end=$((SECONDS + 20)) rc=0
    until grep -q "round $1 done" "$DIR/round2.err"; do
        if ! kill -0 "$SWARM" 2> /dev/null || [ $SECONDS -ge $end ]; then
            wait "$SWARM" || rc=$?
            signalled $rc
            die "the clients did not finish round $1: $(cat "$DIR/round2.err")"
        fi
        sleep 0.1
    done
}

port_free() { ! (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

# ---- 0. build ----

for tool in node curl redis-server "$NGINX"; do
    command -v "$tool" > /dev/null || die "$tool is missing: run 'make deps'"
done

bold "== building: make (module and agent), npm ci (examples) =="
make -s -C "$ROOT" all examples/node_modules > "$DIR/build.log" 2>&1 \
    || { cat "$DIR/build.log"; die "the build failed"; }
say "built $MODULE"

for p in "$PORT" "$RPORT" "$BPORT" $((BPORT + 1)) $((BPORT + 2)) $((BPORT + 3)); do
    port_free "$p" || die "port $p is in use (set DEMO_PORT, DEMO_BACKEND_PORT, DEMO_REDIS_PORT)"
done

# ---- 1. redis, backends, nginx ----

bold "== starting the stack in $DIR =="

spawn redis redis-server --port "$RPORT" --bind 127.0.0.1 --save '' \
    --appendonly no
wait_for 10 redis-cli -p "$RPORT" ping || die "redis-server did not start"
say "redis-server  127.0.0.1:$RPORT  (pid $LAST)"

for i in 0 1 2; do
    name=${NAMES[i]}
    port=$((BPORT + i))
    spawn "$name" env NAME="$name" PORT="$port" CAPACITY="${CAPACITY[i]}" \
        REDIS_URL="redis://127.0.0.1:$RPORT" REPORT_INTERVAL_MS=1000 \
        CPU_INTERVAL_MS=1000 DEREGISTER=1 \
        node "$ROOT/examples/chat-backend/server.js"
    BPID[$name]=$LAST
    BADDR[$name]=127.0.0.1:$port
done
for name in "${NAMES[@]}"; do
    wait_for 10 curl -sf "http://${BADDR[$name]}/" \
        || die "backend $name did not start: $(cat "$DIR/$name.log")"
done
for i in 0 1 2; do
    name=${NAMES[i]}
    say "backend $name    ${BADDR[$name]}  capacity ${CAPACITY[i]}  (pid ${BPID[$name]}, examples/chat-backend/server.js)"
done

mkdir -p "$DIR/nginx/logs"
# nginx loads a copy: "make" rewrites build/*.so in place, which would crash
# the workers of a stack left running (DEMO_KEEP=1)
cp "$MODULE" "$DIR/nginx/"
cat > "$DIR/nginx/nginx.conf" <<CONF
load_module $DIR/nginx/$(basename "$MODULE");

daemon off;
worker_processes 2;
error_log $DIR/nginx/logs/error.log notice;
pid $DIR/nginx/logs/nginx.pid;

events {
    worker_connections 1024;
}

http {
    access_log $DIR/nginx/logs/access.log;
    client_body_temp_path $DIR/nginx/logs;
    proxy_temp_path $DIR/nginx/logs;

    # the backends' load reports (register, signaling) come through Redis
    room_affinity_redis 127.0.0.1:$RPORT;

    upstream chat {
        # every request and WebSocket of a room goes to the room's backend;
        # no server line: the backends on these ports register themselves
        room_affinity \$arg_roomName zone=rooms:1m stale=3s register_expire=6s
                      register=127.0.0.1/32:$BPORT-$((BPORT + 3));
    }

    server {
        listen 127.0.0.1:$PORT;

        location /ws {
            proxy_pass http://chat;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 1h;
        }

        location = /status {
            room_affinity_status;
        }

        location = /signaling/join {
            room_affinity_join chat;
        }
        location / {
            proxy_pass http://chat;
        }
    }
}
CONF

"$NGINX" -t -q -e "$DIR/nginx/logs/error.log" -p "$DIR/nginx" \
    -c "$DIR/nginx/nginx.conf" || die "nginx -t failed"
spawn nginx "$NGINX" -e "$DIR/nginx/logs/error.log" -p "$DIR/nginx" \
    -c "$DIR/nginx/nginx.conf"
NGINX_PID=$LAST
wait_for 10 curl -sf "$BASE/status" \
    || die "nginx did not start: $(tail -5 "$DIR/nginx/logs/error.log")"
say "nginx         127.0.0.1:$PORT  (pid $NGINX_PID, 2 workers, config $DIR/nginx/nginx.conf)"

BADDR[b4]=127.0.0.1:$((BPORT + 3))
NAMEMAP="${BADDR[b1]}=b1,${BADDR[b2]}=b2,${BADDR[b3]}=b3,${BADDR[b4]}=b4"
report wait "$BASE/status" 3 10 \
    || die "nginx did not hear from the three backends through Redis"
say "nginx is subscribed to Redis and has a load report from every backend"

# ---- 2. 60 clients in 12 rooms ----

SWARM_ARGS=(--nginx "$BASE" --rooms 12 --clients 60 --messages 3)

bold "== 60 WebSocket clients join 12 rooms through nginx; each sends 3 messages =="
say "node examples/ws-client/swarm.js ${SWARM_ARGS[*]}"
say ""
rc=0
node "$ROOT/examples/ws-client/swarm.js" "${SWARM_ARGS[@]}" --json \
    > "$DIR/round1.json" 2> "$DIR/round1.err" || rc=$?
signalled $rc
report rooms "$DIR/round1.json" || rc=1
[ $rc = 0 ] || die "a room was split or lost messages (see above)"

# ---- 3. the clients come back; kill the backend with the most rooms ----

VICTIM=$(report busiest "$DIR/round1.json")
HOLD=(--hold 30000 --reconnect)

bold "== the same 60 clients come back and stay connected =="
say "node examples/ws-client/swarm.js ${SWARM_ARGS[*]} --rounds 3 ${HOLD[*]}"
node "$ROOT/examples/ws-client/swarm.js" "${SWARM_ARGS[@]}" --rounds 3 \
    "${HOLD[@]}" --json > "$DIR/round2.json" 2> "$DIR/round2.err" &
SWARM=$!
wait_round 1
report settled "$BASE/status" 60 3 || true      # a report after they joined

bold "== GET $BASE/status: nginx's view of the backends, 60 clients connected =="
report status "$BASE/status" "$NAMEMAP"

bold "== backend $VICTIM, the one with the most rooms, is killed (SIG$SIGNAL) =="
kill "-$SIGNAL" "${BPID[$VICTIM]}"
wait "${BPID[$VICTIM]}" 2> /dev/null || true
say "killed $VICTIM (pid ${BPID[$VICTIM]}); its clients lose their WebSocket and reconnect"
say "through nginx, which moves each of its rooms, as a whole, to one other backend"

# every client reconnected: 60 live WebSockets again, none on the victim
report reconnected "$BASE/status" "${BADDR[$VICTIM]}" 60 15 \
    || die "the clients did not all reconnect"
say "all 60 clients are back; each sends 3 messages again"
kill -USR1 "$SWARM"                             # round 2 starts now
wait_round 2
report settled "$BASE/status" 60 3 || true
curl -s "$BASE/status" > "$DIR/status-after.json"
kill -USR1 "$SWARM"                             # a last round, then they leave
rc=0
wait "$SWARM" || rc=$?
SWARM=
signalled $rc
say ""
report rooms "$DIR/round2.json" --round 2 --before "$DIR/round1.json" \
    --victim "$VICTIM" || rc=1
[ $rc = 0 ] || die "a room was split or lost messages after the failover (see above)"

bold "== GET $BASE/status after the failover =="
report status "$DIR/status-after.json" "$NAMEMAP"

# ---- 4. scale up and down: no edit of nginx.conf, no reload ----

CONF_SUM=$(md5sum < "$DIR/nginx/nginx.conf")
registered() { curl -s "$BASE/status" | grep -q "\"server\":\"$1\""; }

bold "== scale up: backend b4 starts; it registers itself through Redis =="
spawn b4 env NAME=b4 PORT="$((BPORT + 3))" CAPACITY=40 \
    REDIS_URL="redis://127.0.0.1:$RPORT" REPORT_INTERVAL_MS=1000 \
    CPU_INTERVAL_MS=1000 DEREGISTER=1 \
    node "$ROOT/examples/chat-backend/server.js"
BPID[b4]=$LAST
wait_for 15 registered "${BADDR[b4]}" || die "b4 did not register"
say "b4 (${BADDR[b4]}) is one of nginx's backends: nginx.conf unchanged, no reload"
rc=0
node "$ROOT/examples/ws-client/swarm.js" --nginx "$BASE" --rooms 12 \
    --clients 60 --messages 3 --room-prefix scale --json \
    > "$DIR/scale1.json" 2> "$DIR/scale1.err" || rc=$?
signalled $rc
report rooms "$DIR/scale1.json" || rc=1
[ $rc = 0 ] || die "a room was split or lost messages after b4 joined"
report status "$BASE/status" "$NAMEMAP"

bold "== scale down: b4 stops (SIGTERM); it deregisters, its rooms move whole =="
kill -TERM "${BPID[b4]}"
wait "${BPID[b4]}" 2> /dev/null || true
wait_for 10 sh -c "! curl -s '$BASE/status' | grep -q '\"server\":\"${BADDR[b4]}\"'" \
    || die "b4 did not leave"
say "b4 left nginx's backends at once"
rc=0
node "$ROOT/examples/ws-client/swarm.js" --nginx "$BASE" --rooms 12 \
    --clients 60 --messages 3 --room-prefix scale --json \
    > "$DIR/scale2.json" 2> "$DIR/scale2.err" || rc=$?
signalled $rc
report rooms "$DIR/scale2.json" || rc=1
[ $rc = 0 ] || die "a room was split or lost messages after b4 left"
[ "$(md5sum < "$DIR/nginx/nginx.conf")" = "$CONF_SUM" ] \
    || die "nginx.conf changed"
say "nginx.conf was never edited, nginx never reloaded"

# ---- 5. keep or stop ----

if [ -z "$KEEP" ]; then
    bold "== done: every room stayed whole on one backend, every message arrived =="
    exit 0
fi

# bring the killed backend back, so the stack has its three backends
i=0
while [ "${NAMES[i]}" != "$VICTIM" ]; do i=$((i + 1)); done
spawn "$VICTIM.2" env NAME="$VICTIM" PORT="$((BPORT + i))" \
    CAPACITY="${CAPACITY[i]}" REDIS_URL="redis://127.0.0.1:$RPORT" \
    REPORT_INTERVAL_MS=1000 CPU_INTERVAL_MS=1000 DEREGISTER=1 \
    node "$ROOT/examples/chat-backend/server.js"
BPID[$VICTIM]=$LAST
wait_for 10 curl -sf "http://${BADDR[$VICTIM]}/" || die "$VICTIM did not restart"

DONE=1
for p in "${PIDS[@]}"; do
    kill -0 "$p" 2> /dev/null && echo "$p"
done > "$DIR/pids"
bold "== the stack keeps running (DEMO_KEEP=1) =="
cat <<EOF
$VICTIM is back (pid ${BPID[$VICTIM]}): it registered again and takes new rooms
(with a slow start); the rooms that moved away stay where they are now.
From $ROOT:

  status (JSON):         curl -s $BASE/status
  status (table):        node examples/demo/report.js status $BASE/status $NAMEMAP
  one room:              curl -s '$BASE/status?room=room-1'
  Prometheus:            curl -s '$BASE/status?format=prometheus'
  HTTP in a room:        curl -s '$BASE/hello?roomName=room-1'
  WebSocket client:      node examples/ws-client/client.js --url 'ws://127.0.0.1:$PORT/ws?roomName=room-1' --send hello --expect 1
  listen in a room:      node examples/ws-client/client.js --url 'ws://127.0.0.1:$PORT/ws?roomName=room-1' --timeout 600000
  clients again:         node examples/ws-client/swarm.js --nginx $BASE --rooms 12 --clients 60
  join API (POST):       curl -s -d '{"roomName":"room-1"}' $BASE/signaling/join
  join API (GET):        curl -s '$BASE/signaling/join?roomName=room-42'
  the reports in Redis:  redis-cli -p $RPORT HGETALL room_affinity:backends
  watch them:            redis-cli -p $RPORT SUBSCRIBE register signaling
  reload nginx:          kill -HUP $NGINX_PID     (every room stays where it is)
  kill a backend:        kill ${BPID[b1]}     (b1; b2 is ${BPID[b2]}, b3 is ${BPID[b3]})

config and logs: $DIR
stop everything: kill \$(cat $DIR/pids)
EOF
