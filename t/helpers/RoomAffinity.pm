package RoomAffinity;

# Test helpers shared by the suites: fixed ports (overridable through
# TEST_NGINX_* variables), and a small control server the suites reach
# through nginx (location /ctl/) to drive a real redis-server between the
# requests of a block: publish, keep the snapshot hash, stop and start
# Redis, kill a worker.  The control server owns the redis-server process.

use strict;
use warnings;

use IO::Socket::INET;
use POSIX ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my %defaults = (
    TEST_NGINX_B1_PORT      => 19841,
    TEST_NGINX_B2_PORT      => 19842,
    TEST_NGINX_B3_PORT      => 19843,
    TEST_NGINX_B4_PORT      => 19844,
    TEST_NGINX_DEAD_PORT    => 19849,
    TEST_NGINX_CONTROL_PORT => 19850,
    TEST_NGINX_REDIS_PORT   => 16390,
);

for my $k (keys %defaults) {
    $ENV{$k} ||= $defaults{$k};
}

my $control_pid;

sub redis_command {
    my ($port, @args) = @_;

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Timeout => 2)
        or return undef;

    my $cmd = '*' . scalar(@args) . "\r\n";
    $cmd .= '$' . length($_) . "\r\n$_\r\n" for @args;
    print $sock $cmd;

    my $line = <$sock>;
    close $sock;
    $line =~ s/\r?\n\z// if defined $line;
    return $line;
}

sub redis_ping {
    my ($port) = @_;
    my $r = redis_command($port, 'PING');
    return defined $r && $r =~ /^\+PONG/;
}

# starts redis-server as a child of the calling process
sub start_redis {
    my ($port) = @_;

    my $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec 'redis-server', '--port', $port, '--bind', '127.0.0.1',
             '--save', '', '--appendonly', 'no', '--daemonize', 'no'
            or exit 1;
    }

    for (1 .. 200) {
        return $pid if redis_ping($port);
        sleep 0.01;
    }

    die "redis-server did not start on port $port";
}

sub stop_redis {
    my ($pid) = @_;
    return unless $pid;
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

sub unescape {
    my ($s) = @_;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9a-fA-F]{2})/chr(hex($1))/ge;
    return $s;
}

sub http_get {
    my ($port, $path) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Timeout => 5)
        or return "connect failed\n";
    print $sock "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $r = <$sock> // '';
    $r =~ s/\A.*?\r\n\r\n//s;
    return $r;
}

