# backup servers take rooms only when no primary server can.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: primaries up: no room on the backup
--- backends: 1 2 3
--- upstream: zone=bk1 b1 b2 b3:backup
--- config
    location / { proxy_pass http://chat; }
--- request eval
[ map { "GET /?room=p$_" } 1..20 ]
--- response_body_like eval
[ map { qr/^b[12]$/ } 1..20 ]



=== TEST 2: no primary can take a room: the backup takes them all
--- backends: 1 3
--- upstream: zone=bk2 b1:down dead b3:backup
--- config
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
--- request eval
[ (map { ("GET /?room=q$_", "GET /?room=q$_") } 1..5), "GET /status" ]
--- response_body_like eval
[ (map { (qr/^b3$/, qr/^b3$/) } 1..5),
  RoomAffinity::json_like({ upstreams => { chat => { backends => {
      RoomAffinity::b(3, { url => "", weight => 1, backup => JSON::PP::true,
                           state => "up", live => 0, rooms => 5 }) } } } }) ]
