# The room table is shared by all workers: with two workers, every room
# still reaches one backend whichever worker takes the connection.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

master_on();
workers(2);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: two workers, twelve rooms, many connections, one backend a room
--- backends: 1 2 3 4
--- upstream: zone=w1 b1 b2 b3 b4
--- config
    location / { proxy_pass http://chat; }
    location = /pid { return 200 "$pid\n"; }
--- request eval
[ (map { my $i = $_; ("GET /pid", map { "GET /?room=w$_" } 1..12) } 1..10),
  "GET /pid" ]
--- response_body_like eval
[ (map { my $i = $_; (RoomAffinity::pid_seen(),
                      map { RoomAffinity::sticky("w$_") } 1..12) } 1..10),
  RoomAffinity::pids_at_least(2) ]
--- no_error_log
[error]