# a minimal real WebSocket server (RFC 6455 handshake): greets with one
# text frame naming the backend that proxied it and the room, then closes
sub websocket {
    my ($c, $req, $hdr) = @_;

    require Digest::SHA;
    require MIME::Base64;

    my $accept = MIME::Base64::encode_base64(Digest::SHA::sha1(
        ($hdr->{'sec-websocket-key'} // '')
        . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'), '');

    my ($room) = $req =~ /[?&]room=([^&\s]*)/;
    my $text = 'ws ' . ($hdr->{'x-backend'} // '?') . ' room=' . ($room // '');

    print $c "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             . "Connection: Upgrade\r\nSec-WebSocket-Accept: $accept\r\n\r\n";
    print $c chr(0x81) . chr(length $text) . $text;
    print $c chr(0x88) . chr(0);
    close $c;
}

sub control_loop {
    my ($listen, $redis_port, $with_redis) = @_;

    my $redis = $with_redis ? start_redis($redis_port) : undef;

    $SIG{TERM} = sub { stop_redis($redis); POSIX::_exit(0) };

    $SIG{CHLD} = sub { 1 while waitpid(-1, WNOHANG) > 0 };

    while (1) {
        my $c = $listen->accept;
        unless ($c) {
            next if $!{EINTR};
            last;
        }

        my $req = <$c> // '';
        my %hdr;
        while (my $h = <$c>) {
            last if $h =~ /^\r?\n$/;
            $hdr{lc $1} = $2 if $h =~ /^([^:]+):\s*(.*?)\r?\n$/;
        }

        if ($hdr{upgrade} && lc $hdr{upgrade} eq 'websocket') {
            websocket($c, $req, \%hdr);
            next;
        }

        my ($path, $query) = $req =~ m{^\w+ (/[^ ?]*)\??(\S*)};
        $path //= '';
        my %raw = map { my ($k, $v) = split /=/, $_, 2; ($k, $v // '') }
                  grep { length } split /[&?]/, ($query // '');
        my %q = map { (unescape($_), unescape($raw{$_})) } keys %raw;

        my $out = 'ok';

        if ($path eq '/sleep') {
            # a slow backend answer, concurrent with everything else
            my $pid = fork();
            if (defined $pid && $pid == 0) {
                sleep(($q{wait} // 1000) / 1000);

                # then=/a,/b: fetch those nginx paths while this one lives
                my $body = "slept\n";
                for my $p (split /,/, ($raw{then} // '')) {
                    $body .= http_get($q{port}, unescape($p));
                }

                print $c "HTTP/1.0 200 OK\r\nContent-Length: "
                         . length($body) . "\r\n\r\n$body";
                close $c;
                POSIX::_exit(0);
            }
            close $c;
            next;
        }

        if ($path eq '/publish') {
            my $r = redis_command($redis_port, 'PUBLISH', $q{channel},
                                  $q{message});
            $out = defined $r ? "published $r" : 'redis unreachable';

        } elsif ($path eq '/hset') {
            my $r = redis_command($redis_port, 'HSET', $q{key}, $q{field},
                                  $q{value});
            $out = defined $r ? "hset $r" : 'redis unreachable';

        } elsif ($path eq '/redis-cmd') {
            my $r = redis_command($redis_port, split /,/, $q{cmd});
            $out = defined $r ? "redis $r" : 'redis unreachable';

        } elsif ($path eq '/wait-subscribed') {
            # until nginx's status says the subscriber link is up
            $out = 'not subscribed';
            for (1 .. 500) {
                if (http_get($q{port}, '/status') =~ /"connected":true/) {
                    $out = 'subscribed';
                    last;
                }
                sleep 0.01;
            }

        } elsif ($path eq '/prometheus-check') {
            # the exposition parsed by the real Prometheus client parser
            my $text = http_get($q{port}, '/status?format=prometheus');
            my $py = <<'PY';
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = list(text_string_to_metric_families(sys.stdin.read()))
print("parsed %d families %d samples" % (len(fams),
      sum(len(f.samples) for f in fams)))
for f in fams:
    for s in f.samples:
        print("%s %s %s" % (s.name, ",".join("%s=%s" % kv
              for kv in sorted(s.labels.items())), s.value))
PY
            my $pid = open(my $p, '-|') // die "fork: $!";
            if ($pid == 0) {
                pipe my $r, my $w or POSIX::_exit(1);
                if (fork() == 0) {
                    close $r;
                    print $w $text;
                    close $w;
                    POSIX::_exit(0);
                }
                close $w;
                open STDIN, "<&", $r or POSIX::_exit(1);
                open STDERR, '>&', \*STDOUT;
                exec "/usr/bin/python3", "-c", $py or POSIX::_exit(1);
            }
            local $/;
            $out = <$p> // 'no output';
            close $p;
            chomp $out;

        } elsif ($path eq '/redis/stop') {
            stop_redis($redis);
            $redis = undef;

        } elsif ($path eq '/redis/start') {
            $redis = start_redis($redis_port) unless $redis;

        } elsif ($path eq '/redis/signal') {
            # STOP: a Redis that keeps its connections and answers nothing
            $out = ($redis && $q{sig} =~ /^(STOP|CONT)$/
                    && kill($q{sig}, $redis)) ? "signalled $q{sig}" : 'no';
        }

        # give nginx the time to take in what was just done
        sleep(($q{wait} // 50) / 1000);

        print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                 . "Content-Length: " . (length($out) + 1) . "\r\n\r\n$out\n";
        close $c;
    }

    POSIX::_exit(0);
}

# "server {}" blocks of backends b1..bN answering their own name
sub backends {
    my ($n) = @_;

    return join '', map {
        "    server { listen 127.0.0.1:$ENV{\"TEST_NGINX_B${_}_PORT\"}; "
        . "return 200 \"b$_\\n\"; }\n"
    } 1 .. $n;
}

# the urls backends b1..bN report with
sub urls {
    my ($n) = @_;

    return map { "ws://127.0.0.1:" . $ENV{"TEST_NGINX_B${_}_PORT"} } 1 .. $n;
}

# locations of the Redis suites: the proxy, the status, /ctl/ for the
# control server, /pub/CHANNEL?JSON to publish, /ready to wait until the
# subscriber link is up
sub redis_locations {
    return <<'END';
    location / { proxy_pass http://chat; }
    location = /status { room_affinity_status; }
    location /ctl/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/;
    }
    location ~ ^/pub/(?<ch>[\w:.-]+)$ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/publish?channel=$ch&message=$args;
    }
    location = /ready {
        proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/wait-subscribed?port=$server_port;
    }
END
}

sub escape {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9_.~\/-])/sprintf '%%%02X', ord $1/ge;
    return $s;
}

# a request publishing a message (through /pub/)
sub pub {
    my ($channel, $message) = @_;
    return "GET /pub/$channel?" . escape($message);
}

# one request that makes the control server fetch these paths in turn
# (request lines without "GET "), so one block's request does it all
sub seq {
    my $then = join ',', map { escape(s/^GET //r) } @_;
    my $port = $ENV{TEST_NGINX_PORT} || 1984;
    return "GET /ctl/sleep?wait=0&port=$port&then=$then";
}

# is bN the backend of the room's first answer in this file (any kind of
# answer: proxied, WebSocket, join)
my %first;

sub same_backend {
    my ($room, $b) = @_;

    return ($first{$room} //= $b) eq $b;
}

# a regex for response_body_like: the body names a backend ("b1\n") and it
# is the room's backend
sub sticky {
    my ($room) = @_;

    return qr!\A(b\d)\n\z(?(?{ same_backend($room, $1) })|(*FAIL))!;
}

# the WebSocket greeting frame of the control server: text frame
# "ws bN room=ROOM", and bN the room's backend
sub ws_sticky {
    my ($room) = @_;

    return qr!\A\x81[\x00-\x7d]ws (b\d) room=\Q$room\E(?(?{
        same_backend($room, $1) })|(*FAIL))!;
}

# a JSON error answer, with the reason as it reads before JSON escaping
sub error_json {
    my ($code, $reason) = @_;

    $reason =~ s/(["\\])/\\$1/g;
    return qr!\A\{"error":"\Q$code\E","reason":"\Q$reason\E"\}\r\n\z!;
}

# a chunked request body, in chunks of $size bytes
sub chunked {
    my ($body, $size) = @_;
    my $out = '';

    while (length $body) {
        my $part = substr($body, 0, $size, '');
        $out .= sprintf("%x\r\n%s\r\n", length $part, $part);
    }

    return $out . "0\r\n\r\n";
}

# the server lines of an upstream over the backends b1..bN
sub servers {
    my ($n) = @_;

    return join '', map {
        "    server 127.0.0.1:\$TEST_NGINX_B${_}_PORT;\n" } 1 .. $n;
}

# remember which backend answered for a room (any "bN"), under a tag
my %recorded;

sub record {
    my ($tag, $room) = @_;

    return qr!\A(b\d)\n\z(?{ $recorded{"$tag/$room"} = $1 })!;
}

# the same backend as recorded under the tag
sub same_as {
    my ($tag, $room) = @_;

    return qr!\A(b\d)\n\z(?(?{ ($recorded{"$tag/$room"} // '') eq $1 })|(*FAIL))!;
}

# after the backend "gone" became unavailable: a room that was elsewhere
# has not moved, a room that was on "gone" is now elsewhere; records the
# answer under the tag "to"
sub moved_only_from {
    my ($from, $to, $room, $gone) = @_;

    return qr!\A(b\d)\n\z(?(?{
        my $was = $recorded{"$from/$room"} // '';
        $recorded{"$to/$room"} = $1;
        $1 ne $gone && ($was eq $gone || $was eq $1)
    })|(*FAIL))!;
}

# the status JSON counts as many moved rooms as were recorded on "gone"
sub moved_count_is {
    my ($from, $gone) = @_;

    return qr!"moved":(\d+)(?(?{
        $1 == grep { $recorded{$_} eq $gone } grep { m{^\Q$from\E/} }
             keys %recorded
    })|(*FAIL))!;
}

# a body that is a worker's pid; the last check wants at least n pids
my %pids;

sub pid_seen {
    return qr!\A(\d+)\n\z(?{ $pids{$1} = 1 })!;
}

sub pids_at_least {
    my ($n) = @_;

    return qr!\A(\d+)\n\z(?{ $pids{$1} = 1 })(?(?{ keys(%pids) >= $n })|(*FAIL))!;
}

# every backend of the status JSON holds between min and max rooms
sub rooms_in_range {
    my ($json, $min, $max) = @_;

    my @r = ($json =~ m/"server":"[^"]*",[^{}]*?"rooms":(\d+)/g);

    return @r && !grep { $_ < $min || $_ > $max } @r;
}

# the same, as a regex for response_body_like
sub rooms_between {
    my ($min, $max) = @_;

    return qr/\A(?(?{ rooms_in_range($_, $min, $max) })|(*FAIL))/;
}

# starts the control server (and, with redis => 1, redis-server)
sub start_control {
    my (%opt) = @_;

    my $listen = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1',
        LocalPort => $ENV{TEST_NGINX_CONTROL_PORT},
        Listen    => 16,
        ReuseAddr => 1,
    ) or die "cannot listen on $ENV{TEST_NGINX_CONTROL_PORT}: $!";

    $control_pid = fork();
    die "fork: $!" unless defined $control_pid;

    if ($control_pid == 0) {
        control_loop($listen, $ENV{TEST_NGINX_REDIS_PORT}, $opt{redis});
    }

    close $listen;

    if ($opt{redis}) {
        for (1 .. 300) {
            last if redis_ping($ENV{TEST_NGINX_REDIS_PORT});
            sleep 0.01;
        }
    }
}

my $parent = $$;

END {
    local $?;    # reaping the control server must not set our exit code

    if ($control_pid && $$ == $parent) {
        kill 'TERM', $control_pid;
        waitpid $control_pid, 0;
    }
}

1;
