# Redis Sentinel (room_affinity_redis sentinel= master=), with real
# processes: a redis-server master and replica, three redis-server
# --sentinel, nginx logged in as the ACL user "nginx" of
# docker/redis-users.acl.
#
# - nginx -t names the directive and the fault of bad Sentinel parameters;
# - a Sentinel that is down is skipped: the next one names the master, the
#   links reach it and reports published to it are applied; the status
#   (JSON and Prometheus) shows the master and which Sentinel named it;
# - SENTINEL FAILOVER: nginx follows to the new master within a bounded
#   time, leaves the demoted one, applies reports published to the new
#   one, and proxies every request meanwhile;
# - the master killed: the Sentinels fail over, nginx follows;
# - the room directory (directory=on) as the ACL user nginx: the records
#   are written on the master, and on each new master after a failover
#   (the directory's links redial when the Sentinels name another one);
# - a Sentinel that names a replica: the ROLE check leaves it; one that
#   names a host name or never answers is not followed; one that does not
#   know the master name is logged; with no Sentinel reachable nginx goes
#   on proxying.
#
# Plain Test::More: each phase starts its own nginx.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP;
use IO::Socket::INET;
use IO::Select;
use File::Path qw(make_path remove_tree);
use File::Spec;
use Time::HiRes qw(sleep time);
use POSIX ();

use lib 't/helpers';
use RoomAffinity;

my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $modules = $ENV{TEST_NGINX_LOAD_MODULES} || '';
my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 45;
my $rport = $ENV{TEST_NGINX_REDIS_PORT};
my ($M, $R) = ($rport + 1, $rport + 2);           # master, replica
my @S = ($rport + 3, $rport + 4, $rport + 5);     # Sentinels
my $FAKE = $rport + 6;                            # a Sentinel of this test
my $DEAD = $ENV{TEST_NGINX_DEAD_PORT};
my $root = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-sentinel';
my $load = join '', map { "load_module $_;\n" } split ' ', $modules;
my ($B1, $B2) = map { $ENV{"TEST_NGINX_B${_}_PORT"} } 1, 2;
my ($U1, $U2) = RoomAffinity::urls(2);
my $http = HTTP::Tiny->new(timeout => 3, keep_alive => 1);
my $npw = 'nginx-secret-0123456789';
my ($nginx_pid, %redis, $fake_pid);

END {
    local $?;
    stop_nginx();
    kill 'KILL', $_ for grep { $_ } values %redis, $fake_pid;
    waitpid $_, 0 for grep { $_ } values %redis, $fake_pid;
}

remove_tree($root);
make_path("$root/conf", "$root/logs");

# the repository's ACL file, and a "default" user with every right for
# the replica, the Sentinels and this test
open my $in, '<', 'docker/redis-users.acl' or die "docker/redis-users.acl: $!";
open my $acl, '>', "$root/conf/users.acl" or die $!;
while (<$in>) {
    next if /^user default /;
    s/\@NGINX_PASSWORD\@/$npw/;
    s/\@BACKEND_PASSWORD\@/backend-secret-0123456789/;
    print $acl $_;
}
print $acl "user default on nopass ~* &* +\@all\n";
print $acl "user norole on >norole-secret ~* &* +\@all -role\n";
close $acl;
close $in;

# ---------------------------------------------------------------------
# helpers

sub redis {
    my ($p, @args) = @_;
    return RoomAffinity::redis_command($p, @args) // 'unreachable';
}

# a whole reply, flattened (arrays of bulk strings, as Sentinel answers)
sub redis_all {
    my ($p, @args) = @_;

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $p, Timeout => 2)
        or return ();
    my $cmd = '*' . @args . "\r\n";
    $cmd .= '$' . length($_) . "\r\n$_\r\n" for @args;
    print $sock $cmd;

    my @out;
    my $want = 1;
    while ($want-- > 0) {
        my $line = <$sock> // last;
        $line =~ s/\r\n\z//;
        if ($line =~ /^\*(\d+)/) { $want += $1; next }
        if ($line =~ /^\$(-?\d+)/) {
            next if $1 < 0;
            my $v = <$sock> // last;
            $v =~ s/\r\n\z//;
            push @out, $v;
            next;
        }
        push @out, $line =~ s/^://r;    # an integer
    }
    close $sock;
    return @out;
}

