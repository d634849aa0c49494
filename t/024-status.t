# room_affinity_status: JSON for every room_affinity upstream and the
# Redis link, one room with ?room=, Prometheus text with
# ?format=prometheus; access control is nginx's own.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

RoomAffinity::start_control(redis => 1);

our $backends = RoomAffinity::backends(3);
our $config = RoomAffinity::redis_locations() . <<'END';
    location = /prom {
        proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/prometheus-check?port=$server_port;
    }
    location = /private {
        allow 127.0.0.2;
        deny all;
        room_affinity_status;
    }
END
our ($A, $B) = RoomAffinity::urls(2);
our $http = 'room_affinity_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;' . "\n"
    . RoomAffinity::upstream('zone=st1 b1 b2:weight=3 b3:backup')
    . RoomAffinity::upstream('other $http_x_room zone=st2 b1');

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: backends, zone and the Redis link
--- http_config eval: "$main::http\n$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ready",
    RoomAffinity::pub("register", qq({"url":"$main::A"})),
    RoomAffinity::pub("signaling",
        qq({"url":"$main::A","connections":12,"cpu":33.5,"capacity":400})),
    RoomAffinity::pub("signaling", "junk"),
    "/?room=s1", "/status")
--- response_body_like eval
my $n = RoomAffinity::count();
RoomAffinity::json_like({
    upstreams => {
        chat => {
            backends => [
                { server => "127.0.0.1:$ENV{TEST_NGINX_B1_PORT}",
                  url => $main::A, weight => 1, backup => JSON::PP::false,
                  state => "up", live => 0, rooms => $n, pending => $n,
                  placed => $n,
                  registered => JSON::PP::true,
                  report => { age_ms => $n, connections => 12, cpu => 33.5,
                              capacity => 400, draining => JSON::PP::false },
                  remote_live => 0, joins => 0, estimate => 12 },
                { server => "127.0.0.1:$ENV{TEST_NGINX_B2_PORT}",
                  url => "", weight => 3, backup => JSON::PP::false,
                  state => "up" },
                { server => "127.0.0.1:$ENV{TEST_NGINX_B3_PORT}",
                  url => "", weight => 1, backup => JSON::PP::true } ],
            zone => { name => "st1", rooms => 1, bytes_used => $n,
                      bytes_total => 1048576, evicted => 0, expired => 0,
                      moved => 0, unrecorded => 0,
                      placements => { reused_view => 0, full_pass => 1 } } },
        other => {
            backends => RoomAffinity::each_of({}, 1),
            zone => { name => "st2", rooms => 0 } } },
    redis => {
        address => "127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}",
        connected => JSON::PP::true, subscriber_pid => qr/^[1-9]\d*$/,
        connects => 1, failures => 0, last_error => "", snapshots => 1,
        messages => { applied => 2, unknown_backend => 0, rejected => 1,
                      rejected_by_reason => { too_large => 0, json => 1 } } } },
  qr/slept\nsubscribed\n(?:published :1\n){3}b[12]\n/)



=== TEST 2: one room (its name as the key holds it: $arg_ is not unescaped),
and a 404 JSON for an unknown one
--- http_config eval: "$main::http\n$main::backends"
--- config eval: $main::config
--- request eval
["GET /?room=r%201", "GET /status?room=r%25201", "GET /status?room=nope"]
--- response_body_like eval
[qr/^b[12]$/,
 RoomAffinity::json_is_answer({ room => "r%201", upstream => "chat",
     backend => qr/^127\.0\.0\.1:(?:$ENV{TEST_NGINX_B1_PORT}|$ENV{TEST_NGINX_B2_PORT})$/,
     url => "", live => 0, age_ms => RoomAffinity::count(),
     idle_ms => RoomAffinity::count() }),
 RoomAffinity::json_is_answer({ error => "unknown room", room => "nope" })]
--- error_code eval
[200, 200, 404]
--- response_headers eval
["", "Content-Type: application/json", "Content-Type: application/json"]



=== TEST 3: Prometheus text format, parsed by the real client parser
--- http_config eval: "$main::http\n$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ready",
    RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":9})),
    "/?room=p1", "/prom")
