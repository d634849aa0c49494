# Names: a backend that registers with a host name is resolved by nginx's
# own resolver (asynchronously: a small DNS server of this test answers),
# joins under its address, and the join API answers the url it registered
# with; a name that does not resolve, or a name without a resolver, is
# refused and counted.  "server name:port resolve" (nginx 1.27.3 and
# later) in a room_affinity upstream fails "nginx -t" with a message that
# names room_affinity.
#
# Plain Test::More: a DNS server, one nginx instance, "nginx -t" runs.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);

use lib 't/helpers';
use RoomAffinity;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 24;
my $dns = ($ENV{TEST_NGINX_PORT} || 1984) + 25;
my ($PA, $PB) = map { $ENV{"TEST_NGINX_B${_}_PORT"} } 1 .. 2;
my $rport = $ENV{TEST_NGINX_REDIS_PORT};
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my @pids;

RoomAffinity::start_control(redis => 1);

END { kill 'QUIT', $_ for @pids; waitpid $_, 0 for @pids }

# a DNS server: NAME.fleet.test is 127.0.0.1 (A), nothing else exists
sub dns_server {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $dns,
                                  Proto => 'udp', ReuseAddr => 1)
        or die "dns: $!";

    my $pid = fork();
    die "fork: $!" unless defined $pid;
    return $pid if $pid;

    while (1) {
        my $q;
        $s->recv($q, 512) // next;
        next if length $q < 17;

        my ($id) = unpack 'n', $q;
        my $p = 12;
        my @labels;
        while ((my $n = ord substr $q, $p, 1) != 0) {
            push @labels, substr $q, $p + 1, $n;
            $p += $n + 1;
        }
        my ($type) = unpack 'n', substr $q, $p + 1, 2;
        my $question = substr $q, 12, $p + 5 - 12;
        my $name = lc join '.', @labels;

        my $known = $name =~ /\.fleet\.test$/;
        my $a = $known && $type == 1;
        my $r = pack('nnnnnn', $id, $known ? 0x8180 : 0x8183, 1,
                     $a ? 1 : 0, 0, 0) . $question;
        $r .= pack('nnnNnC4', 0xc00c, 1, 1, 1, 4, 127, 0, 0, 1) if $a;
        $s->send($r);
    }
}

push @pids, dns_server();

my $servers = join '', map {
    "    server { listen 127.0.0.1:$ENV{\"TEST_NGINX_B${_}_PORT\"}; "
    . "return 200 \"b$_\\n\"; }\n"
} 1 .. 2;

push @pids, RoomAffinity::instance('resolve', <<"END");
    room_affinity_redis 127.0.0.1:$rport;
    resolver 127.0.0.1:$dns valid=1s ipv6=off;
    resolver_timeout 2s;
    upstream chat {
        room_affinity \$arg_room zone=names:1m register=127.0.0.1/32:$PA-$PB;
    }
$servers
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://chat; }
        location = /join { room_affinity_join chat; }
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

