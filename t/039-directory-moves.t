# The room directory's moves and expiry: two instances that find a room's
# backend gone at the same moment both ask to move it, compare-and-set on
# the record's epoch lets one move win and the other adopt it; a room
# with a live connection keeps its record past the expiry (renewal).
#
# Plain Test::More: two nginx instances.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

use lib 't/helpers';
use RoomAffinity;

my $base = ($ENV{TEST_NGINX_PORT} || 1984) - 50;
my @ports = ($base, $base + 1);
my $redis = $ENV{TEST_NGINX_REDIS_PORT};
my $dead = "127.0.0.1:$ENV{TEST_NGINX_DEAD_PORT}";
my @pids;

RoomAffinity::start_control(redis => 1);

END { kill 'QUIT', $_ for @pids; waitpid $_, 0 for @pids }

for my $i (0 .. 1) {
    push @pids, RoomAffinity::instance("dirmv$i", <<"END");
    room_affinity_redis 127.0.0.1:$redis directory=on directory_wait=3s;
    upstream chat {
        room_affinity \$arg_room zone=dir:1m;
        server $dead down;
        server 127.0.0.1:$ENV{TEST_NGINX_B1_PORT};
        server 127.0.0.1:$ENV{TEST_NGINX_B2_PORT};
        server 127.0.0.1:$ENV{TEST_NGINX_B3_PORT};
    }
    upstream slow {
        room_affinity \$arg_room zone=slow:1m ttl=2s;
        server 127.0.0.1:$ENV{TEST_NGINX_CONTROL_PORT};
        server $dead down;
    }
@{[ $i == 0 ? RoomAffinity::backends(3) : '' ]}
    server {
        listen 127.0.0.1:$ports[$i];
        location / { proxy_pass http://chat; }
        location /sleep { proxy_pass http://slow; proxy_read_timeout 10s; }
        location = /status { room_affinity_status; }
    }
END
}

my $http = HTTP::Tiny->new(timeout => 10);

sub get {
    my ($port, $path) = @_;
    my $r = $http->get("http://127.0.0.1:$port$path");
    my $c = $r->{success} ? $r->{content} : '';
    chomp $c;
    return $c;
}

sub dir { RoomAffinity::directory_of(@_) }

sub sum { RoomAffinity::directory_sum($_[0], $_[1], @ports) }

sub redis { RoomAffinity::redis_command($redis, @_) }

sub at_once {
    my ($path) = @_;
    my @s = map {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $_,
                              Timeout => 3) or die "connect: $!"
    } @ports;
    syswrite $_, "GET $path HTTP/1.0\r\nHost: x\r\n\r\n" for @s;
    my @out;
    for my $s (@s) {
        local $/;
        my $resp = <$s> // '';
        my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
        $body //= '';
        chomp $body;
        push @out, $body;
    }
    return @out;
}

for my $port (@ports) {
    my $ok = 0;
    for (1 .. 300) {
        if (get($port, '/status') ne '') { $ok = 1; last }
        sleep 0.02;
    }
    ok($ok, "instance on port $port answers");
}

# warm the workers' directory links
get($ports[$_ % 2], "/?room=warm$_") for 1 .. 20;

# rooms whose records (epoch 1) name a server that is down everywhere
my @rooms = map { "mv$_" } 1 .. 10;
for my $room (@rooms) {
    redis('HSET', "room_affinity:dir:chat:$room", 'b', $dead, 'e', '1',
          'i', 'seed', 't', '0');
}

# Redis frozen while both instances ask: both read epoch 1, both ask to
# move it, and Redis then runs the moves one after the other
get($ENV{TEST_NGINX_CONTROL_PORT}, '/redis/signal?sig=STOP&wait=0');

my @socks;
for my $room (@rooms) {
    for my $port (@ports) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Timeout => 3)
            or die "connect: $!";
        syswrite $s, "GET /?room=$room HTTP/1.0\r\nHost: x\r\n\r\n";
        push @socks, [$room, $s];
    }
}