sub start_server {
    my ($name, @args) = @_;

    my $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        open STDOUT, '>', "$root/logs/$name.log";
        open STDERR, '>&', \*STDOUT;
        exec 'redis-server', @args or exit 1;
    }

    $redis{$name} = $pid;
    return $pid;
}

sub start_redis {
    my ($name, $p, @more) = @_;

    start_server($name, '--port', $p, '--bind', '127.0.0.1', '--save', '',
                 '--appendonly', 'no', '--daemonize', 'no',
                 '--aclfile', File::Spec->rel2abs("$root/conf/users.acl"),
                 '--dir', "$root/logs", @more);

    for (1 .. 300) {
        return if RoomAffinity::redis_ping($p);
        sleep 0.01;
    }
    die "redis-server $name did not start on $p";
}

sub start_sentinel {
    my ($i) = @_;

    my $file = "$root/conf/sentinel$i.conf";
    open my $fh, '>', $file or die $!;
    print $fh <<"END";
port $S[$i]
bind 127.0.0.1
daemonize no
dir $root/logs
sentinel monitor mymaster 127.0.0.1 $M 2
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 6000
sentinel parallel-syncs mymaster 1
END
    close $fh;

    start_server("sentinel$i", $file, '--sentinel');

    for (1 .. 300) {
        return if RoomAffinity::redis_ping($S[$i]);
        sleep 0.01;
    }
    die "redis-server --sentinel $i did not start on $S[$i]";
}

sub stop_server {
    my ($name) = @_;
    my $pid = delete $redis{$name} or return;
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

# polls until the condition holds (limit seconds); its last value
sub poll {
    my ($limit, $cond) = @_;
    my $end = time + $limit;
    my $v;

    while (1) {
        $v = eval { $cond->() };
        return $v if $v || time > $end;
        sleep 0.05;
    }
}

sub conf {
    my ($redis_line) = @_;

    return <<"END";
$load
master_process on;
worker_processes 2;
daemon off;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    $redis_line;
    upstream chat {
        room_affinity \$arg_room zone=sentinel_chat:1m;
        server 127.0.0.1:$B1;
        server 127.0.0.1:$B2;
    }
@{[ RoomAffinity::backends(2) ]}
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://chat; }
        location = /status { room_affinity_status; }
    }
}
END
}

# nginx -t of a configuration: its output
sub nginx_t {
    my ($redis_line) = @_;

    open my $fh, '>', "$root/conf/test.conf" or die $!;
    print $fh conf($redis_line);
    close $fh;

    my $out = `$nginx -t -p $root/ -c conf/test.conf 2>&1`;
    return ($? >> 8, $out);
}

