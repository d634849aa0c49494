# Every instance's connections are the load: the connections one nginx
# instance holds to a backend count in the placements of the others (they
# share their counts through Redis), with reports and without.
#
# Plain Test::More: the Test::Nginx format runs one nginx, this needs two.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use Time::HiRes qw(sleep);

use lib 't/helpers';
use RoomAffinity;

my $base = ($ENV{TEST_NGINX_PORT} || 1984) + 21;
my ($A, $B) = ($base, $base + 1);
my @pids;

RoomAffinity::start_control(redis => 1);

END { kill 'QUIT', $_ for @pids; waitpid $_, 0 for @pids }

# b1 and b2 answer their name, and on /hold after ?ms= milliseconds
my $backends = join '', map {
    "    server { listen 127.0.0.1:$ENV{\"TEST_NGINX_B${_}_PORT\"};\n"
    . "        location / { return 200 \"b$_\\n\"; }\n"
    . "        location /hold { proxy_pass http://127.0.0.1:"
    . "$ENV{TEST_NGINX_CONTROL_PORT}/sleep?wait=\$arg_ms; }\n    }\n"
} 1, 2;

sub http {
    my ($port, $extra) = @_;

    return "    room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};\n"
           . "    upstream chat {\n"
           . "        room_affinity \$arg_room zone=load:1m;\n"
           . "        server 127.0.0.1:$ENV{TEST_NGINX_B1_PORT};\n"
           . "        server 127.0.0.1:$ENV{TEST_NGINX_B2_PORT};\n    }\n"
           . ($extra // '')
           . "    server {\n        listen 127.0.0.1:$port;\n"
           . "        location / { proxy_pass http://chat; }\n"
           . "        location = /status { room_affinity_status; }\n    }\n";
}

push @pids, RoomAffinity::instance('load-a', http($A, $backends));
push @pids, RoomAffinity::instance('load-b', http($B));

my $http = HTTP::Tiny->new(timeout => 5);

sub get {
    my ($port, $path) = @_;
    my $r = $http->get("http://127.0.0.1:$port$path");
    return $r->{success} ? $r->{content} : '';
}

sub status {
    my ($port) = @_;
    return eval { JSON::PP->new->decode(get($port, '/status')) } // {};
}

# the backend object of the server on port p, in the status of an instance
sub backend {
    my ($st, $p) = @_;
    my ($b) = grep { $_->{server} eq "127.0.0.1:$p" }
              @{ $st->{upstreams}{chat}{backends} // [] };
    return $b // {};
}

for my $port ($A, $B) {
    my $ok = 0;
    for (1 .. 250) {
        if (get($port, '/status') =~ /"connected":true/) { $ok = 1; last }
        sleep 0.02;
    }
    ok($ok, "instance on port $port subscribed");
}

# 20 members of room "big" through B, held 10 s
my $held = RoomAffinity::hold($B, 20, '/hold?room=big&ms=10000', 10000);
like($held, qr/^held 20 live 2\d$/, 'B holds 20 connections of room big');

my $room = JSON::PP->new->decode(get($B, '/status?room=big') || '{}');
my ($port) = ($room->{backend} // '') =~ /:(\d+)$/;
ok($port, "room big is on $room->{backend}");

# until A counts them
my $remote = 0;
for (1 .. 300) {
    $remote = backend(status($A), $port)->{remote_live} // 0;
    last if $remote >= 20;
    sleep 0.01;
}
is($remote, 20, "A counts B's 20 connections to big's backend");
is(backend(status($A), $port)->{live}, 0, 'none of them through A');

# no report at all: A's new rooms avoid the backend B loads
my $name = $port == $ENV{TEST_NGINX_B1_PORT} ? 'b1' : 'b2';
my @on = grep { get($A, "/?room=a$_") eq "$name\n" } 1 .. 10;
is(scalar @on, 0, "A places none of 10 new rooms on $name, without reports");

# reports that count B's members (taken more than report_lag after they
# arrived): the estimate is the report, not the report plus them
sleep 0.8;

for my $p ($ENV{TEST_NGINX_B1_PORT}, $ENV{TEST_NGINX_B2_PORT}) {
    RoomAffinity::redis_command($ENV{TEST_NGINX_REDIS_PORT}, 'PUBLISH',
        'signaling', qq({"url":"ws://127.0.0.1:$p","connections":20}));
}
sleep 0.3;

my $est = backend(status($A), $port)->{estimate} // -1;
is($est, 20, "A's estimate of $name: the report's 20, which hold B's 20");

my $sa = status($A);
ok(($sa->{redis}{rooms_shared}{counts_received} // 0) > 0,
   'A received counts');
ok((status($B)->{redis}{rooms_shared}{counts_sent} // 0) > 0,
   'B sent counts');

done_testing();
