# Redis going away never stops nginx from proxying: absent at start,
# restarted under traffic, connection killed; the subscriber role moves to
# another worker when its worker dies.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

# the control server starts without Redis; each block says in its
# "--- setup" whether Redis runs when its nginx starts
RoomAffinity::start_control(redis => 0);

our $backends = RoomAffinity::backends(2);
our $redis = "room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}"
             . " backoff=400ms;";
our $config = RoomAffinity::redis_locations();
our ($A, $B) = RoomAffinity::urls(2);
our $upstream = RoomAffinity::upstream('zone=res b1 b2');

master_on();
workers(2);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: Redis absent at start: nginx starts, proxies, retries with backoff
--- setup
redis stop
--- http_config eval: "$main::redis\n$main::upstream\n$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ctl/sleep?wait=500", "/?room=a", "/?room=b", "/status")
--- response_body_like eval
RoomAffinity::json_like({ redis => {
    address => "127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}",
    connected => JSON::PP::false,
    last_error => "connect: Connection refused" } },
  qr/slept\nslept\nb[12]\nb[12]\n/)
--- error_log eval
qr/room_affinity: redis "127\.0\.0\.1:\d+" subscriber link connect: Connection refused, retrying in \d+ ms/
--- no_error_log
[crit]



=== TEST 2: Redis started later: subscribed within the backoff cap
--- setup
redis stop
--- http_config eval: "$main::redis\n$main::upstream\n$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ctl/sleep?wait=300", "/ctl/redis/start", "/ready",
    RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":100})),
    RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
    "/?room=c", "/?room=d", "/status")
--- response_body_like eval
RoomAffinity::json_like({ redis => { connected => JSON::PP::true } },
  qr/slept\nslept\nok\nsubscribed\npublished :1\npublished :1\nb2\nb2\n/)
--- error_log
room_affinity: subscribed to "register" and "signaling"



=== TEST 3: Redis restarted under traffic: requests keep working, resubscribed
--- setup
redis start
--- http_config eval: "$main::redis\n$main::upstream\n$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ready", "/?room=e", "/ctl/redis/stop", "/?room=e",
    "/?room=f", "/ctl/redis/start", "/ready",
    RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":0})),
    RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":100})),
    "/?room=g", "/?room=e", "/status")
--- response_body_like eval
RoomAffinity::json_like({ redis => { connected => JSON::PP::true,
                                     subscriber_pid => qr/^[1-9]\d*$/,
                                     connects => 2 } },
  qr/slept\nsubscribed\n(b[12])\nok\n\1\nb[12]\nok\nsubscribed\npublished :1\npublished :1\nb1\n\1\n/)
--- error_log eval
qr/redis "127\.0\.0\.1:\d+" \w+ link connection lost/



=== TEST 4: a killed subscriber connection: resubscribed, snapshot read again
--- setup
redis start
--- http_config eval: "$main::redis\n$main::upstream\n$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ready",
    "/ctl/hset?key=room_affinity:backends&field=$main::A&value="
    . RoomAffinity::escape(qq({"url":"$main::A","connections":321})),
    "/ctl/redis-cmd?cmd=CLIENT,KILL,TYPE,pubsub", "/ready",
    "/ctl/sleep?wait=200", "/status")
--- response_body_like eval
RoomAffinity::json_like({
    upstreams => { chat => { backends => {
        RoomAffinity::b(1, { report => { connections => 321 } }) } } },
    redis => { connects => 2, snapshots => 2 } },
  qr/slept\nsubscribed\nhset :1\nredis :1\nsubscribed\nslept\n/)
