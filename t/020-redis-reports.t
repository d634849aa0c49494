# Backends report their load through Redis (register / signaling); the
# module places new rooms by those reports: reported load plus the
# connections opened since (t/032-estimate.t), per capacity; draining backends take no new rooms; stale reports
# stop counting; the snapshot hash is read after connecting.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

RoomAffinity::start_control(redis => 1);

our $backends = RoomAffinity::backends(3);
our $redis = "room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};";

# the http block of every test: Redis, the upstream "chat" with the
# room_affinity parameters, extra lines and n servers, the backends
sub http {
    my ($params, $extra, $n) = @_;

    my $servers = RoomAffinity::servers($n // 2);

    return "$redis\nupstream chat {\n"
           . "    room_affinity \$arg_room zone=rr:1m $params;\n"
           . ($extra ? "    $extra\n" : '') . "$servers}\n$backends";
}
our $config = RoomAffinity::redis_locations();
our ($A, $B, $C) = RoomAffinity::urls(3);

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: A reports 100 connections, B reports 0: new rooms go to B
--- http_config eval: main::http('')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":100})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
  (map { "GET /?room=r$_" } 1..10), "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  (map { qr/^b2$/ } 1..10),
  qr/"server":"127\.0\.0\.1:\d+","url":"ws:\/\/127\.0\.0\.1:\d+",[^{}]*"rooms":10,"pending":10,[^{}]*"report":\{"age_ms":\d+,"connections":0,"draining":false\}/ ]



=== TEST 2: a room whose connections ended adds no load: B keeps the new rooms
--- http_config eval: main::http('')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":10})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
  (map { "GET /?room=r$_" } 1..30), "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  (map { qr/^b2$/ } 1..30),
  qr/"rooms":30,"pending":30,[^{}]*"report":\{"age_ms":\d+,"connections":0,"draining":false\},"remote_live":0,"joins":0,"estimate":0\}/ ]



=== TEST 3: a draining backend takes no new rooms; its rooms stay
--- http_config eval: main::http('')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":100})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
  "GET /?room=kept",
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":1,"draining":true})),
  (map { "GET /?room=new$_" } 1..5), "GET /?room=kept",
  "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/, qr/^b2$/,
  qr/^published :1$/, (map { qr/^b1$/ } 1..5), qr/^b2$/,
  qr/"state":"draining","live":0,"rooms":1,.*?"draining":true\}/ ]



=== TEST 4: a stale report no longer counts
--- http_config eval: main::http('stale=1s')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":100})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
  "GET /?room=fresh1", "GET /?room=fresh2",
  "GET /ctl/sleep?wait=1200", "GET /status",
  (map { "GET /?room=s$_" } 1..8), "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  qr/^b2$/, qr/^b2$/, qr/slept/, qr/"state":"stale".*"state":"stale"/s,
  (map { qr/^b[12]$/ } 1..8),
  RoomAffinity::rooms_between(4, 6) ]



=== TEST 5: reports going stale change the kept placement view too
--- http_config eval: main::http('stale=1s', '', 3)
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":10})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":10})),
  RoomAffinity::pub("signaling", qq({"url":"$main::C","connections":5})),
  "GET /?room=fresh1", "GET /?room=fresh2",
  "GET /ctl/sleep?wait=1200",
  (map { "GET /?room=s$_" } 1..10), "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  qr/^published :1$/, qr/^b3$/, qr/^b3$/, qr/slept/,
  (map { qr/^b[123]$/ } 1..10),
  RoomAffinity::rooms_between(3, 5) ]



=== TEST 6: a new report moves new rooms at once, after rooms were placed
(three servers: two choices among them, from the kept placement view)
--- http_config eval: main::http('', '', 3)
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":0})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":100})),
  RoomAffinity::pub("signaling", qq({"url":"$main::C","connections":100})),
  (map { "GET /?room=before$_" } 1..3),
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":100})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
  (map { "GET /?room=after$_" } 1..8) ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  qr/^published :1$/, (map { qr/^b1$/ } 1..3), qr/^published :1$/,
  qr/^published :1$/, (map { qr/^b2$/ } 1..8) ]



=== TEST 7: the cpu metric and reported capacity
--- http_config eval: main::http('metric=cpu')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":1,"cpu":10.5})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0,"cpu":90})),
  (map { "GET /?room=c$_" } 1..5), "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  (map { qr/^b1$/ } 1..5), qr/"connections":1,"cpu":10\.50,/ ]



=== TEST 8: capacity: 100 of 1000 is less loaded than 50 of 100
--- http_config eval: main::http('')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":100,"capacity":1000})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":50,"capacity":100})),
  (map { "GET /?room=k$_" } 1..5) ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  (map { qr/^b1$/ } 1..5) ]



=== TEST 9: room_affinity_url maps a public url to a server address
--- http_config eval: main::http('', 'room_affinity_url 127.0.0.1:$TEST_NGINX_B1_PORT wss://chat-a.example.com/socket;')
--- config eval: $main::config
--- request eval
[ "GET /status", "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"wss://chat-a.example.com/socket","connections":0})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":500})),
  (map { "GET /?room=u$_" } 1..4), "GET /status" ]
--- response_body_like eval
[ qr/"url":"wss:\/\/chat-a\.example\.com\/socket","weight":1,[^{}]*"registered":false/,
  qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  (map { qr/^b1$/ } 1..4),
  qr/"url":"wss:\/\/chat-a\.example\.com\/socket",[^{}]*"registered":true,"report":\{"age_ms":\d+,"connections":0,/ ]



=== TEST 10: a register for an unknown url is logged and ignored
--- http_config eval: main::http('', '', 1)
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ready",
  RoomAffinity::pub("register", qq({"url":"ws://10.1.2.3:4000"})),
  RoomAffinity::pub("register", qq({"url":"$main::A"})), "/status")
--- response_body_like eval
qr/subscribed\npublished :1\npublished :1\n.*"registered":true.*"applied":1,"unknown_backend":1,/s
--- grep_error_log eval
qr/ignored redis message on "register": unknown_backend|applied register for "[^"]+"/
--- grep_error_log_out eval
"ignored redis message on \"register\": unknown_backend\n"
. "applied register for \"127.0.0.1:$ENV{TEST_NGINX_B1_PORT}\"\n"



=== TEST 11: nginx reads the snapshot after subscribing, without a publish
(setup: the backends left their reports in the snapshot hash before nginx
started)
--- setup
redis DEL room_affinity:backends
redis HSET room_affinity:backends ws://127.0.0.1:$TEST_NGINX_B1_PORT {"url":"ws://127.0.0.1:$TEST_NGINX_B1_PORT","connections":77}
redis HSET room_affinity:backends ws://127.0.0.1:$TEST_NGINX_B2_PORT {"url":"ws://127.0.0.1:$TEST_NGINX_B2_PORT","connections":0}
--- http_config eval: main::http('')
--- config eval: $main::config
--- request eval
[ "GET /ready", "GET /ctl/sleep?wait=100", (map { "GET /?room=sn$_" } 1..5),
  "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/slept/, (map { qr/^b2$/ } 1..5),
  RoomAffinity::json_like({
      upstreams => { chat => { backends => {
          RoomAffinity::b(1, { report => { age_ms => qr/^\d+$/,
                                           connections => 77 } }) } } },
      redis => { snapshots => 1 } }) ]
