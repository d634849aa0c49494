# A WebSocket upgrade passes through unchanged, to the room's backend.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

RoomAffinity::start_control();

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: 101 Switching Protocols and the frames come back untouched
--- http_config
    upstream chat {
        room_affinity $arg_room zone=ws1:1m;
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
        server 127.0.0.1:$TEST_NGINX_B2_PORT;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_B1_PORT;
        location / {
            proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header X-Backend b1;
        }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_B2_PORT;
        location / {
            proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header X-Backend b2;
        }
    }
--- config
    location /ws {
        proxy_pass http://chat;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
--- more_headers
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- request eval
[ map { "GET /ws?room=lobby" } 1..4 ]
--- error_code eval
[101, 101, 101, 101]
--- response_headers eval
[ map { "Upgrade: websocket\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" }
  1..4 ]
--- response_body_like eval
[ map { RoomAffinity::ws_sticky("lobby") } 1..4 ]
--- timeout: 3
