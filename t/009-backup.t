# backup servers take rooms only when no primary server can.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: primaries up: no room on the backup
--- backends: 1 2 3
--- http_config
    upstream chat {
        room_affinity $arg_room zone=bk1:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
        server 127.0.0.1:$TEST_NGINX_B2_PORT;
        server 127.0.0.1:$TEST_NGINX_B3_PORT backup;
    }
--- config
    location / { proxy_pass http://chat; }
--- request eval
[ map { "GET /?room=p$_" } 1..20 ]
--- response_body_like eval
[ map { qr/^b[12]$/ } 1..20 ]



=== TEST 2: no primary can take a room: the backup takes them all
--- backends: 1 3
--- http_config
    upstream chat {
        room_affinity $arg_room zone=bk2:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT down;
        server 127.0.0.1:$TEST_NGINX_DEAD_PORT;
        server 127.0.0.1:$TEST_NGINX_B3_PORT backup;
    }
--- config
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- request eval
[ (map { ("GET /?room=q$_", "GET /?room=q$_") } 1..5), "GET /status" ]
--- response_body_like eval
[ (map { (qr/^b3$/, qr/^b3$/) } 1..5),
  RoomAffinity::json_like({ upstreams => { chat => { backends => {
      RoomAffinity::b(3, { url => "", weight => 1, backup => JSON::PP::true,
                           state => "up", live => 0, rooms => 5 }) } } } }) ]