sleep 0.3;
get($ENV{TEST_NGINX_CONTROL_PORT}, '/redis/signal?sig=CONT&wait=0');

my %on;
for my $rs (@socks) {
    my ($room, $s) = @$rs;
    local $/;
    my $resp = <$s> // '';
    my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
    $body //= '';
    chomp $body;
    push @{$on{$room}}, $body;
}

my ($agree, $epoch2) = (0, 0);
for my $room (@rooms) {
    my @b = @{$on{$room}};
    $agree++ if $b[0] =~ /^b\d$/ && $b[0] eq $b[1];
    $epoch2++ if redis('HINCRBY', "room_affinity:dir:chat:$room", 'e', '0')
                 eq ':2';
}

is($agree, 10, 'both instances send each moved room to the same backend');
is($epoch2, 10, 'each record moved exactly once (epoch 2)');
is(sum('moves'), 10, 'one move of each room won');
is(sum('move_races'), 10, 'the other lost the race and adopted the move');
is(sum('unconfirmed'), 0, 'no room was placed without the directory');

# later requests: the record's backend, no call
my @calls = map { dir($_)->{calls} } @ports;
$agree = 0;
for my $room (@rooms) {
    my @b = at_once("/?room=$room");
    $agree++ if $b[0] eq $on{$room}[0] && $b[1] eq $on{$room}[0];
}
is($agree, 10, 'the moved rooms stay on the new backend');
is_deeply([map { dir($_)->{calls} } @ports], \@calls, 'without a call');

# a record naming a server this configuration does not have: proxied all
# the same, counted as an error, and not asked for again and again
redis('HSET', 'room_affinity:dir:chat:unknown', 'b', '127.0.0.1:1', 'e', '1',
      'i', 'seed', 't', '0');
like(get($ports[0], '/?room=unknown'), qr/^b\d$/,
     'a room recorded on an unknown server is proxied');
sleep 0.5;
my $c0 = dir($ports[0])->{calls};
sleep 0.5;
is(dir($ports[0])->{calls}, $c0, 'and costs no more calls afterwards');
ok(dir($ports[0])->{errors} >= 1, 'the unknown server is counted as an error');

# renewal: a room with a live connection keeps its record past its expiry

my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0) {
    get($ports[0], "/sleep?wait=8000&room=long");
    exit 0;
}

my $key = 'room_affinity:dir:slow:long';
my $t = time;
sleep 0.05 until redis('EXISTS', $key) eq ':1' || time - $t > 3;
is(redis('EXISTS', $key), ':1', 'the held room has a record');

# the record expires 3 s after its last renewal (ttl 2 s + 1 s)
sleep 4;
is(redis('EXISTS', $key), ':1', 'still there 4 s later: renewed');
ok(sum('renewed', 'slow') >= 2, 'renewals counted ('
   . sum('renewed', 'slow') . ')');

# a record lost (a failover to a replica without it): written again
redis('DEL', $key);
$t = time;
sleep 0.05 until redis('EXISTS', $key) eq ':1' || time - $t > 3;
is(redis('EXISTS', $key), ':1', 'a lost record of a live room is written again');
is(sum('restored', 'slow'), 1, 'and counted as restored');

# a record naming another backend at the same epoch (written by another
# instance after a failover lost this one): the record wins, a split
redis('HSET', $key, 'b', $dead, 'e', '1');
$t = time;
sleep 0.05 until sum('splits', 'slow') >= 1 || time - $t > 3;
is(sum('splits', 'slow'), 1, 'a live room found elsewhere by the renewal '
   . 'is a split');

waitpid $pid, 0;

# idle, the record expires
$t = time;
sleep 0.1 until redis('EXISTS', $key) eq ':0' || time - $t > 6;
is(redis('EXISTS', $key), ':0', 'idle, the record expires');

done_testing();
