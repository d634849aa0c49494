# A backend that cannot take its room any more (down, failed, refusing
# connections): the whole room moves to one new backend, recorded, and
# stays there when the old backend comes back.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

RoomAffinity::start_control();

master_on();
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: nine rooms over three backends
--- backends: 1 2 3
--- upstream: zone=fo b1 b2 b3
--- config
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- request eval
[ (map { "GET /?room=m$_" } 1..9), "GET /status" ]
--- response_body_like eval
[ (map { qr/^b[123]$/ } 1..9),
  RoomAffinity::json_like({ upstreams => { chat => { zone => { rooms => 9 },
      backends => { RoomAffinity::b(2, { rooms => qr/^[1-9]$/ }) } } } }) ]



=== TEST 2: b2 marked down: exactly its rooms move, each to one backend
(nine rooms placed over b1, b2 and b3, then b2 marked down and nginx
reloaded)
--- user_files
>>> servers.conf
server 127.0.0.1:$TEST_NGINX_B1_PORT;
server 127.0.0.1:$TEST_NGINX_B2_PORT;
server 127.0.0.1:$TEST_NGINX_B3_PORT;
>>> b2-down.conf
server 127.0.0.1:$TEST_NGINX_B1_PORT;
server 127.0.0.1:$TEST_NGINX_B2_PORT down;
server 127.0.0.1:$TEST_NGINX_B3_PORT;
--- backends: 1 2 3
--- upstream: zone=fo include=../html/servers.conf
--- config eval
'    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
' . RoomAffinity::reload_location()
--- request eval
[ (map { "GET /?room=m$_" } 1..9), "GET /status", "GET /reload/b2-down.conf",
  (map { "GET /?room=m$_" } 1..9), (map { "GET /?room=m$_" } 1..9),
  "GET /status" ]
--- response_body_like eval
[ (map { RoomAffinity::record("before", "m$_") } 1..9),
  RoomAffinity::json_like({ upstreams => { chat => { backends => {
      RoomAffinity::b(2, { rooms => qr/^[1-9]$/ }) } } } }),
  qr/^reloaded with b2-down\.conf$/,
  (map { RoomAffinity::moved_only_from("before", "after", "m$_", "b2") }
   1..9),
  (map { RoomAffinity::same_as("after", "m$_") } 1..9),
  RoomAffinity::moved_count_is("before", "b2") ]



=== TEST 3: b2 is back: no room moves back
(nine rooms placed over b1, b2 and b3; b2 marked down, nginx reloaded, the
rooms of b2 moved; then b2 up again and nginx reloaded)
--- user_files
>>> servers.conf
server 127.0.0.1:$TEST_NGINX_B1_PORT;
server 127.0.0.1:$TEST_NGINX_B2_PORT;
server 127.0.0.1:$TEST_NGINX_B3_PORT;
>>> b2-down.conf
server 127.0.0.1:$TEST_NGINX_B1_PORT;
server 127.0.0.1:$TEST_NGINX_B2_PORT down;
server 127.0.0.1:$TEST_NGINX_B3_PORT;
>>> b2-up.conf
server 127.0.0.1:$TEST_NGINX_B1_PORT;
server 127.0.0.1:$TEST_NGINX_B2_PORT;
server 127.0.0.1:$TEST_NGINX_B3_PORT;
--- backends: 1 2 3
--- upstream: zone=fo include=../html/servers.conf
--- config eval
'    location / { proxy_pass http://chat; }
' . RoomAffinity::reload_location()
--- request eval
[ (map { "GET /?room=m$_" } 1..9), "GET /reload/b2-down.conf",
  (map { "GET /?room=m$_" } 1..9), "GET /reload/b2-up.conf",
  (map { "GET /?room=m$_" } 1..9) ]
--- response_body_like eval
[ (map { RoomAffinity::record("before", "m$_") } 1..9),
  qr/^reloaded with b2-down\.conf$/,
  (map { RoomAffinity::moved_only_from("before", "after", "m$_", "b2") }
   1..9),
  qr/^reloaded with b2-up\.conf$/,
  (map { RoomAffinity::same_as("after", "m$_") } 1..9) ]



