# The origin design's fleet, end to end: two nginx instances whose
# upstream has no server line (only register=), a real redis-server, Node
# chat backends (examples/chat-backend) that register themselves, and
# real WebSocket clients (examples/ws-client).  Backends started and
# stopped during live WebSocket traffic join and leave on both instances
# with no edit of nginx.conf and no reload; a room on a killed backend
# moves whole and keeps working; registrations survive "nginx -s reload"
# and a Redis restart; the status marks them registered.
#
# Plain Test::More: two nginx instances, node processes.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(sleep time);
use FindBin;

use lib 't/helpers';
use RoomAffinity;

my $root = "$FindBin::Bin/..";

RoomAffinity::need_node($root);

my $base = ($ENV{TEST_NGINX_PORT} || 1984);
my ($PA, $PB) = ($base + 26, $base + 27);
my @ports = map { $ENV{"TEST_NGINX_B${_}_PORT"} } 1 .. 4;
my $rport = $ENV{TEST_NGINX_REDIS_PORT};
my $ctl = $ENV{TEST_NGINX_CONTROL_PORT};
my (@nginx, %node);

RoomAffinity::start_control(redis => 1);

END {
    kill 'KILL', $_ for values %node;
    kill 'QUIT', $_ for @nginx;
    waitpid $_, 0 for values %node, @nginx;
}

sub http {
    my ($port) = @_;
    return <<"END";
    room_affinity_redis 127.0.0.1:$rport backoff=500ms;
    upstream chat {
        room_affinity \$arg_roomName zone=fleet:1m stale=2s
                      register_expire=4s register=127.0.0.1/32:$ports[0]-$ports[3];
    }
    server {
        listen 127.0.0.1:$port;
        location /ws {
            proxy_pass http://chat;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 1h;
        }
        location = /status { room_affinity_status; }
    }
END
}

push @nginx, RoomAffinity::instance('fleet-a', http($PA));
push @nginx, RoomAffinity::instance('fleet-b', http($PB));

my $http = HTTP::Tiny->new(timeout => 5);

sub status {
    my ($port) = @_;
    my $r = $http->get("http://127.0.0.1:$port/status");
    my $st = $r->{success} ? eval { JSON::PP->new->decode($r->{content}) }
                           : undef;
    return ref $st eq 'HASH' ? $st : {};
}

