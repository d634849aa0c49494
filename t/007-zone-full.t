# A full zone evicts the least recently used idle room; when every room is
# live nothing can go, and a new room is placed without being recorded
# (logged once per interval) - never an error for the client.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

RoomAffinity::start_control();

our $long = "z" x 500;

# TEST 2 holds 24 rooms live at once, each through 3 connections (client
# side, upstream, backend side): more than the real Test::Nginx's default
# of 64 worker connections
worker_connections(1024);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: idle rooms are evicted, least recently used first
--- backends: 1 2
--- upstream: zone=zf1:32k b1 b2
--- config
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- request eval
[ (map { "GET /?room=$_-$main::long" } 1..60), "GET /?room=1-$main::long",
  "GET /status?room=60-$main::long", "GET /status?room=1-$main::long",
  "GET /status" ]
--- response_body_like eval
[ (map { qr/^b[12]$/ } 1..61),
  RoomAffinity::json_is_answer({ room => "60-$main::long" }),
  RoomAffinity::json_is_answer({ room => "1-$main::long" }),
  RoomAffinity::json_like({ upstreams => { chat => { zone => {
      evicted => RoomAffinity::check("at least 1", sub { $_[0] >= 1 }),
      unrecorded => 0 } } } }) ]
--- no_error_log
[crit]



=== TEST 2: with every room live, a new room is placed without recording
--- upstream: zone=zf2:32k b1 b2
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
--- config eval
my $c = <<"END";
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
    location = /check {
END
$c .= "        mirror /busy$_;\n" for 1..24;
$c .= <<"END";
        proxy_pass http://127.0.0.1:\$TEST_NGINX_CONTROL_PORT/sleep?wait=700&port=\$server_port&then=%2F%3Froom%3Dnew1-$main::long,%2F%3Froom%3Dnew2-$main::long,%2F%3Froom%3Dnew1-$main::long,%2Fstatus;
    }
END
$c .= <<"END" for 1..24;
    location = /busy$_ {
        internal;
        set \$args room=busy$_-$main::long;
        proxy_pass http://chat/slow;
    }
END
$c
--- request
GET /check
--- response_body_like eval
RoomAffinity::json_like({ upstreams => { chat => { zone => {
    evicted => 0, unrecorded => RoomAffinity::between(3, 99) } } } },
  qr/slept\nb[12]\nb[12]\nb[12]\n/)
--- grep_error_log eval
qr/zone "zf2" is full, room "\w+-z+" placed on "[^"]+" without recording/
--- grep_error_log_out eval
qr/\Azone "zf2" is full, room "\w+-z+" placed on "[^"]+" without recording\n\z/
--- timeout: 6
