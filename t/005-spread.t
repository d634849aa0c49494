# New rooms go to the least loaded backend: without Redis reports, load is
# this nginx's live connections per unit of weight, then rooms per weight.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

RoomAffinity::start_control();

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a burst of forty new rooms spreads over four equal backends
--- backends: 1 2 3 4
--- upstream: zone=sp1 b1 b2 b3 b4
--- config
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- request eval
[ (map { "GET /?room=burst$_" } 1..40), "GET /status" ]
--- response_body_like eval
[ (map { qr/^b[1-4]$/ } 1..40), RoomAffinity::rooms_between(8, 12) ]



=== TEST 2: weight 2 takes about twice the rooms
--- backends: 1 2 3
--- upstream: zone=sp2 b1 b2 b3:weight=2
--- config
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- request eval
[ (map { "GET /?room=w$_" } 1..40), "GET /status" ]
--- response_body_like eval
[ (map { qr/^b[1-3]$/ } 1..40),
  RoomAffinity::json_like({ upstreams => { chat => { backends => {
      RoomAffinity::b(3, { rooms => RoomAffinity::between(16, 24) }) } } } }) ]



=== TEST 3: a backend busy with a live connection gets the next new room last
--- upstream: zone=sp3 b1 b2
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_B1_PORT;
        location / { return 200 "b1\n"; }
        location /slow {
            proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/sleep?wait=1500;
        }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_B2_PORT;
        location / { return 200 "b2\n"; }
        location /slow {
            proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/sleep?wait=1500;
        }
    }
--- config
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
    location = /check {
        mirror /busy;
        proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/sleep?wait=300&port=$server_port&then=%2F%3Froom%3Dnext,%2Fstatus;
    }
    location = /busy {
        internal;
        set $args room=busy;
        proxy_pass http://chat/slow;
    }
--- request
GET /check
--- response_body_like eval
RoomAffinity::json_like({ upstreams => { chat => { backends =>
    RoomAffinity::check("one backend busy (live 1), each with one room",
        sub { my @b = sort { $a->{live} <=> $b->{live} } @{ $_[0] };
              @b == 2 && $b[0]{live} == 0 && $b[1]{live} == 1
              && $b[0]{rooms} == 1 && $b[1]{rooms} == 1 }) } } },
  qr/slept\nb[12]\n/)
