# Reports on departures, end to end: the join API's clients connect to
# the backend directly, so nginx counts them as it answers their joins but
# never sees them leave.  A chat backend (examples/chat-backend) with
# REPORT_ON_LEAVE_MS reports as soon as clients have left; with
# lifetime=off nginx then stops counting them, and the next new rooms go
# to that backend again.  The same backend without it (the origin design's
# periodic reports only, here 10 minutes apart) keeps its joins counted
# until its next report, and every new room goes to the other backend.
#
# Plain Test::More: nginx instances, node processes, a real redis-server.
# Each case starts its own nginx and backends.

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
my $port = $base + 28;
my @ports = map { $ENV{"TEST_NGINX_B${_}_PORT"} } 1 .. 2;
my $rport = $ENV{TEST_NGINX_REDIS_PORT};
my (@nginx, %node, @clients);

RoomAffinity::start_control(redis => 1);

END {
    kill 'KILL', $_ for values %node, @clients;
    kill 'QUIT', $_ for @nginx;
    waitpid $_, 0 for values %node, @clients, @nginx;
}

my $http = HTTP::Tiny->new(timeout => 5);
my $json = JSON::PP->new;

sub status {
    my $r = $http->get("http://127.0.0.1:$port/status");
    my $st = $r->{success} ? eval { $json->decode($r->{content}) } : undef;
    return ref $st eq 'HASH' ? $st : {};
}

# a backend of the status, by its port
sub backend {
    my ($p) = @_;
    my ($be) = grep { $_->{server} =~ /:$p$/ }
               @{ status()->{upstreams}{chat}{backends} // [] };
    return $be // {};
}

# the join API's answer for a room: the port of the url it names
sub join_room {
    my ($room) = @_;
    my $r = $http->post("http://127.0.0.1:$port/join", {
        headers => { 'Content-Type' => 'application/json' },
        content => qq({"roomName": "$room"}) });
    my $a = $r->{success} ? eval { $json->decode($r->{content}) } : undef;
    return ref $a eq 'HASH' && ($a->{url} // '') =~ /:(\d+)$/ ? $1 : '';
}

# chat backends n1, n2: their periodic report 10 minutes apart (one at
# start), and reports on departures after $leave_ms (0: none)
sub start_backends {
    my ($name, $leave_ms) = @_;
    for my $n (1, 2) {
        my $pid = fork();
        die "fork: $!" unless defined $pid;

        if ($pid == 0) {
            my $log = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot')
                      . "-$name/logs/n$n.log";
            open STDOUT, '>>', $log;
            open STDERR, '>&', \*STDOUT;
            %ENV = (%ENV, NAME => "n$n", PORT => $ports[$n - 1],
                    REDIS_URL => "redis://127.0.0.1:$rport",
                    REPORT_INTERVAL_MS => 600000, CPU_INTERVAL_MS => 500,
                    REPORT_ON_LEAVE_MS => $leave_ms);
            exec 'node', "$root/examples/chat-backend/server.js"
                or POSIX::_exit(1);
        }

        $node{"$name-$n"} = $pid;
    }
}

sub stop_all {
    kill 'TERM', values %node;
    waitpid $_, 0 for values %node;
    %node = ();
    if (my $pid = pop @nginx) {
        kill 'QUIT', $pid;
        waitpid $pid, 0;
    }
    # the next case's backends start from nothing, as these did
    RoomAffinity::redis_command($rport, 'DEL', 'room_affinity:backends');
}

# $n WebSocket clients of room $room connected straight to the backend on
# port $p, as the join API's clients do, each staying $hold ms
sub direct_clients {
    my ($p, $room, $n, $hold) = @_;
    my @pids = map {
        RoomAffinity::ws_client_bg($root, "ws://127.0.0.1:$p/ws?roomName=$room",
                                   '--hold', $hold, '--timeout', $hold + 10000,
                                   '-q')
    } 1 .. $n;
    push @clients, @pids;
    return @pids;
}

# one case: a room of 10 joins and leaves backend X, then 6 new rooms
sub run_case {
    my ($name, $leave_ms) = @_;

    push @nginx, RoomAffinity::instance($name, <<"END");
    room_affinity_redis 127.0.0.1:$rport backoff=500ms;
    upstream chat {
        room_affinity \$arg_roomName zone=$name:1m stale=1h lifetime=off;
        server 127.0.0.1:$ports[0];
        server 127.0.0.1:$ports[1];
    }
    server {
        listen 127.0.0.1:$port;
        location = /join { room_affinity_join chat; }
        location = /status { room_affinity_status; }
    }
END

    ok(RoomAffinity::until_ok(15, sub {
           (status()->{redis}{state} // '') eq 'subscribed' }),
       "$name: nginx subscribed");

    start_backends($name, $leave_ms);

    ok(RoomAffinity::until_ok(15, sub {
           defined backend($ports[0])->{report}
           && defined backend($ports[1])->{report} }),
       "$name: both backends reported once (0 connections)");

    my @big = map { join_room('big') } 1 .. 10;
    my $x = $big[0];
    ok($x && !grep({ $_ ne $x } @big), "$name: 10 joins of room big, "
       . "one backend ($x)");
    my ($y) = grep { $_ != $x } @ports;

    my $since = time;
    my @pids = direct_clients($x, 'big', 10, 1000);
    is(backend($x)->{joins}, 10, "$name: nginx counts the 10 joins on $x");

    my $gone = grep { waitpid($_, 0) == $_ && $? == 0 } @pids;
    @clients = ();
    is($gone, 10, "$name: the 10 clients were welcomed and have left");

    # the backend sees the closes, then reports after $leave_ms at most
    sleep 1 + $leave_ms / 1000;

    return ($x, $y, $since);
}

# --- with reports on departures: the backend tells, nginx forgets them

{
    my ($x, $y, $since) = run_case('dep-on', 200);

    my $be = backend($x);
    my $ago = int((time - $since) * 1000);
    ok(($be->{report}{age_ms} // 1e9) < $ago,
       "dep-on: $x reported after its clients came "
       . "($be->{report}{age_ms} ms ago, they came $ago ms ago)");
    is($be->{report}{connections}, 0,
       "dep-on: $x reported 0 connections once its clients left");
    is($be->{joins}, 0, 'dep-on: its joins no longer count');
    is($be->{estimate}, 0, 'dep-on: its estimate is 0');

    my @new = map { join_room("new$_") } 1 .. 6;
    my $on_x = grep { $_ == $x } @new;
    ok($on_x >= 2, "dep-on: new rooms go to $x again ($on_x of 6)");

    stop_all();
}

# --- the origin design's backends: nginx counts the joins until the next
# report, 10 minutes away

{
    my ($x, $y, $since) = run_case('dep-off', 0);

    my $be = backend($x);
    is($be->{joins}, 10, "dep-off: ${x}'s 10 joins still count");
    my $ago = int((time - $since) * 1000);
    ok(($be->{report}{age_ms} // 0) > $ago,
       "dep-off: no report since its clients came "
       . "($be->{report}{age_ms} ms ago, they came $ago ms ago)");

    my @new = map { join_room("new$_") } 1 .. 6;
    my $on_x = grep { $_ == $x } @new;
    is($on_x, 0, "dep-off: every new room goes to $y (0 of 6 on $x)");

    stop_all();
}

done_testing();
