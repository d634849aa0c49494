# Start-up code shared by the benchmark scripts (micro.sh, redis.sh,
# stress.sh, throughput.sh): sourced, not run.
#
#   . "$(dirname "$0")/lib.sh"
#   bench_init redis-bench            # TOP, NGINX, DIR=/tmp/ra-redis-bench.XXXXXX
#   bench_need_file "$SO" "build the module first: make"
#   bench_need_cmd wrk "wrk is missing: make deps"
#   bench_redis "$RPORT"              # a redis-server of our own
#   P=$(bench_prefix front)           # $DIR/front with conf/ and logs/
#   cat > "$P/conf/nginx.conf" ...
#   bench_nginx "$P"                  # nginx -p $P -c conf/nginx.conf
#   bench_wait_http "http://127.0.0.1:$PORT/status"
#
# Every process started through these functions (and bench_bg) is stopped
# when the script exits, however it exits (nginx with QUIT, the others
# with TERM, and waited for), then $DIR is removed.  BENCH_KEEP=1 leaves
# them running and $DIR in place, to look at afterwards.

# the processes to stop at exit, as "SIGNAL:PID", in start order
BENCH_PROCS=()

bench_init() {
    local name=$1

    TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    NGINX=${NGINX:-/usr/sbin/nginx}
    DIR=$(mktemp -d "/tmp/ra-$name.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    local i sig pid

    if [ -n "${BENCH_KEEP:-}" ]; then
        echo "BENCH_KEEP: left running: ${BENCH_PROCS[*]:-none}; files in $DIR" >&2
        return
    fi

    # the last started first: nginx before the redis-server it talks to
    for ((i = ${#BENCH_PROCS[@]} - 1; i >= 0; i--)); do
        sig=${BENCH_PROCS[i]%%:*}
        pid=${BENCH_PROCS[i]#*:}
        kill "-$sig" "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PROCS=()
    rm -rf "$DIR"
}

bench_need_file() {
    [ -f "$1" ] || { echo "$2" >&2; exit 1; }
}

bench_need_cmd() {
    command -v "$1" >/dev/null || { echo "$2" >&2; exit 1; }
}

# runs "$@" in the background, stopped with TERM at exit; BENCH_PID is
# its pid
bench_bg() {
    "$@" &
    BENCH_PID=$!
    BENCH_PROCS+=("TERM:$BENCH_PID")
}

# stops one process started here now (nginx gets QUIT) and waits for it
bench_stop() {
    local pid=$1 i sig=TERM

    for i in "${!BENCH_PROCS[@]}"; do
        if [ "${BENCH_PROCS[i]#*:}" = "$pid" ]; then
            sig=${BENCH_PROCS[i]%%:*}
            unset 'BENCH_PROCS[i]'
        fi
    done
    BENCH_PROCS=("${BENCH_PROCS[@]}")
    kill "-$sig" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# an nginx prefix under $DIR with conf/ and logs/ (prints its path)
bench_prefix() {
    local p=$DIR/${1:-nginx}
    mkdir -p "$p/conf" "$p/logs"
    echo "$p"
}

# starts nginx (in the foreground, our child) on the prefix's
# conf/nginx.conf; BENCH_NGINX_BIN runs another binary or a wrapper (the
# ASan one of the stress test); stdout and stderr go to logs/stderr
bench_nginx() {
    local prefix=$1

    "${BENCH_NGINX_BIN:-$NGINX}" -p "$prefix/" -c conf/nginx.conf \
        >"$prefix/logs/stderr" 2>&1 &
    BENCH_PID=$!
    BENCH_PROCS+=("QUIT:$BENCH_PID")
}

# starts a redis-server of our own on the port (no persistence) and waits
# until it answers
bench_redis() {
    local port=$1

    redis-server --port "$port" --bind 127.0.0.1 --save '' \
        --appendonly no --daemonize no >"$DIR/redis-$port.log" 2>&1 &
    BENCH_PID=$!
    BENCH_PROCS+=("TERM:$BENCH_PID")
    bench_wait "redis-server on port $port" \
        redis-cli -p "$port" ping
}

# polls the command (quietly) every 50 ms until it succeeds; after
# BENCH_WAIT seconds (10) says what did not come up and exits 1
bench_wait() {
    local what=$1 i
    shift

    for ((i = 0; i < ${BENCH_WAIT:-10} * 20; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "$what did not come up within ${BENCH_WAIT:-10} s" >&2
    exit 1
}

# waits until the url answers (any HTTP status)
bench_wait_http() {
    bench_wait "$1" curl -s -o /dev/null --max-time 2 "$1"
}

# waits until something accepts connections on the local port
bench_wait_port() {
    bench_wait "port $1" bash -c "exec 3<>/dev/tcp/127.0.0.1/$1"
}

# waits until the status endpoint says the Redis link is connected
bench_wait_redis_link() {
    bench_wait "the redis link of $1" bench_link_up "$1"
}

bench_link_up() {
    curl -s --max-time 2 "$1" | python3 -c '
import json, sys
sys.exit(0 if (json.load(sys.stdin).get("redis") or {}).get("connected")
         else 1)'
}
