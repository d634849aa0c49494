#!/bin/sh
#
# room-affinity-entrypoint: renders /etc/nginx/nginx.conf from the
# environment, then runs the command (nginx -g 'daemon off;').
#
#   docker run -e RA_BACKENDS=10.0.0.11:3000,10.0.0.12:3000 \
#              -e RA_REDIS=10.0.0.5:6379 -p 8080:8080 room-affinity
#   docker run --rm -e RA_BACKENDS=... room-affinity render   # print it
#
# With only the Redis address, the backends register themselves (the
# origin design's fleet, room_affinity ... register=):
#
#   docker run -e RA_REDIS=10.0.0.5:6379 -p 8080:8080 room-affinity
#
# RA_REGISTER is then the networks and ports they may register from
# (default: the private networks, any port); set RA_REGISTER with
# RA_BACKENDS to mix both.  With neither RA_BACKENDS nor RA_REDIS the
# config is left as it is (mount your own; the module is loaded by
# /etc/nginx/modules-enabled/50-mod-http-room-affinity.conf for configs
# that include modules-enabled/*.conf).  See docs/operations.md.

set -eu

RA_REDIS_GIVEN=${RA_REDIS:+1}

: "${RA_TEMPLATE:=/etc/nginx/room-affinity/nginx.conf.template}"
: "${RA_CONF:=/etc/nginx/nginx.conf}"
: "${RA_MODULE:=/usr/lib/nginx/modules/ngx_http_room_affinity_module.so}"
: "${RA_PID:=/run/nginx.pid}"
: "${RA_LISTEN:=8080}"
: "${RA_WORKERS:=auto}"
: "${RA_WORKER_CONNECTIONS:=4096}"
: "${RA_LOG_LEVEL:=notice}"
: "${RA_ACCESS_LOG:=/dev/stdout}"
: "${RA_REDIS:=127.0.0.1:6379}"
: "${RA_REDIS_PREFIX:=}"
: "${RA_REDIS_OPTIONS:=}"
: "${RA_KEY:=\$arg_roomName}"
: "${RA_ZONE_SIZE:=10m}"
: "${RA_OPTIONS:=}"
: "${RA_READ_TIMEOUT:=1h}"
: "${RA_STATUS_PATH:=/room-affinity/status}"
: "${RA_STATUS_ALLOW:=127.0.0.1 ::1 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16}"
: "${RA_JOIN_PATH:=/signaling/join}"
: "${RA_REGISTER:=}"
: "${RA_BACKENDS:=}"
if [ -z "${RA_BACKENDS:-}" ] && [ -z "$RA_REGISTER" ]; then
    RA_REGISTER=10.0.0.0/8:1-65535,172.16.0.0/12:1-65535,192.168.0.0/16:1-65535
fi

die() {
    echo "room-affinity-entrypoint: $*" >&2
    exit 1
}

