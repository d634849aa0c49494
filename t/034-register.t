# Registered backends (room_affinity ... register=): a backend that
# publishes register (or signaling) with a url the allow list admits
# becomes a server of the upstream without a reload: it takes new rooms
# through the proxy and the join API (which answers its url), with or
# without server lines.  A url outside the allow list, without a port, or
# with a scheme nginx does not proxy is refused and counted by reason;
# register_max bounds the registered backends (a flood of fake urls takes
# no more, never a server line's slot); the configuration's mistakes fail
# "nginx -t" with a message naming room_affinity.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

RoomAffinity::start_control(redis => 1);

our $backends = RoomAffinity::backends(3);
our $redis = "room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};";
our ($A, $B, $C) = RoomAffinity::urls(3);
our ($PA, $PB, $PC) = map { $ENV{"TEST_NGINX_B${_}_PORT"} } 1 .. 3;

# the http block: Redis, the upstream "chat" with room_affinity's
# parameters and the server lines given, the backends
sub http {
    my ($params, $servers) = @_;

    return "$redis\nupstream chat {\n"
           . "    room_affinity \$arg_room zone=reg:1m $params;\n"
           . ($servers // '') . "}\n$backends";
}

# b1..b3's ports, and nothing else
our $allow = "register=127.0.0.1/32:$PA-$PC";

our $config = RoomAffinity::redis_locations()
              . "    location = /join { room_affinity_join chat; }\n";

sub reg { RoomAffinity::pub('register', qq({"url":"$_[0]"})) }

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: no server line: nothing to proxy to until a backend registers; then it takes the rooms
--- http_config eval: main::http($main::allow)
--- config eval: $main::config
--- request eval
[ "GET /ready", "GET /?room=r1",
  main::reg($main::A),
  "GET /?room=r1", "GET /?room=r2", "GET /join?roomName=r3",
  "GET /?room=r3", "GET /status" ]
--- error_code eval
[ 200, 502, 200, 200, 200, 200, 200, 200 ]
--- response_body_like eval
[ qr/^subscribed$/, qr/502 Bad Gateway/, qr/^published :1$/,
  qr/^b1$/, qr/^b1$/,
  RoomAffinity::json_is_answer({ url => $main::A, roomName => 'r3',
                                 new => JSON::PP::true }),
  qr/^b1$/,
  RoomAffinity::json_like({ upstreams => { chat => {
      backends => [ { server => "127.0.0.1:$main::PA", url => $main::A,
                      origin => 'register', state => 'up', rooms => 3 } ],
      fleet => { registered => 1, max => 32, joined => 1, left => 0,
                 refused => { bad_url => 0, not_allowed => 0,
                              no_resolver => 0, unresolved => 0,
                              full => 0 } } } } }) ]



=== TEST 2: registered backends mix with server lines; a registered one is placed like a server
--- http_config eval
main::http($main::allow, "    server 127.0.0.1:$main::PA;\n")
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub('signaling', qq({"url":"$main::A","connections":50})),
  main::reg($main::B),
  RoomAffinity::pub('signaling', qq({"url":"$main::B","connections":0})),
  (map { "GET /?room=m$_" } 1 .. 8), "GET /?room=m1", "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  qr/^published :1$/, (map { qr/^b2$/ } 1 .. 9),
  RoomAffinity::json_like({ upstreams => { chat => {
      backends => RoomAffinity::check("b1 (a server line) without rooms, "
                                      . "b2 (registered) with 8",
          sub { my %b = map { ($_->{server} => $_) } @{ $_[0] };
                @{ $_[0] } == 2
                && $b{"127.0.0.1:$main::PA"}{rooms} == 0
                && !$b{"127.0.0.1:$main::PA"}{origin}
                && $b{"127.0.0.1:$main::PB"}{rooms} == 8
                && $b{"127.0.0.1:$main::PB"}{origin} eq 'register' }),
      fleet => { registered => 1 } } } }) ]



=== TEST 3: a signaling message of an unknown backend in the allow list registers it too
--- http_config eval: main::http($main::allow)
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub('signaling', qq({"url":"$main::C","connections":3})),
  "GET /?room=s1", "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^b3$/,
  RoomAffinity::json_like({ upstreams => { chat => {
      backends => [ { server => "127.0.0.1:$main::PC", origin => 'register',
                      report => { connections => 3 } } ] } } }) ]



=== TEST 4: urls outside the allow list, without a port, or of another scheme are refused, counted and logged; nothing joins
--- http_config eval
main::http("register=127.0.0.1/32:$main::PA")
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ready", main::reg($main::B),
                  main::reg("ws://10.1.2.3:$main::PA"),
                  main::reg("ws://127.0.0.1"),
                  main::reg("wss://127.0.0.1:$main::PA"),
                  main::reg("ws://127.0.0.1:$main::PA/phish?next=x"),
                  main::reg("ftp://127.0.0.1:$main::PA"), "/status")