sub start_nginx {
    my ($redis_line) = @_;

    stop_nginx();
    unlink "$root/logs/error.log";

    open my $fh, '>', "$root/conf/nginx.conf" or die $!;
    print $fh conf($redis_line);
    close $fh;

    $nginx_pid = fork();
    die "fork: $!" unless defined $nginx_pid;

    if ($nginx_pid == 0) {
        open STDERR, '>', "$root/logs/stderr.log";
        exec $nginx, '-p', "$root/", '-c', 'conf/nginx.conf' or exit 1;
    }

    poll(5, sub { get('/status') =~ /^\{/ });
}

sub stop_nginx {
    return unless $nginx_pid;
    kill 'QUIT', $nginx_pid;
    waitpid $nginx_pid, 0;
    $nginx_pid = undef;
}

sub get {
    my ($path) = @_;
    my $r = $http->get("http://127.0.0.1:$port$path");
    return $r->{success} ? $r->{content} : "error $r->{status}";
}

sub status {
    return eval { decode_json(get('/status')) } || {};
}

sub backend {
    my ($s, $p) = @_;
    my ($b) = grep { $_->{server} eq "127.0.0.1:$p" }
              @{ $s->{upstreams}{chat}{backends} || [] };
    return $b || {};
}

sub error_log {
    open my $fh, '<', "$root/logs/error.log" or return '';
    local $/;
    return <$fh>;
}

# the subscriptions of nginx on a Redis: 1 when its subscriber is there
sub subscribers {
    my ($p) = @_;
    my @r = redis_all($p, 'PUBSUB', 'NUMSUB', 'signaling');
    return $r[1] // -1;
}

# the room directory: a new room's first request goes to the backend that
# the record on the Redis at port p names
sub directory_on {
    my ($p, $room) = @_;

    my $answer = get("/?room=$room") =~ s/\s+\z//r;
    my $b = { b1 => "127.0.0.1:$B1", b2 => "127.0.0.1:$B2" }->{$answer}
            // return 0;
    my ($rec) = poll(3, sub {
        (redis_all($p, 'HGET', "room_affinity:dir:chat:$room", 'b'))[0];
    });
    diag("room $room: $answer, record on $p: " . ($rec // 'none'))
        unless ($rec // '') eq $b;
    return ($rec // '') eq $b;
}

# a report published on the Redis at port p is applied (connections n)
sub report_applied {
    my ($p, $n) = @_;

    return poll(5, sub {
        redis($p, 'PUBLISH', 'signaling',
              qq({"url":"$U1","connections":$n}));
        (backend(status(), $B1)->{report}{connections} // -1) == $n;
    });
}

# ---------------------------------------------------------------------
# nginx -t: the directive and the fault are named

for my $t (
    ["sentinel=127.0.0.1:$S[0]", qr/"room_affinity_redis" directive "sentinel=" needs "master="/],
    ["127.0.0.1:$M master=mymaster", qr/"room_affinity_redis" directive "master=" needs "sentinel="/],
    ["127.0.0.1:$M sentinel_password=x", qr/"room_affinity_redis" directive "sentinel_password=" needs "sentinel="/],
    ["sentinel=127.0.0.1:$S[0] master=m sentinel_user=u", qr/"room_affinity_redis" directive "sentinel_user=" needs "sentinel_password="/],
    ["sentinel=127.0.0.1:$S[0] master=m resolve", qr/"room_affinity_redis" directive "resolve" cannot be used with "sentinel="/],
    ["sentinel=127.0.0.1:$S[0],,127.0.0.1:1 master=m", qr/invalid sentinel address "" in "sentinel=/],
    ["sentinel=127.0.0.1:99999 master=m", qr/invalid sentinel address "127\.0\.0\.1:99999": invalid port/],
    ["sentinel=unix:/tmp/s.sock master=m", qr/invalid sentinel address "unix:\/tmp\/s\.sock"/],
    ["sentinel=127.0.0.1 master=", qr/invalid parameter "master="/],
    ["127.0.0.1:$M sentinel=127.0.0.1 master=m", qr/invalid parameter "127\.0\.0\.1:$M"/],
    ["sentinel=" . join(',', map { "127.0.0.1:" . (30000 + $_) } 1 .. 17) . " master=m", qr/more than 16 sentinels/],
) {
    my ($rc, $out) = nginx_t("room_affinity_redis $t->[0]");
    ok($rc != 0, "nginx -t refuses: $t->[0]");
    like($out, $t->[1], "and says why: $t->[0]");
}

my ($rc, $out) = nginx_t("room_affinity_redis sentinel=127.0.0.1:$S[0],"
                         . "127.0.0.1 sentinel=localhost:$S[2] master=mymaster "
                         . "sentinel_user=u sentinel_password=p");
is($rc, 0, 'nginx -t takes sentinel= lists, repeated, default port, '
           . 'names resolved at load') or diag($out);

# ---------------------------------------------------------------------
# a master, a replica, three Sentinels

start_redis('master', $M);
start_redis('replica', $R, '--replicaof', '127.0.0.1', $M);
start_sentinel($_) for 0 .. 2;

ok(poll(30, sub {
       my @r = redis_all($S[0], 'SENTINEL', 'master', 'mymaster');
       my %h = @r;
       ($h{'num-slaves'} // 0) >= 1 && ($h{'num-other-sentinels'} // 0) >= 2;
   }), 'the Sentinels know the replica and each other')
    or diag(join ' ', redis_all($S[0], 'SENTINEL', 'master', 'mymaster'));

# a Sentinel that is down first: the next one is asked

my $line = "room_affinity_redis sentinel=127.0.0.1:$DEAD,"
           . join(',', map { "127.0.0.1:$_" } @S)
           . " master=mymaster user=nginx password=$npw "
           . "connect_timeout=500ms command_timeout=500ms ping_interval=300ms"
           . " directory=on";

start_nginx($line);

my $s = poll(10, sub { my $s = status(); $s->{redis}{connected} && $s });
ok($s->{redis}{connected}, 'nginx reached the master through the Sentinels')
    or diag(error_log());
is($s->{redis}{address}, 'mymaster', 'the status names the service');
is($s->{redis}{sentinel}{master}, "127.0.0.1:$M", 'the status shows the master');
is($s->{redis}{sentinel}{answered_by}, "127.0.0.1:$S[0]",
   'and the Sentinel that named it: the first one up');
ok($s->{redis}{sentinel}{failures} >= 1, 'the Sentinel down is counted');
like(error_log(), qr/sentinel "127\.0\.0\.1:$DEAD" connect: Connection refused/,
     'and logged');
like(error_log(), qr/sentinel "127\.0\.0\.1:$S[0]" names 127\.0\.0\.1:$M, the master "mymaster"/,
     'the master found is logged');
is(subscribers($M), 1, 'nginx subscribes on the master');
ok(report_applied($M, 7), 'a report published on the master is applied');

my $prom = get('/status?format=prometheus');
like($prom, qr/^room_affinity_redis_sentinel_master\{master_name="mymaster",address="127\.0\.0\.1:$M",sentinel="127\.0\.0\.1:$S[0]"\} 1$/m,
     'Prometheus: the master and the Sentinel');
like($prom, qr/^room_affinity_redis_sentinel_failures_total [1-9]/m,
     'Prometheus: the Sentinel down counted');

# the exposition as the real Prometheus client parser reads it
open my $pf, '>', "$root/prom.txt" or die $!;
print $pf $prom;
close $pf;
my $parsed = `/usr/bin/python3 -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in f.samples:
        print(s.name, ",".join("%s=%s" % kv for kv in sorted(s.labels.items())), s.value)
' $root/prom.txt 2>&1`;
like($parsed, qr/^room_affinity_redis_sentinel_master address=127\.0\.0\.1:$M,master_name=mymaster,sentinel=127\.0\.0\.1:$S[0] 1\.0$/m,
     'the Prometheus parser reads the master') or diag($parsed);
like($parsed, qr/^room_affinity_redis_sentinel_switches_total  0\.0$/m,
     'and the switches');

like(get('/?room=r1'), qr/^b[12]$/, 'proxying');
ok(directory_on($M, 'r1'), 'the room directory: the record is on the master, '
   . 'written as the ACL user nginx');

# ---------------------------------------------------------------------
# SENTINEL FAILOVER: nginx follows; proxying never stops

my $start = time;
is(redis($S[0], 'SENTINEL', 'FAILOVER', 'mymaster'), '+OK',
   'SENTINEL FAILOVER asked');

my ($requests, $failed, $at) = (0, 0, undef);
my $deadline = time + 20;

while (time < $deadline) {
    $requests++;
    $failed++ unless get("/?room=f$requests") =~ /^b[12]$/;

    $s = status();
    if (($s->{redis}{sentinel}{master} // '') eq "127.0.0.1:$R"
        && $s->{redis}{connected} && subscribers($R) == 1)
    {
        $at = time - $start;
        last;
    }
    sleep 0.02;
}

ok(defined $at, 'nginx follows the failover to the replica promoted')
    or diag(explain($s->{redis}), error_log());
ok(defined $at && $at < 5, sprintf('within 5 s of the failover (%.1f s)',
                                   $at // -1));
diag(sprintf('failover followed in %.2f s', $at)) if defined $at;
is($failed, 0, "every request proxied during the failover ($requests)");
ok($s->{redis}{sentinel}{switches} >= 1, 'the switch is counted');
like(error_log(), qr/switched to 127\.0\.0\.1:$R, the master "mymaster"/,
     'the +switch-master announcement is logged');
ok(poll(5, sub { subscribers($R) == 1 }), 'nginx subscribes on the new master');
ok(poll(10, sub { subscribers($M) == 0 }), 'and has left the demoted one');
ok(report_applied($R, 11), 'a report published on the new master is applied');
ok(directory_on($R, 'after-failover'),
   "the directory's links follow: a new room's record is on the new master");

# ---------------------------------------------------------------------
# the master killed: the Sentinels fail over (down-after 1 s, quorum 2)

ok(poll(20, sub {
       my %h = redis_all($S[1], 'SENTINEL', 'master', 'mymaster');
       ($h{'num-slaves'} // 0) >= 1 && ($h{ip} // '') eq '127.0.0.1'
           && ($h{port} // 0) == $R
           && redis($M, 'ROLE') ne 'unreachable'
           && (redis_all($M, 'ROLE'))[0] eq 'slave'
           && (redis_all($M, 'ROLE'))[3] eq 'connected';
   }), 'the old master is a replica of the new one');

$start = time;
stop_server('replica');     # the master now

($requests, $failed, $at) = (0, 0, undef);
$deadline = time + 30;

while (time < $deadline) {
    $requests++;
    $failed++ unless get("/?room=k$requests") =~ /^b[12]$/;

    $s = status();
    if (($s->{redis}{sentinel}{master} // '') eq "127.0.0.1:$M"
        && $s->{redis}{connected} && subscribers($M) == 1)
    {
        $at = time - $start;
        last;
    }
    sleep 0.05;
}

ok(defined $at, 'nginx follows when the master is killed')
    or diag(explain($s->{redis}), error_log());
diag(sprintf('master killed: followed in %.2f s', $at)) if defined $at;
is($failed, 0, "every request proxied meanwhile ($requests)");
ok(report_applied($M, 13), 'a report published on the new master is applied');
ok(directory_on($M, 'after-kill'),
   "a new room's record is on the master after the kill too");
is(status()->{upstreams}{chat}{directory}{splits}, 0,
   'and no room was split by the failovers');

# a reload: the new workers ask the Sentinels again

my $gen = $s->{redis}{sentinel}{generation};
my @old = RoomAffinity::children_of($nginx_pid);
kill 'HUP', $nginx_pid;
ok(poll(10, sub {
       my %old = map { $_ => 1 } @old;
       my $s = status();
       $s->{redis}{connected} && !$old{$s->{redis}{subscriber_pid}}
           && ($s->{redis}{sentinel}{master} // '') eq "127.0.0.1:$M";
   }), 'after a reload a new worker is on the master');
ok(poll(5, sub { subscribers($M) == 1 }), 'with one subscription');
ok(report_applied($M, 17), 'and reports are applied');
$s = status();
is($s->{redis}{sentinel}{generation}, $gen,
   'the same master: the same generation');
is($s->{redis}{sentinel}{switches}, 2, 'two failovers followed');

# the Sentinel watched goes away: another one is watched, the links stay

is($s->{redis}{sentinel}{answered_by}, "127.0.0.1:$S[0]",
   'the first Sentinel up is watched');
my $connects = $s->{redis}{connects};
stop_server('sentinel0');
ok(poll(10, sub {
       (status()->{redis}{sentinel}{answered_by} // '') eq "127.0.0.1:$S[1]"
   }), 'the Sentinel watched lost: the next one is') or diag(error_log());
like(error_log(), qr/sentinel "127\.0\.0\.1:$S[0]" (connection lost|watch)/,
     'the loss is logged');
$s = status();
ok($s->{redis}{connected}, 'the links stay up');
is($s->{redis}{connects}, $connects, 'and were not reopened');

stop_nginx();

# ---------------------------------------------------------------------
# a Sentinel with a password and an ACL user: sentinel_password=,
# sentinel_user=

my $S4 = $rport + 7;
open my $fh4, '>', "$root/conf/sentinel4.conf" or die $!;
print $fh4 <<"END";
port $S4
bind 127.0.0.1
daemonize no
dir $root/logs
requirepass sentinel-secret
user lookup on >lookup-secret +\@all ~* &*
sentinel monitor mymaster 127.0.0.1 $M 2
END
close $fh4;
start_server('sentinel4', "$root/conf/sentinel4.conf", '--sentinel');
poll(3, sub { redis($S4, 'PING') =~ /NOAUTH|PONG/ });

for my $t (['sentinel_password=wrong', 0],
           ['sentinel_password=sentinel-secret', 1],
           ['sentinel_user=lookup sentinel_password=lookup-secret', 1])
{
    start_nginx("room_affinity_redis sentinel=127.0.0.1:$S4 master=mymaster "
                . "$t->[0] user=nginx password=$npw backoff=500ms");

    if ($t->[1]) {
        ok(poll(10, sub { status()->{redis}{connected} }),
           "$t->[0]: the Sentinel answers") or diag(error_log());
    } else {
        ok(poll(5, sub { error_log() =~ /sentinel AUTH failed: WRONGPASS/ }),
           "$t->[0]: refused, logged") or diag(error_log());
        ok(!status()->{redis}{connected}, "$t->[0]: not connected");
    }
}

stop_nginx();
stop_server('sentinel4');

# an ACL user without +role: warned once, the links work unchecked

start_nginx("room_affinity_redis sentinel=127.0.0.1:$S[1] master=mymaster "
            . "user=norole password=norole-secret ping_interval=300ms");
ok(poll(10, sub { status()->{redis}{connected} }),
   'without +role the links work') or diag(error_log());
ok(poll(5, sub { error_log() =~ /redis ROLE failed: NOPERM.*; the role of the server is not checked/ }),
   'and a warning says the role is not checked') or diag(error_log());
sleep 1;
my $warned = () = error_log() =~ /redis ROLE failed/g;
is($warned, 1, 'once');
ok(status()->{redis}{connected}, 'still connected');

# ---------------------------------------------------------------------
# a Sentinel of this test: names what it is told to, or nothing

# replies by the mode in $root/fake: "replica" (the replica started below),
# "name" (a host name), "silent" (no answer)
sub start_fake {
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                        LocalPort => $FAKE, Listen => 16,
                                        ReuseAddr => 1)
        or die "cannot listen on $FAKE: $!";

    $fake_pid = fork();
    die "fork: $!" unless defined $fake_pid;
    if ($fake_pid) {
        close $listen;
        return;
    }

    my $sel = IO::Select->new($listen);
    my %buf;

    while (1) {
        for my $c ($sel->can_read(1)) {
            if ($c == $listen) {
                $sel->add($listen->accept);
                next;
            }
            my $n = sysread($c, my $data, 4096);
            if (!$n) {
                $sel->remove($c);
                close $c;
                next;
            }
            $buf{$c} .= $data;

            open my $fh, '<', "$root/fake";
            my $mode = <$fh> // 'silent';
            chomp $mode;

            while ($buf{$c} =~ s/^\*(\d+)\r\n((?:\$\d+\r\n[^\r]*\r\n)+)//) {
                my @a = $2 =~ /\$\d+\r\n([^\r]*)\r\n/g;
                my $cmd = lc $a[0];
                next if $mode eq 'silent';
                if ($cmd eq 'sentinel') {
                    my ($h, $p) = $mode eq 'name' ? ('localhost', $M)
                                                  : ('127.0.0.1', $R);
                    syswrite $c, "*2\r\n\$" . length($h) . "\r\n$h\r\n\$"
                                 . length($p) . "\r\n$p\r\n";
                } elsif ($cmd eq 'subscribe') {
                    syswrite $c, "*3\r\n\$9\r\nsubscribe\r\n\$14\r\n"
                                 . "+switch-master\r\n:1\r\n";
                    # an announcement with a host name and a newline
                    my $m = "mymaster 127.0.0.1 $R evil\nhost $M";
                    syswrite $c, "*3\r\n\$7\r\nmessage\r\n\$14\r\n"
                                 . "+switch-master\r\n\$" . length($m)
                                 . "\r\n$m\r\n"
                        if $mode eq 'badswitch';
                } elsif ($cmd eq 'ping') {
                    syswrite $c, "*2\r\n\$4\r\npong\r\n\$0\r\n\r\n";
                }
            }
        }
    }
}

sub fake_mode {
    open my $fh, '>', "$root/fake" or die $!;
    print $fh "$_[0]\n";
    close $fh;
}

fake_mode('replica');
start_fake();

# $M is the master now; $R a replica of it
start_redis('replica', $R, '--replicaof', '127.0.0.1', $M);

$line = "room_affinity_redis sentinel=127.0.0.1:$FAKE master=mymaster "
        . "user=nginx password=$npw backoff=500ms "
        . "connect_timeout=500ms command_timeout=500ms ping_interval=300ms";

start_nginx($line);

ok(poll(5, sub { error_log() =~ /role check: the server is not the master but a "slave"/ }),
   'a Sentinel that names a replica: the ROLE check finds it out')
    or diag(error_log());
$s = status();
ok(!$s->{redis}{connected}, 'and nginx does not stay on the replica');
ok(poll(3, sub { subscribers($R) == 0 }), 'no subscription is left on it');
like(get('/?room=z1'), qr/^b[12]$/, 'proxying goes on');

fake_mode('badswitch');
ok(poll(5, sub { error_log() =~ /sentinel sent an invalid \+switch-master "mymaster 127\.0\.0\.1 $R evil\?host $M"/ }),
   'an invalid +switch-master is logged, printable, and not followed')
    or diag(error_log());

fake_mode('name');
ok(poll(5, sub { error_log() =~ /sentinel "127\.0\.0\.1:$FAKE" lookup: not an address and a port/ }),
   'a Sentinel that names a host name is not followed')
    or diag(error_log());

fake_mode('silent');
unlink "$root/logs/error.log";
kill 'USR1', $nginx_pid;    # reopen the log
ok(poll(8, sub { error_log() =~ /sentinel "127\.0\.0\.1:$FAKE" lookup: no answer in \d+ ms/ }),
   'a Sentinel that never answers is given up after command_timeout')
    or diag(error_log());
like(get('/?room=z2'), qr/^b[12]$/, 'proxying goes on');

# ---------------------------------------------------------------------
# no Sentinel reachable; a master name no Sentinel knows

start_nginx("room_affinity_redis sentinel=127.0.0.1:$DEAD master=mymaster "
            . "backoff=500ms");

ok(poll(5, sub { error_log() =~ /redis "mymaster" subscriber link sentinel: no sentinel of 1 answered, the last: connect: Connection refused/ }),
   'no Sentinel reachable: logged') or diag(error_log());
$s = status();
ok(!$s->{redis}{connected}, 'not connected');
is($s->{redis}{sentinel}{master}, undef, 'no master in the status')
    or diag(explain($s->{redis}{sentinel}));
like(get('/?room=n1'), qr/^b[12]$/, 'proxying goes on');

start_nginx("room_affinity_redis sentinel=127.0.0.1:$S[1] master=nosuch "
            . "backoff=500ms");

ok(poll(5, sub { error_log() =~ /sentinel "127\.0\.0\.1:$S[1]" lookup: the master name is unknown to this sentinel/ }),
   'an unknown master name: logged') or diag(error_log());
like(get('/?room=n2'), qr/^b[12]$/, 'proxying goes on');

stop_nginx();

done_testing();
