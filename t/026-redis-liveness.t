# A Redis that cannot be reached, takes the connection and never answers,
# or stops answering is noticed in bounded time, the status says so, and
# the links come back on their own once Redis answers; proxying never
# stops meanwhile.

use Test::Nginx::Socket 'no_plan';
use lib 't/helpers';
use RoomAffinity;

use IO::Socket::INET;
use POSIX ();
use Socket;
use Time::HiRes qw(sleep time);

# Redis is started by the blocks that need it
RoomAffinity::start_control(redis => 0);

# A black hole on Redis's port, driven through nginx (/hole/open,
# /hole/close, served on TEST_NGINX_DEAD_PORT): open, it takes nginx's
# connections and answers nothing; closed, it stops listening (so that a
# real Redis can start there) and keeps holding what it took
our $parent = $$;
our $hole = fork();
die "fork: $!" unless defined $hole;

if ($hole == 0) {
    my $ctl = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                    LocalPort => $ENV{TEST_NGINX_DEAD_PORT},
                                    Listen => 16, ReuseAddr => 1)
        or POSIX::_exit(1);
    my ($l, @held);

    while (getppid() == $parent) {
        my $rin = '';
        vec($rin, fileno($ctl), 1) = 1;
        vec($rin, fileno($l), 1) = 1 if $l;
        next unless select($rin, undef, undef, 1) > 0;

        if ($l && vec($rin, fileno($l), 1)) {
            my $c = $l->accept;
            push @held, $c if $c;
        }

        next unless vec($rin, fileno($ctl), 1);
        my $c = $ctl->accept or next;
        my $req = <$c> // '';
        while (defined(my $h = <$c>)) {
            last if $h =~ /^\r?\n$/;
        }
        my $out = 'no';

        if ($req =~ m{^GET /open} && !$l) {
            $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                       LocalPort => $ENV{TEST_NGINX_REDIS_PORT},
                                       Listen => 16, ReuseAddr => 1);
            $out = $l ? 'hole open' : "cannot listen: $!";

        } elsif ($req =~ m{^GET /close}) {
            close $l if $l;
            $l = undef;
            $out = 'hole closed, ' . @held . ' held';
        }

        print $c "HTTP/1.0 200 OK\r\nContent-Length: " . (length($out) + 1)
                 . "\r\n\r\n$out\n";
        close $c;
    }

    POSIX::_exit(0);
}

# A listener whose accept queue is full: further SYNs are dropped, as by a
# firewall, so a connect there only ends by a timeout
socket(our $full, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
setsockopt($full, SOL_SOCKET, SO_REUSEADDR, 1);
bind($full, pack_sockaddr_in($ENV{TEST_NGINX_B4_PORT}, inet_aton('127.0.0.1')))
    or die "bind: $!";
listen($full, 0) or die "listen: $!";
our @queued = map {
    IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                          PeerPort => $ENV{TEST_NGINX_B4_PORT}, Blocking => 0)
} 1 .. 3;

# A DNS server for "resolve": redis.test is 127.0.0.1, later.test is
# unknown for its first 3 queries and 127.0.0.1 after, the rest unknown
our $dns = fork();
die "fork: $!" unless defined $dns;

if ($dns == 0) {
    my $u = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                  LocalPort => $ENV{TEST_NGINX_B3_PORT},
                                  Proto => 'udp', ReuseAddr => 1)
        or POSIX::_exit(1);
    my %asked;

    while (getppid() == $parent) {
        my $rin = '';
        vec($rin, fileno($u), 1) = 1;
        next unless select($rin, undef, undef, 1) > 0;
        next unless defined $u->recv(my $q, 512);
        next if length $q < 17;
        my ($id) = unpack 'n', $q;
        my ($name, $off) = ('', 12);
        while ((my $n = ord substr $q, $off, 1) > 0) {
            $name .= substr($q, $off + 1, $n) . '.';
            $off += $n + 1;
        }
        my $question = substr $q, 12, $off + 5 - 12;
        my $type = unpack 'n', substr $q, $off + 1, 2;
        my $known = $name eq 'redis.test.'
                    || ($name eq 'later.test.' && ++$asked{$name} > 3);
        my $answer = ($known && $type == 1)
            ? pack('nnnNn', 0xc00c, 1, 1, 1, 4) . inet_aton('127.0.0.1')
            : '';
        $u->send(pack('nnnnnn', $id, 0x8180 | ($known ? 0 : 3), 1,
                      $answer ? 1 : 0, 0, 0) . $question . $answer);
    }

    POSIX::_exit(0);
}

