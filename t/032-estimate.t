# The load a placement reads between two reports of a backend: every
# connection through nginx counts while it is open (a room's members are the
# load, not the room), the connections other instances hold count too, joins
# count until the backend's next report, or less as the reports show their
# clients leaving (lifetime=), and a report does not erase the connections
# opened just before it landed (report_lag).

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

RoomAffinity::start_control(redis => 1);

our $redis = "room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};";
our ($A, $B) = RoomAffinity::urls(2);
our $port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;

# backends b1 and b2; on /hold they answer after ?ms= milliseconds, so
# that the connection through the upstream stays open that long
sub backends {
    return join '', map {
        "server { listen 127.0.0.1:$ENV{\"TEST_NGINX_B${_}_PORT\"};\n"
        . "    location / { return 200 \"b$_\\n\"; }\n"
        . "    location /hold { proxy_pass http://127.0.0.1:"
        . "$ENV{TEST_NGINX_CONTROL_PORT}/sleep?wait=\$arg_ms; }\n}\n"
    } 1 .. 2;
}

sub http {
    my ($params) = @_;

    return "$redis\nupstream chat {\n"
           . "    room_affinity \$arg_room zone=est:1m $params;\n"
           . RoomAffinity::servers(2) . "}\n" . backends();
}

our $config = RoomAffinity::redis_locations()
              . "    location = /signaling/join { room_affinity_join chat; }\n";

# n members of a room connected through nginx, held ms
sub hold {
    my ($room, $n, $ms) = @_;

    return "GET /ctl/hold?port=$port&n=$n&ms=$ms&path="
           . RoomAffinity::escape("/hold?room=$room&ms=$ms");
}

# what each new room answered, then: none on the backend of the room named
our %got;

sub got {
    my ($room) = @_;
    return qr/\A(b\d)\n\z(?{ $main::got{$room} = $1 })/;
}

sub none_on {
    my ($port, @rooms) = @_;

    my $b = $port == $ENV{TEST_NGINX_B1_PORT} ? 'b1' : 'b2';

    return !grep { ($main::got{$_} || '') eq $b } @rooms;
}

sub none_with {
    my ($room, @rooms) = @_;

    return qr#"backend":"127\.0\.0\.1:(\d+)"(?(?{ main::none_on($1, @rooms) })|(*FAIL))#;
}

# both backends report 0, 10 clients join room j, 2 s later both report 0
# again (the 10 are gone: a lifetime to learn), then 10 join room k
sub learn {
    my @report = map {
        RoomAffinity::pub("signaling", qq({"url":"$_","connections":0}))
    } $A, $B;

    return (@report, (map { "GET /signaling/join?roomName=j" } 1..10),
            "GET /ctl/sleep?wait=2000", @report,
            (map { "GET /signaling/join?roomName=k" } 1..10));
}

sub learnt {
    my @published = (qr/^published :1$/) x 2;

    return (@published, (map { qr/"roomName":"j"/ } 1..10), qr/^slept$/,
            @published, (map { qr/"roomName":"k"/ } 1..10));
}

worker_connections(1024);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a room that grows after its placement: the next new rooms avoid its backend
--- http_config eval: main::http('')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":0})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
  main::hold("big", 20, 8000),
  (map { "GET /?room=new$_" } 1..10),
  "GET /status?room=big" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  qr/^held 20 live 2\d$/,
  (map { main::got("new$_") } 1..10),
  main::none_with("big", map { "new$_" } 1..10) ]
--- no_error_log
[error]



=== TEST 2: a report that lands after connections opened does not erase them (report_lag)
--- http_config eval: main::http('report_lag=5s')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":0})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
  "GET /ctl/sleep?wait=700",
  main::hold("big", 20, 8000),
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":0})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
  (map { "GET /?room=new$_" } 1..10),
  "GET /status?room=big" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/, qr/^slept$/,
  qr/^held 20 live 2\d$/,
  qr/^published :1$/, qr/^published :1$/,
  (map { main::got("new$_") } 1..10),
  main::none_with("big", map { "new$_" } 1..10) ]
--- no_error_log
[error]