=== TEST 4: a backend refusing connections: its new room moves, logged
--- backends: 1
--- upstream: chat2 zone=fo2 dead b1
--- config
    location / {
        mirror /second;
        proxy_pass http://chat2;
    }
    location = /second {
        internal;
        set $args room=two;
        proxy_pass http://chat2;
    }
--- request
GET /?room=one
--- response_body
b1
--- error_log eval
qr/room_affinity: moved room "(one|two)" from "127\.0\.0\.1:$ENV{TEST_NGINX_DEAD_PORT}" to "127\.0\.0\.1:$ENV{TEST_NGINX_B1_PORT}"/



=== TEST 5: after the move every request of the room follows it
--- backends: 1
--- upstream: chat2 zone=fo2 dead b1
--- config
    location / { proxy_pass http://chat2; }
    location = /status { room_affinity_status; }
--- request eval
["GET /?room=one", "GET /?room=two", "GET /?room=one", "GET /status"]
--- response_body_like eval
[qr/^b1$/, qr/^b1$/, qr/^b1$/,
 RoomAffinity::json_like({ upstreams => { chat2 => { zone => { moved => 1 } } } })]



=== TEST 6: a failed backend takes new rooms again after fail_timeout
(b3 fails the requests asking for it, which marks it failed for 1 s; the
worker's placement view leaves it out until then, and no longer after;
four servers, so that the three left still make a view)
--- backends: 1 2 4
--- upstream: chat3 zone=fo3 b1 b2 b3:max_fails=1:fail_timeout=1s b4
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_B3_PORT;
        if ($arg_fail) { return 502; }
        return 200 "b3\n";
    }
--- config
    location / {
        proxy_next_upstream error http_502;
        proxy_pass http://chat3;
    }
    location = /status { room_affinity_status; }
    location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
[ (map { "GET /?room=f$_&fail=1" } 1..8), "GET /status",
  "GET /ctl/sleep?wait=2200", (map { "GET /?room=g$_" } 1..12),
  "GET /status" ]
--- response_body_like eval
[ (map { qr/^b[124]$/ } 1..8),
  RoomAffinity::json_like({ upstreams => { chat3 => { backends => {
      RoomAffinity::b(3, { state => "down", live => 0, rooms => 0 }) } } } }),
  qr/slept/, (map { qr/^b[1234]$/ } 1..12),
  RoomAffinity::json_like({ upstreams => { chat3 => { backends => {
      RoomAffinity::b(3, { rooms => RoomAffinity::between(2, 9) }) } } } }) ]



=== TEST 7: a room with a member connected stays on its backend when it
is at max_conns: the new member is sent elsewhere, the room is not moved
--- upstream: chat4 zone=fo4 b1:max_conns=1 b2:max_conns=1 b3:max_conns=1
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_B1_PORT;
        location / { return 200 "b1\n"; }
        location /slow {
            proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/sleep?wait=2000;
        }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_B2_PORT;
        location / { return 200 "b2\n"; }
        location /slow {
            proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/sleep?wait=2000;
        }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_B3_PORT;
        location / { return 200 "b3\n"; }
        location /slow {
            proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/sleep?wait=2000;
        }
    }
--- config
    location / { proxy_pass http://chat4; }
    location = /status { room_affinity_status; }
    location = /check {
        mirror /busy;
        proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/sleep?wait=500&port=$server_port&then=%2F%3Froom%3Dfull,%2Fstatus;
    }
    location = /busy {
        internal;
        set $args room=full;
        proxy_pass http://chat4/slow;
    }
--- request
GET /check
--- response_body_like eval
RoomAffinity::json_like({ upstreams => { chat4 => { zone => {
    rooms => 1, evicted => 0, expired => 0, moved => 0 } } } },
  qr/slept\nb\d\n/)
--- timeout: 5
