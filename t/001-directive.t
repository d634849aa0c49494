# Configuration: every bad directive fails "nginx -t" with a message that
# names the directive and the problem; good ones load.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a minimal upstream with zone and keepalive loads
--- http_config
    upstream chat {
        room_affinity $arg_room zone=d1:1m ttl=5m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
        keepalive 4;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_B1_PORT;
        return 200 "b1\n";
    }
--- config
    location / {
        proxy_pass http://chat;
    }
--- request
GET /?room=a
--- response_body
b1
--- no_error_log
[emerg]



=== TEST 2: zone is required
--- http_config
    upstream chat {
        room_affinity $arg_room;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
"room_affinity" must have "zone" parameter



=== TEST 3: zone without a size
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
invalid zone size in "zone=rooms", use zone=name:size



=== TEST 4: zone with a malformed size
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms:ten;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
invalid zone size in "zone=rooms:ten"



=== TEST 5: zone too small
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms:4k;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log eval
qr/zone "rooms" is too small, it needs at least \d+/



=== TEST 6: one zone used by two upstreams
--- http_config
    upstream a {
        room_affinity $arg_room zone=shared:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
    upstream b {
        room_affinity $arg_room zone=shared:1m;
        server 127.0.0.1:$TEST_NGINX_B2_PORT;
    }
--- config
--- must_die
--- error_log
zone "shared" is already used by upstream "a"



=== TEST 7: bad ttl
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms:1m ttl=soon;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
invalid time in "ttl=soon"



=== TEST 8: ttl of zero
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms:1m ttl=0;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
invalid time in "ttl=0"



=== TEST 9: unknown parameter
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms:1m sticky=yes;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
invalid parameter "sticky=yes"



=== TEST 10: duplicate directive
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms:1m;
        room_affinity $arg_room zone=rooms2:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
"room_affinity" directive is duplicate



=== TEST 11: outside an upstream block
--- config
    location / {
        room_affinity $arg_room zone=rooms:1m;
    }
--- must_die
--- error_log
"room_affinity" directive is not allowed here



=== TEST 12: no key
--- http_config
    upstream chat {
        room_affinity;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
invalid number of arguments in "room_affinity" directive



=== TEST 13: bad metric, choices and balance factor
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms:1m metric=memory;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
invalid metric in "metric=memory", use "connections" or "cpu"



=== TEST 14: balance factor below 101
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms:1m balance_factor=90;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
invalid number in "balance_factor=90", use 0 (off) or 101 to 10000



=== TEST 15: keepalive before room_affinity is reported
(nginx < 1.29.7: the keepalive directive installs its balancer at once,
which room_affinity replaces; the next block is nginx >= 1.29.7)
--- skip_nginx
3: >= 1.29.7
--- http_config
    upstream chat {
        keepalive 4;
        room_affinity $arg_room zone=rooms:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_B1_PORT;
        return 200 "b1\n";
    }
--- config
    location / {
        proxy_pass http://chat;
    }
--- request
GET /?room=a
--- response_body
b1
--- error_log
load balancing method redefined



=== TEST 16: keepalive before room_affinity is fine on nginx >= 1.29.7
(upstream keepalive is on by default there, 32 connections, and wraps
the balancer each upstream has once the configuration is read, so the
order no longer matters: the room is placed by room_affinity)
--- skip_nginx
4: < 1.29.7
--- http_config
    upstream chat {
        keepalive 4;
        room_affinity $arg_room zone=rooms:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_B1_PORT;
        return 200 "b1\n";
    }
--- config
    location / {
        proxy_pass http://chat;
    }
--- request
GET /?room=a
--- response_body
b1
--- error_log eval
qr/room_affinity: new room "a" placed on "127\.0\.0\.1:\d+"/
--- no_error_log
load balancing method redefined



=== TEST 17: redis directive: bad parameter
--- http_config
    room_affinity_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=1;
--- config
--- must_die
--- error_log
invalid parameter "timeout=1"



=== TEST 18: redis directive: duplicate
--- http_config
    room_affinity_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    room_affinity_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
--- must_die
--- error_log
"room_affinity_redis" directive is duplicate



=== TEST 19: redis directive: backoff too short
--- http_config
    room_affinity_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT backoff=10ms;
--- config
--- must_die
--- error_log
invalid time in "backoff=10ms", it must be at least 100ms



=== TEST 20: room_affinity_url with a bad url
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms:1m;
        room_affinity_url 127.0.0.1:$TEST_NGINX_B1_PORT "ftp://x y";
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
invalid url "ftp://x y"



=== TEST 21: ttl longer than 24 days
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms:1m ttl=30d;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
"ttl=30d" is too long, the most is 24d



=== TEST 22: slow_start longer than 24 days (it would wrap)
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms:1m slow_start=50d;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
"slow_start=50d" is too long, the most is 24d



=== TEST 23: stale of 0
--- http_config
    upstream chat {
        room_affinity $arg_room zone=rooms:1m stale=0;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
--- must_die
--- error_log
invalid time in "stale=0", it must be more than 0
