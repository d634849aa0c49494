#!/usr/bin/env bash
#
# Tests ra-agent against a real redis-server; prints TAP.
#
#   prove agent/test-agent.sh        (or: bash agent/test-agent.sh)
#
# Ports (127.0.0.1 only): Redis RA_TEST_REDIS_PORT (6391), connections are
# held on RA_TEST_AGENT_PORT (3191).  Everything lives in a temp dir that is
# removed on exit.

set -u

HERE=$(cd "$(dirname "$0")" && pwd)
AGENT=$HERE/ra-agent
RPORT=${RA_TEST_REDIS_PORT:-6391}
LPORT=${RA_TEST_AGENT_PORT:-3191}
URL=ws://127.0.0.1:$LPORT
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ra-agent-test.XXXXXX")
REDIS_PID= SUB_PID= HOLD_PID=

. "$HERE/../t/tap.sh"

cleanup() {
    for p in $HOLD_PID $SUB_PID $REDIS_PID; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# ---- helpers ----

rcli() { redis-cli -p "$RPORT" "$@"; }


start_redis() {
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$TMP" --unixsocket "$TMP/redis.sock" --unixsocketperm 700 \
        > "$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_for 5 sh -c "redis-cli -p $RPORT ping | grep -q PONG"
}

stop_redis() {
    kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null
    REDIS_PID=
    SUB_PID=              # the subscriber ends with Redis
}

start_sub() {             # every message on every channel, into $TMP/sub
    : > "$TMP/sub"
    redis-cli -p "$RPORT" psubscribe '*' > "$TMP/sub" 2>&1 &
    SUB_PID=$!
    wait_for 5 grep -q psubscribe "$TMP/sub"
}

msgs_now() {              # msgs_now CHANNEL: the payloads published on it
    awk -v ch="$1" '
        st == 3 { if (c == ch) print; st = 0; next }
        st == 2 { c = $0; st = 3; next }
        st == 1 { st = 2; next }
        $0 == "pmessage" { st = 1 }' "$TMP/sub"
}

msgs() {                  # msgs CHANNEL: the same, once redis-cli wrote any
    local i out
    for i in $(seq 40); do
        out=$(msgs_now "$1")
        [ -n "$out" ] && break
        sleep 0.05
    done
    printf '%s\n' "$out"
}

count_msgs() { msgs "$1" | grep -c . ; }

stop_agent() {            # stop_agent PID SIGNAL: its exit status, 124 if hung
    local pid=$1 i
    kill -"$2" "$pid"
    for i in $(seq 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid"; wait "$pid" 2>/dev/null; return 124
    fi
    wait "$pid"
}

# ---- build and arguments ----

command -v redis-server >/dev/null || skip_all "redis-server not installed"

make -s -C "$HERE" >"$TMP/make.log" 2>&1
rc=$?
ok $rc "ra-agent builds with -Wall -Wextra -Werror"
if [ $rc != 0 ]; then
    diag "$(cat "$TMP/make.log")"
    echo "Bail out! cannot build ra-agent"
    exit 1
fi

help=$("$AGENT" --help)
rc=$?
missing=
for flag in --url --redis --password --db --prefix --port --count-cmd \
            --count-file --capacity --interval --cpu-interval --key --once -v
do
    grep -qE -e "(^| )$flag[ ,]" <<< "$help" || missing="$missing $flag"
done
is "$rc:$missing" "0:" "--help exits 0 and documents every flag"

bad=
for args in "" "--url ''" "--url ws://h:1 --interval 0" \
            "--url ws://h:1 --interval 5x" "--url ws://h:1 --redis h:99999" \
            "--url ws://h:1 --port 1 --count-file /f" "--url ws://h:1 --db -1" \
            "--url ws://h --capacity 0" "--url unix:sock" "--url ws://h:1 extra" \
            "--url 'ws://a b:1'" "--url ws://h:1 --redis unix:"
do
    eval "\"$AGENT\" $args" 2>/dev/null
    rc=$?
    [ $rc = 2 ] || bad="$bad [$args]=$rc"
done
is "$bad" "" "bad arguments exit with status 2"

# ---- Redis down ----

SECONDS=0
"$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" --once 2>"$TMP/down.log"
is "$?:$((SECONDS < 3))" "1:1" "--once exits 1 quickly when Redis is down"

"$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" --interval 200ms \
    2>"$TMP/backoff.log" &
pid=$!
sleep 3
tries=$(grep -c 'could not connect' "$TMP/backoff.log")
delays=$(grep -o 'next try in [0-9]*' "$TMP/backoff.log" | awk '{print $4}' \
         | tr '\n' ' ')
max=$(tr ' ' '\n' <<< "$delays" | sort -n | tail -n 1)
kill -0 $pid 2>/dev/null
alive=$?
is "$alive:$((tries >= 4 && tries <= 10)):$((${max:-0} >= 400))" "0:1:1" \
   "Redis down: the agent lives and retries with backoff (ms: $delays)"

start_redis
ok $? "redis-server on 127.0.0.1:$RPORT"
start_sub
wait_for 5 sh -c "redis-cli -p $RPORT hexists room_affinity:backends $URL \
                  | grep -q 1"
ok $? "the agent connects once Redis comes up and stores its snapshot"
stop_agent $pid TERM
rc=$?
is "$rc" 0 "SIGTERM while connected: exit status 0"
like "$(msgs signaling | tail -n 1)" '"draining":true}$' \
     "SIGTERM publishes draining:true"
like "$(rcli hget room_affinity:backends "$URL")" '"draining":true}$' \
     "SIGTERM stores draining:true in the snapshot hash"
rcli del room_affinity:backends >/dev/null

# ---- hold 2 IPv4 and 1 IPv6 established connections on $LPORT ----

cat > "$TMP/hold.py" <<'EOF'
import socket, sys, time
port, held = int(sys.argv[1]), []
for family, host, count in ((socket.AF_INET, "127.0.0.1", 2),
                            (socket.AF_INET6, "::1", 1)):
    try:
        srv = socket.socket(family)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(8)
    except OSError:
        continue
    for _ in range(count):
        held.append(socket.create_connection((host, port)))
        held.append(srv.accept()[0])
    held.append(srv)
print("ready", flush=True)
time.sleep(120)
EOF
python3 "$TMP/hold.py" "$LPORT" > "$TMP/hold.out" 2>&1 &
HOLD_PID=$!
wait_for 5 grep -q ready "$TMP/hold.out"
# accepted sides have local port $LPORT; 2 IPv4 + 1 IPv6 when IPv6 works
if python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' \
    2>/dev/null
then
    held=3
else
    held=2
fi

# ---- --once ----

"$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" --prefix t1: \
    --capacity 50 --once 2>"$TMP/once.log"
ok $? "--once exits 0"
is "$(msgs t1:register)" "{\"url\":\"$URL\"}" "register message on t1:register"
sig=$(msgs t1:signaling)
like "$sig" "^\\{\"url\":\"ws://127\\.0\\.0\\.1:$LPORT\",\"connections\":$held,\"cpu\":[0-9]+\\.[0-9],\"capacity\":50,\"draining\":false\\}\$" \
     "signaling counts the $held ESTABLISHED connections (IPv4 and IPv6) and has cpu"
is "$(rcli hget t1:room_affinity:backends "$URL")" "$sig" \
   "snapshot hash t1:room_affinity:backends holds the same JSON"

"$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" --prefix t2: \
    --port 1 --once 2>/dev/null
like "$(msgs t2:signaling)" '"connections":0,' "--port with no connections: 0"

echo 42 > "$TMP/count"
"$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" --prefix t3: \
    --count-file "$TMP/count" --once 2>/dev/null
like "$(msgs t3:signaling)" '"connections":42,' "--count-file"

"$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" --prefix t4: \
    --count-cmd 'echo "  7 connections"' --once 2>/dev/null
like "$(msgs t4:signaling)" '"connections":7,' "--count-cmd"

"$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" --prefix t5: \
    --count-cmd 'echo 7; exit 3' --once 2>"$TMP/cmdfail.log"
is "$?:$(count_msgs t5:signaling)" "1:0" \
   "a failing --count-cmd skips the report"

"$AGENT" --url 'ws://127.0.0.1:1/a"b\c' --redis "127.0.0.1:$RPORT" \
    --prefix t6: --count-file "$TMP/count" --once 2>/dev/null
python3 -c 'import json, sys; assert json.loads(sys.argv[1])["url"] == sys.argv[2]' \
    "$(msgs t6:signaling)" 'ws://127.0.0.1:1/a"b\c' 2>/dev/null
ok $? "a url with quote and backslash is escaped as valid JSON"

# ---- --key: messages signed as nginx's key= expects ----

printf 'a shared key of 32 bytes.........\n' > "$TMP/key"
"$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" --prefix tk: \
    --count-file "$TMP/count" --key "$TMP/key" --once 2>/dev/null
ok $? "--key: the report is taken"
rcli hget tk:room_affinity:backends "$URL" > "$TMP/signed"
python3 - "$TMP/key" "$TMP/signed" <<'PY'
import hashlib, hmac, sys
key = open(sys.argv[1], "rb").read().rstrip(b"\n")
data = open(sys.argv[2], "rb").read().rstrip(b"\n")
line, msg = data.split(b"\n", 1)
tag, ts, mac = line.split(b" ")
assert tag == b"sig1" and msg.startswith(b'{"url":') and b'"connections":42' in msg
want = hmac.new(key, b"signaling\n" + ts + b"\n" + msg, hashlib.sha256).hexdigest()
sys.exit(0 if mac.decode() == want else 1)
PY
ok $? "--key: the snapshot entry is the signed message, its HMAC verifies"
like "$(msgs tk:register)" '^sig1 [0-9]+ [0-9a-f]{64}$' \
     "--key: the register message is signed too"
"$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" --key "$TMP/nokey" \
    --once 2>/dev/null
is "$?" 2 "--key with a missing file: bad arguments"

# ---- unix socket, password, database ----

rcli config set requirepass s3cret >/dev/null
"$AGENT" --url "$URL" --redis "$TMP/redis.sock" --password s3cret --db 3 \
    --prefix t7: --once 2>/dev/null
ok $? "--redis unix socket path with --password"
got=$(redis-cli -s "$TMP/redis.sock" -a s3cret --no-auth-warning -n 3 \
      hget t7:room_affinity:backends "$URL")
like "$got" '"draining":false}$' "--db 3 stores the snapshot in database 3"
RA_AGENT_PASSWORD=s3cret "$AGENT" --url "127.0.0.1:$LPORT" \
    --redis "unix:$TMP/redis.sock" --prefix t8: --once 2>/dev/null
ok $? "password from \$RA_AGENT_PASSWORD, --redis unix:PATH"
like "$(msgs t8:signaling)" "^\\{\"url\":\"127\\.0\\.0\\.1:$LPORT\",\"connections\":$held," \
     "a bare host:port url: its port is counted"
"$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" --password wrong \
    --once 2>"$TMP/auth.log"
rc=$?
like "$rc:$(cat "$TMP/auth.log")" '^1:.*AUTH failed' "a wrong password fails"
rcli -a s3cret --no-auth-warning config set requirepass '' >/dev/null

# ---- periodic reports, SIGINT, Redis restart ----

"$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" --prefix t9: \
    --interval 200ms --cpu-interval 300ms 2>"$TMP/run.log" &
pid=$!
sleep 1.2
n=$(count_msgs t9:signaling)
like "$n" '^[3-8]$' "--interval 200ms: $n reports in 1.2 s"
is "$(msgs t9:signaling | grep -vc '"cpu":')" 0 "every report carries cpu"

stop_redis
sleep 1
kill -0 $pid 2>/dev/null
ok $? "Redis stopped: the agent keeps running"
start_redis
start_sub
wait_for 5 sh -c "redis-cli -p $RPORT hexists t9:room_affinity:backends $URL \
                  | grep -q 1"
ok $? "Redis restarted: the agent reconnects and restores its snapshot"
wait_for 3 sh -c "[ \$(grep -c pmessage $TMP/sub) -ge 2 ]"
ok $? "reports are published again after the reconnect"

stop_agent $pid INT
is "$?" 0 "SIGINT: exit status 0"
like "$(msgs t9:signaling | tail -n 1)" '"draining":true}$' \
     "SIGINT publishes draining:true"
like "$(rcli hget t9:room_affinity:backends "$URL")" '"draining":true}$' \
     "SIGINT stores draining:true"

# ---- valgrind ----

if command -v valgrind >/dev/null; then
    vg="valgrind -q --leak-check=full --show-leak-kinds=all \
        --errors-for-leak-kinds=all --error-exitcode=99"
    $vg "$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" --count-cmd 'echo 1' \
        --once 2>"$TMP/vg1.log"
    is "$?" 0 "valgrind: --once is clean"
    $vg "$AGENT" --url "$URL" --redis "127.0.0.1:$RPORT" \
        --interval 100ms --cpu-interval 200ms 2>"$TMP/vg2.log" &
    pid=$!
    sleep 1.5
    stop_agent $pid TERM
    rc=$?
    is "$rc" 0 "valgrind: periodic reports and SIGTERM are clean"
    [ $rc = 0 ] || diag "$(cat "$TMP/vg2.log")"
else
    pass "# SKIP valgrind not installed"
    pass "# SKIP valgrind not installed"
fi

done_testing
