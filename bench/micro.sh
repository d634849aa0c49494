#!/usr/bin/env bash
# Microbenchmark of the room table and placement, with their real locking,
# inside an nginx worker on real zones (the module built with -DRA_BENCH=1
# adds the room_affinity_bench handler; see src/ra_bench.c).
#
#   bench/micro.sh [ops]
#
# Prints, per case, the median of 9 batches: the lookup of a known room
# with 1k, 100k and 1M rooms in the table (drawn uniformly, so at 1M every
# lookup misses the CPU caches; and from 1k hot rooms among 1M, the usual
# case of few active rooms), and the placement and recording
# of a new room with 8, 64 and 256 servers (the choice alone, under the
# zone's mutex, and the whole of a new room: lookup, choice, recording);
# the zone bytes a room takes (1M rooms in a 256m zone); then, as the
# baseline to read the lookups against, the cost of one read of a random
# line of memory in blocks of 16 KB to 64 MB (build-bench/memlat).  Every case but "fresh zone" first
# touches every page of the zone, as a long-running nginx has: "fresh
# zone" shows what the page faults of a zone's first use add.

set -euo pipefail

OPS=${1:-200000}
PORT=${BENCH_PORT:-18180}

. "$(dirname "$0")/lib.sh"
bench_init micro
SO=$TOP/build-bench/ngx_http_room_affinity_module.so
bench_need_file "$SO" "build it first: make bench-micro"

servers() {
    local n=$1 i
    for i in $(seq 1 "$n"); do
        printf '        server 127.0.0.%d:%d;\n' $((i / 200 + 2)) $((20000 + i))
    done
}

P=$(bench_prefix nginx)
cat > "$P/conf/nginx.conf" <<END
load_module $SO;
worker_processes 1;
daemon off;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    upstream b8 {
        room_affinity \$arg_room zone=b8:64m ttl=1h;
$(servers 8)
    }
    upstream b64 {
        room_affinity \$arg_room zone=b64:256m ttl=1h;
$(servers 64)
    }
    upstream b256 {
        room_affinity \$arg_room zone=b256:64m ttl=1h;
$(servers 256)
    }
    server {
        listen 127.0.0.1:$PORT;
        location = /b8 { room_affinity_bench b8; }
        location = /b64 { room_affinity_bench b64; }
        location = /b256 { room_affinity_bench b256; }
    }
}
END

bench_nginx "$P"
bench_wait_http "http://127.0.0.1:$PORT/b8?rooms=1&ops=10"

printf "# median of 9 batches, %s operations each, one nginx worker\n" "$OPS"
printf "%-34s %10s %13s %12s %14s\n" case lookup_ns placement_ns new_room_ns \
    bytes_per_room

run() {
    local label=$1 path=$2
    local j
    j=$(curl -s --max-time 600 "http://127.0.0.1:$PORT$path")
    printf "%-34s %10s %13s %12s %14s\n" "$label" \
        "$(echo "$j" | sed 's/.*"lookup_ns":\([0-9]*\).*/\1/')" \
        "$(echo "$j" | sed 's/.*"placement_ns":\([0-9]*\).*/\1/')" \
        "$(echo "$j" | sed 's/.*"new_room_ns":\([0-9]*\).*/\1/')" \
        "$(echo "$j" | sed 's/.*"bytes_per_room":\([0-9]*\).*/\1/')"
}

W="warm=1&ops=$OPS"
run "64 servers, 1k rooms"          "/b64?rooms=1000&$W"
run "64 servers, 100k rooms"        "/b64?rooms=100000&$W"
run "64 servers, 1M rooms (256m)"   "/b64?rooms=1000000&$W"
run "64 servers, 1M rooms, 1k hot"  "/b64?rooms=1000000&hot=1000&$W"
run "64 servers, with reports"      "/b64?rooms=1000&reported=1&$W"
run "8 servers, fresh zone"         "/b8?rooms=1000&ops=$OPS"
run "8 servers, 1k rooms"           "/b8?rooms=1000&$W"
run "256 servers, 1k rooms"         "/b256?rooms=1000&$W"

# the baseline: what one read of a random line costs at each size
if [ -x "$TOP/build-bench/memlat" ]; then
    "$TOP/build-bench/memlat" 16 1024 16384 65536
fi
