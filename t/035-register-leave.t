# Registered backends leave: at once when they publish a deregistration,
# or once their reports have been stale register_expire with no live
# connection; a stale or draining one takes no new room while its rooms
# stay.  The rooms of a backend that left move whole to another backend at
# their next request, and stay there when it registers again.  A Redis
# that goes away removes nobody.
#
# Plain Test::More with one nginx instance, to poll with deadlines.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use Time::HiRes qw(sleep time);

use lib 't/helpers';
use RoomAffinity;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 23;
my ($PA, $PB, $PC) = map { $ENV{"TEST_NGINX_B${_}_PORT"} } 1 .. 3;
my ($A, $B, $C) = RoomAffinity::urls(3);
my $rport = $ENV{TEST_NGINX_REDIS_PORT};
my $ctl = $ENV{TEST_NGINX_CONTROL_PORT};
my @pids;

RoomAffinity::start_control(redis => 1);

END { kill 'QUIT', $_ for @pids; waitpid $_, 0 for @pids }

# b1..b3 answer their name, and /hold?ms= after that many milliseconds
my $backends = join '', map {
    "    server { listen 127.0.0.1:$ENV{\"TEST_NGINX_B${_}_PORT\"};\n"
    . "        location / { return 200 \"b$_\\n\"; }\n"
    . "        location /hold { proxy_pass http://127.0.0.1:$ctl"
    . "/sleep?wait=\$arg_ms; }\n    }\n"
} 1 .. 3;

push @pids, RoomAffinity::instance('leave', <<"END");
    room_affinity_redis 127.0.0.1:$rport;
    upstream chat {
        room_affinity \$arg_room zone=leave:1m stale=1s register_expire=2s
                      register=127.0.0.1/32:$PA-$PC;
    }
$backends
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://chat; }
        location = /status { room_affinity_status; }
    }
END

my $http = HTTP::Tiny->new(timeout => 5);

sub get {
    my ($path) = @_;
    my $r = $http->get("http://127.0.0.1:$port$path");
    return $r->{success} ? $r->{content} : "$r->{status}\n";
}

sub status {
    my $st = eval { JSON::PP->new->decode(get('/status')) };
    return ref $st eq 'HASH' ? $st : {};
}

sub backend {
    my ($p) = @_;
    my ($b) = grep { $_->{server} eq "127.0.0.1:$p" }
              @{ status()->{upstreams}{chat}{backends} // [] };
    return $b;
}

sub publish {
    my ($channel, $msg) = @_;
    RoomAffinity::redis_command($rport, 'PUBLISH', $channel, $msg);
}

# b1..b3 report now and then, until told otherwise
my %reporting;

sub report {
    for my $p (sort keys %reporting) {
        publish('signaling', qq({"url":"ws://127.0.0.1:$p","connections":)
                             . $reporting{$p} . '}');
    }
}

ok(RoomAffinity::until_ok(10, sub { (status()->{redis}{state} // '') eq 'subscribed' }),
   'nginx subscribed');

# --- a deregistration: the backend leaves at once, its room moves whole

publish('register', qq({"url":"$A"}));
ok(RoomAffinity::until_ok(5, sub { backend($PA) }), 'b1 registered');
is(get('/?room=d1'), "b1\n", 'room d1 placed on b1, the only backend');

publish('register', qq({"url":"$B"}));
ok(RoomAffinity::until_ok(5, sub { backend($PB) }), 'b2 registered');
is(get('/?room=d1'), "b1\n", 'd1 stays on b1');

publish('register', qq({"url":"$A","deregister":true}));
ok(RoomAffinity::until_ok(5, sub { !backend($PA) }), 'b1 left at once when it deregistered');
is(get('/?room=d1'), "b2\n", "d1 moved to b2 at its next request");
is(get('/?room=d1'), "b2\n", 'and stays there');

publish('register', qq({"url":"$A"}));
ok(RoomAffinity::until_ok(5, sub { backend($PA) }), 'b1 registered again');
is(get('/?room=d1'), "b2\n", 'd1 does not move back to b1');

my $st = status()->{upstreams}{chat};
is($st->{fleet}{left}, 1, 'the status counts one that left');
ok(($st->{zone}{moved} // 0) >= 1, 'and the room moved');

# --- draining: no new room, its rooms stay

%reporting = ($PA => 0, $PB => 0);
report();
my $dr = get('/?room=dr');
like($dr, qr/^b[12]$/, 'room dr placed');
publish('signaling', '{"url":"' . ($dr eq "b1\n" ? $A : $B)
                     . '","connections":0,"draining":true}');
sleep 0.2;
my @new = map { get("/?room=dn$_") } 1 .. 6;
is_deeply([ grep { $_ eq $dr } @new ], [],
          "a draining registered backend takes none of 6 new rooms");
is(get('/?room=dr'), $dr, 'its room stays');

# --- stale: no new room; then gone after register_expire, no connection

report();                         # b2's last report
my $t0 = time;
%reporting = ($PA => 0);          # b2 falls silent
ok(RoomAffinity::until_ok(5, sub { report(); ((backend($PB) // {})->{state} // '')
                                 eq 'stale' }),
   'b2 shows stale once its reports stop');
my @stale = map { get("/?room=st$_") } 1 .. 6;
is_deeply([ grep { $_ ne "b1\n" } @stale ], [],
          'a stale registered backend takes none of 6 new rooms');

ok(RoomAffinity::until_ok(8, sub { report(); !backend($PB) }),
   'b2 removed after register_expire without reports');
ok(time - $t0 >= 2, 'not before register_expire (2s)');
is(get('/?room=d1'), "b1\n", "its room d1 moved whole to b1");

# --- a live connection keeps a silent backend in (its rooms are in use)

publish('register', qq({"url":"$C"}));
%reporting = ($PA => 50, $PC => 0);
report();
ok(RoomAffinity::until_ok(5, sub { backend($PC) }), 'b3 registered');

my $room;
for my $i (1 .. 20) {
    if (get("/?room=h$i") eq "b3\n") { $room = "h$i"; last }
}
ok($room, "a room on b3 ($room)");

%reporting = ($PA => 50);         # b3 falls silent, one connection held
my $held = RoomAffinity::hold($port, 1, "/hold?room=$room&ms=6000", 6000);
like($held, qr/^held 1 live \d+$/, 'one connection to b3 held for 6 s');

sleep 3.5;
report();
ok(backend($PC), 'b3 stays past register_expire while a connection lives');
is((backend($PC) // {})->{state}, 'stale', 'but it is stale');

ok(RoomAffinity::until_ok(10, sub { report(); !backend($PC) }),
   'b3 removed once the connection ended');

# --- Redis away: nobody is removed

publish('register', qq({"url":"$B"}));
%reporting = ($PA => 0, $PB => 0);
report();
ok(RoomAffinity::until_ok(5, sub { backend($PB) }), 'b2 registered again');

RoomAffinity::http_get($ctl, '/redis/stop');
sleep 3.5;
ok(backend($PA) && backend($PB),
   'with Redis stopped for longer than register_expire, nobody left');
RoomAffinity::http_get($ctl, '/redis/start');
ok(RoomAffinity::until_ok(15, sub { report(); (status()->{redis}{state} // '') eq 'subscribed' }),
   'subscribed again');
report();
sleep 0.5;
report();
ok(backend($PA) && backend($PB), 'both still there, reporting again');

done_testing();
