# The room directory when Redis is away: stopped, frozen (SIGSTOP) and
# restarted during traffic.  Proxying never stops; the rooms placed
# without the directory are counted as unconfirmed, and when Redis is
# back they are repaired from it: the directory's record wins, and every
# room the two instances had placed apart is counted as a split once.
#
# Plain Test::More: two nginx instances.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(sleep time);
use POSIX ();

use lib 't/helpers';
use RoomAffinity;

my $base = ($ENV{TEST_NGINX_PORT} || 1984) - 60;
my @ports = ($base, $base + 1);
my $ctl = $ENV{TEST_NGINX_CONTROL_PORT};
my @pids;

RoomAffinity::start_control(redis => 1);

END { kill 'QUIT', $_ for @pids; waitpid $_, 0 for @pids }

# other weights at each instance: on its own, each places rooms elsewhere
my @weights = ([20, 1, 1, 1], [1, 20, 1, 1]);

for my $i (0 .. 1) {
    my $servers = join '', map {
        "        server 127.0.0.1:$ENV{\"TEST_NGINX_B${_}_PORT\"}"
        . " weight=$weights[$i][$_ - 1];\n"
    } 1 .. 4;

    push @pids, RoomAffinity::instance("dirout$i", <<"END");
    room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT} directory=on
                        directory_wait=50ms command_timeout=2s;
    upstream chat {
        room_affinity \$arg_room zone=dir:1m choices=0;
$servers    }
@{[ $i == 0 ? RoomAffinity::backends(4) : '' ]}
    server {
        listen 127.0.0.1:$ports[$i];
        location / { proxy_pass http://chat; }
        location = /status { room_affinity_status; }
    }
END
}

my $http = HTTP::Tiny->new(timeout => 5);

sub get {
    my ($port, $path) = @_;
    my $r = $http->get("http://127.0.0.1:$port$path");
    my $c = $r->{success} ? $r->{content} : '';
    chomp $c;
    return $c;
}

sub control { get($ctl, @_) }

sub dir { RoomAffinity::directory_of(@_) }

sub sum { RoomAffinity::directory_sum($_[0], undef, @ports) }

# rooms whose backend differs between the two instances
sub apart {
    my (@rooms) = @_;
    return scalar grep { get($ports[0], "/?room=$_") ne get($ports[1], "/?room=$_") }
                  @rooms;
}

for my $port (@ports) {
    ok(RoomAffinity::until_ok(6, sub { get($port, '/status') ne '' }),
       "instance on port $port answers");
}

# a room placed while Redis is up warms the links
get($_, '/?room=warm') for @ports;

# 1. Redis stopped: every request is answered, the rooms unconfirmed

control('/redis/stop');

my @rooms = map { "down$_" } 1 .. 60;
my ($ok, $slowest) = (0, 0);
for my $room (@rooms) {
    for my $port (@ports) {
        my $t = time;
        $ok++ if get($port, "/?room=$room") =~ /^b\d$/;
        $slowest = time - $t if time - $t > $slowest;
    }
}
is($ok, 120, 'Redis stopped: all 120 first requests proxied');
ok($slowest < 1, sprintf('none waited long (slowest %.0f ms)', $slowest * 1000));
ok(sum('unconfirmed') >= 60, 'the rooms are counted as unconfirmed ('
   . sum('unconfirmed') . ')');

my $split = apart(@rooms);
ok($split > 0, "the two instances placed $split of 60 rooms apart");

control('/redis/start');

ok(RoomAffinity::until_ok(5, sub { sum('splits') >= $split }),
   'Redis back: the splits are found');
is(sum('splits'), $split, "each split room is counted once ($split)");
is(apart(@rooms), 0, 'and every room is on one backend again');
ok(sum('reconciled') >= 120, 'every unconfirmed room was reconciled ('
   . sum('reconciled') . ')');

# 2. Redis frozen: each new room waits directory_wait at most, then goes on

control('/redis/signal?sig=STOP');

@rooms = map { "frozen$_" } 1 .. 20;
($ok, $slowest) = (0, 0);
for my $room (@rooms) {
    for my $port (@ports) {
        my $t = time;
        $ok++ if get($port, "/?room=$room") =~ /^b\d$/;
        $slowest = time - $t if time - $t > $slowest;
    }
}
is($ok, 40, 'Redis frozen: all 40 first requests proxied');
ok($slowest < 1, sprintf('each waited a bounded time (slowest %.0f ms)',
                         $slowest * 1000));

$split = apart(@rooms);
my $before = sum('splits');

control('/redis/signal?sig=CONT');

ok(RoomAffinity::until_ok(6, sub { apart(@rooms) == 0 }),
   'Redis answering again: the frozen rooms are on one backend');
is(sum('splits') - $before, $split, "the $split split rooms are counted");

# 3. Redis frozen while new rooms arrive together at one instance: each
# is placed on the backend its call proposed, so the late answers (its
# own records, as no other instance asked) confirm them where their
# members are: nothing moves, nothing is split; and the proposals are
# spread over the backends as placements are

control('/redis/signal?sig=STOP');

@rooms = map { "burst$_" } 1 .. 24;
my %first;
my $go = time + 1;      # every child asks at the same moment
my @kids = map {
    my $room = $_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        sleep $go - time if $go > time;
        print get($ports[0], "/?room=$room");
        POSIX::_exit(0);
    }
    [$room, $fh];
} @rooms;
for my $k (@kids) {
    my ($room, $fh) = @$k;
    local $/;
    $first{$room} = <$fh>;
    close $fh;
}
is(scalar(grep { ($first{$_} // '') =~ /^b\d$/ } @rooms), 24,
   'Redis frozen: 24 new rooms at once, all proxied');

# each proposal counts on its backend until its answer, as a routed
# request does: rooms asked for together are spread as the balancer
# spreads them (21 of 24 on the server of weight 20, without Redis), not
# all proposed to the one least loaded when the first was asked
my %on;
$on{$first{$_}}++ for @rooms;
my ($most) = sort { $b <=> $a } values %on;
ok($most < 24, 'and spread over the backends (weights 20:1:1:1, '
   . 'choices=0: ' . join(', ', map { "$_ $on{$_}" } sort keys %on) . ')');

$before = sum('splits');
my $reconciled = sum('reconciled');

control('/redis/signal?sig=CONT');

ok(RoomAffinity::until_ok(6, sub { sum('reconciled') - $reconciled >= 24 }),
   'Redis answering again: the 24 rooms are confirmed');
is(sum('splits') - $before, 0, 'none was split');
is(scalar(grep { get($ports[0], "/?room=$_") ne $first{$_} } @rooms), 0,
   'each stays on the backend that answered its first request');

# the counts the proposals held are given back with the answers
is(RoomAffinity::live_total($ports[0]), 0,
   'and no connection is counted once the requests are done');

# 4. Redis restarted during traffic: nothing fails

my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0) {
    sleep 0.3;
    control('/redis/stop');
    sleep 0.5;
    control('/redis/start');
    exit 0;
}

@rooms = map { "during$_" } 1 .. 150;
$ok = 0;
for my $room (@rooms) {
    $ok += get($ports[$_], "/?room=$room") =~ /^b\d$/ ? 1 : 0 for 0, 1;
}
waitpid $pid, 0;

is($ok, 300, 'Redis restarted during traffic: all 300 requests proxied');
ok(RoomAffinity::until_ok(6, sub { apart(@rooms) == 0 }),
   'after the restart every room is on one backend');

done_testing();
