# Same room, same backend: across requests, new connections, keep-alive
# upstream connections and key sources; an empty key is balanced without
# being recorded; room names longer than 512 bytes are kept as a digest.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: every request of a room reaches the room's backend
--- backends: 1 2 3 4
--- upstream: zone=s1 b1 b2 b3 b4 keepalive=8
--- config
    location / {
        proxy_pass http://chat;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
--- request eval
[ map { ("GET /?room=alpha", "GET /?room=beta", "GET /?room=gamma") } 1..8 ]
--- response_body_like eval
[ map { (RoomAffinity::sticky("alpha"), RoomAffinity::sticky("beta"),
         RoomAffinity::sticky("gamma")) } 1..8 ]
--- no_error_log
[error]



=== TEST 2: the debug log names the decisions: new placement, then hit
--- backends: 1 2
--- upstream: zone=s1b b1 b2
--- config
    location / {
        mirror /again;
        proxy_pass http://chat;
    }
    location = /again {
        internal;
        proxy_pass http://chat$request_uri;
    }
--- request
GET /?room=delta
--- response_body_like: ^b[12]$
--- error_log eval
[qr/room_affinity: new room "delta" placed on "127\.0\.0\.1:\d+"/,
 qr/room_affinity: hit room "delta" backend "127\.0\.0\.1:\d+"/]



=== TEST 3: the room comes from a header, a cookie or a part of the path
--- backends: 1 2
--- upstream
by_header $http_x_room zone=s2a b1 b2
by_cookie $cookie_room zone=s2b b1 b2
by_path $room_from_path zone=s2c b1 b2
--- http_config
    map $uri $room_from_path {
        ~^/rooms/(?<name>[^/]+)  $name;
        default                  "";
    }
--- config
    location /h { proxy_pass http://by_header; }
    location /c { proxy_pass http://by_cookie; }
    location /rooms/ { proxy_pass http://by_path; }
    location = /status { room_affinity_status; }
--- request eval
[ (map { ("GET /h", "GET /c", "GET /rooms/lobby/ws") } 1..6),
  "GET /status?room=lobby" ]
--- more_headers
X-Room: lobby-h
Cookie: room=lobby-c
--- response_body_like eval
[ (map { (RoomAffinity::sticky("h"), RoomAffinity::sticky("c"),
          RoomAffinity::sticky("p")) } 1..6),
  RoomAffinity::json_is_answer({ room => "lobby", upstream => "by_path",
      backend => qr/^127\.0\.0\.1:(?:$ENV{TEST_NGINX_B1_PORT}|$ENV{TEST_NGINX_B2_PORT})$/ }) ]



=== TEST 4: an empty key is balanced round robin and not recorded
--- backends: 1 2
--- upstream: zone=s3 b1 b2
--- config
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- request eval
["GET /", "GET /", "GET /", "GET /", "GET /status"]
--- response_body_like eval
[qr/^b1$/, qr/^b2$/, qr/^b1$/, qr/^b2$/,
 RoomAffinity::json_like({ upstreams => { chat => { zone => {
     name => "s3", rooms => 0 } } } })]



=== TEST 5: the debug log says an empty key is balanced round robin
--- backends: 1
--- upstream: zone=s3b b1
--- config
    location / { proxy_pass http://chat; }
--- request
GET /
--- response_body
b1
--- error_log
room_affinity: empty key, round robin



=== TEST 6: a room name longer than 512 bytes is kept as its md5 digest
--- backends: 1 2 3
--- upstream: $http_x_room zone=s4 b1 b2 b3
--- config
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- more_headers eval
"X-Room: " . ("x" x 600)
--- request eval
["GET /", "GET /", "GET /", "GET /status?room=md5:" . do {
    require Digest::MD5; Digest::MD5::md5_hex("x" x 600) },
 "GET /status?room=" . ("x" x 600)]
--- response_body_like eval
require Digest::MD5;
my $md5 = "md5:" . Digest::MD5::md5_hex("x" x 600);
[RoomAffinity::sticky("long"), RoomAffinity::sticky("long"),
 RoomAffinity::sticky("long"),
 RoomAffinity::json_is_answer({ room => $md5, upstream => "chat" }),
 RoomAffinity::json_is_answer({ room => $md5, upstream => "chat" })]



=== TEST 7: a room name of exactly 512 bytes is kept as it is
--- backends: 1
--- upstream: $http_x_room zone=s5 b1
--- config
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- more_headers eval
"X-Room: " . ("y" x 512)
--- request eval
["GET /", "GET /status?room=" . ("y" x 512)]
--- response_body_like eval
[qr/^b1$/, RoomAffinity::json_is_answer({ room => "y" x 512, upstream => "chat" })]