END {
    local $?;    # reaping the helpers must not set our exit code

    for my $pid (grep { $_ } $hole, $dns) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
}

our $backends = RoomAffinity::backends(2);
our $config = RoomAffinity::redis_locations() . <<'END';
    location /hole/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_DEAD_PORT/;
    }
    location = /prom {
        proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/prometheus-check?port=$server_port;
    }
END
our ($A, $B) = RoomAffinity::urls(2);
our $upstream = <<'END';
upstream chat {
    room_affinity $arg_room zone=live:1m;
    server 127.0.0.1:$TEST_NGINX_B1_PORT;
    server 127.0.0.1:$TEST_NGINX_B2_PORT;
}
END

# the status, n times, ms apart: a poll with a deadline
sub poll {
    my ($n, $ms) = @_;
    return map { ("/ctl/sleep?wait=$ms", "/status") } 1 .. $n;
}

master_on();
workers(2);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a Redis that takes the connection and never answers: noticed in command_timeout, reconnected, recovered once a real Redis is there
--- http_config eval
"room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}
    connect_timeout=500ms command_timeout=1s ping_interval=500ms
    backoff=400ms;
$main::upstream
$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ctl/redis/stop", "/hole/open", "/?room=a",
    main::poll(40, 100), "/hole/close", "/ctl/redis/start", "/ready",
    RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":100})),
    RoomAffinity::pub("signaling", qq({"url":"$main::B","connections":0})),
    "/?room=n1", "/status")
--- timeout: 20
--- response_body_like eval
qr/\Aslept\nok\nhole open\nb[12]\n(?:slept\n[^\n]*\n)*?slept\n[^\n]*"connected":false,[^\n]*"last_error":"command: no answer in \d+ ms"[^\n]*"state":"failed"[^\n]*\n.*hole closed, [1-9]\d* held\nok\nsubscribed\npublished :1\npublished :1\nb2\n[^\n]*"connected":true,[^\n]*"state":"subscribed","last_reply_age_ms":\d+,/s
--- error_log eval
qr/redis "127\.0\.0\.1:\d+" subscriber link command: no answer in \d+ ms, retrying in \d+ ms/
--- no_error_log
[crit]



=== TEST 2: a connect whose SYNs are dropped ends at connect_timeout
--- http_config eval
"room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_B4_PORT}
    connect_timeout=500ms backoff=400ms;
$main::upstream
$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/?room=a", main::poll(30, 100))
--- timeout: 20
--- response_body_like eval
qr/\Aslept\nb[12]\n(?:slept\n[^\n]*\n)*?slept\n[^\n]*"connected":false,[^\n]*"last_error":"connect: timed out"[^\n]*"state":"failed"/s
--- error_log eval
qr/redis "127\.0\.0\.1:\d+" subscriber link connect: timed out, retrying in \d+ ms/
--- no_error_log
[crit]



=== TEST 3: a stopped Redis (SIGSTOP): stalled, then failed, and subscribed again after SIGCONT; proxying goes on
--- http_config eval
"room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}
    command_timeout=3s ping_interval=500ms backoff=400ms;
