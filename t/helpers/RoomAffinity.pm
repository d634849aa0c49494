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
use JSON::PP ();
use Test::More ();

my %defaults = (
    TEST_NGINX_B1_PORT      => 19841,
    TEST_NGINX_B2_PORT      => 19842,
    TEST_NGINX_B3_PORT      => 19843,
    TEST_NGINX_B4_PORT      => 19844,
    TEST_NGINX_DEAD_PORT    => 19849,
    TEST_NGINX_CONTROL_PORT => 19850,
    TEST_NGINX_REDIS_PORT   => 16390,
);

# a port nothing listens on now (the kernel's choice for port 0)
sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1, ReuseAddr => 1)
        or die "cannot find a free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# TEST_NGINX_RANDOMIZE=1 (a random nginx port for parallel runs) also
# gives random ports to the backends, the control server and Redis,
# unless they are set
my %taken;

for my $k (sort keys %defaults) {
    next if $ENV{$k};
    if ($ENV{TEST_NGINX_RANDOMIZE}) {
        my $p;
        do { $p = free_port() } while $taken{$p}++;
        $ENV{$k} = $p;
    } else {
        $ENV{$k} = $defaults{$k};
    }
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

# the parent pid of a process, and the processes whose parent is pid
sub parent_of {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    return $stat =~ /\) \S (\d+) / ? $1 : 0;
}

sub children_of {
    my ($ppid) = @_;
    opendir my $d, '/proc' or return ();
    return grep { parent_of($_) == $ppid } grep { /^\d+$/ } readdir $d;
}

sub cmdline {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/cmdline" or return '';
    local $/;
    my $c = <$fh> // '';
    $c =~ s/\0+\z//;
    return $c;
}

