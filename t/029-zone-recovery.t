# A reload that brings new server addresses onto a full zone: the new
# servers get their slots (idle rooms of servers gone from the
# configuration make way, their slots are reused), rooms are pinned again
# at once, and the join API answers 200 - without waiting for ttl or for
# traffic to expire rooms.  (Issue 12, item 1: before, the status listed
# no server, rooms reached 2-3 backends in 3 requests and the join API
# answered 503, for good.)
#
# Plain Test::More: the configuration is rewritten between the steps.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP;
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

done_testing();
