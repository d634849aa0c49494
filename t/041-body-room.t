# Rooms named in JSON bodies: with "room_affinity_body on", the body is read
# before the content handler, $room_affinity_body_room is its member
# "roomName" (room_affinity_field), and the backend still receives the body
# byte for byte: small, large, chunked, in a temporary file.  A body that
# names no room is balanced without recording, or refused in strict mode.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

no_shuffle();
no_root_location();

our $backends = RoomAffinity::backends(4);
our $servers = RoomAffinity::servers(4);

# backends that answer "bN " and the request body they received: the body
# is read by a proxy_pass to the backend itself, then $request_body
# replaces BODY in the answer
our $echo = CORE::join '', map { "
    server {
        listen 127.0.0.1:\$TEST_NGINX_B${_}_PORT;
        client_body_buffer_size 1m;
        client_max_body_size 10m;
        location / {
            rewrite ^ /tpl break;
            proxy_pass http://127.0.0.1:\$TEST_NGINX_B${_}_PORT;
            sub_filter_types *;
            sub_filter BODY \$request_body;
        }
        location = /tpl { return 200 'b$_ BODY'; }
    }" } 1 .. 4;

# "bN BODY", bN the same for every request of the room
sub echoed {
    my ($room, $body) = @_;
    return qr!\A(b\d) \Q$body\E\z(?(?{ RoomAffinity::same_backend($room, $1) })|(*FAIL))!s;
}

# the http block of most tests: the upstream "chat" over the four backends
# (or others), keyed by the room of the body unless told otherwise
sub chat {
    my ($zone, $backs, $key) = @_;
    $key //= '$room_affinity_body_room';
    return "upstream chat {\n    room_affinity $key zone=$zone:1m;\n"
           . "$servers}\n" . ($backs // $backends);
}

# the status JSON: the zone of the upstream "chat" holds n rooms
sub zone_rooms {
    my ($zone, $n) = @_;
    return RoomAffinity::json_like({ upstreams => { chat => { zone => {
        name => $zone, rooms => $n } } } });
}

# the status answer for one room: the room is known, in the upstream "chat"
sub room_is {
    my ($room) = @_;
    return RoomAffinity::json_is_answer({ room => $room, upstream => "chat" });
}

# a JSON body naming $room, of about $len bytes, with unicode and newlines
sub big {
    my ($room, $len) = @_;
    my $pad = '';
    my $i = 0;
    $pad .= sprintf(qq(,\n  "k%d": "v\\u00e9\\n%d"), $i, $i++)
        while length($pad) < $len;
    return qq({"roomName": "$room"$pad});
}

our $json = qq({"roomName": "echo",\n  "user": "\\u00e9l\\u00e8ve",)
            . qq( "n": [1, 2.50, {"x": null}], "s": "a\\"b\\\\c"});

run_tests();

__DATA__

=== TEST 1: a POSTed JSON body names the room: every request of it sticks
--- http_config eval: main::chat('b1')
--- config
    location / {
        room_affinity_body on;
        proxy_pass http://chat;
    }
    location = /status { room_affinity_status; }
--- request eval
[ (map { ("POST /signaling/join\n{\"roomName\":\"alpha\"}",
          "POST /signaling/join\n{\"user\":\"ann\",\"roomName\":\"beta\"}",
          "POST /chat\n {\"roomName\" : \"gamma\", \"n\": [1, 2]} ") } 1 .. 6),
  "GET /status" ]
--- response_body_like eval
[ (map { (RoomAffinity::sticky("alpha"), RoomAffinity::sticky("beta"),
          RoomAffinity::sticky("gamma")) } 1 .. 6),
  main::zone_rooms("b1", 3) ]
--- no_error_log
[error]



=== TEST 2: the debug log names the room found in the body
--- http_config eval: main::chat('b2')
--- config
    location / {
        room_affinity_body on;
        proxy_pass http://chat;
    }
--- request
POST /
{"roomName":"logged"}
--- response_body_like: ^b\d$
--- error_log
room_affinity: reading the body
room_affinity: body room "logged"
room_affinity: new room "logged" placed on



=== TEST 3: the backend receives the body unchanged (the origin's join)
--- http_config eval: main::chat('b3', $main::echo)
--- config
    location /signaling/join {
        room_affinity_body on;
        proxy_pass http://chat;
    }
    location = /status { room_affinity_status; }
--- more_headers
Content-Type: application/json
--- request eval
[ ("POST /signaling/join\n$main::json") x 3, "GET /status?room=echo" ]
--- response_body_like eval
[ (main::echoed("echo", $main::json)) x 3,
  main::room_is("echo") ]
--- no_error_log
[error]



=== TEST 4: a large body, buffered to a temporary file, is read from it
--- http_config eval: main::chat('b4', $main::echo)
--- config
    location / {
        room_affinity_body on;
        proxy_pass http://chat;
    }
--- request eval
[ "POST /\n" . main::big("large", 200000),
  "POST /\n" . main::big("large", 100000),
  "POST /\n" . main::big("larger", 300000) ]
--- response_body_like eval
[ main::echoed("large", main::big("large", 200000)),
  main::echoed("large", main::big("large", 100000)),
  main::echoed("larger", main::big("larger", 300000)) ]
--- error_log
a client request body is buffered to a temporary file
--- no_error_log
[alert]
[crit]



=== TEST 5: a small body in a temporary file (client_body_buffer_size 64)
--- http_config eval: main::chat('b5', $main::echo)
--- config
    location / {
        room_affinity_body on;
        client_body_buffer_size 64;
        proxy_pass http://chat;
    }
--- request eval
[[ "POST /\n", { value => $main::json, delay_before => 0.1 } ]]
--- response_body_like eval
main::echoed("echo", $main::json)
--- error_log
a client request body is buffered to a temporary file
room_affinity: body room "echo"



=== TEST 6: a chunked body, in one packet and in packets sent apart
--- http_config eval: main::chat('b6', $main::echo)
--- config
    location / {
        room_affinity_body on;
        proxy_pass http://chat;
    }
--- more_headers
Transfer-Encoding: chunked
--- request eval
my $c = RoomAffinity::chunked($main::json, 9);
my $big = RoomAffinity::chunked(main::big("chunked-big", 100000), 4096);
[ "POST /\n$c",
  [ "POST /\n" . substr($c, 0, 30),
    { value => substr($c, 30, 40), delay_before => 0.1 },
    { value => substr($c, 70), delay_before => 0.1 } ],
  "POST /\n$big" ]
--- response_body_like eval
[ main::echoed("echo", $main::json), main::echoed("echo", $main::json),
  main::echoed("chunked-big", main::big("chunked-big", 100000)) ]
--- no_error_log
[error]



=== TEST 7: a body sent in parts: the room is read once the body is whole
--- http_config eval: main::chat('b7', $main::echo)
--- config
    location / {
        room_affinity_body on;
        proxy_pass http://chat;
    }
--- request eval
[[ "POST /\n" . substr($main::json, 0, 5),
   { value => substr($main::json, 5, 20), delay_before => 0.2 },
   { value => substr($main::json, 25), delay_before => 0.2 } ]]
--- response_body_like eval
main::echoed("echo", $main::json)
--- error_log
room_affinity: body room "echo"



=== TEST 8: bodies that name no room are balanced round robin, unrecorded
--- http_config eval
"upstream chat {
    room_affinity \$room_affinity_body_room zone=b8:1m;
    server 127.0.0.1:\$TEST_NGINX_B1_PORT;
    server 127.0.0.1:\$TEST_NGINX_B2_PORT;
}
$main::backends"
--- config
    location / {
        room_affinity_body on;
        proxy_pass http://chat;
    }
    location = /status { room_affinity_status; }
--- request eval
[ "POST /\nhello",
  "POST /\nroomName=form",
  "POST /\n{\"room\":\"x\"}",
  "POST /\n{\"roomName\":5}",
  "POST /\n{\"roomName\":\"\"}",
  "POST /\n[\"roomName\"]",
  "POST /\n{\"roomName\":\"cut",
  "GET /",
  "GET /status" ]
--- response_body_like eval
[ qr/^b1$/, qr/^b2$/, qr/^b1$/, qr/^b2$/, qr/^b1$/, qr/^b2$/, qr/^b1$/,
  qr/^b2$/, main::zone_rooms("b8", 0) ]
--- no_error_log
[error]



=== TEST 9: the debug log says why a body names no room
--- http_config eval: main::chat('b9')
--- config
    location / {
        room_affinity_body on;
        proxy_pass http://chat;
    }
--- request
POST /
{"roomName":7}
--- response_body_like: ^b\d$
--- error_log
room_affinity: the body names no room: "roomName" is not a string
room_affinity: empty key, round robin



=== TEST 10: strict: a body that names no room is refused with 400
--- http_config eval: main::chat('b10')
--- config
    location / {
        room_affinity_body strict;
        proxy_pass http://chat;
    }
--- request eval
[ "POST /\nhello",
  "POST /\n{\"room\":\"x\"}",
  "POST /\n{\"roomName\":5}",
  "POST /\n{\"roomName\":\"\"}",
  "POST /\n{\"roomName\":\"strict\"}",
  "GET /" ]
--- error_code eval
[400, 400, 400, 400, 200, 200]
--- response_body_like eval
[ RoomAffinity::error_json("invalid_json", qr/\Athe body is not valid JSON: /),
  RoomAffinity::error_json("missing_room", '"roomName" is missing'),
  RoomAffinity::error_json("invalid_room", '"roomName" is not a string'),
  RoomAffinity::error_json("empty_room", '"roomName" is empty'),
  RoomAffinity::sticky("strict"), qr/^b\d$/ ]



=== TEST 11: strict: the 400 is JSON, also for a body in a temporary file
--- http_config eval: main::chat('b11')
--- config
    location / {
        room_affinity_body strict;
        client_body_buffer_size 64;
        proxy_pass http://chat;
    }
--- request eval
"POST /\n" . ("not json " x 1000)
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like eval
RoomAffinity::error_json("invalid_json", qr/\Athe body is not valid JSON: /)
--- error_log
a client request body is buffered to a temporary file



=== TEST 12: client_max_body_size is honoured (413), chunked or not
--- http_config eval: main::chat('b12')
--- config
    location / {
        room_affinity_body on;
        client_max_body_size 100;
        proxy_pass http://chat;
    }
    location /chunked {
        room_affinity_body on;
        client_max_body_size 100;
        proxy_pass http://chat;
    }
--- more_headers eval
[ "", "", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked" ]
--- request eval
[ "POST /\n{\"roomName\":\"limit\"}",
  "POST /\n{\"roomName\":\"limit\",\"pad\":\"" . ("x" x 200) . "\"}",
  "POST /chunked\n" . RoomAffinity::chunked("{\"roomName\":\"limit\"}", 5),
  "POST /chunked\n" . RoomAffinity::chunked("{\"roomName\":\"limit\",\"pad\":\""
                                    . ("x" x 200) . "\"}", 50) ]
--- error_code eval
[200, 413, 200, 413]
--- response_body_like eval
[ RoomAffinity::sticky("limit"), qr/413 Request Entity Too Large/,
  RoomAffinity::sticky("limit"), qr/413 Request Entity Too Large/ ]



=== TEST 13: without room_affinity_body the body is not read
--- http_config eval: main::chat('b13')
--- config
    location / {
        proxy_pass http://chat;
    }
--- request
POST /
{"roomName":"unread"}
--- response_body_like: ^b\d$
--- error_log
room_affinity: no room in the body (room_affinity_body is off here)
room_affinity: empty key, round robin
--- no_error_log
room_affinity: reading the body
room_affinity: body room



=== TEST 14: a request without a body is not read, even when strict
--- http_config eval: main::chat('b14')
--- config
    location / {
        room_affinity_body strict;
        proxy_pass http://chat;
    }
--- request
GET /?roomName=none
--- response_body_like: ^b\d$
--- no_error_log
room_affinity: reading the body
[error]



=== TEST 15: a denied request is not read: the body comes after access
--- http_config eval: main::chat('b15')
--- config
    location / {
        room_affinity_body on;
        deny all;
        proxy_pass http://chat;
    }
--- request
POST /
{"roomName":"denied"}
--- error_code: 403
--- no_error_log
room_affinity: reading the body



=== TEST 16: the body room or the query argument: join by POST, then GET
--- http_config eval
"map \$room_affinity_body_room \$room {
    ''       \$arg_room;
    default  \$room_affinity_body_room;
}
upstream chat {
    room_affinity \$room zone=b16:1m;
$main::servers}
$main::backends"
--- config
    location / {
        room_affinity_body on;
        proxy_pass http://chat;
    }
    location = /status { room_affinity_status; }
--- request eval
[ map { ("POST /signaling/join\n{\"roomName\":\"mixed-$_\"}",
         "GET /status?room=mixed-$_",
         "GET /socket?room=mixed-$_", "GET /socket?room=mixed-$_") } 1 .. 4 ]
--- response_body_like eval
[ map { (RoomAffinity::sticky("mixed-$_"), main::room_is("mixed-$_"),
         RoomAffinity::sticky("mixed-$_"),
         RoomAffinity::sticky("mixed-$_")) } 1 .. 4 ]



=== TEST 17: room_affinity_field names the member
--- http_config eval: main::chat('b17')
--- config
    room_affinity_field room;
    location / {
        room_affinity_body on;
        proxy_pass http://chat;
    }
    location = /status { room_affinity_status; }
--- request eval
[ "POST /\n{\"room\":\"field\"}", "POST /\n{\"room\":\"field\"}",
  "GET /status?room=field" ]
--- response_body_like eval
[ RoomAffinity::sticky("field"), RoomAffinity::sticky("field"),
  main::room_is("field") ]



=== TEST 18: the body survives an internal redirect (try_files)
--- http_config eval: main::chat('b18', $main::echo)
--- config
    location / {
        room_affinity_body on;
        root html;
        try_files /nonexistent @chat;
    }
    location @chat {
        room_affinity_body on;
        proxy_pass http://chat;
    }
--- request eval
[ ("POST /\n$main::json") x 2 ]
--- response_body_like eval
[ (main::echoed("echo", $main::json)) x 2 ]



=== TEST 19: $room_affinity_arg_room: the query argument, decoded
--- http_config eval
"upstream chat {
    room_affinity \$room_affinity_arg_room zone=b19:1m;
$main::servers}
$main::backends"
--- config
    location / { proxy_pass http://chat; }
    location /r { room_affinity_field r; proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- request eval
[ "GET /?roomName=caf%C3%A9+au+lait%2B1",
  "GET /?roomName=caf%c3%a9%20au%20lait%2b1",
  "GET /r?r=short",
  "GET /status?room=caf%C3%A9%20au%20lait%2B1",
  "GET /status?room=short" ]
--- response_body_like eval
[ RoomAffinity::sticky("arg"), RoomAffinity::sticky("arg"),
  qr/^b\d$/,
  main::room_is("caf\x{c3}\x{a9} au lait+1"),
  main::room_is("short") ]



=== TEST 20: a body over room_affinity_body_max_size is not parsed: it
reaches the backend whole, its room unread (refused when strict); an empty
chunked body is no body, even when strict
--- http_config eval: main::chat('b20', $main::echo)
--- config
    room_affinity_body_max_size 100;
    location = /status { room_affinity_status; }
    location / {
        room_affinity_body on;
        proxy_pass http://chat;
    }
    location /strict {
        room_affinity_body strict;
        proxy_pass http://chat;
    }
--- request eval
[ "POST /\n" . main::big("over", 200),
  "POST /\n{\"roomName\":\"under\"}",
  "POST /strict\n" . main::big("over", 200),
  "POST /strict\n" . RoomAffinity::chunked("", 1),
  "GET /status?room=over" ]
--- more_headers eval
[ "", "", "", "Transfer-Encoding: chunked", "" ]
--- error_code eval
[200, 200, 400, 200, 404]
--- response_body_like eval
[ qr/\Ab\d \Q${\ main::big("over", 200)}\E\z/,
  main::echoed("under", '{"roomName":"under"}'),
  RoomAffinity::error_json("body_too_large",
      "the body is over room_affinity_body_max_size (100)"),
  qr/\Ab\d \z/,
  RoomAffinity::json_is_answer({ error => "unknown room", room => "over" }) ]



=== TEST 21: an invalid mode
--- config
    room_affinity_body maybe;
--- must_die
--- error_log
invalid value "maybe" in
