# The join API (room_affinity_join): the room's backend url for a POSTed
# JSON body or a query argument, answered from the room table the proxy
# uses, so a later proxied request (or WebSocket) of the room reaches the
# backend the join named, whichever worker takes it; every error is JSON
# with the right status.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

RoomAffinity::start_control(redis => 1);

master_on();
workers(2);
no_shuffle();
no_root_location();

# the four backends answer their name; their public urls are ws://bN.test
our $backends = RoomAffinity::backends(4);
our $urls = join '', map {
    "        room_affinity_url 127.0.0.1:\$TEST_NGINX_B${_}_PORT "
    . "ws://b$_.test/chat;\n"
} 1 .. 4;
our $servers = RoomAffinity::servers(4);

# a join answer {"url":"ws://bN.test/chat","FIELD":"ROOM","new":NEW}, bN
# the room's backend (as proxied answers and WebSockets name it too); NEW
# is "true", "false", or either when not given; ROOM as it reads decoded
sub joined {
    my ($room, $new, $field) = @_;
    $field //= 'roomName';
    return RoomAffinity::json_is_answer({
        url => RoomAffinity::check("ws://bN.test/chat, bN the room's backend",
            sub { $_[0] =~ m!\Aws://(b\d)\.test/chat\z!
                  && RoomAffinity::same_backend($room, $1) }),
        $field => $room,
        new => !defined $new ? RoomAffinity::boolean()
             : $new eq 'true' ? JSON::PP::true : JSON::PP::false });
}

# a join answer naming exactly this url
sub joined_at {
    my ($url, $room, $new) = @_;
    return RoomAffinity::json_is_answer({ url => $url, roomName => $room,
        new => $new eq 'true' ? JSON::PP::true : JSON::PP::false });
}

# the first join of a room in TEST 23: on b1 or on b9 (the dead one)
our %placed;

sub placed_on {
    my ($room) = @_;
    return RoomAffinity::json_is_answer({
        url => RoomAffinity::check("ws://b1.test/chat or ws://b9.test/chat",
            sub { $_[0] =~ m!\Aws://(b[19])\.test/chat\z!
                  && ($main::placed{$room} = $1) }),
        roomName => $room, new => JSON::PP::true });
}

# the status counts at least the joins that were on b9 as moved, and there
# were some
sub moved_from_b9 {
    my ($prefix) = @_;
    return RoomAffinity::json_like({ upstreams => { chat => { zone => {
        moved => RoomAffinity::check("at least the rooms placed on b9",
            sub { my $n = grep { /^\Q$prefix\E/ && $main::placed{$_} eq 'b9' }
                           keys %main::placed;
                  $n > 0 && $_[0] >= $n }) } } } });
}

# the status JSON counts n placements in all
sub placed_total {
    my ($n) = @_;
    return RoomAffinity::json_like({ upstreams => RoomAffinity::each_of({
        backends => RoomAffinity::check("$n placements in all",
            sub { my $t = 0; $t += $_->{placed} for @{ $_[0] }; $t == $n }) }) });
}

# the status JSON of the upstream "chat": its zone holds n rooms
sub zone_rooms {
    my ($zone, $n) = @_;
    return RoomAffinity::json_like({ upstreams => { chat => { zone => {
        name => $zone, rooms => $n } } } });
}

# an error answer, with a regex for the reason (as it reads decoded)
sub error_like {
    my ($code, $reason) = @_;
    return RoomAffinity::error_json($code, qr/\A$reason\z/);
}