--- response_body_like eval
RoomAffinity::json_like({ upstreams => { chat => {
    backends => [],
    fleet => { registered => 0, joined => 0,
               refused => { not_allowed => 2, bad_url => 3 } } } },
    # ftp:// is no url of a backend at all (ra_message.c)
    redis => { messages => { rejected_by_reason => { url => 1 } } } },
  qr/slept\nsubscribed\n(?:published :1\n){6}/)
--- error_log eval
[ qr/registration of "ws:\/\/127\.0\.0\.1:\d+" refused in upstream "chat": not_allowed \(address or port outside register=\), 0 similar since last log/,
  qr/registration of "ws:\/\/127\.0\.0\.1" refused in upstream "chat": bad_url \(not ws:\/\/ or http:\/\/ host:port with nothing after the port\)/ ]



=== TEST 5: refused registrations in Prometheus's format; a proxied request finds no backend
--- http_config eval
main::http("register=127.0.0.1/32:$main::PA")
--- config eval: $main::config
--- request eval
[ "GET /ready", main::reg($main::B), main::reg("ws://127.0.0.1"),
  "GET /?room=x", "GET /status?format=prometheus" ]
--- error_code eval
[ 200, 200, 200, 502, 200 ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  qr/502 Bad Gateway/,
  qr/^room_affinity_fleet_refused_total\{upstream="chat",reason="not_allowed"\} 1\nroom_affinity_fleet_refused_total\{upstream="chat",reason="no_resolver"\} 0$/m ]



=== TEST 6: a flood of distinct fake urls takes register_max slots, no more, and is logged; the server line and the backend holding a room keep theirs
--- http_config eval
main::http("register=127.0.0.0/8:1-65535 register_max=4",
           "    server 127.0.0.1:$main::PA;\n")
--- config eval: $main::config
--- timeout: 30
--- request eval
RoomAffinity::seq("/ready", main::reg($main::B),
    RoomAffinity::pub('signaling', qq({"url":"$main::A","connections":90})),
    RoomAffinity::pub('signaling', qq({"url":"$main::B","connections":0})),
    "/?room=kept", (map { main::reg("ws://127.0.0.$_:40$_") } 2 .. 31),
    "/status", "/?room=kept")
--- response_body_like eval
RoomAffinity::json_like({ upstreams => { chat => {
    backends => RoomAffinity::check(
        "the server line, b2 with its room, and 3 fake urls",
        sub { my @b = @{ $_[0] };
              @b == 5
              && (grep { $_->{server} eq "127.0.0.1:$main::PA"
                         && !$_->{origin} } @b) == 1
              && (grep { $_->{server} eq "127.0.0.1:$main::PB"
                         && $_->{rooms} == 1 } @b) == 1 }),
    fleet => { registered => 4, max => 4,
               refused => { full => 27 } } } } },
  qr/slept\nsubscribed\n(?:published :1\n){3}b2\n(?:published :1\n){30}/,
  qr/b2\n/)
--- error_log eval
[ qr/registration of "ws:\/\/127\.0\.0\.5:405" refused in upstream "chat": full \(register_max backends are registered, none can make way\), 0 similar since last log/ ]



=== TEST 7: register= without networks
--- http_config eval: main::http("register_max=3", "    server 127.0.0.1:$main::PA;\n")
--- config
--- must_die
--- error_log
"room_affinity" registration needs the networks backends may register from



=== TEST 8: a malformed network
--- http_config eval: main::http("register=10.0.0.0/8", "    server 127.0.0.1:$main::PA;\n")
--- config
--- must_die
--- error_log
invalid network in "register=10.0.0.0/8", use register=address/bits:port[-port][,...]



=== TEST 9: register= with an upstream zone is refused, naming room_affinity
--- http_config eval
main::http($main::allow, "    zone peers 64k;\n    server 127.0.0.1:$main::PA;\n")
--- config
--- must_die
--- error_log
"room_affinity" with register= does not work with the "zone" directive in upstream "chat"



=== TEST 10: register_max out of range, register_expire shorter than stale
--- http_config eval: main::http("$main::allow register_max=0")
--- config
--- must_die
--- error_log
invalid number in "register_max=0", use 1 to 1024



=== TEST 11: register_expire shorter than stale
--- http_config eval: main::http("$main::allow stale=10s register_expire=5s")
--- config
--- must_die
--- error_log
"room_affinity" register_expire=5000ms is shorter than stale=10000ms



=== TEST 12: an upstream with no server line and no register= still fails as nginx says
--- http_config
    upstream chat {
        room_affinity $arg_room zone=reg:1m;
    }
--- config
--- must_die
--- error_log
no servers are inside upstream



=== TEST 13: IPv6 networks and several ranges in one parameter
--- http_config eval
main::http("register=[::1/128]:1000-2000,127.0.0.1/32:$main::PB register=127.0.0.1/32:$main::PC")
--- config eval: $main::config
--- request eval
[ "GET /ready", main::reg($main::A), main::reg($main::B), main::reg($main::C),
  main::reg("ws://[::1]:1500"), "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, (map { qr/^published :1$/ } 1 .. 4),
  RoomAffinity::json_like({ upstreams => { chat => {
      fleet => { registered => 3, refused => { not_allowed => 1 } } } } }) ]