# a value goes into nginx.conf as is: no ";", braces, quotes or new lines
check() {
    case "$2" in
        *[\;\{\}\"\'\\]* | *"
"*) die "$1 must not contain ; { } quotes, backslashes or new lines: '$2'" ;;
    esac
}

render() {
    [ -n "${RA_BACKENDS:-}" ] || [ -n "$RA_REGISTER" ] \
        || die "set RA_BACKENDS, e.g. RA_BACKENDS=10.0.0.11:3000,10.0.0.12:3000, or RA_REGISTER"
    [ -r "$RA_TEMPLATE" ] || die "no template $RA_TEMPLATE"

    for v in RA_BACKENDS RA_REGISTER RA_MODULE RA_PID RA_LISTEN RA_WORKERS \
             RA_WORKER_CONNECTIONS RA_LOG_LEVEL RA_ACCESS_LOG RA_REDIS RA_REDIS_PREFIX \
             RA_REDIS_OPTIONS RA_KEY RA_ZONE_SIZE RA_OPTIONS RA_READ_TIMEOUT \
             RA_STATUS_PATH RA_STATUS_ALLOW RA_JOIN_PATH; do
        eval "check $v \"\${$v}\""
    done

    # RA_BACKENDS: comma-separated server entries, each "address [params]"
    RA_SERVERS=$(printf '%s\n' "${RA_BACKENDS:-}" | tr ',' '\n' | while read -r s; do
        if [ -n "$s" ]; then printf '        server %s;\n' "$s"; fi
    done)
    [ -n "$RA_SERVERS" ] || [ -n "$RA_REGISTER" ] \
        || die "RA_BACKENDS has no server: '$RA_BACKENDS'"

    # registered backends fill peers of each worker: no upstream zone then
    RA_UPSTREAM_ZONE="zone room_affinity_peers 256k;"
    if [ -n "$RA_REGISTER" ]; then
        RA_UPSTREAM_ZONE="# registered backends (RA_REGISTER): no upstream zone"
    fi

    RA_REDIS_PARAMS=
    [ -n "$RA_REDIS_PREFIX" ] && RA_REDIS_PARAMS=" prefix=$RA_REDIS_PREFIX"
    [ -n "$RA_REDIS_OPTIONS" ] && RA_REDIS_PARAMS="$RA_REDIS_PARAMS $RA_REDIS_OPTIONS"
    RA_PARAMS=
    [ -n "$RA_REGISTER" ] && RA_PARAMS=" register=$RA_REGISTER"
    [ -n "$RA_OPTIONS" ] && RA_PARAMS="$RA_PARAMS $RA_OPTIONS"

    RA_STATUS_ALLOW_LINES=$(for a in $RA_STATUS_ALLOW; do
        printf '            allow %s;\n' "$a"
    done)

    # the join API, when the module has it and RA_JOIN_PATH is not empty
    RA_JOIN_BLOCK=
    if [ -n "$RA_JOIN_PATH" ] && grep -q room_affinity_join "$RA_MODULE" 2>/dev/null; then
        RA_JOIN_BLOCK="
        # the origin design's join API: POST {\"roomName\": \"...\"} -> {\"url\": ...}
        location = $RA_JOIN_PATH {
            room_affinity_join room_affinity_backends;
        }"
    fi

    export RA_MODULE RA_PID RA_LISTEN RA_WORKERS RA_WORKER_CONNECTIONS \
           RA_LOG_LEVEL RA_ACCESS_LOG RA_REDIS RA_REDIS_PARAMS RA_KEY RA_ZONE_SIZE RA_PARAMS \
           RA_SERVERS RA_READ_TIMEOUT RA_STATUS_PATH RA_STATUS_ALLOW_LINES \
           RA_JOIN_BLOCK RA_UPSTREAM_ZONE

    # only our variables: nginx's $http_upgrade and the like stay
    envsubst '${RA_MODULE} ${RA_PID} ${RA_LISTEN} ${RA_WORKERS}
              ${RA_WORKER_CONNECTIONS} ${RA_LOG_LEVEL} ${RA_ACCESS_LOG} ${RA_REDIS}
              ${RA_REDIS_PARAMS} ${RA_KEY} ${RA_ZONE_SIZE} ${RA_PARAMS}
              ${RA_SERVERS} ${RA_READ_TIMEOUT} ${RA_STATUS_PATH}
              ${RA_STATUS_ALLOW_LINES} ${RA_JOIN_BLOCK}
              ${RA_UPSTREAM_ZONE}' < "$RA_TEMPLATE"
}

if [ "${1:-}" = render ]; then
    render
    exit 0
fi

if [ -n "${RA_BACKENDS:-}" ] || [ -n "$RA_REDIS_GIVEN" ]; then
    render > "$RA_CONF.tmp"
    mv "$RA_CONF.tmp" "$RA_CONF"
    echo "room-affinity-entrypoint: $RA_CONF rendered: servers ${RA_BACKENDS:-none}, registered from ${RA_REGISTER:-nowhere}, redis $RA_REDIS, listen $RA_LISTEN" >&2
else
    echo "room-affinity-entrypoint: neither RA_BACKENDS nor RA_REDIS is set, $RA_CONF is used as it is" >&2
fi

exec "$@"