$main::upstream
$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ctl/redis/start", "/ready",
    RoomAffinity::pub("signaling", qq({"url":"$main::A","connections":5})),
    "/ctl/redis/signal?sig=STOP", "/?room=s1", main::poll(80, 100),
    "/ctl/redis/signal?sig=CONT", "/ready", "/status")
--- timeout: 30
--- response_body_like eval
qr/\Aslept\nok\nsubscribed\npublished :1\nsignalled STOP\nb[12]\n(?:slept\n[^\n]*\n)*?slept\n[^\n]*"connected":true,[^\n]*"state":"stalled"[^\n]*\n(?:slept\n[^\n]*\n)*?slept\n[^\n]*"connected":false,[^\n]*"state":"failed".*signalled CONT\nsubscribed\n[^\n]*"connected":true,"subscriber_pid":\d+,"connects":2,[^\n]*"state":"subscribed"/s
--- error_log eval
qr/redis "127\.0\.0\.1:\d+" (subscriber link liveness check|command link command): no answer in \d+ ms/
--- no_error_log
[crit]



=== TEST 4: the state in the Prometheus exposition
--- http_config eval
"room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
$main::upstream
$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ctl/redis/start", "/ready", "/prom")
--- response_body_like eval
qr/\Aslept\nok\nsubscribed\nparsed \d+ families.*\nroom_affinity_redis_state state=connecting 0\.0\nroom_affinity_redis_state state=subscribed 1\.0\nroom_affinity_redis_state state=stalled 0\.0\nroom_affinity_redis_state state=failed 0\.0\nroom_affinity_redis_last_reply_age_seconds  \d+\.\d+\n/s



=== TEST 5: times below the tick are refused
--- http_config
    room_affinity_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT command_timeout=50ms;
--- config
--- must_die
--- error_log
invalid time in "command_timeout=50ms", it must be at least 200ms



=== TEST 6: ping_interval is checked alike
--- http_config
    room_affinity_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT ping_interval=1x;
--- config
--- must_die
--- error_log
invalid time in "ping_interval=1x"



=== TEST 7: "resolve": the host name is resolved by nginx's resolver, at run time
--- http_config eval
"resolver 127.0.0.1:$ENV{TEST_NGINX_B3_PORT} ipv6=off valid=1s;
room_affinity_redis redis.test:$ENV{TEST_NGINX_REDIS_PORT} resolve;
$main::upstream
$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ctl/redis/start", "/ready", "/status")
--- response_body_like eval
qr/\Aslept\nok\nsubscribed\n[^\n]*"redis":\{"address":"redis\.test:\d+","connected":true,[^\n]*"state":"subscribed"/s
--- no_error_log
[crit]



=== TEST 8: a name that does not resolve yet: nginx starts and proxies, the link fails with the resolver's error and connects once the name resolves
--- http_config eval
"resolver 127.0.0.1:$ENV{TEST_NGINX_B3_PORT} ipv6=off valid=1s;
room_affinity_redis later.test:$ENV{TEST_NGINX_REDIS_PORT} resolve
    backoff=400ms;
$main::upstream
$main::backends"
--- config eval: $main::config
--- request eval
RoomAffinity::seq("/ctl/redis/start", "/?room=a", main::poll(20, 100),
    "/ready", "/status")
--- timeout: 20
--- response_body_like eval
qr/\Aslept\nok\nb[12]\n(?:slept\n[^\n]*\n)*?slept\n[^\n]*"connected":false,[^\n]*"last_error":"resolve: Host not found"[^\n]*"state":"failed".*\nsubscribed\n[^\n]*"address":"later\.test:\d+","connected":true,/s
--- error_log eval
qr/redis "later\.test:\d+" subscriber link resolve: Host not found, retrying in \d+ ms/
--- no_error_log
[crit]



=== TEST 9: "resolve" without a resolver fails at start, naming the directive
--- http_config
    room_affinity_redis redis.test:$TEST_NGINX_REDIS_PORT resolve;
--- config
--- must_die
--- error_log
with "resolve" needs a "resolver" in http{}
