# An idle room keeps its backend for "ttl", then is forgotten; a room
# with a live connection is never forgotten.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

RoomAffinity::start_control();

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: an idle room is forgotten after the ttl
--- backends: 1 2
--- upstream: zone=ttl1 ttl=1s b1 b2
--- config
    location / { proxy_pass http://chat; }
    location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
    location = /status { room_affinity_status; }
--- request eval
["GET /?room=old", "GET /status?room=old", "GET /ctl/sleep?wait=1300",
 "GET /?room=trigger", "GET /status?room=old", "GET /status"]
--- response_body_like eval
[qr/^b[12]$/,
 RoomAffinity::json_is_answer({ room => "old", upstream => "chat", live => 0 }),
 qr/slept/, qr/^b[12]$/,
 RoomAffinity::json_is_answer({ error => "unknown room", room => "old" }),
 RoomAffinity::json_like({ upstreams => { chat => { zone => {
     rooms => 1, expired => 1 } } } })]
--- error_code eval
[200, 200, 200, 200, 404, 200]



=== TEST 2: a room with a live connection outlives the ttl
--- upstream: zone=ttl2 ttl=1s b1 b2
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_B1_PORT;
        location / { return 200 "b1\n"; }
        location /slow {
            proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/sleep?wait=2500;
        }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_B2_PORT;
        location / { return 200 "b2\n"; }
        location /slow {
            proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/sleep?wait=2500;
        }
    }
--- config
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
    location = /check {
        mirror /busy;
        proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/sleep?wait=1500&port=$server_port&then=%2F%3Froom%3Dtrigger,%2Fstatus%3Froom%3Dbusy;
    }
    location = /busy {
        internal;
        set $args room=busy;
        proxy_pass http://chat/slow;
    }
--- request
GET /check
--- response_body_like eval
RoomAffinity::json_like({ room => "busy", upstream => "chat", live => 1,
                          age_ms => RoomAffinity::between(1500, 1999) },
                        qr/slept\nb[12]\n/)
--- timeout: 5
