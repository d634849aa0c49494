#!/usr/bin/env bash
#
# Tests the example chat backend and WebSocket clients against a real
# redis-server, without nginx; prints TAP.
#
#   prove examples/test-examples.sh     (or: bash examples/test-examples.sh)
#
# Needs node and the npm packages (runs "npm ci" here when node_modules is
# missing).  Ports (127.0.0.1 only): Redis RA_TEST_EXAMPLES_REDIS_PORT (6392),
# backends RA_TEST_EXAMPLES_PORT (3111) and the next one (3112).

set -u

HERE=$(cd "$(dirname "$0")" && pwd)
RPORT=${RA_TEST_EXAMPLES_REDIS_PORT:-6392}
P1=${RA_TEST_EXAMPLES_PORT:-3111}
P2=$((P1 + 1))
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ra-examples-test.XXXXXX")
PIDS=()

. "$HERE/../t/tap.sh"

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT


msgs() {                  # msgs CHANNEL: the payloads published on it
    awk -v ch="$1" '
        st == 3 { if (c == ch) print; st = 0; next }
        st == 2 { c = $0; st = 3; next }
        st == 1 { st = 2; next }
        $0 == "pmessage" { st = 1 }' "$TMP/sub"
}

backend() {               # backend NAME PORT [ENV=VALUE...]: start one
    local name=$1 port=$2; shift 2
    env NAME="$name" PORT="$port" REDIS_URL="redis://127.0.0.1:$RPORT" \
        REDIS_PREFIX=ex: REPORT_INTERVAL_MS=300 CPU_INTERVAL_MS=500 "$@" \
        node "$HERE/chat-backend/server.js" > "$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
    wait_for 10 curl -sf "http://127.0.0.1:$port/"
}

# arrays, not functions: "$!" of a background function is a subshell
client=(node "$HERE/ws-client/client.js")
swarm=(node "$HERE/ws-client/swarm.js")

# ---- setup ----

for tool in node redis-server redis-cli curl; do
    command -v $tool >/dev/null || skip_all "$tool not installed"
done

if [ ! -d "$HERE/node_modules/ws" ] || [ ! -d "$HERE/node_modules/redis" ]; then
    (cd "$HERE" && npm ci --no-audit --no-fund) > "$TMP/npm.log" 2>&1
fi
if ! (cd "$HERE" && node -e 'require("ws"); require("redis")'); then
    diag "$(cat "$TMP/npm.log" 2>/dev/null)"
    echo "Bail out! npm packages missing: run \"npm ci --prefix examples\""
    exit 1
fi
pass "npm packages ws and redis are installed"

redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$TMP" > "$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait_for 5 sh -c "redis-cli -p $RPORT ping | grep -q PONG"
ok $? "redis-server on 127.0.0.1:$RPORT"

redis-cli -p "$RPORT" psubscribe 'ex:*' > "$TMP/sub" 2>&1 &
PIDS+=($!)
wait_for 5 grep -q psubscribe "$TMP/sub"

backend b1 "$P1" CAPACITY=100
ok $? "backend b1 listens on 127.0.0.1:$P1"
B1_PID=$LAST_PID
backend b2 "$P2"
ok $? "backend b2 listens on 127.0.0.1:$P2"

# ---- HTTP and load reports ----

is "$(curl -s "http://127.0.0.1:$P1/some/path?x=1")" \
   '{"backend":"b1","path":"/some/path?x=1"}' "HTTP GET answers backend and path"
is "$(curl -s -X POST -d '{"roomName":"r"}' "http://127.0.0.1:$P2/join")" \
   '{"backend":"b2","path":"/join"}' "HTTP POST too, on the other backend"

wait_for 5 sh -c "grep -q '$P1\",\"connections\":0,\"cpu\":' $TMP/sub"
wait_for 5 sh -c "grep -q '$P2\",\"connections\":0,\"cpu\":' $TMP/sub"
is "$(msgs ex:register | sort | tr '\n' ' ')" \
   "{\"url\":\"ws://127.0.0.1:$P1\"} {\"url\":\"ws://127.0.0.1:$P2\"} " \
   "both backends publish ex:register with their url"
like "$(msgs ex:signaling | grep ":$P1\"" | tail -n 1)" \
     "^\\{\"url\":\"ws://127\\.0\\.0\\.1:$P1\",\"connections\":0,\"cpu\":[0-9.]+,\"capacity\":100,\"draining\":false\\}\$" \
     "ex:signaling carries connections, cpu, capacity, draining"
like "$(msgs ex:signaling | grep ":$P2\"" | tail -n 1)" \
     '"connections":0,"cpu":[0-9.]+,"draining":false}$' \
     "capacity is left out when not configured"
is "$(redis-cli -p "$RPORT" hkeys ex:room_affinity:backends | sort | tr '\n' ' ')" \
   "ws://127.0.0.1:$P1 ws://127.0.0.1:$P2 " \
   "snapshot hash ex:room_affinity:backends has both backends"

# ---- chat ----

