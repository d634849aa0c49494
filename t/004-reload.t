# "nginx -s reload" keeps every room where it is: the zone is reused, and
# rooms are recorded by server address, so adding servers moves nothing.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

RoomAffinity::start_control();

master_on();
workers(2);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: eight rooms placed over two servers
--- backends: 1 2 3 4
--- upstream: zone=reload b1 b2
--- config
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- request eval
[ (map { "GET /?room=r$_" } 1..8), "GET /status" ]
--- response_body_like eval
[ (map { RoomAffinity::sticky("r$_") } 1..8),
  RoomAffinity::json_like({ upstreams => { chat => { zone => { rooms => 8 } } } }) ]



=== TEST 2: after a reload with four servers every room stays where it was
(eight rooms placed over two servers, then the upstream gets b3 and b4
and nginx is reloaded)
--- user_files
>>> servers.conf
server 127.0.0.1:$TEST_NGINX_B1_PORT;
server 127.0.0.1:$TEST_NGINX_B2_PORT;
>>> four.conf
server 127.0.0.1:$TEST_NGINX_B1_PORT;
server 127.0.0.1:$TEST_NGINX_B2_PORT;
server 127.0.0.1:$TEST_NGINX_B3_PORT;
server 127.0.0.1:$TEST_NGINX_B4_PORT;
--- backends: 1 2 3 4
--- upstream: zone=reload include=../html/servers.conf
--- config eval
'    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
' . RoomAffinity::reload_location()
--- request eval
[ (map { "GET /?room=r$_" } 1..8), "GET /reload/four.conf", "GET /status",
  (map { "GET /?room=r$_" } 1..8), (map { "GET /?room=n$_" } 1..8),
  "GET /status" ]
--- response_body_like eval
[ (map { RoomAffinity::sticky("r$_") } 1..8), qr/^reloaded with four\.conf$/,
  RoomAffinity::json_like({ upstreams => { chat => { zone => { rooms => 8 },
      backends => { RoomAffinity::b(3, { rooms => 0 }),
                    RoomAffinity::b(4, { rooms => 0 }) } } } }),
  (map { RoomAffinity::sticky("r$_") } 1..8),
  (map { qr/^b[1-4]$/ } 1..8),
  RoomAffinity::json_like({ upstreams => { chat => { zone => { rooms => 16 },
      backends => { RoomAffinity::b(3, { rooms => qr/^[1-9]$/ }) } } } }) ]
--- no_error_log
[alert]