# "nginx -s reload" with a changed file: copy dir/use over dir/as (a file
# the conf includes), send HUP to the master of the worker pid, and wait
# until a new worker runs and every old one has closed its listening
# sockets ("is shutting down") or exited
sub reload_nginx {
    my ($worker, $dir, $use, $as) = @_;

    my $master = parent_of($worker // 0) or return 'no nginx master';
    my %old = map { ($_ => 1) } children_of($master);

    open my $in, '<', "$dir/$use" or return "cannot read $dir/$use: $!";
    open my $out, '>', "$dir/$as.tmp" or return "cannot write $dir/$as: $!";
    print $out do { local $/; <$in> };
    close $out;
    rename "$dir/$as.tmp", "$dir/$as" or return "rename: $!";

    kill 'HUP', $master or return "cannot signal $master: $!";

    for (1 .. 500) {
        my @kids = children_of($master);
        my $new = grep { !$old{$_} && cmdline($_) =~ /worker process$/ }
                  @kids;
        my $old_left = grep { $old{$_} && cmdline($_) !~ /shutting down/ }
                       @kids;
        return "reloaded with $use" if $new && !$old_left;
        sleep 0.01;
    }

    return 'reload not finished after 5 s';
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
                my $st = eval { JSON::PP->new->decode(
                                    http_get($q{port}, '/status')) };
                if ($st && ref $st->{redis} && $st->{redis}{connected}) {
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

        } elsif ($path eq '/reload') {
            $out = reload_nginx($q{pid}, $q{dir}, $q{use}, $q{as});

        } elsif ($path eq '/hold') {
            $out = hold($q{port}, $q{n} // 1, $q{path} // '/', $q{ms} // 3000);

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

# n connections to nginx (port) asking for path, held open ms by a child
# process, while the requests of a block go on; returns once nginx's
# status counts them live (or after 5 s), with what it counts
sub hold {
    my ($port, $n, $path, $ms) = @_;

    my $before = live_total($port);

    pipe my $r, my $w or return "pipe failed";

    my $pid = fork();
    return "fork failed" unless defined $pid;

    if ($pid == 0) {
        close $r;
        my @socks;
        for (1 .. $n) {
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                          PeerPort => $port, Timeout => 5)
                or next;
            print $s "GET $path HTTP/1.1\r\nHost: localhost\r\n\r\n";
            push @socks, $s;
        }
        print $w scalar(@socks), "\n";
        close $w;
        sleep($ms / 1000);
        close $_ for @socks;
        POSIX::_exit(0);
    }

    close $w;
    my $opened = <$r> // 0;
    chomp $opened;
    close $r;

    my $live = live_total($port);
    for (1 .. 500) {
        last if $live >= $before + $opened;
        sleep 0.01;
        $live = live_total($port);
    }

    return "held $opened live $live";
}

# the room directory's figures of an upstream in an instance's status
sub directory_of {
    my ($port, $up) = @_;
    my $st = eval { JSON::PP->new->decode(http_get($port, '/status')) } // {};
    return $st->{upstreams}{$up // 'chat'}{directory} // {};
}

# one of those figures, summed over instances
sub directory_sum {
    my ($field, $up, @ports) = @_;
    my $n = 0;
    $n += directory_of($_, $up)->{$field} // 0 for @ports;
    return $n;
}

# the suites that run the Node examples (chat backends, WebSocket
# clients) skip themselves without node or examples/node_modules
sub need_node {
    my ($root) = @_;

    return if system('command -v node >/dev/null 2>&1') == 0
              && -d "$root/examples/node_modules/ws"
              && -d "$root/examples/node_modules/redis";

    Test::More::plan(skip_all => 'node and examples/node_modules (npm ci '
                                 . '--prefix examples) are needed');
}

# examples/ws-client/client.js on url in the background, with its
# options (--hold MS, --send TEXT, ...); returns its pid
sub ws_client_bg {
    my ($root, $url, @opts) = @_;

    my $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec 'node', "$root/examples/ws-client/client.js", '--url', $url,
             @opts
            or POSIX::_exit(3);
    }

    return $pid;
}

# polls until the condition holds, at most $secs; whether it did
sub until_ok {
    my ($secs, $cond) = @_;
    my $end = time + $secs;
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}

# the live connections of every backend of the status, summed
sub live_total {
    my ($port) = @_;
    my $sum = 0;
    my $status = http_get($port, '/status');
    $sum += $1 while $status =~ /"live":(\d+)/g;
    return $sum;
}

# another nginx instance, for the suites that need several (plain
# Test::More): its own prefix under the server root, the module loaded, two
# workers, the http block given; returns its pid (QUIT it at the end)
sub instance {
    my ($name, $http) = @_;

    require File::Path;

    my $root = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . "-$name";
    my $load = join '', map { "load_module $_;\n" }
               split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');

    File::Path::remove_tree($root);
    File::Path::make_path("$root/conf", "$root/logs");

    open my $fh, '>', "$root/conf/nginx.conf" or die $!;
    print $fh "$load\nmaster_process on;\nworker_processes 2;\n"
              . "daemon off;\nerror_log logs/error.log info;\n"
              . "pid logs/nginx.pid;\nevents { worker_connections 1024; }\n"
              . "http {\n    access_log off;\n$http\n}\n";
    close $fh;

    my $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        open STDERR, '>', "$root/logs/stderr.log";
        exec $ENV{TEST_NGINX_BINARY} || 'nginx', '-p', "$root/",
             '-c', 'conf/nginx.conf'
            or POSIX::_exit(1);
    }

    return $pid;
}

# "server {}" blocks of backends b1..bN answering their own name
sub backends {
    my ($n) = @_;

    return join '', map {
        "    server { listen 127.0.0.1:$ENV{\"TEST_NGINX_B${_}_PORT\"}; "
        . "return 200 \"b$_\\n\"; }\n"
    } 1 .. $n;
}

# the same for the backends listed (backend_servers(1, 3): b1 and b3)
sub backend_servers {
    return join '', map {
        "    server { listen 127.0.0.1:\$TEST_NGINX_B${_}_PORT; "
        . "return 200 \"b$_\\n\"; }\n"
    } @_;
}

# An "upstream {}" block from one line (the "--- upstream" section):
#
#   [NAME] [$KEY] zone=ZONE[:SIZE] [PARAM=VALUE ...] SERVER ... [keepalive=N]
#
# NAME defaults to "chat", $KEY to $arg_room, SIZE to 1m; other PARAM=VALUE
# words (ttl=1s) are room_affinity parameters; a SERVER is bN (backend N),
# "dead" (a port nothing listens on) or "include=FILE", each bN or dead
# followed by its server parameters after colons (b3:weight=2,
# b1:down, dead:max_fails=1:fail_timeout=60s).
#
#   upstream("zone=s1 b1 b2:backup") gives
#   upstream chat {
#       room_affinity $arg_room zone=s1:1m;
#       server 127.0.0.1:$TEST_NGINX_B1_PORT;
#       server 127.0.0.1:$TEST_NGINX_B2_PORT backup;
#   }
sub upstream {
    my ($line) = @_;
    my ($name, $key, @ra, @body);

    for my $w (split ' ', $line) {
        if ($w =~ /^(b(\d+)|dead)((?::[^:\s]+)*)$/) {
            my $port = defined $2 ? "B$2" : 'DEAD';
            my @p = grep { length } split /:/, $3;
            push @body, join(' ', "server 127.0.0.1:\$TEST_NGINX_${port}_PORT",
                             @p) . ';';
        } elsif ($w =~ /^include=(\S+)$/) {
            push @body, "include $1;";
        } elsif ($w =~ /^keepalive=(\d+)$/) {
            push @body, "keepalive $1;";
        } elsif ($w =~ /^zone=([\w-]+)(:\w+)?$/) {
            push @ra, "zone=$1" . ($2 // ':1m');
        } elsif ($w =~ /^\w+=/) {
            push @ra, $w;
        } elsif ($w =~ /^\$\w+$/ && !defined $key) {
            $key = $w;
        } elsif ($w =~ /^[\w.-]+$/ && !defined $name && !@body && !@ra) {
            $name = $w;
        } else {
            die "--- upstream: cannot read \"$w\" in \"$line\"\n";
        }
    }

    die "--- upstream: no zone= in \"$line\"\n" unless grep { /^zone=/ } @ra;
    die "--- upstream: no server in \"$line\"\n"
        unless grep { /^(server|include) / } @body;

    return "    upstream " . ($name // 'chat') . " {\n"
           . "        room_affinity " . join(' ', $key // '$arg_room', @ra)
           . ";\n" . join('', map { "        $_\n" } @body) . "    }\n";
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

# a location that reloads nginx as an operator does: GET /reload/NAME
# copies NAME (a user file, in html/) over html/servers.conf, which the
# block's upstream includes ("include ../html/servers.conf;", relative to
# conf/), sends HUP to the master and answers "reloaded with NAME" once
# the new workers took over; needs master_on() and start_control()
sub reload_location {
    return <<'END';
    location ~ ^/reload/(?<conf>[\w.-]+)$ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/reload?pid=$pid&dir=$document_root&use=$conf&as=servers.conf&wait=0;
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
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
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

# a JSON error answer {"error":CODE,"reason":REASON}, the reason as it
# reads once decoded (a qr// for a reason that varies)
sub error_json {
    my ($code, $reason) = @_;

    return json_is_answer({ error => $code, reason => $reason });
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

# the status JSON (of the upstream "chat", or the one named) counts as many
# moved rooms as were recorded on "gone" under the tag $from
sub moved_count_is {
    my ($from, $gone, $upstream) = @_;

    my $want = sub {
        $_[0] == grep { $recorded{$_} eq $gone } grep { m{^\Q$from\E/} }
                 keys %recorded
    };
    return json_like({ upstreams => { ($upstream // 'chat') => {
                           zone => { moved => $want } } } });
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

# every backend of every upstream of the status JSON holds between min and
# max rooms (and there is at least one backend)
sub rooms_in_range {
    my ($json, $min, $max) = @_;

    my $doc = eval { JSON::PP->new->decode($json) };
    return '' unless ref $doc eq 'HASH' && ref $doc->{upstreams} eq 'HASH';

    my @r = map { $_->{rooms} } map { @{ $_->{backends} // [] } }
            values %{ $doc->{upstreams} };

    return @r && !grep { !defined $_ || $_ < $min || $_ > $max } @r;
}

# the same, as a regex for response_body_like
sub rooms_between {
    my ($min, $max) = @_;

    return json_like({ upstreams => each_of({ backends => each_of({
                           rooms => between($min, $max) }) }) });
}

# ---------------------------------------------------------------------
# JSON answers compared as data
# ---------------------------------------------------------------------

# Does the decoded value $got hold what $want says?  A hash wants those
# keys (others may exist: fields are added over time); an array wants
# exactly those elements; a hash wanted of an array picks elements by
# their "server" (the status's backends): { "127.0.0.1:1234" => { rooms
# => 2 } }; a qr// matches a string or number; a code ref is a predicate
# ($_ is the value); undef wants null; JSON::PP::true / false want
# booleans; present(), absent(), between(), each_of() and boolean() below
# say more; anything else is compared as a string (so 5 wants 5 or "5",
# and "5.50" wants the number as printed only if JSON gave a string).
# Returns "" when it does, else where and how it differs.
sub json_diff {
    my ($got, $want, $at) = @_;
    $at //= '';

    if (!defined $want) {
        return defined $got ? "$at: want null, got " . _show($got) : '';
    }
    if (ref $want eq 'RoomAffinity::Check') {
        local $_ = $got;
        return $want->{test}->($got)
               ? '' : "$at: want $want->{what}, got " . _show($got);
    }
    if (ref $want eq 'RoomAffinity::Each') {
        my @el = ref $got eq 'ARRAY' ? @$got
               : ref $got eq 'HASH' ? map { $got->{$_} } sort keys %$got
               : return "$at: want an array or object, got " . _show($got);
        return "$at: want " . ($want->{count} // 'some') . " elements, got "
               . @el
            if defined $want->{count} ? @el != $want->{count} : !@el;
        my @keys = ref $got eq 'HASH' ? sort keys %$got : 0 .. $#el;
        for my $i (0 .. $#el) {
            my $d = json_diff($el[$i], $want->{want}, "$at\[$keys[$i]]");
            return $d if $d;
        }
        return '';
    }
    if (ref $want eq 'CODE') {
        local $_ = $got;
        return $want->($got) ? '' : "$at: " . _show($got) . " fails the check";
    }
    if (ref $want eq 'Regexp') {
        return "$at: want a value matching $want, got " . _show($got)
            if !defined $got || ref $got || $got !~ $want;
        return '';
    }
    if (JSON::PP::is_bool($want)) {
        return "$at: want " . ($want ? 'true' : 'false') . ", got " . _show($got)
            unless JSON::PP::is_bool($got) && !!$got == !!$want;
        return '';
    }
    if (ref $want eq 'HASH' && ref $got eq 'ARRAY') {
        for my $key (sort keys %$want) {
            my ($el) = grep { ref $_ eq 'HASH' && ($_->{server} // '') eq $key }
                       @$got;
            return "$at: no element with server \"$key\"" unless $el;
            my $d = json_diff($el, $want->{$key}, "$at\[server=$key]");
            return $d if $d;
        }
        return '';
    }
    if (ref $want eq 'HASH') {
        return "$at: want an object, got " . _show($got) unless ref $got eq 'HASH';
        for my $key (sort keys %$want) {
            if (ref $want->{$key} eq 'RoomAffinity::Absent') {
                return "$at.$key: want no such key, got "
                       . _show($got->{$key})
                    if exists $got->{$key};
                next;
            }
            return "$at.$key: missing" unless exists $got->{$key};
            next if ref $want->{$key} eq 'RoomAffinity::Present';
            my $d = json_diff($got->{$key}, $want->{$key}, "$at.$key");
            return $d if $d;
        }
        return '';
    }
    if (ref $want eq 'ARRAY') {
        return "$at: want an array of " . @$want . ", got " . _show($got)
            unless ref $got eq 'ARRAY' && @$got == @$want;
        for my $i (0 .. $#$want) {
            my $d = json_diff($got->[$i], $want->[$i], "$at\[$i]");
            return $d if $d;
        }
        return '';
    }
    return "$at: want \"$want\", got " . _show($got)
        if !defined $got || ref $got || "$got" ne "$want";
    return '';
}

# the key is there, whatever its value (null too)
sub present { return bless [], 'RoomAffinity::Present' }

# the key is not there
sub absent { return bless [], 'RoomAffinity::Absent' }

# a value for which the code ref holds, described as $what in a mismatch
sub check {
    my ($what, $test) = @_;
    return bless { what => $what, test => $test }, 'RoomAffinity::Check';
}

# a number from min to max, both included
sub between {
    my ($min, $max) = @_;
    return bless { what => "a number from $min to $max", test => sub {
        defined $_[0] && !ref $_[0]
        && $_[0] =~ /^-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?$/
        && $_[0] >= $min && $_[0] <= $max
    } }, 'RoomAffinity::Check';
}

# a non-negative integer (a counter, an age in ms, a pid)
sub count {
    return bless { what => 'a non-negative integer', test => sub {
        defined $_[0] && !ref $_[0] && !JSON::PP::is_bool($_[0])
        && $_[0] =~ /^\d+$/
    } }, 'RoomAffinity::Check';
}

# true or false, either
sub boolean {
    return bless { what => 'true or false',
                   test => sub { JSON::PP::is_bool($_[0]) } },
                 'RoomAffinity::Check';
}

# every element of an array (or every value of an object) is what $want
# says; there are $n of them, or at least one when $n is not given
sub each_of {
    my ($want, $n) = @_;
    return bless { want => $want, count => $n }, 'RoomAffinity::Each';
}

sub _show {
    my ($v) = @_;
    return 'null' unless defined $v;
    return JSON::PP->new->canonical->allow_nonref->encode($v);
}

# a regex for response_body_like (or the expected value of a check): the
# body, optionally after a prefix matched by $before (the lines a seq()
# prints first) and before a suffix matched by $after (e.g. qr/\r\n/ for
# the exact ending of an answer), is one JSON document that json_diff()
# accepts; a mismatch is printed as a diagnostic
sub json_like {
    my ($want, $before, $after) = @_;
    $before //= qr//;

    return qr/\A$before(?<json>.*)\z(?(?{ _json_ok($want, $+{json}) })|(*FAIL))/s
        unless defined $after;

    return qr/\A$before(?<json>.*?)$after\z(?(?{
        _json_ok($want, $+{json}) })|(*FAIL))/s;
}

# the same for a whole answer ending in CRLF, as every JSON answer of the
# module (join, error, one room) does
sub json_is_answer {
    my ($want) = @_;
    return json_like($want, undef, qr/\r\n/);
}

sub _json_ok {
    my ($want, $text) = @_;
    my $got = eval { JSON::PP->new->decode($text) };
    my $diff = defined $got || $text eq 'null'
             ? json_diff($got, $want) : "not JSON: " . ($@ =~ s/ at \S+ line.*//sr);
    Test::More::diag("JSON answer: $diff") if $diff;
    return !$diff;
}

# the status JSON's entry of the backend bN: { "127.0.0.1:PORT" => {...} }
sub b {
    my ($n, $want) = @_;
    return ("127.0.0.1:" . $ENV{"TEST_NGINX_B${n}_PORT"} => $want);
}

# ---------------------------------------------------------------------
# each block on its own
# ---------------------------------------------------------------------

# Before every block (and before its nginx starts): the helpers' records
# of earlier blocks are forgotten, and the block's "--- setup" steps run,
# one a line:
#   redis start | redis stop       the control server's redis-server
#   redis CMD ARG ...              a command (a "-ERR" answer dies)
# $TEST_NGINX_* in the steps are replaced from the environment.
sub new_block {
    my ($block) = @_;

    %first = ();
    %recorded = ();
    %pids = ();

    # "--- backends: 1 2 3": the server {} blocks of b1, b2, b3, each
    # answering its own name, added to the block's http_config
    my $list = $block->can('backends') ? $block->backends : undef;
    if (defined $list) {
        my @n = split ' ', $list;
        die "--- backends: want numbers, got \"$list\"\n" if grep { !/^\d+$/ } @n;
        $block->set_value(http_config => ($block->http_config // '')
                                          . backend_servers(@n));
    }

    # "--- upstream": one "upstream {}" block a line, written with
    # upstream() above, added to the block's http_config
    my $ups = $block->can('upstream') ? $block->upstream : undef;
    if (defined $ups) {
        $block->set_value(http_config => ($block->http_config // '')
            . join '', map { upstream($_) } grep { /\S/ } split /\n/, $ups);
    }

    my $setup = $block->can('setup') ? $block->setup : undef;
    return unless defined $setup;

    for my $step (split /\n/, $setup) {
        $step =~ s/\$(TEST_NGINX_\w+)/$ENV{$1} \/\/ die "$1 is not set\n"/ge;
        my @w = split ' ', $step;
        next unless @w;
        die "setup step \"$step\": not a redis step\n" unless $w[0] eq 'redis';

        if (@w == 2 && $w[1] =~ /^(start|stop)$/) {
            my $r = http_get($ENV{TEST_NGINX_CONTROL_PORT}, "/redis/$1?wait=0");
            die "setup step \"$step\": $r" unless $r =~ /^ok/;
            next;
        }

        my $r = redis_command($ENV{TEST_NGINX_REDIS_PORT}, @w[1 .. $#w]);
        die "setup step \"$step\": " . ($r // 'redis unreachable') . "\n"
            if !defined $r || $r =~ /^-/;
    }
}

if (defined &main::add_block_preprocessor) {
    &main::add_block_preprocessor(\&new_block);
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