"${client[@]}" --url "ws://127.0.0.1:$P1/ws?roomName=r1" --expect 2 \
    > "$TMP/a.out" 2>&1 &
a=$!
wait_for 5 grep -q welcome "$TMP/a.out"
"${client[@]}" --url "ws://127.0.0.1:$P2/ws?roomName=r1" --expect 1 --timeout 1500 \
    > "$TMP/c.out" 2>&1 &
c=$!
wait_for 5 grep -q welcome "$TMP/c.out"
"${client[@]}" --url "ws://127.0.0.1:$P1/ws?roomName=r1" --send hello --send world \
    --expect 2 > "$TMP/b.out" 2>&1
ok $? "client B sends two messages and receives its own echoes"
wait $a
ok $? "client A, in the same room on the same backend, receives both"
like "$(head -n 1 "$TMP/a.out")" \
     '^\{"type":"welcome","backend":"b1","room":"r1","id":"c[0-9]+"\}$' \
     "the welcome names backend and room"
like "$(sed -n 2p "$TMP/a.out")" \
     '^\{"type":"message","room":"r1","from":"c[0-9]+","text":"hello","backend":"b1"\}$' \
     "a broadcast names room, sender, text and backend"
wait $c
is "$?:$(grep -c '"type":"message"' "$TMP/c.out")" "1:0" \
   "the same room name on the other backend hears nothing (the problem)"

"${client[@]}" --url "ws://127.0.0.1:$P1/ws" --timeout 2000 > "$TMP/d.out" 2>&1
like "$?:$(cat "$TMP/d.out")" '^1:.*HTTP 400' "an upgrade without roomName gets 400"

"${client[@]}" --url "ws://127.0.0.1:$P2/ws?roomName=r2" --hold 4000 \
    > "$TMP/e.out" 2>&1 &
PIDS+=($!)
wait_for 5 sh -c "grep -q '$P2\",\"connections\":1,' $TMP/sub"
ok $? "signaling reports a held WebSocket as connections:1"

# ---- swarm ----

"${swarm[@]}" --nginx "http://127.0.0.1:$P1" --rooms 4 --clients 12 --messages 2 \
    > "$TMP/s1.out" 2>&1
rc=$?
ok $rc "swarm on one backend: every message delivered, exit 0"
[ $rc = 0 ] || diag "$(cat "$TMP/s1.out")"
is "$(grep -cE ' b1 +3 +18/18 +ok$' "$TMP/s1.out")" 4 \
   "the table shows room -> backend -> members -> delivered"

"${swarm[@]}" --nginx "http://127.0.0.1:$P1,http://127.0.0.1:$P2" --rooms 3 \
    --clients 9 --messages 1 --timeout 1500 > "$TMP/s2.out" 2>&1
like "$?:$(grep -c SPLIT "$TMP/s2.out")" '^1:3$' \
     "swarm spread over two backends: rooms split, exit 1"

"${swarm[@]}" --nginx "http://127.0.0.1:$P1" --rooms 3 --clients 9 --messages 2 \
    --rounds 2 --hold 10000 --reconnect --json > "$TMP/s3.out" 2>"$TMP/s3.err" &
s=$!
wait_for 10 grep -q 'round 1 done' "$TMP/s3.err"
kill -TERM $B1_PID
wait $B1_PID
ok $? "SIGTERM: backend b1 exits with status 0"
like "$(msgs ex:signaling | grep ":$P1\"" | tail -n 1)" '"draining":true}$' \
     "SIGTERM publishes draining:true"
like "$(redis-cli -p "$RPORT" hget ex:room_affinity:backends "ws://127.0.0.1:$P1")" \
     '"draining":true}$' "SIGTERM stores draining:true in the snapshot hash"
backend b1-new "$P1"
ok $? "a new backend takes port $P1"
kill -USR1 $s
wait $s
rc=$?
ok $rc "swarm --reconnect: clients come back and round 2 delivers everything"
[ $rc = 0 ] || diag "$(cat "$TMP/s3.out" "$TMP/s3.err")"
is "$(node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1]));
    console.log(r.rooms.map((x) => x.round + ":" + x.backends).join(" "));
' "$TMP/s3.out")" "1:b1 1:b1 1:b1 2:b1-new 2:b1-new 2:b1-new" \
   "swarm --json shows the rooms moving from b1 to b1-new"

# ---- Redis away ----

backend b3 $((P2 + 1)) REDIS_URL=redis://127.0.0.1:1
ok $? "a backend starts while Redis is unreachable"
sleep 1
is "$(curl -s "http://127.0.0.1:$((P2 + 1))/x")" '{"backend":"b3","path":"/x"}' \
   "it keeps serving"
like "$(cat "$TMP/b3.log")" 'redis: .*retrying' "and logs its Redis retries"
kill -TERM $LAST_PID
wait $LAST_PID
ok $? "SIGTERM without Redis: exit status 0"

# through nginx: t/050-e2e.t runs the same backends and clients through
# the module (spread, stickiness, failover, reload, Redis restart)

done_testing