--- response_body_like eval
qr/parsed \d+ families \d+ samples\n.*room_affinity_backend_reported_connections server=127\.0\.0\.1:\d+,upstream=chat 9\.0\n.*room_affinity_zone_rooms upstream=chat,zone=st1 1\.0\n.*room_affinity_redis_connected  1\.0\n.*room_affinity_redis_messages_rejected_total reason=json 0\.0/s



=== TEST 4: the exposition's content type
--- http_config eval: "$main::http\n$main::backends"
--- config eval: $main::config
--- request
GET /status?format=prometheus
--- response_headers
Content-Type: text/plain; version=0.0.4; charset=utf-8
--- response_body_like eval
qr/\A# HELP room_affinity_backend_up /



=== TEST 5: access control is nginx's own, and only GET and HEAD
--- http_config eval: "$main::http\n$main::backends"
--- config eval: $main::config
--- request eval
["GET /private", "POST /status\nx=1"]
--- error_code eval
[403, 405]
--- response_body_like eval
[qr/403 Forbidden/, qr/405 Not Allowed/]



=== TEST 6: long upstream names and many servers fit the answers
--- http_config eval
my $name = "u" x 300;
my $servers = CORE::join '', map { "    server 127.0.0.$_:$ENV{TEST_NGINX_B1_PORT};\n" } 1 .. 40;
"room_affinity_redis unix:/tmp/" . ("r" x 90) . ".sock;
upstream $name {
    room_affinity \$arg_room zone=long:1m;
$servers}
upstream chat {
    room_affinity \$arg_room zone=st1:1m;
    server 127.0.0.1:\$TEST_NGINX_B1_PORT;
}
$main::backends"
--- config eval: $main::config
--- request eval
["GET /status?format=prometheus", "GET /status"]
--- response_body_like eval
[qr/room_affinity_zone_unrecorded_total\{upstream="u{300}",zone="long"\} 0\n.*room_affinity_zone_placements_total\{upstream="u{300}",zone="long",pass="full_pass"\} 0\n/s,
 RoomAffinity::json_like({
     upstreams => { ("u" x 300) => { backends => RoomAffinity::each_of(
         { server => qr/^127\.0\.0\.\d+:$ENV{TEST_NGINX_B1_PORT}$/ }, 40) } },
     redis => { address => "unix:/tmp/" . ("r" x 90) . ".sock" } })]



=== TEST 7: label values are escaped in the Prometheus exposition
--- http_config eval
"room_affinity_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;
upstream \"we\\\"ird\\\\name\" {
    room_affinity \$arg_room zone=odd:1m;
    server 127.0.0.1:\$TEST_NGINX_B1_PORT;
}
upstream chat {
    room_affinity \$arg_room zone=st1:1m;
    server 127.0.0.1:\$TEST_NGINX_B1_PORT;
}
$main::backends"
--- config eval: $main::config
--- request
GET /prom
--- response_body_like eval
qr/parsed \d+ families \d+ samples\n.*room_affinity_zone_rooms upstream=we"ird\\name,zone=odd 0\.0\n/s



=== TEST 8: how new rooms were placed: by a pass over the servers, then
from the worker's kept view (three servers: two choices among them); with
two servers every room is a pass
--- http_config eval
"upstream chat {
    room_affinity \$arg_room zone=three:1m choices=2;
    server 127.0.0.1:\$TEST_NGINX_B1_PORT;
    server 127.0.0.1:\$TEST_NGINX_B2_PORT;
    server 127.0.0.1:\$TEST_NGINX_B3_PORT;
}
upstream two {
    room_affinity \$arg_room zone=two:1m;
    server 127.0.0.1:\$TEST_NGINX_B1_PORT;
    server 127.0.0.1:\$TEST_NGINX_B2_PORT;
}
$main::backends"
--- config eval: "$main::config    location = /two { proxy_pass http://two/; }\n"
--- request eval
[(map { "GET /?room=v$_" } 1..6), (map { "GET /two?room=w$_" } 1..4),
 "GET /status"]
--- response_body_like eval
[(map { qr/^b[123]$/ } 1..6), (map { qr/^b[12]$/ } 1..4),
 RoomAffinity::json_like({ upstreams => {
     chat => { zone => { placements => { reused_view => 5, full_pass => 1 } } },
     two => { zone => { placements => { reused_view => 0, full_pass => 4 } } } } })]
