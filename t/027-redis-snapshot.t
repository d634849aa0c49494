# A large snapshot hash is read in batches, one per event-loop turn: the
# subscriber keeps its role (no take-over by another worker), requests
# keep being proxied, and snapshot_max caps what is read.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

use IO::Socket::INET;

RoomAffinity::start_control(redis => 1);

our ($A, $B) = RoomAffinity::urls(2);
our $FIELDS = 500_000;

# the hash: two real backends and 500,000 fields of backends this nginx
# does not know, written in pipelined HSETs of 1,000 fields
{
    my $r = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ENV{TEST_NGINX_REDIS_PORT})
        or die "redis: $!";
    my $key = 'room_affinity:backends';
    my $cmds = 0;

    print $r "*2\r\n\$3\r\nDEL\r\n\$" . length($key) . "\r\n$key\r\n";
    $cmds++;

    for (my $i = 0; $i < $FIELDS; $i += 1000) {
        my @args = ('HSET', $key);
        for my $j ($i .. $i + 999) {
            my $url = "ws://10.0." . int($j / 250) % 256 . "." . $j % 250
                      . ":" . (1000 + int($j / 65536));
            push @args, "$url#$j", qq({"url":"$url","connections":1});
        }
        my $cmd = '*' . @args . "\r\n";
        $cmd .= '$' . length($_) . "\r\n$_\r\n" for @args;
        print $r $cmd;
        $cmds++;
    }

    for my $u ([$A, 77], [$B, 3]) {
        my @args = ('HSET', $key, $u->[0],
                    qq({"url":"$u->[0]","connections":$u->[1]}));
        my $cmd = '*' . @args . "\r\n";
        $cmd .= '$' . length($_) . "\r\n$_\r\n" for @args;
        print $r $cmd;
        $cmds++;
    }

    while ($cmds--) {
        my $line = <$r>;
        die "redis: no answer" unless defined $line;
        die "redis: $line" if $line =~ /^-/;
    }

    close $r;
}

our $backends = RoomAffinity::backends(2);
our $config = RoomAffinity::redis_locations();
our $upstream = <<'END';
upstream chat {
    room_affinity $arg_room zone=snap:1m;
    server 127.0.0.1:$TEST_NGINX_B1_PORT;
    server 127.0.0.1:$TEST_NGINX_B2_PORT;
}
END

# requests and the status, n times, ms apart, until the snapshot is read
sub poll {
    my ($n, $ms) = @_;
    return map { ("/ctl/sleep?wait=$ms", "/?room=p$_", "/status") } 1 .. $n;
}

master_on();
workers(2);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: 500,002 fields read in batches, no take-over, requests proxied meanwhile
--- http_config eval
"room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}
    snapshot_max=1000000;
$main::upstream
$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ready", main::poll(100, 200))
--- timeout: 60
--- response_body_like eval
qr/\Aslept\nsubscribed\n(?:slept\nb[12]\n[^\n]*\n)*?slept\nb[12]\n[^\n]*"report":\{"age_ms":\d+,"connections":77,[^\n]*"snapshots":1,[^\n]*"snapshot":\{"entries":500002,"truncated":false\}/s
--- error_log eval
qr/snapshot "room_affinity:backends" read, 500002 backends \(500002 fields in \d+ batches, \d+ ms\)/
--- no_error_log
taken over
[crit]



=== TEST 2: snapshot_max (default 10000) caps the fields read
--- http_config eval
"room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
$main::upstream
$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ready", main::poll(50, 100))
--- timeout: 30
--- response_body_like eval
qr/\Aslept\nsubscribed\n(?:slept\nb[12]\n[^\n]*\n)*?slept\nb[12]\n[^\n]*"snapshots":1,[^\n]*"snapshot":\{"entries":10000,"truncated":true\}/s
--- error_log
snapshot "room_affinity:backends" has more than snapshot_max=10000 fields, the rest is not read
--- no_error_log
[crit]



=== TEST 3: snapshot_max must be a positive number
--- http_config
    room_affinity_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT snapshot_max=0;
--- config
--- must_die
--- error_log
invalid parameter "snapshot_max=0"