# a body of exactly $len bytes that joins $room
sub padded {
    my ($room, $len) = @_;
    my $json = qq({"roomName":"$room","pad":"});
    return $json . ("x" x ($len - length($json) - 2)) . '"}';
}

# the http block of most tests: the upstream "chat" over the four backends
# with their public urls, keyed by $arg_roomName unless told otherwise
sub chat {
    my ($zone, $key) = @_;
    $key //= '$arg_roomName';
    return "upstream chat {\n    room_affinity $key zone=$zone:1m;\n"
           . "$servers$urls}\n$backends";
}

run_tests();

__DATA__

=== TEST 1: the same room twice, by POST and by GET: the same url
--- http_config eval: main::chat('j1')
--- config
    location = /signaling/join { room_affinity_join chat; }
--- request eval
[ "POST /signaling/join\n{\"roomName\": \"lobby\"}",
  "POST /signaling/join\n{\"roomName\": \"lobby\"}",
  "GET /signaling/join?roomName=lobby",
  "GET /signaling/join?roomName=kitchen",
  "POST /signaling/join\n{\"roomName\":\"kitchen\",\"user\":\"ann\"}",
  "GET /signaling/join?roomName=lobby&x=1",
  "POST /signaling/join\n{\"roomName\": \"lobby\"}" ]
--- response_body_like eval
[ main::joined("lobby", "true"), main::joined("lobby", "false"),
  main::joined("lobby", "false"), main::joined("kitchen", "true"),
  main::joined("kitchen", "false"), main::joined("lobby", "false"),
  main::joined("lobby", "false") ]
--- no_error_log
[error]



=== TEST 2: the answer is JSON and is not cached
--- http_config eval: main::chat('j2')
--- config
    location = /join { room_affinity_join chat; }
--- request
POST /join
{"roomName":"headers"}
--- more_headers
Content-Type: application/json
--- response_headers
Content-Type: application/json
Cache-Control: no-store
--- response_body_like eval
main::joined("headers", "true")



=== TEST 3: HEAD is a GET without the body: it reserves the room
--- http_config eval: main::chat('j3')
--- config
    location = /join { room_affinity_join chat; }
--- request eval
["HEAD /join?roomName=head", "GET /join?roomName=head"]
--- response_body_like eval
[qr/\A\z/, main::joined("head", "false")]



=== TEST 4: names are decoded: "+" and %XX in the query, escapes in JSON
--- http_config eval: main::chat('j4')
--- config
    location = /join { room_affinity_join chat; }
    location = /status { room_affinity_status; }
--- request eval
[ "GET /join?roomName=caf%C3%A9+au+lait%2B1",
  "POST /join\n{\"roomName\":\"caf\\u00e9 au lait+1\"}",
  "POST /join\n{\"roomName\":\"say \\\"hi\\\"\\\\\"}",
  "GET /join?roomName=say+%22hi%22%5C",
  "GET /status?room=say%20%22hi%22%5C" ]
--- response_body_like eval
[ main::joined("caf\x{c3}\x{a9} au lait+1", "true"),
  main::joined("caf\x{c3}\x{a9} au lait+1", "false"),
  main::joined('say "hi"\\', "true"),
  main::joined('say "hi"\\', "false"),
  RoomAffinity::json_is_answer({ room => 'say "hi"\\', upstream => "chat" }) ]



=== TEST 5: room_affinity_field names the member and the query argument
--- http_config eval: main::chat('j5', '$arg_room')
--- config
    room_affinity_field room;
    location = /join { room_affinity_join chat; }
--- request eval
[ "POST /join\n{\"room\":\"deck\"}",
  "GET /join?room=deck",
  "POST /join\n{\"roomName\":\"deck\"}",
  "GET /join?roomName=deck" ]
--- error_code eval
[200, 200, 400, 400]
--- response_body_like eval
[ main::joined("deck", "true", "room"), main::joined("deck", "false", "room"),
  RoomAffinity::error_json("missing_room", '"room" is missing'),
  RoomAffinity::error_json("missing_room",
                   'the query argument "room" is missing') ]



=== TEST 6: without a registered or configured url: ws:// and the address
--- http_config
    upstream chat {
        room_affinity $arg_roomName zone=j6:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
    server { listen 127.0.0.1:$TEST_NGINX_B1_PORT; return 200 "b1\n"; }
--- config
    location = /join { room_affinity_join chat; }
--- request
GET /join?roomName=plain
--- response_body_like eval
main::joined_at("ws://127.0.0.1:$ENV{TEST_NGINX_B1_PORT}", "plain", "true")



=== TEST 7: a registered url with a path or a query is not the answer
--- http_config eval
"room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
upstream chat {
    room_affinity \$arg_roomName zone=j7:1m;
    server 127.0.0.1:\$TEST_NGINX_B1_PORT;
}
" . RoomAffinity::backends(1)
--- config eval
RoomAffinity::redis_locations() . "
    location = /join { room_affinity_join chat; }"
--- request eval
[ "GET /ready",
  RoomAffinity::pub("register",
      qq({"url":"ws://127.0.0.1:$ENV{TEST_NGINX_B1_PORT}/socket?v=2"})),
  "GET /join?roomName=registered" ]
--- response_body_like eval
[ qr/^subscribed$/, qr/^published :1$/,
  main::joined_at("ws://127.0.0.1:$ENV{TEST_NGINX_B1_PORT}",
                  "registered", "true") ]



=== TEST 8: fifty new rooms are spread over the backends
--- http_config eval: main::chat('j8')
--- config
    location = /join { room_affinity_join chat; }
    location = /status { room_affinity_status; }
--- request eval
[ (map { "POST /join\n{\"roomName\":\"spread-$_\"}" } 1 .. 50),
  "GET /status", "GET /status" ]
--- response_body_like eval
[ (map { main::joined("spread-$_", "true") } 1 .. 50),
  main::zone_rooms("j8", 50),
  RoomAffinity::rooms_between(11, 14) ]



=== TEST 9: by load: a backend that reports 1000 connections gets no room
--- http_config eval
"room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
upstream chat {
    room_affinity \$arg_roomName zone=j9:1m;
$main::servers}
$main::backends"
--- config eval
RoomAffinity::redis_locations() . "
    location = /join { room_affinity_join chat; }"
--- request eval
my @u = RoomAffinity::urls(4);
[ "GET /ready",
  RoomAffinity::pub("signaling", qq({"url":"$u[0]","connections":1000})),
  (map { RoomAffinity::pub("signaling", qq({"url":"$_","connections":0})) }
   @u[1 .. 3]),
  (map { "POST /join\n{\"roomName\":\"load-$_\"}" } 1 .. 30),
  "GET /status" ]
--- response_body_like eval
[ qr/^subscribed$/, (map { qr/^published :1$/ } 1 .. 4),
  (map { main::joined_at(qr{\Aws://127\.0\.0\.1:(?!$ENV{TEST_NGINX_B1_PORT}\z)\d+\z},
                         "load-$_", "true") } 1 .. 30),
  RoomAffinity::json_like({ upstreams => { chat => { backends => [
      { server => "127.0.0.1:$ENV{TEST_NGINX_B1_PORT}", rooms => 0,
        pending => 0 }, {}, {}, {} ] } } }) ]



=== TEST 10: join, then proxied requests of the room reach that backend
--- http_config eval: main::chat('j10')
--- config
    location = /join { room_affinity_join chat; }
    location /chat { proxy_pass http://chat; }
    location = /pid { return 200 "$pid\n"; }
--- request eval
[ (map { ("GET /pid", "POST /join\n{\"roomName\":\"then-$_\"}",
          "GET /chat?roomName=then-$_", "GET /pid",
          "GET /chat?roomName=then-$_") } 1 .. 12),
  "GET /pid" ]
--- response_body_like eval
[ (map { (RoomAffinity::pid_seen(), main::joined("then-$_", "true"),
          RoomAffinity::sticky("then-$_"), RoomAffinity::pid_seen(),
          RoomAffinity::sticky("then-$_")) } 1 .. 12),
  RoomAffinity::pids_at_least(2) ]
--- no_error_log
[error]



=== TEST 11: the join reserves the room: the proxy finds it, not places it
--- http_config eval: main::chat('j11')
--- config
    location = /join { room_affinity_join chat; }
    location /chat { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- request eval
[ "POST /join\n{\"roomName\":\"reserved\"}",
  "GET /status",
  "GET /chat?roomName=reserved",
  "GET /chat?roomName=reserved",
  "GET /status" ]
--- response_body_like eval
[ main::joined("reserved", "true"),
  RoomAffinity::json_like({ upstreams => { chat => { backends =>
      RoomAffinity::check("one backend with rooms, pending, placed 1",
          sub { 1 == grep { $_->{rooms} == 1 && $_->{pending} == 1
                            && $_->{placed} == 1 } @{ $_[0] } }) } } }),
  RoomAffinity::sticky("reserved"), RoomAffinity::sticky("reserved"),
  main::placed_total(1) ]
--- no_error_log
[error]



=== TEST 12: join, then a WebSocket upgrade of the room: the same backend
--- http_config eval
my $ws = CORE::join '', map { "
    server {
        listen 127.0.0.1:\$TEST_NGINX_B${_}_PORT;
        location / {
            proxy_pass http://127.0.0.1:\$TEST_NGINX_CONTROL_PORT;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection upgrade;
            proxy_set_header X-Backend b$_;
        }
    }" } 1 .. 4;
"upstream chat {
    room_affinity \$arg_room zone=j12:1m;
$main::servers$main::urls}
$ws"
--- config
    location = /join { room_affinity_join chat; }
    location /ws {
        proxy_pass http://chat;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection upgrade;
    }
--- more_headers eval
my $up = "Upgrade: websocket\nConnection: Upgrade\n"
         . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
         . "Sec-WebSocket-Version: 13";
[ map { ("Content-Type: application/json", $up, $up) } 1 .. 6 ]
--- request eval
[ map { ("POST /join\n{\"roomName\":\"ws-$_\"}", "GET /ws?room=ws-$_",
         "GET /ws?room=ws-$_") } 1 .. 6 ]
--- error_code eval
[ map { (200, 101, 101) } 1 .. 6 ]
--- response_body_like eval
[ map { (main::joined("ws-$_", "true"), RoomAffinity::ws_sticky("ws-$_"),
         RoomAffinity::ws_sticky("ws-$_")) } 1 .. 6 ]
--- timeout: 3



=== TEST 13: as JSON.parse: the last duplicate member, integers of any size
--- http_config eval
"upstream chat {
    room_affinity \$arg_roomName zone=j12b:1m;
$main::servers$main::urls}
$main::backends"
--- config
    location = /join { room_affinity_join chat; }
--- request eval
[ "POST /join\n{\"roomName\":\"dup-first\",\"roomName\":\"dup-last\"}",
  "POST /join\n{\"n\":123456789012345678901234567890,\"roomName\":\"big-int\"}" ]
--- response_body_like eval
[ main::joined("dup-last", "true"), main::joined("big-int", "true") ]



=== TEST 14: invalid JSON is refused with 400
--- http_config eval: main::chat('j13')
--- config
    location = /join { room_affinity_join chat; }
--- request eval
[ "POST /join\n{\"roomName\": ",
  "POST /join\nroomName=lobby",
  "POST /join\n{\"roomName\":\"a\"} trailing",
  "POST /join\n{\"roomName\":\"\xff\"}",
  "POST /join\n{\"roomName\":\"a\\u0000b\"}",
  "POST /join\n{'roomName':'a'}",
  "POST /join\n[\"roomName\", \"a\"]" ]
--- error_code eval
[ (400) x 7 ]
--- response_body_like eval
[ main::error_like("invalid_json", 'the body is not valid JSON: [^"]+ \(line 1, column \d+\)'),
  main::error_like("invalid_json", "the body is not valid JSON: '\\[' or '\\{' expected near 'roomName' \\(line 1, column 8\\)"),
  main::error_like("invalid_json", 'the body is not valid JSON: end of file expected [^"]+'),
  main::error_like("invalid_json", 'the body is not valid JSON: unable to decode byte 0xff near .*'),
  main::error_like("invalid_json", 'the body is not valid JSON: .*NUL.*'),
  main::error_like("invalid_json", 'the body is not valid JSON: [^"]+'),
  RoomAffinity::error_json("not_an_object", 'the body is a JSON array, not an object') ]
--- no_error_log
[error]



=== TEST 15: a missing, empty or non-string room is refused with 400
--- http_config eval: main::chat('j14')
--- config
    location = /join { room_affinity_join chat; }
    location = /status { room_affinity_status; }
--- request eval
[ "POST /join\n{}",
  "POST /join\n{\"room\":\"a\"}",
  "POST /join\n{\"roomName\":\"\"}",
  "POST /join\n{\"roomName\":42}",
  "POST /join\n{\"roomName\":null}",
  "POST /join\n{\"roomName\":[\"a\"]}",
  "POST /join\n{\"roomName\":{\"name\":\"a\"}}",
  "POST /join",
  "GET /join",
  "GET /join?roomName=",
  "GET /join?roomName=%FF",
  "GET /join?roomName=a%00b",
  "GET /join?roomName=100%",
  "GET /join?roomName=100%zz",
  "GET /status" ]
--- error_code eval
[ (400) x 14, 200 ]
--- response_body_like eval
[ RoomAffinity::error_json("missing_room", '"roomName" is missing'),
  RoomAffinity::error_json("missing_room", '"roomName" is missing'),
  RoomAffinity::error_json("empty_room", '"roomName" is empty'),
  RoomAffinity::error_json("invalid_room", '"roomName" is not a string'),
  RoomAffinity::error_json("invalid_room", '"roomName" is not a string'),
  RoomAffinity::error_json("invalid_room", '"roomName" is not a string'),
  RoomAffinity::error_json("invalid_room", '"roomName" is not a string'),
  RoomAffinity::error_json("invalid_json", 'the body is empty'),
  RoomAffinity::error_json("missing_room", 'the query argument "roomName" is missing'),
  RoomAffinity::error_json("empty_room", 'the query argument "roomName" is empty'),
  RoomAffinity::error_json("invalid_room", 'the query argument "roomName" is not UTF-8 text'),
  RoomAffinity::error_json("invalid_room", 'the query argument "roomName" is not UTF-8 text'),
  RoomAffinity::error_json("invalid_room", 'the query argument "roomName" has a bad %-escape'),
  RoomAffinity::error_json("invalid_room", 'the query argument "roomName" has a bad %-escape'),
  main::zone_rooms("j14", 0) ]



=== TEST 16: the errors are JSON too
--- http_config eval: main::chat('j15')
--- config
    location = /join { room_affinity_join chat; }
--- request
POST /join
{"roomName":1}
--- error_code: 400
--- response_headers
Content-Type: application/json



=== TEST 17: a body above room_affinity_join_max_body_size (4k) is 413
--- http_config eval: main::chat('j16')
--- config
    location = /join { room_affinity_join chat; }
--- request eval
[ "POST /join\n" . main::padded("at-limit", 4096),
  "POST /join\n" . main::padded("above-limit", 4097),
  "POST /join\n" . main::padded("way-above", 100000) ]
--- error_code eval
[200, 413, 413]
--- response_body_like eval
[ main::joined("at-limit", "true"),
  RoomAffinity::error_json("body_too_large", 'the body is larger than 4096 bytes'),
  RoomAffinity::error_json("body_too_large", 'the body is larger than 4096 bytes') ]



=== TEST 18: the limit is configurable, and applies to chunked bodies
--- http_config eval: main::chat('j17')
--- config
    location = /join {
        room_affinity_join chat;
        room_affinity_join_max_body_size 100;
    }
--- more_headers
Transfer-Encoding: chunked
--- request eval
[ "POST /join\n" . RoomAffinity::chunked(main::padded("small-chunked", 100), 7),
  "POST /join\n" . RoomAffinity::chunked(main::padded("big-chunked", 101), 50),
  "POST /join\n" . RoomAffinity::chunked(main::padded("bigger-chunked", 3000), 1000) ]
--- error_code eval
[200, 413, 413]
--- response_body_like eval
[ main::joined("small-chunked", "true"),
  RoomAffinity::error_json("body_too_large", 'the body is larger than 100 bytes'),
  RoomAffinity::error_json("body_too_large", 'the body is larger than 100 bytes') ]



=== TEST 19: 413 before the body is sent when the client expects 100
--- http_config eval: main::chat('j18')
--- config
    location = /join {
        room_affinity_join chat;
        lingering_timeout 100ms;
    }
--- raw_request eval
"POST /join HTTP/1.1\r
Host: localhost\r
Content-Type: application/json\r
Content-Length: 100000\r
Expect: 100-continue\r
\r
"
--- error_code: 413
--- raw_response_headers_unlike
100 Continue
--- response_body_like eval
RoomAffinity::error_json("body_too_large", 'the body is larger than 4096 bytes')



=== TEST 20: a body nginx buffered to a temporary file is read from it
--- http_config eval: main::chat('j19')
--- config
    location = /join {
        room_affinity_join chat;
        client_body_buffer_size 64;
    }
    location = /join-file {
        room_affinity_join chat;
        client_body_in_file_only clean;
    }
--- request eval
[ "POST /join\n" . main::padded("in-a-file", 3000),
  "POST /join-file\n{\"roomName\":\"in-a-file\"}",
  "POST /join-file\n{\"roomName\":" ]
--- error_code eval
[200, 200, 400]
--- response_body_like eval
[ main::joined("in-a-file", "true"), main::joined("in-a-file", "false"),
  main::error_like("invalid_json", 'the body is not valid JSON: [^"]+') ]
--- error_log
a client request body is buffered to a temporary file
--- no_error_log
[alert]
[crit]



=== TEST 21: other methods: 405 with Allow
--- http_config eval: main::chat('j20')
--- config
    location = /join { room_affinity_join chat; }
--- request eval
[ "PUT /join\n{\"roomName\":\"a\"}", "DELETE /join?roomName=a",
  "OPTIONS /join", "PATCH /join\n{\"roomName\":\"a\"}" ]
--- error_code eval
[405, 405, 405, 405]
--- response_headers eval
[ ("Allow: GET, HEAD, POST\nContent-Type: application/json") x 4 ]
--- response_body_like eval
[ (RoomAffinity::error_json("method_not_allowed",
                    'use POST with a JSON body, or GET')) x 4 ]



=== TEST 22: no server can take the room: 503 with Retry-After
--- http_config eval
"upstream chat {
    room_affinity \$arg_roomName zone=j21:1m;
    server 127.0.0.1:\$TEST_NGINX_B1_PORT down;
    server 127.0.0.1:\$TEST_NGINX_B2_PORT down;
}
upstream later {
    room_affinity \$arg_roomName zone=j21b:1m;
    server 127.0.0.1:\$TEST_NGINX_B1_PORT down;
}
$main::backends"
--- config
    location = /join { room_affinity_join chat; }
    location = /join-later { room_affinity_join later retry_after=1m; }
    location = /status { room_affinity_status; }
--- request eval
[ "POST /join\n{\"roomName\":\"nowhere\"}", "GET /join-later?roomName=x",
  "GET /status" ]
--- error_code eval
[503, 503, 200]
--- response_headers eval
[ "Retry-After: 5\nContent-Type: application/json",
  "Retry-After: 60", "!Retry-After" ]
--- response_body_like eval
[ RoomAffinity::error_json("no_backend",
                   'no server of upstream "chat" can take the room'),
  RoomAffinity::error_json("no_backend",
                   'no server of upstream "later" can take the room'),
  main::zone_rooms("j21", 0) ]



=== TEST 23: a room whose backend failed is moved by the next join
(the upstream has a zone, so that the failure seen by the worker that
proxied is known to the worker that answers the next join)
--- http_config eval
"upstream chat {
    zone chat_peers 64k;
    room_affinity \$arg_roomName zone=j22:1m;
    server 127.0.0.1:\$TEST_NGINX_B1_PORT max_fails=1 fail_timeout=60s;
    server 127.0.0.1:\$TEST_NGINX_DEAD_PORT max_fails=1 fail_timeout=60s;
    room_affinity_url 127.0.0.1:\$TEST_NGINX_B1_PORT ws://b1.test/chat;
    room_affinity_url 127.0.0.1:\$TEST_NGINX_DEAD_PORT ws://b9.test/chat;
}
$main::backends"
--- config
    location = /join { room_affinity_join chat; }
    location /chat { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- request eval
[ (map { "GET /join?roomName=m$_" } 1 .. 6),
  (map { "GET /chat?roomName=p$_" } 1 .. 4),
  (map { "GET /join?roomName=m$_" } 1 .. 6),
  "GET /status" ]
--- response_body_like eval
[ (map { main::placed_on("m$_") } 1 .. 6),
  (map { qr/^b1$/ } 1 .. 4),
  (map { main::joined_at("ws://b1.test/chat", "m$_", "false") } 1 .. 6),
  main::moved_from_b9("m") ]



=== TEST 24: the upstream may be defined after the location
--- config
    location = /join { room_affinity_join later; }
    }
    upstream later {
        room_affinity $arg_roomName zone=j23:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_B1_PORT;
        return 200 "b1\n";
--- request
GET /join?roomName=late
--- response_body_like eval
main::joined_at("ws://127.0.0.1:$ENV{TEST_NGINX_B1_PORT}", "late", "true")



=== TEST 25: an unknown upstream fails nginx -t, naming the directive
--- config
    location = /join { room_affinity_join nope; }
--- must_die
--- error_log eval
qr/\[emerg\] .*no upstream "nope" for "room_affinity_join" in \S+nginx\.conf:\d+/



=== TEST 26: an upstream without room_affinity fails nginx -t
--- http_config
    upstream plain {
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
    location = /join { room_affinity_join plain; }
--- must_die
--- error_log eval
qr/\[emerg\] .*upstream "plain" in "room_affinity_join" has no "room_affinity" directive in \S+nginx\.conf:\d+/



=== TEST 27: joins keep a room alive: its clients connect to the backend,
not through nginx, yet the room outlives its ttl while they keep joining
--- http_config eval: main::chat('j27', '$arg_roomName ttl=2s')
--- config
    location = /join { room_affinity_join chat; }
    location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
[ "GET /join?roomName=kept", "GET /ctl/sleep?wait=1200",
  "GET /join?roomName=kept", "GET /ctl/sleep?wait=1200",
  "GET /join?roomName=kept", "GET /ctl/sleep?wait=1200",
  "GET /join?roomName=kept" ]
--- response_body_like eval
[ main::joined("kept", "true"), qr/slept/, main::joined("kept", "false"),
  qr/slept/, main::joined("kept", "false"), qr/slept/,
  main::joined("kept", "false") ]



=== TEST 28: an implicit upstream (a proxy_pass host) is not an upstream
--- http_config
    upstream chat {
        room_affinity $arg_roomName zone=j26:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
    location / { proxy_pass http://localhost; }
    location = /join { room_affinity_join localhost; }
--- must_die
--- error_log
no upstream "localhost" for "room_affinity_join"



=== TEST 29: a duplicate room_affinity_join
--- http_config
    upstream chat {
        room_affinity $arg_roomName zone=j27:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
    location = /join {
        room_affinity_join chat;
        room_affinity_join chat;
    }
--- must_die
--- error_log
"room_affinity_join" directive is duplicate



=== TEST 30: the join and proxy_pass in one location: one would be lost
--- http_config
    upstream chat {
        room_affinity $arg_roomName zone=j30:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
    location = /join {
        room_affinity_join chat;
        proxy_pass http://chat;
    }
--- must_die
--- error_log
"room_affinity_join" conflicts with another content handler in the location



=== TEST 31: the status and the join in one location
--- http_config
    upstream chat {
        room_affinity $arg_roomName zone=j31:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
    location = /join {
        room_affinity_status;
        room_affinity_join chat;
    }
--- must_die
--- error_log
"room_affinity_join" directive conflicts with another content handler in the location



=== TEST 32: an unknown parameter
--- http_config
    upstream chat {
        room_affinity $arg_roomName zone=j28:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
    location = /join { room_affinity_join chat retry_after=soon; }
--- must_die
--- error_log
invalid parameter "retry_after=soon"



=== TEST 33: an empty field name
--- config
    room_affinity_field "";
--- must_die
--- error_log
"room_affinity_field" directive must not be empty



=== TEST 34: the join directive belongs in a location
--- http_config
    upstream chat {
        room_affinity $arg_roomName zone=j30:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
--- config
    room_affinity_join chat;
--- must_die
--- error_log
"room_affinity_join" directive is not allowed here