# the registered backends an instance has, by port
sub fleet {
    my ($port) = @_;
    return join ',', sort map { /:(\d+)$/ ? $1 : $_ }
           map { $_->{server} }
           grep { ($_->{origin} // '') eq 'register' }
           @{ status($port)->{upstreams}{chat}{backends} // [] };
}

# a chat backend nN on port nN, registering itself, leaving on SIGTERM
sub start_backend {
    my ($n) = @_;
    my $port = $ports[$n - 1];

    my $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        my $log = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . "-fleet-a/logs/n$n.log";
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        %ENV = (%ENV, NAME => "n$n", PORT => $port,
                REDIS_URL => "redis://127.0.0.1:$rport",
                REPORT_INTERVAL_MS => 300, CPU_INTERVAL_MS => 500,
                DEREGISTER => 1);
        exec 'node', "$root/examples/chat-backend/server.js" or POSIX::_exit(1);
    }

    $node{$n} = $pid;
    return $pid;
}

sub stop_backend {
    my ($n, $sig) = @_;
    my $pid = delete $node{$n} or return;
    kill $sig, $pid;
    waitpid $pid, 0;
}

# one WebSocket client through an instance: joins the room, sends a
# message, gets it back; returns the backend that welcomed it ('' if not)
sub client {
    my ($port, $room, @opts) = @_;
    my $out = `node $root/examples/ws-client/client.js --url 'ws://127.0.0.1:$port/ws?roomName=$room' --send hi --expect 1 @opts 2>&1`;
    return '' if $?;
    return $out =~ /"type":"welcome","backend":"(n\d)"/ ? $1 : '';
}

# the same, in the background: a live WebSocket that sends after $delay ms
sub client_bg {
    my ($port, $room, $delay) = @_;
    return RoomAffinity::ws_client_bg($root,
        "ws://127.0.0.1:$port/ws?roomName=$room", '--delay', $delay,
        '--send', 'still here', '--expect', 1, '--timeout', $delay + 15000);
}

for my $port ($PA, $PB) {
    ok(RoomAffinity::until_ok(15, sub { (status($port)->{redis}{state} // '') eq 'subscribed' }),
       "nginx on $port subscribed");
}

# --- backends register: both instances see them, no reload

start_backend($_) for 1, 2;
my $two = "$ports[0],$ports[1]";
ok(RoomAffinity::until_ok(15, sub { fleet($PA) eq $two && fleet($PB) eq $two }),
   'n1 and n2 registered on both instances');

my %room;
for my $i (1 .. 8) {
    my $a = client($PA, "r$i");
    my $b = client($PB, "r$i");
    $room{"r$i"} = $a;
    ok($a && $a eq $b, "room r$i: the same backend through A and B ($a $b)");
}
my %used = map { ($_ => 1) } values %room;
ok(keys %used == 2, 'the rooms are spread over n1 and n2');

# a WebSocket of room "live" held through A while the fleet changes
my $live = client($PA, 'live');
my $live_pid = client_bg($PA, 'live', 12000);
sleep 0.5;

# --- a third backend starts during the traffic

start_backend(3);
my $three = "$ports[0],$ports[1],$ports[2]";
ok(RoomAffinity::until_ok(15, sub { fleet($PA) eq $three && fleet($PB) eq $three }),
   'n3 registered on both instances while the WebSocket lives');

my @on3 = grep { client($PB, "q$_") eq 'n3' } 1 .. 12;
ok(@on3 >= 1, 'n3 takes new rooms (' . scalar(@on3) . ' of 12)');

# --- a backend is killed: its rooms move whole, and keep working

my $victim = $live eq 'n1' ? 'n2' : 'n1';
my @rooms = grep { $room{$_} eq $victim } sort keys %room;
ok(@rooms, "rooms on $victim: @rooms");
stop_backend(substr($victim, 1), 'KILL');

for my $r (@rooms) {
    my $a = client($PA, $r);
    my $b = client($PB, $r);
    ok($a && $a ne $victim && $a eq $b,
       "room $r moved whole off the killed $victim: $a through A, $b through B");
    is(client($PA, $r), $a, "room $r stays on $a");
}

my $two_left = join ',', sort grep { $_ ne $ports[substr($victim, 1) - 1] }
               @ports[0 .. 2];
ok(RoomAffinity::until_ok(15, sub { fleet($PA) eq $two_left && fleet($PB) eq $two_left }),
   "$victim removed from both instances after register_expire");

# --- a backend stops gracefully: it leaves at once (deregistration)

stop_backend(3, 'TERM');
my $one = $live eq 'n1' ? $ports[0] : $ports[1];
ok(RoomAffinity::until_ok(3, sub { fleet($PA) eq $one && fleet($PB) eq $one }),
   'n3 deregistered from both instances when it stopped');
my $q = $on3[0] // 'q1';
my $moved = client($PA, $q);
ok($moved && $moved eq client($PB, $q), "room $q of n3 moved whole ($moved)");

waitpid $live_pid, 0;
is($? >> 8, 0, 'the WebSocket of room live worked through all of it');

# --- registrations survive "nginx -s reload" and a Redis restart

my %before = map { ($_ => client($PA, $_)) } sort keys %room;

my @old = RoomAffinity::children_of($nginx[0]);
kill 'HUP', $nginx[0];
ok(RoomAffinity::until_ok(10, sub {
       my %o = map { ($_ => 1) } @old;
       grep { !$o{$_} } RoomAffinity::children_of($nginx[0]) }),
   'A reloaded');
is(fleet($PA), $one, 'A still has the registered backend after the reload');
my @same = grep { client($PA, $_) eq $before{$_} } sort keys %before;
is(scalar @same, scalar keys %before, 'every room stays where it was');

RoomAffinity::http_get($ctl, '/redis/stop');
sleep 1;
RoomAffinity::http_get($ctl, '/redis/start');
ok(RoomAffinity::until_ok(15, sub { (status($PA)->{redis}{state} // '') eq 'subscribed'
                      && (status($PB)->{redis}{state} // '') eq 'subscribed' }),
   'both subscribed again after a Redis restart');
is(fleet($PA) . ' ' . fleet($PB), "$one $one",
   'the registered backend is still there on both');

start_backend(4);
ok(RoomAffinity::until_ok(15, sub { fleet($PB) eq join(',', sort $one, $ports[3]) }),
   'a backend that registers after the restart joins');

my ($b) = grep { ($_->{origin} // '') eq 'register' }
          @{ status($PA)->{upstreams}{chat}{backends} // [] };
ok($b && $b->{report} && defined $b->{report}{connections},
   'the status shows the registered backend with its reports');

done_testing();