=== TEST 3: joins count until the backend reports, then the report holds them
--- http_config eval: main::http('')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":0})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
  (map { "GET /signaling/join?roomName=j" } 1..6),
  "GET /status",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":6})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":6})),
  "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  (map { qr/"roomName":"j"/ } 1..6),
  qr/"rooms":1,"pending":1,[^{}]*"report":\{[^{}]*\},"remote_live":0,"joins":6,"estimate":6\}/,
  qr/^published :1$/, qr/^published :1$/,
  qr/"rooms":1,"pending":0,[^{}]*"report":\{[^{}]*"connections":6,[^{}]*\},"remote_live":0,"joins":0,"estimate":6\}/ ]
--- no_error_log
[error]



=== TEST 4: another instance's connections count: its counts on the rooms channel
--- http_config eval: main::http('')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":0})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
  RoomAffinity::pub("room_affinity:rooms",
      "1 00000000000000aa c chat 127.0.0.1:$ENV{TEST_NGINX_B1_PORT}\n15"),
  (map { "GET /?room=r$_" } 1..5),
  "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  qr/^published :1$/,
  (map { qr/^b2$/ } 1..5),
  qr/"server":"127\.0\.0\.1:$ENV{TEST_NGINX_B1_PORT}",[^{}]*\{[^{}]*\},"remote_live":15,"joins":0,"estimate":15\}.*"counts_received":1[,}]/ ]
--- no_error_log
[error]



=== TEST 5: this instance's connections go out as counts, and an instance that falls silent stops counting
--- http_config eval: main::http('')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("room_affinity:rooms",
      "1 00000000000000aa c chat 127.0.0.1:$ENV{TEST_NGINX_B1_PORT}\n15"),
  "GET /ctl/sleep?wait=500",
  "GET /status",
  "GET /ctl/sleep?wait=7000",
  "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^slept$/,
  qr/"remote_live":15,.*"counts_sent":[1-9]/,
  qr/^slept$/,
  qr/"server":"127\.0\.0\.1:$ENV{TEST_NGINX_B1_PORT}",[^{}]*"remote_live":0,/ ]
--- no_error_log
[error]
--- timeout: 15



=== TEST 6: once B's connections plus its report reach A's load, both take rooms
--- http_config eval: main::http('')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":10})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
  main::hold("big", 10, 8000),
  (map { "GET /?room=r$_" } 1..30),
  "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  qr/^held 10 live 1\d$/,
  (map { qr/^b[12]$/ } 1..30),
  RoomAffinity::rooms_between(8, 23) ]
--- no_error_log
[error]



=== TEST 7: joins the reports showed gone are forgotten: the lifetime is learnt
(right after the joins their estimate is 10, or 9 on a slow machine: with
5 s they lose a tenth in half a second)
--- http_config eval: main::http('')
--- config eval: $main::config
--- request eval
[ "GET /ready", main::learn(),
  "GET /status",
  "GET /ctl/sleep?wait=6000",
  "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, main::learnt(),
  qr/"joins":10,"estimate":(?:9|10)\}.*"lifetime":\{"mode":"auto","ms":5000,"reports_fitted":1\}/s,
  qr/^slept$/,
  qr/\A(?!.*"estimate":(?:[5-9]|\d\d))(?=.*"joins":10,"estimate":[0-4]\}).*"lifetime":\{"mode":"auto","ms":5000/s ]
--- timeout: 15
--- no_error_log
[error]



=== TEST 8: with lifetime=off, joins count until the next report, however long
--- http_config eval: main::http('lifetime=off')
--- config eval: $main::config
--- request eval
[ "GET /ready", main::learn(),
  "GET /ctl/sleep?wait=6000",
  "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, main::learnt(),
  qr/^slept$/,
  qr/"joins":10,"estimate":10\}.*"lifetime":\{"mode":"fixed","ms":null,"reports_fitted":1\}/s ]
--- timeout: 15
--- no_error_log
[error]



=== TEST 9: lifetime=20s: joins decay with 20 s from the start, nothing learnt
--- http_config eval: main::http('lifetime=20s')
--- config eval: $main::config
--- request eval
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":0})),
  RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
  (map { "GET /signaling/join?roomName=k" } 1..20),
  "GET /ctl/sleep?wait=3000",
  "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/, qr/^published :1$/,
  (map { qr/"roomName":"k"/ } 1..20),
  qr/^slept$/,
  qr/"joins":20,"estimate":1[4-7]\}.*"lifetime":\{"mode":"fixed","ms":20000,"reports_fitted":0\}/s ]
--- timeout: 15
--- no_error_log
[error]