sub fleet { status()->{upstreams}{chat}{fleet} // {} }

sub publish {
    RoomAffinity::redis_command($rport, 'PUBLISH', @_);
}

ok(RoomAffinity::until_ok(10, sub { (status()->{redis}{state} // '') eq 'subscribed' }),
   'nginx subscribed');

my $url = "ws://b1.fleet.test:$PA";
publish('register', qq({"url":"$url"}));
ok(RoomAffinity::until_ok(5, sub { (fleet()->{registered} // 0) == 1 }),
   'a backend registered by name joined once resolved');

my ($b) = @{ status()->{upstreams}{chat}{backends} // [] };
is($b->{server}, "127.0.0.1:$PA", 'under its address');
is($b->{url}, $url, 'with the url it registered with');
is(get('/?room=n1'), "b1\n", 'and takes rooms');

my $join = eval { JSON::PP->new->decode(get('/join?roomName=n2')) } // {};
is($join->{url}, $url, 'the join API answers its registered url');

publish('signaling', qq({"url":"$url","connections":7}));
sub reported {
    my ($b) = @{ status()->{upstreams}{chat}{backends} // [] };
    return (($b // {})->{report} // {})->{connections} // -1;
}

ok(RoomAffinity::until_ok(5, sub { reported() == 7 }),
   'its reports, by the same url, apply to it');

publish('register', qq({"url":"ws://nowhere.example:$PB"}));
ok(RoomAffinity::until_ok(8, sub { (fleet()->{refused}{unresolved} // 0) == 1 }),
   'a name that does not resolve is refused as unresolved');
is(fleet()->{registered}, 1, 'and does not join');

publish('register', qq({"url":"ws://b2.fleet.test:9"}));
ok(RoomAffinity::until_ok(5, sub { (fleet()->{refused}{not_allowed} // 0) == 1 }),
   'a resolved address outside the allow list is refused');

publish('register', qq({"url":"$url","deregister":true}));
ok(RoomAffinity::until_ok(5, sub { (fleet()->{registered} // 1) == 0 }),
   'it deregisters by the same url');

my $log = do { local $/; open my $fh, '<',
    ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-resolve/logs/error.log';
    <$fh> // '' };
like($log, qr/registration of "ws:\/\/nowhere\.example:\d+" refused in upstream "chat": unresolved/,
     'the refusal is logged with its reason');

# --- no resolver in http{}: a name is refused as no_resolver

my $port2 = $port + 4;
push @pids, RoomAffinity::instance('noresolver', <<"END");
    room_affinity_redis 127.0.0.1:$rport prefix=nr:;
    upstream chat {
        room_affinity \$arg_room zone=nr:1m register=127.0.0.1/32:$PA-$PB;
    }
    server {
        listen 127.0.0.1:$port2;
        location / { proxy_pass http://chat; }
        location = /status { room_affinity_status; }
    }
END

sub status2 {
    my $r = $http->get("http://127.0.0.1:$port2/status");
    my $st = $r->{success} ? eval { JSON::PP->new->decode($r->{content}) }
                           : undef;
    return ref $st eq 'HASH' ? $st : {};
}

sub fleet2 { status2()->{upstreams}{chat}{fleet} // {} }

ok(RoomAffinity::until_ok(10, sub { (status2()->{redis}{state} // '') eq 'subscribed' }),
   'an instance without a resolver subscribed');
publish('nr:register', qq({"url":"$url"}));
ok(RoomAffinity::until_ok(5, sub { (fleet2()->{refused}{no_resolver} // 0) == 1 }),
   'without a resolver, a name is refused as no_resolver');
publish('nr:register', qq({"url":"ws://127.0.0.1:$PA"}));
ok(RoomAffinity::until_ok(5, sub { (fleet2()->{registered} // 0) == 1 }),
   'an IP literal needs no resolver');

# --- "nginx -t" with "server ... resolve"

my $root = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-resolve-t';
mkdir $root; mkdir "$root/logs"; mkdir "$root/conf";

sub nginx_t {
    my ($http) = @_;
    my $load = join '', map { "load_module $_;\n" }
               split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');
    open my $fh, '>', "$root/conf/nginx.conf" or die $!;
    print $fh "$load\nerror_log logs/error.log;\npid logs/nginx.pid;\n"
              . "events {}\nhttp {\n$http\n}\n";
    close $fh;
    return scalar `$nginx -p $root/ -c conf/nginx.conf -t 2>&1`;
}

my ($major, $minor, $patch) = `$nginx -v 2>&1` =~ m{nginx/(\d+)\.(\d+)\.(\d+)};
my $has_resolve = sprintf('%03d%03d%03d', $major, $minor, $patch) ge '001027003';

SKIP: {
    skip "nginx $major.$minor.$patch has no \"server ... resolve\"", 2
        unless $has_resolve;

    my $out = nginx_t(<<"END");
    resolver 127.0.0.1:$dns;
    upstream chat {
        zone peers 64k;
        room_affinity \$arg_room zone=rz:1m;
        server b1.fleet.test:$PA resolve;
    }
END
    like($out, qr/"room_affinity" does not support "server b1\.fleet\.test:\d+ resolve" in upstream "chat"/,
         'nginx -t refuses server ... resolve, naming room_affinity');

    $out = nginx_t(<<"END");
    resolver 127.0.0.1:$dns;
    upstream chat {
        zone peers 64k;
        server b1.fleet.test:$PA resolve;
        room_affinity \$arg_room zone=rz:1m;
    }
END
    like($out, qr/"room_affinity" does not support "server b1\.fleet\.test:\d+ resolve"/,
         'in either order of the lines');
}

done_testing();
