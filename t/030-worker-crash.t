# A worker killed (kill -9) with live upstream connections: the counts it
# held are given back when the master's new worker starts (or at the next
# check), the servers' live counts are those of the connections left, and
# its rooms expire after ttl like any other.  (Issue 12, item 5: before,
# the status kept live=100 after half the connections were cut, and the
# dead worker's rooms stayed live for good: never expired, never evicted.)
#
# Plain Test::More: a killed worker cuts the client connections it holds.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP;
use IO::Socket::INET;
use IO::Select;
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep time);

use lib 't/helpers';
use RoomAffinity;

my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $modules = $ENV{TEST_NGINX_LOAD_MODULES} || '';
my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 11;
my $root = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-worker-crash';
my @bports = map { $ENV{"TEST_NGINX_B${_}_PORT"} } 1 .. 2;

# backends that accept and never answer: every proxied request stays live
my @hold = map {
    IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $_,
                          Listen => 512, ReuseAddr => 1)
        or die "cannot listen on $_: $!"
} @bports;

remove_tree($root);
make_path("$root/conf", "$root/logs");

my $load = join '', map { "load_module $_;\n" } split ' ', $modules;

open my $fh, '>', "$root/conf/nginx.conf" or die $!;
print $fh <<"END";
$load
master_process on;
worker_processes 2;
daemon off;
error_log logs/error.log notice;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    upstream chat {
        room_affinity \$arg_room zone=crash:1m ttl=2s;
        server 127.0.0.1:$bports[0];
        server 127.0.0.1:$bports[1];
    }
    server {
        listen 127.0.0.1:$port reuseport;
        location / { proxy_pass http://chat; proxy_read_timeout 120s; }
        location = /status { room_affinity_status; }
    }
}
END
close $fh;

my $pid = fork();
die "fork: $!" unless defined $pid;

if ($pid == 0) {
    open STDERR, '>', "$root/logs/stderr.log";
    exec $nginx, '-p', "$root/", '-c', 'conf/nginx.conf' or exit 1;
}

END { if ($pid) { kill 'QUIT', $pid; waitpid $pid, 0 } }

my $http = HTTP::Tiny->new(timeout => 5);

sub status {
    my ($q) = @_;
    my $r = $http->get("http://127.0.0.1:$port/status" . ($q // ''));
    return ($r->{status}, eval { decode_json($r->{content}) });
}

sub live {
    my (undef, $st) = status();
    return undef unless $st;
    my $n = 0;
    $n += $_->{live} for @{ $st->{upstreams}{chat}{backends} };
    return $n;
}

# polls until the check holds; the seconds it took, or undef
sub wait_for {
    my ($check, $limit) = @_;
    my $start = time;
    while (time - $start < $limit) {
        return time - $start if $check->();
        sleep 0.05;
    }
    return undef;
}

ok(defined wait_for(sub { defined live() }, 10), 'nginx started');

sub workers {
    my @w = map { /(\d+)/ ? $1 : () } `ps -o pid= --ppid $pid`;
    return @w;
}

ok(defined wait_for(sub { workers() == 2 }, 5), 'two workers');

# 100 connections over 20 rooms, each waiting for its answer
my @clients;

for my $i (0 .. 99) {
    my $room = 'r' . ($i % 20);
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 5) or die "connect: $!";
    print $c "GET /?room=$room HTTP/1.1\r\nHost: x\r\n\r\n";
    push @clients, $c;
}

ok(defined wait_for(sub { (live() // 0) == 100 }, 10),
   'the status counts 100 live connections');

# one worker killed: the connections it held are cut
my ($victim) = workers();
kill 'KILL', $victim;

my $sel = IO::Select->new(@clients);
my %cut;
my $t0 = time;

while (time - $t0 < 3) {
    for my $c ($sel->can_read(0.1)) {
        my $n = sysread($c, my $buf, 4096);
        if (!$n) {
            $cut{$c} = 1;
            $sel->remove($c);
        }
    }
}

my @left = grep { !$cut{$_} } @clients;
my $ncut = 100 - @left;

cmp_ok($ncut, '>', 0, "kill -9 of worker $victim cut $ncut connections");
cmp_ok(scalar @left, '>', 0, scalar(@left) . ' connections left');

my $took = wait_for(sub { (live() // -1) == @left }, 10);
ok(defined $took, sprintf 'the live count is that of the connections left '
   . '(%d) %.1f s after the kill (it says %d)', scalar @left, $took // -1,
   live() // -1);

# every client leaves: nothing stays live
close $_ for @left;

ok(defined wait_for(sub { (live() // -1) == 0 }, 10),
   'no live connection once every client left (it says '
   . (live() // -1) . ')');

# the rooms expire after ttl (2 s), under light traffic
sleep 2.5;
$http->get("http://127.0.0.1:$port/status");

my @kept;

# requests of new rooms (each routing decision expires a few idle rooms);
# the backends never answer, the client does not wait
my $quick = HTTP::Tiny->new(timeout => 0.2);

my $gone = wait_for(sub {
    $quick->get("http://127.0.0.1:$port/?room=traffic-" . int(rand 1e6))
        for 1 .. 3;
    @kept = grep { (status("?room=r$_"))[0] != 404 } 0 .. 19;
    !@kept;
}, 10);

ok(defined $gone, 'every room of the killed worker expired after ttl ('
   . scalar(@kept) . ' of 20 kept)');

my (undef, $st) = status();
my $zone = $st->{upstreams}{chat}{zone};
is($zone->{workers_reaped}, 1, 'the status counts one worker reaped');
is($zone->{live_given_back}, $ncut, "and $ncut connections given back");

open my $log, '<', "$root/logs/error.log" or die $!;
my @log = <$log>;
close $log;

ok((grep { /worker $victim of upstream "chat" is gone; the $ncut connections/ }
    @log), 'the error log says what was given back');

kill 'QUIT', $pid;
waitpid $pid, 0;
$pid = 0;

done_testing();
