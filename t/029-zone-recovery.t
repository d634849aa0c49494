# A reload that brings new server addresses onto a full zone: the new
# servers get their slots (idle rooms of servers gone from the
# configuration make way, their slots are reused), rooms are pinned again
# at once, and the join API answers 200 - without waiting for ttl or for
# traffic to expire rooms.  Then a zone full of live rooms, which nothing
# can make way for: the join API still answers 200 while the upstream is
# balanced round robin, and that ends as soon as the connections do.  (Issue 12, item 1: before, the status listed
# no server, rooms reached 2-3 backends in 3 requests and the join API
# answered 503, for good.)
#
# Plain Test::More: the configuration is rewritten between the steps.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP;
use IO::Socket::INET;
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep time);

use lib 't/helpers';
use RoomAffinity;

my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $modules = $ENV{TEST_NGINX_LOAD_MODULES} || '';
my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 9;
my $root = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-zone-recovery';
my $bport = $ENV{TEST_NGINX_B1_PORT};

remove_tree($root);
make_path("$root/conf", "$root/logs");

my $load = join '', map { "load_module $_;\n" } split ' ', $modules;

# old servers: b1..b4 on 127.0.0.1; then, deploy after deploy, 14 new
# ones on 127.0.D.N (D = 1..4), answering "D-N"
my @old = map { "127.0.0.1:" . $ENV{"TEST_NGINX_B${_}_PORT"} } 1 .. 4;
my @deploy = map { my $d = $_; [ map { "127.0.$d.$_:$bport" } 1 .. 14 ] }
             1 .. 4;

my $backends = join '', (map {
        "    server { listen $old[$_ - 1]; return 200 \"b$_\\n\"; }\n" } 1 .. 4),
    (map { my $d = $_; map {
        "    server { listen 127.0.$d.$_:$bport; return 200 \"$d-$_\\n\"; }\n"
    } 1 .. 14 } 1 .. 4);

sub config {
    my (@servers) = @_;
    my $list = join '', map { "        server $_;\n" } @servers;

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
        room_affinity \$arg_room zone=recovery:64k ttl=20s;
$list    }
$backends
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://chat; }
        location = /status { room_affinity_status; }
        location = /join { room_affinity_join chat; }
    }
}
END
    close $fh;
}

config(@old);

my $pid = fork();
die "fork: $!" unless defined $pid;

if ($pid == 0) {
    open STDERR, '>', "$root/logs/stderr.log";
    exec $nginx, '-p', "$root/", '-c', 'conf/nginx.conf' or exit 1;
}

END { if ($pid) { kill 'QUIT', $pid; waitpid $pid, 0 } }

my $http = HTTP::Tiny->new(timeout => 5);

