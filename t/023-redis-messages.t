# Every Redis message is untrusted: each bad one is logged (rate limited,
# with the reason), counted, and ignored; nothing crashes, the backend
# table keeps its last good report.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

RoomAffinity::start_control(redis => 1);

our $backends = RoomAffinity::backends(2);
our $config = RoomAffinity::redis_locations();
our ($A, $B) = RoomAffinity::urls(2);
our $upstream = RoomAffinity::upstream('zone=msg b1 b2');

sub sig { RoomAffinity::pub("signaling", $_[0]) }

our @bad = (
    qq({"url":"$A","connections":),                    # json
    qq([1,2,3]),                                       # json: not an object
    "\x00\xff\xfe\x01 binary junk",                    # json
    qq({"url":"$A","connections":NaN}),                # json
    qq({"url":"$A","connections":1,"connections":2}),  # dup_key
    qq({"connections":1}),                             # url: missing
    qq({"url":"not a url","connections":1}),           # url
    qq({"url":42,"connections":1}),                    # url: not a string
    qq({"url":"$A","connections":"5"}),                # type
    qq({"url":"$A","connections":5,"draining":1}),     # type
    qq({"url":"$A","connections":-1}),                 # range
    qq({"url":"$A","connections":99999999999999999999}), # range
    qq({"url":"$A","connections":1,"cpu":150}),        # range
    qq({"url":"$A","connections":1.5}),                # range
    qq({"url":"$A"}),                                  # missing
    qq({"url":"$A","connections":1,"pad":") . ("x" x 5000) . qq("}), # too_large
);

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: each class of bad message is rejected, counted, and changes nothing
--- http_config eval
"room_affinity_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;
$main::upstream
$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ready", main::sig(qq({"url":"$main::A","connections":5})),
    (map { main::sig($_) } @main::bad), "/?room=x", "/status")
--- response_body_like eval
RoomAffinity::json_like({
    upstreams => { chat => { backends => {
        RoomAffinity::b(1, { report => { age_ms => RoomAffinity::count(),
                                         connections => 5,
                                         cpu => RoomAffinity::absent(),
                                         capacity => RoomAffinity::absent(),
                                         draining => JSON::PP::false } }) } } },
    redis => { messages => {
        applied => 1, unknown_backend => 0, rejected => 16,
        rejected_by_reason => { too_large => 1, json => 4, dup_key => 1,
                                url => 3, type => 2, range => 4,
                                missing => 1, signature => 0 } } } },
  qr/slept\nsubscribed\n(?:published :1\n){17}b[12]\n/)
--- error_log eval
[qr/ignored redis message on "signaling": json \(truncated JSON\), \d+ bytes "\{"url":/,
 qr/ignored redis message on "signaling": too_large/,
 qr/ignored redis message on "signaling": dup_key/,
 qr/ignored redis message on "signaling": url/,
 qr/ignored redis message on "signaling": type/,
 qr/ignored redis message on "signaling": range/,
 qr/ignored redis message on "signaling": missing/]
--- no_error_log
[crit]
[alert]



=== TEST 2: the log is rate limited per reason
--- http_config eval
"room_affinity_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;
$main::upstream
$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ready", (map { main::sig("{bad$_") } 1..20), "/status")
--- response_body_like eval
RoomAffinity::json_like({ redis => { messages => { rejected => 20,
    rejected_by_reason => { too_large => 0, json => 20 } } } },
  qr/slept\nsubscribed\n(?:published :1\n){20}/)
--- grep_error_log eval
qr/ignored redis message on "signaling": json/
--- grep_error_log_out
ignored redis message on "signaling": json



=== TEST 3: with a prefix, only the prefixed channels are read
--- http_config eval
"room_affinity_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT prefix=app1:;
$main::upstream
$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ready",
    RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":11})),
    RoomAffinity::pub("app1:signaling",
                      qq({"url":"$main::B","connections":22})),
    "/status")
--- response_body_like eval
RoomAffinity::json_like({
    upstreams => { chat => { backends => {
        RoomAffinity::b(1, { url => "", weight => 1, registered => JSON::PP::false,
                             report => RoomAffinity::absent() }),
        RoomAffinity::b(2, { report => { connections => 22 } }) } } },
    redis => { messages => { applied => 1 } } },
  qr/slept\nsubscribed\npublished :0\npublished :1\n/)
--- error_log
subscribed to "app1:register" and "app1:signaling"