sub get {
    my $r = $http->get("http://127.0.0.1:$port$_[0]");
    return ($r->{status}, $r->{content} // '');
}

sub status {
    my ($code, $body) = get('/status');
    return $code == 200 ? eval { decode_json($body) } : undef;
}

my $start = time;
until ((get('/?room=warm'))[0] == 200) {
    die "nginx did not start" if time - $start > 10;
    sleep 0.05;
}

# the zone filled with idle rooms: 5,000 rooms, most of them evicted
for my $i (1 .. 5000) {
    get("/?room=idle-$i");
}

my $st = status();
my $zone = $st->{upstreams}{chat}{zone};
cmp_ok($zone->{evicted}, '>', 1000, "the zone is full: $zone->{rooms} rooms, "
       . "$zone->{evicted} evicted");
is(scalar @{ $st->{upstreams}{chat}{backends} }, 4, 'four servers');

# the upstream rewritten to 14 new addresses, reloaded; then again and
# again (rolling deploys): slots of servers gone are reused

for my $d (1 .. 4) {
    my @new = @{ $deploy[$d - 1] };

    config(@new);
    kill 'HUP', $pid;

    # the new servers are listed within seconds, under light traffic
    my $took;
    $start = time;

    while (time - $start < 15) {
        get('/?room=probe-' . int(rand 1e6));
        $st = status();
        my @b = map { $_->{server} }
                @{ $st->{upstreams}{chat}{backends} // [] };
        if (@b == 14 && !grep { !/^127\.0\.$d\./ } @b) {
            $took = time - $start;
            last;
        }
        sleep 0.1;
    }

    ok(defined $took, sprintf "deploy $d: the status lists the 14 new "
       . "servers %.1f s after the reload", $took // -1);

    # every room of 400 (100 after the first) reaches one backend in 3
    # requests, and it is one of the new servers
    my ($split, $served, $elsewhere) = (0, 0, 0);
    my $rooms = $d == 1 ? 400 : 100;

    for my $i (1 .. $rooms) {
        my %seen;
        for (1 .. 3) {
            my ($code, $body) = get("/?room=after-$d-$i");
            $served++ if $code == 200;
            $elsewhere++ unless $body =~ /^$d-\d+$/;
            $seen{$body}++;
        }
        $split++ if keys %seen > 1;
    }

    is($served, 3 * $rooms, "deploy $d: every request answered");
    is($split, 0, "deploy $d: no room of $rooms reached more than one "
       . "backend in 3 requests");
    is($elsewhere, 0, "deploy $d: every room on a new server");

    my ($code, $body) = get("/join?roomName=after-$d-1");
    is($code, 200, "deploy $d: the join API answers 200");
    like($body, qr/"url":"ws:\/\/127\.0\.$d\.\d+:$bport"/,
         "deploy $d: with a new server");
}

$st = status();
$zone = $st->{upstreams}{chat}{zone};
cmp_ok($zone->{slots_reclaimed}, '>', 0, 'slots of the servers gone were '
       . 'reused (' . ($zone->{slots_reclaimed} // 'none') . ')');

open my $log, '<', "$root/logs/error.log" or die $!;
my @log = <$log>;
close $log;

ok((grep { /has its slot again/ } @log) || !(grep { /no room for backend/ }
   @log), 'if round robin was needed, the log says it ended');

diag(grep { /no room for backend|slot again/ } @log);

kill 'QUIT', $pid;
waitpid $pid, 0;
$pid = 0;


# part 2: a 32k zone full of live rooms (long names, connections held by
# backends that never answer), reloaded onto 16 new addresses: 18 slots,
# a table of 16, no idle room to evict, no slot free while the old workers
# hold their connections

my @held = map { "127.0.0.1:" . $ENV{"TEST_NGINX_B${_}_PORT"} } 1 .. 2;
my $b3 = $ENV{TEST_NGINX_B3_PORT};
my @fresh = map { "127.0.5.$_:$b3" } 1 .. 16;

my @hold = map {
    IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $_,
                          Listen => 512, ReuseAddr => 1)
        or die "cannot listen on $_: $!"
} map { $ENV{"TEST_NGINX_B${_}_PORT"} } 1 .. 2;

$backends = join '', map {
    "    server { listen 127.0.5.$_:$b3; return 200 \"5-$_\\n\"; }\n" } 1 .. 16;

sub config2 {
    my (@servers) = @_;
    my $list = join '', map { "        server $_;\n" } @servers;

    open my $fh, '>', "$root/conf/nginx.conf" or die $!;
    print $fh <<"END";
$load
master_process on;
worker_processes 1;
daemon off;
error_log logs/error.log notice;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    upstream chat {
        room_affinity \$arg_room zone=live:32k ttl=20s;
$list    }
$backends
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://chat; proxy_read_timeout 60s; }
        location = /status { room_affinity_status; }
        location = /join { room_affinity_join chat; }
    }
}
END
    close $fh;
}

remove_tree("$root/logs");
make_path("$root/logs");
config2(@held);

$pid = fork();
die "fork: $!" unless defined $pid;

if ($pid == 0) {
    open STDERR, '>', "$root/logs/stderr.log";
    exec $nginx, '-p', "$root/", '-c', 'conf/nginx.conf' or exit 1;
}

$start = time;
until (status()) {
    die "nginx did not start" if time - $start > 10;
    sleep 0.05;
}

my @clients;
my $long = 'L' x 480;

for my $i (1 .. 48) {
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 5) or die "connect: $!";
    print $c "GET /?room=$long-$i HTTP/1.1\r\nHost: x\r\n\r\n";
    push @clients, $c;
}

my $full;
$start = time;

while (time - $start < 10) {
    $st = status();
    my $n = 0;
    $n += $_->{live} for @{ $st->{upstreams}{chat}{backends} // [] };
    if ($n == 48) {
        $full = $st->{upstreams}{chat}{zone};
        last;
    }
    sleep 0.05;
}

ok($full && $full->{unrecorded} > 0, 'part 2: 48 live connections, the '
   . 'zone is full of live rooms (' . ($full ? $full->{rooms} : '?')
   . ' rooms, ' . ($full ? $full->{unrecorded} : '?') . ' unrecorded)');

config2(@fresh);
kill 'HUP', $pid;

# the new worker cannot map the servers: round robin, and the join API
# answers with a server that is up

my ($jcode, $jbody, $alert);
$start = time;

while (time - $start < 10) {
    get('/?room=probe');
    if (open my $log, '<', "$root/logs/error.log") {
        $alert = grep { /no room for backend/ } <$log>;
    }
    last if $alert;
    sleep 0.1;
}

ok($alert, 'part 2: no slot for the new servers yet (alert logged)');

($jcode, $jbody) = get('/join?roomName=while-full');
is($jcode, 200, 'part 2: the join API answers 200 meanwhile');
like($jbody, qr/"url":"ws:\/\/127\.0\.5\.\d+:$b3".*"new":true/,
     'part 2: with one of the new servers, unrecorded');

# the connections end: the old worker exits, its servers' slots are free,
# and the new servers are listed at once (no ttl, no traffic-driven expiry)

close $_ for @clients;
close $_ for @hold;

my $took;
$start = time;

while (time - $start < 10) {
    $st = status();
    my @b = map { $_->{server} } @{ $st->{upstreams}{chat}{backends} // [] };
    if (@b == 16) {
        $took = time - $start;
        last;
    }
    sleep 0.1;
}

ok(defined $took, sprintf 'part 2: the 16 new servers are listed %.1f s '
   . 'after the connections ended', $took // -1);

my ($split, $served) = (0, 0);

for my $i (1 .. 50) {
    my %seen;
    for (1 .. 3) {
        my ($code, $body) = get("/?room=later-$i");
        $served++ if $code == 200;
        $seen{$body}++;
    }
    $split++ if keys %seen > 1;
}

is($served, 150, 'part 2: every request answered');
is($split, 0, 'part 2: rooms are pinned again');

open $log, '<', "$root/logs/error.log" or die $!;
@log = <$log>;
close $log;

ok((grep { /every backend of zone "live" has its slot again/ } @log),
   'part 2: the log says round robin ended');

kill 'QUIT', $pid;
waitpid $pid, 0;
$pid = 0;

done_testing();
